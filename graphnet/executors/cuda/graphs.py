"""CUDA graphs: a one-GPU plan's runs of graph-safe ops captured once, then replayed.

Opt in with GRAPHNET_CUDA_GRAPHS=1 or settings.set_cuda_graphs(True). A replayed
segment costs one graph launch instead of a Python call and several kernel
launches per op, which is most of a small net's step time on a GPU.

* Segments: the longest runs of consecutive steps that may be captured: a CuPy
  kernel whose op declared it graph-safe (registry.declare_graph_safe: no host
  state, no random draws, nothing read back from the device but deferred checks),
  every input where the op reads it (host inputs such as Split's sizes are baked
  into the graph and compared before each replay). Other steps (Iter,
  LearningRate, CPU ops, ...) run as before, between the segments. Matrix
  products are captured through cuBLAS called directly (cuda/blas.py): CuPy
  refuses its cuBLAS calls under capture.
* A plan's first run is eager (kernels compile, caches fill, every blob lands on
  its device); its segments are found and captured on the second: their ops run
  once more under stream capture, with the index checks deferred
  (graphnet.executors.cuda.checks) because nothing captured may wait for the
  device, and every block allocated meanwhile is kept for as long as the graph
  lives (temporaries included: no reuse by later work).
* Before each replay, every blob the segment reads before writing it (fed data,
  parameters, a learning rate an eager op just wrote) is compared with the buffer
  the graph reads: a new value of the same shape and dtype is copied into that
  buffer on the stream (FeedBlob writes such a batch into the buffer itself:
  feeds_in_place); a new shape drops the graph (the segment runs eagerly and
  is captured again on the run after). The steps whose shapes changed then leave
  the segments for good (split_dynamic: DLRM's INDICES with bags of random sizes
  keep the embedding ops eager, the rest replays), and a segment whose graphs keep
  being dropped before they pay off runs eagerly (UNSTABLE). Parameters that the
  segment replaces (an out-of-place update) are copied back into their captured
  buffer by the graph's last nodes, so the next replay reads the updated values.
* After a replay every blob the segment writes holds its captured buffer again
  and the deferred checks of the captured ops are read when the run ends: a bad
  index is reported as an OperatorError naming the op, after the graph wrote its
  outputs (as with GRAPHNET_CUDA_CHECKS=deferred, which a run with graphs applies
  to its eager ops as well, so none waits for the GPU between launches).
* A capture that fails (an op that waits for the device, an unsupported call) is
  abandoned: blobs get their values back, the segment runs eagerly from then on,
  and report(plan) says why. One that a CUDA error failed (CUDA invalidating the
  capture, e.g. CuPy's pool freeing cached blocks near out-of-memory) is tried
  again on later runs, CAPTURE_TRIES captures in all.

Imports the cuda package modules and run.run_step.
"""

import weakref

import numpy as np

from graphnet.devices import device_name
from graphnet.executors.cuda import blas, checks, copies, host_values, settings
from graphnet.executors.cuda.errors import is_cuda_error
from graphnet.executors.run import run_step

__all__ = ["segments", "run_segment", "report", "Segment", "allocator_refusal",
           "UNSTABLE", "CAPTURE_TRIES", "captured_state", "dynamic_steps", "split_dynamic",
           "feeds_in_place"]

UNSTABLE = 3  # graphs in a row dropped for new shapes after < 2 launches: eager for good
# captures a CUDA error failed (e.g. the pool freeing cached blocks near out-of-memory,
# which a capture cannot hold), retried on later runs before the segment stays eager
CAPTURE_TRIES = 3

# Input buffers of live graphs: FeedBlob writes a new batch of the same shape into the
# buffer itself (as Caffe2's feeder reused a tensor's memory) instead of a new array
# that each replay would copy in. id(buffer) -> [weak reference, segments using it].
_fed_in_place = {}


def feeds_in_place(array):
    """True when `array` is an input buffer of a captured graph (see _fed_in_place)."""
    entry = _fed_in_place.get(id(array))
    return entry is not None and entry[0]() is array


