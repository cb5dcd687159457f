"""Check a NetDef without running it and report every problem found, each with
its fix: undefined inputs, unknown op types, schema and argument errors,
cross-device reads, in-place and overwrite mistakes, unused outputs, missing
external outputs and shape errors.

Imports the registry, errors, devices and the analysis helpers.
"""

from collections import namedtuple

from graphnet import registry
from graphnet.analysis._placement import place
from graphnet.analysis._shapes import trace
from graphnet.errors import ArgumentError, GraphnetError, SchemaError
from graphnet.registry import TensorInfo

__all__ = ["Finding", "validate", "CODES"]

# code -> what it means; the severity is fixed per code except cross_device_read.
CODES = {
    "unknown_op": "the op type is not registered",
    "schema": "input/output counts or required arguments violate the op's schema",
    "argument": "an argument is in the wrong field or has a bad value",
    "device_kind": "the op has no implementation on its device (e.g. NCCL on the CPU)",
    "device_rule": "the op's devices rule rejects where its inputs live",
    "undefined_input": "an input is neither external, nor given, nor produced earlier",
    "inplace_not_allowed": "an output overwrites an input the schema forbids in place",
    "inplace_required": "the schema requires an output to be written in place",
    "cross_device_read": "an op reads a blob living on another device",
    "overwritten_before_use": "a blob is written again before anything reads it",
    "unused_output": "an output nothing reads that is not an external output",
    "external_output_missing": "an external output no op produces",
    "shape": "a shape rule rejects the inferred input shapes",
}


class Finding(namedtuple("Finding", ["severity", "code", "op_index", "op_type", "blob",
                                     "message"])):
    """One problem: severity "error" or "warning", a code of CODES, the op (index
    and type, None for net-level findings), the blob concerned (or None) and a
    message that ends with the fix."""

    __slots__ = ()

    def __str__(self):
        where = "" if self.op_index is None or self.message.startswith("op #") else \
            "op #%d (%s): " % (self.op_index, self.op_type)
        return "%s [%s] %s%s" % (self.severity, self.code, where, self.message)


def _given(blobs):
    """(names, name -> TensorInfo, name -> Device) from name -> (shape, dtype,
    device), where any part may be None (a 2-tuple means (shape, dtype))."""
    infos, devices = {}, {}
    for name, spec in (blobs or {}).items():
        shape, dtype, device = (tuple(spec) + (None, None, None))[:3] if spec else \
            (None, None, None)
        if shape is not None:
            infos[name] = TensorInfo(shape, dtype if dtype is not None else "float32")
        if device is not None:
            devices[name] = device
    return set(blobs or {}), infos, devices


def _inplace_findings(index, op, schema):
    found = []
    for i, name_in in enumerate(op.input):
        for o, name_out in enumerate(op.output):
            if name_in == name_out and not (schema.allows_inplace(i, o)
                                            or schema.enforces_inplace(i, o)):
                found.append(Finding(
                    "error", "inplace_not_allowed", index, op.type, name_out,
                    "input %d and output %d are both '%s', but %s does not run in place "
                    "on that pair. Fix: write output %d to a new blob (e.g. '%s_out')."
                    % (i, o, name_out, op.type, o, name_out)))
            elif schema.enforces_inplace(i, o) and name_in != name_out:
                found.append(Finding(
                    "error", "inplace_required", index, op.type, name_out,
                    "%s updates input %d in place, but output %d is '%s' and input %d "
                    "is '%s'. Fix: name output %d '%s'." % (
                        op.type, i, o, name_out, i, name_in, o, name_in)))
    return found


def _schema_findings(index, op, schema, device):
    """Counts/required args, argument fields, device kind, in-place pairs."""
    found = _inplace_findings(index, op, schema)
    try:
        schema.check(op)
    except SchemaError as exc:
        if not (found and "in-place" in str(exc)):  # that one is reported above
            found.append(Finding("error", "schema", index, op.type, None,
                                 "%s Fix: match the op's schema (see its doc: %s)."
                                 % (str(exc).split("\n")[0], schema.doc or op.type)))
    try:
        schema.parse_args(op)
    except ArgumentError as exc:
        found.append(Finding("error", "argument", index, op.type, None, str(exc)))
    try:
        schema.check_device(device)
    except GraphnetError as exc:
        found.append(Finding("error", "device_kind", index, op.type, None,
                             "%s Fix: run it under a DeviceScope of a device it "
                             "supports." % exc))
    return found


