"""graphnet.executors.cuda.graphs on the CPU: which steps a CUDA graph may capture
(the segments of a plan), the GRAPHNET_CUDA_GRAPHS setting, and the ops that declare
themselves graph-safe. Capturing and replaying need a GPU: tests/gpu/test_gpu_graphs.py."""

from types import SimpleNamespace

import numpy as np
import pytest

from graphnet import registry
from graphnet.devices import CPU, Device
from graphnet.executors.cuda import graphs, settings

GPU0 = Device(1, 0)


def step(index, op_type, inputs=((GPU0, GPU0),), backend="cupy"):
    """A stand-in Step: op type, backend and (blob device, wanted device) per input."""
    return SimpleNamespace(
        index=index, op_type=op_type, schema=registry.get(op_type), device=GPU0,
        backend=SimpleNamespace(name=backend),
        in_blobs=[SimpleNamespace(device=d) for d, _ in inputs],
        want_devices=[w for _, w in inputs])


def plan_of(*steps):
    return SimpleNamespace(steps=list(steps))


def shape(units):
    return [("seg", [s.index for s in u.steps]) if isinstance(u, graphs.Segment)
            else u.index for u in units]


def test_segments_are_the_longest_runs_of_capturable_steps():
    plan = plan_of(step(0, "Iter", [(CPU, CPU)]), step(1, "LearningRate", [(CPU, CPU)]),
                   step(2, "FC", [(GPU0, GPU0)] * 3), step(3, "Relu"), step(4, "Scale"),
                   step(5, "Dropout"), step(6, "Sigmoid"), step(7, "Relu"),
                   step(8, "Relu", backend="numpy"), step(9, "Relu"))
    units = graphs.segments(plan)
    assert shape(units) == [0, 1, ("seg", [2, 3, 4]), 5, ("seg", [6, 7]), 8, 9]
    assert graphs.segments(plan) is units  # cached on the plan
    assert units[2].eager_runs == 1  # the plan's first run warmed it up


def test_host_inputs_may_be_captured_but_reads_across_devices_may_not():
    sizes_on_host = step(1, "Split", [(GPU0, GPU0), (CPU, CPU)])
    read_across = step(3, "Relu", [(CPU, GPU0)])
    other_gpu = step(5, "Relu", [(Device(1, 1), GPU0)])  # a staged copy, maybe
    plan = plan_of(step(0, "Concat"), sizes_on_host, step(2, "Relu"), read_across,
                   step(4, "Relu"), other_gpu, step(6, "Relu"), step(7, "Relu"))
    assert shape(graphs.segments(plan)) == [("seg", [0, 1, 2]), 3, 4, 5, ("seg", [6, 7])]


def test_report_says_what_each_segment_did():
    plan = plan_of(step(0, "FC"), step(1, "Relu"), step(2, "Iter", [(CPU, CPU)]))
    seg, _ = graphs.segments(plan)
    assert graphs.report(plan) == ["ops #0 (FC) .. #1 (Relu): 2 ops, not captured yet"]
    seg.captures, seg.launches = 1, 7
    assert graphs.report(plan)[0].endswith("captured 1 time(s), 7 launch(es)")
    seg.refused = "op #1 (Relu) on gpu_0: CUDARuntimeError: capture unsupported"
    assert graphs.report(plan)[0].endswith("refused: " + seg.refused)


def test_the_dlrm_training_ops_are_graph_safe_and_host_state_ops_are_not():
    safe = {"SparseLengthsSum", "SparseLengthsIndicesInGradientSumGradient", "FC",
            "FCGradient", "Relu", "ReluGradient", "BatchMatMul", "Concat", "Split",
            "Sum", "Scale", "Flatten", "BatchGather", "BatchGatherGradient", "Sigmoid",
            "SigmoidGradient", "SquaredL2Distance", "SquaredL2DistanceGradient",
            "AveragedLoss", "AveragedLossGradient", "ConstantFill", "ResizeLike",
            "WeightedSum", "ScatterWeightedSum"}
    for op_type in safe:
        assert registry.get(op_type).graph_safe, op_type
    for op_type in ("Iter", "LearningRate", "Dropout", "UniformFill", "GaussianFill",
                    "Free", "Unique", "SparseLengthsSumGradient", "NCCLAllreduce",
                    "CopyGPUToCPU", "SparseAdagrad"):
        assert not registry.get(op_type).graph_safe, op_type


@pytest.mark.parametrize("raw,want", [(None, False), ("1", True), ("0", False),
                                      ("on", True)])
def test_cuda_graphs_setting(monkeypatch, raw, want):
    if raw is None:
        monkeypatch.delenv("GRAPHNET_CUDA_GRAPHS", raising=False)
    else:
        monkeypatch.setenv("GRAPHNET_CUDA_GRAPHS", raw)
    settings.reset()
    try:
        assert settings.cuda_graphs() is want
        settings.set_cuda_graphs(not want)
        assert settings.cuda_graphs() is (not want)
    finally:
        settings.reset()


