"""core.InjectCrossDeviceCopies / InjectDeviceCopiesAmongNets on graphnet.

The NetDefs themselves are pinned against real Caffe2 by the goldens
(scenarios cross_device_*, op_blob_devices); here the injected nets run on
emulated GPUs in strict device mode and must compute what the all-CPU net does.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.proto import caffe2_pb2

RNG = np.random.default_rng(0)
CPU = core.DeviceOption(caffe2_pb2.CPU)


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def _mixed_net(devices):
    """FC -> Relu -> Sum -> Scale -> Concat/Split with each op on devices[k]."""
    net = core.Net("mixed")
    with core.DeviceScope(devices[0]):
        net.FC(["x", "w", "b"], "fc")
    with core.DeviceScope(devices[1]):
        net.Relu("fc", "r")
        net.Sum(["r", "fc"], "s")
    with core.DeviceScope(devices[2]):
        net.Scale("s", "out", scale=0.5)
    with core.DeviceScope(devices[0]):
        net.Relu("fc", "fc")                     # in place where fc lives
    with core.DeviceScope(devices[3]):
        cat, info = net.Concat(["out", "fc"], ["cat", "info"], axis=1)
        net.Split([cat, info], ["p0", "p1"], axis=1)
        net.Add(["p0", "p1"], "y")
    return net


def _feed(ws):
    ws.FeedBlob("x", RNG.standard_normal((3, 4)).astype(np.float32))
    ws.FeedBlob("w", RNG.standard_normal((5, 4)).astype(np.float32))
    ws.FeedBlob("b", RNG.standard_normal(5).astype(np.float32))


@pytest.mark.parametrize("devices", [
    (gpu(0), gpu(1), CPU, gpu(3)),
    (CPU, gpu(2), gpu(2), CPU),
    (gpu(1), CPU, gpu(0), gpu(1)),
])
def test_injected_net_runs_strictly_and_matches_cpu(devices):
    ws = workspace.Workspace()
    _feed(ws)
    inputs = {n: ws.FetchBlob(n) for n in ("x", "w", "b")}
    ws.RunNetOnce(_mixed_net([CPU] * 4))
    want = ws.FetchBlob("y")

    new_net, blob_to_device = core.InjectCrossDeviceCopies(_mixed_net(devices))
    ws2 = workspace.Workspace()
    for name, value in inputs.items():
        ws2.FeedBlob(name, value)            # external inputs live on the CPU
    workspace.SetStrictDevices(True)
    ws2.CreateNet(new_net)
    assert ws2.CrossDeviceReads(new_net.Name()) == []
    ws2.RunNet(new_net.Name())
    np.testing.assert_array_equal(ws2.FetchBlob("y"), want)
    for blob, option in blob_to_device.items():
        if ws2.HasBlob(blob) and not isinstance(ws2.FetchBlob(blob), bytes):
            where = ws2.BlobDevice(blob)
            assert (where.type, where.id) == (option.device_type, option.device_id), blob


def test_copy_names_ops_and_reuse():
    net = core.Net("names")
    with core.DeviceScope(gpu(2)):
        net.Relu("x", "a")
        net.Relu("x", "b")                       # x_gpu_2 reused
    with core.DeviceScope(CPU):
        net.Relu("a", "c")                       # GPU 2 -> CPU under gpu 2
    with core.DeviceScope(gpu(3)):
        net.Relu("a", "d")                       # GPU 2 -> GPU 3 under gpu 3
    new_net, b2d = core.InjectCrossDeviceCopies(net)
    ops = [(op.type, list(op.input), list(op.output), op.device_option.device_id)
           for op in new_net.Proto().op]
    assert ops == [
        ("CopyCPUToGPU", ["x"], ["x_gpu_2"], 2), ("Relu", ["x_gpu_2"], ["a"], 2),
        ("Relu", ["x_gpu_2"], ["b"], 2),
        ("CopyGPUToCPU", ["a"], ["a_cpu"], 2), ("Relu", ["a_cpu"], ["c"], 0),
        ("Copy", ["a"], ["a_gpu_3"], 3), ("Relu", ["a_gpu_3"], ["d"], 3)]
    assert new_net.Name() == "names_cross_device"
    assert (b2d["a_gpu_3"].device_type, b2d["a_gpu_3"].device_id) == (1, 3)
    assert net.Proto().op[0].input[0] == "x"     # the original is left alone


def test_among_nets_threads_copies_into_the_next_net():
    init = core.Net("init_x")
    with core.DeviceScope(CPU):
        init.ConstantFill([], "w", shape=[2, 2], value=1.5)
    with core.DeviceScope(gpu(1)):
        init.Relu("w", "w_relu")
    train = core.Net("train_x")
    train.AddExternalInput("w")
    with core.DeviceScope(gpu(1)):
        train.Scale("w", "w2", scale=2.0)
    (new_init, new_train), b2d = core.InjectDeviceCopiesAmongNets([init, train])
    assert [op.type for op in new_init.Proto().op] == ["ConstantFill", "CopyCPUToGPU",
                                                        "Relu"]
    assert list(new_train.Proto().op[0].input) == ["w_gpu_1"]   # no second copy
    assert list(new_train.Proto().external_input) == ["w", "w_gpu_1"]
    ws = workspace.Workspace()
    workspace.SetStrictDevices(True)
    ws.RunNetOnce(new_init)
    ws.RunNetOnce(new_train)
    np.testing.assert_array_equal(ws.FetchBlob("w2"), np.full((2, 2), 3.0, np.float32))
    with pytest.raises(AssertionError, match="should be a list of nets"):
        core.InjectDeviceCopiesAmongNets((init, train))


def test_in_place_op_on_a_moved_blob_updates_the_copy_only():
    """As in Caffe2: the in-place op works on <blob>_<device>, which later readers on
    that device reuse, while readers elsewhere still see the original."""
    net = core.Net("inplace_copy")
    with core.DeviceScope(gpu(0)):
        net.Scale("x", "h", scale=-1.0)
    with core.DeviceScope(gpu(1)):
        net.Relu("h", "h")
        net.Scale("h", "on_gpu1", scale=1.0)
    with core.DeviceScope(gpu(2)):
        net.Scale("h", "on_gpu2", scale=1.0)
    new_net, _ = core.InjectCrossDeviceCopies(net)
    assert [list(op.output) for op in new_net.Proto().op] == [
        ["x_gpu_0"], ["h"], ["h_gpu_1"], ["h_gpu_1"], ["on_gpu1"], ["h_gpu_2"], ["on_gpu2"]]
    ws = workspace.Workspace()
    x = RNG.standard_normal(6).astype(np.float32)
    ws.FeedBlob("x", x)
    ws.RunNetOnce(new_net)
    np.testing.assert_array_equal(ws.FetchBlob("on_gpu1"), np.maximum(-x, 0))
    np.testing.assert_array_equal(ws.FetchBlob("on_gpu2"), -x)


def test_in_place_blob_on_two_devices_is_an_error():
    net = core.Net("clash_x")
    with core.DeviceScope(gpu(0)):
        net.Relu("x", "y")
    with core.DeviceScope(gpu(1)):
        net.Relu("z", "y")
    with pytest.raises(RuntimeError, match="In-place blob: y is not supported between "
                                           "operators with different device option"):
        core.InjectCrossDeviceCopies(net)


def test_op_blob_devices_follow_the_schema_rule():
    op = core.CreateOperator("Split", ["x", "sizes"], ["a", "b"], device_option=gpu(1))
    ins, outs = core.InferOpBlobDevices(op)
    assert [(d.device_type, d.device_id) for d in ins] == [(1, 1), (0, 0)]
    assert not ins[1].HasField("device_type")    # Caffe2 gave an empty DeviceOption
    assert [(d.device_type, d.device_id) for d in outs] == [(1, 1), (1, 1)]
    ins, outs = core.InferOpBlobDevicesAsDict(op)
    assert set(ins) == {"x", "sizes"} and set(outs) == {"a", "b"}
    from graphnet.errors import EnforceError
    with pytest.raises(EnforceError, match="CopyGPUToCPU op should have cuda device"):
        core.InferOpBlobDevices(core.CreateOperator("CopyGPUToCPU", ["x"], ["y"]))
