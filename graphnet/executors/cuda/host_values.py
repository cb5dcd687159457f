"""What the host already knows of device arrays: the values it uploaded.

An index blob fed from the host (FeedBlob, or a host-held input moved to its GPU)
reaches the device through a pinned buffer that holds the same values. Keeping
that buffer lets the ops' index checks (ops/_cuda_checks.index_stats: bounds of
INDICES, min and sum of LENGTHS, ScatterWeightedSum's w_0) be answered on the
host, with no kernel and no device-to-host wait: a DLRM training step then makes
no host synchronization before its loss is fetched, where it made one per
embedding op.

Kept: int32/int64 arrays up to MAX_INDEX_BYTES (the index and length blobs) and
float arrays of at most MAX_SCALARS elements (weights, learning rates,
ConstantFill's ONE). Nothing else: float data is never mirrored.

A record is valid while its device array's memory is unchanged, so it is dropped
  * when the array is freed (a weak reference), and
  * before anything may write the allocation: the runner forgets each GPU op's
    outputs' current arrays before the op runs (an op may update them in place),
    and a CUDA graph's input buffers and outputs before it is launched.
Every device array written by graphnet goes through one of these; arrays written
behind graphnet's back (through CuPy directly) are not tracked. While a CUDA graph
is captured nothing is looked up: a replay would reuse the answer after the
values changed.
"""

import math
import threading
import weakref

import numpy as np

from graphnet.executors.cuda import checks

__all__ = ["remember", "lookup", "forget", "forget_all", "cached", "MAX_INDEX_BYTES",
           "MAX_SCALARS"]

MAX_INDEX_BYTES = 64 << 20  # a pinned copy kept per index blob: bounded
MAX_SCALARS = 16

# Reentrant: a record's weak-reference callback may run inside a locked block, when
# an allocation there makes the garbage collector free a remembered array.
_lock = threading.RLock()
_by_ptr = {}  # device pointer -> _Record
_by_mem = {}  # id(allocation) -> {device pointer} (views of one allocation)


class _Record(object):
    __slots__ = ("ptr", "mem", "host", "nbytes", "dtype", "ref", "cache")

    def __init__(self, ptr, mem, host, ref):
        self.ptr, self.mem, self.host, self.ref = ptr, mem, host, ref
        self.nbytes, self.dtype = host.nbytes, host.dtype
        self.cache = {}


def _kept(dtype, size):
    if dtype.kind in "iu":
        return dtype.itemsize in (4, 8) and size * dtype.itemsize <= MAX_INDEX_BYTES
    return dtype.kind == "f" and size <= MAX_SCALARS


def remember(array, host):
    """`host` (numpy, never written afterwards) holds the values of device array
    `array` (C-contiguous, same shape and dtype). Index-typed and tiny float arrays
    are kept; others are ignored."""
    if (not isinstance(host, np.ndarray) or host.dtype != array.dtype
            or host.shape != array.shape or not array.flags.c_contiguous
            or not array.size or not _kept(host.dtype, host.size)):
        return
    mem = getattr(array.data, "mem", None)  # (None: not a CuPy allocation)
    if mem is None:
        return
    ptr, mem = array.data.ptr, id(mem)

    def dropped(ref, ptr=ptr):
        _drop(ptr, ref)
    record = _Record(ptr, mem, np.ascontiguousarray(host), weakref.ref(array, dropped))
    with _lock:
        old = _by_ptr.get(ptr)
        if old is not None:
            _unlink(old)
        _by_ptr[ptr] = record
        _by_mem.setdefault(mem, set()).add(ptr)


def _unlink(record):
    if _by_ptr.get(record.ptr) is not record:
        return  # (already replaced or dropped)
    del _by_ptr[record.ptr]
    ptrs = _by_mem.get(record.mem)
    if ptrs is not None:
        ptrs.discard(record.ptr)
        if not ptrs:
            del _by_mem[record.mem]


def _drop(ptr, ref):
    """`ref`'s array was freed: its record goes (not a later one at the same address)."""
    with _lock:
        record = _by_ptr.get(ptr)
        if record is not None and record.ref is ref:
            _unlink(record)


def _record(array):
    """The record whose values `array` shows whole (the array itself or a
    contiguous view of its start, e.g. a reshape or [:1]), or None."""
    if not _by_ptr:
        return None
    record = _by_ptr.get(array.data.ptr)
    if (record is None or record.dtype != array.dtype or not array.flags.c_contiguous
            or array.nbytes > record.nbytes or record.ref() is None
            or id(array.data.mem) != record.mem or checks.is_capturing()):
        return None
    return record


def lookup(array):
    """A read-only host array holding `array`'s values, or None when unknown."""
    record = _record(array)
    return None if record is None else _view(record, array.shape)


def _view(record, shape):
    """The record's values as a read-only array of `shape` (its start), made once per
    shape (the ops look the same blob up several times per run)."""
    key = ("view", shape)
    host = record.cache.get(key)
    if host is None:
        host = record.host.reshape(-1)[:math.prod(shape)].reshape(shape)
        host.flags.writeable = False
        record.cache[key] = host
    return host


def cached(array, key, compute):
    """compute(host values) for a known `array`, kept with its record (`key` names
    the computation); None when the values are unknown."""
    record = _record(array)
    if record is None:
        return None
    if array.nbytes != record.nbytes:
        return compute(_view(record, array.shape))
    value = record.cache.get(key)
    if value is None:
        value = record.cache[key] = compute(_view(record, array.shape))
    return value


def forget(array):
    """Drop what is known of every view of `array`'s allocation (about to be written)."""
    if not _by_mem:
        return
    data = getattr(array, "data", None)
    mem = getattr(data, "mem", None)
    if mem is None:
        return
    if id(mem) not in _by_mem:
        return  # (the common case: checked before taking the lock; a record added
        #          meanwhile by another thread is for values it uploaded afterwards)
    with _lock:
        for ptr in list(_by_mem.get(id(mem), ())):
            record = _by_ptr.get(ptr)
            if record is not None:
                _unlink(record)


def forget_all(arrays):
    if _by_mem:
        for array in arrays:
            forget(array)
