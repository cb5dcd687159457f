"""Cross-rank data movement over mpi4py, with a deadline and failure notices.

Every wait polls its MPI requests, the control channel (failure notices that a
failing rank sends to all others), the heartbeats (watchdog.py) and a deadline,
so no rank hangs in a transfer or a collective when a peer is gone: it raises
RankFailedError (naming the failed rank and op), PeerLostError (a peer went
silent: its rank and last reported op) or PeerTimeoutError (the ranks it waited
for). Arrays travel as a fixed 12-int64 header (dtype, shape, bytes) then their
raw bytes; where the job set up NCCL (nccl.py: `Comm.device`), CuPy arrays send
only the header over MPI and their bytes over NCCL. Imports numpy,
distributed.errors and watchdog; mpi4py when a Comm is made.
"""

import os
import pickle
import time

import numpy as np

from graphnet.executors.backends import to_numpy
from graphnet.distributed.errors import (DistributedError, PeerLostError,
                                         PeerTimeoutError, RankFailedError)
from graphnet.distributed.watchdog import Watchdog, heartbeat_settings

__all__ = ["Comm", "Stats", "encode", "decode", "default_timeout", "header_dtype_shape"]

TAG_NOTICE, TAG_ACK = 1, 2
_HEADER = 12  # [kind, dtype code, ndim, nbytes, dim0 .. dim7]
_MAX_DIMS = _HEADER - 4
_DTYPES = [np.dtype(t) for t in ("float32", "float64", "int32", "int64", "bool",
                                 "uint8", "int8", "int16", "uint16", "float16")]
_CODE = {d: i for i, d in enumerate(_DTYPES)}
_RAW, _PICKLED, _DEVICE = 0, 1, 2  # _DEVICE: the bytes follow over NCCL
_YIELD_SPINS = 200
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def default_timeout():
    """Seconds a rank waits without progress before giving up (GRAPHNET_DIST_TIMEOUT)."""
    raw = os.environ.get("GRAPHNET_DIST_TIMEOUT", "").strip()
    try:
        return float(raw) if raw else 300.0
    except ValueError:
        raise DistributedError("GRAPHNET_DIST_TIMEOUT must be a number of seconds, "
                               "found %r" % raw)


def encode(value, device=False):
    """(header int64[12], payload uint8[n]) for an array or any picklable value.
    Device (CuPy) arrays travel through host memory, as raw bytes like numpy's;
    with `device` (the device transport carries this array) the header alone,
    flagged _DEVICE."""
    header = np.zeros(_HEADER, np.int64)
    if device and value.dtype in _CODE and value.ndim <= _MAX_DIMS:
        header[0], header[1], header[2] = _DEVICE, _CODE[value.dtype], value.ndim
        header[4:4 + value.ndim] = value.shape
        return header, np.zeros(0, np.uint8)
    if not isinstance(value, np.ndarray) and type(value).__module__.startswith("cupy"):
        value = to_numpy(value)
    array = value if isinstance(value, np.ndarray) else None
    if array is not None and array.dtype in _CODE and array.ndim <= _MAX_DIMS:
        array = np.asarray(array, order="C")  # (ascontiguousarray makes 0-d 1-d)
        header[0], header[1], header[2] = _RAW, _CODE[array.dtype], array.ndim
        header[4:4 + array.ndim] = array.shape
        payload = array.reshape(-1).view(np.uint8)
    else:
        payload = np.frombuffer(pickle.dumps(value, protocol=4), np.uint8)
        header[0] = _PICKLED
    header[3] = payload.size
    return header, payload


def decode(header, payload):
    """Inverse of encode; `payload` is a uint8 array of header[3] bytes."""
    if header[0] == _PICKLED:
        return pickle.loads(payload.tobytes())
    dtype, shape = header_dtype_shape(header)
    return payload.view(dtype).reshape(shape)


def header_dtype_shape(header):
    """The dtype and shape an array header describes."""
    return _DTYPES[int(header[1])], tuple(int(d) for d in header[4:4 + int(header[2])])


def empty_payload(header):
    return np.empty(int(header[3]), np.uint8)


class Stats(object):
    """What this rank sent: payload bytes and messages (headers excluded), and the
    all-reduce volume under the ring algorithm's 2(P-1)/P bytes per participant."""

    __slots__ = ("bytes_sent", "messages", "allreduce_bytes", "collectives")

    def __init__(self):
        self.reset()

    def reset(self):
        self.bytes_sent = self.messages = self.allreduce_bytes = self.collectives = 0

    def snapshot(self):
        return {k: getattr(self, k) for k in self.__slots__}


