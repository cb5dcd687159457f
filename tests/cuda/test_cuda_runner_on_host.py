"""graphnet's CUDA executor (runner.py, graphs.py, copies.py, nccl.py's fallback) and
the ops' CuPy paths, run on the CPU against tests/cuda/fakecuda.py: a CuPy STAND-IN,
NOT A GPU. Its streams, events, pool, stream capture and graphs are bookkeeping over
numpy, its kernels the real CUDA C compiled by g++ (hostgrid); see its docstring for
what it emulates and what it cannot (timing, overlap, NCCL, ...).

tests/gpu/test_gpu_graphs.py and test_gpu_index_checks.py run here whole, and
tests/gpu/test_gpu_runtime.py but its timing test: their source is loaded under another module name (tests.cuda._fakecuda_*)
with a stand-in in sys.modules just for their `pytest.importorskip("cupy")`, and their
test functions are collected here, each run with a fresh stand-in installed (the
multi-device ones also on two stand-in GPUs, with and without peer access). The
modules tests/gpu collects are untouched: without CuPy they still skip, and these
runs never count as GPU runs (they are tests/cuda items). Every test ends by asserting
that the stand-in found no race between streams and no freed memory used by a graph.
Then: every op declared graph-safe captured and replayed with new values (equal to
its eager and numpy runs), and runner paths the GPU tests do not reach."""

import sys
import warnings

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.errors import HostOnlyTypeError, OperatorError
from graphnet.executors import backends
from graphnet.executors.cuda import copies, graphs, settings
from graphnet.executors.cuda.runner import profile
from graphnet.ops import concat_split

from . import fakecuda
from .standin import (CPU, GPU_GRAPHS, GPU_INDEX_CHECKS, GPU_RUNTIME, gpu,
                      installed as _installed, plan_of)

pytestmark = pytest.mark.usefixtures("compiled_kernels")

def _on(fixture, test):
    """`test` (a tests/gpu function) run with `fixture` installed."""
    return pytest.mark.usefixtures(fixture)(test)


# --- tests/gpu/test_gpu_graphs.py, whole --------------------------------------------------

test_dlrm_training_replayed_from_graphs_equals_eager = _on(
    "fake", GPU_GRAPHS.test_dlrm_training_replayed_from_graphs_equals_eager)
test_dlrm_with_eight_tables_is_captured_whole = _on(
    "fake", GPU_GRAPHS.test_dlrm_with_eight_tables_is_captured_whole)
test_new_inputs_and_new_shapes_reach_the_graph = _on(
    "fake", GPU_GRAPHS.test_new_inputs_and_new_shapes_reach_the_graph)
test_an_op_that_fails_while_captured_leaves_the_segment_eager = _on(
    "fake", GPU_GRAPHS.test_an_op_that_fails_while_captured_leaves_the_segment_eager)
test_a_bad_index_after_a_replay_names_the_op = _on(
    "fake", GPU_GRAPHS.test_a_bad_index_after_a_replay_names_the_op)
test_ops_whose_shapes_change_at_every_run_run_eagerly = _on(
    "fake", GPU_GRAPHS.test_ops_whose_shapes_change_at_every_run_run_eagerly)
test_dlrm_on_bags_of_random_sizes_replays_its_static_ops = _on(
    "fake", GPU_GRAPHS.test_dlrm_on_bags_of_random_sizes_replays_its_static_ops)
test_matrix_products_are_captured_through_cublas_directly = _on(
    "fake", GPU_GRAPHS.test_matrix_products_are_captured_through_cublas_directly)


# --- tests/gpu/test_gpu_index_checks.py, whole ---------------------------------------------

test_index_stats_equal_numpy_reductions = _on(
    "fake", GPU_INDEX_CHECKS.test_index_stats_equal_numpy_reductions)
test_index_stats_of_absent_inputs_are_the_sentinels = _on(
    "fake", GPU_INDEX_CHECKS.test_index_stats_of_absent_inputs_are_the_sentinels)
test_flag_rows_records_the_first_bad_position = _on(
    "fake", GPU_INDEX_CHECKS.test_flag_rows_records_the_first_bad_position)
test_host_values_on_cupy_arrays = _on("fake", GPU_INDEX_CHECKS.test_host_values_on_cupy_arrays)

# --- tests/gpu/test_gpu_runtime.py, but the timing test (overlap: not emulated) --------

test_cuda_ops_run_on_cupy_and_report_logical_devices = _on(
    "fakes", GPU_RUNTIME.test_cuda_ops_run_on_cupy_and_report_logical_devices)
test_copies_between_logical_devices = _on(
    "fakes", GPU_RUNTIME.test_copies_between_logical_devices)
test_free_releases_gpu_blobs_and_the_next_run_recomputes_them = _on(
    "fake", GPU_RUNTIME.test_free_releases_gpu_blobs_and_the_next_run_recomputes_them)
test_cross_device_read_is_transferred_with_a_warning = _on(
    "fakes", GPU_RUNTIME.test_cross_device_read_is_transferred_with_a_warning)
