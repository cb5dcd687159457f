"""graphnet.executors.cuda.host_values under the CuPy stand-in: index checks of blobs
the host uploaded are answered from the host's copy (no kernel, no device read), and
that copy is dropped whenever the device memory may change -- an op writing the
blob in place, a CUDA graph writing it, a new feed."""

import os
import sys
import warnings

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import OperatorError
from graphnet.executors.cuda import host_values, settings

from .standin import gpu, plan_of

HERE = os.path.dirname(os.path.abspath(__file__))
F32 = np.float32


@pytest.fixture
def reads(fake, monkeypatch):
    """The stand-in's device -> host reads (each one a host wait), by what read; from
    after the one-time check of the direct cuBLAS binding (blas.eager_ok), which reads
    its products back on each device's first one."""
    from graphnet.executors.cuda import blas
    for device in range(fake.device_count):
        with fake.cuda.Device(device):
            assert blas.eager_ok(fake)
    seen = []
    read_back = fake._read_back

    def counted(arrays, what, stream=None):
        seen.append(what)
        return read_back(arrays, what, stream)
    monkeypatch.setattr(fake, "_read_back", counted)
    return seen


def blob_array(name):
    return workspace._ws()._blobs[name].value


def sls_reference(table, idx, lengths):
    out = np.zeros((len(lengths), table.shape[1]), F32)
    at = 0
    for m, n in enumerate(lengths):
        for j in idx[at:at + n]:
            out[m] += table[j]
        at += n
    return out


def test_records_follow_their_array_views_and_lifetime(fake):
    idx = np.arange(12, dtype=np.int64) * 3
    a = fake.asarray(idx)
    host_values.remember(a, idx.copy())
    np.testing.assert_array_equal(host_values.lookup(a.reshape(3, 4)), idx.reshape(3, 4))
    np.testing.assert_array_equal(host_values.lookup(a[:5]), idx[:5])  # a prefix view
    assert host_values.lookup(a[1:]) is None  # another start: unknown
    assert host_values.lookup(a.view(np.uint64)) is None  # another type: unknown
    assert host_values.cached(a, "sum", lambda h: int(h.sum())) == int(idx.sum())
    assert host_values.cached(a, "sum", lambda h: -1) == int(idx.sum())  # kept
    from graphnet.executors.cuda import checks
    with checks.capturing():
        assert host_values.lookup(a) is None  # a graph would replay the answer
    host_values.forget(a[4:])  # a write to any view of the allocation drops it
    assert host_values.lookup(a) is None
    # floats: only a few elements are mirrored
    small, big = np.ones(3, F32), np.ones(100, F32)
    s, b = fake.asarray(small), fake.asarray(big)
    host_values.remember(s, small)
    host_values.remember(b, big)
    assert host_values.lookup(s).tolist() == [1.0] * 3 and host_values.lookup(b) is None
    # freed: the record goes, even when the array dies while the table is locked (a
    # collection inside remember/forget runs the weak reference's callback there)
    host_values.remember(a, idx.copy())
    assert len(host_values._by_ptr) == 2
    with host_values._lock:
        del a, s
    assert host_values._by_ptr == {} and host_values._by_mem == {}


