"""The CUDA runner: a plan whose ops run on real GPUs, one stream per logical GPU.

The host enqueues ops in net order (a valid order for `simple` and for the
`dag`/`async_scheduling` types alike, so both give identical results), and the
GPUs overlap whatever the dependencies allow:

* each GPU op runs on its logical device's stream, with that device current;
* an op waits, with stream.wait_event (never a host sync), for the last writer
  of each input and output on other streams and for every reader on another
  stream of a blob it overwrites (write-after-read);
* values replaced during the run stay referenced until the run's final
  synchronization, so CuPy's stream-ordered pool never hands their memory to
  another stream while a reader may still be using it;
* a plan whose GPU ops all run on one logical GPU has one stream and nothing to
  order across streams: unless profiled, its run makes that device and stream
  current once and its ops record no events (a CPU op that reads a GPU result
  synchronizes that stream instead), which saves their cost per op;
* CPU ops wait on the host (event.synchronize) for GPU-written inputs;
* copies that FeedBlob enqueued without waiting are waited for on the device by
  the run's streams as it starts, when they were made on another stream;
* the host waits for all streams once, at the end; a fault reported there
  names the last op of the failing device. Deferred index checks are read then
  (GRAPHNET_CUDA_CHECKS=deferred, and every op of a run with CUDA graphs on).

Imports run_step (the shared loop body) and the cuda package modules.
"""

import numpy as np

from graphnet.devices import device_name
from graphnet.errors import HostOnlyTypeError, OperatorError
from graphnet.executors.cuda import checks, copies, graphs, host_values, settings
from graphnet.executors.cuda.errors import describe_cuda_error, is_cuda_error
from graphnet.executors.run import operator_error, run_step

__all__ = ["run_cuda_plan", "uses_cuda", "profile"]

# When a list: every GPU step appends (step, start event, end event), timing events
# recorded on its stream (tests and benchmarks read when ops ran; see profile()).
_PROFILE = [None]


class profile(object):
    """with profile() as records: ... -> records of (step, start, end) CUDA events."""

    def __enter__(self):
        self.records = []
        _PROFILE[0] = self.records
        return self.records

    def __exit__(self, *exc):
        _PROFILE[0] = None
        return False


def uses_cuda(plan):
    return any(step.backend.name == "cupy" for step in plan.steps)


class _RunState(object):
    __slots__ = ("rt", "writes", "reads", "last", "scope", "entered")

    def __init__(self, rt, scope):
        self.rt = rt
        self.writes = {}  # id(blob) -> (stream, event or None) of its last GPU write
        self.reads = {}   # id(blob) -> {logical: event after a GPU read}
        self.last = {}    # logical -> last step enqueued on its stream
        self.scope = scope
        self.entered = None  # a one-GPU run's stream, current throughout (see _entered)


def _gpus(plan):
    """The logical GPUs the plan's GPU ops run on, in order (cached)."""
    gpus = getattr(plan, "_cuda_gpus", None)
    if gpus is None:
        gpus = plan._cuda_gpus = sorted({step.device.id for step in plan.steps
                                         if step.backend.name == "cupy"})
    return gpus


def _one_stream(plan):
    """True when every GPU op of the plan runs on the same logical GPU."""
    return len(_gpus(plan)) <= 1


class _entered(object):
    """with _entered(plan, state, single): ... -- a one-GPU run (`single`), unprofiled,
    makes its device and stream current once for all its ops (state.entered), no
    events, instead of entering and leaving both around each op; otherwise nothing."""

    def __init__(self, plan, state, single):
        self.contexts = []
        if single and _PROFILE[0] is None:
            step = next((s for s in plan.steps if s.backend.name == "cupy"), None)
            if step is not None:
                rt = state.rt
                stream = rt.stream(step.device.id)
                self.contexts = [rt.cp.cuda.Device(rt.physical_of(step.device.id)), stream]
                state.entered = stream

    def __enter__(self):
        for context in self.contexts:
            context.__enter__()
        return self

    def __exit__(self, *exc):
        for context in reversed(self.contexts):
            context.__exit__(*exc)
        return False