def _hold_inputs(seg, on):
    for _, buffer in seg.inputs:
        key = id(buffer)
        entry = _fed_in_place.get(key)
        if entry is None or entry[0]() is not buffer:
            if not on:
                continue

            def gone(ref, key=key):
                held = _fed_in_place.get(key)
                if held is not None and held[0] is ref:
                    del _fed_in_place[key]
            entry = _fed_in_place[key] = [weakref.ref(buffer, gone), 0]
        entry[1] += 1 if on else -1
        if entry[1] <= 0:
            del _fed_in_place[key]


class Segment(object):
    """Consecutive graph-safe steps of one plan and, once captured, their graph."""

    def __init__(self, steps):
        self.steps = steps
        self.graph = None
        self.inputs = []     # (blob, buffer): read before written, refreshed
        self.host_inputs = []  # (blob, copy): host values baked in, compared
        self.names = {}      # id(blob) -> its name in the net (for messages)
        self.baked = None    # the settings the captured kernels were chosen by
        self.outputs = []    # (blob, value, device) after the capture
        self.checks = []     # deferred check items of the captured ops
        self.keep = []       # every block the graph reads or writes
        self.eager_runs = 1  # the plan's first run, which ran every step eagerly
        self.launches = 0
        self.captures = 0
        self.replays = 0     # launches of the current graph
        self.unstable = 0    # graphs in a row dropped for new shapes before paying off
        self.refused = None  # why this segment runs eagerly for good
        self.failed = 0      # captures that failed with a CUDA error (CAPTURE_TRIES)
        self.failure = None  # the last one, said by report() while retried

    def drop(self, why):
        """Forget the graph: `why` its inputs changed shape. A segment whose shapes
        change at almost every run (DLRM's INDICES with bags of random sizes) would
        capture on every other run, costlier than running eagerly: after UNSTABLE
        graphs in a row launched fewer than twice each, it runs eagerly for good."""
        self.unstable = self.unstable + 1 if self.replays < 2 else 1
        if self.unstable >= UNSTABLE:
            self.refused = ("shapes change between runs (%s); CUDA graphs need static "
                            "shapes: pad or bucket the inputs (e.g. bags of fixed size) "
                            "to replay this segment" % why)
        self.forget()

    def forget(self):
        """No graph: the next run is eager, the one after captures again."""
        if self.graph is not None:
            _hold_inputs(self, False)
        self.graph = None
        self.inputs, self.outputs, self.checks, self.keep = [], [], [], []
        self.host_inputs = []
        self.eager_runs = 0
        self.replays = 0

    def describe(self):
        first, last = self.steps[0], self.steps[-1]
        return "ops #%d (%s) .. #%d (%s)" % (first.index, first.op_type, last.index,
                                            last.op_type)


def _capturable(step):
    if step.backend.name != "cupy" or not step.schema.graph_safe:
        return False
    for blob, want in zip(step.in_blobs, step.want_devices):
        if want is not None and blob.device != want:
            # a read across devices (another GPU's blob, a host blob a GPU op reads):
            # its transfer may stage through a pinned buffer that dies with the run
            return False
        if want is None and not blob.device.is_gpu:
            return False  # a host value read as it is
    return True  # (host inputs, e.g. Split's sizes, are compared before each replay)


def segments(plan, minimum=2):
    """The plan's steps as a list of Step and Segment items (cached on the plan; steps
    found dynamic, see split_dynamic, stay out of segments)."""
    units = getattr(plan, "_cuda_graph_units", None)
    if units is None:
        dynamic = getattr(plan, "_cuda_graph_dynamic", ())
        kept = {tuple(step.index for step in unit.steps): unit  # (their graphs too)
                for unit in getattr(plan, "_cuda_graph_stale", None) or ()
                if isinstance(unit, Segment)}
        units, run = [], []
        for step in plan.steps + [None]:
            if step is not None and step.index not in dynamic and _capturable(step):
                run.append(step)
                continue
            if len(run) >= minimum:
                units.append(kept.get(tuple(step.index for step in run)) or Segment(run))
            else:
                units.extend(run)
            run = []
            if step is not None:
                units.append(step)
        plan._cuda_graph_units, plan._cuda_graph_stale = units, None
    return units