def test_fed_index_blobs_are_checked_without_reading_the_device(fake, reads):
    rng = np.random.default_rng(1)
    table = rng.standard_normal((50, 8)).astype(F32)
    lengths = rng.integers(0, 6, 20).astype(np.int32)
    idx = rng.integers(0, 50, int(lengths.sum())).astype(np.int64)
    dy = rng.standard_normal((20, 8)).astype(F32)
    for name, value in (("t", table), ("i", idx), ("l", lengths), ("dy", dy)):
        workspace.FeedBlob(name, value, gpu(0))
    known = host_values.lookup(blob_array("i"))
    np.testing.assert_array_equal(known, idx)
    assert not known.flags.writeable
    assert host_values.lookup(blob_array("t")) is None  # float data is never mirrored
    net = core.Net("sls")
    with core.DeviceScope(gpu(0)):
        net.SparseLengthsSum(["t", "i", "l"], "y")
        net.SparseLengthsIndicesInGradientSumGradient(["dy", "l", "i"], "g")
        net.Gather(["t", "i"], "rows")
    workspace.CreateNet(net)
    for _ in range(2):
        workspace.RunNet(net.Name())
    assert reads == []
    assert "index_stats_i64" not in fake.launches
    assert fake.launches.count("segment_starts") == 1  # one per LENGTHS upload, kept
    np.testing.assert_allclose(workspace.FetchBlob("y"), sls_reference(table, idx, lengths),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(workspace.FetchBlob("g"), np.repeat(dy, lengths, axis=0))
    np.testing.assert_array_equal(workspace.FetchBlob("rows"), table[idx])
    # a bad index fed from the host: Caffe2's message, before any kernel writes
    bad = idx.copy()
    bad[3] = 50
    workspace.FeedBlob("i", bad, gpu(0))
    workspace.FeedBlob("y", np.full((20, 8), 7.0, F32), gpu(0))
    with pytest.raises(OperatorError, match=r"Index 3 is out of bounds: 50, range 0 to 50"):
        workspace.RunNet(net.Name())
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.full((20, 8), 7.0, F32))
    # new LENGTHS: new starts
    lengths2 = lengths[::-1].copy()
    workspace.FeedBlob("i", idx, gpu(0))
    workspace.FeedBlob("l", lengths2, gpu(0))
    workspace.RunNet(net.Name())
    np.testing.assert_allclose(workspace.FetchBlob("y"), sls_reference(table, idx, lengths2),
                               rtol=1e-6, atol=1e-6)
    assert fake.launches.count("segment_starts") == 2


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
def test_int32_indices_fed_from_the_host_are_known_to_gather(fake, reads, checks_mode):
    """Gather and BatchGather take INDICES as int64: an int32 blob's copy is not the
    upload, so the bounds come from the blob as fed (no stats kernel, no read back)."""
    settings.set_checks_mode(checks_mode)
    rng = np.random.default_rng(8)
    table = rng.standard_normal((30, 4)).astype(F32)
    idx = rng.integers(0, 30, 12).astype(np.int32)
    batch = rng.standard_normal((3, 30)).astype(F32)
    cols = rng.integers(0, 30, 5).astype(np.int32)
    for name, value in (("t", table), ("i", idx), ("b", batch), ("c", cols)):
        workspace.FeedBlob(name, value, gpu(0))
    net = core.Net("gather_i32")
    with core.DeviceScope(gpu(0)):
        net.Gather(["t", "i"], "rows")
        net.BatchGather(["b", "c"], "picked")
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    assert reads == []
    assert not [k for k in fake.launches if k.startswith(("index_stats", "flag_rows"))]
    np.testing.assert_array_equal(workspace.FetchBlob("rows"), table[idx])
    np.testing.assert_array_equal(workspace.FetchBlob("picked"), batch[:, cols])


def test_deferred_checks_of_known_indices_launch_nothing_unless_they_fail(fake):
    settings.set_checks_mode("deferred")
    rng = np.random.default_rng(7)
    table = rng.standard_normal((9, 2)).astype(F32)
    workspace.FeedBlob("t", table, gpu(0))
    net = core.Net("deferred_gather")
    with core.DeviceScope(gpu(0)):
        net.Gather(["t", "i"], "rows")
    for k, idx in enumerate([np.array([8, 0, 3, -9], np.int64),  # (negatives wrap)
                             np.array([4, 9, 1], np.int64)]):
        workspace.FeedBlob("i", idx, gpu(0))
        if k == 0:
            workspace.CreateNet(net)
            workspace.RunNet(net.Name())
            np.testing.assert_array_equal(workspace.FetchBlob("rows"), table[idx])
            assert "flag_rows_i64" not in fake.launches  # known, valid: nothing to flag
        else:
            with pytest.raises(OperatorError, match=r"out of DATA bounds, id=9 axis_dim=9"):
                workspace.RunNet(net.Name())
            assert fake.launches.count("flag_rows_i64") == 1


