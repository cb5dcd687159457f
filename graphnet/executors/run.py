"""The one interpreter loop body every executor shares, and the `simple` executor.

run_step reads inputs (moving cross-device reads as §5.4 recommends), runs
the kernel, and only then writes outputs, so a failing op leaves every blob
as it was. Errors are re-raised naming the op, the blob and the device.
"""

import numpy as np

from graphnet import config
from graphnet.blobs import describe
from graphnet.devices import device_name
from graphnet.errors import DeviceMismatchError, EnforceError, OperatorError
from graphnet.executors.plan import warn_cross_device
from graphnet.registry import short_text

__all__ = ["run_step", "run_simple", "operator_error"]


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
        result = step.kernel(step.ctx, step.args, *inputs)
        if len(step.out_blobs) == 1 and not isinstance(result, (tuple, list)):
            result = (result,)
        if len(result) != len(step.out_blobs):
            raise EnforceError("kernel of %s returned %d outputs, the op asks for %d"
                               % (step.op_type, len(result), len(step.out_blobs)))
        if step.dynamic_devices:
            devices = step.schema.devices(
                step.schema, step.device, len(step.in_blobs), len(step.out_blobs),
                [b.device for b in step.in_blobs])[1]
        else:
            devices = step.out_devices
    except Exception as exc:
        raise operator_error(plan, step, exc) from exc
    for blob, value, device in zip(step.out_blobs, result, devices):
        if isinstance(value, np.generic):
            value = np.asarray(value)
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


def run_simple(plan):
    """Ops strictly in proto order on the calling thread (Caffe2's `simple`)."""
    for step in plan.steps:
        run_step(plan, step)
