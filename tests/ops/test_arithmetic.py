"""Add/Sub/Mul/Div (numpy-style and legacy broadcasting), their gradient ops and
SumReduceLike.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, EnforceError, OperatorError, SchemaError
from graphnet.registry import TensorInfo
from tests.opcheck import (check_devices, check_gradient, check_op, check_shape_inference,
                           op_def, run_op)
from tests.ops.elementwise_helpers import (F32, F64, I32, I64, away, check_gradient_wiring,
                                           op_error, rand, wiring_id)


def trunc_div(a, b):
    """C++ integer division (toward zero), independent of the kernel's method."""
    return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)


NP_BINARY = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b if a.dtype.kind == "f" else trunc_div(a, b),
}


# --- Add / Sub / Mul / Div: forward ---------------------------------------------------

@pytest.mark.parametrize("op_type", sorted(NP_BINARY))
@pytest.mark.parametrize("dtype", [F32, F64, I32, I64])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 1, 3), (4, 1)), ((3,), (2, 3)),
                                    ((2, 3), ()), ((0, 3), (3,)), ((0, 3), (2, 1, 3))])
def test_binary_numpy_broadcast(op_type, dtype, shapes):
    a = rand(shapes[0], dtype)
    b = rand(shapes[1], dtype)
    if op_type == "Div":
        b = np.where(b == 0, dtype(3), b).astype(dtype)
    check_op(op_type, [a, b], lambda a, b: [NP_BINARY[op_type](a, b)])


@pytest.mark.parametrize("op_type", sorted(NP_BINARY))
@pytest.mark.parametrize("dtype", [F32, I64])
@pytest.mark.parametrize("a_shape,b_shape,args,b_view", [
    ((2, 3, 4), (3,), {"axis": 1}, (1, 3, 1)),
    ((2, 3, 4), (3, 4), {}, (1, 3, 4)),                      # suffix matching
    ((2, 3, 4), (4,), {}, (1, 1, 4)),
    ((2, 3, 4, 5), (3,), {"axis_str": "C"}, (1, 3, 1, 1)),    # order NCHW
    ((2, 3, 4, 5), (5,), {"axis_str": "C", "order": "NHWC"}, (1, 1, 1, 5)),
    ((2, 3, 4), (1, 3, 1), {}, (1, 3, 1)),                   # 1-dims of B stripped
    ((2, 3, 4), (3, 1), {"axis": 1}, (1, 3, 1)),
    ((2, 3), (1,), {}, (1, 1)),                              # one element: scalar path
    ((2, 3), (1, 1, 1), {}, (1, 1)),                         # even with more dims
    ((2, 3), (2, 3), {"axis": 0}, (2, 3)),
])
def test_binary_legacy_broadcast(op_type, dtype, a_shape, b_shape, args, b_view):
    a = rand(a_shape, dtype)
    b = rand(b_shape, dtype)
    if op_type == "Div":
        b = np.where(b == 0, dtype(2), b).astype(dtype)
    ref = lambda a, b: [NP_BINARY[op_type](a, b.reshape(b_view))]  # noqa: E731
    check_op(op_type, [a, b], ref, broadcast=1, **args)


def test_binary_goldens():
    # golden from real Caffe2 1.10.2
    a = np.arange(24, dtype=F32).reshape(2, 3, 4)
    got = run_op("Mul", [a, np.array([1, 2, 3], F32)], broadcast=1, axis=1)[0]
    np.testing.assert_array_equal(got[1], [[12, 13, 14, 15], [32, 34, 36, 38],
                                           [60, 63, 66, 69]])
    got = run_op("Div", [np.array([-7, 7, -7, 7, 5], I64),
                         np.array([2, 2, -2, -2, 7], I64)])
    np.testing.assert_array_equal(got[0], [-3, 3, 3, -3, 0])
    assert got[0].dtype == I64


@pytest.mark.parametrize("op_type", sorted(NP_BINARY))
def test_binary_in_place(op_type):
    ws = workspace.Workspace()
    a, b = rand((2, 3)), away((3,))
    ws.FeedBlob("a", a)
    ws.FeedBlob("b", b)
    ws.RunOperatorOnce(core.CreateOperator(op_type, ["a", "b"], ["a"]))
    np.testing.assert_allclose(ws.FetchBlob("a"), NP_BINARY[op_type](a, b), rtol=1e-6)
    ws.FeedBlob("c", away((2, 3)))
    c = ws.FetchBlob("c")
    ws.RunOperatorOnce(core.CreateOperator(op_type, ["a", "c"], ["c"]))
    np.testing.assert_allclose(ws.FetchBlob("c"), NP_BINARY[op_type](
        NP_BINARY[op_type](a, b), c), rtol=1e-6)


