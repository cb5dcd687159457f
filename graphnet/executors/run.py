"""The one interpreter loop body every executor shares, and the `simple` executor.

run_step reads inputs (moving cross-device reads as §5.4 recommends), runs
the kernel, and only then writes outputs, so a failing op leaves every blob
as it was. Errors are re-raised naming the op, the blob and the device.

step_runner compiles one step into a closure holding its kernel, arguments and
blob handles: it reads the input values, checks each against its expected
device with one comparison, calls the kernel and stores the outputs. Anything
unusual (an empty input, a cross-device read, inputs of an op whose output
devices follow them arriving on other devices than last time) takes run_step's
full path, so the fast path never changes what a step computes. Kernels run with numpy's floating-point warnings off:
Caffe2 produced inf/NaN silently, and one errstate per run is cheaper than
one per op.
"""

import numpy as np

from graphnet import config
from graphnet.blobs import describe
from graphnet.devices import device_name
from graphnet.errors import DeviceMismatchError, EnforceError, OperatorError
from graphnet.executors.plan import warn_cross_device
from graphnet.registry import short_text

__all__ = ["run_step", "run_simple", "operator_error", "step_runner", "runners"]


class _UninitializedInput(EnforceError):
    pass


def _read_inputs(plan, step):
    values = []
    for i, blob in enumerate(step.in_blobs):
        value = blob.value
        if value is None and not step.schema.empty_inputs_ok:
            raise _UninitializedInput(
                "wrong type for the Blob instance. Blob contains nullptr (uninitialized) "
                "while caller expects caffe2::Tensor. Offending Blob name: %s. Fix: feed "
                "it (FeedBlob) or run the net that produces it first." % step.in_names[i],
                input_index=i)
        want = step.want_devices[i]
        if want is not None and blob.device != want:
            if config.strict_devices():
                raise DeviceMismatchError(
                    "Blob '%s' (input %d) lives on %s but op #%d (%s) runs on %s "
                    "(strict device mode). Fix: add a Copy of '%s' to %s before the op."
                    % (step.in_names[i], i, device_name(blob.device), step.index,
                       step.op_type, device_name(want), step.in_names[i],
                       device_name(want)))
            warn_cross_device(plan.name, step, i, blob.device, want)
            value = step.backend.read_from(value, blob.device, want)
        values.append(value)
    return values


def run_step(plan, step):
    """Run one compiled op against its blobs."""
    try:
        inputs = _read_inputs(plan, step)
        result = _outputs(step.kernel(step.ctx, step.args, *inputs), step,
                          len(step.out_blobs))
        if step.dynamic_devices:
            devices = step.schema.devices(
                step.schema, step.device, len(step.in_blobs), len(step.out_blobs),
                [b.device for b in step.in_blobs])[1]
        else:
            devices = step.out_devices
    except Exception as exc:
        raise operator_error(plan, step, exc) from exc
    for blob, value, device in zip(step.out_blobs, result, devices):
        blob.value = value
        blob.device = device


def operator_error(plan, step, exc):
    """An OperatorError naming the op (index, type, text), device and blob."""
    lines = ["%s: %s" % (type(exc).__name__, exc) if not isinstance(exc, EnforceError)
             else "[enforce fail] %s" % exc,
             "Error from operator #%d (%s) in net '%s' on device %s:" % (
                 step.index, step.op_type, plan.name, device_name(step.device)),
             "  " + short_text(step.op)]
    index = getattr(exc, "input_index", None)
    if index is not None and 0 <= index < len(step.in_blobs):
        blob = step.in_blobs[index]
        lines.append("  offending blob: '%s' (input %d) holding %s on %s" % (
            step.in_names[index], index, describe(blob.value), device_name(blob.device)))
    from graphnet._net import operator_tracebacks
    stack = operator_tracebacks.get(plan.name, {}).get(step.index)
    if stack:
        frames = [f for f in stack if "/graphnet/" not in f[0].replace("\\", "/")][:3]
        if frames:
            lines.append("  op created at: " + " <- ".join(
                "%s:%d in %s" % f for f in frames))
    return OperatorError("\n".join(lines), op_index=step.index, op_type=step.op_type,
                         net_name=plan.name, cause=exc)


def _outputs(result, step, count):
    """A kernel's result as `count` output values (numpy scalars as 0-d arrays)."""
    if count == 1:
        return (_single(result, step),)
    if len(result) != count:
        raise EnforceError("kernel of %s returned %d outputs, the op asks for %d"
                           % (step.op_type, len(result), count))
    return [np.asarray(v) if isinstance(v, np.generic) else v for v in result]


