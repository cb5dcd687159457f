"""Scale, Clip and ClipGradient.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError
from tests.opcheck import (check_devices, check_gradient, check_op, check_shape_inference,
                           run_op)
from tests.ops.elementwise_helpers import (F32, F64, I32, away, check_gradient_wiring,
                                           op_error, rand, wiring_id)


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


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

WIRING = [
    ("Scale", ["X"], ["Y"], {"scale": 2.5},
     [("Scale", ["Y_grad"], ["X_grad"], [("scale", 2.5)])], ["X_grad"]),
    ("Clip", ["X"], ["Y"], {"min": -1.0, "max": 1.0},
     [("ClipGradient", ["Y", "Y_grad"], ["X_grad"], [("min", -1.0), ("max", 1.0)])],
     ["X_grad"]),
]


@pytest.mark.parametrize("case", WIRING, ids=wiring_id)
def test_gradient_wiring_matches_caffe2(case):
    check_gradient_wiring(case)


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("Scale", [rand((2, 3), F64)], {"scale": 3.0}),
    ("Clip", [rand((2, 3))], {"min": -1.0}),
]


@pytest.mark.parametrize("op_type,inputs,args", DEVICE_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(DEVICE_CASES)])
def test_shape_inference_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)