def report(plan):
    """One line per segment of a plan run with graphs: captures, launches, or why not;
    then the ops that run eagerly between graphs because their shapes change."""
    lines = []
    for unit in getattr(plan, "_cuda_graph_units", None) or []:
        if isinstance(unit, Segment):
            state = ("refused: %s" % unit.refused if unit.refused else
                     "captured %d time(s), %d launch(es)" % (unit.captures, unit.launches)
                     if unit.captures else
                     "capture failed %d time(s), retried: %s" % (unit.failed, unit.failure)
                     if unit.failure else "not captured yet")
            lines.append("%s: %d ops, %s" % (unit.describe(), len(unit.steps), state))
    dynamic = getattr(plan, "_cuda_graph_dynamic", ())
    if dynamic:
        steps = [step for step in plan.steps if step.index in dynamic]
        lines.append("%d op(s) run eagerly, their shapes or host inputs change between "
                     "runs: %s" % (len(steps), ", ".join("#%d (%s)" % (step.index,
                                                                      step.op_type)
                                                         for step in steps)))
    return lines


def captured_state(seg):
    """id(blob) -> the shape it had in the graph (a host input: its baked values)."""
    state = {id(blob): tuple(buffer.shape) for blob, buffer in seg.inputs}
    state.update((id(blob), tuple(value.shape)) for blob, value, _ in seg.outputs
                 if hasattr(value, "shape"))
    state.update((id(blob), saved) for blob, saved in seg.host_inputs)
    return state


def dynamic_steps(steps, captured):
    """Indices of the steps that read or write a blob whose shape (or, for a host
    input, values) differs from `captured` (captured_state of their graph)."""
    found = set()
    for step in steps:
        for blob in list(step.in_blobs) + list(step.out_blobs):
            then = captured.get(id(blob))
            if then is None:
                continue
            value = blob.value
            if isinstance(then, tuple):
                changed = tuple(getattr(value, "shape", ())) != then
            else:
                changed = not _same_host_value(value, then)
            if changed:
                found.add(step.index)
                break
    return found


def split_dynamic(plan, seg, captured):
    """After a segment's eager run on new shapes: the steps whose shapes changed leave
    the plan's segments (they run eagerly from the next run), so the rest can be
    captured without them (DLRM with bags of random sizes: SparseLengthsSum, its
    gradient and ScatterWeightedSum read INDICES; the MLPs, the interaction and the
    dense updates keep static shapes). True when the plan was split."""
    dynamic = dynamic_steps(seg.steps, captured)
    if not dynamic or len(dynamic) == len(seg.steps):
        return False
    plan._cuda_graph_dynamic = set(getattr(plan, "_cuda_graph_dynamic", ())) | dynamic
    plan._cuda_graph_stale = plan._cuda_graph_units  # the segments left whole stay
    plan._cuda_graph_units = None  # segments() splits them out on the next run
    return True


def run_segment(plan, seg, state, stream, physical, run_eagerly, upload):
    """Run a segment: eagerly (warm-up, refused), captured then launched, or
    replayed. `run_eagerly(step)` is the runner's per-step path, `upload(step)`
    moves a step's host-held inputs to its GPU."""
    cp = state.rt.cp
    if seg.graph is not None and seg.baked != _baked():
        seg.forget()  # a setting the captured kernels depend on changed
    if seg.refused is not None or (seg.graph is None and seg.eager_runs < 1):
        for step in seg.steps:
            run_eagerly(step)
        seg.eager_runs += 1
        return
    with cp.cuda.Device(physical), stream:
        if seg.graph is None:
            if not _capture(plan, seg, state, stream, upload):
                for step in seg.steps:
                    run_eagerly(step)
                return
        else:
            changed = _refresh(seg, state, stream)
            if changed is not None:
                captured = captured_state(seg)
                seg.drop(changed)  # new shapes: eager now, captured again on a later run
                for step in seg.steps:
                    run_eagerly(step)
                seg.eager_runs += 1
                split_dynamic(plan, seg, captured)
                return
        host_values.forget_all([value for _, value, _ in seg.outputs])
        seg.graph.launch(stream)
        seg.launches += 1
        seg.replays += 1
    for blob, value, device in seg.outputs:
        blob.value = value
        blob.device = device
        state.writes[id(blob)] = (stream, None)
    for blob, _ in seg.inputs:
        state.writes.setdefault(id(blob), (stream, None))
    checks.add_items(seg.checks)
    state.last[seg.steps[0].device.id] = seg.steps[-1]