def test_deferred_embedding_checks_of_known_inputs(fake, reads):
    """Deferred checks: an embedding op and its gradient whose fed INDICES and LENGTHS
    the host knows to be valid register no flag (the run reads nothing back); known
    bad ones keep the deferred behaviour, reported when the run ends."""
    settings.set_checks_mode("deferred")
    rng = np.random.default_rng(8)
    table = rng.standard_normal((10, 4)).astype(F32)
    lengths = np.array([2, 0, 3], np.int32)
    dy = rng.standard_normal((3, 4)).astype(F32)
    for name, value in (("t", table), ("l", lengths), ("dy", dy)):
        workspace.FeedBlob(name, value, gpu(0))
    net = core.Net("deferred_sls")
    with core.DeviceScope(gpu(0)):
        net.SparseLengthsSum(["t", "i", "l"], "y")
        net.SparseLengthsIndicesInGradientSumGradient(["dy", "l", "i"], "g")
    idx = np.array([9, 0, 4, 4, 1], np.int64)
    workspace.FeedBlob("i", idx, gpu(0))
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    assert reads == []
    np.testing.assert_allclose(workspace.FetchBlob("y"), sls_reference(table, idx, lengths),
                               rtol=1e-6)
    np.testing.assert_array_equal(workspace.FetchBlob("g"), np.repeat(dy, lengths, axis=0))
    workspace.FeedBlob("i", np.array([9, 0, 4, 10, 1], np.int64), gpu(0))
    with pytest.raises(OperatorError, match=r"(?s)out of bounds: 10.*SparseLengthsSum"):
        workspace.RunNet(net.Name())  # (the kernel flagged it: read when the run ended)


def test_a_loss_gradient_the_host_knows_is_one_fill(fake, monkeypatch):
    """AveragedLossGradient of a fed dLoss: Caffe2's double-precision scaling done on
    the host, one fill on the device (else three CuPy calls and a broadcast copy)."""
    x = np.random.default_rng(6).standard_normal((7, 3)).astype(F32)
    workspace.FeedBlob("x", x, gpu(0))
    workspace.FeedBlob("dl", np.array([0.3], F32), gpu(0))
    net = core.Net("avg_grad")
    with core.DeviceScope(gpu(0)):
        net.AveragedLossGradient(["x", "dl"], "dx")
    workspace.CreateNet(net)
    calls = []
    access = fake._access
    monkeypatch.setattr(fake, "_access", lambda stream, reads, writes, label: (
        calls.append(label.split("(")[0]), access(stream, reads, writes, label))[1])
    workspace.RunNet(net.Name())
    assert calls == ["cupy.full"]
    want = np.float32(np.float64(np.float32(0.3)) * (1.0 / 21))
    np.testing.assert_array_equal(workspace.FetchBlob("dx"), np.full((7, 3), want, F32))


def test_a_copy_to_another_gpu_keeps_what_the_host_knows(fakes):
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 9, 12).astype(np.int32)
    workspace.FeedBlob("i", idx, gpu(0))
    workspace.FeedBlob("t", rng.standard_normal((9, 3)).astype(F32), gpu(1))
    net = core.Net("copied")
    with core.DeviceScope(gpu(1)):
        net.Copy("i", "i1")
        net.Gather(["t", "i1"], "rows")
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(host_values.lookup(blob_array("i1")), idx)
    np.testing.assert_array_equal(workspace.FetchBlob("rows"),
                                  workspace.FetchBlob("t")[idx])


def _scatter_net(name):
    """w <- w + 2 (in place: w is X_0 of a one-row ScatterWeightedSum), then w is the
    w_0 of a second ScatterWeightedSum, which scales table rows by it."""
    net = core.Net(name)
    with core.DeviceScope(gpu(0)):
        net.ScatterWeightedSum(["w", "one", "zero", "two", "one"], "w")
        net.ScatterWeightedSum(["t", "w", "idx", "x", "one"], "t")
    return net


def _scatter_reference(t, w0, idx, x):
    want = t.copy()
    for j in idx:  # every occurrence scales its row, then every occurrence adds
        want[j] *= w0
    for k, j in enumerate(idx):
        want[j] += x[k]
    return want


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
def test_an_op_updating_a_known_blob_in_place_makes_it_unknown(fake, checks_mode):
    settings.set_checks_mode(checks_mode)
    rng = np.random.default_rng(3)
    t = rng.standard_normal((4, 3)).astype(F32)
    idx = np.array([1, 2, 1], np.int64)
    x = rng.standard_normal((3, 3)).astype(F32)
    for name, value in (("w", np.array([1.0], F32)), ("one", np.array([1.0], F32)),
                        ("zero", np.array([0], np.int64)), ("two", np.array([2.0], F32)),
                        ("t", t), ("idx", idx), ("x", x)):
        workspace.FeedBlob(name, value, gpu(0))
    assert host_values.lookup(blob_array("w")).tolist() == [1.0]
    workspace.RunNetOnce(_scatter_net("in_place_" + checks_mode))
    assert host_values.lookup(blob_array("w")) is None
    assert workspace.FetchBlob("w").tolist() == [3.0]
    np.testing.assert_allclose(workspace.FetchBlob("t"), _scatter_reference(t, 3.0, idx, x),
                               rtol=1e-6)


