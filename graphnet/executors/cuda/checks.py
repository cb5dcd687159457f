"""Index checks that the CUDA kernels make themselves (GRAPHNET_CUDA_CHECKS=deferred).

A kernel that meets an out-of-range index skips it and atomically records the
smallest bad position in a one-element int64 flag; the runner reads every flag
once the run's streams are synchronized and raises the first failure as an
OperatorError naming the op and its device. In the default `sync` mode the ops
check indices before launching (Caffe2's messages, blobs untouched; indices fed from
the host on the host's copy, graphnet.executors.cuda.host_values) and the kernels'
guards only keep a bad index from faulting. A run's flags are slices of one array
per stream, filled once (under capture each is its own fill, replayed by the graph).
"""

import threading

import numpy as np

from graphnet.executors.cuda import settings

__all__ = ["NO_ERROR", "new_flag", "collect", "current_step", "set_current_step",
           "sync_checks", "add_items", "capturing", "is_capturing", "deferring"]

NO_ERROR = np.iinfo(np.int64).max
_POOL = 64  # flags filled at once for a run's deferred checks


class _Local(threading.local):
    """This thread's state; the class attributes are the defaults (reading a missing
    attribute of a plain threading.local raises inside getattr, ten times the cost of
    a hit, and these are read around every GPU op)."""
    capturing = False
    deferring = False
    step = None
    checks = None


_local = _Local()


def sync_checks():
    """True: ops validate indices on the host side before launching kernels (never
    while this thread captures a CUDA graph, nothing captured may wait for the GPU,
    nor in a run with graphs on: see deferring)."""
    return (settings.checks_mode() == "sync" and not is_capturing()
            and not _local.deferring)


class _ThreadFlag(object):
    """with _ThreadFlag(name, on): ... -- this thread's flag `name` is set while `on`
    (or while an outer block set it), then restored."""

    def __init__(self, name, on=True):
        self.name, self.on = name, on

    def __enter__(self):
        self.outer = getattr(_local, self.name)
        setattr(_local, self.name, self.outer or self.on)
        return self

    def __exit__(self, *exc):
        setattr(_local, self.name, self.outer)
        return False


def capturing():
    """with capturing(): ... -- this thread's ops run under CUDA stream capture: their
    checks are deferred and CuPy calls that upload or read back are avoided. Other
    threads keep their own mode (a process-wide switch would defer theirs too)."""
    return _ThreadFlag("capturing")


def deferring(on=True):
    """with deferring(on): ... -- this thread's checks are deferred while `on`: a run
    with CUDA graphs defers the checks of its eager ops too, so none of them waits
    for the GPU between graph launches (the captured ops' checks are deferred
    anyway, so the run reports a bad index at its end either way)."""
    return _ThreadFlag("deferring", on)


def is_capturing():
    """True while this thread captures a CUDA graph (see capturing)."""
    return _local.capturing


def set_current_step(step):
    _local.step = step


def current_step():
    return _local.step


class collect(object):
    """The deferred checks registered during one net run."""

    def __init__(self):
        self.items = []
        self.pools = {}  # (device, stream) -> [int64 flags, slots handed out]

    def slot(self, cp):
        """A fresh one-element flag: a slice of an array of _POOL flags filled once,
        on the current device and stream (the ops that use it run there), instead
        of one fill per op."""
        key = (cp.cuda.Device().id, cp.cuda.get_current_stream().ptr)
        pool = self.pools.get(key)
        if pool is None or pool[1] == _POOL:
            pool = self.pools[key] = [cp.full((_POOL,), NO_ERROR, dtype=np.int64), 0]
        k = pool[1]
        pool[1] = k + 1
        return pool[0][k:k + 1]

    def __enter__(self):
        self.outer = _local.checks
        _local.checks = self
        return self

    def __exit__(self, *exc):
        _local.checks = self.outer
        return False

    def first_failure(self):
        """(step, exception) of the first failed check in run order, or None.
        Call only after the streams that wrote the flags are synchronized. Flags of
        one device are read in one transfer (a CUDA graph registers dozens per run)."""
        if not self.items:
            return None
        import cupy
        positions = []
        for device, group in _by_device(self.items):
            with cupy.cuda.Device(device):
                values = cupy.concatenate([flag for _, flag, _ in group]).get()
            positions.extend(zip(group, values))
        order = {id(item): k for k, item in enumerate(self.items)}
        positions.sort(key=lambda pair: order[id(pair[0])])
        for (step, _, describe), position in positions:
            if int(position) != NO_ERROR:
                return step, describe(int(position))
        return None


def _by_device(items):
    groups = {}
    for item in items:
        groups.setdefault(item[1].device.id, []).append(item)
    return groups.items()


def new_flag(cp, describe):
    """A device flag for one kernel launch: int64 [NO_ERROR]; describe(position)
    builds the exception when the kernel wrote a bad position into it. The check
    is registered only in deferred mode (inside a run). Under capture each flag is
    its own fill, which every replay of the graph repeats."""
    checks = _local.checks
    registered = checks is not None and not sync_checks()
    flag = (checks.slot(cp) if registered and not is_capturing()
            else cp.full((1,), NO_ERROR, dtype=np.int64))
    if registered:
        checks.items.append((current_step(), flag, describe))
    return flag


def add_items(items):
    """Register checks made earlier (a CUDA graph's, whose kernels reset and set their
    flags on every replay) with the run in progress."""
    checks = _local.checks
    if checks is not None:
        checks.items.extend(items)