def _baked():
    """Settings that choose kernels when ops run, so a graph holds their values then:
    the scatter kernels' deterministic mode (checks are always deferred in a graph)."""
    return (settings.deterministic(),)


def _same_host_value(value, saved):
    """A host input still holds the values baked into the graph."""
    return (isinstance(value, np.ndarray) and value.shape == saved.shape
            and value.dtype == saved.dtype and np.array_equal(value, saved))


def _same_memory(value, buffer, cp):
    """A new view of the buffer itself (an in-place op's reshaped output)."""
    return (isinstance(value, cp.ndarray) and value.data.ptr == buffer.data.ptr
            and value.shape == buffer.shape and value.strides == buffer.strides
            and value.dtype == buffer.dtype)


def _same_kind(value, buffer, cp):
    return (isinstance(value, (np.ndarray, cp.ndarray)) and value.shape == buffer.shape
            and value.dtype == buffer.dtype)


def _refresh(seg, state, stream):
    """Copy new input values into the graph's buffers; None when done, else what no
    longer fits the graph: a new shape or dtype, or other values of a host input
    (baked into the graph)."""
    cp = state.rt.cp
    for blob, saved in seg.host_inputs:
        if not _same_host_value(blob.value, saved):
            return "host input '%s' holds other values" % seg.names.get(id(blob), "?")
    for blob, buffer in seg.inputs:
        value = blob.value
        if value is buffer or _same_memory(value, buffer, cp):
            blob.value = buffer
            continue
        if (not _same_kind(value, buffer, cp) or not buffer.flags.c_contiguous
                or (isinstance(value, cp.ndarray) and value.device.id != buffer.device.id)):
            return "'%s' was %s %s, now %s %s" % (
                seg.names.get(id(blob), "?"), buffer.dtype, tuple(buffer.shape),
                getattr(value, "dtype", type(value).__name__),
                tuple(getattr(value, "shape", ())))
        if isinstance(value, cp.ndarray):
            known = host_values.lookup(value)
            value = cp.ascontiguousarray(value)
            host_values.forget(buffer)  # overwritten: it now holds what `value` holds
            if buffer.nbytes:
                cp.cuda.runtime.memcpyAsync(buffer.data.ptr, value.data.ptr, buffer.nbytes,
                                            copies.D2D, stream.ptr)
            if known is not None:
                host_values.remember(buffer, known)
            state.scope.retained.append(value)  # read by the copy until the run syncs
        else:
            copies.overwrite(state.rt, value, buffer, stream)  # (kept by the run's scope)
        blob.value = buffer
    return None


class _Refused(Exception):
    pass


def _kept_allocator(cp, keep):
    """The current allocator, keeping every block it hands out in `keep`: buffers a
    captured graph writes are never reused while the graph lives, and return to the
    pool like any other once it is dropped (no second pool that could die first)."""
    base = cp.cuda.get_allocator()

    def malloc(size):
        pointer = base(size)
        keep.append(pointer)
        return pointer
    return malloc


def allocator_refusal(cp):
    """Why CuPy's current allocator cannot serve a capture, or None: a MemoryAsyncPool's
    malloc, or cupy.cuda.malloc_async itself (both cudaMallocAsync)."""
    allocator = cp.cuda.get_allocator()
    pool = getattr(cp.cuda, "MemoryAsyncPool", None)
    owner = getattr(allocator, "__self__", None)
    if pool is not None and isinstance(owner, pool):
        what = "a MemoryAsyncPool"
    elif allocator is not None and allocator is getattr(cp.cuda, "malloc_async", None):
        what = "cupy.cuda.malloc_async"
    else:
        return None
    return ("CuPy's allocator is %s (cudaMallocAsync): what it hands out during a "
            "capture becomes the graph's own allocations, and a graph holding unfreed "
            "ones cannot be launched twice. Fix: use the default pool "
            "(cupy.cuda.set_allocator(cupy.cuda.MemoryPool().malloc)) or turn graphs off "
            "(GRAPHNET_CUDA_GRAPHS=0)." % what)


