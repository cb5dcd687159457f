"""GPU arrays between ranks over NCCL (cupy.cuda.nccl); MPI stays the control channel.

When every rank of a job runs its GPU ops on CuPy, has NCCL with point-to-point
support (2.7 or newer) and a GPU of its own, the first placed net that moves data
between ranks sets up one NCCL communicator over the world (its unique id is
broadcast over MPI) and one per set of ranks that all-reduce together. Then:

* a CuPy array sent to another rank goes as an MPI header (dtype, shape, a flag
  saying "the bytes follow over NCCL") and an NCCL send of its bytes; the receiver
  reads the header over MPI, allocates, and posts the matching NCCL receive;
* an all-reduce over ranks sums each rank's inputs on its GPU, then NCCL
  all-reduces the partial sums;
* the butterfly all-to-all exchanges headers over MPI and the GPU payloads as one
  grouped set of NCCL sends and receives.

Ordering: NCCL calls go, in the schedule's order, on one stream per rank (the
transport's), which first waits for the op stream that produced the data (a CUDA
event) and which the op stream then waits for: no host synchronization. The host
waits once, when the net run ends (`settle`), polling the NCCL work's events
under the same deadline, failure notices and heartbeats as every MPI wait; if a
peer failed, was lost or timed out, the NCCL communicators are aborted
(ncclCommAbort, so no GPU stays stuck in a kernel) and the job's error raised.
A transport aborted this way refuses further work: restart the job.

Otherwise (a rank lacks CuPy or NCCL, two ranks share one GPU, which NCCL
refuses, or GRAPHNET_DIST_NCCL=0) GPU arrays are staged through host memory over
MPI, and `reason` says why. Imports numpy, errors and the CUDA executor's
backends; cupy only through them.
"""

import os
import pickle
import socket
import time

import numpy as np

from graphnet.distributed.errors import DistributedError

__all__ = ["NcclTransport", "negotiate", "nccl_requested", "is_device_array"]

_MIN_VERSION = 2700  # ncclSend / ncclRecv
_SETTLE_GRACE = 2.0  # s a failing rank lets its NCCL work finish before aborting