def test_a_cudamallocasync_pool_is_refused_with_the_fix():
    class MemoryAsyncPool(object):
        def malloc(self, size):
            return size

    class MemoryPool(MemoryAsyncPool):
        pass
    for owner, refused in ((MemoryAsyncPool(), True), (MemoryPool(), False)):
        cuda = SimpleNamespace(MemoryAsyncPool=MemoryAsyncPool,
                               get_allocator=lambda owner=owner: owner.malloc)
        if type(owner) is MemoryPool:
            cuda.MemoryAsyncPool = type("MemoryAsyncPool", (object,), {})
        reason = graphs.allocator_refusal(SimpleNamespace(cuda=cuda))
        if refused:
            assert "MemoryAsyncPool" in reason and "cupy.cuda.MemoryPool()" in reason
        else:
            assert reason is None

    def malloc_async(size):  # cupy.cuda.malloc_async: a function, no pool behind it
        return size
    cuda = SimpleNamespace(MemoryAsyncPool=MemoryAsyncPool, malloc_async=malloc_async,
                           get_allocator=lambda: malloc_async)
    reason = graphs.allocator_refusal(SimpleNamespace(cuda=cuda))
    assert "is cupy.cuda.malloc_async (cudaMallocAsync)" in reason
    assert "cupy.cuda.MemoryPool()" in reason
    cuda.get_allocator = lambda: len  # another plain function: not refused
    assert graphs.allocator_refusal(SimpleNamespace(cuda=cuda)) is None


def test_capture_defers_checks_in_its_own_thread_only():
    """A capture defers this thread's index checks; another thread keeps sync mode."""
    import threading
    from graphnet.executors.cuda import checks
    before = settings.checks_mode()
    settings.set_checks_mode("sync")
    seen = {}
    try:
        with checks.capturing():
            assert checks.is_capturing() and not checks.sync_checks()
            worker = threading.Thread(
                target=lambda: seen.update(other=(checks.is_capturing(),
                                                  checks.sync_checks())))
            worker.start()
            worker.join()
        assert seen["other"] == (False, True)
        assert not checks.is_capturing() and checks.sync_checks()
        with checks.deferring(False):
            assert checks.sync_checks()
        with checks.deferring():  # a run with graphs on: its eager ops defer too
            assert not checks.sync_checks() and not checks.is_capturing()
            with checks.deferring(False):  # (nested: still deferred)
                assert not checks.sync_checks()
        assert checks.sync_checks()
    finally:
        settings.set_checks_mode(before)


def test_a_segment_whose_shapes_keep_changing_runs_eagerly_for_good():
    """Bags of random sizes give INDICES a new shape at almost every run: capturing
    on every other run would cost more than running eagerly."""
    plan = plan_of(step(0, "SparseLengthsSum"), step(1, "Relu"))
    seg = graphs.segments(plan)[0]
    seg.replays = 7  # a graph that paid off, then a new shape: captured again
    seg.drop("'idx' was int64 (40,), now int64 (41,)")
    assert seg.refused is None and seg.unstable == 1 and seg.replays == 0
    for k in range(2, graphs.UNSTABLE + 1):
        seg.replays = 1  # each new graph launched once before the shape changed again
        seg.drop("'idx' was int64 (%d,), now int64 (%d,)" % (40 + k, 41 + k))
    assert seg.unstable == graphs.UNSTABLE
    assert seg.refused.startswith("shapes change between runs ('idx' was int64 (43,), "
                                  "now int64 (44,)); CUDA graphs need static shapes")
    assert graphs.report(plan)[0].endswith("refused: " + seg.refused)


def test_steps_whose_shapes_change_leave_the_segments():
    """Bags of random sizes: the ops reading INDICES (or its gradient rows) change
    shape between runs; they leave the segments, the static ops stay captured."""
    def blob(value):
        return SimpleNamespace(value=value, device=GPU0)
    table, idx, lengths, pooled, out, sizes = (blob(np.zeros(s, np.float32)) for s in
                                               ((9, 4), (7,), (3,), (3, 4), (3, 4), (2,)))
    sizes.value = np.array([1, 2], np.int32)

    def op(index, op_type, ins, outs):
        made = step(index, op_type)
        made.in_blobs, made.out_blobs = ins, outs
        return made
    steps = [op(0, "FC", [out], [out]), op(1, "SparseLengthsSum", [table, idx, lengths],
                                          [pooled]),
             op(2, "Relu", [pooled], [out]), op(3, "Scale", [out], [out]),
             op(4, "Split", [out, sizes], [pooled]), step(5, "Iter", [(CPU, CPU)]),
             op(6, "Relu", [out], [out]), op(7, "Relu", [out], [out])]
    plan = plan_of(*steps)
    seg, _, other = graphs.segments(plan)
    assert len(seg.steps) == 5 and [s.index for s in other.steps] == [6, 7]
    seg.inputs = [(b, np.zeros(b.value.shape, np.float32)) for b in (table, idx, lengths)]
    seg.outputs = [(b, b.value, GPU0) for b in (pooled, out)]
    seg.host_inputs = [(sizes, sizes.value.copy())]
    captured = graphs.captured_state(seg)
    assert captured[id(idx)] == (7,) and captured[id(pooled)] == (3, 4)
    assert graphs.dynamic_steps(seg.steps, captured) == set()
    idx.value = np.zeros(9, np.int64)  # a new batch: 9 indices instead of 7
    assert graphs.dynamic_steps(seg.steps, captured) == {1}
    sizes.value = np.array([2, 1], np.int32)  # a baked host input with other values
    assert graphs.dynamic_steps(seg.steps, captured) == {1, 4}
    assert graphs.split_dynamic(plan, seg, captured)
    units = graphs.segments(plan)
    assert shape(units) == [0, 1, ("seg", [2, 3]), 4, 5, ("seg", [6, 7])]
    assert units[-1] is other  # a segment the split left whole keeps its graph
    assert graphs.report(plan)[-1] == ("2 op(s) run eagerly, their shapes or host inputs "
                                       "change between runs: #1 (SparseLengthsSum), "
                                       "#4 (Split)")
    # every step dynamic: nothing to split off, the segment's own UNSTABLE rule decides
    other = plan_of(*steps[1:2])
    assert not graphs.split_dynamic(other, graphs.Segment(steps[1:2]), captured)
    assert not hasattr(other, "_cuda_graph_dynamic")
