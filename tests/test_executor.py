"""Executors: simple vs dag results, dependency order, devices and cross-device
reads (spec §5, issue: unified-addressing reads of dlrm#70)."""

import warnings

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import DeviceMismatchError, OperatorError
from graphnet.executors import CrossDeviceReadWarning
from graphnet.executors.dag import dependencies

RNG = np.random.default_rng(7)


def _gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def _wide_net(name, net_type):
    """Independent branches that later join, plus in-place updates (RaW/WaW/WaR)."""
    net = core.Net(name)
    branches = []
    for k in range(6):
        y = net.FC(["x", "w%d" % k, "b%d" % k], "y%d" % k)
        r = net.Relu(y, "r%d" % k)
        net.Scale(r, r, scale=0.5 + k)        # in place: WaW on r
        branches.append(r)
    net.Sum(branches, "total")
    net.Scale("total", "total_copy", scale=2.0)
    net.Scale("r0", "r0", scale=3.0)          # WaR: must wait for Sum's read
    net.Sum(["r0", "total_copy"], "final")
    net.Proto().type = net_type
    net.Proto().num_workers = 4
    return net


def _feed_wide():
    workspace.FeedBlob("x", RNG.standard_normal((5, 3)).astype(np.float32))
    for k in range(6):
        workspace.FeedBlob("w%d" % k, RNG.standard_normal((4, 3)).astype(np.float32))
        workspace.FeedBlob("b%d" % k, RNG.standard_normal(4).astype(np.float32))


@pytest.mark.parametrize("net_type", ["dag", "async_scheduling", "async_dag", "prof_dag"])
def test_dag_equals_simple(net_type):
    _feed_wide()
    blobs = {n: workspace.FetchBlob(n) for n in workspace.Blobs()}
    workspace.RunNetOnce(_wide_net("simple_ref", "simple"))
    expected = {n: workspace.FetchBlob(n) for n in ("total", "final", "r0", "r5")}
    x, ws, bs = blobs["x"], [blobs["w%d" % k] for k in range(6)], \
        [blobs["b%d" % k] for k in range(6)]
    rs = [np.maximum(x @ ws[k].T + bs[k], 0) * (0.5 + k) for k in range(6)]
    np.testing.assert_allclose(expected["total"], sum(rs), rtol=1e-5)
    np.testing.assert_allclose(expected["final"], rs[0] * 3 + 2 * sum(rs), rtol=1e-5)
    for _ in range(5):
        workspace.ResetWorkspace()
        for n, v in blobs.items():
            workspace.FeedBlob(n, v)
        workspace.RunNetOnce(_wide_net("dag_" + net_type, net_type))
        for n, v in expected.items():
            np.testing.assert_array_equal(workspace.FetchBlob(n), v)


def test_dependencies_honour_raw_waw_war():
    net = core.Net("deps")
    net.Scale("a", "b", scale=1.0)        # 0 reads a
    net.Scale("b", "c", scale=1.0)        # 1 RaW on b
    net.Scale("x", "a", scale=1.0)        # 2 WaR on a (after 0)
    net.Scale("x", "b", scale=1.0)        # 3 WaW on b (after 0), WaR on b (after 1)
    net.Scale("y", "z", scale=1.0, control_input=["c"])  # 4 control input on c
    workspace.FeedBlob("a", np.ones(1, np.float32))
    workspace.FeedBlob("x", np.ones(1, np.float32))
    workspace.FeedBlob("y", np.ones(1, np.float32))
    workspace.CreateNet(net)
    plan = workspace._ws()._nets[net.Name()]
    assert dependencies(plan.steps) == [[], [0], [0], [0, 1], [1]]


def test_dag_failure_raises_first_error_and_keeps_blobs():
    net = core.Net("dagfail")
    net.Scale("x", "ok", scale=2.0)
    net.Scale("uninit", "bad", scale=2.0)
    net.Proto().type = "dag"
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.FeedBlob("bad", np.full(2, 5, np.float32))
    workspace.CreateNet(net, input_blobs=["uninit"])
    with pytest.raises(OperatorError, match="Error from operator #1 \\(Scale\\)"):
        workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("bad"), [5, 5])


def test_virtual_gpu_ops_place_outputs_on_their_device():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    with core.DeviceScope(_gpu(2)):
        workspace.FeedBlob("x", x)
        net = core.Net("ongpu")
        net.Relu("x", "y")
    workspace.RunNetOnce(net)
    assert workspace.BlobDevice("y") == Device(1, 2)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.maximum(x, 0))


def test_gpu_op_without_gpus_is_a_clear_error():
    workspace.SetVirtualGpuCount(0)
    net = core.Net("nogpu")
    with core.DeviceScope(_gpu(0)):
        net.Relu("x", "y")
    workspace.FeedBlob("x", np.ones(1, np.float32))
    with pytest.raises(Exception, match="GRAPHNET_VIRTUAL_GPUS=1"):
        workspace.RunNetOnce(net)


def _cross_device_net():
    """gpu_1's op reads a seed that lives on gpu_0 (dlrm#70's pattern)."""
    net = core.Net("cross")
    with core.DeviceScope(_gpu(0)):
        net.ConstantFill([], "seed", shape=[2], value=1.0)
    with core.DeviceScope(_gpu(1)):
        net.Scale("seed", "scaled", scale=3.0)
    return net


