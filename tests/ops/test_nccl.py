"""NCCL collectives on emulated GPUs: values, device bookkeeping, errors."""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import Device
from graphnet.errors import GraphnetError, OperatorError, SchemaError
from graphnet.gradient_maker import make_gradient

RNG = np.random.default_rng(3)


def _gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def _feed(n, shape=(3, 2), dtype=np.float32):
    values = []
    for d in range(n):
        v = RNG.standard_normal(shape).astype(dtype)
        workspace.FeedBlob("gpu_%d/g" % d, v, device_option=_gpu(d))
        values.append(v)
    return values


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_allreduce_in_place_sums_on_every_device(n, dtype):
    values = _feed(n, dtype=dtype)
    names = ["gpu_%d/g" % d for d in range(n)]
    workspace.RunOperatorOnce(core.CreateOperator("NCCLAllreduce", names, names,
                                                  device_option=_gpu(0)))
    expected = np.sum(np.stack([v.astype(np.float64) for v in values]), axis=0)
    for d, name in enumerate(names):
        got = workspace.FetchBlob(name)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, expected, rtol=1e-2 if dtype == np.float16
                                   else 1e-6, atol=1e-2 if dtype == np.float16 else 1e-6)
        assert workspace.BlobDevice(name) == Device(1, d)


def test_allreduce_to_new_outputs_and_single_output_root():
    values = _feed(3)
    names = ["gpu_%d/g" % d for d in range(3)]
    outs = ["gpu_%d/s" % d for d in range(3)]
    workspace.RunOperatorOnce(core.CreateOperator("NCCLAllreduce", names, outs,
                                                  device_option=_gpu(0)))
    for d in range(3):
        np.testing.assert_allclose(workspace.FetchBlob(outs[d]), sum(values), rtol=1e-6)
        assert workspace.BlobDevice(outs[d]) == Device(1, d)
    workspace.RunOperatorOnce(core.CreateOperator("NCCLReduce", names, ["root_sum"],
                                                  device_option=_gpu(2)))
    np.testing.assert_allclose(workspace.FetchBlob("root_sum"), sum(values), rtol=1e-6)
    assert workspace.BlobDevice("root_sum") == Device(1, 2)


def test_broadcast_from_root_enforces_in_place():
    values = _feed(3)
    names = ["gpu_%d/g" % d for d in range(3)]
    workspace.RunOperatorOnce(core.CreateOperator("NCCLBroadcast", names, names, root=1,
                                                  device_option=_gpu(0)))
    for d in range(3):
        np.testing.assert_array_equal(workspace.FetchBlob(names[d]), values[1])
    with pytest.raises(SchemaError, match="not in-place but should be"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLBroadcast", names, ["x", "y", "z"], device_option=_gpu(0)))


def test_allreduce_errors():
    _feed(2)
    workspace.FeedBlob("same_dev", np.ones((3, 2), np.float32), device_option=_gpu(0))
    with pytest.raises(GraphnetError, match="inputs 0 and 1 both live on gpu_0"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLAllreduce", ["gpu_0/g", "same_dev"], ["gpu_0/g", "same_dev"],
            device_option=_gpu(0)))
    workspace.FeedBlob("gpu_2/g", np.ones((3, 2), np.float64), device_option=_gpu(2))
    with pytest.raises(OperatorError, match="all inputs must be float32 or all float16; "
                                            "input 1 is float64"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLAllreduce", ["gpu_0/g", "gpu_2/g"], ["gpu_0/g", "gpu_2/g"],
            device_option=_gpu(0)))
    workspace.FeedBlob("gpu_3/g", np.ones((2, 2), np.float32), device_option=_gpu(3))
    with pytest.raises(OperatorError, match="requires inputs to be of same shape"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLAllreduce", ["gpu_0/g", "gpu_3/g"], ["gpu_0/g", "gpu_3/g"],
            device_option=_gpu(0)))
    with pytest.raises(SchemaError, match="Cannot create operator of type 'NCCLAllreduce' "
                                          "on the device 'CPU'"):
        workspace.RunOperatorOnce(core.CreateOperator("NCCLAllreduce", ["gpu_0/g"],
                                                      ["gpu_0/g"]))


