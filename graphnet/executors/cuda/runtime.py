"""Per-process CUDA state: one stream per logical GPU, peer access, pinned buffers.

Logical GPU d runs on physical device map.physical_of(d) with its own
non-blocking stream, so logical devices sharing a physical GPU still overlap.
Peer access is enabled once for every pair of physical devices that supports
it. Imports cupy (only ever imported after probe.load() found it) and probe.
"""

import threading

import numpy as np

from graphnet.executors.cuda import probe

__all__ = ["CudaRuntime", "runtime"]


class CudaRuntime(object):
    """Streams and peer-access table for the current DeviceMap."""

    def __init__(self, cupy, device_map):
        self.cp = cupy
        self.map = device_map
        self._streams = {}
        self._lock = threading.Lock()
        self.peer = self._enable_peers(sorted(set(device_map.ids)))

    def _enable_peers(self, physical):
        """peer[(a, b)]: device a can read device b's memory directly."""
        runtime = self.cp.cuda.runtime
        peer = {}
        for a in physical:
            for b in physical:
                if a == b:
                    continue
                ok = bool(runtime.deviceCanAccessPeer(a, b))
                if ok:
                    with self.cp.cuda.Device(a):
                        try:
                            runtime.deviceEnablePeerAccess(b)
                        except runtime.CUDARuntimeError as exc:
                            # 704: cudaErrorPeerAccessAlreadyEnabled (another library did it)
                            if "AlreadyEnabled" not in str(exc) and getattr(
                                    exc, "status", None) != 704:
                                ok = False
                peer[(a, b)] = ok
        return peer

    def physical_of(self, logical):
        return self.map.physical_of(logical)

    def stream(self, logical):
        """The stream of logical GPU `logical` (created on first use)."""
        stream = self._streams.get(logical)
        if stream is None:
            with self._lock:
                stream = self._streams.get(logical)
                if stream is None:
                    with self.cp.cuda.Device(self.physical_of(logical)):
                        stream = self.cp.cuda.Stream(non_blocking=True)
                    self._streams[logical] = stream
        return stream

    def event(self, physical):
        """A fresh timing-free event on `physical` (events belong to one device)."""
        with self.cp.cuda.Device(physical):
            return self.cp.cuda.Event(disable_timing=True)

    def can_peer(self, dst, src):
        return dst == src or self.peer.get((dst, src), False)

    def synchronize(self, logicals=None):
        """Host waits for the streams of `logicals` (all streams when None)."""
        items = list(self._streams.items())
        for logical, stream in items:
            if logicals is None or logical in logicals:
                stream.synchronize()

    def pinned_empty(self, shape, dtype):
        """A numpy array in page-locked host memory (fast, truly async copies)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        memory = self.cp.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
        return np.frombuffer(memory, dtype, count).reshape(shape)


_runtime = {}


def runtime():
    """The CudaRuntime of the current device map (None without CuPy)."""
    cupy = probe.load()
    if cupy is None:
        return None
    device_map = probe.device_map()
    current = _runtime.get("rt")
    if current is None or current.map is not device_map:
        current = _runtime["rt"] = CudaRuntime(cupy, device_map)
    return current
