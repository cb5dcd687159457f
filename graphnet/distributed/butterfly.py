"""The butterfly-shuffle pass: DLRM's per-table Split + Copy to every other device
(and its gradient, per-slice CopyOnDeviceLike back to the home device + Concat)
becomes one all-to-all(v) per shuffle instead of one send/receive per slice.

A *scatter* group is a Split on one rank whose slices are read by Copy ops on
distinct other devices (every device of the shuffle gets one slice); its
transfers are the pulls feeding those Copies. A *gather* group is a Concat on one
rank whose inputs arrive by pushes from copy ops on distinct other devices.
Consecutive groups of the same kind merge into one ExchangeEvent placed where
the last of their transfers was; the ops that consume the moved data (the Copies,
the Concat) and came before that point move just after it. A merge happens only
if every moved event commutes with every event it jumps over (no read/write
conflict on any blob), so results are identical with the pass on or off.
Imports lowering only.
"""

from graphnet.distributed.lowering import EVERY_RANK, ExchangeEvent

__all__ = ["merge_butterflies", "find_groups"]

_SCATTER, _GATHER = "scatter", "gather"
_COPY_TYPES = ("Copy", "CopyOnDeviceLike")


class _Group(object):
    __slots__ = ("kind", "xfers", "ops", "table")

    def __init__(self, kind, xfers, ops, table):
        self.kind, self.xfers, self.ops, self.table = kind, xfers, ops, table

    def positions(self):
        return self.xfers + self.ops


def _single_rank_op(event, op_type):
    return (event.kind == "op" and event.step.op_type == op_type
            and event.rank is not EVERY_RANK)


def find_groups(events):
    """Scatter and gather groups, as positions into `events`, in order."""
    readers = {}
    for pos, e in enumerate(events):
        if e.kind == "op":
            for name in e.step.in_names:
                readers.setdefault(name, []).append(pos)
    groups = []
    for pos, e in enumerate(events):
        if _single_rank_op(e, "Split"):
            g = _scatter_group(events, pos, readers)
        elif _single_rank_op(e, "Concat"):
            g = _gather_group(events, pos)
        else:
            continue
        if g is not None:
            groups.append(g)
    groups.sort(key=lambda g: min(g.positions()))
    return groups


def _scatter_group(events, pos, readers):
    split = events[pos]
    home = split.step.device
    devices, xfers, ops = {home}, [], []
    for name in split.step.out_names:
        copy_pos = next((p for p in readers.get(name, ())
                         if p > pos and _single_rank_op(events[p], "Copy")), None)
        if copy_pos is None:
            continue
        copy = events[copy_pos]
        if copy.step.device in devices:
            return None
        devices.add(copy.step.device)
        pulled = copy.pulls.get(0, {}).get(copy.rank)
        if pulled is None:
            continue  # same rank: an ordinary local Copy
        xfers.append(events.index(pulled, pos, copy_pos))
        ops.append(copy_pos)
    if not xfers or len(devices) != len(split.step.out_names):
        return None
    return _Group(_SCATTER, xfers, ops, split.step.in_names[0])


def _gather_group(events, pos):
    concat = events[pos]
    home_rank = concat.rank
    devices, xfers = set(), []
    for name in concat.step.in_names:
        writer_pos = next((p for p in range(pos - 1, -1, -1)
                           if name in events[p].writes()), None)
        if writer_pos is None:
            return None
        writer = events[writer_pos]
        if writer.kind == "xfer" and writer.push:
            if writer.dst != home_rank or writer.step.op_type not in _COPY_TYPES:
                return None
            xfers.append(writer_pos)
            device = writer.step.device
        elif writer.kind == "op" and writer.step.op_type in _COPY_TYPES:
            device = writer.step.device  # a copy from a device of the same rank
        else:
            device = concat.step.device  # the home device's own slice
        if device in devices:
            return None
        devices.add(device)
    if not xfers or len(devices) != len(concat.step.in_names):
        return None
    return _Group(_GATHER, xfers, [pos], concat.step.out_names[0])


def _commute(a, b):
    wa, wb = a.writes(), b.writes()
    return not (wa & (b.reads() | wb) or a.reads() & wb)


def _valid(events, groups):
    """Can the transfers of `groups` all wait for the last of them, and the ops that
    consume them (those before that point) follow, without a conflict?"""
    point = max(p for g in groups for p in g.xfers)
    moved = _moved(groups, point)
    for p in moved:
        for q in range(p + 1, point + 1):
            if q not in moved and not _commute(events[p], events[q]):
                return False
    # the moved ops now follow every transfer of the batch, even those after them
    for o in (p for g in groups for p in g.ops if p < point):
        for x in (p for g in groups for p in g.xfers):
            if x > o and not _commute(events[o], events[x]):
                return False
    return True


def _moved(groups, point):
    """Positions that move to the exchange: all transfers, and the consuming ops that
    came before the exchange point (later ones are already after it)."""
    return {p for g in groups for p in g.xfers} | \
        {p for g in groups for p in g.ops if p < point}


def merge_butterflies(events):
    """A new event list with each run of same-kind butterfly groups as one exchange."""
    batches, batch = [], []
    for g in find_groups(events):
        if batch and batch[0].kind == g.kind and _valid(events, batch + [g]):
            batch.append(g)
            continue
        if batch:
            batches.append(batch)
        batch = [g] if _valid(events, [g]) else []
    if batch:
        batches.append(batch)
    out = list(events)
    for batch in reversed(batches):  # later windows first: earlier positions stay put
        out = _rewrite(out, batch)
    return out


def _rewrite(events, batch):
    point = max(p for g in batch for p in g.xfers)
    xfers = sorted(p for g in batch for p in g.xfers)
    ops = sorted(p for g in batch for p in g.ops if p < point)
    moved = _moved(batch, point)
    label = "%s all-to-all of %d slices (tables %s)" % (
        batch[0].kind, len(xfers), ", ".join("'%s'" % g.table for g in batch))
    exchange = ExchangeEvent([events[p] for p in xfers], label)
    head = [e for p, e in enumerate(events[:point + 1]) if p not in moved]
    return head + [exchange] + [events[p] for p in ops] + events[point + 1:]