def _capture(plan, seg, state, stream, upload):
    """Capture the segment's ops into seg.graph; False (seg.refused set, blobs as
    they were) when they cannot be captured."""
    cp = state.rt.cp
    for step in seg.steps:
        upload(step)  # host-held inputs move now: a captured upload would replay stale
    blobs, names = {}, {}
    for step in seg.steps:
        for blob, name in zip(list(step.in_blobs) + list(step.out_blobs),
                              list(step.in_names) + list(step.out_names)):
            blobs[id(blob)] = (blob, blob.value, blob.device)
            names.setdefault(id(blob), name)
    inputs, host_inputs, written, outputs = [], [], set(), []
    for step in seg.steps:
        for blob in step.in_blobs:
            if id(blob) in written or any(b is blob for b, _ in inputs + host_inputs):
                continue
            if not blob.device.is_gpu and isinstance(blob.value, np.ndarray):
                host_inputs.append((blob, np.array(blob.value, copy=True)))
                continue
            if not isinstance(blob.value, cp.ndarray):
                seg.refused = ("op #%d (%s) reads '%s' holding %s, not a GPU array"
                               % (step.index, step.op_type, names[id(blob)],
                                  type(blob.value).__name__))
                return False
            inputs.append((blob, blob.value))
        for blob in step.out_blobs:
            if id(blob) not in written:
                written.add(id(blob))
                outputs.append(blob)
    refusal = allocator_refusal(cp)
    if refusal is not None:
        seg.refused = refusal
        return False
    if not settings.direct_blas():  # (otherwise the eager run's products checked it)
        blas.binding_ok(cp)  # a capture's products use the binding once it passed
    keep = []
    current = graph = None
    try:
        with stream, cp.cuda.using_allocator(_kept_allocator(cp, keep)), \
                checks.collect() as found, checks.capturing():
            stream.begin_capture()
            try:
                for current in seg.steps:
                    checks.set_current_step(current)
                    run_step(plan, current)
                current = None
                checks.set_current_step(None)
                for blob, buffer in inputs:  # state the segment replaced: copy it back
                    value = blob.value
                    if value is buffer or id(blob) not in written:
                        continue
                    if _same_memory(value, buffer, cp):  # updated in place
                        blob.value = buffer
                        continue
                    if not (isinstance(value, cp.ndarray) and _same_kind(value, buffer, cp)
                            and value.flags.c_contiguous and buffer.flags.c_contiguous):
                        raise _Refused("'%s' changes shape or type within the segment"
                                       % names[id(blob)])
                    if buffer.nbytes:
                        cp.cuda.runtime.memcpyAsync(buffer.data.ptr, value.data.ptr,
                                                    buffer.nbytes, copies.D2D, stream.ptr)
                    keep.append(value)
                    blob.value = buffer
            finally:
                checks.set_current_step(None)
                try:
                    graph = stream.end_capture()
                except Exception:
                    if current is None:
                        raise  # (an op's error is the one to report)
    except Exception as exc:
        for blob, value, device in blobs.values():
            blob.value, blob.device = value, device
        where = ("op #%d (%s)" % (current.index, current.op_type) if current is not None
                 else seg.describe())
        cause = getattr(exc, "cause", None) or exc
        text = str(cause).splitlines()[0] if str(cause) else ""
        reason = "%s on %s: %s: %s" % (where, device_name(seg.steps[0].device),
                                       type(cause).__name__, text)
        seg.failed += 1
        if is_cuda_error(cp, cause) and seg.failed < CAPTURE_TRIES:
            seg.failure = reason  # (may pass on a later run: eager until then)
        else:
            seg.refused = reason
        return False
    seg.graph, seg.keep = graph, keep
    seg.inputs, seg.host_inputs, seg.names = inputs, host_inputs, names
    _hold_inputs(seg, True)
    seg.baked = _baked()
    seg.outputs = [(blob, blob.value, blob.device) for blob in outputs]
    seg.checks = list(found.items)
    seg.captures += 1
    return True