test_simple_and_dag_give_identical_results = _on(
    "fakes", GPU_RUNTIME.test_simple_and_dag_give_identical_results)
test_nccl_allreduce_over_logical_devices_equals_the_sum = _on(  # (1 GPU: see below)
    "fake", GPU_RUNTIME.test_nccl_allreduce_over_logical_devices_equals_the_sum)
test_nccl_all_gather_and_reduce_scatter_over_logical_devices = _on(
    "fakes", GPU_RUNTIME.test_nccl_all_gather_and_reduce_scatter_over_logical_devices)
test_out_of_memory_names_op_and_device = _on(
    "fake", GPU_RUNTIME.test_out_of_memory_names_op_and_device)
test_index_out_of_range_on_device_raises_caffe2s_message = _on(
    "fake", GPU_RUNTIME.test_index_out_of_range_on_device_raises_caffe2s_message)
test_deferred_checks_report_bad_indices_at_the_end_of_the_run = _on(
    "fake", GPU_RUNTIME.test_deferred_checks_report_bad_indices_at_the_end_of_the_run)
test_scatter_kernels_add_duplicates = _on("fake",
                                          GPU_RUNTIME.test_scatter_kernels_add_duplicates)
test_dlrm_training_on_real_gpus_equals_virtual_gpus = _on(
    "fakes", GPU_RUNTIME.test_dlrm_training_on_real_gpus_equals_virtual_gpus)


@pytest.fixture(params=[True, False], ids=["peer", "no_peer"])
def two_gpus(monkeypatch, request):
    """Two stand-in GPUs, with and without peer access."""
    yield from _installed(monkeypatch, devices=2, peer=request.param)


def test_copy_across_physical_gpus_when_there_are_several(two_gpus):
    """tests/gpu's test on two stand-in GPUs (it skips on one), with and without peer
    access (cudaMemcpyPeerAsync, or staged through pinned memory)."""
    assert two_gpus.cuda.runtime.getDeviceCount() == 2
    GPU_RUNTIME.test_copy_across_physical_gpus_when_there_are_several()


def test_the_stand_in_is_cupy_only_for_these_tests(fake):
    assert backends.gpu_backend_name() == "cupy" and backends.cuda_backend().xp is fake
    assert sys.modules["cupy"] is fake and "not a GPU" in repr(fake)
    assert GPU_GRAPHS.__name__ == "tests.cuda._fakecuda_test_gpu_graphs"
    assert "tests.cuda._fakecuda_test_gpu_graphs" not in sys.modules


def test_nccl_allreduce_over_two_physical_gpus_sums_each_gpu_then_combines(two_gpus):
    """Without cupy.cuda.nccl (the stand-in has none) nccl.py sums the inputs each
    physical GPU hosts, in input order, then combines the partials on the op's GPU with
    copies: with gpu_d on physical d % 2, exactly (x0 + x2) + (x1 + x3) everywhere.
    (tests/gpu's version compares with x0 + x1 + x2 + x3 at rtol=1e-6 and no atol,
    which another summation order misses near zero: it runs here on one GPU.)"""
    r = np.random.default_rng(0)
    xs = [r.standard_normal((7, 5)).astype(np.float32) for _ in range(4)]
    names = ["g%d" % d for d in range(4)]
    for d, x in enumerate(xs):
        workspace.FeedBlob(names[d], x, gpu(d))
    net = core.Net("allreduce2")
    with core.DeviceScope(gpu(0)):
        net.NCCLAllreduce(names, names)
        net.NCCLReduce(names, "red")
    workspace.RunNetOnce(net)
    total = (xs[0] + xs[2]) + (xs[1] + xs[3])
    for d in range(4):
        np.testing.assert_array_equal(workspace.FetchBlob(names[d]), total)
        assert workspace._ws()._blobs[names[d]].value.device.id == d % 2
    np.testing.assert_array_equal(workspace.FetchBlob("red"), 4 * total)


# --- every op declared graph-safe, captured and replayed with new values ----------------

def _f32(r, *shape):
    return r.standard_normal(shape).astype(np.float32)


def _bags(r, rows=10, lengths=(3, 0, 4)):
    lengths = np.array(lengths, np.int32)
    return r.integers(0, rows, int(lengths.sum())).astype(np.int64), lengths


def _sls_inputs(r, weighted=False, first=("table", (10, 4))):
    """A SparseLengths op's feed: `first` (the table, or a gradient's dY), bags."""
    idx, lengths = _bags(r)
    feed = {first[0]: _f32(r, *first[1]), "idx": idx, "len": lengths}
    if weighted:
        feed["w"] = _f32(r, len(idx))
    return feed


def _sls_grad_inputs(r, weighted=False):
    return _sls_inputs(r, weighted, first=("go", (3, 4)))


def _one(r):
    return np.array([r.uniform(0.5, 2.0)], np.float32)


