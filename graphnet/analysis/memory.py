"""Blob liveness and a memory planner that lets intermediate blobs whose lifetimes
do not overlap share one buffer (Caffe2's memonger, by renaming blobs).

Model: as in a Caffe2 workspace, a blob stays allocated from its first write to
the end of the run, so a device's peak is the bytes of every blob it holds; blobs
renamed to one buffer count once, at the largest member's size. Imports networkx,
the registry, the proto module, analysis.graph (op_dag) and the analysis helpers.
"""

from collections import namedtuple

import networkx as nx

from graphnet import registry
from graphnet.analysis._placement import place
from graphnet.analysis._shapes import known_infos, nbytes, trace
from graphnet.analysis.graph import op_dag
from graphnet.proto import caffe2_pb2

__all__ = ["Lifetime", "MemoryReport", "liveness", "plan_memory"]


class Lifetime(namedtuple("Lifetime", ["name", "start", "end", "device", "bytes",
                                       "writes", "reads"])):
    """A blob's live range over op indices: start is its first write (-1 when it
    exists before the run), end its last use (len(ops) when it must outlive the
    run); device where it lives last; bytes its largest size (None: unknown);
    writes and reads the op indices that touch it (control inputs count as reads)."""

    __slots__ = ()


def liveness(netdef, shapes=None, blob_devices=None, keep=()):
    """name -> Lifetime of every blob `netdef` touches, in the op order. External
    outputs and the names in `keep` live to the end of the run."""
    placement = place(netdef, blob_devices)
    traced = trace(netdef, known_infos(shapes))
    n = len(netdef.op)
    writes, reads, sizes, devices = {}, {}, {}, dict(placement.initial)
    for index, op in enumerate(netdef.op):
        for name, info in zip(op.input, traced[index].inputs):
            reads.setdefault(name, []).append(index)
            if info is not None:
                sizes[name] = max(sizes.get(name, 0), nbytes(info))
        for name in op.control_input:
            reads.setdefault(name, []).append(index)
        for name, info, device in zip(op.output, traced[index].outputs,
                                      placement.ops[index].outputs):
            writes.setdefault(name, []).append(index)
            devices[name] = device
            if info is not None:
                sizes[name] = max(sizes.get(name, 0), nbytes(info))
    outlive = set(netdef.external_output) | set(keep)
    lives = {}
    for name in list(writes) + [r for r in reads if r not in writes]:
        w, r = writes.get(name, []), reads.get(name, [])
        start = w[0] if w and (not r or r[0] > w[0]) else -1
        end = n if name in outlive else max(w + r)
        lives[name] = Lifetime(name, start, end, devices.get(name), sizes.get(name),
                               w, r)
    return lives


class MemoryReport(object):
    """What plan_memory did.

    before/after: Device -> bytes held at the peak (see the module docstring);
    live_peak: Device -> the most bytes live at once, the floor any renaming can
    reach in this op order; buffers: shared name -> the blobs renamed to it;
    renamed: blob -> shared name; skipped: blob -> why it was left alone;
    unknown: blobs of unknown size (counted nowhere).
    """

    def __init__(self, before, after, live_peak, buffers, skipped, unknown):
        self.before, self.after, self.live_peak = before, after, live_peak
        self.buffers, self.skipped, self.unknown = buffers, skipped, unknown
        self.renamed = {m: b for b, members in buffers.items() for m in members}

    @property
    def saved(self):
        return {d: self.before[d] - self.after.get(d, 0) for d in self.before}

    def __repr__(self):
        return "MemoryReport(%s)" % ", ".join(
            "%s: %d -> %d bytes" % (d, self.before[d], self.after.get(d, 0))
            for d in sorted(self.before))


def _stateful(schema, op, name):
    """An output its op updates from its previous value (the legacy Iter form)."""
    if schema is None:
        return True
    return any(schema.enforces_inplace(i, o) for o, out in enumerate(op.output)
               if out == name for i in range(max(len(op.input), 1)))


def _skip_reason(life, netdef, placement, protected):
    name = life.name
    if name in protected:
        return protected[name]
    if len(life.writes) != 1:
        return ("not written by the net" if not life.writes else
                "written by %d ops (an in-place chain)" % len(life.writes))
    if life.start < 0:
        return "read before it is written (kept across runs, or in place)"
    if life.bytes is None:
        return "size unknown"
    op = netdef.op[life.start]
    if _stateful(registry.lookup(op.type), op, name):
        return "its op updates it from its previous value"
    for r in life.reads:
        where, reader = placement.ops[r], netdef.op[r]
        if name in reader.control_input:
            return "a control input"
        for i, input_name in enumerate(reader.input):
            expected = where.want[i] if where.want[i] is not None else where.device
            if input_name == name and expected != life.device:
                return "read by op #%d (%s) on %s" % (r, reader.type, expected)
    return None


