"""Lower a compiled net onto ranks: the global schedule every rank computes alike.

Walking the net in order with the placement and where each blob lives now (its
holder: one rank, or every rank for CPU blobs), it emits events:

* OpEvent: op k runs on one rank (its device's owner) or on every rank (CPU ops,
  and ops marked `every_rank`, Caffe2's MPI ops).
* XferEvent: one blob value moves between two ranks. A *pull* brings an input an
  op needs onto the op's rank (into a private temporary: a cross-rank Copy is
  exactly this followed by the Copy itself); a *push* sends an output that an op
  wrote for a device of another rank (CopyOnDeviceLike, gradients landing on a
  table's home GPU) to that rank.
* AllreduceEvent: NCCLAllreduce over devices of several ranks: each rank sums its
  own inputs, then one MPI all-reduce (sum) among those ranks; every output gets it.
* ExchangeEvent: several transfers done as one all-to-all (see butterfly.py).

Both sides of every transfer meet it at the same point of the same order, so
the schedule cannot deadlock. Imports placement and errors only.
"""

from graphnet.devices import device_name
from graphnet.distributed.errors import PlacementError
from graphnet.distributed.placement import EVERY_RANK

__all__ = ["OpEvent", "XferEvent", "AllreduceEvent", "ExchangeEvent", "Schedule",
           "build_schedule", "lowering", "LOWERINGS"]


class OpEvent(object):
    """Op `step` runs on rank `rank` (EVERY_RANK: on all); pulls[i] = {rank: Xfer};
    remote[i] = holder of an input whose value the op does not read (not moved)."""

    kind = "op"
    __slots__ = ("step", "rank", "pulls", "remote")

    def __init__(self, step, rank, pulls=None, remote=None):
        self.step, self.rank, self.pulls = step, rank, pulls or {}
        self.remote = remote or {}

    def runs_on(self, rank):
        return self.rank is EVERY_RANK or self.rank == rank

    def reads(self):
        names = set(self.step.in_names) | set(self.step.op.control_input)
        for by_rank in self.pulls.values():
            names.update("xfer:%d" % x.id for x in by_rank.values())
        return names

    def writes(self):
        return set(self.step.out_names)


class XferEvent(object):
    """Blob `name` (on `device`) moves from rank src to rank dst for op #op_index.

    push: dst receives into the workspace blob; pull: into a temporary the op reads."""

    kind = "xfer"
    __slots__ = ("id", "src", "dst", "name", "device", "push", "step")

    def __init__(self, id, src, dst, name, device, push, step):
        self.id, self.src, self.dst, self.name = id, src, dst, name
        self.device, self.push, self.step = device, push, step

    def reads(self):
        return {self.name}

    def writes(self):
        return {self.name} if self.push else {"xfer:%d" % self.id}

    def describe(self):
        return "%s '%s' %s rank %d" % (
            "push of" if self.push else "pull of", self.name,
            "to" if self.push else "from", self.dst if self.push else self.src)


class AllreduceEvent(object):
    """Op `step` (NCCLAllreduce) as a sum over `ranks`; local[r]: input indexes on r."""

    kind = "allreduce"
    __slots__ = ("step", "ranks", "local")

    def __init__(self, step, ranks, local):
        self.step, self.ranks, self.local = step, ranks, local

    def reads(self):
        return set(self.step.in_names)

    def writes(self):
        return set(self.step.out_names)


class ExchangeEvent(object):
    """The transfers `xfers` as one all-to-all among the ranks they involve."""

    kind = "exchange"
    __slots__ = ("xfers", "ranks", "label")

    def __init__(self, xfers, label):
        self.xfers = list(xfers)
        self.ranks = tuple(sorted({x.src for x in self.xfers}
                                  | {x.dst for x in self.xfers}))
        self.label = label

    def reads(self):
        return set().union(*(x.reads() for x in self.xfers))

    def writes(self):
        return set().union(*(x.writes() for x in self.xfers))


class Schedule(object):
    """events in order; final[name] = holder after the net (EVERY_RANK or a rank);
    devices[name] = static device of each written blob; assumed[name] = holder the
    schedule assumed for blobs read before the net writes them."""

    def __init__(self, events, final, devices, assumed):
        self.events, self.final, self.devices, self.assumed = \
            events, final, devices, assumed

    def is_placed(self):
        """True unless every op runs on every rank and nothing moves (then ranks may
        legitimately run different nets, as Caffe2 MPI programs did)."""
        return any(e.kind != "op" or e.rank is not EVERY_RANK for e in self.events)


LOWERINGS = {}


