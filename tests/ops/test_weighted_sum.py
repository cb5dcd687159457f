"""WeightedSum, WeightedSumGradient and ScatterWeightedSum.

Values and texts marked "golden from real Caffe2 1.10.2" were printed by torch
1.10.2's caffe2 on the CPU.
"""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.devices import Device
from graphnet.errors import EnforceError, OperatorError, SchemaError
from graphnet.gradient_maker import GradientNotImplementedError, make_gradient
from graphnet.registry import KernelContext
from graphnet.executors.backends import NUMPY
from tests.opcheck import (check_devices, check_gradient, check_op, check_shape_inference,
                           run_op)
from tests.ops.elementwise_helpers import (F32, F64, I32, I64, check_gradient_wiring,
                                           op_error, rand, wiring_id)


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


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

WIRING = [
    ("WeightedSum", ["X0", "w0", "X1", "w1"], ["Y"], {},
     [("WeightedSumGradient", ["Y_grad", "X0", "w0", "X1", "w1"], ["X0_grad", "X1_grad"],
       [])],
     ["X0_grad", None, "X1_grad", None]),
    ("WeightedSum", ["X0", "w0", "X1", "w1"], ["Y"], {"grad_on_w": 1},
     [("WeightedSumGradient", ["Y_grad", "X0", "w0", "X1", "w1"],
       ["X0_grad", "X1_grad", "w0_grad", "w1_grad"], [("grad_on_w", 1)])],
     ["X0_grad", "w0_grad", "X1_grad", "w1_grad"]),
]


@pytest.mark.parametrize("case", WIRING, ids=wiring_id)
def test_gradient_wiring_matches_caffe2(case):
    check_gradient_wiring(case)


# --- shape inference and devices for every forward op ---------------------------------

DEVICE_CASES = [
    ("WeightedSum", [rand((2, 3)), rand(1), rand(6), rand(1)], {}),
]


@pytest.mark.parametrize("op_type,inputs,args", DEVICE_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(DEVICE_CASES)])
def test_shape_inference_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)