def test_cross_device_read_transfers_and_warns_once():
    net = _cross_device_net()
    workspace.CreateNet(net)
    reads = workspace._ws().CrossDeviceReads(net)
    assert len(reads) == 1
    read = reads[0]
    assert (read.op_index, read.op_type, read.blob) == (1, "Scale", "seed")
    assert (read.blob_device, read.op_device) == (Device(1, 0), Device(1, 1))
    with pytest.warns(CrossDeviceReadWarning, match="op #1 \\(Scale\\) reads blob 'seed'"
                                                    ".*gpu_0.*gpu_1"):
        workspace.RunNet(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workspace.RunNet(net)  # once per (op, blob): no second warning
    np.testing.assert_array_equal(workspace.FetchBlob("scaled"), [3, 3])
    assert workspace.BlobDevice("seed") == Device(1, 0), "reading must not move the blob"
    assert workspace.BlobDevice("scaled") == Device(1, 1)


def test_cross_device_read_strict_mode_lists_every_read():
    config.set_strict_devices(True)
    net = _cross_device_net()
    with core.DeviceScope(_gpu(3)):
        net.Scale("seed", "again", scale=1.0)
    with pytest.raises(DeviceMismatchError) as info:
        workspace.CreateNet(net)
    text = str(info.value)
    assert "2 cross-device reads" in text
    assert "op #1 (Scale) reads blob 'seed' (input 0) living on gpu_0 but expects it on " \
           "gpu_1" in text
    assert "op #2 (Scale)" in text and "gpu_3" in text and "fix: add a Copy" in text
    assert not workspace.HasBlob("scaled")


def test_strict_mode_at_run_time_when_a_blob_moves():
    net = core.Net("moves")
    with core.DeviceScope(_gpu(1)):
        net.Scale("x", "y", scale=2.0)
    workspace.FeedBlob("x", np.ones(2, np.float32), device_option=_gpu(1))
    workspace.CreateNet(net)
    workspace.FeedBlob("x", np.ones(2, np.float32))  # now on the CPU
    workspace.SetStrictDevices(True)
    with pytest.raises(OperatorError, match="lives on cpu but op #0 \\(Scale\\) runs on "
                                            "gpu_1"):
        workspace.RunNet(net)
    workspace.SetStrictDevices(False)
    with pytest.warns(CrossDeviceReadWarning):
        workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [2, 2])


def test_cpu_only_slots_do_not_count_as_cross_device():
    net = core.Net("lr")
    with core.DeviceScope(core.DeviceOption(0)):
        net.ConstantFill([], "it", shape=[1], value=0, dtype=core.DataType.INT64)
    with core.DeviceScope(_gpu(1)):
        net.Iter("it", "it")
        net.LearningRate("it", "lr", base_lr=-0.1, policy="fixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workspace.RunNetOnce(net)
    assert workspace.BlobDevice("it") == CPU
    assert workspace.BlobDevice("lr") == Device(1, 1)
    np.testing.assert_allclose(workspace.FetchBlob("lr"), -0.1)


def test_repeated_runs_follow_blobs_that_move_and_change_shape():
    """The compiled step closures skip work that only repeats (device tests, cached
    checks); they must notice inputs fed on another device or with another shape."""
    workspace.SetVirtualGpuCount(3)
    net = core.Net("moving")
    with core.DeviceScope(_gpu(1)):
        net.Copy("a", "a_gpu1")              # output device: the op's (GPU 1)
    net.Sum(["a", "b"], "s")                  # inputs may live on any device
    with core.DeviceScope(_gpu(2)):
        net.Relu("b", "r")                    # reads b on GPU 2
    b = RNG.standard_normal((2, 3)).astype(np.float32)
    workspace.FeedBlob("a", RNG.standard_normal((2, 3)).astype(np.float32), _gpu(0))
    workspace.FeedBlob("b", b, _gpu(2))
    workspace.CreateNet(net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            workspace.RunNet("moving")
        first = (workspace.BlobDevice("a_gpu1"), workspace.BlobDevice("s"))
        a2 = RNG.standard_normal((4, 5)).astype(np.float32)   # new device, new shape
        b2 = RNG.standard_normal((4, 5)).astype(np.float32)
        workspace.FeedBlob("a", a2, _gpu(1))
        workspace.FeedBlob("b", b2)                           # now on the CPU
        for _ in range(2):
            workspace.RunNet("moving")
    assert first == (Device(1, 1), CPU)  # Sum runs on the CPU, whatever its inputs
    assert workspace.BlobDevice("a_gpu1") == Device(1, 1)
    np.testing.assert_array_equal(workspace.FetchBlob("s"), a2 + b2)
    np.testing.assert_array_equal(workspace.FetchBlob("r"), np.maximum(b2, 0))
    assert workspace.BlobDevice("r") == Device(1, 2)
    # b moved to the CPU: Relu on GPU 2 reads it across devices, warned once
    reads = [w for w in caught if issubclass(w.category, CrossDeviceReadWarning)]
    assert len(reads) == 1 and "'b'" in str(reads[0].message)


def test_equal_ops_share_parsed_args_and_duplicates_still_warn(caplog):
    from graphnet.executors import compile_net
    from graphnet.proto import caffe2_pb2
    net = core.Net("shared_args")
    for k in range(3):
        net.Scale("x", "y%d" % k, scale=2.0)
    net.Scale("x", "z", scale=3.0)
    workspace.FeedBlob("x", np.ones(2, np.float32))
    plan = compile_net(net.Proto(), workspace._ws()._blobs)
    args = [step.args for step in plan.steps]
    assert args[0] is args[1] is args[2] and args[3] is not args[0]
    assert args[0].scale == 2.0 and args[3].scale == 3.0
    netdef = caffe2_pb2.NetDef()
    netdef.CopyFrom(net.Proto())
    for op in netdef.op[:2]:  # a repeated argument name: Caffe2 warned for each op
        op.arg.add().CopyFrom(op.arg[0])
    with caplog.at_level("WARNING"):
        compile_net(netdef, workspace._ws()._blobs)
    assert sum("Duplicated argument name" in r.getMessage() for r in caplog.records) == 2
