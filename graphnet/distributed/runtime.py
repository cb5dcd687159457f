"""One rank of a job: the workspace hooks that place nets, feeds and fetches.

The Cluster is what graphnet.workspace calls when a job runs on several ranks:

* place(plan): lower a compiled net onto the ranks (lowering + butterfly pass),
  check that every rank placed the same net, and give the plan this rank's steps
  and a runner; the runner re-lowers if blobs moved since, reports this rank's
  failures to the others, and afterwards records where every written blob lives.
* fed(): a blob fed onto another rank's GPU is kept only there (the others hold a
  RemoteValue naming the owner); CPU blobs are fed on every rank.
* fetch(): FetchBlob of a blob another rank holds is collective: its holder
  broadcasts it, so every rank (each runs the same script) gets the value.

GPU ops run with the CUDA runner (per-device streams) also here; the first placed
net that moves data between ranks settles, collectively, whether GPU arrays
travel over NCCL or staged through host memory over MPI (nccl.py; `transport`,
`transport_reason`).

Imports executors, lowering, butterfly, steps, netcheck, nccl, status and comm.
"""

import os
import weakref

from graphnet.errors import OperatorError
from graphnet.executors.backends import num_gpu_devices
from graphnet.executors.cuda.runner import run_cuda_plan, uses_cuda
from graphnet.executors.dag import run_dag
from graphnet.executors.run import run_simple
from graphnet.distributed.butterfly import merge_butterflies
from graphnet.distributed.errors import (PeerLostError, PeerTimeoutError,
                                         RankFailedError)
from graphnet.distributed.lowering import build_schedule
from graphnet.distributed.nccl import negotiate
from graphnet.distributed.netcheck import check_same_net
from graphnet.distributed.placement import (EVERY_RANK, Placement, RemoteValue,
                                            devices_per_rank_for)
from graphnet.distributed.status import StatusBoard
from graphnet.distributed.steps import local_steps

__all__ = ["Cluster", "RemoteValue", "root_cause"]


class _Placed(object):
    """What a placed plan keeps: the compiled steps as compiled, its workspace, and
    the schedule it was lowered with."""

    def __init__(self, plan, ws):
        self.ws = weakref.ref(ws)
        self.compiled = list(plan.steps)
        self.originals = [(s, list(s.in_blobs), s.kernel) for s in plan.steps]
        self.schedule = None
        self.marks = []
        self.idle = b""