def _undefined(netdef, index, name, writers):
    op = netdef.op[index]
    later = [w for w in writers.get(name, ()) if w > index]
    if later:
        fix = ("it is produced by op #%d (%s), which runs later. Fix: move op #%d "
               "before op #%d." % (later[0], netdef.op[later[0]].type, later[0], index))
    else:
        fix = ("Fix: feed it (FeedBlob) and list it in external_input, or add the op "
               "that produces it before op #%d." % index)
    return Finding("error", "undefined_input", index, op.type, name,
                   "input '%s' is not an external input, not a given blob and not "
                   "produced by an earlier op; %s" % (name, fix))


def validate(netdef, blobs=None, strict_devices=False):
    """Every Finding for `netdef`, in op order (net-level findings last).

    blobs: name -> (shape, dtype, device) of blobs that exist before the run (any
    part may be None); their shapes seed shape inference and their devices the
    cross-device checks (otherwise a blob is assumed to live where its first
    reader expects it). strict_devices: cross-device reads are errors, as under
    GRAPHNET_STRICT_DEVICES=1, instead of warnings.
    """
    given, infos, devices = _given(blobs)
    placement = place(netdef, devices)
    traced = trace(netdef, infos)
    writers = {}
    for index, op in enumerate(netdef.op):
        for name in op.output:
            writers.setdefault(name, []).append(index)
    defined = set(netdef.external_input) | given
    unread = {}  # blob -> op that wrote it last, while nothing has read that write
    findings = []
    for index, op in enumerate(netdef.op):
        schema = registry.lookup(op.type)
        rejected = schema is None
        if schema is None:
            close = registry.suggestions(op.type)
            findings.append(Finding(
                "error", "unknown_op", index, op.type, None,
                "operator type '%s' is not registered. Did you mean: %s? Fix: use a "
                "registered type or load its op library (dyndep.InitOpsLibrary)."
                % (op.type, ", ".join(close) if close else "(no close match)")))
        else:
            own = _schema_findings(index, op, schema, placement.ops[index].device)
            rejected = bool(own)
            findings.extend(own)
            if placement.ops[index].error is not None:
                findings.append(Finding("error", "device_rule", index, op.type, None,
                                        str(placement.ops[index].error)))
        for name in sorted(set(op.input) - defined, key=list(op.input).index):
            findings.append(_undefined(netdef, index, name, writers))
        for name in list(op.input) + list(op.control_input):
            unread.pop(name, None)
        for name in op.output:
            if name in unread:
                first = unread[name]
                findings.append(Finding(
                    "warning", "overwritten_before_use", first, netdef.op[first].type,
                    name, "output '%s' is overwritten by op #%d (%s) before any op reads "
                    "it. Fix: drop or rename this output, or read it before op #%d."
                    % (name, index, op.type, index)))
            unread[name] = index
            defined.add(name)
        error = traced[index].error
        if error is not None and not rejected and not isinstance(error, ArgumentError):
            message = str(error).strip()
            if "Fix:" not in message:
                message += " Fix: check the shapes of its inputs (%s)." % ", ".join(
                    op.input)
            findings.append(Finding(
                "error", "shape", index, op.type, None,
                "shape inference fails with the inferred input shapes %s: %s" % (
                    [None if i is None else list(i.shape) for i in traced[index].inputs],
                    message)))
    severity = "error" if strict_devices else "warning"
    for read in placement.reads:
        findings.append(Finding(severity, "cross_device_read", read.op_index, read.op_type,
                                read.blob, str(read)))
    outputs = set(netdef.external_output)
    for name, index in unread.items():
        if name not in outputs:
            findings.append(Finding(
                "warning", "unused_output", index, netdef.op[index].type, name,
                "output '%s' is never read and is not an external output. Fix: add it "
                "to external_output if you fetch it, or drop it." % name))
    for name in netdef.external_output:
        if name not in defined:
            findings.append(Finding(
                "error", "external_output_missing", None, None, name,
                "'%s' is declared as an external output of net '%s' but no op produces "
                "it. Fix: produce it or remove it from external_output."
                % (name, netdef.name)))
    ranked = sorted(range(len(findings)), key=lambda k: (
        findings[k].op_index is None, findings[k].op_index or 0, k))
    return [findings[k] for k in ranked]