def test_allreduce_should_not_do_gradient():
    op = core.CreateOperator("NCCLAllreduce", ["a", "b"], ["a", "b"])
    with pytest.raises(Exception, match="One should not call gradient for operator "
                                        "NCCLAllreduce"):
        make_gradient(op, ["a_grad", "b_grad"])


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_all_gather_stacks_every_input_on_every_device(n, dtype):
    values = _feed(n, dtype=dtype)
    names = ["gpu_%d/g" % d for d in range(n)]
    outs = ["gpu_%d/all" % d for d in range(n)]
    workspace.RunOperatorOnce(core.CreateOperator("NCCLAllGather", names, outs,
                                                  device_option=_gpu(0)))
    expected = np.empty((n, 3, 2), dtype)
    for j, v in enumerate(values):
        expected[j] = v
    for d, name in enumerate(outs):
        got = workspace.FetchBlob(name)
        assert got.dtype == np.dtype(dtype) and got.shape == (n, 3, 2)
        np.testing.assert_array_equal(got, expected)
        assert workspace.BlobDevice(name) == Device(1, d)
    shapes, types = workspace.InferShapesAndTypes(
        [_net("NCCLAllGather", names, outs)])
    assert all(shapes[o] == [n, 3, 2] for o in outs), shapes


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_reduce_scatter_gives_each_device_the_sum_of_its_slice(n, dtype):
    values = _feed(n, shape=(n, 4, 2), dtype=dtype)
    names = ["gpu_%d/g" % d for d in range(n)]
    outs = ["gpu_%d/part" % d for d in range(n)]
    workspace.RunOperatorOnce(core.CreateOperator("NCCLReduceScatter", names, outs,
                                                  device_option=_gpu(0)))
    for i, name in enumerate(outs):
        expected = np.zeros((4, 2), np.float64)
        for v in values:
            expected += v[i].astype(np.float64)
        got = workspace.FetchBlob(name)
        assert got.dtype == np.dtype(dtype) and got.shape == (4, 2)
        tol = 1e-2 if dtype == np.float16 else 1e-6
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
        assert workspace.BlobDevice(name) == Device(1, i)
    shapes, _ = workspace.InferShapesAndTypes([_net("NCCLReduceScatter", names, outs)])
    assert all(shapes[o] == [4, 2] for o in outs), shapes


def _net(op_type, names, outs):
    net = core.Net("collective_" + op_type)
    with core.DeviceScope(_gpu(0)):
        getattr(net, op_type)(names, outs)
    return net


def test_all_gather_and_reduce_scatter_errors():
    _feed(2, shape=(2, 3))
    names = ["gpu_0/g", "gpu_1/g"]
    for op_type in ("NCCLAllGather", "NCCLReduceScatter"):
        with pytest.raises(SchemaError, match="set to be in-place but this is actually "
                                              "not supported by op %s" % op_type):
            workspace.RunOperatorOnce(core.CreateOperator(op_type, names, names,
                                                          device_option=_gpu(0)))
        with pytest.raises(OperatorError, match="%s: 1 outputs for 2 inputs; it writes "
                                                "one output per input" % op_type):
            workspace.RunOperatorOnce(core.CreateOperator(op_type, names, ["one"],
                                                          device_option=_gpu(0)))
        with pytest.raises(Exception, match="One should not call gradient for operator "
                                            "%s" % op_type):
            make_gradient(core.CreateOperator(op_type, names, ["x", "y"]), ["xg", "yg"])
    for d in (2, 3):
        workspace.FeedBlob("gpu_%d/r" % d, np.ones((3, 3), np.float32),
                           device_option=_gpu(d))
    with pytest.raises(OperatorError, match=r"first dimension must be the number of "
                                            r"inputs \(2\).*found shape \[3, 3\]"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLReduceScatter", ["gpu_2/r", "gpu_3/r"], ["a", "b"], device_option=_gpu(0)))
    workspace.FeedBlob("gpu_3/h", np.ones((2, 3), np.float64), device_option=_gpu(3))
    with pytest.raises(OperatorError, match="NCCLAllGather: all inputs must be float32 or "
                                            "all float16; input 1 is float64"):
        workspace.RunOperatorOnce(core.CreateOperator(
            "NCCLAllGather", ["gpu_0/g", "gpu_3/h"], ["a", "b"], device_option=_gpu(0)))