# op type -> ([(op type, inputs, outputs, args)], feed(rng)); a trailing Scale of the
# first output makes a segment of every net. Names starting with host_ live on the CPU.
GRAPH_SAFE = {
    "Relu": ([("Relu", ["x"], ["y"], {})], lambda r: {"x": _f32(r, 4, 5)}),
    "ReluGradient": ([("ReluGradient", ["y", "dy"], ["dx"], {})],
                     lambda r: {"y": np.maximum(_f32(r, 4, 5), 0), "dy": _f32(r, 4, 5)}),
    "Sigmoid": ([("Sigmoid", ["x"], ["y"], {})], lambda r: {"x": _f32(r, 4, 5)}),
    "SigmoidGradient": ([("SigmoidGradient", ["y", "dy"], ["dx"], {})],
                        lambda r: {"y": r.uniform(0, 1, (4, 5)).astype(np.float32),
                                   "dy": _f32(r, 4, 5)}),
    "Tanh": ([("Tanh", ["x"], ["y"], {})], lambda r: {"x": _f32(r, 4, 5)}),
    "TanhGradient": ([("TanhGradient", ["y", "dy"], ["dx"], {})],
                     lambda r: {"y": np.tanh(_f32(r, 4, 5)), "dy": _f32(r, 4, 5)}),
    "Scale": ([("Scale", ["x"], ["y"], {"scale": 3.0})], lambda r: {"x": _f32(r, 4, 5)}),
    "Sum": ([("Sum", ["a", "b", "c"], ["y"], {})],
            lambda r: {"a": _f32(r, 4, 5), "b": _f32(r, 4, 5), "c": _f32(r, 4, 5)}),
    "Flatten": ([("Flatten", ["x"], ["y"], {"axis": 1})], lambda r: {"x": _f32(r, 2, 3, 4)}),
    "ResizeLike": ([("ResizeLike", ["x", "like"], ["y"], {})],
                   lambda r: {"x": _f32(r, 6), "like": _f32(r, 2, 3)}),
    "ConstantFill": ([("ConstantFill", ["x"], ["y"], {"value": 3.0})],
                     lambda r: {"x": _f32(r, 2, 3)}),
    "FC": ([("FC", ["x", "w", "b"], ["y"], {})],
           lambda r: {"x": _f32(r, 4, 5), "w": _f32(r, 6, 5), "b": _f32(r, 6)}),
    "FCGradient": ([("FCGradient", ["x", "w", "dy"], ["dw", "db", "dx"], {})],
                   lambda r: {"x": _f32(r, 4, 5), "w": _f32(r, 6, 5), "dy": _f32(r, 4, 6)}),
    "BatchMatMul": ([("BatchMatMul", ["a", "b"], ["y"], {})],
                    lambda r: {"a": _f32(r, 2, 3, 4), "b": _f32(r, 2, 4, 5)}),
    "Concat": ([("Concat", ["a", "b"], ["y", "host_info"], {"axis": 1})],
               lambda r: {"a": _f32(r, 3, 2), "b": _f32(r, 3, 4)}),
    "Split": ([("Split", ["x", "host_sizes"], ["a", "b"], {"axis": 0}),
               ("Split", ["x"], ["c", "d"], {"axis": 1, "split": [1, 2]})],
              lambda r: {"x": _f32(r, 5, 3), "host_sizes": np.array([2, 3], np.int32)}),
    "SparseLengthsSum": ([("SparseLengthsSum", ["table", "idx", "len"], ["y"], {})],
                         _sls_inputs),
    "SparseLengthsWeightedSum": ([("SparseLengthsWeightedSum",
                                   ["table", "w", "idx", "len"], ["y"], {})],
                                 lambda r: _sls_inputs(r, weighted=True)),
    "SparseLengthsMean": ([("SparseLengthsMean", ["table", "idx", "len"], ["y"], {})],
                          _sls_inputs),
    "SparseLengthsIndicesInGradientSumGradient": (
        [("SparseLengthsIndicesInGradientSumGradient", ["go", "len", "idx"], ["y"], {})],
        _sls_grad_inputs),
    "SparseLengthsIndicesInGradientMeanGradient": (
        [("SparseLengthsIndicesInGradientMeanGradient", ["go", "len", "idx"], ["y"], {})],
        _sls_grad_inputs),
    "SparseLengthsIndicesInGradientWeightedSumGradient": (
        [("SparseLengthsIndicesInGradientWeightedSumGradient", ["w", "go", "len", "idx"],
          ["y"], {})], lambda r: _sls_grad_inputs(r, weighted=True)),
    "WeightedSum": ([("WeightedSum", ["x0", "w0", "x1", "w1"], ["y"], {})],
                    lambda r: {"x0": _f32(r, 4, 5), "w0": _one(r), "x1": _f32(r, 4, 5),
                               "w1": _one(r)}),
    "ScatterWeightedSum": ([("ScatterWeightedSum", ["table", "w0", "idx", "rows", "w1"],
                             ["table"], {})],
                           lambda r: {"table": _f32(r, 10, 4), "w0": _one(r),
                                      "idx": r.integers(0, 10, 6).astype(np.int64),
                                      "rows": _f32(r, 6, 4), "w1": _one(r)}),
    "SquaredL2Distance": ([("SquaredL2Distance", ["a", "b"], ["y"], {})],
                          lambda r: {"a": _f32(r, 4, 5), "b": _f32(r, 4, 5)}),
    "SquaredL2DistanceGradient": ([("SquaredL2DistanceGradient", ["a", "b", "dd"],
                                    ["da", "db"], {})],
                                  lambda r: {"a": _f32(r, 4, 5), "b": _f32(r, 4, 5),
                                             "dd": _f32(r, 4)}),
    "AveragedLoss": ([("AveragedLoss", ["x"], ["y"], {})], lambda r: {"x": _f32(r, 4, 5)}),
    "AveragedLossGradient": ([("AveragedLossGradient", ["x", "dy"], ["dx"], {})],
                             lambda r: {"x": _f32(r, 4, 5),
                                        "dy": np.array(r.standard_normal(), np.float32)}),
    "Gather": ([("Gather", ["data", "idx"], ["y"], {})],
               lambda r: {"data": _f32(r, 10, 4),
                          "idx": r.integers(0, 10, (3, 2)).astype(np.int64)}),
    "BatchGather": ([("BatchGather", ["data", "idx"], ["y"], {})],
                    lambda r: {"data": _f32(r, 4, 10),
                               "idx": r.integers(0, 10, 3).astype(np.int64)}),
    "BatchGatherGradient": ([("BatchGatherGradient", ["data", "idx", "grad"], ["y"], {})],
                            lambda r: {"data": _f32(r, 4, 10),
                                       "idx": r.integers(0, 10, 3).astype(np.int64),
                                       "grad": _f32(r, 4, 3)}),
}