def _upload_host_inputs(plan, state, step, stream):
    """GPU blobs holding numpy (fed while GPUs were virtual, or a kernel's host
    result) move to their device before a GPU op reads them. Strings cannot."""
    moved = []
    for i, blob in enumerate(step.in_blobs):
        value = blob.value
        if not isinstance(value, np.ndarray) or not blob.device.is_gpu:
            continue
        want = step.want_devices[i]
        if want is not None and not want.is_gpu:
            continue
        if value.dtype == object:
            raise operator_error(plan, step, HostOnlyTypeError(
                "%s: input %d ('%s') is a STRING tensor, which cannot live on a GPU "
                "(found on %s). Fix: run this op on the CPU (a CPU DeviceScope)."
                % (step.op_type, i, step.in_names[i], device_name(blob.device)),
                input_index=i))
        physical = state.rt.physical_of(blob.device.id)
        blob.value = copies.to_device(state.rt, value, physical, stream)
        moved.append(blob)
    return moved


def _gpu_step(plan, step, state):
    if state.entered is not None:
        return _entered_step(plan, step, state, state.entered)
    rt = state.rt
    logical = step.device.id
    stream = rt.stream(logical)
    physical = rt.physical_of(logical)
    waits = {}
    for blob in step.in_blobs:
        written = state.writes.get(id(blob))
        if written is not None and written[0] is not stream:
            waits[id(written[1])] = written[1]
    for blob in step.out_blobs:
        key = id(blob)
        written = state.writes.get(key)
        if written is not None and written[0] is not stream:
            waits[id(written[1])] = written[1]
        for reader, event in state.reads.get(key, {}).items():
            if reader != logical:
                waits[id(event)] = event
        if blob.value is not None:
            _outgoing(state, blob.value)
    cp = rt.cp
    with cp.cuda.Device(physical):
        for event in waits.values():
            stream.wait_event(event)
        with stream:
            moved = _upload_host_inputs(plan, state, step, stream)
            records = _PROFILE[0]
            if records is not None:
                start = cp.cuda.Event()
                start.record(stream)
            _run(plan, step, cp, physical)
        event = cp.cuda.Event(disable_timing=records is None)
        event.record(stream)
        if records is not None:
            records.append((step, start, event))
    state.last[logical] = step
    for blob in step.in_blobs:
        state.reads.setdefault(id(blob), {})[logical] = event
    for blob in moved:
        state.writes[id(blob)] = (stream, event)
    for blob in step.out_blobs:
        state.writes[id(blob)] = (stream, event)
        state.reads[id(blob)] = {}


def _outgoing(state, value):
    """An output's current value, which the op replaces or updates in place: kept until
    the run synchronizes (a reader on another stream may still use it), and no longer
    known to the host."""
    state.scope.retained.append(value)
    host_values.forget(value)


def _run(plan, step, cp, physical):
    """run_step, the current step known to the deferred checks; a CUDA error names the
    op's device and what CUDA allows after it."""
    checks.set_current_step(step)
    try:
        run_step(plan, step)
    except OperatorError as exc:
        cause = exc.cause
        if is_cuda_error(cp, cause):
            raise OperatorError(
                "%s\n  %s" % (exc, describe_cuda_error(cp, cause, step, physical)),
                op_index=exc.op_index, op_type=exc.op_type,
                net_name=exc.net_name, cause=cause) from cause
        raise
    finally:
        checks.set_current_step(None)


def _entered_step(plan, step, state, stream):
    """_gpu_step of a run whose only stream is current throughout (see _entered): no
    events, nothing to wait for, no context to enter."""
    for blob in step.out_blobs:
        if blob.value is not None:
            _outgoing(state, blob.value)
    moved = _upload_host_inputs(plan, state, step, stream)
    _run(plan, step, state.rt.cp, state.rt.physical_of(step.device.id))
    state.last[step.device.id] = step
    written = (stream, None)
    for blob in moved:
        state.writes[id(blob)] = written
    for blob in step.out_blobs:
        state.writes[id(blob)] = written


