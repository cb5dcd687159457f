"""A CuPy stand-in that runs graphnet's CUDA executor on the CPU: devices, streams,
events, memory pools, stream capture and CUDA graphs, arrays and the CUDA C kernels.
It is NOT a GPU: it is numpy plus bookkeeping, meant to run the Python of
graphnet/executors/cuda (runner.py, graphs.py, copies.py, nccl.py's fallback) and the
ops' CuPy paths in CI and to fail where a GPU would fail or silently go wrong.

    fake = fakecuda.FakeCuda()
    with fakecuda.installed(monkeypatch, fake):  # sys.modules["cupy"] (+ cupy.cuda,
        ...                                      # .runtime, .memory); graphnet's CUDA
                                                 # caches emptied before and after
    assert not fake.problems   # races, freed memory read by a graph, bad copies

tests/cuda/fakecupy.py (the launcher tests' stand-in, an ndarray subclass) is left as
it is: its arrays are numpy arrays, which graphnet's executor would take for host data.
This module reuses its allocation constants and hostgrid's compiled kernels.

What is emulated, and how strictly
----------------------------------
* Arrays: `ndarray` is a wrapper (not a numpy subclass; its type's module is "cupy",
  as graphnet's to_numpy expects) over a numpy view of fake device memory. As in CuPy,
  np.asarray(x) raises TypeError (no implicit host conversion), `.ctypes` does not
  exist, reductions and scalar indexing give 0-d device arrays, and `.get()`,
  int()/float()/bool(), .item(), .tolist() read back (a device -> host transfer: they
  raise under capture, and order the host after the stream's work). Integer index
  arrays wrap around (CuPy's documented behaviour), boolean masks read back (CuPy
  counts them on the host). Host arrays (ndim > 0) given to a ufunc, kernel or
  function other than asarray/array raise TypeError; asarray/array, index arrays and
  values assigned from the host are uploads (0-d host values are baked scalars).
* Functions: every numpy function and ufunc is accepted, on device arrays (through
  __array_ufunc__ / __array_function__) or as cupy.<name>; results are device arrays.
  Deviation: CuPy lacks some numpy functions, which fail there and work here. Those
  with CuPy-specific behaviour are written out: asarray/array/ascontiguousarray
  (0-d -> 1-d, device input only), empty/zeros/ones/full(_like), take (wraps),
  concatenate/stack/hstack/vstack (the address-table upload of > 8 same-dtype arrays
  under capture), bincount/unique/nonzero/argwhere/flatnonzero/where(cond) (they read
  back), copyto. In-place numpy functions not listed raise (they would bypass streams).
* Memory: every device allocation goes through cupy.cuda.get_allocator() (so
  graphs._kept_allocator sees it) into a stream-ordered MemoryPool as CuPy's: a block
  freed returns to the free list of the stream current at its allocation and is
  handed out again by an allocation of the same rounded size (512 bytes) on that
  stream (CuPy's best-fit and splitting are not emulated). Fresh and reused blocks are
  filled with 0xFF (NaN floats, -1 integers). Blocks are 256-byte aligned. Each
  device has `capacity` bytes: more raises cupy.cuda.memory.OutOfMemoryError.
  MemoryAsyncPool exists (no reuse) so graphs.allocator_refusal can be tested.
  alloc_pinned_memory gives tracked host buffers; memcpyAsync / memcpyPeerAsync check
  that both ranges lie in live device or pinned allocations (a StandInError names
  the address otherwise: a freed buffer or pageable memory) and copy with numpy.
* Devices: `devices` physical GPUs (1 by default), Device as a context manager, a
  current stream per device and thread (`with stream:` needs the stream's device to
  be current, as CuPy checks), peer access (deviceCanAccessPeer = `peer`; an array of
  another device used by a kernel or ufunc needs deviceEnablePeerAccess, else CuPy's
  ValueError).
* Streams and events: work runs on the host at once, in the order the host enqueues
  it, but every stream keeps a vector clock: an operation is ordered after an earlier
  one on another stream only through stream.wait_event(event recorded after it), a
  host synchronization (stream/event/device synchronize, or a read back) before it
  was enqueued, or the legacy default stream's implicit ordering with blocking
  streams. Every buffer remembers its last writer and its readers since: a read or
  write not ordered after them is a race, appended to `fake.problems` with both
  operations (a GPU would compute garbage there; here the result is still right).
  Reusing a pool block counts as writing it, so a block freed while another stream
  may still read it and handed out again is a race too. Kernel pointer parameters
  that are const are reads, others writes. Event.done is always True (all work has
  run); get_elapsed_time returns 0.0 (no timing).
* Stream capture: while a stream captures, every operation enqueued on it is
  RECORDED, NOT EXECUTED (as on a GPU; graphs.py launches the graph right after the
  capture): ufuncs, functions, array methods, setitem, fills, kernel launches and
  memcpyAsync become graph nodes holding their operands as (memory, offset, shape,
  strides, dtype) with weak references to the memory: pointers baked, contents read
  when the graph is launched. New results get poisoned buffers of the right shape
  (numpy computes the op once on the current contents to learn it; in-place ops are
  checked on scratch buffers, kernels' arguments validated) and are written by the
  graph's launches only. Graph.launch(stream) replays the nodes in order on that
  stream (with the race checks); a node whose memory was freed since the capture
  raises StandInError. Under capture, as CuPy and CUDA do: read backs and uploads
  raise RuntimeError ("the current stream is capturing, so D2H/H2D transfers are
  disallowed"), stream.synchronize / device.synchronize raise CUDARuntimeError
  (cudaErrorStreamCaptureUnsupported) and invalidate the capture (end_capture then
  raises cudaErrorStreamCaptureInvalidated), an event recorded in the capture cannot
  be synchronized or queried (cudaErrorCapturedEvent), waiting in a capture on an
  event recorded outside it raises cudaErrorStreamCaptureIsolation (assumed: the
  CUDA rule for the default wait flags), capturing the legacy stream is refused.
  Work enqueued on other streams during a capture runs eagerly (and is not part of
  the graph: a replay does not redo it). Not emulated: cross-stream capture
  (fork/join through events: NotImplementedError), graphs launched into a capture,
  capture modes (relaxed semantics throughout), graph memory nodes (cudaMallocAsync).
* Kernels: RawModule compiles the real CUDA C with hostgrid (shared with the other
  host tests); launches check their arguments (hostgrid's types; device arrays of the
  current device or a peer; no host arrays) and are counted by name in `launches`.
  The three kernels that synchronize their threads (segment_starts, index_stats_i32,
  index_stats_i64) run as numpy doubles by default, after the same argument checks:
  hostgrid runs them as blocks of std::threads at 40-200 ms a launch, most of a DLRM
  step; tests/cuda/test_fakecuda.py proves each double bit-equal to its kernel.

Not emulated: NCCL (cupy.cuda.nccl does not import: graphnet's nccl.py takes its
copy fallback, fine for one physical GPU), timing, asynchronous execution itself
(nothing overlaps, so a missing synchronization never shows as a wrong value: only
as a race in `problems`), host writes into pinned buffers (not observable: a host
write racing an async copy is not found), CuPy's pinned memory pool, thrust/cub
temporaries, texture/array memory, numpy vs CuPy type promotion differences, and
repr() of arrays (a summary here, a read back in CuPy).
"""

import bisect
import contextlib
import ctypes
import functools
import importlib.machinery
import itertools
import sys
import threading
import traceback
import types
import weakref

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import fakecupy, hostgrid

__all__ = ["FakeCuda", "installed", "ndarray", "StandInError", "CUDARuntimeError",
           "OutOfMemoryError"]

ALIGN, POISON = fakecupy.ALIGN, fakecupy.POISON
ROUND = 512  # CuPy's pool rounds sizes up to 512 bytes
H2H, H2D, D2H, D2D, DEFAULT = 0, 1, 2, 3, 4
_KIND_NAMES = {H2H: "HostToHost", H2D: "HostToDevice", D2H: "DeviceToHost",
               D2D: "DeviceToDevice", DEFAULT: "Default"}
_CONCAT_TABLE_BYTES = 2 * 1024 * 1024  # cupy/_core/_routines_manipulation.pyx


# --- errors ---------------------------------------------------------------------------