def test_binary_in_place_shape_rule():
    ws = workspace.Workspace()
    ws.FeedBlob("a", np.ones((2, 3), F32))
    ws.FeedBlob("b", np.ones((3,), F32))
    before = ws.FetchBlob("b")
    with pytest.raises(OperatorError, match=r"C_dims == B_dims. \[2, 3\] vs \[3\]"):
        ws.RunOperatorOnce(core.CreateOperator("Add", ["a", "b"], ["b"]))
    np.testing.assert_array_equal(ws.FetchBlob("b"), before)
    with pytest.raises(OperatorError, match=r"C_dims == A_dims. \[2, 3\] vs \[3\]"):
        ws.RunOperatorOnce(core.CreateOperator("Mul", ["b", "a"], ["b"]))
    with pytest.raises(OperatorError, match="In-place is allowed only with the first "
                                            "tensor when legacy-broadcasting"):
        ws.RunOperatorOnce(core.CreateOperator("Sub", ["a", "b"], ["b"], broadcast=1))


@pytest.mark.parametrize("inputs,args,match", [
    ([np.ones((2, 3), F32), np.ones((2, 4), F32)], {}, "A_dim: 3,B_dim: 4"),
    ([np.ones((2, 3), F32), np.ones((2, 3), F64)], {},
     "caller expects elements to be float, while tensor contains double"),
    ([np.ones((2, 3), I32), np.ones((2, 3), I64)], {},
     "caller expects elements to be int, while tensor contains long int"),
    ([np.ones(2, np.bool_), np.ones(2, np.bool_)], {}, "Unsupported type of tensor: bool"),
    ([np.ones(2, np.float16), np.ones(2, np.float16)], {},
     "Unsupported type of tensor: c10::Half"),
    ([np.ones(2, np.int8), np.ones(2, np.int8)], {}, "Unsupported type of tensor: signed"),
    ([np.ones((2, 3), F32), np.ones((2, 3, 4), F32)], {"broadcast": 1},
     "If you are doing broadcasting, input1 should have a smaller or equal number"),
    ([np.ones((2, 3, 4), F32), np.ones(3, F32)], {"broadcast": 1},
     r"4 vs 3. Broadcast dimension mismatch"),
    ([np.ones((2, 3, 4), F32), np.ones((3, 4), F32)], {"broadcast": 1, "axis": 2},
     r"Broadcast axis should be in the range of\[0, A.ndim\(\) - B.ndim\(\)\], "
     "but axis = 2"),
    ([np.ones((2, 3, 4), F32), np.ones(3, F32)], {"broadcast": 1, "axis": -2},
     "but axis = -2"),
    ([np.ones(3, I32), np.array([1, 0, 2], I32)], {}, "Integer division by zero"),
])
def test_binary_errors(inputs, args, match):
    op_type = "Div" if "division" in match else "Add"
    op_error(op_type, inputs, match, **args)


AXIS_ARG_ERRORS = [
    ({"broadcast": 1, "axis": 1, "axis_str": "C"},
     "Args axis and axis_str cannot be used simultaneously"),
    ({"broadcast": 1, "axis_str": "CC"}, "Unsupported axis stringCC"),
    ({"broadcast": 1, "axis_str": "X"}, "Unrecognizable axis string X from order string "
                                        "NCHW"),
    # spec §3.37 (real Caffe2 1.10 silently ignored these in Add/Sub/Mul/Div)
    ({"axis": 1}, "Do not specify axis or axis_str if broadcast is not enabled"),
    ({"axis_str": "C"}, "Do not specify axis or axis_str if broadcast is not enabled"),
]
AXIS_ARG_CASES = [(t, args, m) for t in ("Add", "Sub", "Mul", "Div", "AddGradient",
                                         "DivGradient") for args, m in AXIS_ARG_ERRORS]
# SumReduceLike is always legacy (no `broadcast` arg): only the axis/axis_str rules
AXIS_ARG_CASES += [("SumReduceLike", {k: v for k, v in args.items() if k != "broadcast"},
                    m) for args, m in AXIS_ARG_ERRORS[:3]]


@pytest.mark.parametrize("op_type,args,match", AXIS_ARG_CASES)
def test_binary_argument_errors_at_creation(op_type, args, match):
    """Caffe2 rejected these in the op's constructor: before any input is read."""
    n_in = {"AddGradient": 3, "DivGradient": 4}.get(op_type, 2)
    n_out = 2 if "Gradient" in op_type else 1
    ws = workspace.Workspace()
    net = core.Net("n")
    getattr(net, op_type)(["x%d" % i for i in range(n_in)],
                          ["y%d" % i for i in range(n_out)], **args)
    with pytest.raises(ArgumentError, match=match):
        ws.CreateNet(net)  # inputs do not even exist yet


