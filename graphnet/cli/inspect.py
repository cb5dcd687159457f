"""Summarise a NetDef: ops by type and device, params and their sizes, inputs
and outputs, bytes sent between devices, per-device FLOP/byte estimates and the
critical path.

  graphnet inspect predict_net.pb [--init init_net.pb] [--shape NAME=D0,D1 ...]
  graphnet inspect MODEL_DIR [--inputs batch.npz] [--blobs]

Params are the external inputs the init net fills (without an init net, every
external input); a [1, 1] placeholder that Caffe2's mobile_exporter writes for an
input does not make it a param. Sizes come from the init net's fill ops, --inputs
arrays and --shape options; the rest are inferred with the ops' shape rules.
Imports the analysis package and graphnet.cli's loading and formatting helpers.
"""

from collections import Counter

import numpy as np

from graphnet import analysis
from graphnet.analysis._placement import place
from graphnet.analysis._shapes import known_infos, nbytes, numel, trace
from graphnet.cli import EXIT_OK, loading
from graphnet.cli._format import count, plural, shape_text, size, table
from graphnet.devices import device_name

__all__ = ["add_arguments", "run", "report"]

CHAIN_SHOWN = 24  # ops of a critical path printed in full


def add_arguments(parser):
    parser.add_argument("file", metavar="FILE",
                        help="NetDef (binary or text) or model directory")
    parser.add_argument("--init", metavar="INIT",
                        help="init net that creates the params (default: DIR's "
                             "init_net.pb)")
    parser.add_argument("--shape", action="append", metavar="NAME=D0,D1[:DTYPE]",
                        help="shape (and dtype, default float32) of a blob fed before "
                             "the run; repeatable")
    parser.add_argument("--inputs", action="append", metavar="FILE.npz",
                        help="arrays by blob name; their shapes and dtypes are used")
    parser.add_argument("--blobs", action="store_true", help="list every param")


def run(args):
    init_path, predict_path = loading.model_files(args.file)
    init_path = args.init or init_path
    net = loading.read_netdef(predict_path)
    loading.require_known_ops(net)
    init = None
    if init_path is not None:
        init = loading.read_netdef(init_path)
        loading.require_known_ops(init)
    known = loading.known_blobs(init, args.shape, args.inputs)
    for line in report(net, init, known, list_params=args.blobs):
        print(line)
    return EXIT_OK


def report(net, init, known, list_params=False):
    """The lines `graphnet inspect` prints."""
    netdef = net.netdef
    shapes = {n: (b.shape, b.dtype) for n, b in known.items() if b.shape is not None}
    devices = {n: b.device for n, b in known.items() if b.device is not None}
    placement = place(netdef, devices)
    traced = trace(netdef, known_infos(shapes))
    op_devices = [where.device for where in placement.ops]
    all_devices = sorted(set(op_devices) | set(placement.initial.values()))
    lines = ["%s: %s on %s" % (net.describe(), plural(len(netdef.op), "op"),
                                _devices(all_devices))]
    if init is not None:
        lines.append("init %s: %s" % (init.describe(), plural(len(init.netdef.op), "op")))
    lines += _ops_table(netdef, op_devices, all_devices)
    lines += _blobs(netdef, init, known, placement, traced, list_params)
    lines += _communication(netdef, shapes, devices)
    lines += _estimates(netdef, shapes, op_devices)
    lines += _critical_path(netdef, shapes, traced)
    return lines


def _name(net_file):
    name = net_file.netdef.name
    return "init net '%s'" % name if name else "init net <unnamed>"


def _devices(devices):
    names = [device_name(d) for d in devices]
    return "%s (%s)" % (plural(len(names), "device"), ", ".join(names))


def _ops_table(netdef, op_devices, all_devices):
    by_type = Counter(op.type for op in netdef.op)
    cells = Counter((op.type, d) for op, d in zip(netdef.op, op_devices))
    used = [d for d in all_devices if d in set(op_devices)]
    rows = [[t, n] + [cells[(t, d)] or "." for d in used]
            for t, n in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))]
    rows.append(["total", len(netdef.op)] + [op_devices.count(d) for d in used])
    return ["", "ops by type and device:"] + table(
        ["type", "ops"] + [device_name(d) for d in used], rows)