def _f16_table(feed):
    def make(r):
        values = feed(r)
        values["table"] = values["table"].astype(np.float16)
        return values
    return make


# variants: "<op type>+deterministic" (settings.set_deterministic), "+f16" (a half table)
for _name in ("ScatterWeightedSum", "BatchGatherGradient"):
    GRAPH_SAFE[_name + "+deterministic"] = GRAPH_SAFE[_name]
for _name in ("SparseLengthsSum", "SparseLengthsWeightedSum"):
    GRAPH_SAFE[_name + "+f16"] = (GRAPH_SAFE[_name][0], _f16_table(GRAPH_SAFE[_name][1]))
RUNS = 4  # eager, captured and launched, replayed twice


def _graph_safe_runs(op_type, mode, runs=RUNS, before=lambda run: None):
    """The op's net run `runs` times with new input values: (fetched outputs per run,
    graphs.report). mode: "numpy" (virtual GPUs), "eager" or "graphs" (stand-in);
    before(run) is called before each run."""
    ops, feed = GRAPH_SAFE[op_type]
    config.set_virtual_gpu_count(4 if mode == "numpy" else 0)
    settings.set_cuda_graphs(mode == "graphs")
    workspace.ResetWorkspace()
    net = core.Net("%s_%s" % (op_type.replace("+", "_"), mode))
    fetched = []
    with core.DeviceScope(gpu(0)):
        for kind, ins, outs, args in ops:
            getattr(net, kind)(ins, outs, **args)
            fetched += [name for name in outs if name not in fetched]
        net.Scale(ops[0][2][0], "scaled", scale=0.5)
    rng = np.random.default_rng(7)
    results = []
    for run in range(runs):
        before(run)
        for name, value in feed(rng).items():
            workspace.FeedBlob(name, value, CPU if name.startswith("host_") else gpu(0))
        if run == 0:
            workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        results.append([workspace.FetchBlob(name) for name in fetched + ["scaled"]])
    return results, graphs.report(plan_of(net))


@pytest.mark.parametrize("op_type", sorted(GRAPH_SAFE))
def test_every_graph_safe_op_replays_new_values_as_it_runs_eagerly(fake, op_type):
    """The op is captured on the net's second run and replayed after it (no refusal:
    no read back, no upload), each run with new input values of the same shapes; every
    output equals the stand-in's eager run exactly and the numpy run closely."""
    from graphnet import registry
    assert registry.get(op_type.split("+")[0]).graph_safe
    settings.set_deterministic("+deterministic" in op_type)
    numpy_runs, _ = _graph_safe_runs(op_type, "numpy")
    eager, _ = _graph_safe_runs(op_type, "eager")
    graphed, lines = _graph_safe_runs(op_type, "graphs")
    assert len(lines) == 1 and "captured 1 time(s), %d launch(es)" % (RUNS - 1) \
        in lines[0], lines
    for run in range(RUNS):
        for want, close, got in zip(eager[run], numpy_runs[run], graphed[run]):
            np.testing.assert_array_equal(got, want, err_msg="run %d" % run)
            np.testing.assert_allclose(got, close, rtol=1e-5, atol=1e-6,
                                       err_msg="run %d" % run)


