"""The device leg of the triad for every gradient: each forward op with a gradient
maker is differentiated on the CPU and on emulated GPUs 1 and 3; the gradients
must be identical and live on the op's device. The table must cover every op
that has a maker, so a new op is swept automatically (or this test fails)."""

import numpy as np
import pytest

from graphnet import registry
from graphnet.devices import CPU, Device
from graphnet.gradient_maker import GradientSlice, make_gradient
from tests.opcheck import feed_inputs, gpu, op_def
from graphnet import workspace

R = np.random.default_rng(11)


def f32(*shape, low=-1.0, high=1.0):
    return R.uniform(low, high, shape).astype(np.float32)


def away(*shape):
    """Values kept away from kinks at 0 (Relu, Abs, Clip bounds)."""
    x = R.uniform(0.2, 1.0, shape) * R.choice([-1, 1], shape)
    return x.astype(np.float32)


I64 = np.array([0, 2, 2, 1], dtype=np.int64)
LEN = np.array([1, 2, 1], dtype=np.int32)

# op type -> (inputs, number of outputs, args)
CASES = {
    "Abs": ([away(3, 2)], 1, {}),
    "Add": ([f32(3, 2), f32(3, 2)], 1, {}),
    "AveragedLoss": ([f32(4, 2)], 1, {}),
    "BatchGather": ([f32(3, 4), np.array([0, 3, 3], np.int64)], 1, {}),
    "BatchMatMul": ([f32(2, 3, 4), f32(2, 4, 2)], 1, {}),
    "Clip": ([away(3, 3) * 0.5], 1, {"min": -0.4, "max": 0.4}),
    "Concat": ([f32(2, 3), f32(2, 1)], 2, {"axis": 1}),
    "Copy": ([f32(2, 2)], 1, {}),
    "CopyCPUToGPU": ([f32(2, 2)], 1, {}),
    "CopyGPUToCPU": ([f32(2, 2)], 1, {}),
    "CrossEntropy": ([f32(3, 4, low=0.1, high=0.9), f32(3, 4, low=0.0, high=1.0)], 1, {}),
    "Div": ([f32(3, 2), f32(3, 2, low=1.0, high=2.0)], 1, {}),
    "Dropout": ([f32(3, 4)], 2, {"is_test": 0, "ratio": 0.5}),
    "Exp": ([f32(3)], 1, {}),
    "ExpandDims": ([f32(2, 3)], 1, {"dims": [0]}),
    "FC": ([f32(4, 3), f32(2, 3), f32(2)], 1, {}),
    "FCTransposed": ([f32(4, 3), f32(3, 2), f32(2)], 1, {}),
    "Flatten": ([f32(2, 3, 2)], 1, {}),
    "FlattenToVec": ([f32(2, 3)], 1, {}),
    "Gather": ([f32(4, 2), I64], 1, {}),
    "LabelCrossEntropy": ([f32(3, 4, low=0.1, high=0.9), np.array([0, 3, 1], np.int32)],
                          1, {}),
    "Log": ([f32(3, low=0.5, high=2.0)], 1, {}),
    "MakeTwoClass": ([f32(3, low=0.1, high=0.9)], 1, {}),
    "MatMul": ([f32(3, 4), f32(4, 2)], 1, {}),
    "Max": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Mean": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Min": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Mul": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Negative": ([f32(3, 2)], 1, {}),
    "Pow": ([f32(3, low=0.5, high=2.0)], 1, {"exponent": 2.5}),
    "Relu": ([away(3, 4)], 1, {}),
    "Reshape": ([f32(2, 6)], 2, {"shape": [3, 4]}),
    "Scale": ([f32(3, 2)], 1, {"scale": 1.5}),
    "Sigmoid": ([f32(3, 2)], 1, {}),
    "SigmoidCrossEntropyWithLogits": ([f32(3, 4), f32(3, 4, low=0.0, high=1.0)], 1, {}),
    "Softmax": ([f32(3, 4)], 1, {}),
    "SoftmaxWithLoss": ([f32(3, 4), np.array([0, 3, 1], np.int32)], 2, {}),
    "SparseLengthsMean": ([f32(3, 2), I64, LEN], 1, {}),
    "SparseLengthsSum": ([f32(3, 2), I64, LEN], 1, {}),
    "SparseLengthsWeightedSum": ([f32(3, 2), f32(4), I64, LEN], 1,
                                 {"grad_on_weights": 1}),
    "SparseToDense": ([np.array([0, 2, 2], np.int64), f32(3, 2)], 1, {}),
    "Split": ([f32(2, 4)], 2, {"axis": 1}),
    "Sqr": ([f32(3)], 1, {}),
    "Sqrt": ([f32(3, low=0.5, high=2.0)], 1, {}),
    "SquaredL2Distance": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Squeeze": ([f32(2, 1, 3)], 1, {"dims": [1]}),
    "Sub": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Sum": ([f32(3, 2), f32(3, 2)], 1, {}),
    "Tanh": ([f32(3, 2)], 1, {}),
    "Transpose": ([f32(2, 3, 4)], 1, {"axes": [2, 0, 1]}),
    "UnsortedSegmentMean": ([f32(4, 2), np.array([0, 1, 1, 0], np.int32)], 1, {}),
    "UnsortedSegmentSum": ([f32(4, 2), np.array([0, 1, 1, 0], np.int32)], 1, {}),
    "WeightedSigmoidCrossEntropyWithLogits": (
        [f32(3, 4), f32(3, 4, low=0.0, high=1.0), f32(3, 4, low=0.5, high=1.5)], 1, {}),
    "WeightedSum": ([f32(3, 2), np.array([0.5], np.float32), f32(3, 2),
                     np.array([2.0], np.float32)], 1, {}),
}