def test_binary_error_names_expectation_and_fix():
    with pytest.raises(OperatorError) as info:
        run_op("Mul", [np.ones((2, 3), F32), np.ones((2, 3), F64)])
    text = str(info.value)
    assert "expected float32, found float64" in text and "Fix:" in text
    assert "offending blob: 'in1'" in text


def test_binary_schema_and_argument_errors():
    with pytest.raises(SchemaError, match="Input size 3 not in range"):
        run_op("Add", [np.ones(2, F32)] * 3)
    with pytest.raises(ArgumentError, match="Argument broadcast does not have the right"):
        run_op("Add", [np.ones(2, F32)] * 2, broadcast=1.0)
    with pytest.raises(ArgumentError, match="Argument axis does not have the right"):
        run_op("Add", [np.ones(2, F32)] * 2, broadcast=1, axis=1.0)


# --- Add / Sub / Mul / Div: gradients -------------------------------------------------

@pytest.mark.parametrize("op_type", sorted(NP_BINARY))
@pytest.mark.parametrize("a_shape,b_shape,args", [
    ((2, 3), (2, 3), {}),
    ((2, 1, 3), (4, 1), {}),
    ((3,), (2, 3), {}),
    ((2, 3, 2), (3,), {"broadcast": 1, "axis": 1}),
    ((2, 3), (3,), {"broadcast": 1}),
    ((2, 3), (1,), {"broadcast": 1}),
])
def test_binary_gradient(op_type, a_shape, b_shape, args):
    a = away(a_shape)
    b = away(b_shape)
    check_gradient(op_type, [a, b], wrt=[0, 1], **args)