BLOB_HEADER = ["name", "dtype", "shape", "device", "bytes"]


def _blob_row(name, info, device):
    shape = None if info is None else info.shape
    return [name, "?" if info is None else str(np.dtype(info.dtype)), shape_text(shape),
            "?" if device is None else device_name(device),
            size(None if info is None else nbytes(info))]


def _blobs(netdef, init, known, placement, traced, list_params):
    """The params, inputs and outputs sections."""
    inputs = list(dict.fromkeys(netdef.external_input))
    created, stand_ins = None, set()
    if init is not None:
        stand_ins = loading.placeholders(init.netdef)
        created = set(loading.init_blobs(init.netdef)) - stand_ins
    given = known_infos({n: (b.shape, b.dtype) for n, b in known.items()
                         if b.shape is not None})
    first = {}  # each blob's info where it is first read
    for op, shapes in zip(netdef.op, traced):
        for name, info in zip(op.input, shapes.inputs):
            first.setdefault(name, info)
    info = {n: given.get(n) or first.get(n) for n in inputs}
    if created is None:
        lines = _params(inputs, "every external input (no init net)", info,
                        placement.initial, list_params)
    else:
        lines = _params([n for n in inputs if n in created],
                        "the external inputs %s fills" % _name(init),
                        info, placement.initial, list_params)
        data = [n for n in inputs if n not in created]
        held = len(stand_ins & set(data))
        lines += ["", "inputs: %s the init net does not fill%s%s" % (
            plural(len(data), "external input"),
            " (%d with a [1, 1] placeholder)" % held if held else "", ":" if data else "")]
        if data:
            lines += table(BLOB_HEADER, [_blob_row(n, info[n], placement.initial.get(n))
                                         for n in data])
        extra = sorted(created - set(inputs) - stand_ins)
        if extra:
            lines.append("  (the init net also creates %d blobs the net does not list as "
                         "external inputs: %s%s)" % (len(extra), ", ".join(extra[:5]),
                                                     ", ..." if len(extra) > 5 else ""))
    return lines + _outputs(netdef, placement, traced)


def _params(params, source, info, devices, list_params):
    sized = [n for n in params if info[n] is not None]
    lines = ["", "params: %d, %s; %s values, %s%s" % (
        len(params), source, count(sum(numel(info[n]) for n in sized)),
        size(sum(nbytes(info[n]) for n in sized)), "" if len(sized) == len(params) else
        " (sizes known for %d of %d; give --init, --inputs or --shape NAME=D0,D1)"
        % (len(sized), len(params)))]
    if not params:
        return lines
    if list_params:
        return lines + table(BLOB_HEADER, [_blob_row(n, info[n], devices.get(n))
                                           for n in params])
    per_device = {}
    for n in params:
        entry = per_device.setdefault(devices.get(n), [0, 0, 0])
        entry[0] += 1
        if info[n] is not None:
            entry[1] += numel(info[n])
            entry[2] += nbytes(info[n])
    rows = [["?" if d is None else device_name(d), n, count(v), size(b)]
            for d, (n, v, b) in sorted(per_device.items(),
                                       key=lambda kv: (kv[0] is None, kv[0] or ()))]
    return lines + table(["device", "params", "values", "bytes"], rows) + [
        "  (--blobs lists every param)"]


def _outputs(netdef, placement, traced):
    infos, devices = {}, {}
    for op, shapes, where in zip(netdef.op, traced, placement.ops):
        infos.update(zip(op.output, shapes.outputs))
        devices.update(zip(op.output, where.outputs))
    outputs = list(dict.fromkeys(netdef.external_output))
    lines = ["", "outputs: %s%s" % (plural(len(outputs), "external output"),
                                    ":" if outputs else "")]
    if outputs:
        lines += table(BLOB_HEADER, [_blob_row(n, infos.get(n), devices.get(n))
                                     for n in outputs])
    return lines


