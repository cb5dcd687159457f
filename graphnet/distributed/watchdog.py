"""Heartbeats between ranks, so a rank that died is noticed by the ranks waiting for it.

A daemon thread per rank sends every other rank, once per GRAPHNET_DIST_HEARTBEAT
seconds (default 1), a small message carrying what this rank is doing (its status
label), on a communicator of its own, and records when each peer was last heard
and what it said. A wait that involves a peer silent for longer than
GRAPHNET_DIST_LIVENESS seconds (default 20) fails with PeerLostError naming that
rank and its last reported op. This does not depend on the MPI launcher noticing
the death (MPICH's hydra usually does, not always). Cost: R-1 tiny messages per
rank per interval. GRAPHNET_DIST_HEARTBEAT=0 turns it off (waits then rely on
GRAPHNET_DIST_TIMEOUT). Imports mpi4py's module through the Comm only.
"""

import os
import threading
import time

__all__ = ["Watchdog", "heartbeat_settings"]

TAG_HEARTBEAT = 3


def _env_seconds(name, default):
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def heartbeat_settings():
    """(interval, liveness) in seconds; interval 0 means no heartbeats."""
    interval = _env_seconds("GRAPHNET_DIST_HEARTBEAT", 1.0)
    liveness = _env_seconds("GRAPHNET_DIST_LIVENESS", 20.0)
    return interval, max(liveness, 2 * interval)


class Watchdog(object):
    """Sends heartbeats and tracks when each peer was last heard."""

    def __init__(self, MPI, comm, label_source, interval, liveness):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.label_source = label_source
        self.interval, self.liveness = interval, liveness
        now = time.monotonic()
        self.last_seen = {p: now for p in range(self.size) if p != self.rank}
        self.last_label = {p: "starting" for p in self.last_seen}
        self._pending = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graphnet-heartbeat",
                                        daemon=True)
        self._thread.start()

    def silent(self, peers):
        """(rank, seconds since heard, last label) of the first peer silent too long."""
        now = time.monotonic()
        for p in peers:
            seen = self.last_seen.get(p)
            if seen is not None and now - seen > self.liveness:
                return p, now - seen, self.last_label[p]
        return None

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        deadline = time.monotonic() + 1.0
        while self._pending and time.monotonic() < deadline:
            self._pending = [(r, b) for r, b in self._pending if not r.Test()]
            time.sleep(0.001)
        for request, _ in self._pending:  # a peer that is gone never receives them
            request.Cancel()
        self._pending = []

    def _run(self):
        MPI = self.MPI
        status = MPI.Status()
        next_beat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._beat()
                next_beat = now + self.interval
            while self.comm.Iprobe(MPI.ANY_SOURCE, TAG_HEARTBEAT, status):
                source = status.Get_source()
                buf = bytearray(status.Get_count(MPI.BYTE))
                self.comm.Recv([buf, MPI.BYTE], source=source, tag=TAG_HEARTBEAT)
                self.last_seen[source] = time.monotonic()
                self.last_label[source] = buf.decode("utf-8", "replace")
            self._stop.wait(min(0.05, self.interval / 4))

    def _beat(self):
        MPI = self.MPI
        label = self.label_source().encode("utf-8", "replace")[:400]
        # (request, buffer) pairs: a buffer must live until its send completes
        self._pending = [(r, b) for r, b in self._pending if not r.Test()]
        for p in self.last_seen:
            buf = bytearray(label)
            request = self.comm.Isend([buf, MPI.BYTE], dest=p, tag=TAG_HEARTBEAT)
            self._pending.append((request, buf))