@pytest.mark.parametrize("op_type", sorted(NP_BINARY))
def test_binary_gradient_reduces_to_input_shapes(op_type):
    a, b = away((2, 1, 3)), away((4, 1))
    _, outs, dys, grads, ops = op_grad(op_type, [a, b])
    dc = dys[0].astype(F64)
    a64, b64 = a.astype(F64), b.astype(F64)
    want = {
        "Add": (dc, dc), "Sub": (dc, -dc), "Mul": (dc * b64, dc * a64),
        "Div": (dc / b64, -dc * (a64 / b64) / b64),
    }[op_type]
    # float32 sums of O(1) terms: atol covers sums that cancel to near zero
    np.testing.assert_allclose(grads[0], want[0].sum(axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(grads[1], want[1].sum(axis=(0, 2))[:, None], rtol=1e-5,
                               atol=1e-6)
    assert grads[0].shape == a.shape and grads[1].shape == b.shape


def op_grad(op_type, inputs, **args):
    from tests.opcheck import gradient_of
    return gradient_of(op_type, inputs, **args)


@pytest.mark.parametrize("dtype", [I32, I64, F64])
def test_binary_gradient_ops_other_dtypes(dtype):
    dc, a, b = rand((2, 3), dtype), rand((2, 3), dtype), rand((3,), dtype)
    da, db = run_op("AddGradient", [dc, a, b], outputs=2)
    np.testing.assert_array_equal(da, dc)
    np.testing.assert_array_equal(db, dc.sum(axis=0, dtype=dtype))
    assert da.dtype == dtype and db.dtype == dtype
    da, db = run_op("MulGradient", [dc, a, b], outputs=2)
    np.testing.assert_allclose(da, dc * b)
    np.testing.assert_allclose(db, (dc * a).sum(axis=0, dtype=dtype))


def test_div_gradient_int_golden():
    # golden from real Caffe2 1.10.2: per-element truncating division, then the sum
    a = np.array([[1, -2, 3], [4, 5, -6]], I32)
    b = np.array([1, 2, -4], I32)
    c = run_op("Div", [a, b])[0]
    np.testing.assert_array_equal(c, [[1, -1, 0], [4, 2, 1]])
    dc = np.array([[1, 2, 3], [-4, 5, 6]], I32)
    da, db = run_op("DivGradient", [dc, a, b, c], outputs=2)
    np.testing.assert_array_equal(da, [[1, 1, 0], [-4, 2, -1]])
    np.testing.assert_array_equal(db, [15, -4, 1])


def test_div_gradient_legacy_three_inputs():
    b, a = away((3,)), away((2, 3))
    c = a / b
    dc = rand((2, 3))
    da, db = run_op("DivGradient", [b, c, dc], outputs=2)
    np.testing.assert_allclose(da, dc / b, rtol=1e-6)
    np.testing.assert_allclose(db, (-dc * c / b).sum(axis=0), rtol=1e-5)


def test_binary_gradient_shape_and_devices():
    dc, a, b = rand((2, 4, 3)), rand((2, 1, 3)), rand((4, 1))
    for op_type in ("AddGradient", "SubGradient", "MulGradient"):
        check_shape_inference(op_type, [dc, a, b], outputs=2)
        check_devices(op_type, [dc, a, b], outputs=2)
    c = a / away((4, 1))
    check_shape_inference("DivGradient", [dc, a, away((4, 1)), c + 0 * dc], outputs=2)
    check_devices("DivGradient", [dc, a, away((4, 1)), c + 0 * dc], outputs=2)
    check_shape_inference("AddGradient", [rand((2, 3, 2)), rand((2, 3, 2)), rand(3)],
                          outputs=2, broadcast=1, axis=1)


def test_binary_gradient_op_rejects_wrong_dc_shape():
    op_error("AddGradient", [np.ones(5, F32), np.ones((2, 3), F32), np.ones(3, F32)],
             r"dC has shape \[5\], expected the forward output shape \[2, 3\]", outputs=2)


# --- SumReduceLike --------------------------------------------------------------------

@pytest.mark.parametrize("a_shape,b_shape,args,axes", [
    ((2, 3, 4), (3,), {"axis": 1}, (0, 2)),
    ((2, 3, 4), (3, 4), {}, (0,)),
    ((2, 3, 4), (1, 3, 1), {}, (0, 2)),
    ((2, 3, 4), (1,), {}, (0, 1, 2)),
    ((2, 3, 4, 5), (3,), {"axis_str": "C"}, (0, 2, 3)),
    ((2, 3), (2, 3), {}, ()),
])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_sum_reduce_like(a_shape, b_shape, args, axes, dtype):
    a = rand(a_shape, dtype)
    b = rand(b_shape, I64)  # only B's shape matters
    check_op("SumReduceLike", [a, b],
             lambda a, b: [a.sum(axis=axes).reshape(b_shape).astype(dtype)], **args)


def test_sum_reduce_like_golden_and_errors():
    # golden from real Caffe2 1.10.2
    got = run_op("SumReduceLike", [np.arange(24, dtype=F32).reshape(2, 3, 4),
                                   np.ones((1, 3, 1), F32)])[0]
    np.testing.assert_array_equal(got.ravel(), [60, 92, 124])
    op_error("SumReduceLike", [np.ones(3, I32), np.ones(3, I32)],
             "Unsupported type of tensor: int")
    op_error("SumReduceLike", [np.ones((2, 3, 4), F32), np.ones(5, F32)],
             r"3 vs 5. Broadcast dimension mismatch", axis=1)
    op_error("SumReduceLike", [np.ones(3, F32), np.ones((2, 3), F32)],
             "input1 should have a smaller or equal number of dimensions")


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

WIRING = [
    ("Add", ["A", "B"], ["C"], {},
     [("AddGradient", ["C_grad", "A", "B"], ["A_grad", "B_grad"], [])],
     ["A_grad", "B_grad"]),
    ("Sub", ["A", "B"], ["C"], {"broadcast": 1, "axis": 1},
     [("SubGradient", ["C_grad", "A", "B"], ["A_grad", "B_grad"],
       [("broadcast", 1), ("axis", 1)])],
     ["A_grad", "B_grad"]),
    ("Mul", ["A", "B"], ["C"], {},
     [("MulGradient", ["C_grad", "A", "B"], ["A_grad", "B_grad"], [])],
     ["A_grad", "B_grad"]),
    ("Div", ["A", "B"], ["C"], {"broadcast": 1},
     [("DivGradient", ["C_grad", "A", "B", "C"], ["A_grad", "B_grad"], [("broadcast", 1)])],
     ["A_grad", "B_grad"]),
]


@pytest.mark.parametrize("case", WIRING, ids=wiring_id)
def test_gradient_wiring_matches_caffe2(case):
    check_gradient_wiring(case)


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("Add", [rand((2, 1, 3)), rand((4, 1))], {}),
    ("Sub", [rand((2, 3, 2)), rand((3,))], {"broadcast": 1, "axis": 1}),
    ("Mul", [rand((2, 3), I32), rand((3,), I32)], {}),
    ("Div", [rand((2, 3), F64), away((2, 3), F64)], {}),
    ("SumReduceLike", [rand((2, 3, 4)), rand((3,))], {"axis": 1}),
]


@pytest.mark.parametrize("op_type,inputs,args", DEVICE_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(DEVICE_CASES)])
def test_shape_inference_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)


def test_shape_rules_reject_what_kernels_reject():
    schema = registry.get("Add")
    op = op_def("Add", 2)
    with pytest.raises(EnforceError, match="A_dim: 3,B_dim: 4"):
        schema.shape_fn(schema.parse_args(op), TensorInfo((2, 3)), TensorInfo((4,)))
    schema = registry.get("Sum")
    with pytest.raises(EnforceError, match="Input #1"):
        schema.shape_fn(schema.parse_args(op_def("Sum", 2)), TensorInfo((2, 3)),
                        TensorInfo((3,)))