def nccl_requested():
    """False when GRAPHNET_DIST_NCCL=0 asks for host-staged MPI transfers only."""
    raw = os.environ.get("GRAPHNET_DIST_NCCL", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise DistributedError("GRAPHNET_DIST_NCCL must be 0 or 1, found %r" % raw)


def is_device_array(value):
    return type(value).__module__.startswith("cupy") and hasattr(value, "data")


def _nccl_module():
    try:
        from cupy.cuda import nccl
    except Exception:
        return None
    return nccl if getattr(nccl, "available", False) else None


def _home_physical(rt, placement, num_devices):
    """The physical GPU this rank's NCCL work runs on: the one backing its first
    logical device (the first mapped GPU if the rank has none)."""
    first = placement.rank * placement.devices_per_rank
    return rt.physical_of(first) if first < num_devices else rt.map.ids[0]


def _local_report(placement, num_devices):
    """What this rank can do, for the negotiation: why not NCCL, or its GPU."""
    from graphnet.executors.backends import cuda_backend
    from graphnet.executors.cuda import probe
    report = {"rank": placement.rank, "host": socket.gethostname(), "why": None}
    backend = cuda_backend() if nccl_requested() else None
    nccl = _nccl_module() if backend is not None else None
    if not nccl_requested():
        report["why"] = "GRAPHNET_DIST_NCCL=0"
    elif backend is None:
        report["why"] = "its GPU ops run on numpy (%s)" % (
            probe.why_unavailable() or "virtual GPUs were asked for")
    elif nccl is None:
        report["why"] = "cupy.cuda.nccl is not available in its CuPy build"
    elif nccl.get_version() < _MIN_VERSION:
        report["why"] = "its NCCL %d has no point-to-point send/receive (2.7+ needed)" % (
            nccl.get_version())
    else:
        home = _home_physical(backend.rt, placement, num_devices)
        report["home"] = home
        report["bus"] = backend.xp.cuda.Device(home).pci_bus_id
        # the unique id's type changed in CuPy 14: ranks must agree on the major version
        report["cupy"] = backend.xp.__version__.split(".")[0]
    return report


def negotiate(comm, placement, num_devices):
    """(NcclTransport or None, reason): collective over every rank of `comm`."""
    mine = _local_report(placement, num_devices)
    reports = [pickle.loads(raw) for raw in comm.allgather_bytes(
        pickle.dumps(mine), "the job's transport negotiation (NCCL or MPI)")]
    for report in reports:
        if report["why"]:
            return None, "rank %d: %s" % (report["rank"], report["why"])
    majors = {report["cupy"] for report in reports}
    if len(majors) > 1:
        return None, "the ranks run CuPy of different major versions (%s)" % ", ".join(
            "rank %d: %s" % (r["rank"], r["cupy"]) for r in reports)
    seen = {}
    for report in reports:
        key = (report["host"], report["bus"])
        if key in seen:
            return None, (
                "ranks %d and %d both use GPU %s on host %s, and NCCL needs a GPU per "
                "rank (map their devices to different GPUs: GRAPHNET_GPU_MAP)" % (
                    seen[key], report["rank"], report["bus"], report["host"]))
        seen[key] = report["rank"]
    from graphnet.executors.backends import cuda_backend
    transport = NcclTransport(comm, cuda_backend().rt, mine["home"])
    transport.communicator(transport.world, "setting up the NCCL world communicator")
    return transport, ""


class NcclTransport(object):
    """This rank's NCCL communicators, stream and work in flight."""

    name = "nccl"

    def __init__(self, comm, rt, home):
        self.comm, self.rt, self.cp = comm, rt, rt.cp
        self.nccl = _nccl_module()
        self.home = home
        with self.cp.cuda.Device(home):
            self.stream = self.cp.cuda.Stream(non_blocking=True)
        self.world = tuple(range(comm.size))  # the communicator of sends and receives
        self.comms = {}     # sorted ranks -> NcclCommunicator
        self.inflight = []  # (event, label, peers, buffers kept alive)
        self.broken = None  # why the communicators were aborted

    # --- communicators -----------------------------------------------------------
    def communicator(self, ranks, label):
        """The NCCL communicator over `ranks` (world ranks, this one among them),
        created collectively by them the first time: the lowest rank makes the
        unique id, MPI broadcasts it (under the deadline, so every member is known
        alive before the blocking NCCL initialization)."""
        ranks = tuple(sorted(ranks))
        nccl_comm = self.comms.get(ranks)
        if nccl_comm is None:
            me = self.comm.rank
            uid = self.nccl.get_unique_id() if me == ranks[0] else None
            uid = self.comm.bcast(uid, ranks[0], label, ranks=ranks)
            with self.cp.cuda.Device(self.home):  # the id as get_unique_id made it:
                # a tuple of ints in CuPy 13, bytes in CuPy 14 (each takes only its own)
                nccl_comm = self.nccl.NcclCommunicator(len(ranks), uid, ranks.index(me))
            self.comms[ranks] = nccl_comm
        return nccl_comm

    carries = staticmethod(is_device_array)  # what goes over NCCL: CuPy arrays

    def _usable(self, label):
        if self.broken is not None:
            raise DistributedError(
                "rank %d cannot run %s: its NCCL communicators were aborted after %s. "
                "Fix: restart the job." % (self.comm.rank, label, self.broken))

    # --- enqueueing ----------------------------------------------------------------
    def _enqueue(self, calls, label, peers, keep):
        """Run `calls(stream_ptr)` (NCCL calls) on the transport's stream after the
        current stream's work; the current stream then waits for them."""
        cp = self.cp
        current = cp.cuda.get_current_stream()
        ready = cp.cuda.Event(disable_timing=True)
        ready.record(current)
        with cp.cuda.Device(self.home):
            self.stream.wait_event(ready)
            calls(self.stream.ptr)
            done = cp.cuda.Event(disable_timing=True)
            done.record(self.stream)
        current.wait_event(done)
        self.inflight.append((done, label, tuple(peers), keep))

    def _home_copy(self, value):
        """`value` as a C-contiguous array on the home GPU (a copy when needed)."""
        from graphnet.executors.cuda import copies
        if (is_device_array(value) and value.device.id == self.home
                and value.flags.c_contiguous):
            return value
        return copies.to_device(self.rt, value, self.home, self.cp.cuda.get_current_stream())

    def _empty(self, header):
        from graphnet.distributed.comm import header_dtype_shape
        dtype, shape = header_dtype_shape(header)
        with self.cp.cuda.Device(self.home):
            return self.cp.empty(shape, dtype)

    # --- the operations the Comm forwards ------------------------------------------
    def send(self, value, dst, label):
        """Enqueue the NCCL send of `value`'s bytes to world rank `dst`; its size."""
        self._usable(label)
        return self._point_to_point("send", self._home_copy(value), dst, label)

    def recv(self, header, src, label):
        """Enqueue the NCCL receive matching `header` from world rank `src`."""
        self._usable(label)
        out = self._empty(header)
        self._point_to_point("recv", out, src, label)
        return out

    def _point_to_point(self, call, buf, peer, label):
        function = getattr(self.comms[self.world], call)
        nbytes, uint8 = int(buf.nbytes), self.nccl.NCCL_UINT8
        self._enqueue(lambda s: function(buf.data.ptr, nbytes, uint8, peer, s),
                      label, [peer], [buf])
        return nbytes

    def exchange(self, sends, recvs, label, peers):
        """One NCCL group: sends [(dst, array)], recvs [(src, header)] -> arrays."""
        self._usable(label)
        nccl = self.nccl
        world = self.comms[self.world]
        bufs = [(dst, self._home_copy(v)) for dst, v in sends]
        outs = [(src, self._empty(h)) for src, h in recvs]

        def calls(s):
            nccl.groupStart()
            try:
                for dst, buf in bufs:
                    world.send(buf.data.ptr, int(buf.nbytes), nccl.NCCL_UINT8, dst, s)
                for src, out in outs:
                    world.recv(out.data.ptr, int(out.nbytes), nccl.NCCL_UINT8, src, s)
            finally:
                nccl.groupEnd()
        if bufs or outs:
            self._enqueue(calls, label, peers, [b for _, b in bufs] + [o for _, o in outs])
        return [o for _, o in outs], sum(int(b.nbytes) for _, b in bufs)

    def allreduce_sum(self, array, ranks, label):
        """NCCL all-reduce (sum) of `array` over `ranks`, in place when `array` is a
        contiguous array on the home GPU (else on a copy there); returns the result."""
        self._usable(label)
        nccl = self.nccl
        nccl_comm = self.comms[tuple(sorted(ranks))]
        work = self._home_copy(array)
        dtype = nccl.NCCL_FLOAT16 if work.dtype == np.float16 else nccl.NCCL_FLOAT32
        ptr, count = work.data.ptr, int(work.size)
        self._enqueue(lambda s: nccl_comm.allReduce(ptr, ptr, count, dtype, nccl.NCCL_SUM, s),
                      label, ranks, [work])
        return work

    # --- the end of a run ----------------------------------------------------------
    def settle(self, failed=False):
        """Wait (host) for the NCCL work enqueued in this run, under the deadline;
        on a failure abort the communicators. `failed`: this rank's run already
        failed, so wait briefly and abort what does not finish."""
        if not self.inflight:
            return
        pending, self.inflight = self.inflight, []
        label = "; ".join(sorted({p[1] for p in pending}))
        peers = sorted({peer for p in pending for peer in p[2]})
        if failed:
            deadline = time.monotonic() + _SETTLE_GRACE
            while not all(p[0].done for p in pending) and time.monotonic() < deadline:
                time.sleep(0.001)
            if not all(p[0].done for p in pending):
                self.abort("this rank's own failure")
            return
        try:
            self.comm.wait_until(lambda: all(p[0].done for p in pending), label, peers,
                                 on_check=self._check_async)
        except BaseException as exc:
            self.abort("%s: %s" % (type(exc).__name__, str(exc).splitlines()[0]))
            raise

    def _check_async(self):
        for nccl_comm in self.comms.values():
            try:
                nccl_comm.check_async_error()
            except Exception as exc:
                raise DistributedError("NCCL reported an error on rank %d: %s"
                                       % (self.comm.rank, exc))

    def abort(self, why):
        """ncclCommAbort every communicator (GPU kernels waiting on them exit)."""
        self.broken = why
        for nccl_comm in self.comms.values():
            try:
                nccl_comm.abort()
            except Exception:  # already torn down: nothing left to stop
                pass
        self.comms = {}
