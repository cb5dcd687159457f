"""The CuPy executor on a real GPU: selection, copies across logical and physical
devices, streams that overlap, NCCL, errors, and DLRM training equal to the
virtual-GPU run. The conftest maps 4 logical GPUs onto the real ones."""

import os
import sys
import warnings

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.errors import OperatorError
from graphnet.executors import backends
from graphnet.executors.cuda import settings
from graphnet.executors.cuda.runner import profile

cp = pytest.importorskip("cupy")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def rng():
    return np.random.default_rng(0)


def test_cuda_ops_run_on_cupy_and_report_logical_devices():
    assert backends.gpu_backend_name() == "cupy"
    assert workspace.NumGpuDevices() == 4
    x = rng().standard_normal((3, 4)).astype(np.float32)
    workspace.FeedBlob("x", x, gpu(2))
    assert isinstance(workspace._ws()._blobs["x"].value, cp.ndarray)
    net = core.Net("relu")
    with core.DeviceScope(gpu(2)):
        net.Relu("x", "y")
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.maximum(x, 0))
    assert workspace.BlobDevice("y") == (1, 2)
    pattern = workspace.GetGpuPeerAccessPattern()
    assert pattern.shape == (4, 4) and pattern.diagonal().all()


@pytest.mark.parametrize("staged", [False, True])
def test_copies_between_logical_devices(staged):
    settings.set_staged_copies(staged)
    x = rng().standard_normal((64, 33)).astype(np.float32)
    workspace.FeedBlob("x", x, gpu(0))
    net = core.Net("copies")
    with core.DeviceScope(gpu(1)):
        net.Copy("x", "x1")
    with core.DeviceScope(gpu(3)):
        net.Copy("x1", "x3")
        net.CopyGPUToCPU("x3", "host")
    with core.DeviceScope(gpu(2)):
        net.CopyCPUToGPU("host", "x2")
        net.CopyOnDeviceLike(["x2", "x"], "back")
        net.CopyFromCPUInput("host", "x2_input")
    net.EnsureCPUOutput("x2", "cpu_again")
    workspace.RunNetOnce(net)
    for name, device in (("x1", 1), ("x3", 3), ("x2", 2), ("back", 0), ("x2_input", 2)):
        np.testing.assert_array_equal(workspace.FetchBlob(name), x)
        assert workspace.BlobDevice(name) == (1, device)
        value = workspace._ws()._blobs[name].value
        assert isinstance(value, cp.ndarray)
        assert value.device.id == settings_physical(device)
    for name in ("host", "cpu_again"):
        assert isinstance(workspace._ws()._blobs[name].value, np.ndarray)
        np.testing.assert_array_equal(workspace.FetchBlob(name), x)


def test_free_releases_gpu_blobs_and_the_next_run_recomputes_them():
    from tests.ops.test_free import free_net_runs_twice
    ws = free_net_runs_twice(workspace.Workspace(), gpu(1), shape=(256, 33))
    assert ws.BlobDevice("h") == (1, 1)
    assert isinstance(ws._blobs["y"].value, cp.ndarray)


def settings_physical(logical):
    return backends.cuda_backend().rt.physical_of(logical)


def test_copy_across_physical_gpus_when_there_are_several():
    n = cp.cuda.runtime.getDeviceCount()
    if n < 2:
        pytest.skip("one physical GPU: cross-physical copies need two")
    workspace.SetGpuDeviceMapping(list(range(n)))
    x = rng().standard_normal((1000,)).astype(np.float32)
    workspace.FeedBlob("x", x, gpu(0))
    net = core.Net("peer")
    with core.DeviceScope(gpu(1)):
        net.Copy("x", "y")
    workspace.RunNetOnce(net)
    assert workspace._ws()._blobs["y"].value.device.id == 1
    np.testing.assert_array_equal(workspace.FetchBlob("y"), x)


def test_cross_device_read_is_transferred_with_a_warning():
    x = rng().standard_normal((5, 3)).astype(np.float32)
    workspace.FeedBlob("x", x, gpu(0))
    net = core.Net("dlrm70")
    with core.DeviceScope(gpu(3)):
        net.Relu("x", "y")
    with pytest.warns(Warning, match="dlrm#70"):
        workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.maximum(x, 0))


def _chain_net(name, net_type):
    net = core.Net(name)
    net.Proto().type = net_type
    for d in range(4):
        with core.DeviceScope(gpu(d)):
            net.FC(["x%d" % d, "w%d" % d, "b%d" % d], "h%d" % d)
            net.Relu("h%d" % d, "r%d" % d)
    with core.DeviceScope(gpu(0)):
        for d in range(1, 4):
            net.Copy("r%d" % d, "c%d" % d)
        net.Sum(["r0", "c1", "c2", "c3"], "total")
    return net