def test_graph_safe_ops_are_all_tested():
    from graphnet import registry
    safe = {t for t in registry.registered_types() if registry.get(t).graph_safe}
    tested = {name.split("+")[0] for name in GRAPH_SAFE}
    assert safe == tested, sorted(safe ^ tested)


# --- runner, copies and graphs paths the GPU tests do not reach ------------------------

def test_a_fault_reported_at_the_final_synchronization_names_the_last_op(fake):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    workspace.FeedBlob("x", x, gpu(1))
    net = core.Net("fault")
    with core.DeviceScope(gpu(1)):
        net.Relu("x", "y")
        net.Scale("y", "z", scale=2.0)
    fake.inject_fault(700)  # an illegal address, reported when the host waits
    with pytest.raises(OperatorError, match=r"(?s)CUDARuntimeError: cudaErrorIllegalAddress"
                       r".*A kernel on gpu_1 \(physical GPU 0\) failed while net 'fault' "
                       r"ran; the last op enqueued there was #1 \(Scale\).*"
                       r"CUDA_LAUNCH_BLOCKING=1.*a kernel fault on gpu_1 \(physical GPU 0\)"
                       r": CUDA keeps this error") as info:
        workspace.RunNetOnce(net)
    assert (info.value.op_index, info.value.op_type) == (1, "Scale")


def test_profile_records_an_event_pair_per_gpu_step_and_turns_graphs_off(fake):
    settings.set_cuda_graphs(True)
    workspace.FeedBlob("x", np.ones((2, 3), np.float32), gpu(0))
    workspace.FeedBlob("h", np.ones((2, 3), np.float32), gpu(2))
    net = core.Net("profiled")
    with core.DeviceScope(gpu(0)):
        net.Relu("x", "y")
        net.Scale("y", "z", scale=2.0)
    with core.DeviceScope(gpu(2)):
        net.Copy("z", "z2")
        net.CopyGPUToCPU("z2", "cpu_z")  # (the host waits for gpu_2's event)
    workspace.CreateNet(net)
    for _ in range(3):
        with profile() as records:
            workspace.RunNet(net.Name())
        assert [step.op_type for step, _, _ in records] == ["Relu", "Scale", "Copy",
                                                            "CopyGPUToCPU"]
        for _, start, end in records:
            assert end.done and fake.cuda.get_elapsed_time(start, end) >= 0
    np.testing.assert_array_equal(workspace.FetchBlob("cpu_z"), 2 * np.ones((2, 3)))
    assert graphs.report(plan_of(net)) == []  # (profiled runs are never captured)