def _segment(plan, seg, state):
    """A run of graph-safe steps: eager, captured or replayed (cuda/graphs.py)."""
    logical = seg.steps[0].device.id
    stream = state.rt.stream(logical)

    def upload(step):
        for blob in _upload_host_inputs(plan, state, step, stream):
            state.writes[id(blob)] = (stream, None)

    graphs.run_segment(plan, seg, state, stream, state.rt.physical_of(logical),
                       lambda step: _gpu_step(plan, step, state), upload)


def _cpu_step(plan, step, state):
    for blob in step.in_blobs:
        written = state.writes.get(id(blob))
        if written is not None:  # the host reads what a GPU wrote
            (written[0] if written[1] is None else written[1]).synchronize()
    for blob in step.out_blobs:
        if id(blob) in state.writes or id(blob) in state.reads:
            state.scope.retained.append(blob.value)
    run_step(plan, step)
    for blob in step.out_blobs:
        state.writes.pop(id(blob), None)
        state.reads.pop(id(blob), None)


def _synchronize(plan, state):
    """Wait for every stream the run used; a CUDA fault names the last op there."""
    for logical in sorted(state.last):
        stream = state.rt.stream(logical)
        try:
            stream.synchronize()
        except Exception as exc:
            if not is_cuda_error(state.rt.cp, exc):
                raise
            step = state.last[logical]
            physical = state.rt.physical_of(logical)
            raise OperatorError(
                "%s: %s\nA kernel on %s (physical GPU %d) failed while net '%s' ran; the "
                "last op enqueued there was #%d (%s). CUDA reports faults "
                "asynchronously, so an earlier op of that device may be the culprit: "
                "rerun with CUDA_LAUNCH_BLOCKING=1 to pin it down.\n  %s" % (
                    type(exc).__name__, exc, device_name(step.device), physical,
                    plan.name, step.index, step.op_type,
                    describe_cuda_error(state.rt.cp, exc, step, physical)),
                op_index=step.index, op_type=step.op_type, net_name=plan.name,
                cause=exc) from exc


def run_cuda_plan(plan, settle=None):
    """Run a plan with GPU ops once (plan.runner for plans that use CuPy).
    `settle(failed)` runs before the final synchronization: a plan placed on
    several ranks waits there, under its deadline, for its NCCL transfers."""
    from graphnet.executors.cuda.runtime import runtime
    rt = runtime()
    single = _one_stream(plan)
    use_graphs = single and _PROFILE[0] is None and settings.cuda_graphs()
    for logical in _gpus(plan):  # after what FeedBlob enqueued on other streams
        copies.after_pending(rt.stream(logical))
    with copies.run_scope() as scope, checks.collect() as deferred, \
            checks.deferring(use_graphs):
        state = _RunState(rt, scope)
        with _entered(plan, state, single):
            _run_units(plan, state, use_graphs, settle)
        found = deferred.first_failure()
        if found is not None:
            step, exc = found
            raise operator_error(plan, step, exc) from exc


def _run_units(plan, state, use_graphs, settle):
    """Enqueue the plan's ops (graph segments from its second run when graphs are on),
    then wait for every stream; `settle(failed)` first."""
    units = plan.steps
    runs = plan._cuda_runs = getattr(plan, "_cuda_runs", 0) + 1
    if runs > 1 and use_graphs:
        units = graphs.segments(plan)  # (after a run: every blob is where it lives)
    failed = True
    try:
        for unit in units:
            if isinstance(unit, graphs.Segment):
                _segment(plan, unit, state)
            elif unit.backend.name == "cupy":
                _gpu_step(plan, unit, state)
            else:
                _cpu_step(plan, unit, state)
        failed = False
    finally:
        if failed:
            try:
                if settle is not None:
                    settle(True)
                _synchronize(plan, state)
            except Exception:  # the op's own error is the one to report
                pass
        else:
            if settle is not None:
                settle(False)
            _synchronize(plan, state)