@pytest.mark.parametrize("net_type", ["simple", "dag", "async_scheduling"])
def test_simple_and_dag_give_identical_results(net_type):
    r = rng()
    for d in range(4):
        workspace.FeedBlob("x%d" % d, r.standard_normal((8, 16)).astype(np.float32), gpu(d))
        workspace.FeedBlob("w%d" % d, r.standard_normal((4, 16)).astype(np.float32), gpu(d))
        workspace.FeedBlob("b%d" % d, r.standard_normal(4).astype(np.float32), gpu(d))
    workspace.RunNetOnce(_chain_net("simple_net", "simple"))
    want = workspace.FetchBlob("total")
    workspace.RunNetOnce(_chain_net("other", net_type))
    np.testing.assert_array_equal(workspace.FetchBlob("total"), want)
    expect = sum(np.maximum(workspace.FetchBlob("x%d" % d) @ workspace.FetchBlob("w%d" % d).T
                            + workspace.FetchBlob("b%d" % d), 0) for d in range(4))
    np.testing.assert_allclose(want, expect, rtol=1e-4, atol=1e-4)


def test_a_copy_overlaps_an_independent_kernel():
    """Copy gpu_0 -> gpu_1 (stream of gpu_1) and a MatMul on gpu_2 run concurrently:
    their CUDA event intervals intersect. All logical GPUs on physical GPU 0: the
    streams' overlap is the point, and CUDA times only events of one device."""
    workspace.SetGpuDeviceMapping([0, 0, 0, 0])
    big = np.ones((64 * 1024 * 1024 // 4,), np.float32)  # 64 MiB
    workspace.FeedBlob("big", big, gpu(0))
    a = rng().standard_normal((2048, 2048)).astype(np.float32)
    workspace.FeedBlob("a", a, gpu(2))
    net = core.Net("overlap")
    with core.DeviceScope(gpu(2)):
        net.MatMul(["a", "a"], "m1")
        net.MatMul(["m1", "a"], "m2")
    with core.DeviceScope(gpu(1)):
        net.Copy("big", "big1")
    workspace.CreateNet(net)
    workspace.RunNet("overlap")  # warm-up: compile, pool
    best = None
    for _ in range(5):
        with profile() as records:
            workspace.RunNet("overlap")
        spans = {}
        for step, start, end in records:
            spans.setdefault(step.op_type, []).append((start, end))
        ref = records[0][1]
        t = {k: (min(cp.cuda.get_elapsed_time(ref, s) for s, _ in v),
                 max(cp.cuda.get_elapsed_time(ref, e) for _, e in v))
             for k, v in spans.items()}
        overlap = min(t["MatMul"][1], t["Copy"][1]) - max(t["MatMul"][0], t["Copy"][0])
        best = overlap if best is None else max(best, overlap)
    print("copy %s ms, matmuls %s ms, overlap %.3f ms" % (t["Copy"], t["MatMul"], best))
    assert best > 0, "the Copy and the MatMuls did not overlap: %s" % t


def test_nccl_allreduce_over_logical_devices_equals_the_sum():
    r = rng()
    xs = [r.standard_normal((7, 5)).astype(np.float32) for _ in range(4)]
    for d, x in enumerate(xs):
        workspace.FeedBlob("g%d" % d, x, gpu(d))
    net = core.Net("allreduce")
    with core.DeviceScope(gpu(0)):
        net.NCCLAllreduce(["g0", "g1", "g2", "g3"], ["g0", "g1", "g2", "g3"])
        net.NCCLBroadcast(["g0", "g1", "g2", "g3"], ["g0", "g1", "g2", "g3"])
        net.NCCLReduce(["g0", "g1", "g2", "g3"], "red")
    workspace.RunNetOnce(net)
    total = xs[0] + xs[1] + xs[2] + xs[3]
    for d in range(4):
        # (summed per physical GPU on 2+ GPUs: another float32 order, so an atol too)
        np.testing.assert_allclose(workspace.FetchBlob("g%d" % d), total, rtol=1e-6,
                                   atol=1e-6)
        assert workspace.BlobDevice("g%d" % d) == (1, d)
    np.testing.assert_allclose(workspace.FetchBlob("red"), 4 * total, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nccl_all_gather_and_reduce_scatter_over_logical_devices(dtype):
    r = rng()
    xs = [r.standard_normal((4, 3, 2)).astype(dtype) for _ in range(4)]
    names = ["x%d" % d for d in range(4)]
    for d, x in enumerate(xs):
        workspace.FeedBlob(names[d], x, gpu(d))
    net = core.Net("gather_scatter")
    with core.DeviceScope(gpu(0)):
        net.NCCLAllGather(names, ["all%d" % d for d in range(4)])
        net.NCCLReduceScatter(names, ["part%d" % d for d in range(4)])
    workspace.RunNetOnce(net)
    tol = 1e-2 if dtype == np.float16 else 1e-6
    for d in range(4):
        gathered = workspace.FetchBlob("all%d" % d)
        assert gathered.shape == (4, 4, 3, 2) and gathered.dtype == dtype
        for j in range(4):
            np.testing.assert_array_equal(gathered[j], xs[j])
        part = workspace.FetchBlob("part%d" % d)
        expected = sum(x[d].astype(np.float64) for x in xs)
        np.testing.assert_allclose(part, expected, rtol=tol, atol=tol)
        assert workspace.BlobDevice("all%d" % d) == (1, d)
        assert workspace.BlobDevice("part%d" % d) == (1, d)


def test_out_of_memory_names_op_and_device():
    net = core.Net("oom")
    with core.DeviceScope(gpu(1)):
        net.ConstantFill([], "huge", shape=[1 << 40], value=1.0)
    with pytest.raises(OperatorError, match=r"(?s)OutOfMemoryError.*ConstantFill.*gpu_1"
                                            r".*out of GPU memory"):
        workspace.RunNetOnce(net)
    workspace.FeedBlob("ok", np.ones(3, np.float32), gpu(1))  # the process goes on
    np.testing.assert_array_equal(workspace.FetchBlob("ok"), np.ones(3, np.float32))


def test_index_out_of_range_on_device_raises_caffe2s_message():
    workspace.FeedBlob("data", np.ones((4, 3), np.float32), gpu(2))
    workspace.FeedBlob("idx", np.array([0, 7], np.int64), gpu(2))
    workspace.FeedBlob("len", np.array([2], np.int32), gpu(2))
    net = core.Net("bad_index")
    with core.DeviceScope(gpu(2)):
        net.SparseLengthsSum(["data", "idx", "len"], "out")
    with pytest.raises(OperatorError, match=r"(?s)Index 1 is out of bounds: 7.*"
                                            r"SparseLengthsSum.*gpu_2"):
        workspace.RunNetOnce(net)


def test_deferred_checks_report_bad_indices_at_the_end_of_the_run():
    settings.set_checks_mode("deferred")
    workspace.FeedBlob("table", np.ones((4, 2), np.float32), gpu(1))
    workspace.FeedBlob("one", np.ones(1, np.float32), gpu(1))
    workspace.FeedBlob("idx", np.array([1, 9], np.int32), gpu(1))
    workspace.FeedBlob("rows", np.ones((2, 2), np.float32), gpu(1))
    net = core.Net("deferred")
    with core.DeviceScope(gpu(1)):
        net.ScatterWeightedSum(["table", "one", "idx", "rows", "one"], "table")
    with pytest.raises(OperatorError, match=r"(?s)Index out of bounds: 9.*INDICES\[1\]"
                                            r".*ScatterWeightedSum.*gpu_1"):
        workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("table")[1], [2.0, 2.0])


@pytest.mark.parametrize("deterministic", [False, True])
def test_scatter_kernels_add_duplicates(deterministic):
    settings.set_deterministic(deterministic)
    r = rng()
    table = r.standard_normal((6, 4)).astype(np.float32)
    idx = np.array([1, 3, 1, 1, 5, 3], np.int64)
    rows = r.standard_normal((6, 4)).astype(np.float32)
    lr = np.array([-0.5], np.float32)
    for name, value in (("t", table), ("one", np.ones(1, np.float32)), ("idx", idx),
                        ("rows", rows), ("lr", lr)):
        workspace.FeedBlob(name, value, gpu(0))
    net = core.Net("scatter")
    with core.DeviceScope(gpu(0)):
        net.ScatterWeightedSum(["t", "one", "idx", "rows", "lr"], "t")
    workspace.RunNetOnce(net)
    want = table.copy()
    np.add.at(want, idx, np.float32(-0.5) * rows)
    got = workspace.FetchBlob("t")
    if deterministic:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("devices", [1, 4])
def test_dlrm_training_on_real_gpus_equals_virtual_gpus(devices):
    import dlrm_train
    from dlrm_parallel_forward import Config
    cfg = Config(batch=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config.set_virtual_gpu_count(4)
        data = dlrm_train.make_data(cfg, num_batches=4)
        virtual = dlrm_train.train(cfg, devices, data, 12, show=False)
        config.set_virtual_gpu_count(0)
        assert backends.gpu_backend_name() == "cupy"
        real = dlrm_train.train(cfg, devices, data, 12, show=False)
    virtual, real = np.array(virtual), np.array(real)
    rel = np.max(np.abs(real - virtual) / np.maximum(np.abs(virtual), 1e-12))
    print("DLRM %d device(s): losses %s..., max relative difference %.3g"
          % (devices, real[:3], rel))
    assert rel < 1e-5, (virtual, real)
