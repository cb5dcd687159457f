"""Elementwise family: Add/Sub/Mul/Div, Sum, Mean, Max, Min, Scale, Clip, WeightedSum,
ScatterWeightedSum, Negative/Abs/Exp/Log/Sqrt/Sqr/Pow, SumReduceLike and gradients.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, registry, shape_inference, workspace
from graphnet.devices import Device
from graphnet.errors import ArgumentError, EnforceError, OperatorError, SchemaError
from graphnet.gradient_maker import GradientNotImplementedError, make_gradient
from graphnet.registry import KernelContext, TensorInfo
from graphnet.executors.backends import NUMPY
from tests.opcheck import (check_devices, check_gradient, check_op, check_reference,
                           check_shape_inference, gpu, op_def, run_op)

RNG = np.random.default_rng(0)
F32, F64, I32, I64 = np.float32, np.float64, np.int32, np.int64


def rand(shape, dtype=F32, low=-5.0, high=5.0):
    x = RNG.uniform(low, high, shape)
    if np.dtype(dtype).kind == "i":
        x = np.round(x)
    return x.astype(dtype)


def away(shape, dtype=F32, lo=0.5, hi=2.0):
    """Values with |x| in [lo, hi] and random sign (away from 0 and from kinks)."""
    mag = RNG.uniform(lo, hi, shape)
    return (mag * RNG.choice([-1.0, 1.0], shape)).astype(dtype)


def trunc_div(a, b):
    """C++ integer division (toward zero), independent of the kernel's method."""
    return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)


NP_BINARY = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b if a.dtype.kind == "f" else trunc_div(a, b),
}