_CUDA_ERRORS = {
    1: ("cudaErrorInvalidValue", "invalid argument"),
    2: ("cudaErrorMemoryAllocation", "out of memory"),
    21: ("cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    217: ("cudaErrorPeerAccessUnsupported", "peer access is not supported between "
          "these two devices"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    401: ("cudaErrorIllegalState", "the operation cannot be performed in the present "
          "state"),
    700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
    704: ("cudaErrorPeerAccessAlreadyEnabled", "peer access is already enabled"),
    900: ("cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is "
          "capturing"),
    901: ("cudaErrorStreamCaptureInvalidated", "operation failed due to a previous "
          "error during capture"),
    905: ("cudaErrorStreamCaptureIsolation", "dependency created on uncaptured work in "
          "another stream"),
    907: ("cudaErrorCapturedEvent", "operation not permitted on an event last recorded "
          "in a capturing stream"),
}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError: `status` and CuPy's 'name: text' message."""

    def __init__(self, status, detail=None):
        self.status = int(status)
        name, text = _CUDA_ERRORS.get(self.status, ("cudaError%d" % status, "error"))
        super().__init__("%s: %s" % (name, text if detail is None else
                                     "%s (%s)" % (text, detail)))


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError."""

    def __init__(self, size, total, limit=0):
        self.size, self.total, self.limit = size, total, limit
        super().__init__("Out of memory allocating {:,} bytes (allocated so far: {:,} "
                         "bytes).".format(size, total))


CUBLAS_HANDLE = 0xB1A5000  # + device: the handle cupy.cuda.device.get_cublas_handle gives


class StandInError(AssertionError):
    """Undefined behaviour on a GPU that the stand-in cannot go on from (a graph
    reading freed memory, a copy from an address no allocation holds)."""


# CuPy functions that multiply float matrices through cuBLAS, which CuPy refuses to call
# while the current stream captures (cupy_backends' cublas.setStream, since CuPy 10);
# float vector dot products (1-D x 1-D) use CuPy's own reduction kernel instead
_CUBLAS_FUNCTIONS = {"cupy.matmul", "cupy.dot", "cupy.tensordot", "cupy.einsum",
                     "cupy.inner", "cupy.ndarray.dot"}


def _refuse_cublas(where, refs):
    if where in _CUBLAS_FUNCTIONS and any(ref.dtype.kind in "efdFD" for ref in refs) \
            and any(len(ref.shape) >= 2 for ref in refs):
        raise NotImplementedError("calling cuBLAS API during stream capture is currently "
                                  "unsupported (%s)" % where)


def _capture_refusal(direction, what):
    # CuPy's own check (cupy/cuda/memory.pyx), raised before CUDA sees the transfer
    return RuntimeError("the current stream is capturing, so %s transfers are disallowed "
                        "(%s)" % (direction, what))


# --- memory ---------------------------------------------------------------------------

class _Block(object):
    """Fake device memory (or a pinned buffer's record): raw bytes and the accesses
    of the streams (kept across reuses by the pool: reuse is a write)."""

    __slots__ = ("raw", "ptr", "size", "device", "w", "r", "origin", "__weakref__")

    def __init__(self, size, device, raw=None, ptr=None):
        if raw is None:
            buf = np.empty(size + ALIGN, np.uint8)
            skip = (-buf.ctypes.data) % ALIGN
            raw = buf[skip:skip + size]
            ptr = raw.ctypes.data
        self.raw, self.ptr, self.size, self.device = raw, ptr, size, device
        self.w = None   # (stream key, time, label) of the last write
        self.r = {}     # stream key -> (time, label) of reads since
        self.origin = ""


class _Memory(object):
    """One allocation (CuPy's Memory): a block lent by a pool until this object dies.
    Arrays and MemoryPointers hold it; graph nodes hold weak references."""

    __slots__ = ("block", "ptr", "size", "device_id", "__weakref__")

    def __init__(self, block, size, device_id):
        self.block, self.size, self.device_id = block, size, device_id
        self.ptr = block.ptr if block is not None else 0


class MemoryPointer(object):
    """cupy.cuda.MemoryPointer: what allocators return (`ptr`, `mem`, `device_id`)."""

    __slots__ = ("mem", "ptr", "device_id")

    def __init__(self, mem, offset=0):
        self.mem, self.device_id = mem, mem.device_id
        self.ptr = mem.ptr + offset if mem.ptr else 0

    def __add__(self, offset):
        return MemoryPointer(self.mem, self.ptr - self.mem.ptr + int(offset))

    def __int__(self):
        return self.ptr

    def __repr__(self):
        return "<fake MemoryPointer 0x%x, device %d>" % (self.ptr, self.device_id)


class PinnedMemoryPointer(bytearray):
    """cupy.cuda.PinnedMemoryPointer: a host buffer (buffer protocol) with `.ptr`;
    numpy views of it keep it alive (np.frombuffer), and copies check it still is."""

    def __init__(self, size):
        super().__init__(size)
        self.ptr = ctypes.addressof((ctypes.c_char * max(size, 1)).from_buffer(self)) \
            if size else 0
        self.block = _Block(size, -1, raw=False, ptr=self.ptr)


class _PoolBase(object):
    """Shared by MemoryPool and MemoryAsyncPool (bound to one FakeCuda)."""

    _fake = None

    def __init__(self, allocator=None):
        self._free = {}      # (device, stream key, rounded size) -> [blocks]
        self._in_use = 0
        self._held = 0
        self._limit = 0

    def malloc(self, size):
        return self._fake._malloc(self, int(size))

    def used_bytes(self):
        return self._in_use

    def free_bytes(self):
        return self._held

    def total_bytes(self):
        return self._in_use + self._held

    def n_free_blocks(self):
        return sum(len(v) for v in self._free.values())

    def free_all_blocks(self, stream=None):
        for blocks in self._free.values():
            for block in blocks:
                self._fake._device_used[block.device] -= block.size
        self._free.clear()
        self._held = 0

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit

    def _release(self, block, key):
        """A block's allocation died: back to its stream's free list (or freed)."""
        fake = self._fake
        if fake._live.get(block.ptr) is not None and fake._live[block.ptr]() is None:
            del fake._live[block.ptr]
            fake._starts = None
        self._in_use -= block.size
        if self._reuses:
            self._free.setdefault(key, []).append(block)
            self._held += block.size
        else:
            fake._device_used[block.device] -= block.size


class _MemoryPool(_PoolBase):
    """cupy.cuda.MemoryPool: stream-ordered reuse of freed blocks."""
    _reuses = True


class _MemoryAsyncPool(_PoolBase):
    """cupy.cuda.MemoryAsyncPool (cudaMallocAsync): here without reuse."""
    _reuses = False


class _NoPool(_PoolBase):
    """What set_allocator(None) selects: plain allocations, no reuse."""
    _reuses = False


# --- operands, nodes, race bookkeeping ---------------------------------------------------

class _Ref(object):
    """An operand of an operation: its memory (weakly), offset, shape, strides and
    dtype. `hot`/`obj`: the numpy view and the array while the call is running."""

    __slots__ = ("mem", "block", "offset", "shape", "strides", "dtype", "hot", "obj",
                 "pinned")

    @classmethod
    def of(cls, arr):
        ref = cls()
        mem, a = arr._mem, arr._a
        ref.mem, ref.block, ref.pinned = weakref.ref(mem), mem.block, False
        ref.offset = (a.__array_interface__["data"][0] - mem.ptr) if mem.block else 0
        ref.shape, ref.strides, ref.dtype = a.shape, a.strides, a.dtype
        ref.hot, ref.obj = a, arr
        return ref

    @classmethod
    def raw(cls, owner, offset, nbytes, pinned):
        ref = cls()
        ref.mem, ref.block, ref.pinned = weakref.ref(owner), owner.block, pinned
        ref.offset, ref.shape, ref.strides = offset, (nbytes,), (1,)
        ref.dtype, ref.hot, ref.obj = np.dtype(np.uint8), None, None
        return ref

    def cool(self):
        self.hot = self.obj = None

    def view(self):
        if self.hot is not None:
            return self.hot
        mem = self.mem()
        if mem is None:
            block = self.block
            raise StandInError(
                "a CUDA graph uses %s freed since it was captured: %d bytes at 0x%x "
                "(first written by %s). On a GPU %s: the graph would read or overwrite "
                "whatever lives there by then. Fix: keep every buffer a graph uses alive "
                "as long as the graph (graphs.py's seg.keep / seg.inputs)." % (
                    "pinned host memory" if self.pinned else "device memory",
                    block.size if block else 0, block.ptr if block else 0,
                    (block.origin if block else "") or "?",
                    "CuPy's pinned pool hands that buffer to other transfers"
                    if self.pinned else "the pool hands that memory to other arrays"))
        if self.block is None:
            return np.empty(self.shape, self.dtype)
        if self.pinned:
            buf = np.frombuffer(mem, np.uint8)
        else:
            buf = self.block.raw
        return np.ndarray(self.shape, self.dtype, buffer=buf, offset=self.offset,
                          strides=self.strides)


def _template(obj, refs, where):
    """`obj` with device arrays replaced by _Refs (collected); host arrays refused."""
    if isinstance(obj, ndarray):
        ref = _Ref.of(obj)
        refs.append(ref)
        return ref
    if isinstance(obj, np.ndarray):
        if obj.ndim > 0 or obj.dtype == object:
            raise TypeError(
                "%s: found a host numpy array of shape %s where CuPy needs a device "
                "array (CuPy raises TypeError: Unsupported type <class 'numpy.ndarray'>). "
                "Fix: cupy.asarray(x) first." % (where, obj.shape))
        return obj.copy()  # a 0-d host value: baked
    if type(obj) in (list, tuple):
        return type(obj)(_template(o, refs, where) for o in obj)
    if type(obj) is dict:
        return {k: _template(v, refs, where) for k, v in obj.items()}
    return obj


def _resolve(obj):
    if isinstance(obj, _Ref):
        return obj.view()
    if type(obj) in (list, tuple):
        return type(obj)(_resolve(o) for o in obj)
    if type(obj) is dict:
        return {k: _resolve(v) for k, v in obj.items()}
    return obj


def _pick(value, path):
    for k in path:
        value = value[k]
    return value


class _Node(object):
    """One operation on a stream: fn(*args, **kwargs) on the operands' views; `outs`
    (with `paths` into fn's result) are the fresh buffers it fills, `writes` every
    buffer it writes (fn itself writes the in-place ones)."""

    __slots__ = ("label", "fn", "args", "kwargs", "reads", "writes", "outs", "paths")

    def __init__(self, label, fn, args, kwargs, reads, writes, outs=(), paths=()):
        self.label, self.fn, self.args, self.kwargs = label, fn, args, kwargs
        self.reads, self.writes, self.outs, self.paths = reads, writes, outs, paths

    def run(self, fake, stream):
        """Do the work now, on `stream` (eagerly, or as a graph's node)."""
        args, kwargs = _resolve(self.args), _resolve(self.kwargs)
        targets = [ref.view() for ref in self.outs]
        fake._access(stream, self.reads, self.writes, self.label)
        with np.errstate(all="ignore"):
            result = self.fn(*args, **kwargs)
        for path, target in zip(self.paths, targets):
            leaf = np.asarray(_pick(result, path))
            if leaf.shape != target.shape:
                raise StandInError("%s: a graph replay made a result of shape %s where "
                                   "the capture made %s (a data-dependent shape, which "
                                   "CuPy would have read back)" % (self.label,
                                                                   leaf.shape,
                                                                   target.shape))
            np.copyto(target, leaf, casting="unsafe")


def _merge(into, other):
    for k, v in other.items():
        if into.get(k, 0) < v:
            into[k] = v


# --- devices, streams, events, graphs --------------------------------------------------

class _Device(object):
    """cupy.cuda.Device (bound to one FakeCuda)."""

    _fake = None
    compute_capability = "90"

    def __init__(self, device=None):
        fake = self._fake
        if device is None:
            device = fake._device()
        elif isinstance(device, _Device):
            device = device.id
        device = int(device)
        if not 0 <= device < fake.device_count:
            raise CUDARuntimeError(101, "device %d of %d" % (device, fake.device_count))
        self.id = device

    def __enter__(self):
        tls = self._fake._tls
        tls.device_stack = getattr(tls, "device_stack", [])
        tls.device_stack.append(self._fake._device())
        tls.device = self.id
        return self

    def __exit__(self, *exc):
        tls = self._fake._tls
        tls.device = tls.device_stack.pop()
        return False

    def use(self):
        self._fake._tls.device = self.id

    def synchronize(self):
        self._fake._device_synchronize(self.id)

    def __int__(self):
        return self.id

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def __repr__(self):
        return "<CUDA Device %d (fake)>" % self.id


class _Capture(object):
    def __init__(self, stream):
        self.stream, self.nodes, self.invalid = stream, [], None


class _Stream(object):
    """cupy.cuda.Stream (bound to one FakeCuda); `vc` its vector clock."""

    _fake = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None,
                 ptr=0, _device=None):
        fake = self._fake
        if ptr:
            raise NotImplementedError("fakecuda: external streams are not emulated")
        if null and _device is None:
            raise NotImplementedError("fakecuda: use cupy.cuda.Stream.null or "
                                      "get_current_stream() for the default stream")
        self.dev = fake._device() if _device is None else _device
        self.device_id = -1 if null else self.dev  # (CuPy's null stream: -1)
        self.null = null
        self.non_blocking = bool(non_blocking)
        self.key = next(fake._keys)
        self.ptr = 0 if null else fake._handle()
        self.vc = {}
        self.capture = None
        if not null:
            fake._stream_ptrs[self.ptr] = weakref.ref(self)
        fake._streams.add(self)

    def __repr__(self):
        return "<fake Stream %s (device %d%s)>" % (
            "null" if self.null else "#%d" % self.key, self.dev,
            ", non-blocking" if self.non_blocking else "")

    def __eq__(self, other):
        return isinstance(other, _Stream) and other.ptr == self.ptr and (
            self.ptr or other.dev == self.dev)

    def __hash__(self):
        return hash((self.ptr, self.dev))

    def __enter__(self):
        fake = self._fake
        current = fake._device()
        if self.null:  # (CuPy's null stream belongs to whichever device is current)
            stream = fake._null[current]
        elif self.dev != current:
            raise RuntimeError("The device that the stream is created on (%d) does not "
                               "match with the current device (%d)" % (self.dev, current))
        else:
            stream = self
        tls = fake._tls_state()
        tls.stream_stack.append((current, tls.current.get(current)))
        tls.current[current] = stream
        return stream

    def __exit__(self, *exc):
        tls = self._fake._tls_state()
        device, previous = tls.stream_stack.pop()
        tls.current[device] = previous
        return False

    def use(self):
        fake = self._fake
        if self.dev != fake._device():
            raise RuntimeError("The device that the stream is created on (%d) does not "
                               "match with the current device (%d)"
                               % (self.dev, fake._device()))
        fake._tls_state().current[self.dev] = self
        return self

    @property
    def done(self):
        self._refuse_if_capturing("cudaStreamQuery")
        _merge(self._fake._host_vc, self.vc)
        return True

    def _refuse_if_capturing(self, what):
        if self.capture is not None:
            self.capture.invalid = self.capture.invalid or what
            raise CUDARuntimeError(900, what)

    def synchronize(self):
        self._refuse_if_capturing("cudaStreamSynchronize")
        fault = self._fake._fault
        if fault is not None and not self.null:
            self._fake._fault = None
            raise CUDARuntimeError(fault, "injected by the test")
        _merge(self._fake._host_vc, self.vc)

    def wait_event(self, event):
        if self.capture is not None:
            if event.captured is not self.capture:
                self.capture.invalid = self.capture.invalid or "cudaStreamWaitEvent"
                raise CUDARuntimeError(905, "the capturing stream waits for an event "
                                            "recorded outside the capture")
            return
        if event.captured is not None and event.captured.stream.capture is event.captured:
            raise NotImplementedError("fakecuda: a stream joining a capture through an "
                                      "event (fork/join capture) is not emulated")
        _merge(self.vc, event.vc)

    def record(self, event=None):
        if event is None:
            event = self._fake.cuda.Event()
        event.record(self)
        return event

    def begin_capture(self, mode=None):
        if self.null:
            raise CUDARuntimeError(900, "the legacy default stream cannot capture")
        if self.capture is not None:
            raise CUDARuntimeError(401, "the stream is capturing already")
        self.capture = _Capture(self)

    def end_capture(self):
        capture = self.capture
        if capture is None:
            raise CUDARuntimeError(401, "the stream is not capturing")
        self.capture = None
        if capture.invalid is not None:
            raise CUDARuntimeError(901, "invalidated by %s" % capture.invalid)
        fake = self._fake
        fake.captures += 1
        return _Graph(fake, capture.nodes)

    def is_capturing(self):
        return self.capture is not None


class _Event(object):
    """cupy.cuda.Event (bound to one FakeCuda): the recording stream's clock."""

    _fake = None

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        fake = self._fake
        self.device_id = fake._device()
        self.ptr = fake._handle()
        self.vc = {}
        self.captured = None

    def record(self, stream=None):
        fake = self._fake
        stream = fake.get_current_stream() if stream is None else stream
        if stream.dev != self.device_id:
            raise CUDARuntimeError(400, "an event of device %d recorded on a stream of "
                                        "device %d" % (self.device_id, stream.dev))
        if stream.capture is not None:
            self.captured = stream.capture
            return
        self.captured = None
        vc = stream.vc
        _merge(vc, fake._host_vc)
        self.vc = dict(vc)

    def _refuse_if_captured(self, what):
        if self.captured is not None:
            if self.captured.stream.capture is self.captured:
                self.captured.invalid = self.captured.invalid or what
            raise CUDARuntimeError(907, what)

    def synchronize(self):
        self._refuse_if_captured("cudaEventSynchronize")
        _merge(self._fake._host_vc, self.vc)

    @property
    def done(self):
        self._refuse_if_captured("cudaEventQuery")
        _merge(self._fake._host_vc, self.vc)
        return True


class _Graph(object):
    """cupy.cuda.graph.Graph: the nodes of one capture, replayed by launch()."""

    def __init__(self, fake, nodes):
        self.fake, self.nodes, self.launches = fake, nodes, 0

    def launch(self, stream=None):
        fake = self.fake
        stream = fake.get_current_stream() if stream is None else stream
        if stream.capture is not None:
            raise NotImplementedError("fakecuda: launching a graph into a capture (a "
                                      "child graph) is not emulated")
        for node in self.nodes:
            try:
                node.run(fake, stream)
            except StandInError as exc:
                fake.problems.append("graph launch: %s" % exc)
                raise
        self.launches += 1
        fake.graph_launches += 1

    def upload(self, stream=None):
        pass


# --- arrays ---------------------------------------------------------------------------

_INPLACE_METHODS = {"sort", "put", "partition", "resize", "setfield", "itemset", "byteswap",
                    "setflags", "dump", "tofile", "tobytes", "tostring", "dumps"}


class ndarray(NDArrayOperatorsMixin):
    """cupy.ndarray on fake device memory (see the module docstring)."""

    __slots__ = ("_a", "_mem", "_fake", "__weakref__")
    __array_priority__ = 100.0

    def __init__(self, *args, **kwargs):
        raise TypeError("fakecuda: make arrays with cupy.empty / zeros / asarray "
                        "(cupy.ndarray(shape, dtype, memptr) is not emulated)")

    @classmethod
    def _make(cls, fake, mem, a):
        self = object.__new__(cls)
        self._fake, self._mem, self._a = fake, mem, a
        return self

    # --- attributes -------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    base = property(lambda self: None)

    @property
    def T(self):
        return self.transpose()

    @property
    def data(self):
        mem = self._mem
        if not mem.ptr:
            return MemoryPointer(mem, 0)
        return MemoryPointer(mem, self._a.__array_interface__["data"][0] - mem.ptr)

    @property
    def device(self):
        return self._fake.cuda.Device(self._mem.device_id)

    def __repr__(self):
        return "fakecuda.ndarray(shape=%s, dtype=%s, device=%d)" % (
            self.shape, self.dtype, self._mem.device_id)

    __str__ = __repr__

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __len__(self):
        if not self._a.ndim:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if not self._a.ndim:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        raise TypeError("fakecuda: pickling device arrays is not emulated")

    # --- reading back -----------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        self._fake._read_back([self], "cupy.ndarray.get", stream)
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, copy=True, order=order)

    def set(self, arr, stream=None):
        self._fake._write_from_host(self, np.asarray(arr), "cupy.ndarray.set", stream)

    def item(self, *args):
        self._fake._read_back([self], "cupy.ndarray.item")
        return self._a.item(*args)

    def tolist(self):
        self._fake._read_back([self], "cupy.ndarray.tolist")
        return self._a.tolist()

    def _scalar(self, convert):
        if self._a.size != 1:
            raise TypeError("only length-1 arrays can be converted to Python scalars")
        self._fake._read_back([self], "conversion of a device array to a Python scalar")
        return convert(self._a.reshape(()).item())

    def __int__(self):
        return self._scalar(int)

    def __float__(self):
        return self._scalar(float)

    def __complex__(self):
        return self._scalar(complex)

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        return self._scalar(bool)

    # --- numpy protocols --------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fake = self._fake
        where = "cupy.%s%s" % (ufunc.__name__, "" if method == "__call__" else "." + method)
        out = kwargs.get("out")
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            for o in outs:
                if not isinstance(o, ndarray):
                    raise TypeError("%s: out must be a cupy.ndarray, found %s"
                                    % (where, type(o).__name__))
            kwargs["out"] = outs
            fake._inplace(where, getattr(ufunc, method), inputs, kwargs, list(outs))
            return outs[0] if len(outs) == 1 else outs
        if method == "at":
            fake._inplace(where, ufunc.at, inputs, kwargs, [inputs[0]])
            return None
        return fake._compute(where, getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return self._fake._function(func, args, kwargs)

    # --- methods with CuPy's own behaviour ----------------------------------------------
    def copy(self, order="C"):
        return self._fake._compute("cupy.ndarray.copy", _np_copy, (self, order), {})

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return self._fake._compute("cupy.ndarray.astype", _np_astype,
                                   (self, np.dtype(dtype), order), {})

    def fill(self, value):
        self._fake._fill(self, value, "cupy.ndarray.fill")

    def take(self, indices, axis=None, out=None):
        return self._fake.take(self, indices, axis, out)

    def argsort(self, axis=-1, kind=None):
        return self._fake.argsort(self, axis)

    def nonzero(self):
        return self._fake.nonzero(self)

    def __getitem__(self, key):
        return self._fake._getitem(self, key)

    def __setitem__(self, key, value):
        self._fake._setitem(self, key, value)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "_a", "_mem", "_fake"):
            raise AttributeError("'cupy.ndarray' object has no attribute %r" % name)
        attr = getattr(np.ndarray, name, None)
        if attr is None:
            raise AttributeError("'cupy.ndarray' object has no attribute %r" % name)
        if name in _INPLACE_METHODS:
            raise AttributeError("fakecuda: cupy.ndarray.%s is not emulated" % name)
        fake = self._fake
        if callable(attr):
            def method(*args, **kwargs):
                return fake._compute("cupy.ndarray." + name, _method(name), (self,) + args,
                                     kwargs)
            return method
        return fake._compute("cupy.ndarray." + name, _attribute(name), (self,), {})


ndarray.__module__ = "cupy"  # graphnet recognises device values by the type's module


def _np_copy(a, order):
    return a.copy(order)


def _np_astype(a, dtype, order):
    return a.astype(dtype, order=order)


@functools.lru_cache(maxsize=None)
def _method(name):
    def call(a, *args, **kwargs):
        return getattr(a, name)(*args, **kwargs)
    return call


@functools.lru_cache(maxsize=None)
def _attribute(name):
    return lambda a: getattr(a, name)


def _setitem(a, key, value):
    a[_wrapped_key(key, a.shape)] = value


def _getitem(a, key):
    return a[_wrapped_key(key, a.shape)]


def _wrapped_key(key, shape):
    """Integer index arrays wrapped around each axis (CuPy's rule)."""
    explicit = sum((k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else 1)
                   for k in key if k is not None and k is not Ellipsis)
    out, dim = [], 0
    for k in key:
        if k is None:
            out.append(k)
        elif k is Ellipsis:
            dim += len(shape) - explicit
            out.append(k)
        elif isinstance(k, np.ndarray) and k.dtype.kind in "iu":
            n = shape[dim] if dim < len(shape) else 0
            out.append(np.mod(k, n) if n else k)
            dim += 1
        elif isinstance(k, np.ndarray) and k.dtype == bool:
            out.append(k)
            dim += k.ndim
        else:
            out.append(k)
            dim += 1
    return tuple(out)


def _copy_bytes(dst, src):
    dst[...] = src


def _filler(value):
    def fill(a, *device_value):
        np.copyto(a, device_value[0] if device_value else value, casting="unsafe")
    return fill


# --- the module -------------------------------------------------------------------------

# numpy functions that return host metadata, never device data
_METADATA = {"shape", "ndim", "size", "result_type", "can_cast", "min_scalar_type",
             "iscomplexobj", "isrealobj", "may_share_memory", "shares_memory", "isscalar",
             "iterable", "common_type", "broadcast_shapes"}
# in-place numpy functions the stand-in does not route through streams
_REFUSED = {"put", "place", "putmask", "fill_diagonal", "put_along_axis", "save", "savez",
            "savetxt", "tofile"}


class _Namespace(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)


class FakeCuda(types.ModuleType):
    """The cupy module stand-in. devices: physical GPUs; peer: whether they can access
    each other's memory; capacity: bytes per device; schedule: hostgrid's thread order
    for kernels that do not synchronize (None, "reverse", an int seed, "threads");
    doubles: the synchronizing kernels run as their numpy doubles (DOUBLES).

    problems: every race, and what raised StandInError, as sentences.
    launches: kernel names in launch order (eager and captured; replays not counted).
    captures, graph_launches: counts."""

    __version__ = "13.99.0+fakecuda"
    ndarray = ndarray

    def __init__(self, devices=1, peer=True, capacity=16 << 30, schedule=None,
                 doubles=True):
        super().__init__("cupy")
        self.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
        self.device_count, self.peer, self.capacity = int(devices), bool(peer), capacity
        self.schedule, self.doubles = schedule, doubles
        self.problems, self.launches = [], []
        self.captures = self.graph_launches = 0
        self.modules = {}
        self._tls = threading.local()
        self._keys = itertools.count(1)
        self._handles = itertools.count(1)
        self._host_vc = {}
        self._streams = weakref.WeakSet()
        self._stream_ptrs = {}  # ptr -> weakref(stream)
        self._live = {}      # block ptr -> weakref(_Memory)
        self._pinned = {}    # ptr -> weakref(PinnedMemoryPointer)
        self._starts = None  # sorted (ptr, table) for address look-ups
        self._device_used = [0] * self.device_count
        self._peers = set()  # (device, peer) pairs with access enabled
        self._functions = {}
        self._fault = None
        self.cuda = self._make_cuda()
        self._null = [self.cuda.Stream(null=True, _device=d)
                      for d in range(self.device_count)]
        self.cuda.Stream.null = self._null[0]
        self._default_pool = self.cuda.MemoryPool()
        self._allocator = self._default_pool.malloc
        no_pool = type("_NoPool", (_NoPool,), {"_fake": self})()
        self._plain_malloc = lambda size: no_pool.malloc(size)  # (no __self__: no pool)

    def _make_cuda(self):
        bound = {"_fake": self}
        cuda = _Namespace("cupy.cuda")
        cuda.Device = type("Device", (_Device,), bound)
        cuda.Stream = type("Stream", (_Stream,), bound)
        cuda.ExternalStream = cuda.Stream
        cuda.Event = type("Event", (_Event,), bound)
        cuda.MemoryPool = type("MemoryPool", (_MemoryPool,), bound)
        cuda.MemoryAsyncPool = type("MemoryAsyncPool", (_MemoryAsyncPool,), bound)
        cuda.MemoryPointer = MemoryPointer
        cuda.PinnedMemoryPointer = PinnedMemoryPointer
        cuda.get_current_stream = self.get_current_stream
        cuda.get_elapsed_time = lambda start, end: 0.0
        cuda.alloc_pinned_memory = self._alloc_pinned
        cuda.get_allocator = self._get_allocator
        cuda.set_allocator = self._set_allocator
        cuda.using_allocator = self._using_allocator
        cuda.alloc = self._alloc
        cuda.is_available = lambda: True
        cuda.get_device_id = self._device
        device = cuda.device = _Namespace("cupy.cuda.device")
        device.get_cublas_handle = lambda: CUBLAS_HANDLE + self._device()
        memory = cuda.memory = _Namespace("cupy.cuda.memory")
        for name in ("MemoryPool", "MemoryAsyncPool", "MemoryPointer", "get_allocator",
                     "set_allocator", "using_allocator", "alloc"):
            setattr(memory, name, getattr(cuda, name))
        memory.OutOfMemoryError = OutOfMemoryError
        runtime = cuda.runtime = _Namespace("cupy.cuda.runtime")
        runtime.CUDARuntimeError = CUDARuntimeError
        for name, value in (("memcpyHostToHost", H2H), ("memcpyHostToDevice", H2D),
                            ("memcpyDeviceToHost", D2H), ("memcpyDeviceToDevice", D2D),
                            ("memcpyDefault", DEFAULT), ("streamCaptureModeGlobal", 0),
                            ("streamCaptureModeThreadLocal", 1),
                            ("streamCaptureModeRelaxed", 2)):
            setattr(runtime, name, value)
        runtime.getDeviceCount = lambda: self.device_count
        runtime.getDevice = self._device
        runtime.setDevice = lambda device: cuda.Device(device).use()
        runtime.memcpyAsync = self._memcpy_async
        runtime.memcpyPeerAsync = self._memcpy_peer_async
        runtime.memGetInfo = self._mem_get_info
        runtime.deviceCanAccessPeer = self._can_access_peer
        runtime.deviceEnablePeerAccess = self._enable_peer_access
        runtime.deviceSynchronize = lambda: self._device_synchronize(self._device())
        runtime.streamIsCapturing = lambda ptr: self._stream_of(ptr).capture is not None
        runtime.runtimeGetVersion = lambda: 12080
        runtime.driverGetVersion = lambda: 12080
        runtime.is_hip = False
        return cuda

    def __repr__(self):
        return "<fakecuda: CuPy stand-in, %d fake GPU(s), not a GPU>" % self.device_count

    def inject_fault(self, status=700):
        """The next synchronize() of a non-default stream raises CUDARuntimeError(status)
        (an asynchronous kernel fault as CUDA reports it; once, not sticky)."""
        self._fault = status

    # --- threads: current device and stream -------------------------------------------
    def _device(self):
        return getattr(self._tls, "device", 0)

    def _tls_state(self):
        tls = self._tls
        if not hasattr(tls, "current"):
            tls.current, tls.stream_stack = {}, []
        return tls

    def get_current_stream(self, device_id=-1):
        device = self._device() if device_id is None or device_id < 0 else device_id
        stream = self._tls_state().current.get(device)
        return self._null[device] if stream is None else stream

    def _handle(self):
        return 0x7F0000000000 + 0x100 * next(self._handles)

    def _stream_of(self, ptr):
        if not ptr:
            return self._null[self._device()]
        ref = self._stream_ptrs.get(int(ptr))
        stream = ref() if ref is not None else None
        if stream is None:
            raise CUDARuntimeError(400, "no live stream 0x%x" % ptr)
        return stream

    def _device_synchronize(self, device):
        for stream in list(self._streams):
            if stream.dev == device:
                stream._refuse_if_capturing("cudaDeviceSynchronize")
        for stream in list(self._streams):
            if stream.dev == device:
                _merge(self._host_vc, stream.vc)

    # --- ordering and races -----------------------------------------------------------
    def _begin(self, stream):
        """The host enqueues an operation on `stream`: its time on the stream."""
        vc = stream.vc
        _merge(vc, self._host_vc)
        if not stream.non_blocking:  # the legacy default stream's implicit ordering
            if stream.null:
                for other in list(self._streams):
                    if (other is not stream and not other.non_blocking
                            and other.dev == stream.dev):
                        _merge(vc, other.vc)
            else:
                _merge(vc, self._null[stream.dev].vc)
        t = vc.get(stream.key, 0) + 1
        vc[stream.key] = t
        return t

    def _access(self, stream, reads, writes, label):
        t = self._begin(stream)
        key, vc = stream.key, stream.vc
        written = {id(ref.block): ref.block for ref in writes if ref.block is not None}
        for ref in reads:
            block = ref.block
            if block is None or id(block) in written:
                continue
            w = block.w
            if w is not None and w[0] != key and vc.get(w[0], 0) < w[1]:
                self._race(block, label, "reads", stream, w[2], "writes", w[0])
            block.r[key] = (t, label)
        for block in written.values():
            w = block.w
            if w is not None and w[0] != key and vc.get(w[0], 0) < w[1]:
                self._race(block, label, "writes", stream, w[2], "writes", w[0])
            for other, (when, what) in block.r.items():
                if other != key and vc.get(other, 0) < when:
                    self._race(block, label, "writes", stream, what, "reads", other)
            block.w = (key, t, label)
            block.r = {}
            if not block.origin:
                block.origin = label

    def _race(self, block, label, verb, stream, other_label, other_verb, other_key):
        others = [s for s in list(self._streams) if s.key == other_key]
        self.problems.append(
            "race: %s %s %s (%d bytes at 0x%x, first written by %s) on %r, but %s on %r "
            "%s it and nothing orders the two (no wait_event on an event recorded after "
            "it, no host synchronization in between)\n  enqueued at: %s" % (
                label, verb, "device memory" if block.raw is not False else "pinned memory",
                block.size, block.ptr, block.origin or "?", stream, other_label,
                others[0] if others else "stream #%s" % other_key, other_verb,
                _where()))

    def _read_back(self, arrays, what, stream=None):
        """A device -> host transfer of `arrays` on `stream` (default: current), then the
        host waits for it."""
        stream = self.get_current_stream() if stream is None else stream
        if stream.capture is not None:
            raise _capture_refusal("D2H", what)
        refs = [_Ref.of(a) for a in arrays]
        self._access(stream, refs, [], what)
        for ref in refs:
            ref.cool()
        _merge(self._host_vc, stream.vc)

    def _write_from_host(self, target, host, what, stream=None):
        stream = self.get_current_stream() if stream is None else stream
        if stream.capture is not None:
            raise _capture_refusal("H2D", what)
        ref = _Ref.of(target)
        self._access(stream, [], [ref], what)
        ref.cool()
        np.copyto(target._a, host, casting="unsafe")

    # --- memory -------------------------------------------------------------------------
    def _malloc(self, pool, size):
        device = self._device()
        if size <= 0:
            return MemoryPointer(_Memory(None, 0, device))
        stream = self.get_current_stream()
        rounded = -(-size // ROUND) * ROUND
        key = (device, stream.key, rounded)
        free = pool._free.get(key)
        if free:
            block = free.pop()
            pool._held -= rounded
        else:
            if pool._limit and pool.total_bytes() + rounded > pool._limit:
                raise OutOfMemoryError(size, pool.total_bytes(), pool._limit)
            if self._device_used[device] + rounded > self.capacity:
                pool.free_all_blocks()
                if self._device_used[device] + rounded > self.capacity:
                    raise OutOfMemoryError(size, pool.total_bytes())
            block = _Block(rounded, device)
            self._device_used[device] += rounded
        block.raw.fill(POISON)
        block.origin = ""
        pool._in_use += rounded
        mem = _Memory(block, size, device)
        self._live[block.ptr] = weakref.ref(mem)
        self._starts = None
        weakref.finalize(mem, pool._release, block, key).atexit = False
        return MemoryPointer(mem)

    def _get_allocator(self):
        stack = getattr(self._tls, "allocators", None)
        return stack[-1] if stack else self._allocator

    def _set_allocator(self, allocator=None):
        self._allocator = self._plain_malloc if allocator is None else allocator

    @contextlib.contextmanager
    def _using_allocator(self, allocator=None):
        stack = getattr(self._tls, "allocators", None)
        if stack is None:
            stack = self._tls.allocators = []
        stack.append(self._plain_malloc if allocator is None else allocator)
        try:
            yield
        finally:
            stack.pop()

    def _alloc(self, size):
        return self._get_allocator()(int(size))

    def get_default_memory_pool(self):
        return self._default_pool

    def get_default_pinned_memory_pool(self):
        return types.SimpleNamespace(free_all_blocks=lambda: None, n_free_blocks=lambda: 0,
                                     total_bytes=lambda: 0, used_bytes=lambda: 0)

    def _alloc_pinned(self, size):
        memory = PinnedMemoryPointer(int(size))
        if memory.ptr:
            self._pinned[memory.ptr] = weakref.ref(memory)
            self._starts = None
            weakref.finalize(memory, self._pinned_freed, memory.ptr).atexit = False
        return memory

    def _pinned_freed(self, ptr):
        ref = self._pinned.get(ptr)
        if ref is not None and ref() is None:
            del self._pinned[ptr]
            self._starts = None

    def _mem_get_info(self):
        device = self._device()
        return self.capacity - self._device_used[device], self.capacity

    def _can_access_peer(self, device, peer):
        for d in (device, peer):
            if not 0 <= int(d) < self.device_count:
                raise CUDARuntimeError(101)
        return 1 if self.peer and device != peer else 0

    def _enable_peer_access(self, peer):
        device = self._device()
        if not self._can_access_peer(device, peer):
            raise CUDARuntimeError(217)
        if (device, peer) in self._peers:
            raise CUDARuntimeError(704)
        self._peers.add((device, peer))

    def _find(self, ptr, nbytes, what):
        """(owner, offset, pinned) of the live allocation holding [ptr, ptr + nbytes)."""
        if self._starts is None:
            starts = [(p, False) for p, ref in self._live.items() if ref() is not None]
            starts += [(p, True) for p, ref in self._pinned.items() if ref() is not None]
            starts.sort()
            self._starts = ([p for p, _ in starts], [pinned for _, pinned in starts])
        ptrs, pinned = self._starts
        k = bisect.bisect_right(ptrs, ptr) - 1
        if k >= 0:
            table = self._pinned if pinned[k] else self._live
            ref = table.get(ptrs[k])
            owner = ref() if ref is not None else None
            size = (len(owner) if pinned[k] else owner.size) if owner is not None else 0
            if owner is not None and ptr + nbytes <= ptrs[k] + size:
                return owner, ptr - ptrs[k], pinned[k]
        message = ("%s: [0x%x, +%d bytes) lies in no live device allocation nor pinned "
                   "buffer: memory freed (or never allocated), or pageable host memory "
                   "(a real GPU copies that synchronously; graphnet uses pinned buffers)"
                   % (what, ptr, nbytes))
        self.problems.append(message)
        raise StandInError(message)

    def _memcpy_async(self, dst, src, size, kind, stream):
        self._memcpy(int(dst), None, int(src), None, int(size), int(kind),
                     self._stream_of(stream), "memcpyAsync")

    def _memcpy_peer_async(self, dst, dst_device, src, src_device, size, stream):
        self._memcpy(int(dst), int(dst_device), int(src), int(src_device), int(size), D2D,
                     self._stream_of(stream), "memcpyPeerAsync")

    def _memcpy(self, dst, dst_device, src, src_device, size, kind, stream, name):
        if size == 0:
            return
        what = "%s(%s, %d bytes)" % (name, _KIND_NAMES.get(kind, kind), size)
        d_owner, d_off, d_pinned = self._find(dst, size, what + " destination")
        s_owner, s_off, s_pinned = self._find(src, size, what + " source")
        want = {H2D: (True, False), D2H: (False, True), D2D: (False, False),
                H2H: (True, True)}.get(kind)
        if kind not in _KIND_NAMES or (want is not None and want != (s_pinned, d_pinned)):
            raise CUDARuntimeError(21, "%s between %s and %s memory" % (
                what, "host" if s_pinned else "device", "host" if d_pinned else "device"))
        for owner, pinned, device in ((d_owner, d_pinned, dst_device),
                                      (s_owner, s_pinned, src_device)):
            if device is not None and (pinned or owner.device_id != device):
                raise CUDARuntimeError(1, "%s: the memory is not on device %d"
                                       % (what, device))
        dref = _Ref.raw(d_owner, d_off, size, d_pinned)
        sref = _Ref.raw(s_owner, s_off, size, s_pinned)
        self._enqueue(_Node(what, _copy_bytes, (dref, sref), {}, [sref], [dref]), stream)

    # --- operations ---------------------------------------------------------------------
    def _enqueue(self, node, stream, dry_run=None):
        """Run `node` now on `stream`, or record it when the stream captures (after
        `dry_run()`, which raises what the operation would raise at enqueue time)."""
        if stream.capture is not None:
            if dry_run is not None:
                dry_run()
            stream.capture.nodes.append(node)
        else:
            node.run(self, stream)

    def _check_devices(self, refs, where):
        device = self._device()
        for ref in refs:
            mem = ref.obj._mem if ref.obj is not None else None
            if mem is not None and mem.device_id != device and mem.block is not None \
                    and (device, mem.device_id) not in self._peers:
                raise ValueError(
                    "%s: the device where the array resides (%d) is different from the "
                    "current device (%d). Peer access is unavailable between these "
                    "devices." % (where, mem.device_id, device))

    def _new(self, shape, dtype, order="C"):
        dtype = np.dtype(dtype)
        if dtype == object:
            raise ValueError("Unsupported dtype object")
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
        count = 1
        for d in shape:
            if d < 0:
                raise ValueError("negative dimensions are not allowed")
            count *= d
        pointer = self._get_allocator()(count * dtype.itemsize)
        mem = pointer.mem
        if mem.block is None:
            a = np.empty(shape, dtype, order=order)
        else:
            a = np.ndarray(shape, dtype, buffer=mem.block.raw, offset=pointer.ptr - mem.ptr,
                           order=order)
        return ndarray._make(self, mem, a)

    def _compute(self, where, fn, args, kwargs):
        """fn(*args, **kwargs) with numpy views for the device arrays: results that are
        views of an input stay views; new data lands in fresh device arrays, written
        now or by the capture's graph. An out= device array makes it an in-place op."""
        out = kwargs.get("out") if kwargs else None
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            if not all(isinstance(o, ndarray) for o in outs):
                raise TypeError("%s: out must be a cupy.ndarray" % where)
            self._inplace(where, fn, args, kwargs, list(outs))
            return out
        refs = []
        targs = _template(tuple(args), refs, where)
        tkw = _template(dict(kwargs), refs, where) if kwargs else {}
        outs = []
        try:
            self._check_devices(refs, where)
            stream = self.get_current_stream()
            capturing = stream.capture is not None
            if capturing:
                _refuse_cublas(where, refs)
            with np.errstate(all="ignore"):
                result = fn(*_resolve(targs), **_resolve(tkw))
            wrapped = self._wrap(result, refs, outs, (), capturing)
            if outs:
                node = _Node(where, fn, targs, tkw, refs, [r for _, r in outs],
                             [r for _, r in outs], [p for p, _ in outs])
                if capturing:
                    stream.capture.nodes.append(node)
                else:  # (computed already: the outputs hold the values)
                    self._access(stream, refs, node.writes, where)
            return wrapped
        finally:
            for ref in refs:
                ref.cool()
            for _, ref in outs:
                ref.cool()

    def _wrap(self, value, refs, outs, path, capturing):
        if isinstance(value, (np.ndarray, np.generic)):
            value = np.asarray(value) if isinstance(value, np.generic) else value
            if value.size and isinstance(value, np.ndarray):
                for ref in refs:
                    if ref.hot is value:
                        return ref.obj
                address = value.__array_interface__["data"][0]
                for ref in refs:
                    block = ref.block
                    if block is not None and block.ptr <= address < block.ptr + block.size:
                        return ndarray._make(self, ref.obj._mem, value)
            order = "F" if value.ndim > 1 and value.flags.f_contiguous and \
                not value.flags.c_contiguous else "C"
            out = self._new(value.shape, value.dtype, order)
            if value.size:
                outs.append((path, _Ref.of(out)))
                if not capturing:
                    out._a[...] = value
            return out
        if type(value) is tuple or type(value) is list:
            return type(value)(self._wrap(v, refs, outs, path + (k,), capturing)
                               for k, v in enumerate(value))
        return value

    def _inplace(self, where, fn, args, kwargs, writes):
        """fn(*args, **kwargs) writes into the device arrays `writes` (among args)."""
        refs = []
        targs = _template(tuple(args), refs, where)
        tkw = _template(dict(kwargs), refs, where) if kwargs else {}
        try:
            self._check_devices(refs, where)
            if self.get_current_stream().capture is not None:
                _refuse_cublas(where, refs)
            written = {id(w) for w in writes}
            wrefs = [r for r in refs if id(r.obj) in written]
            reads = [r for r in refs if id(r.obj) not in written]
            node = _Node(where, fn, targs, tkw, reads, wrefs)
            stream = self.get_current_stream()

            def dry_run():  # the same call on scratch copies of the written buffers
                scratch = {id(r): np.empty_like(r.hot) for r in wrefs}

                def swap(obj):
                    if isinstance(obj, _Ref):
                        return scratch.get(id(obj), obj.hot)
                    if type(obj) in (list, tuple):
                        return type(obj)(swap(o) for o in obj)
                    if type(obj) is dict:
                        return {k: swap(v) for k, v in obj.items()}
                    return obj
                with np.errstate(all="ignore"):
                    fn(*swap(targs), **swap(tkw))
            self._enqueue(node, stream, dry_run)
        finally:
            for ref in refs:
                ref.cool()

    def _fill(self, arr, value, where):
        if isinstance(value, ndarray):
            self._inplace(where, _filler(None), (arr, value), {}, [arr])
        else:
            self._inplace(where, _filler(np.asarray(value).item()
                                         if np.ndim(value) == 0 else value), (arr,), {},
                          [arr])

    def _upload(self, value, dtype, where):
        """A host value as a device array (cupy.asarray of numpy data)."""
        if isinstance(value, (list, tuple)) and any(isinstance(v, ndarray) for v in value):
            out = self.stack([self.asarray(v) for v in value])
            return out if dtype is None else out.astype(dtype, copy=False)
        host = np.asarray(value, dtype=dtype)
        if host.dtype == object:
            raise ValueError("Unsupported dtype object")
        out = self._new(host.shape, host.dtype)
        if host.ndim == 0:  # CuPy fills a 0-d array: a kernel, no transfer
            self._fill(out, host[()], where)
            return out
        self._write_from_host(out, host, where)
        return out

    def _read_back_refs(self, args, where):
        refs = []
        _template(args, refs, where)
        arrays = [ref.obj for ref in refs]
        for ref in refs:
            ref.cool()
        if arrays:
            self._read_back(arrays, where)

    # --- kernels ------------------------------------------------------------------------
    def RawModule(self, code=None, options=(), name_expressions=None, **unsupported):
        return fakecupy.raw_module(self, _RawModule, code, options, name_expressions,
                                   unsupported)

    # --- creation -----------------------------------------------------------------------
    def empty(self, shape, dtype=float, order="C"):
        return self._new(shape, dtype, order)

    def zeros(self, shape, dtype=float, order="C"):
        return self.full(shape, 0, dtype, order)

    def ones(self, shape, dtype=float, order="C"):
        return self.full(shape, 1, dtype, order)

    def full(self, shape, fill_value, dtype=None, order="C"):
        if dtype is None:
            dtype = fill_value.dtype if isinstance(fill_value, ndarray) else \
                np.asarray(fill_value).dtype
        out = self._new(shape, dtype, order)
        if out.size:
            self._fill(out, fill_value, "cupy.full")
        return out

    def _like(self, a, dtype, shape):
        return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype)

    def empty_like(self, a, dtype=None, order="K", subok=None, shape=None):
        return self.empty(*self._like(a, dtype, shape))

    def zeros_like(self, a, dtype=None, order="K", subok=None, shape=None):
        return self.zeros(*self._like(a, dtype, shape))

    def ones_like(self, a, dtype=None, order="K", subok=None, shape=None):
        return self.ones(*self._like(a, dtype, shape))

    def full_like(self, a, fill_value, dtype=None, order="K", subok=None, shape=None):
        shape, dtype = self._like(a, dtype, shape)
        return self.full(shape, fill_value, dtype)

    def asarray(self, a, dtype=None, order=None, blocking=False):
        if isinstance(a, ndarray):
            return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
        return self._upload(a, dtype, "cupy.asarray")

    def array(self, obj, dtype=None, copy=True, order="K", subok=False, ndmin=0,
              blocking=False):
        if isinstance(obj, ndarray):
            if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
                return obj
            return obj.astype(obj.dtype if dtype is None else dtype)
        return self._upload(obj, dtype, "cupy.array")

    def ascontiguousarray(self, a, dtype=None):
        if not isinstance(a, ndarray):
            raise TypeError("Argument 'a' has incorrect type (expected "
                            "cupy._core.core._ndarray_base, got %s)" % type(a).__name__)
        same = dtype is None or np.dtype(dtype) == a.dtype
        if same and a.flags.c_contiguous:
            return a.reshape((1,)) if a.ndim == 0 else a
        out = self._compute("cupy.ascontiguousarray", _np_astype,
                            (a, a.dtype if dtype is None else np.dtype(dtype), "C"), {})
        return out.reshape((1,)) if out.ndim == 0 else out

    def asnumpy(self, a, stream=None, order="C", out=None, blocking=True):
        if isinstance(a, ndarray):
            return a.get(stream=stream, order=order, out=out)
        return np.asarray(a, order=order)

    def get_array_module(self, *args):
        return self if any(isinstance(a, ndarray) for a in args) else np

    # --- functions with CuPy's own behaviour ----------------------------------------------
    def copyto(self, dst, src, casting="same_kind", where=None):
        if not isinstance(dst, ndarray):
            raise TypeError("cupy.copyto: dst must be a cupy.ndarray")
        if isinstance(src, np.ndarray) and src.ndim > 0:
            src = self._upload(src, None, "cupy.copyto")
        kwargs = {"casting": casting} if where is None else {"casting": casting,
                                                            "where": where}
        self._inplace("cupy.copyto", np.copyto, (dst, src), kwargs, [dst])

    def take(self, a, indices, axis=None, out=None, mode=None):
        if out is not None:
            raise NotImplementedError("fakecuda: take(out=) is not emulated")
        if not isinstance(indices, ndarray) and np.ndim(indices) > 0:
            indices = self._upload(indices, None, "cupy.take")
        return self._compute("cupy.take", _take_wrapped, (a, indices, axis), {})

    def argsort(self, a, axis=-1, kind=None):
        return self._compute("cupy.argsort", _argsort_stable, (a, axis), {})

    def _joined(self, name, arrays, axis, dtype=None):
        arrays = list(arrays)
        stream = self.get_current_stream()
        if len(arrays) > 8 and stream.capture is not None:
            dtypes = [x.dtype if isinstance(x, ndarray) else np.asarray(x).dtype
                      for x in arrays]
            out_dtype = np.dtype(dtype) if dtype is not None else np.result_type(*dtypes)
            total = sum(x.size if isinstance(x, ndarray) else np.size(x)
                        for x in arrays) * out_dtype.itemsize
            if all(d == out_dtype for d in dtypes) and \
                    total < _CONCAT_TABLE_BYTES * len(arrays):
                raise _capture_refusal("H2D", "cupy.%s of %d arrays joins them in one "
                                       "kernel reading a table of their addresses, "
                                       "uploaded from the host" % (name, len(arrays)))
        kwargs = {} if dtype is None else {"dtype": dtype}
        return self._compute("cupy." + name, getattr(np, name), (arrays,),
                             dict(kwargs, **({} if axis is _NO_AXIS else {"axis": axis})))

    def concatenate(self, arrays, axis=0, out=None, dtype=None, casting="same_kind"):
        if out is not None:
            raise NotImplementedError("fakecuda: concatenate(out=) is not emulated")
        return self._joined("concatenate", arrays, axis, dtype)

    def stack(self, arrays, axis=0, out=None, dtype=None, casting="same_kind"):
        if out is not None:
            raise NotImplementedError("fakecuda: stack(out=) is not emulated")
        return self._joined("stack", arrays, axis, dtype)

    def hstack(self, tup, dtype=None, casting="same_kind"):
        return self._joined("hstack", tup, _NO_AXIS, dtype)

    def vstack(self, tup, dtype=None, casting="same_kind"):
        return self._joined("vstack", tup, _NO_AXIS, dtype)

    def _reading_back(self, name, args, kwargs):
        self._read_back_refs((args, kwargs), "cupy.%s (reads its result's size back)"
                             % name)
        return self._compute("cupy." + name, getattr(np, name), args, kwargs)

    def bincount(self, x, weights=None, minlength=None):
        kwargs = {"weights": weights} if weights is not None else {}
        if minlength is not None:
            kwargs["minlength"] = minlength
        return self._reading_back("bincount", (x,), kwargs)

    def unique(self, ar, *args, **kwargs):
        return self._reading_back("unique", (ar,) + args, kwargs)

    def nonzero(self, a):
        return self._reading_back("nonzero", (a,), {})

    def argwhere(self, a):
        return self._reading_back("argwhere", (a,), {})

    def flatnonzero(self, a):
        return self._reading_back("flatnonzero", (a,), {})

    def where(self, condition, *xy):
        if not xy:
            return self.nonzero(condition)
        return self._compute("cupy.where", np.where, (condition,) + xy, {})

    # --- indexing -------------------------------------------------------------------------
    def _key(self, key, where):
        """A key with host index arrays uploaded (CuPy does) and numpy ints as ints."""
        key = key if isinstance(key, tuple) else (key,)
        out = []
        for k in key:
            if isinstance(k, (list, np.ndarray)) and not isinstance(k, ndarray):
                if np.ndim(k) == 0 and not isinstance(k, list):
                    k = np.asarray(k).item()
                else:
                    k = self._upload(k, None, where + " (an index array from the host)")
            elif isinstance(k, np.integer):
                k = int(k)
            out.append(k)
        return tuple(out)

    def _getitem(self, a, key):
        key = self._key(key, "cupy.ndarray.__getitem__")
        arrays = [k for k in key if isinstance(k, ndarray)]
        if not arrays:  # basic indexing: a view (a 0-d one for a single element)
            if not any(k is Ellipsis for k in key):
                key = key + (Ellipsis,)
            return ndarray._make(self, a._mem, a._a[key])
        if any(k.dtype == bool for k in arrays):
            self._read_back(arrays, "boolean mask indexing (counts the mask)")
        return self._compute("cupy.ndarray.__getitem__", _getitem, (a, key), {})

    def _setitem(self, a, key, value):
        where = "cupy.ndarray.__setitem__"
        key = self._key(key, where)
        arrays = [k for k in key if isinstance(k, ndarray)]
        if any(k.dtype == bool for k in arrays):
            self._read_back(arrays, "boolean mask assignment (counts the mask)")
        if not isinstance(value, ndarray) and np.ndim(value) > 0:
            value = self._upload(value, None, where + " (a value from the host)")
        elif isinstance(value, np.ndarray):
            value = value[()]
        self._inplace(where, _setitem, (a, key, value), {}, [a])

    # --- every other numpy function --------------------------------------------------------
    def _function(self, func, args, kwargs):
        """A numpy function met with device arrays (__array_function__), or called as
        cupy.<name>."""
        name = getattr(func, "__name__", "")
        own = _OWN.get(name)
        if own is not None:
            return getattr(self, own)(*args, **kwargs)
        if name in _REFUSED:
            raise AttributeError("fakecuda: cupy.%s writes in place and is not emulated"
                                 % name)
        result = self._compute("cupy." + name, func, args, kwargs)
        if name not in _METADATA and isinstance(result, (bool, int, float, complex)) \
                and not isinstance(result, ndarray):
            self._read_back_refs((args, kwargs), "cupy.%s (a Python value)" % name)
        return result

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)  # (the import system probes __path__ etc.)
        target = getattr(np, name, _NO_AXIS)
        if target is _NO_AXIS:
            raise AttributeError("module 'cupy' (fakecuda) has no attribute %r" % name)
        if isinstance(target, types.ModuleType):  # numpy.random, linalg, ...: host code
            raise AttributeError("fakecuda: cupy.%s is not emulated (numpy's would run on "
                                 "the host)" % name)
        if isinstance(target, type) or not callable(target):
            return target  # dtypes, constants, newaxis: numpy's, as CuPy re-exports them
        call = self._functions.get(name)
        if call is None:
            @functools.wraps(target)
            def call(*args, **kwargs):
                if isinstance(target, np.ufunc) and _any_device((args, kwargs)):
                    return target(*args, **kwargs)  # (-> ndarray.__array_ufunc__)
                return self._function(target, args, kwargs)
            self._functions[name] = call
        return call


_NO_AXIS = object()
_OWN = {name: name for name in ("concatenate", "stack", "hstack", "vstack", "take",
                                "argsort", "bincount", "unique", "nonzero", "argwhere",
                                "flatnonzero", "where", "copyto", "asarray", "array",
                                "ascontiguousarray", "empty", "zeros", "ones", "full",
                                "empty_like", "zeros_like", "ones_like", "full_like")}


def _any_device(obj):
    if isinstance(obj, ndarray):
        return True
    if type(obj) in (list, tuple):
        return any(_any_device(o) for o in obj)
    if type(obj) is dict:
        return any(_any_device(o) for o in obj.values())
    return False


def _take_wrapped(a, indices, axis):
    return np.take(a, indices, axis=axis, mode="wrap")


def _argsort_stable(a, axis):
    return np.argsort(a, axis=axis, kind="stable")  # CuPy: thrust's stable_sort_by_key


def _where():
    """The first frame outside numpy and this module, for race messages."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if not path.endswith("/fakecuda.py") and "/numpy/" not in path:
            return "%s:%d in %s" % (frame.filename, frame.lineno, frame.name)
    return "?"


class _RawModule(object):
    def __init__(self, fake, host, options):
        self.fake, self.host, self.options = fake, host, options

    def get_function(self, name):
        return _RawKernel(self.fake, self.host.get_function(name))


class _RawKernel(object):
    """A hostgrid kernel launched on the current stream (or captured)."""

    def __init__(self, fake, kernel):
        self.fake, self.kernel, self.name = fake, kernel, kernel.name

    def __call__(self, grid, block, args, shared_mem=0, enable_cooperative_groups=False):
        fake, kernel = self.fake, self.kernel
        args = tuple(args)
        refs, template, reads, writes = [], [], [], []
        for k, a in enumerate(args):
            if isinstance(a, ndarray):
                ref = _Ref.of(a)
                refs.append(ref)
                template.append(ref)
                param = kernel.params[k] if k < len(kernel.params) else None
                (reads if param is not None and param.const else writes).append(ref)
            elif isinstance(a, np.ndarray):
                raise TypeError("%s argument %d: a host numpy array (shape %s); CuPy "
                                "kernels take device arrays and numpy scalars"
                                % (self.name, k, a.shape))
            else:
                template.append(a)
        try:
            fake._check_devices(refs, self.name)
            grid, block = tuple(grid), tuple(block)
            schedule = None if kernel.sync else fake.schedule
            double = DOUBLES.get(self.name) if fake.doubles else None
            fn = functools.partial(_run_double, kernel, double, grid, block) \
                if double is not None else \
                functools.partial(_run_kernel, kernel, grid, block, schedule)
            node = _Node(self.name, fn, tuple(template), {}, reads, writes)
            fake.launches.append(self.name)

            def dry_run():
                hostgrid._dims(grid, "grid"), hostgrid._dims(block, "block")
                kernel._pack(_resolve(tuple(template)))
            fake._enqueue(node, fake.get_current_stream(), dry_run)
        finally:
            for ref in refs:
                ref.cool()


def _run_kernel(kernel, grid, block, schedule, *args):
    kernel(grid, block, args, schedule=schedule)


def _run_double(kernel, double, grid, block, *args):
    """A kernel's numpy double, after hostgrid's checks of the launch and arguments."""
    hostgrid._dims(grid, "grid"), hostgrid._dims(block, "block")
    kernel._pack(args)
    double(*args)


def _null(x):
    return isinstance(x, np.uint64) and not isinstance(x, np.ndarray)


def _segment_starts(lengths, m, starts):
    """ops/sparse_lengths.py's segment_starts: int64 exclusive prefix sums."""
    m = int(m)
    if m > 0:
        run = lengths[:m].astype(np.int64)
        starts[:m] = np.cumsum(run) - run


def _index_stats(idx, n, lengths, m, scalar, out):
    """ops/_cuda_checks.py's index_stats_*: folds into out (min, sum of LENGTHS, min,
    max of INDICES) and sets out[4] to the scalar's bits, as the kernel's atomics do."""
    n, m = int(n), int(m)
    if n > 0:
        values = idx[:n].astype(np.int64)
        out[2] = min(out[2], values.min())
        out[3] = max(out[3], values.max())
    if m > 0:
        values = lengths[:m].astype(np.int64)
        out[0] = min(out[0], values.min())
        with np.errstate(over="ignore"):
            out[1] = out[1] + values.sum()
    if not _null(scalar):
        out[4] = np.int64(scalar[0])


# Numpy doubles of the kernels that synchronize their threads: hostgrid runs those as
# a block of 256-1024 std::threads meeting at barriers (40-200 ms a launch on 2 CPUs,
# most of a DLRM step). FakeCuda(doubles=False) runs the real ones; test_fakecuda.py
# shows each double bit-equal to its kernel.
DOUBLES = {"segment_starts": _segment_starts, "index_stats_i32": _index_stats,
           "index_stats_i64": _index_stats}


# --- installing ------------------------------------------------------------------------

@contextlib.contextmanager
def installed(monkeypatch, fake):
    """with installed(monkeypatch, fake): `fake` is CuPy: sys.modules["cupy"] and its
    cupy.cuda, cupy.cuda.runtime, cupy.cuda.memory (restored by monkeypatch; any other
    cupy.* module, cupy.cuda.nccl included, imports as missing meanwhile), and
    every graphnet cache of CUDA state (probe, runtime, backend, nccl's streams, blas's
    library (the stand-in's cuBLAS, fakecublas.py) and workspaces, the
    kernels' compiled modules) starts empty and is emptied again on exit, so nothing
    made with the fake outlives the block."""
    from graphnet.executors import backends
    from graphnet.executors.cuda import blas, nccl, probe, runtime
    from . import fakecublas
    ours = {"cupy": fake, "cupy.cuda": fake.cuda, "cupy.cuda.runtime": fake.cuda.runtime,
            "cupy.cuda.memory": fake.cuda.memory,
            "cupy.cuda.nccl": None}  # (None: `from cupy.cuda import nccl` fails)
    for name in [n for n in sys.modules if n.startswith(("cupy.", "cupyx"))]:
        ours.setdefault(name, None)  # a real CuPy imported earlier stays out of reach
    for name, module in ours.items():
        monkeypatch.setitem(sys.modules, name, module)
    fakecupy.install(monkeypatch, fake)  # ops._cuda.cupy_module() -> fake, fresh caches
    monkeypatch.setattr(runtime, "_runtime", {})
    monkeypatch.setattr(nccl, "_streams", {})
    monkeypatch.setattr(nccl, "_comms", {})
    monkeypatch.setattr(blas, "_state", {"lib": fakecublas.FakeCublas(fake)})
    saved = dict(backends._cuda)  # (shared with graphnet.executors: changed in place)
    backends._cuda.clear()
    probe.forget()
    try:
        yield fake
    finally:
        backends._cuda.clear()
        backends._cuda.update(saved)
        probe.forget()