def root_cause(exc):
    """The first DistributedError / failure along an exception's cause chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (RankFailedError, PeerTimeoutError, PeerLostError)):
            return exc
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if nxt is None:
            return exc
        exc = nxt
    return exc


def _run_host_plan(plan, settle):
    """A plan without GPU ops, then `settle(failed)` (the device transport's work)."""
    try:
        (run_simple if plan.net_type == "simple" else run_dag)(plan)
    except BaseException:
        if settle is not None:
            settle(True)
        raise
    if settle is not None:
        settle(False)


class Cluster(object):
    """This rank's placement, communicator, status board and blob holders."""

    def __init__(self, comm, board=None):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
        self.board = board or StatusBoard()
        self.alltoall = os.environ.get("GRAPHNET_DIST_ALLTOALL", "1").strip() != "0"
        seed = int.from_bytes(os.urandom(4), "little") if self.rank == 0 else None
        self.seed = comm.bcast(seed, 0, "the job's start (sharing the random seed)")
        self._holders = weakref.WeakKeyDictionary()
        self.transport_reason = None  # None: not negotiated yet; "": NCCL is used
        comm.start_watchdog(lambda: self.board.read()[1])

    def placement(self):
        return Placement(self.rank, self.size,
                         devices_per_rank_for(num_gpu_devices(), self.size))

    def holders(self, ws):
        """{blob name: holder rank} for blobs one rank holds (absent: every rank)."""
        holders = self._holders.get(ws)
        if holders is None:
            holders = self._holders[ws] = {}
        return holders

    # --- workspace hooks ---------------------------------------------------------------
    def place(self, plan, ws, how):
        """Lower `plan` onto the ranks; `how` names the call (CreateNet, RunNetOnce)."""
        state = _Placed(plan, ws)
        placement = self._lower(plan, state, ws)
        if state.schedule.is_placed():
            self.board.set_label("in %s('%s'): comparing the net with the other ranks"
                                 % (how, plan.name))
            check_same_net(self.comm, plan.netdef, placement, how)
            self._negotiate(placement)
            self._make_groups(state.schedule)
        plan.distributed = state
        plan.runner = self.run
        return plan

    def fed(self, ws, name, blob):
        owner = self.placement().owner(blob.device)
        holders = self.holders(ws)
        if owner is EVERY_RANK:
            holders.pop(name, None)
            return
        holders[name] = owner
        if owner != self.rank:
            blob.value = RemoteValue(owner, blob.value)

    def fetch(self, ws, name, value):
        holder = self.holders(ws).get(name)
        if holder is None:
            return value
        label = "FetchBlob('%s') (held by rank %d, which sends it to all)" % (name, holder)
        self.board.set_label("in " + label)
        return self.comm.bcast(value if self.rank == holder else None, holder, label)

    # --- running -------------------------------------------------------------------
    def run(self, plan):
        state = plan.distributed
        ws = state.ws()
        holders = self.holders(ws)
        if any(holders.get(n, EVERY_RANK) != h
               for n, h in state.schedule.assumed.items()):
            self._lower(plan, state, ws)  # blobs moved since: same net, new schedule
            self._make_groups(state.schedule)
        transport = self.comm.device
        settle = transport.settle if transport is not None else None
        try:
            if uses_cuda(plan):  # per-device streams; NCCL work settled before the sync
                run_cuda_plan(plan, settle=settle)
            else:
                _run_host_plan(plan, settle)
        except BaseException as exc:
            self.report_failure(exc)
            raise
        for name, holder in state.schedule.final.items():
            if holder is EVERY_RANK:
                holders.pop(name, None)
            else:
                holders[name] = holder
        for blob, value, device in state.marks:
            blob.value, blob.device = value, device
        self.board.set_label(state.idle)

    def report_failure(self, exc):
        """Tell the other ranks this one failed, unless it only saw another's failure."""
        cause = root_cause(exc)
        if isinstance(cause, RankFailedError):
            return
        if isinstance(exc, OperatorError):
            where = "op #%d (%s) of net '%s'" % (exc.op_index, exc.op_type, exc.net_name)
        else:
            where = "the script"
        text = str(cause).strip().splitlines()
        self.comm.notify_failure(where, "%s: %s" % (type(cause).__name__,
                                                    text[0] if text else ""))

    # --- lowering ------------------------------------------------------------------
    def _lower(self, plan, state, ws):
        for step, in_blobs, kernel in state.originals:
            step.in_blobs[:] = in_blobs
            step.kernel = kernel
        placement = self.placement()
        schedule = build_schedule(state.compiled, placement, self.holders(ws))
        if self.alltoall:
            schedule.events = merge_butterflies(schedule.events)
        plan.steps, plan.dependencies = local_steps(self, plan, schedule, ws._blobs)
        plan.runners = None  # steps and their blobs changed: rebuild the closures
        state.schedule = schedule
        state.marks = [(ws._blobs[n], RemoteValue(h), schedule.devices[n])
                       for n, h in schedule.final.items()
                       if h is not EVERY_RANK and h != self.rank]
        state.idle = self.board.encode("in the script, after running net '%s'" % plan.name)
        return placement

    @property
    def transport(self):
        """"nccl" or "mpi": how GPU arrays move between ranks ("mpi" also before the
        first placed net; transport_reason says why not NCCL); the device
        transport's name where one is set."""
        device = self.comm.device
        return "mpi" if device is None else device.name

    def _negotiate(self, placement):
        """Once per job, collectively: NCCL for GPU arrays, or why not (nccl.py)."""
        if self.transport_reason is None:
            self.comm.device, self.transport_reason = negotiate(
                self.comm, placement, num_gpu_devices())

    def _make_groups(self, schedule):
        """Sub-communicators (MPI, and NCCL for all-reduces when the job uses it) are
        created collectively by their members; every member reaches this point in
        the same order, before any of them runs the net."""
        for e in schedule.events:
            ranks = getattr(e, "ranks", None)
            if ranks and self.rank in ranks:
                self.comm.group(ranks)
                if self.comm.device is not None and e.kind == "allreduce":
                    self.comm.device.communicator(
                        ranks, "setting up the NCCL communicator of ranks %s"
                        % ", ".join(map(str, sorted(ranks))))