def _communication(netdef, shapes, devices):
    comm = analysis.communication(netdef, shapes, devices)
    if not comm.transfers:
        return ["", "communication per run: none (no op reads a blob on another device)"]
    kinds = Counter(t.kind for t in comm.transfers)
    total = "? B" if len(comm.unknown) == len(comm.transfers) else \
        ("at least " if comm.unknown else "") + size(comm.total)
    lines = ["", "communication per run: %s in %s (%s)%s" % (
        total, plural(len(comm.transfers), "transfer"),
        ", ".join("%s: %d" % kv for kv in sorted(kinds.items())),
        "; sizes unknown for %d (give --inputs or --shape)" % len(comm.unknown)
        if comm.unknown else "")]
    pairs = {}
    for t in comm.transfers:
        known = pairs.get((t.src, t.dst))
        pairs[(t.src, t.dst)] = known if t.bytes is None else (known or 0) + t.bytes
    ends = sorted({d for pair in pairs for d in pair})
    rows = [[device_name(src)] + [
        "-" if src == dst else "." if (src, dst) not in pairs else
        size(pairs[(src, dst)]) for dst in ends] for src in ends
        if any((src, dst) in pairs for dst in ends)]
    return lines + table(["from \\ to"] + [device_name(d) for d in ends], rows)


def _estimates(netdef, shapes, op_devices):
    costs = analysis.op_costs(netdef, shapes)
    known = sum(c.known for c in costs)
    if not known:
        return ["", "estimates per run: unknown (no op has the shapes of all its inputs; "
                "give --init, --inputs or --shape NAME=D0,D1)"]
    totals = {}
    for device, c in zip(op_devices, costs):
        entry = totals.setdefault(device, [0, 0, 0])
        entry[0] += 1
        entry[1] += c.flops
        entry[2] += c.bytes
    rows = [[device_name(d), n, count(f), size(b)] for d, (n, f, b) in sorted(
        totals.items())]
    rows.append(["all", len(costs), count(sum(c.flops for c in costs)),
                 size(sum(c.bytes for c in costs))])
    note = "" if known == len(costs) else \
        "; ops of unknown shape count 0 FLOPs and only their known blobs"
    return ["", "estimates per run (shapes known for %d of %d ops%s):" % (
        known, len(costs), note)] + table(["device", "ops", "FLOPs", "bytes"], rows)


def _chain(netdef, ops):
    shown = ops if len(ops) <= CHAIN_SHOWN else \
        ops[:CHAIN_SHOWN - 6] + [None] + ops[-5:]
    parts = ["..." if i is None else "#%d %s" % (i, netdef.op[i].type) for i in shown]
    lines, line = [], " "
    for k, part in enumerate(parts):
        piece = part + (" ->" if k < len(parts) - 1 else "")
        if len(line) + len(piece) > 86:
            lines.append(line)
            line = " "
        line += " " + piece
    return lines + [line]


def _critical_path(netdef, shapes, traced):
    if not netdef.op:
        return ["", "critical path: empty net"]
    path = analysis.critical_path(netdef)
    lines = ["", "critical path: %d of %d ops" % (len(path.ops), len(netdef.op))]
    if all(not s.error and all(i is not None for i in s.inputs + s.outputs)
           for s in traced):
        flops = analysis.critical_path(netdef, "flops", shapes)
        total = sum(c.flops for c in analysis.op_costs(netdef, shapes))
        if flops.ops == path.ops:
            lines[-1] += "; %s of the net's %s FLOPs" % (count(int(flops.length)),
                                                          count(total))
        else:
            lines += _chain(netdef, path.ops)
            lines.append("critical path by FLOPs: %s of the net's %s FLOPs, %d ops" % (
                count(int(flops.length)), count(total), len(flops.ops)))
            path = flops
    return lines + _chain(netdef, path.ops)