class Comm(object):
    """One rank's view of the job: a data communicator, a control communicator for
    failure notices, sub-communicators per rank set, a deadline and counters."""

    def __init__(self, base=None, timeout=None):
        from mpi4py import MPI
        self.MPI = MPI
        base = MPI.COMM_WORLD if base is None else base
        self.data = base.Dup()
        self.ctrl = base.Dup()
        self.hb = base.Dup()
        self.watchdog = None
        self.lost = set()        # ranks found dead by the watchdog
        self.rank = self.data.Get_rank()
        self.size = self.data.Get_size()
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.stats = Stats()
        self.failure = None      # the notice of the first failed rank, once received
        self.notified = False    # this rank already told the others it failed
        self._pending = []       # control messages still in flight
        self._groups = {}
        # the device transport (nccl.NcclTransport) once the job agreed on one: it
        # carries the arrays its carries(value) accepts, MPI only their headers
        self.device = None

    def start_watchdog(self, label_source):
        """Heartbeats to and from every other rank (see watchdog.py)."""
        interval, liveness = heartbeat_settings()
        if (self.watchdog is None and interval > 0 and self.size > 1
                and self.MPI.Query_thread() == self.MPI.THREAD_MULTIPLE):
            self.watchdog = Watchdog(self.MPI, self.hb, label_source, interval, liveness)

    def stop_watchdog(self):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    # --- waiting -------------------------------------------------------------------
    def wait(self, requests, label, peers, status=None):
        """Wait for `requests` (one request filling `status`, if given); raise if a
        peer failed, MPI reported an error, or nothing moved in time."""
        MPI = self.MPI
        if status is None:
            test = lambda: MPI.Request.Testall(requests)  # noqa: E731
        else:
            test = lambda: requests[0].Test(status)  # noqa: E731
        self.wait_until(test, label, peers)

    def wait_until(self, test, label, peers, on_check=None):
        """Poll `test()` until true, with wait()'s notices, heartbeats and deadline
        (`on_check()` runs with the heartbeat check: NCCL's asynchronous errors)."""
        MPI = self.MPI
        start = time.monotonic()
        deadline, next_check = start + self.timeout, start + 0.25
        spins = 0
        try:
            while not test():
                self.check_notices(label)
                spins += 1
                if spins < _YIELD_SPINS:
                    _yield()  # a peer on another core answers in microseconds
                    continue
                now = time.monotonic()
                if now > next_check:
                    next_check = now + 0.25
                    self._check_alive(label, peers)
                    if on_check is not None:
                        on_check()
                if now > deadline:
                    raise self._timeout(label, peers)
                # then back off to 0.5 ms, so waiting ranks leave the cores to working ones
                time.sleep(min(0.0005, 0.00001 * (spins - _YIELD_SPINS + 1)))
        except MPI.Exception as exc:
            raise DistributedError("MPI error on rank %d in %s: %s"
                                   % (self.rank, label, exc.Get_error_string()))

    def check_notices(self, label=None):
        """Raise RankFailedError if some rank has reported a failure."""
        MPI = self.MPI
        if self.failure is None:
            status = MPI.Status()
            if self.ctrl.Iprobe(MPI.ANY_SOURCE, TAG_NOTICE, status):
                self.failure = self.ctrl.recv(source=status.Get_source(), tag=TAG_NOTICE)
        if self.failure is not None:
            raise self.failure_error(label)

    def _check_alive(self, label, peers):
        lost = self.watchdog.silent(peers) if self.watchdog is not None else None
        if lost is not None:
            peer, seconds, report = lost
            self.lost.add(peer)
            raise PeerLostError(
                "rank %d stopped responding: no heartbeat for %.1f s (its process was "
                "killed or died, or it hangs with the GIL held); its last report, %.1f s "
                "ago: %s\n  rank %d stopped while waiting in %s" % (
                    peer, seconds, seconds, report, self.rank, label), peer, report)

    def failure_error(self, label):
        info = self.failure
        text = "rank %d failed in %s: %s" % (info["rank"], info["where"], info["error"])
        if label:
            text += "\n  rank %d stopped while waiting in %s" % (self.rank, label)
        return RankFailedError(text, failed_rank=info["rank"], failed_where=info["where"])

    def _timeout(self, label, peers):
        peers = sorted(p for p in peers if p != self.rank)
        return PeerTimeoutError(
            "rank %d made no progress for %g s in %s, waiting for rank%s %s: %s failed "
            "without notice (killed?), is stuck, or ran a different net. If it is only "
            "slow, raise GRAPHNET_DIST_TIMEOUT (now %g s)."
            % (self.rank, self.timeout, label, "" if len(peers) == 1 else "s",
               ", ".join(map(str, peers)) or "(all)",
               "it" if len(peers) == 1 else "one of them", self.timeout), peers)

    # --- failure notices -----------------------------------------------------------
    def notify_failure(self, where, error):
        """Tell every other rank that this one failed in `where` (once)."""
        if self.notified or self.failure is not None:
            return
        self.notified = True
        info = {"rank": self.rank, "where": where, "error": error}
        for peer in range(self.size):
            if peer != self.rank:
                self._pending.append(self.ctrl.isend(info, dest=peer, tag=TAG_NOTICE))

    def acknowledge(self):
        """Tell the failed rank this one has reported its failure."""
        if self.failure is not None:
            self._pending.append(self.ctrl.isend(self.rank, dest=self.failure["rank"],
                                                 tag=TAG_ACK))
            self.flush(0.5)

    def await_acks(self, grace):
        """After notify_failure: wait up to `grace` s for every peer to report."""
        MPI = self.MPI
        waiting = set(range(self.size)) - {self.rank} - self.lost
        deadline = time.monotonic() + grace
        status = MPI.Status()
        while waiting and time.monotonic() < deadline:
            while self.ctrl.Iprobe(MPI.ANY_SOURCE, TAG_ACK, status):
                waiting.discard(self.ctrl.recv(source=status.Get_source(), tag=TAG_ACK))
            while self.ctrl.Iprobe(MPI.ANY_SOURCE, TAG_NOTICE, status):
                # that rank failed too (e.g. every rank saw the same bad net): it reported
                waiting.discard(self.ctrl.recv(source=status.Get_source(),
                                               tag=TAG_NOTICE)["rank"])
            time.sleep(0.005)
        self.flush(0.1)
        return waiting

    def flush(self, seconds):
        deadline = time.monotonic() + seconds
        while self._pending and time.monotonic() < deadline:
            self._pending = [r for r in self._pending if not r.Test()]
            time.sleep(0.001)

    # --- communicators -------------------------------------------------------------
    def group(self, ranks):
        """A communicator over the sorted world ranks `ranks` (this rank among them);
        created collectively by those ranks the first time they ask, then cached."""
        ranks = tuple(sorted(ranks))
        if len(ranks) == self.size:
            return self.data
        comm = self._groups.get(ranks)
        if comm is None:
            group = self.data.Get_group().Incl(list(ranks))
            comm = self._groups[ranks] = self.data.Create_group(group, tag=77)
            group.Free()
        return comm

    # --- point to point ------------------------------------------------------------
    def _carried(self, value):
        return self.device is not None and self.device.carries(value)

    def send(self, value, dst, tag, label):
        header, payload = encode(value, device=self._carried(value))
        requests = [self.data.Isend(header, dst, tag)]
        if header[0] != _DEVICE:
            requests.append(self.data.Isend(payload, dst, tag))
        self.wait(requests, label, [dst])
        sent = self.device.send(value, dst, label) if header[0] == _DEVICE else payload.size
        self.stats.bytes_sent += sent
        self.stats.messages += 1

    def recv(self, src, tag, label):
        header = np.empty(_HEADER, np.int64)
        self.wait([self.data.Irecv(header, src, tag)], label, [src])
        if header[0] == _DEVICE:
            return self._device(label).recv(header, src, label)
        payload = empty_payload(header)
        self.wait([self.data.Irecv(payload, src, tag)], label, [src])
        return decode(header, payload)

    def _device(self, label):
        if self.device is None:
            raise DistributedError(
                "rank %d received a GPU array announced over NCCL in %s, but this rank "
                "set up no NCCL transport: the ranks disagree (GRAPHNET_DIST_NCCL must "
                "be the same on all)" % (self.rank, label))
        return self.device

    # --- collectives -----------------------------------------------------------------
    def allreduce_sum(self, array, ranks, label):
        """Sum of `array` over `ranks` (this rank among them): over NCCL where the
        job set it up (a CuPy array back, on this rank's NCCL GPU), else over MPI
        (a new numpy array)."""
        if self.device is not None:
            self._count_allreduce(array.nbytes, len(ranks))
            return self.device.allreduce_sum(array, ranks, label)
        array = to_numpy(array)
        MPI = self.MPI
        work = np.array(array, dtype=np.float32 if array.dtype == np.float16
                        else array.dtype, copy=True, order="C")
        comm = self.group(ranks)
        self.wait([comm.Iallreduce(MPI.IN_PLACE, work, op=MPI.SUM)], label, ranks)
        self._count_allreduce(work.nbytes, len(ranks))
        return work.astype(array.dtype, copy=False)

    def _count_allreduce(self, nbytes, p):
        """Stats of one ring all-reduce of `nbytes` per participant over p ranks."""
        self.stats.allreduce_bytes += int(2 * (p - 1) * nbytes // p)
        self.stats.collectives += 1

    def alltoallv(self, sends, expect, ranks, label):
        """Exchange lists of values among `ranks`: sends[dst] is what this rank sends
        to dst (in order), expect[src] how many values src sends here. Returns
        {src: [values]}. Two collectives: headers, then bytes."""
        MPI = self.MPI
        ranks = tuple(sorted(ranks))
        comm = self.group(ranks)
        encoded = {dst: [encode(v, self._carried(v)) for v in values]
                   for dst, values in sends.items()}
        s_counts = [_HEADER * len(encoded.get(r, ())) for r in ranks]
        r_counts = [_HEADER * expect.get(r, 0) for r in ranks]
        s_headers = np.concatenate([h for r in ranks for h, _ in encoded.get(r, ())]
                                   or [np.zeros(0, np.int64)])
        r_headers = np.empty(sum(r_counts), np.int64)
        send = [s_headers, (s_counts, _displs(s_counts)), MPI.INT64_T]
        receive = [r_headers, (r_counts, _displs(r_counts)), MPI.INT64_T]
        self.wait([comm.Ialltoallv(send, receive)], label, ranks)
        s_bytes = [sum(int(p.size) for _, p in encoded.get(r, ())) for r in ranks]
        s_payload = np.concatenate([p for r in ranks for _, p in encoded.get(r, ())]
                                   or [np.zeros(0, np.uint8)])
        headers = r_headers.reshape(-1, _HEADER)
        r_bytes, row = [], 0
        for r in ranks:
            n = expect.get(r, 0)
            r_bytes.append(int(headers[row:row + n, 3].sum()))
            row += n
        r_payload = np.empty(sum(r_bytes), np.uint8)
        self.wait([comm.Ialltoallv([s_payload, (s_bytes, _displs(s_bytes)), MPI.BYTE],
                                   [r_payload, (r_bytes, _displs(r_bytes)), MPI.BYTE])],
                  label, ranks)
        on_device = self._exchange_device(sends, encoded, headers, expect, ranks, label)
        self.stats.bytes_sent += int(s_payload.size)
        self.stats.messages += sum(1 for b in s_bytes if b)
        self.stats.collectives += 1
        out, row, offset = {}, 0, 0
        for r in ranks:
            values = []
            for _ in range(expect.get(r, 0)):
                header = headers[row]
                size = int(header[3])
                if header[0] == _DEVICE:
                    values.append(on_device.pop(0))
                else:
                    values.append(np.array(decode(header, r_payload[offset:offset + size]),
                                           copy=True))
                row, offset = row + 1, offset + size
            out[r] = values
        return out

    def _exchange_device(self, sends, encoded, headers, expect, ranks, label):
        """The NCCL part of alltoallv: the arrays whose headers say _DEVICE, sent and
        received in one group; returns the received ones in (source, order) order."""
        out = [(dst, v) for dst in ranks for v, (h, _) in zip(sends.get(dst, ()),
                                                              encoded.get(dst, ()))
               if h[0] == _DEVICE]
        into, row = [], 0
        for src in ranks:
            for _ in range(expect.get(src, 0)):
                if headers[row][0] == _DEVICE:
                    into.append((src, headers[row]))
                row += 1
        if not out and not into:
            return []
        received, sent = self._device(label).exchange(out, into, label, ranks)
        self.stats.bytes_sent += sent
        self.stats.messages += len(out)
        return received

    def bcast(self, value, root, label, ranks=None):
        """`value` from world rank `root` to every rank, or to the world ranks
        `ranks` (collective over them; root among them)."""
        ranks = tuple(range(self.size)) if ranks is None else tuple(sorted(ranks))
        comm, index = self.group(ranks), ranks.index(root)
        header = np.empty(_HEADER, np.int64)
        payload = None
        if self.rank == root:
            header, payload = encode(value)
        self.wait([comm.Ibcast(header, root=index)], label, ranks)
        if self.rank != root:
            payload = empty_payload(header)
        self.wait([comm.Ibcast(payload, root=index)], label, ranks)
        if self.rank == root:
            self.stats.bytes_sent += int(payload.size) * (len(ranks) - 1)
            return value
        return decode(header, payload)

    def allgather_bytes(self, data, label):
        """Every rank's `data` (bytes), in rank order (collective)."""
        MPI = self.MPI
        mine = np.frombuffer(bytes(data), np.uint8)
        sizes = np.empty(self.size, np.int64)
        self.wait([self.data.Iallgather(np.array([mine.size], np.int64), sizes)],
                  label, range(self.size))
        counts = [int(s) for s in sizes]
        out = np.empty(sum(counts), np.uint8)
        self.wait([self.data.Iallgatherv(mine, [out, (counts, _displs(counts)), MPI.BYTE])],
                  label, range(self.size))
        result, offset = [], 0
        for c in counts:
            result.append(out[offset:offset + c].tobytes())
            offset += c
        return result

    def barrier(self, label):
        self.wait([self.data.Ibarrier()], label, range(self.size))


def _displs(counts):
    out, total = [], 0
    for c in counts:
        out.append(total)
        total += c
    return out
