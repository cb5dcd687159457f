"""Static device placement of a NetDef: where each op runs, where each input is
expected and where each output lands, decided as `compile_net` decides it.

Imports the registry, devices and graphnet.executors.plan (its device-option merge
and its CrossDeviceRead record, so placement has one definition).
"""

from collections import namedtuple

from graphnet import registry
from graphnet.devices import device_of
from graphnet.executors.plan import CrossDeviceRead, _merged_option
from graphnet.registry import default_devices

__all__ = ["OpPlacement", "Placement", "place"]


class OpPlacement(namedtuple("OpPlacement", ["device", "input_devices", "want",
                                             "outputs", "error"])):
    """device: where the op runs; input_devices: where each input lives (None:
    unknown); want: where the op expects each input (None: anywhere); outputs:
    where each output lands; error: why the op type or its `devices` rule failed."""

    __slots__ = ()


class Placement(object):
    """ops: one OpPlacement per op; reads: CrossDeviceRead per misplaced input;
    initial: device of every blob before the net runs (given or assumed);
    assumed: names whose initial device was assumed, not given."""

    def __init__(self, ops, reads, initial, assumed):
        self.ops, self.reads, self.initial, self.assumed = ops, reads, initial, assumed


def place(netdef, blob_devices=None):
    """Place every op of `netdef` with each schema's `devices` rule.

    blob_devices: name -> Device of blobs that exist before the run. A blob read
    before any op writes it and not given is assumed to live where its first
    reader expects it (where FeedBlob under the reader's DeviceScope puts it).
    """
    net_option = netdef.device_option if netdef.HasField("device_option") else None
    current = dict(blob_devices or {})
    initial, assumed = dict(current), set()
    ops, reads = [], []
    for index, op in enumerate(netdef.op):
        device = device_of(_merged_option(net_option, op))
        known = [current.get(name) for name in op.input]
        schema, error = registry.lookup(op.type), None
        if schema is None:
            error = registry.UnknownOperatorError(
                "Operator type '%s' is not registered." % op.type)
            want, outs = [None] * len(op.input), [device] * len(op.output)
        else:
            try:
                want, outs = schema.devices(schema, device, len(op.input),
                                            len(op.output), known)
            except Exception as exc:  # reported by validate; placement goes on
                error = exc
                want, outs = default_devices(schema, device, len(op.input),
                                             len(op.output), known)
        for i, name in enumerate(op.input):
            if known[i] is None and name not in current:
                known[i] = want[i] if want[i] is not None else device
                current[name] = initial[name] = known[i]
                assumed.add(name)
            elif want[i] is not None and known[i] is not None and known[i] != want[i]:
                reads.append(CrossDeviceRead(index, op.type, name, i, known[i], want[i]))
        for name, out in zip(op.output, outs):
            current[name] = out
        ops.append(OpPlacement(device, known, list(want), list(outs), error))
    return Placement(ops, reads, initial, assumed)