def op_error(op_type, inputs, match, outputs=1, **args):
    with pytest.raises(OperatorError, match=match):
        run_op(op_type, inputs, outputs, **args)


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
    np.testing.assert_allclose(grads[0], want[0].sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(grads[1], want[1].sum(axis=(0, 2))[:, None], rtol=1e-5)
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
    ("Sum", ["X0", "X1", "X2"], ["Y"], {}, [], ["Y_grad", "Y_grad", "Y_grad"]),
    ("Scale", ["X"], ["Y"], {"scale": 2.5},
     [("Scale", ["Y_grad"], ["X_grad"], [("scale", 2.5)])], ["X_grad"]),
    ("Clip", ["X"], ["Y"], {"min": -1.0, "max": 1.0},
     [("ClipGradient", ["Y", "Y_grad"], ["X_grad"], [("min", -1.0), ("max", 1.0)])],
     ["X_grad"]),
    ("WeightedSum", ["X0", "w0", "X1", "w1"], ["Y"], {},
     [("WeightedSumGradient", ["Y_grad", "X0", "w0", "X1", "w1"], ["X0_grad", "X1_grad"],
       [])],
     ["X0_grad", None, "X1_grad", None]),
    ("WeightedSum", ["X0", "w0", "X1", "w1"], ["Y"], {"grad_on_w": 1},
     [("WeightedSumGradient", ["Y_grad", "X0", "w0", "X1", "w1"],
       ["X0_grad", "X1_grad", "w0_grad", "w1_grad"], [("grad_on_w", 1)])],
     ["X0_grad", "w0_grad", "X1_grad", "w1_grad"]),
    ("Negative", ["X"], ["Y"], {}, [("Negative", ["Y_grad"], ["X_grad"], [])], ["X_grad"]),
    ("Abs", ["X"], ["Y"], {}, [("AbsGradient", ["X", "Y_grad"], ["X_grad"], [])],
     ["X_grad"]),
    ("Exp", ["X"], ["Y"], {}, [("Mul", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    ("Log", ["X"], ["Y"], {}, [("Div", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    ("Sqrt", ["X"], ["Y"], {},
     [("Scale", ["Y_grad"], ["X_grad"], [("scale", 0.5)]),
      ("Div", ["X_grad", "Y"], ["X_grad"], [])], ["X_grad"]),
    ("Sqr", ["X"], ["Y"], {},
     [("Scale", ["Y_grad"], ["Y_grad"], [("scale", 2.0)]),
      ("Mul", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    ("Pow", ["X"], ["Y"], {"exponent": 3.0},
     [("Pow", ["X"], ["X_grad"], [("exponent", 2.0)]),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Scale", ["X_grad"], ["X_grad"], [("scale", 3.0)])], ["X_grad"]),
    ("Pow", ["X"], ["X"], {"exponent": 3.0},
     [("Pow", ["X"], ["X_grad"], [("exponent", 0.666666687)]),
      ("Mul", ["X_grad", "X_grad"], ["X_grad"], []),
      ("Scale", ["X_grad"], ["X_grad"], [("scale", 3.0)])], ["X_grad"]),
    ("Pow", ["X", "E"], ["Y"], {},
     [("ConstantFill", ["E"], ["E_grad"], [("value", 1.0)]),
      ("Sub", ["E", "E_grad"], ["E_grad"], []),
      ("Pow", ["X", "E_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "E"], ["X_grad"], []),
      ("Log", ["X"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y_grad"], ["E_grad"], [])],
     ["X_grad", "E_grad"]),
    ("Pow", ["X", "E"], ["Y"], {"broadcast": 1, "axis": 0},
     [("ConstantFill", ["E"], ["E_grad"], [("value", 1.0)]),
      ("Sub", ["E", "E_grad"], ["E_grad"], []),
      ("Pow", ["X", "E_grad"], ["X_grad"],
       [("broadcast", 1), ("axis", 0), ("axis_str", ""), ("order", "NCHW")]),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "E"], ["X_grad"],
       [("broadcast", 1), ("axis", 0), ("axis_str", ""), ("order", "NCHW")]),
      ("Log", ["X"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y_grad"], ["E_grad_autogen_pre_red"], []),
      ("SumReduceLike", ["E_grad_autogen_pre_red", "E"], ["E_grad"],
       [("axis", 0), ("axis_str", ""), ("order", "NCHW")])],
     ["X_grad", "E_grad"]),
    ("Mean", ["X0", "X1"], ["Y"], {},
     [("MeanGradient", ["Y_grad"], ["X0_grad", "X1_grad"], [])], ["X0_grad", "X1_grad"]),
    ("Max", ["X0", "X1", "X2"], ["Y"], {},
     [("MaxGradient", ["Y", "Y_grad", "X0", "X1", "X2"], ["X0_grad", "X1_grad", "X2_grad"],
       [])], ["X0_grad", "X1_grad", "X2_grad"]),
    ("Min", ["X0", "X1"], ["Y"], {},
     [("MinGradient", ["Y", "Y_grad", "X0", "X1"], ["X0_grad", "X1_grad"], [])],
     ["X0_grad", "X1_grad"]),
]


def _arg_value(a):
    for field in ("f", "i", "s"):
        if a.HasField(field):
            value = getattr(a, field)
            return round(value, 9) if field == "f" else (
                value.decode() if field == "s" else value)
    return None


@pytest.mark.parametrize("case", WIRING, ids=lambda c: "%s%d%s" % (
    c[0], len(c[1]), "".join(sorted(c[3]))))
def test_gradient_wiring_matches_caffe2(case):
    op_type, ins, outs, args, want_ops, want_gi = case
    op = core.CreateOperator(op_type, ins, outs, **args)
    ops, g_input = make_gradient(op, [o + "_grad" for o in outs])
    got = [(o.type, list(o.input), list(o.output),
            [(a.name, _arg_value(a)) for a in o.arg]) for o in ops]
    assert got == [tuple(w) for w in want_ops]
    assert list(g_input) == want_gi
    assert all(o.is_gradient_op for o in ops)


def test_pow_gradient_refusals():
    # golden texts from real Caffe2 1.10.2
    op = core.CreateOperator("Pow", ["X", "E"], ["X"])
    with pytest.raises(EnforceError, match="Gradient computation cannot be carried out if "
                                           "Pow uses in-place computation"):
        make_gradient(op, ["X_grad"])
    op = core.CreateOperator("Pow", ["X"], ["X"], exponent=0.0)
    with pytest.raises(EnforceError, match=r"std::fabs\(exponent\) > kEps"):
        make_gradient(op, ["X_grad"])


# --- Sum ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64, I32, I64])
@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("shape", [(3, 4), (), (0, 2)])
def test_sum_reference(dtype, n, shape):
    xs = [rand(shape, dtype) for _ in range(n)]
    check_op("Sum", xs, lambda *xs: [np.sum(np.stack(xs), axis=0).astype(dtype)])


@pytest.mark.parametrize("inputs,match", [
    ([np.ones((2, 3), F32), np.ones((2, 3), F32), np.ones((3, 2), F32)],
     r"Check failed: output->sizes\(\) == Input\(i\).sizes\(\).Description: Input #2, "
     r"input dimension:\[3, 2\] should match output dimension: \[2, 3\]"),
    ([np.ones((2, 3), F32), np.ones(6, F32)],
     r"Input #1, input dimension:\[6\] should match output dimension: \[2, 3\]"),
    ([np.ones(2, F32), np.ones(2, F64)],
     "caller expects elements to be float, while tensor contains double"),
    ([np.ones(2, np.bool_)], "Unsupported type of tensor: bool"),
    ([np.ones(2, np.float16), np.ones(2, np.float16)],
     "Unsupported type of tensor: c10::Half"),
])
def test_sum_errors(inputs, match):
    op_error("Sum", inputs, match)


def test_sum_in_place_rules():
    ws = workspace.Workspace()
    ws.FeedBlob("a", np.ones(3, F32))
    ws.FeedBlob("b", np.full(3, 2, F32))
    ws.RunOperatorOnce(core.CreateOperator("Sum", ["a", "b"], ["a"]))
    np.testing.assert_array_equal(ws.FetchBlob("a"), [3, 3, 3])
    with pytest.raises(SchemaError, match="Input index 1 and output idx 0 .* not "
                                          "supported"):
        ws.RunOperatorOnce(core.CreateOperator("Sum", ["a", "b"], ["b"]))


def test_sum_inputs_cross_devices():
    ws = workspace.Workspace()
    xs = [rand((2, 3)) for _ in range(3)]
    for name, x, d in zip("abc", xs, (0, 1, 3)):
        ws.FeedBlob(name, x, device_option=gpu(d))
    ws.RunOperatorOnce(core.CreateOperator("Sum", ["a", "b", "c"], ["s"],
                                           device_option=gpu(2)))
    assert ws.BlobDevice("s") == Device(1, 2)
    np.testing.assert_allclose(ws.FetchBlob("s"), xs[0] + xs[1] + xs[2], rtol=1e-6)


def test_sum_gradient():
    xs = [rand((2, 3)) for _ in range(3)]
    grads = check_gradient("Sum", xs, wrt=[0, 1, 2])
    np.testing.assert_array_equal(grads[0], grads[2])


# --- Mean / Max / Min -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 3])
def test_mean_reference(dtype, n):
    xs = [rand((3, 2), dtype) for _ in range(n)]
    check_op("Mean", xs, lambda *xs: [np.mean(np.stack(xs), axis=0).astype(dtype)])
    check_op("Mean", [rand((0, 2), dtype)] * n, lambda *xs: [np.zeros((0, 2), dtype)])


def test_mean_scales_by_float32_reciprocal():
    # golden from real Caffe2 1.10.2: 1/n is a C++ float even for doubles
    got = run_op("Mean", [np.ones(1, F64)] * 3)[0]
    assert got.tolist() == [1.0000000298023224]
    got = run_op("MeanGradient", [np.ones(1, F64)], outputs=3)
    assert [g.tolist() for g in got] == [[0.3333333432674408]] * 3


@pytest.mark.parametrize("inputs,match", [
    ([np.ones(2, I32), np.ones(2, I32)],
     "Mean operator only supports 32-bit float or 64-bit double, but input was of "
     "type int"),
    ([np.ones((2, 3), F32), np.ones((3, 2), F32)],
     r"Input #1, input dimension:\[3, 2\] should match output dimension: \[2, 3\]"),
    ([np.ones(2, F32), np.ones(2, F64)],
     "caller expects elements to be float, while tensor contains double"),
])
def test_mean_errors(inputs, match):
    op_error("Mean", inputs, match)


def test_mean_gradient():
    xs = [rand((2, 3)) for _ in range(3)]
    check_gradient("Mean", xs, wrt=[0, 1, 2])
    dy = rand((2, 3))
    got = run_op("MeanGradient", [dy], outputs=2)
    for g in got:
        np.testing.assert_allclose(g, dy / 2, rtol=1e-6)
    check_devices("MeanGradient", [dy], outputs=2)


def test_mean_gradient_shape_inference_every_output():
    net = core.Net("n")
    net.MeanGradient(["dy"], ["g0", "g1", "g2"])
    infos = shape_inference.infer([net.Proto()], {"dy": TensorInfo((4, 2), F64)})
    assert [infos["g%d" % k] for k in range(3)] == [TensorInfo((4, 2), F64)] * 3


NP_SELECT = {"Max": np.maximum.reduce, "Min": np.minimum.reduce}


@pytest.mark.parametrize("op_type", ["Max", "Min"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_select_reference(op_type, n):
    xs = [rand((3, 4)) for _ in range(n)]
    check_op(op_type, xs, lambda *xs: [NP_SELECT[op_type](list(xs))])
    check_op(op_type, [rand((0, 4))] * n, lambda *xs: [np.zeros((0, 4), F32)])


def test_select_nan_golden():
    # golden from real Caffe2 1.10.2: a NaN in the running value stays, a later one drops
    a, b = np.array([np.nan, 1, 2], F32), np.array([1, np.nan, 3], F32)
    np.testing.assert_array_equal(run_op("Max", [a, b])[0], [np.nan, 1, 3])
    np.testing.assert_array_equal(run_op("Min", [a, b])[0], [np.nan, 1, 2])


@pytest.mark.parametrize("op_type", ["Max", "Min"])
def test_select_errors_and_in_place(op_type):
    op_error(op_type, [np.ones(2, F64), np.ones(2, F64)],
             "caller expects elements to be float, while tensor contains double")
    op_error(op_type, [np.ones(2, I32)],
             "caller expects elements to be float, while tensor contains int")
    # Caffe2 skipped this check for input #1 and read out of bounds; we report it
    op_error(op_type, [np.ones((2, 3), F32), np.ones((3, 2), F32)],
             r"Input #1, input dimension:\[3, 2\] should match output dimension: \[2, 3\]")
    ws = workspace.Workspace()
    ws.FeedBlob("a", np.array([1, 5], F32))
    ws.FeedBlob("b", np.array([4, 2], F32))
    ws.RunOperatorOnce(core.CreateOperator(op_type, ["a", "b"], ["a"]))
    np.testing.assert_array_equal(ws.FetchBlob("a"), [4, 5] if op_type == "Max" else [1, 2])
    with pytest.raises(SchemaError, match="Input index 1 and output idx 0"):
        ws.RunOperatorOnce(core.CreateOperator(op_type, ["a", "b"], ["b"]))


@pytest.mark.parametrize("op_type", ["Max", "Min"])
def test_select_gradient(op_type):
    base = rand((2, 3))
    stacked = RNG.permuted(np.stack([base, base + 0.9, base - 0.8]), axis=0)  # no ties
    xs = [stacked[k].astype(F32) for k in range(3)]
    check_gradient(op_type, xs, wrt=[0, 1, 2])


def test_max_gradient_ties_golden():
    # golden from real Caffe2 1.10.2: every input equal to Y gets dY
    y, dy = np.array([2, 2, 1], F32), np.array([1, 1, 1], F32)
    xs = [np.array([2, 1, 1], F32), np.array([2, 2, 0], F32), np.array([0, 2, 1], F32)]
    got = run_op("MaxGradient", [y, dy] + xs, outputs=3)
    np.testing.assert_array_equal(np.stack(got), [[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    check_shape_inference("MinGradient", [y, dy] + xs, outputs=3)
    check_devices("MaxGradient", [y, dy] + xs, outputs=3)


# --- Scale / Clip ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("args", [{}, {"scale": -2.5}, {"scale": 0.0}])
def test_scale_reference(dtype, args):
    x = rand((3, 4), dtype)
    s = np.float32(args.get("scale", 1.0))
    check_op("Scale", [x], lambda x: [(x * dtype(s)).astype(dtype)], **args)
    check_op("Scale", [rand((0,), dtype)], lambda x: [x.copy()], **args)


def test_scale_golden_and_errors():
    # golden from real Caffe2 1.10.2: the float `scale` is widened for doubles
    got = run_op("Scale", [np.array([3.0])], scale=0.1)[0]
    assert got.tolist() == [0.30000000447034836]
    with pytest.raises(ArgumentError, match="Argument scale does not have the right field"):
        run_op("Scale", [np.ones(2, F32)], scale=2)
    op_error("Scale", [np.ones(2, I32)], "Unsupported type of tensor: int")
    ws = workspace.Workspace()
    ws.FeedBlob("x", np.array([1, 2], F32))
    ws.RunOperatorOnce(core.CreateOperator("Scale", ["x"], ["x"], scale=3.0))
    np.testing.assert_array_equal(ws.FetchBlob("x"), [3, 6])


@pytest.mark.parametrize("dtype", [F32, F64])
def test_scale_gradient(dtype):
    check_gradient("Scale", [rand((2, 3), dtype)], wrt=[0], scale=-1.5)


@pytest.mark.parametrize("args", [{"min": -1.0, "max": 2.0}, {"min": 0.5}, {"max": -0.5},
                                  {}, {"min": 1.0, "max": -1.0}])
def test_clip_reference(args):
    x = rand((4, 5))
    low, high = args.get("min", -np.inf), args.get("max", np.inf)
    check_op("Clip", [x], lambda x: [np.minimum(np.maximum(x, F32(low)), F32(high))],
             **args)


def test_clip_golden_special_values():
    # golden from real Caffe2 1.10.2: absent bounds are the float range, NaN bound no-op
    x = np.array([-np.inf, np.inf, 1, np.nan], F32)
    fmax = np.finfo(F32).max
    np.testing.assert_array_equal(run_op("Clip", [x])[0], [-fmax, fmax, 1, np.nan])
    got = run_op("Clip", [np.array([2, -2], F32)], min=float("nan"), max=1.0)[0]
    np.testing.assert_array_equal(got, [1, -2])


def test_clip_errors_and_in_place():
    op_error("Clip", [np.ones(2, F64)],
             "caller expects elements to be float, while tensor contains double")
    with pytest.raises(ArgumentError, match="Argument min does not have the right field"):
        run_op("Clip", [np.ones(2, F32)], min=-1)
    ws = workspace.Workspace()
    ws.FeedBlob("x", np.array([-3, 0.5, 3], F32))
    ws.RunOperatorOnce(core.CreateOperator("Clip", ["x"], ["x"], min=-1.0, max=1.0))
    np.testing.assert_array_equal(ws.FetchBlob("x"), [-1, 0.5, 1])


def test_clip_gradient():
    x = away((3, 4), lo=0.2, hi=2.0)
    x = np.where(np.abs(np.abs(x) - 1.0) < 0.1, x * 1.3, x).astype(F32)  # off the bounds
    check_gradient("Clip", [x], wrt=[0], min=-1.0, max=1.0)


def test_clip_gradient_strict_at_bounds():
    # golden from real Caffe2 1.10.2: Y sitting exactly on a bound gets no gradient
    y, dy = np.array([0.1, 0.17, 0.15], F32), np.ones(3, F32)
    got = run_op("ClipGradient", [y, dy], min=0.1, max=0.17)[0]
    np.testing.assert_array_equal(got, [0, 0, 1])
    got = run_op("ClipGradient", [np.array([-1, 0, 1, 0.5], F32), np.full(4, 5, F32)],
                 max=1.0)[0]
    np.testing.assert_array_equal(got, [5, 5, 0, 5])
    check_shape_inference("ClipGradient", [y, dy], min=0.1)
    check_devices("ClipGradient", [y, dy], max=0.16)


# --- unary math -----------------------------------------------------------------------

UNARY = {
    # op: (numpy reference in float64, accepted dtypes, domain sampler)
    "Negative": (lambda x: -x, [F32, F64, I32, I64], lambda s, d: rand(s, d)),
    "Abs": (np.abs, [F32], lambda s, d: away(s, d)),
    "Exp": (np.exp, [F32], lambda s, d: rand(s, d, -3, 3)),
    "Log": (np.log, [F32], lambda s, d: rand(s, d, 0.2, 5)),
    "Sqrt": (np.sqrt, [F32, F64], lambda s, d: rand(s, d, 0.2, 5)),
    "Sqr": (np.square, [F32], lambda s, d: rand(s, d)),
}


@pytest.mark.parametrize("op_type", sorted(UNARY))
@pytest.mark.parametrize("shape", [(3, 4), (), (0, 2)])
def test_unary_reference(op_type, shape):
    ref, dtypes, sample = UNARY[op_type]
    for dtype in dtypes:
        x = sample(shape, dtype)
        check_op(op_type, [x], lambda x: [ref(x.astype(F64) if x.dtype.kind == "f" else x)
                                          .astype(x.dtype)])


@pytest.mark.parametrize("op_type", sorted(UNARY))
def test_unary_rejected_dtypes(op_type):
    accepted = UNARY[op_type][1]
    for dtype in (F64, I32, np.float16, np.bool_):
        if dtype not in accepted:
            op_error(op_type, [np.ones(2, dtype)], "Unsupported type of tensor: %s" % {
                F64: "double", I32: "int", np.float16: "c10::Half",
                np.bool_: "bool"}[dtype])


@pytest.mark.parametrize("op_type", sorted(UNARY))
def test_unary_in_place_rules(op_type):
    ws = workspace.Workspace()
    ws.FeedBlob("x", np.array([1.5, 2.0], F32))
    op = core.CreateOperator(op_type, ["x"], ["x"])
    if op_type == "Abs":  # Caffe2's Abs schema has no in-place
        with pytest.raises(SchemaError, match="Input index 0 and output idx 0"):
            ws.RunOperatorOnce(op)
        return
    ws.RunOperatorOnce(op)
    want = UNARY[op_type][0](np.array([1.5, 2.0]))
    np.testing.assert_allclose(ws.FetchBlob("x"), want, rtol=1e-6)


def test_unary_special_values_golden():
    # golden from real Caffe2 1.10.2: Log(-1)=nan, Log(0)=-inf, Sqrt(-1)=nan, silently
    got = run_op("Log", [np.array([-1, 0], F32)])[0]
    np.testing.assert_array_equal(got, [np.nan, -np.inf])
    np.testing.assert_array_equal(run_op("Sqrt", [np.array([-1, 0], F32)])[0], [np.nan, 0])


@pytest.mark.parametrize("op_type", sorted(UNARY))
def test_unary_gradient(op_type):
    ref, dtypes, sample = UNARY[op_type]
    for dtype in dtypes:
        if np.dtype(dtype).kind == "f":
            check_gradient(op_type, [sample((2, 3), dtype)], wrt=[0])


def test_abs_gradient_golden():
    # golden from real Caffe2 1.10.2: 0 at X == 0, -dY for NaN
    got = run_op("AbsGradient", [np.array([-2, 0, 3, np.nan], F32), np.full(4, 5, F32)])[0]
    np.testing.assert_array_equal(got, [-5, 0, 5, -5])
    check_shape_inference("AbsGradient", [rand(3), rand(3)])
    check_devices("AbsGradient", [rand(3), rand(3)])


# --- Pow / SumReduceLike --------------------------------------------------------------

@pytest.mark.parametrize("exponent", [2.0, 3.0, 0.5, -1.5, 0.0])
def test_pow_exponent_reference(exponent):
    x = rand((3, 4), F32, 0.2, 3)
    check_op("Pow", [x], lambda x: [np.power(x.astype(F64), exponent).astype(F32)],
             exponent=exponent)


def test_pow_goldens():
    # golden from real Caffe2 1.10.2
    got = run_op("Pow", [np.array([-2, 0.5, 3], F32)], exponent=3.0)[0]
    np.testing.assert_array_equal(got, [-8, 0.125, 27])
    got = run_op("Pow", [np.arange(1, 7, dtype=F32).reshape(2, 3), np.array([0.5, 2], F32)],
                 broadcast=1, axis=0)[0]
    np.testing.assert_allclose(got, [[1, 1.4142135381698608, 1.7320507764816284],
                                     [16, 25, 36]], rtol=1e-7)
    assert np.isnan(run_op("Pow", [np.array([-8], F32)], exponent=0.5)[0][0])


@pytest.mark.parametrize("x_shape,e_shape,args,e_view", [
    ((3, 4), (3, 4), {}, (3, 4)),
    ((2, 3, 4), (3,), {"broadcast": 1, "axis": 1}, (1, 3, 1)),
    ((2, 3), (3,), {"broadcast": 1}, (1, 3)),
    ((2, 3), (1,), {"broadcast": 1}, (1, 1)),
])
def test_pow_two_inputs(x_shape, e_shape, args, e_view):
    x, e = rand(x_shape, F32, 0.3, 2), rand(e_shape, F32, -2, 2)
    check_op("Pow", [x, e], lambda x, e: [np.power(x.astype(F64), e.reshape(e_view))
                                          .astype(F32)], rtol=1e-5, **args)


def test_pow_argument_errors():
    with pytest.raises(ArgumentError, match="Only a tensor with an argument or two input "
                                            "tensors"):
        run_op("Pow", [np.ones(2, F32)])
    with pytest.raises(ArgumentError, match="Do not specify axis or axis_str if broadcast "
                                            "is not enabled"):
        run_op("Pow", [np.ones((2, 3), F32), np.ones(3, F32)], axis=1)
    run_op("Pow", [np.ones(2, F32)], exponent=2.0, axis=1)  # one input: axis unused


@pytest.mark.parametrize("inputs,args,match", [
    ([np.ones((2, 3), F32), np.ones(3, F32)], {},
     r"\[2, 3\] vs \[3\]. Dimension mismatch - did you forget to set broadcast=1?"),
    ([np.ones(2, F64)], {"exponent": 2.0}, "Unsupported type of tensor: double"),
    ([np.ones(2, F32), np.ones(2, F64)], {"broadcast": 1},
     "caller expects elements to be float, while tensor contains double"),
])
def test_pow_errors(inputs, args, match):
    op_error("Pow", inputs, match, **args)


def test_pow_in_place_rules():
    ws = workspace.Workspace()
    ws.FeedBlob("x", np.array([2, 3], F32))
    ws.FeedBlob("e", np.array([2, 3], F32))
    ws.RunOperatorOnce(core.CreateOperator("Pow", ["x", "e"], ["x"]))
    np.testing.assert_array_equal(ws.FetchBlob("x"), [4, 27])
    with pytest.raises(OperatorError, match="In-place is allowed only with the first "
                                            "tensor when broadcasting"):
        ws.RunOperatorOnce(core.CreateOperator("Pow", ["x", "e"], ["e"], broadcast=1))
    with pytest.raises(ArgumentError, match="Argument exponent does not have the right"):
        run_op("Pow", [np.ones(2, F32)], exponent=2)


@pytest.mark.parametrize("exponent", [2.0, 3.0, -1.5, 0.5])
def test_pow_gradient(exponent):
    check_gradient("Pow", [rand((2, 3), F32, 0.5, 2)], wrt=[0], exponent=exponent)


def test_pow_gradient_in_place():
    """The in-place maker raises Y to (e-1)/e, which is X ** (e-1)."""
    ws = workspace.Workspace()
    x = rand((2, 3), F32, 0.5, 2)
    ws.FeedBlob("x", x)
    op = core.CreateOperator("Pow", ["x"], ["x"], exponent=3.0)
    ws.RunOperatorOnce(op)
    dy = rand((2, 3))
    ws.FeedBlob("y_grad", dy)  # not "x_grad": the first gradient op writes that name
    ops, _ = make_gradient(op, ["y_grad"])
    ws.RunOperatorsOnce(ops)
    np.testing.assert_allclose(ws.FetchBlob("x_grad"), 3 * x.astype(F64) ** 2 * dy,
                               rtol=1e-4)


@pytest.mark.skipif(not registry.is_registered("ConstantFill"),
                    reason="Pow's two-input gradient needs ConstantFill (fillers family)")
@pytest.mark.parametrize("e_shape,args", [((2, 3), {}), ((3,), {"broadcast": 1})])
def test_pow_two_input_gradient(e_shape, args):
    x, e = rand((2, 3), F32, 0.5, 2), rand(e_shape, F32, -1.5, 1.5)
    check_gradient("Pow", [x, e], wrt=[0, 1], **args)


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


# --- WeightedSum ----------------------------------------------------------------------

def np_weighted_sum(*xs):
    out = np.zeros(xs[0].shape, F64)
    for k in range(0, len(xs), 2):
        out += float(xs[k + 1].reshape(())) * xs[k].astype(F64).reshape(xs[0].shape)
    return [out.astype(F32)]


@pytest.mark.parametrize("pairs", [1, 2, 3])
def test_weighted_sum_reference(pairs):
    xs = []
    for _ in range(pairs):
        xs += [rand((3, 4)), rand((1,))]
    check_op("WeightedSum", xs, np_weighted_sum)


def test_weighted_sum_shapes():
    # golden from real Caffe2 1.10.2: X_i only needs X_0's element count; 0-d weights work
    got = run_op("WeightedSum", [np.array([1, 2], F32), np.array([0.5], F32),
                                 np.array([[3], [4]], F32), np.array(2, F32)])[0]
    np.testing.assert_array_equal(got, [6.5, 9])
    check_op("WeightedSum", [np.zeros((0, 3), F32), np.ones(1, F32), np.zeros((0, 3), F32),
                             np.ones(1, F32)], lambda *xs: [np.zeros((0, 3), F32)])


@pytest.mark.parametrize("inputs,match", [
    ([np.ones(2, F32), np.ones(2, F32)], r"weight0.numel\(\) == 1. 2 vs 1.*input 1"),
    ([np.ones(2, F32), np.ones(1, F32), np.ones(2, F32), np.ones(2, F32)],
     r"weight1.numel\(\) == 1. 2 vs 1.*input 3"),
    ([np.ones(6, F32), np.ones(1, F32), np.ones(5, F32), np.ones(1, F32)],
     r"X1.numel\(\) == size. 5 vs 6"),
    ([np.ones(2, F64), np.ones(1, F32)],
     "caller expects elements to be float, while tensor contains double"),
    ([np.ones(2, F32), np.ones(1, F64)],
     "caller expects elements to be float, while tensor contains double"),
    ([np.ones(2, F32), np.ones(1, F32), np.ones(2, I32), np.ones(1, F32)],
     "caller expects elements to be float, while tensor contains int"),
])
def test_weighted_sum_errors(inputs, match):
    op_error("WeightedSum", inputs, match)


def test_weighted_sum_in_place_rules():
    ws = workspace.Workspace()
    ws.FeedBlob("x", np.array([1, 2], F32))
    ws.FeedBlob("w", np.array([2], F32))
    ws.FeedBlob("g", np.array([10, 20], F32))
    ws.FeedBlob("lr", np.array([-0.5], F32))
    ws.RunOperatorOnce(core.CreateOperator("WeightedSum", ["x", "w", "g", "lr"], ["x"]))
    np.testing.assert_array_equal(ws.FetchBlob("x"), [-3, -6])
    with pytest.raises(SchemaError, match="Input index 2 and output idx 0"):
        ws.RunOperatorOnce(core.CreateOperator("WeightedSum", ["x", "w", "g", "lr"], ["g"]))
    with pytest.raises(SchemaError, match="Input size 3 not in allowed input sizes"):
        run_op("WeightedSum", [np.ones(2, F32)] * 3)


def test_weighted_sum_kernel_names_in_place_misuse():
    """The kernel's own check (behind the schema's) keeps Caffe2's message."""
    op = core.CreateOperator("WeightedSum", ["x", "w", "g", "lr"], ["g"])
    ctx = KernelContext(NUMPY, Device(0, 0), op)
    kernel = registry.get("WeightedSum").kernel_for("numpy")
    args = registry.get("WeightedSum").parse_args(op)
    with pytest.raises(EnforceError, match="Input #2 is the same as output. If you "
                                           "want to do in-place updates, put the output "
                                           "as input #0."):
        kernel(ctx, args, *[np.ones(1, F32)] * 4)


@pytest.mark.parametrize("grad_on_w", [0, 1])
def test_weighted_sum_gradient(grad_on_w):
    xs = [rand((2, 3)), np.array([0.7], F32), rand((2, 3)), np.array([-1.3], F32)]
    wrt = [0, 1, 2, 3] if grad_on_w else [0, 2]
    grads = check_gradient("WeightedSum", xs, wrt=wrt, grad_on_w=grad_on_w)
    if not grad_on_w:
        assert 1 not in grads and 3 not in grads
    else:
        assert grads[1].shape == (1,)


def test_weighted_sum_gradient_op():
    dy, x0, x1 = rand((2, 3)), rand((2, 3)), rand((2, 3))
    w0, w1 = np.array([2], F32), np.array([3], F32)
    got = run_op("WeightedSumGradient", [dy, x0, w0, x1, w1], outputs=4, grad_on_w=1)
    np.testing.assert_allclose(got[0], 2 * dy, rtol=1e-6)
    np.testing.assert_allclose(got[1], 3 * dy, rtol=1e-6)
    np.testing.assert_allclose(got[2], [np.sum(dy * x0)], rtol=1e-5)
    np.testing.assert_allclose(got[3], [np.sum(dy * x1)], rtol=1e-5)
    check_shape_inference("WeightedSumGradient", [dy, x0, w0, x1, w1], outputs=4,
                          grad_on_w=1)
    check_devices("WeightedSumGradient", [dy, x0, w0, x1, w1], outputs=2, rtol=1e-6)
    # golden text from real Caffe2 1.10.2
    op_error("WeightedSumGradient", [dy, x0, w0, x1, w1], r"OutputSize\(\) == output_size. "
             "2 vs 4", outputs=2, grad_on_w=1)


# --- ScatterWeightedSum ---------------------------------------------------------------

def np_scatter_weighted_sum(x0, w0, idx, *pairs):
    """Caffe2's algorithm, one occurrence at a time, written independently."""
    out = x0.astype(F64).reshape(x0.shape[0], -1)
    flat = idx.reshape(-1)
    if float(w0.reshape(())) != 1.0:
        for i in flat:
            out[i] *= float(w0.reshape(()))
    for k in range(0, len(pairs), 2):
        rows = pairs[k].astype(F64).reshape(len(flat), -1)
        for i, r in enumerate(flat):
            out[r] += float(pairs[k + 1].reshape(())) * rows[i]
    return out.reshape(x0.shape).astype(x0.dtype)


def run_sws(inputs):
    return run_op("ScatterWeightedSum", inputs, outputs=["in0"])[0]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("idx_dtype", [I32, I64])
@pytest.mark.parametrize("w0", [1.0, 0.5])
def test_scatter_weighted_sum_reference(dtype, idx_dtype, w0):
    x0 = rand((5, 2, 2), dtype)
    idx = np.array([3, 0, 3, 4, 3], idx_dtype)  # duplicates scale and add repeatedly
    inputs = [x0, np.array([w0], F32), idx, rand((5, 2, 2), dtype), np.array([1.5], F32),
              rand((5, 4), dtype), np.array([-0.25], F32)]
    got = run_sws(inputs)
    np.testing.assert_allclose(got, np_scatter_weighted_sum(*inputs), rtol=1e-5, atol=1e-5)
    assert got.dtype == dtype


def test_scatter_weighted_sum_goldens():
    # golden from real Caffe2 1.10.2
    e = np.arange(12, dtype=F32).reshape(4, 3)
    got = run_sws([e, np.array([2], F32), np.array([1, 3, 1], I32),
                   np.arange(9, dtype=F32).reshape(3, 3) * 0.5, np.array([0.5], F32),
                   np.ones((3, 3), F32), np.array([-1.5], F32)])
    np.testing.assert_array_equal(got, [[0, 1, 2], [10.5, 15, 19.5], [6, 7, 8],
                                        [17.25, 19.5, 21.75]])
    got = run_sws([e, np.array([1], F32), np.array([2, 2], I64), np.ones((2, 3), F32),
                   np.array([3], F32)])
    np.testing.assert_array_equal(got[2], [12, 13, 14])
    got = run_sws([np.ones((2, 1)), np.array([0.1], F32), np.array([0]), np.ones(1),
                   np.array([0.1], F32)])
    assert got.ravel().tolist() == [0.20000000298023224, 1.0]


def test_scatter_weighted_sum_edge_cases():
    e = rand((4, 3))
    # 2-D indices and flat updates: only element counts matter
    idx = np.array([[1, 3]], I32)
    inputs = [e, np.array([2], F32), idx, rand(6), np.array([0.5], F32)]
    np.testing.assert_allclose(run_sws(inputs), np_scatter_weighted_sum(*inputs), rtol=1e-6)
    # no indices: unchanged
    got = run_sws([e, np.array([2], F32), np.zeros(0, I32), np.zeros((0, 3), F32),
                   np.array([0.5], F32)])
    np.testing.assert_array_equal(got, e)
    # empty X_0: a no-op whatever the rest holds (as in Caffe2)
    got = run_sws([np.zeros((0, 3), F32), np.array([2], F32), np.array([7], I32),
                   np.ones((1, 3), F32), np.array([0.5], F32)])
    assert got.shape == (0, 3)


@pytest.mark.parametrize("idx,match", [
    ([1, 4], "Index out of bounds: 4, range 0 to 4"),
    ([1, -1], "Index out of bounds: -1, range 0 to 4"),
])
@pytest.mark.parametrize("w0", [2.0, 1.0])
def test_scatter_weighted_sum_bounds_leave_blob_untouched(idx, match, w0):
    ws = workspace.Workspace()
    e = rand((4, 3))
    for name, value in (("e", e), ("w0", np.array([w0], F32)), ("i", np.array(idx, I64)),
                        ("v", rand((2, 3))), ("w1", np.array([0.5], F32))):
        ws.FeedBlob(name, value)
    with pytest.raises(OperatorError, match=match):
        ws.RunOperatorOnce(core.CreateOperator("ScatterWeightedSum",
                                               ["e", "w0", "i", "v", "w1"], ["e"]))
    np.testing.assert_array_equal(ws.FetchBlob("e"), e)


@pytest.mark.parametrize("inputs,match", [
    ([np.ones((4, 3), I32), np.ones(1, F32), np.array([1], I32), np.ones((1, 3), I32),
      np.ones(1, F32)], "Unsupported type of tensor X_0: int"),
    ([np.ones((4, 3), F32), np.ones(1, F32), np.array([1], F32), np.ones((1, 3), F32),
      np.ones(1, F32)], "Unsupported type of tensor: float"),
    ([np.ones((4, 3), F32), np.ones(1, F32), np.array([1, 2], I32), np.ones((1, 3), F32),
      np.ones(1, F32)], r"X.numel\(\) == block_size \* K. 3 vs 6"),
    ([np.ones((4, 3), F32), np.ones(2, F32), np.array([1], I32), np.ones((1, 3), F32),
      np.ones(1, F32)], r"weight0.numel\(\) == 1"),
    ([np.ones((4, 3), F32), np.ones(1, F32), np.array([1], I32), np.ones((1, 3), F32),
      np.ones(2, F32)], r"weight1.numel\(\) == 1.*input 4"),
    ([np.ones((4, 3), F32), np.ones(1, F32), np.array([1], I32), np.ones((1, 3), F64),
      np.ones(1, F32)],
     "caller expects elements to be float, while tensor contains double"),
    ([np.ones((4, 3), F64), np.ones(1, F64), np.array([1], I32), np.ones((1, 3), F64),
      np.ones(1, F32)],
     "caller expects elements to be float, while tensor contains double"),
    ([np.array(3, F32), np.ones(1, F32), np.array([0], I32), np.ones(1, F32),
      np.ones(1, F32)], "X0 has to be at least the vector"),
])
def test_scatter_weighted_sum_errors(inputs, match):
    with pytest.raises(OperatorError, match=match):
        run_sws(inputs)


def test_scatter_weighted_sum_schema():
    x = [np.ones((4, 3), F32), np.ones(1, F32), np.array([1], I32), np.ones((1, 3), F32),
         np.ones(1, F32)]
    with pytest.raises(SchemaError, match="are not in-place but should be as required"):
        run_op("ScatterWeightedSum", x)
    with pytest.raises(SchemaError, match="Input size 6 not in allowed input sizes"):
        run_op("ScatterWeightedSum", x + [np.ones(1, F32)], outputs=["in0"])
    op = core.CreateOperator("ScatterWeightedSum", ["e", "w0", "i", "v", "w1"], ["e"])
    with pytest.raises(GradientNotImplementedError,
                       match="One should not call gradient for operator "
                             "ScatterWeightedSum"):
        make_gradient(op, ["e_grad"])


def test_scatter_weighted_sum_shape_and_devices():
    inputs = [rand((4, 3)), np.array([0.5], F32), np.array([1, 3, 1], I64), rand((3, 3)),
              np.array([2.0], F32)]
    check_shape_inference("ScatterWeightedSum", inputs, outputs=["in0"])
    check_devices("ScatterWeightedSum", inputs, outputs=["in0"])


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("Add", [rand((2, 1, 3)), rand((4, 1))], {}),
    ("Sub", [rand((2, 3, 2)), rand((3,))], {"broadcast": 1, "axis": 1}),
    ("Mul", [rand((2, 3), I32), rand((3,), I32)], {}),
    ("Div", [rand((2, 3), F64), away((2, 3), F64)], {}),
    ("Sum", [rand((2, 3), I64), rand((2, 3), I64), rand((2, 3), I64)], {}),
    ("Mean", [rand((2, 3)), rand((2, 3))], {}),
    ("Max", [rand((2, 3)), rand((2, 3))], {}),
    ("Min", [rand((2, 3)), rand((2, 3)), rand((2, 3))], {}),
    ("Scale", [rand((2, 3), F64)], {"scale": 3.0}),
    ("Clip", [rand((2, 3))], {"min": -1.0}),
    ("WeightedSum", [rand((2, 3)), rand(1), rand(6), rand(1)], {}),
    ("Negative", [rand((2, 3), I32)], {}),
    ("Abs", [rand((2, 3))], {}),
    ("Exp", [rand((2, 3))], {}),
    ("Log", [rand((2, 3), F32, 0.1, 3)], {}),
    ("Sqrt", [rand((2, 3), F64, 0.1, 3)], {}),
    ("Sqr", [rand((2, 3))], {}),
    ("Pow", [rand((2, 3), F32, 0.1, 3)], {"exponent": 1.5}),
    ("Pow", [rand((2, 3), F32, 0.1, 3), rand((2,))], {"broadcast": 1, "axis": 0}),
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