def _size_key(size, size_classes):
    return 1 << max(size - 1, 0).bit_length() if size_classes else size


def _assign(candidates, size_classes, dag):
    """Greedy first-fit over start times: a blob takes a buffer of its device and
    size (class) whose last member's uses all end before it is written (and, with
    a DAG, are its ancestors, so no new dependency serialises the dag executor)."""
    buffers, ancestors = [], {}
    for life in sorted(candidates, key=lambda l: (l.start, l.name)):
        key = (life.device, _size_key(life.bytes, size_classes))
        if dag is not None and life.start not in ancestors:
            ancestors[life.start] = nx.ancestors(dag, life.start)
        free = [b for b in buffers if b["key"] == key and b["end"] < life.start and (
            dag is None or b["uses"] <= ancestors[life.start])]
        if free:
            buf = max(free, key=lambda b: (b["end"], -b["id"]))
        else:
            buf = {"id": len(buffers), "key": key, "members": [], "size": 0}
            buffers.append(buf)
        buf["members"].append(life)
        buf["end"], buf["size"] = life.end, max(buf["size"], life.bytes)
        buf["uses"] = set(life.writes) | set(life.reads)
    return buffers


def _fresh_names(netdef, count):
    taken = {n for op in netdef.op for n in list(op.input) + list(op.output)}
    taken |= set(netdef.external_input) | set(netdef.external_output)
    names, k = [], 0
    while len(names) < count:
        name = "__m%d_shared" % k
        if name not in taken:
            names.append(name)
        k += 1
    return names


def _totals(lives, renamed_sizes=None):
    totals = {}
    for life in lives:
        if life.bytes is not None:
            totals[life.device] = totals.get(life.device, 0) + life.bytes
    for device, size in renamed_sizes or ():
        totals[device] = totals.get(device, 0) + size
    return totals


def _live_peak(lives, n):
    peak = {}
    for t in range(-1, n + 1):
        now = {}
        for life in lives:
            if life.bytes is not None and life.start <= t <= life.end:
                now[life.device] = now.get(life.device, 0) + life.bytes
        for device, size in now.items():
            peak[device] = max(peak.get(device, 0), size)
    return peak


def plan_memory(netdef, shapes=None, blob_devices=None, keep=(), size_classes=False,
                order="sequential"):
    """Rename intermediate blobs so that blobs of one device and one byte size (or
    power-of-two size class) whose lifetimes do not overlap share a name.

    Never renamed: external inputs (parameters included) and outputs, `keep` (blobs
    you fetch after the run), blobs written more than once or in place, blobs read
    before written, blobs read by an op on another device, control inputs, blobs
    of unknown size. order "sequential" reuses by the op order (the simple
    executor; under the dag executor the shared names add dependencies, so results
    stay the same); "dag" only reuses where the op DAG already orders the uses.
    Returns (new NetDef, MemoryReport).
    """
    if order not in ("sequential", "dag"):
        raise ValueError("order must be 'sequential' or 'dag', not %r" % (order,))
    placement = place(netdef, blob_devices)
    lives = liveness(netdef, shapes, blob_devices, keep)
    protected = {name: "external input" for name in netdef.external_input}
    protected.update((name, "external output") for name in netdef.external_output)
    protected.update((name, "kept") for name in keep)
    skipped, candidates = {}, []
    for life in lives.values():
        reason = _skip_reason(life, netdef, placement, protected)
        if reason is None:
            candidates.append(life)
        else:
            skipped[life.name] = reason
    buffers = [b for b in _assign(candidates, size_classes,
                                  op_dag(netdef) if order == "dag" else None)
               if len(b["members"]) > 1]
    names = _fresh_names(netdef, len(buffers))
    shared = {name: [m.name for m in b["members"]] for name, b in zip(names, buffers)}
    renamed = {m: name for name, members in shared.items() for m in members}
    planned = caffe2_pb2.NetDef()
    planned.CopyFrom(netdef)
    for op in planned.op:
        for field in (op.input, op.output):
            for k, name in enumerate(field):
                field[k] = renamed.get(name, name)
    kept = [life for life in lives.values() if life.name not in renamed]
    report = MemoryReport(
        before=_totals(lives.values()),
        after=_totals(kept, [(b["key"][0], b["size"]) for b in buffers]),
        live_peak=_live_peak(list(lives.values()), len(netdef.op)), buffers=shared,
        skipped=skipped, unknown=sorted(n for n, l in lives.items() if l.bytes is None))
    return planned, report