def test_table_covers_every_op_with_a_gradient_maker():
    with_makers = {t for t in registry.registered_types()
                   if registry.get(t).gradient_maker is not None}
    assert with_makers == set(CASES), (sorted(with_makers - set(CASES)),
                                       sorted(set(CASES) - with_makers))


def _gradients(op_type, device, seed=0):
    inputs, n_out, args = CASES[op_type]
    rng = np.random.default_rng(seed)
    ws = workspace.Workspace("graddev")
    op = op_def(op_type, len(inputs), n_out, device, **args)
    if op_type == "Dropout":
        op.device_option.random_seed = 5
    feed_inputs(ws, op, inputs, device)
    ws.RunOperatorOnce(op)
    g_output = []
    for name in op.output:
        value = ws.FetchBlob(name)
        if value.dtype.kind != "f" or (op_type == "Dropout" and name != op.output[0]):
            g_output.append(None)
            continue
        where = ws.BlobDevice(name)
        ws.FeedBlob(name + "_grad", rng.standard_normal(value.shape).astype(value.dtype),
                    device_option=gpu(where.id) if where.is_gpu else None)
        g_output.append(name + "_grad")
    ops, g_input = make_gradient(op, g_output)
    ws.RunOperatorsOnce(ops)
    grads = {}
    for k, g in enumerate(g_input):
        names = [g.indices, g.values] if isinstance(g, GradientSlice) else \
            [] if g is None else [g]
        grads[k] = [(ws.FetchBlob(n), ws.BlobDevice(n)) for n in names]
    return grads


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_gradient_same_on_cpu_and_virtual_gpus(op_type):
    if op_type in ("CopyGPUToCPU", "CopyCPUToGPU"):
        base = _gradients(op_type, 0)
    else:
        base = _gradients(op_type, None)
    assert any(base.values()), "%s produced no gradient" % op_type
    for d in (1, 3):
        got = _gradients(op_type, d)
        assert got.keys() == base.keys()
        for k in base:
            for (value, where), (ref, ref_where) in zip(got[k], base[k]):
                np.testing.assert_array_equal(value, ref, err_msg="%s input %d on gpu_%d"
                                              % (op_type, k, d))
                if op_type == "CopyGPUToCPU" or (op_type == "CopyCPUToGPU"):
                    continue  # their gradients cross devices by design
                assert where in (Device(1, d), CPU if ref_where == CPU else None), \
                    "%s gradient %d on %s, expected gpu_%d" % (op_type, k, where, d)
