"""Moving arrays between the host and GPUs, and between GPUs.

Every copy is enqueued on the caller's current stream (inside a net run: the
stream of the op's logical device, so a Copy runs on its destination's stream
after waiting for its source's event). Host buffers are pinned so copies are
truly asynchronous; what a copy reads or writes is kept alive until the run's
final synchronization (retain()), or, outside a run (FeedBlob), until an event
recorded after the copy has completed: the host does not wait for a fed batch.
Whoever reads device memory on another stream waits for such copies on the device
first (after_pending(): a run's streams as it starts, a copy to the host or to
another device). GPU -> GPU copies are cudaMemcpyPeerAsync where peer access
works, otherwise staged through pinned host memory.
"""

import threading

import numpy as np

from graphnet.executors.cuda import checks, host_values, settings

__all__ = ["to_device", "overwrite", "to_host", "retain", "after_pending", "run_scope",
           "in_run", "H2D", "D2H", "D2D"]

H2D, D2H, D2D = 1, 2, 3  # cudaMemcpyKind


class _Local(threading.local):
    run = None  # the run_scope in progress (a default: no failed lookup per copy)


_local = _Local()


class run_scope(object):
    """Within a net run: buffers copies still read are kept until the run syncs."""

    def __init__(self):
        self.retained = []

    def __enter__(self):
        self.outer = _local.run
        _local.run = self
        return self

    def __exit__(self, *exc):
        _local.run = self.outer
        return False


def in_run():
    """True within a net run (run_scope): the current stream is then the op's."""
    return _local.run is not None


# Copies enqueued outside a run and maybe not finished: (stream, event recorded after
# the copy, what it reads and writes, kept alive until then), oldest first
_pending = []
_pending_lock = threading.Lock()


def retain(cp, obj, stream):
    """Keep `obj` alive until `stream` finished the work enqueued so far: to the run's
    final synchronization, or outside a run until an event recorded now completes
    (no host wait; readers on other streams wait for it through after_pending)."""
    run = _local.run
    if run is not None:
        run.retained.append(obj)
        return
    with cp.cuda.Device(stream.device_id if stream.device_id >= 0 else
                        cp.cuda.runtime.getDevice()):
        event = cp.cuda.Event(disable_timing=True)
        event.record(stream)
    with _pending_lock:
        _forget_finished()
        _pending.append((stream, event, obj))


def _forget_finished():
    """Drop the pending copies that completed (an event query each: no wait)."""
    if _pending:
        _pending[:] = [entry for entry in _pending if not entry[1].done]


def after_pending(stream):
    """`stream` waits, on the device, for the unfinished copies enqueued outside a run
    on other streams (a blob fed on its device's stream, read elsewhere). Not while
    capturing: a captured stream cannot wait for work outside the capture, and the
    run's streams waited as it started."""
    if not _pending or checks.is_capturing():
        return
    with _pending_lock:
        _forget_finished()
        events = [event for other, event, _ in _pending  # (a null stream: each device's)
                  if other.ptr != stream.ptr or not stream.ptr]
    for event in events:
        stream.wait_event(event)


def _on_device(cp, value):
    return isinstance(value, cp.ndarray)


def _nbytes(x):
    return int(x.size) * x.dtype.itemsize


def to_device(rt, value, dst, stream):
    """A fresh C-contiguous cupy array on physical device `dst` holding `value`
    (numpy or cupy, any device), enqueued on `stream`."""
    cp = rt.cp
    runtime = cp.cuda.runtime
    if not _on_device(cp, value):
        host = np.asarray(value, order="C")  # (ascontiguousarray would make 0-d 1-d)
        if host.dtype == object:
            return host  # strings stay on the host, as Caffe2 kept them in CPU blobs
        return overwrite(rt, host, _empty(cp, host.shape, host.dtype, dst, stream), stream)
    src = value.device.id
    known = host_values.lookup(value)
    after_pending(stream)
    if not value.flags.c_contiguous:
        value = _contiguous(cp, value, stream)
    out = _empty(cp, value.shape, value.dtype, dst, stream)
    nbytes = _nbytes(value)
    if nbytes == 0:
        return out
    used = [value, out]  # (both outlive the copy even if their blobs move on)
    if settings.staged_copies() or not rt.can_peer(dst, src):
        pinned = rt.pinned_empty(value.shape, value.dtype)
        runtime.memcpyAsync(pinned.ctypes.data, value.data.ptr, nbytes, D2H, stream.ptr)
        runtime.memcpyAsync(out.data.ptr, pinned.ctypes.data, nbytes, H2D, stream.ptr)
        used.append(pinned)
    elif src == dst:
        runtime.memcpyAsync(out.data.ptr, value.data.ptr, nbytes, D2D, stream.ptr)
    else:
        runtime.memcpyPeerAsync(out.data.ptr, dst, value.data.ptr, src, nbytes,
                                stream.ptr)
    retain(cp, used, stream)
    if known is not None:
        host_values.remember(out, known)
    return out


def _empty(cp, shape, dtype, dst, stream):
    """A new array on physical GPU `dst` from the memory pool of `stream`, which writes
    it. CuPy's pool hands a freed block out again only on the stream it was allocated
    on: allocated on another one (the default stream, outside a run), the block could
    still be in use there by other work while `stream` writes it."""
    with cp.cuda.Device(dst):
        if (stream.ptr and stream.device_id == dst
                and cp.cuda.get_current_stream().ptr != stream.ptr):
            with stream:
                return cp.empty(shape, dtype)
        return cp.empty(shape, dtype)


def overwrite(rt, host, out, stream):
    """Host array `host` copied into the C-contiguous device array `out` of its shape
    and dtype (through a pinned buffer, on `stream`); returns out. The pinned copy is
    what the host knows of `out` from then on (host_values: index blobs are checked
    on the host)."""
    host_values.forget(out)
    if out.size:
        pinned = rt.pinned_empty(host.shape, host.dtype)
        pinned[...] = host
        rt.cp.cuda.runtime.memcpyAsync(out.data.ptr, pinned.ctypes.data, _nbytes(out), H2D,
                                       stream.ptr)
        retain(rt.cp, (pinned, out), stream)
        host_values.remember(out, pinned)
    return out


def _contiguous(cp, value, stream):
    """A C-contiguous copy of device array `value`, made on its own device after the
    work `stream` holds so far, and `stream` waits for it: events, no host sync (a
    device's kernels run on that device's current stream, which inside a run is the
    op's stream only on the op's own device)."""
    src = value.device.id
    home = stream.device_id if stream.device_id >= 0 else cp.cuda.Device().id
    if home == src:
        with cp.cuda.Device(src), stream:
            return cp.ascontiguousarray(value)
    with cp.cuda.Device(home):
        ready = cp.cuda.Event(disable_timing=True)
        ready.record(stream)
    with cp.cuda.Device(src):
        side = cp.cuda.get_current_stream()
        side.wait_event(ready)
        value = cp.ascontiguousarray(value)
        done = cp.cuda.Event(disable_timing=True)
        done.record(side)
    stream.wait_event(done)
    return value


def to_host(rt, value, stream):
    """A numpy array (pinned) holding cupy `value`; waits for the copy."""
    cp = rt.cp
    if not _on_device(cp, value):
        return value
    after_pending(stream)
    if not value.flags.c_contiguous:
        value = _contiguous(cp, value, stream)
    out = rt.pinned_empty(value.shape, value.dtype)
    if value.size:
        cp.cuda.runtime.memcpyAsync(out.ctypes.data, value.data.ptr, _nbytes(value), D2H,
                                    stream.ptr)
        stream.synchronize()
    return out