def test_a_graph_writing_a_known_blob_makes_it_unknown(fake):
    """w is fed every run and updated in place by a replayed graph; the op reading it
    as w_0 runs eagerly (its INDICES change shape every run) and must see 3, not the
    1 that was fed."""
    settings.set_cuda_graphs(True)
    net = core.Net("graphed")
    with core.DeviceScope(gpu(0)):
        net.ScatterWeightedSum(["w", "one", "zero", "two", "one"], "w")
        net.Scale("two", "four", scale=2.0)
        net.ScatterWeightedSum(["t", "w", "idx", "x", "one"], "t")
    rng = np.random.default_rng(4)
    t = rng.standard_normal((6, 2)).astype(F32)
    workspace.FeedBlob("t", t, gpu(0))
    for name, value in (("one", np.array([1.0], F32)), ("zero", np.array([0], np.int64)),
                        ("two", np.array([2.0], F32))):
        workspace.FeedBlob(name, value, gpu(0))
    want = t
    for run in range(5):
        idx = rng.integers(0, 6, run + 1).astype(np.int64)
        x = rng.standard_normal((run + 1, 2)).astype(F32)
        workspace.FeedBlob("w", np.array([1.0], F32), gpu(0))
        workspace.FeedBlob("idx", idx, gpu(0))
        workspace.FeedBlob("x", x, gpu(0))
        if run == 0:
            workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        want = _scatter_reference(want, 3.0, idx, x)
        np.testing.assert_allclose(workspace.FetchBlob("t"), want, rtol=1e-5)
    from graphnet.executors.cuda import graphs
    lines = graphs.report(plan_of(net))
    assert any("launch(es)" in line and "ScatterWeightedSum" in line for line in lines), \
        lines


def test_new_values_copied_into_a_graph_input_are_what_the_host_knows(fake):
    """LENGTHS is read by a replayed op (so each run copies the new LENGTHS into the
    graph's buffer) and by an eager SparseLengthsSum (INDICES change shape): the
    buffer must carry the new values' starts, not those it was captured with."""
    settings.set_cuda_graphs(True)
    net = core.Net("refreshed")
    with core.DeviceScope(gpu(0)):
        net.Gather(["rows", "l"], "picked")  # (LENGTHS < 5 address rows' 5 rows)
        net.Scale("picked", "picked2", scale=2.0)
        net.SparseLengthsSum(["t", "i", "l"], "y")
    rng = np.random.default_rng(5)
    t = rng.standard_normal((30, 4)).astype(F32)
    rows = rng.standard_normal((5, 3)).astype(F32)
    workspace.FeedBlob("t", t, gpu(0))
    workspace.FeedBlob("rows", rows, gpu(0))
    for run in range(6):
        lengths = rng.integers(0, 5, 7).astype(np.int32)
        idx = rng.integers(0, 30, int(lengths.sum())).astype(np.int64)
        workspace.FeedBlob("l", lengths, gpu(0))
        workspace.FeedBlob("i", idx, gpu(0))
        if run == 0:
            workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        np.testing.assert_allclose(workspace.FetchBlob("y"), sls_reference(t, idx, lengths),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(workspace.FetchBlob("picked2"), 2 * rows[lengths])
    from graphnet.executors.cuda import graphs
    assert any(line.startswith("ops #0 (Gather) .. #1 (Scale)") and "launch(es)" in line
               for line in graphs.report(plan_of(net))), graphs.report(plan_of(net))


def test_dlrm_training_on_two_gpus_never_waits_for_the_device_to_check_indices(fake,
                                                                               reads):
    """The flagship's training step, with the default (sync) checks: every embedding
    op's INDICES and LENGTHS were fed from the host, so no op reads the device; the
    losses equal the virtual-GPU run's."""
    sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
    import dlrm_train
    from dlrm_parallel_forward import Config
    cfg = Config(batch=8)
    data = dlrm_train.make_data(cfg, num_batches=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        losses = dlrm_train.train(cfg, 2, data, 3, show=False)
    assert reads == []
    assert not [name for name in fake.launches if name.startswith("index_stats")]
    from graphnet import config
    config.set_virtual_gpu_count(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        virtual = dlrm_train.train(cfg, 2, data, 3, show=False)
    np.testing.assert_allclose(losses, virtual, rtol=1e-5)
