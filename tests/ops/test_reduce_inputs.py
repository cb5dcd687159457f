"""Sum, Mean, Max, Min (all inputs one shape) and their gradient ops.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, shape_inference, workspace
from graphnet.devices import Device
from graphnet.errors import SchemaError
from graphnet.registry import TensorInfo
from tests.opcheck import (check_devices, check_gradient, check_op, check_shape_inference,
                           gpu, run_op)
from tests.ops.elementwise_helpers import (F32, F64, I32, I64, RNG, check_gradient_wiring,
                                           op_error, rand, wiring_id)


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


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

WIRING = [
    ("Sum", ["X0", "X1", "X2"], ["Y"], {}, [], ["Y_grad", "Y_grad", "Y_grad"]),
    ("Mean", ["X0", "X1"], ["Y"], {},
     [("MeanGradient", ["Y_grad"], ["X0_grad", "X1_grad"], [])], ["X0_grad", "X1_grad"]),
    ("Max", ["X0", "X1", "X2"], ["Y"], {},
     [("MaxGradient", ["Y", "Y_grad", "X0", "X1", "X2"], ["X0_grad", "X1_grad", "X2_grad"],
       [])], ["X0_grad", "X1_grad", "X2_grad"]),
    ("Min", ["X0", "X1"], ["Y"], {},
     [("MinGradient", ["Y", "Y_grad", "X0", "X1"], ["X0_grad", "X1_grad"], [])],
     ["X0_grad", "X1_grad"]),
]


@pytest.mark.parametrize("case", WIRING, ids=wiring_id)
def test_gradient_wiring_matches_caffe2(case):
    check_gradient_wiring(case)


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("Sum", [rand((2, 3), I64), rand((2, 3), I64), rand((2, 3), I64)], {}),
    ("Mean", [rand((2, 3)), rand((2, 3))], {}),
    ("Max", [rand((2, 3)), rand((2, 3))], {}),
    ("Min", [rand((2, 3)), rand((2, 3)), rand((2, 3))], {}),
]


@pytest.mark.parametrize("op_type,inputs,args", DEVICE_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(DEVICE_CASES)])
def test_shape_inference_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)
