"""Negative, Abs, Exp, Log, Sqrt, Sqr, Pow and AbsGradient.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, EnforceError, OperatorError, SchemaError
from graphnet.gradient_maker import make_gradient
from tests.opcheck import (check_devices, check_gradient, check_op, check_shape_inference,
                           run_op)
from tests.ops.elementwise_helpers import (F32, F64, I32, I64, away, check_gradient_wiring,
                                           op_error, rand, wiring_id)


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


# --- Pow ------------------------------------------------------------------------------

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


def test_pow_gradient_refusals():
    # golden texts from real Caffe2 1.10.2
    op = core.CreateOperator("Pow", ["X", "E"], ["X"])
    with pytest.raises(EnforceError, match="Gradient computation cannot be carried out if "
                                           "Pow uses in-place computation"):
        make_gradient(op, ["X_grad"])
    op = core.CreateOperator("Pow", ["X"], ["X"], exponent=0.0)
    with pytest.raises(EnforceError, match=r"std::fabs\(exponent\) > kEps"):
        make_gradient(op, ["X_grad"])


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

WIRING = [
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
]


@pytest.mark.parametrize("case", WIRING, ids=wiring_id)
def test_gradient_wiring_matches_caffe2(case):
    check_gradient_wiring(case)


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("Negative", [rand((2, 3), I32)], {}),
    ("Abs", [rand((2, 3))], {}),
    ("Exp", [rand((2, 3))], {}),
    ("Log", [rand((2, 3), F32, 0.1, 3)], {}),
    ("Sqrt", [rand((2, 3), F64, 0.1, 3)], {}),
    ("Sqr", [rand((2, 3))], {}),
    ("Pow", [rand((2, 3), F32, 0.1, 3)], {"exponent": 1.5}),
    ("Pow", [rand((2, 3), F32, 0.1, 3), rand((2,))], {"broadcast": 1, "axis": 0}),
]


@pytest.mark.parametrize("op_type,inputs,args", DEVICE_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(DEVICE_CASES)])
def test_shape_inference_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)