def test_gpu_blobs_held_on_the_host_move_to_their_gpu_but_strings_cannot(fake):
    """A blob fed while GPUs were virtual holds numpy: the runner uploads it before a
    GPU op reads it; a string tensor cannot live on a GPU."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    config.set_virtual_gpu_count(4)
    workspace.FeedBlob("x", x, gpu(1))
    workspace.FeedBlob("s", np.array([b"a", b"b"], dtype=object), gpu(1))
    config.set_virtual_gpu_count(0)
    assert isinstance(workspace._ws()._blobs["x"].value, np.ndarray)
    net = core.Net("held")
    with core.DeviceScope(gpu(1)):
        net.Relu("x", "y")
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.maximum(x, 0))
    assert isinstance(workspace._ws()._blobs["x"].value, fake.ndarray)
    strings = core.Net("strings")
    with core.DeviceScope(gpu(1)):
        strings.Copy("s", "s2")
    with pytest.raises(OperatorError, match="STRING tensor, which cannot live on a GPU") \
            as info:
        workspace.RunNetOnce(strings)
    assert isinstance(info.value.cause, HostOnlyTypeError)


def test_non_contiguous_values_copy_between_physical_gpus(two_gpus):
    """copies.py's _contiguous: a strided device value made contiguous on its own GPU
    after the work the copying stream holds (events, no host wait), then copied."""
    cp = two_gpus
    rt = backends.cuda_backend().rt
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    with cp.cuda.Device(0):
        strided = cp.asarray(x)[:, ::2].T  # on physical 0
    stream = rt.stream(1)  # gpu_1 on physical 1
    with cp.cuda.Device(1), stream:
        out = copies.to_device(rt, strided, 1, stream)
        host = copies.to_host(rt, strided, stream)
    assert out.device.id == 1 and out.flags.c_contiguous
    np.testing.assert_array_equal(out.get(), x[:, ::2].T)
    np.testing.assert_array_equal(host, x[:, ::2].T)
    stream.synchronize()


def test_values_replaced_during_a_run_are_kept_until_it_synchronizes(fake, monkeypatch):
    """gpu_1 reads x (made on gpu_0's stream), gpu_2 overwrites x, then gpu_0 makes a
    value of x's size. The pool may hand x's old memory to gpu_0's stream only after
    gpu_1's read: the runner keeps replaced values until the run's final wait. Without
    that (monkeypatched below) the stand-in reports the race a GPU would run into."""
    def run():
        for name, d in (("a", 0), ("b", 2), ("c", 0)):
            workspace.FeedBlob(name, np.full((4, 5), 2.0, np.float32), gpu(d))
        net = core.Net("replaced")
        with core.DeviceScope(gpu(0)):
            net.Relu("a", "x")
        with core.DeviceScope(gpu(1)):
            net.Copy("x", "x1")
        with core.DeviceScope(gpu(2)):
            net.Relu("b", "x")
        with core.DeviceScope(gpu(0)):
            net.Relu("c", "z")
        workspace.RunNetOnce(net)
        np.testing.assert_array_equal(workspace.FetchBlob("x1"), np.full((4, 5), 2.0))
    run()
    assert not fake.problems

    class Forgetful(copies.run_scope):
        def __init__(self):
            super().__init__()
            self.retained = _Dropping()
    monkeypatch.setattr(copies, "run_scope", Forgetful)
    run()
    assert any("race: cupy.maximum writes device memory" in p and "memcpyAsync" in p
               for p in fake.problems), fake.problems
    fake.problems.clear()


class _Dropping(list):
    def append(self, value):
        pass


def test_a_batch_fed_into_a_graph_input_lands_where_the_graph_reads_it(fake, monkeypatch):
    """Once captured, FeedBlob of a same-shaped batch writes the graph's input buffer
    itself (Caffe2's feeder reused a tensor's memory too): no device-to-device copy
    before the replay, the same results; a new shape still gets a new array."""
    settings.set_cuda_graphs(True)
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    net = GPU_GRAPHS._mlp_net()
    copies_d2d = []
    memcpy = fake._memcpy

    def counted(dst, dst_device, src, src_device, size, kind, stream, name):
        if kind == fakecuda.D2D:
            copies_d2d.append(size)
        return memcpy(dst, dst_device, src, src_device, size, kind, stream, name)
    monkeypatch.setattr(fake, "_memcpy", counted)
    buffers = []
    for run, batch in enumerate((4, 4, 4, 4, 7)):
        x = rng.standard_normal((batch, 5)).astype(np.float32)
        GPU_GRAPHS._feed_mlp(x, w, b)
        buffers.append(workspace._ws()._blobs["x"].value)
        if run == 0:
            workspace.CreateNet(net)
        del copies_d2d[:]
        workspace.RunNet(net.Name())
        want = 0.5 * np.maximum(x @ w.T + b, 0)
        np.testing.assert_allclose(workspace.FetchBlob("y"), want, rtol=1e-5, atol=1e-6)
        if run == 3:  # (captured in run 1; fed in place since)
            assert buffers[3] is buffers[2] and copies_d2d == []
    assert buffers[4] is not buffers[3] and buffers[1] is not buffers[0]


def test_new_split_sizes_drop_the_graph_and_it_is_captured_again(fake):
    """Split's sizes live on the host and are baked into the graph: other sizes make
    the next run eager (all three ops change shape: nothing to split off), the one
    after captures again."""
    settings.set_cuda_graphs(True)
    net = core.Net("sizes")
    with core.DeviceScope(gpu(0)):
        net.Split(["x", "sizes"], ["a", "b"], axis=0)
        net.Scale("a", "a2", scale=2.0)
        net.Relu("b", "b2")
    rng = np.random.default_rng(4)
    for run, sizes in enumerate([(2, 3)] * 3 + [(1, 4)] * 3):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        workspace.FeedBlob("x", x, gpu(0))
        workspace.FeedBlob("sizes", np.array(sizes, np.int32), CPU)
        if run == 0:
            workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        np.testing.assert_array_equal(workspace.FetchBlob("a2"), 2 * x[:sizes[0]])
        np.testing.assert_array_equal(workspace.FetchBlob("b2"), np.maximum(x[sizes[0]:], 0))
    lines = graphs.report(plan_of(net))
    assert lines == ["ops #0 (Split) .. #2 (Relu): 3 ops, captured 2 time(s), 4 launch(es)"], \
        lines


def test_a_changed_kernel_setting_drops_the_graph(fake):
    """The scatter kernels' deterministic mode is chosen when the ops run, so a graph
    holds the mode it was captured with: switching it makes the next run eager."""
    def switch(run):
        settings.set_deterministic(run >= 3)
    eager, _ = _graph_safe_runs("ScatterWeightedSum", "eager", 6, switch)
    graphed, lines = _graph_safe_runs("ScatterWeightedSum", "graphs", 6, switch)
    for want, got in zip(eager, graphed):
        for a, b in zip(want, got):
            np.testing.assert_array_equal(b, a)
    # 1 eager, 2 captured, 3 replayed; 4 (deterministic) eager, 5 captured, 6 replayed
    assert lines == ["ops #0 (ScatterWeightedSum) .. #1 (Scale): 2 ops, captured 2 "
                     "time(s), 4 launch(es)"], lines


def _mlp_runs(seed, runs, num_iter=1):
    """tests/gpu's MLP net (FC, Relu, Scale on gpu_0) run `runs` times (each of
    `num_iter` iterations) on new X: its plan."""
    net = GPU_GRAPHS._mlp_net()
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((6, 5)).astype(np.float32), np.zeros(6, np.float32)
    for run in range(runs):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        GPU_GRAPHS._feed_mlp(x, w, b)
        if run == 0:
            workspace.CreateNet(net)
        workspace.RunNet(net.Name(), num_iter)
        np.testing.assert_allclose(workspace.FetchBlob("y"), 0.5 * np.maximum(x @ w.T + b, 0),
                                   rtol=1e-5, atol=1e-6)
    return plan_of(net)


def test_an_async_memory_pool_keeps_segments_eager_with_the_fix(fake):
    settings.set_cuda_graphs(True)
    fake.cuda.set_allocator(fake.cuda.MemoryAsyncPool().malloc)
    lines = graphs.report(_mlp_runs(6, 3))
    assert len(lines) == 1 and "refused: CuPy's allocator is a MemoryAsyncPool" in lines[0]


def _concat_net(rng, inputs=9):
    net = core.Net("concat9")
    names = ["x%d" % k for k in range(inputs)]
    for name in names:
        workspace.FeedBlob(name, rng.standard_normal((2, 3)).astype(np.float32), gpu(0))
    with core.DeviceScope(gpu(0)):
        net.Concat(names, ["joined", "info"], axis=1)
        net.Scale("joined", "out", scale=2.0)
    workspace.CreateNet(net)
    for _ in range(3):
        workspace.RunNet(net.Name())
    want = 2 * np.concatenate([workspace.FetchBlob(n) for n in names], axis=1)
    np.testing.assert_array_equal(workspace.FetchBlob("out"), want)
    return graphs.report(plan_of(net))


def test_a_nine_input_concat_is_captured_and_would_be_refused_through_cupy(fake,
                                                                         monkeypatch):
    """cupy.concatenate of more than 8 arrays uploads a table of their addresses,
    which a capture refuses (the stand-in raises as CuPy does): concat_split copies
    input by input under capture. Were it to call cupy.concatenate (a regression,
    monkeypatched here), the segment would be refused with CuPy's message."""
    settings.set_cuda_graphs(True)
    lines = _concat_net(np.random.default_rng(8))
    assert lines == ["ops #0 (Concat) .. #1 (Scale): 2 ops, captured 1 time(s), "
                     "2 launch(es)"], lines
    workspace.ResetWorkspace()
    monkeypatch.setattr(concat_split, "capturing", lambda: False)
    lines = _concat_net(np.random.default_rng(8))
    assert "refused: op #0 (Concat) on gpu_0: RuntimeError: the current stream is " \
        "capturing, so H2D transfers are disallowed" in lines[0], lines