def _single(result, step):
    """The one output of a kernel: a bare value, or a 1-tuple/list of it."""
    if isinstance(result, (tuple, list)):
        if len(result) != 1:
            raise EnforceError("kernel of %s returned %d outputs, the op asks for 1"
                               % (step.op_type, len(result)))
        result = result[0]
    if isinstance(result, np.generic):
        result = np.asarray(result)
    return result


def step_runner(plan, step):
    """A closure running `step`: the fast path described in the module docstring."""
    if step.schema.empty_inputs_ok:
        return lambda: run_step(plan, step)
    if step.dynamic_devices:
        return _dynamic_runner(plan, step)
    kernel, ctx, args = step.kernel, step.ctx, step.args
    ins = tuple(step.in_blobs)
    wants = tuple(step.want_devices)
    outs = tuple(step.out_blobs)
    out_devices = tuple(step.out_devices)

    def slow():
        run_step(plan, step)

    pairs = tuple(zip(ins, wants))
    ndarray = np.ndarray

    def inputs():
        """The input values, or None when one is empty or on another device."""
        values = []
        for blob, want in pairs:
            value = blob.value
            if value is None or (want is not None and blob.device is not want
                                 and blob.device != want):
                return None
            values.append(value)
        return values

    if len(outs) == 1 and len(ins) == 1 and wants[0] is not None:
        (b0,), (w0,), (out,), (device,) = ins, wants, outs, out_devices

        def run1():  # the most common shape of op, spelled out: no loops
            v0 = b0.value
            if v0 is None or (b0.device is not w0 and b0.device != w0):
                return slow()
            try:
                value = kernel(ctx, args, v0)
                if type(value) is not ndarray:
                    value = _single(value, step)
            except Exception as exc:
                raise operator_error(plan, step, exc) from exc
            out.value = value
            out.device = device
        return run1

    if len(outs) == 1 and len(ins) == 2 and None not in wants:
        (b0, b1), (w0, w1), (out,), (device,) = ins, wants, outs, out_devices

        def run2():  # binary ops, spelled out like run1
            v0, v1 = b0.value, b1.value
            if (v0 is None or v1 is None or (b0.device is not w0 and b0.device != w0)
                    or (b1.device is not w1 and b1.device != w1)):
                return slow()
            try:
                value = kernel(ctx, args, v0, v1)
                if type(value) is not ndarray:
                    value = _single(value, step)
            except Exception as exc:
                raise operator_error(plan, step, exc) from exc
            out.value = value
            out.device = device
        return run2

    if len(outs) == 1:
        (out,), (device,) = outs, out_devices

        def run():
            values = inputs()
            if values is None:
                return slow()
            try:
                value = kernel(ctx, args, *values)
                if type(value) is not ndarray:
                    value = _single(value, step)
            except Exception as exc:
                raise operator_error(plan, step, exc) from exc
            out.value = value
            out.device = device
        return run

    count = len(outs)

    def run_many():
        values = inputs()
        if values is None:
            return slow()
        try:
            results = _outputs(kernel(ctx, args, *values), step, count)
        except Exception as exc:
            raise operator_error(plan, step, exc) from exc
        for blob, value, device in zip(outs, results, out_devices):
            blob.value = value
            blob.device = device
    return run_many


def _dynamic_runner(plan, step):
    """Ops whose output devices follow their inputs' (Copy, Sum, NCCL...): the full
    path when the inputs' devices differ from the last run's (it also settles the
    output devices); while they repeat, the kernel and the stores alone."""
    ins, outs = tuple(step.in_blobs), tuple(step.out_blobs)
    wants = tuple(step.want_devices)
    kernel, ctx, args = step.kernel, step.ctx, step.args
    count = len(outs)
    seen = [None, None]  # input devices of the last full-path run, its output devices

    def run():
        devices = tuple(b.device for b in ins)
        if devices != seen[0] or any(b.value is None for b in ins) or any(
                w is not None and d != w for d, w in zip(devices, wants)):
            run_step(plan, step)  # checks, moves, errors; outputs get their devices
            seen[0], seen[1] = devices, tuple(b.device for b in outs)
            return
        try:
            results = _outputs(kernel(ctx, args, *[b.value for b in ins]), step, count)
        except Exception as exc:
            raise operator_error(plan, step, exc) from exc
        for blob, value, device in zip(outs, results, seen[1]):
            blob.value = value
            blob.device = device  # what the full path set for these input devices
    return run


def runners(plan):
    """The plan's step closures, built on first use."""
    if plan.runners is None:
        plan.runners = [step_runner(plan, step) for step in plan.steps]
    return plan.runners


def run_simple(plan):
    """Ops strictly in proto order on the calling thread (Caffe2's `simple`)."""
    with np.errstate(all="ignore"):
        for run in runners(plan):
            run()