def lowering(op_type):
    """Register f(step, builder) -> True if it emitted the op's events itself."""
    def wrap(fn):
        LOWERINGS[op_type] = fn
        return fn
    return wrap


class _Builder(object):
    def __init__(self, placement, holders):
        self.placement = placement
        self.holder = dict(holders)
        self.events = []
        self.devices = {}
        self.assumed = {}
        self.written = set()
        self.next_id = 0

    def holder_of(self, name):
        h = self.holder.get(name, EVERY_RANK)
        if name not in self.written and name not in self.assumed:
            self.assumed[name] = h
        return h

    def executor(self, step):
        if not step.device.is_gpu or getattr(step.schema, "every_rank", False):
            return EVERY_RANK
        try:
            return self.placement.owner(step.device)
        except PlacementError as exc:
            raise PlacementError("%s\n  (op #%d %s in net being placed)" % (
                exc, step.index, step.op_type))

    def xfer(self, src, dst, name, device, push, step):
        x = XferEvent(self.next_id, src, dst, name, device, push, step)
        self.next_id += 1
        self.events.append(x)
        return x

    def emit_op(self, step, rank, not_moved=()):
        """The op on `rank`, pulling remote inputs (except those in `not_moved`, whose
        value the kernel does not read), then pushing remote outputs."""
        pulls, pulled, remote = {}, {}, {}
        for i, name in enumerate(step.in_names):
            h = self.holder_of(name)
            if h is EVERY_RANK or h == rank:
                continue
            if i in not_moved:
                remote[i] = h
                continue
            targets = ([r for r in range(self.placement.world_size) if r != h]
                       if rank is EVERY_RANK else [rank])
            by_rank = {}
            for t in targets:
                key = (name, t)
                if key not in pulled:
                    pulled[key] = self.xfer(h, t, name, self.device_of(name, step, i),
                                            False, step)
                by_rank[t] = pulled[key]
            pulls[i] = by_rank
        self.events.append(OpEvent(step, rank, pulls, remote))
        for o, name in enumerate(step.out_names):
            device = step.out_devices[o]
            self.devices[name] = device
            self.written.add(name)
            if rank is EVERY_RANK:
                self.holder.pop(name, None)
                continue
            target = self.placement.owner(device) if device.is_gpu else rank
            if target != rank:
                self.xfer(rank, target, name, device, True, step)
            self.holder[name] = target

    def device_of(self, name, step, i):
        """Static device of input i (for the receiving side's bookkeeping)."""
        if name in self.devices:
            return self.devices[name]
        blob = step.in_blobs[i]
        return blob.device


def build_schedule(steps, placement, holders):
    """The Schedule of compiled `steps` for `placement`, given holders {name: rank}."""
    b = _Builder(placement, holders)
    for step in steps:
        lower = LOWERINGS.get(step.op_type)
        if lower is not None and lower(step, b):
            continue
        b.emit_op(step, b.executor(step))
    final = {name: b.holder.get(name, EVERY_RANK) for name in b.written}
    return Schedule(b.events, final, b.devices, b.assumed)


@lowering("NCCLAllreduce")
def _nccl_allreduce(step, b):
    """Inputs on several ranks: per-rank partial sums + one MPI all-reduce."""
    n = len(step.in_names)
    if n < 2 or len(step.out_names) != n:
        return False  # reduce-to-root form: the generic pull / push path
    holders = [b.holder_of(name) for name in step.in_names]
    if any(h is EVERY_RANK for h in holders):
        return False
    ranks = tuple(sorted(set(holders)))
    if len(ranks) == 1:
        b.emit_op(step, ranks[0])  # all inputs on one rank: run it there
        return True
    for o, name in enumerate(step.out_names):
        device = step.out_devices[o]
        owner = b.placement.owner(device) if device.is_gpu else holders[o]
        if owner != holders[o]:
            raise PlacementError(
                "op #%d NCCLAllreduce: output %d ('%s') lands on %s (rank %s) but its "
                "input lives on rank %d; an all-reduce across ranks writes each output "
                "where its input is." % (step.index, o, name, device_name(device), owner,
                                          holders[o]))
    local = {r: [i for i, h in enumerate(holders) if h == r] for r in ranks}
    b.events.append(AllreduceEvent(step, ranks, local))
    for o, name in enumerate(step.out_names):
        b.devices[name] = step.out_devices[o]
        b.written.add(name)
        b.holder[name] = holders[o]
    return True


@lowering("CopyOnDeviceLike")
def _copy_on_device_like(step, b):
    """Input 1 ('like') only says where the copy goes; its value never moves."""
    b.emit_op(step, b.executor(step), not_moved={1})
    return True