def test_a_segment_run_as_several_iterations_replays_each(fake):
    """RunNet(num_iter=4): one eager run, then a capture, then replays."""
    settings.set_cuda_graphs(True)
    lines = graphs.report(_mlp_runs(9, 1, num_iter=4))
    assert "captured 1 time(s), 3 launch(es)" in lines[0], lines
    assert fake.graph_launches == 3 and fake.captures == 1


@pytest.fixture(params=[pytest.param(({}, True), id="staged_1gpu"),
                        pytest.param(({"devices": 2, "peer": False}, False),
                                     id="2gpus_no_peer"),
                        pytest.param(({"devices": 2}, False), id="2gpus_peer"),
                        pytest.param(({}, False), id="1gpu")])
def cross_gpu(monkeypatch, request):
    """Stand-ins where gpu_0 reads gpu_1's memory by a staged or a direct copy."""
    options, staged = request.param
    for fake in _installed(monkeypatch, **options):
        settings.set_staged_copies(staged)
        settings.set_gpu_map(2)  # gpu_1 on physical 1 when there are two
        yield fake


def test_a_read_from_another_gpu_stays_out_of_the_graphs(cross_gpu):
    """A one-GPU net reading a blob that lives on another logical GPU (a cross-device
    read, transferred with a warning). The transfer may stage through a pinned buffer
    that copies.retain keeps only until the run ends, so a captured one would replay
    through freed host memory (the stand-in raises StandInError there): the reading op
    runs eagerly, the ops after it are captured and replayed."""
    settings.set_cuda_graphs(True)
    net = core.Net("cross")
    with core.DeviceScope(gpu(0)):
        net.Relu("x", "y")
        net.Scale("y", "z", scale=2.0)
        net.Relu("z", "w")
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the cross-device read's warning)
        for run in range(4):
            x = rng.standard_normal((3, 4)).astype(np.float32)
            workspace.FeedBlob("x", x, gpu(1))
            if run == 0:
                workspace.CreateNet(net)
            workspace.RunNet(net.Name())
            assert cross_gpu.problems == []
            np.testing.assert_array_equal(workspace.FetchBlob("w"), 2 * np.maximum(x, 0))
    assert graphs.report(plan_of(net)) == [
        "ops #1 (Scale) .. #2 (Relu): 2 ops, captured 1 time(s), 3 launch(es)"]


def test_a_fed_array_comes_from_its_streams_pool_not_the_default_streams(fake):
    """FeedBlob outside a run allocates from the pool of the stream that writes the
    array (its GPU's), not of CuPy's default stream, the current one then: a block the
    default stream freed while its own work may still read it is never written by the
    feed's copy (a race the stand-in reports at the test's end)."""
    cp = fake
    rng = np.random.default_rng(21)
    values = rng.standard_normal(4096).astype(np.float32)
    with cp.cuda.Device(0):
        mine = cp.asarray(values)  # user CuPy work on the default stream
        doubled = mine * 2  # ... still reading `mine` as far as other streams know
        del mine  # its block is free for the default stream's next allocation
    workspace.FeedBlob("x", values + 1, gpu(0))
    net = core.Net("fed_scale")
    with core.DeviceScope(gpu(0)):
        net.Scale("x", "y", scale=3.0)
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("y"), (values + 1) * 3, rtol=1e-6)
    np.testing.assert_allclose(doubled.get(), values * 2, rtol=1e-6)
    assert not fake.problems, fake.problems


def test_readers_wait_for_unfinished_feeds_on_other_streams_only_outside_captures(
        monkeypatch):
    """copies.after_pending: a stream waits for the copies FeedBlob left running on
    other streams (not its own: stream order covers those), and not at all while a
    CUDA graph is captured (a captured stream cannot wait for outside work)."""
    from graphnet.executors.cuda import checks

    class Stream(object):
        def __init__(self, ptr):
            self.ptr, self.waited = ptr, []

        def wait_event(self, event):
            self.waited.append(event)

    class Event(object):
        def __init__(self, done):
            self.done = done
    feed_stream, reader, other = Stream(7), Stream(9), Stream(7)
    running, finished = Event(False), Event(True)
    monkeypatch.setattr(copies, "_pending", [(feed_stream, running, "batch"),
                                             (reader, finished, "old batch")])
    copies.after_pending(reader)
    assert reader.waited == [running] and len(copies._pending) == 1  # (finished: gone)
    copies.after_pending(other)  # the feed's own stream (same handle)
    assert other.waited == []
    captured = Stream(11)
    with checks.capturing():
        copies.after_pending(captured)
    assert captured.waited == []
    running.done = True
    copies.after_pending(Stream(11))
    assert copies._pending == []


@pytest.mark.parametrize("failures", [1, graphs.CAPTURE_TRIES])
def test_a_capture_failed_by_a_cuda_error_is_retried_on_later_runs(fake, monkeypatch,
                                                                  failures):
    """A capture that CUDA invalidated (e.g. the pool freed cached blocks near
    out-of-memory, which a capture cannot hold) leaves that run eager and is tried
    again on the next; after CAPTURE_TRIES such failures the segment stays eager."""
    settings.set_cuda_graphs(True)
    invalidated = []
    end_capture = fake.cuda.Stream.end_capture

    def failing(self):
        if len(invalidated) < failures:
            self.capture.invalid = "cudaFree (the pool's cached blocks)"
            invalidated.append(1)
        return end_capture(self)
    monkeypatch.setattr(fake.cuda.Stream, "end_capture", failing)
    plan = _mlp_runs(7, 2)  # eager, then the capture CUDA fails
    assert graphs.report(plan) == [
        "ops #0 (FC) .. #2 (Scale): 3 ops, capture failed 1 time(s), retried: ops #0 (FC) "
        ".. #2 (Scale) on gpu_0: CUDARuntimeError: cudaErrorStreamCaptureInvalidated: "
        "operation failed due to a previous error during capture (invalidated by cudaFree "
        "(the pool's cached blocks))"]
    rng = np.random.default_rng(8)
    w, b = rng.standard_normal((6, 5)).astype(np.float32), np.zeros(6, np.float32)
    for _ in range(4):  # runs 3 to 6 of the same plan
        x = rng.standard_normal((4, 5)).astype(np.float32)
        GPU_GRAPHS._feed_mlp(x, w, b)
        workspace.RunNet("mlp")
        np.testing.assert_allclose(workspace.FetchBlob("y"), 0.5 * np.maximum(x @ w.T + b, 0),
                                   rtol=1e-5, atol=1e-6)
    report = graphs.report(plan)[0]
    if failures == 1:  # captured on run 3, launched on runs 3 to 6
        assert "captured 1 time(s), 4 launch(es)" in report, report
    else:  # failed on runs 2, 3 and 4, eager for good from then on
        assert "refused: ops #0 (FC) .. #2 (Scale) on gpu_0: CUDARuntimeError" in report
        assert len(invalidated) == graphs.CAPTURE_TRIES and fake.captures == 0
