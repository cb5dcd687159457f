"""NCCLAllreduce / NCCLBroadcast / NCCLReduce on real GPUs.

Inputs live on several logical GPUs, which map onto physical ones. Per physical
GPU the inputs it hosts are combined locally (a sum, or the root's tensor) on a
collective stream of that GPU; one grouped NCCL call (groupStart/groupEnd, one
communicator per set of physical GPUs, cached) then combines the physical GPUs,
and each output is copied out on its own GPU. So 8 logical GPUs on 1 physical
GPU give the same sums as 8 real GPUs. The op's stream fans out to the collective
streams and waits for them again with CUDA events: no host synchronization.
Without NCCL (cupy.cuda.nccl unavailable) the physical partials are combined
with peer copies onto the op's GPU. Imports copies; cupy comes from the runtime.
"""

import numpy as np

from graphnet.executors.cuda import copies

__all__ = ["allreduce", "broadcast", "reduce", "all_gather", "reduce_scatter",
           "communicators"]

_comms = {}
_streams = {}


def _nccl(cp):
    try:
        from cupy.cuda import nccl
    except Exception:
        return None
    return nccl if getattr(nccl, "available", False) else None


def communicators(cp, physical):
    """One NCCL communicator per physical GPU of `physical` (a sorted tuple), cached."""
    comms = _comms.get(physical)
    if comms is None:
        comms = _comms[physical] = _nccl(cp).NcclCommunicator.initAll(list(physical))
    return comms


def _collective_stream(cp, physical):
    stream = _streams.get(physical)
    if stream is None:
        with cp.cuda.Device(physical):
            stream = _streams[physical] = cp.cuda.Stream(non_blocking=True)
    return stream


def _nccl_dtype(nccl, dtype):
    return nccl.NCCL_FLOAT16 if dtype == np.float16 else nccl.NCCL_FLOAT32


class _Plan(object):
    """The physical GPUs taking part, their inputs and collective streams."""

    def __init__(self, rt, inputs, op_physical):
        self.rt, self.cp = rt, rt.cp
        self.groups = {}
        for i, x in enumerate(inputs):
            self.groups.setdefault(x.device.id, []).append(i)
        self.op_physical = op_physical
        self.physical = tuple(sorted(set(self.groups) | {op_physical}))
        self.op_stream = self.cp.cuda.get_current_stream()
        start = self.cp.cuda.Event(disable_timing=True)
        start.record(self.op_stream)
        self.streams = {}
        for p in self.physical:
            stream = _collective_stream(self.cp, p)
            stream.wait_event(start)
            self.streams[p] = stream

    def on(self, p):
        """Context: device p current, its collective stream current."""
        cp = self.cp

        class _On(object):
            def __enter__(inner):
                inner.device = cp.cuda.Device(p)
                inner.device.__enter__()
                self.streams[p].__enter__()

            def __exit__(inner, *exc):
                self.streams[p].__exit__(*exc)
                inner.device.__exit__(*exc)
        return _On()

    def join(self):
        """The op's stream waits for every collective stream."""
        for p, stream in self.streams.items():
            self.op_stream.wait_event(self.mark(p))

    def mark(self, p):
        """An event after the work enqueued so far on p's collective stream."""
        with self.cp.cuda.Device(p):
            event = self.cp.cuda.Event(disable_timing=True)
            event.record(self.streams[p])
        return event


def _local_sums(plan, inputs):
    """Per physical GPU: the sum of the inputs it hosts (zeros where it hosts none),
    summed in input order as the numpy kernel does."""
    cp = plan.cp
    partial = {}
    for p in plan.physical:
        with plan.on(p):
            members = plan.groups.get(p)
            if not members:
                partial[p] = cp.zeros(inputs[0].shape, inputs[0].dtype)
                continue
            total = inputs[members[0]].copy()
            for i in members[1:]:
                total += inputs[i]
            partial[p] = total
    return partial


def _combine(plan, buffers, kind, root_physical):
    """NCCL across the physical GPUs: kind 'allreduce', 'reduce' or 'bcast'."""
    cp = plan.cp
    if len(plan.physical) == 1 and _nccl(cp) is None:
        return
    nccl = _nccl(cp)
    if nccl is None:  # no NCCL: combine on the root with copies, then copy back
        root = root_physical
        others = [p for p in plan.physical if p != root]
        for p in others:  # the root reads what the other collective streams made
            plan.streams[root].wait_event(plan.mark(p))
        with plan.on(root):
            stream = plan.streams[root]
            if kind != "bcast":
                total = buffers[root]
                for p in others:
                    total += copies.to_device(plan.rt, buffers[p], root, stream)
            if kind != "reduce":
                for p in others:
                    buffers[p] = copies.to_device(plan.rt, buffers[root], p, stream)
        done = plan.mark(root)
        for p in others:  # and they read what the root's stream copied back
            plan.streams[p].wait_event(done)
        return
    comms = communicators(cp, plan.physical)
    rank_of = {p: r for r, p in enumerate(plan.physical)}
    first = buffers[plan.physical[0]]
    dtype, count = _nccl_dtype(nccl, first.dtype), int(first.size)
    nccl.groupStart()
    try:
        for p in plan.physical:
            comm, buf, stream = comms[rank_of[p]], buffers[p], plan.streams[p]
            with cp.cuda.Device(p):
                if kind == "allreduce":
                    comm.allReduce(buf.data.ptr, buf.data.ptr, count, dtype, nccl.NCCL_SUM,
                                   stream.ptr)
                elif kind == "reduce":
                    comm.reduce(buf.data.ptr, buf.data.ptr, count, dtype, nccl.NCCL_SUM,
                                rank_of[root_physical], stream.ptr)
                else:
                    comm.bcast(buf.data.ptr, count, dtype, rank_of[root_physical],
                               stream.ptr)
    finally:
        nccl.groupEnd()


def _outputs(plan, buffers, inputs):
    """Output i on input i's physical GPU (fresh arrays: outputs never alias)."""
    outs = []
    for x in inputs:
        p = x.device.id
        with plan.on(p):
            outs.append(buffers[p].copy())
    return outs


def allreduce(backend, inputs, num_outputs):
    rt, cp = backend.rt, backend.xp
    plan = _Plan(rt, inputs, cp.cuda.Device().id)
    buffers = _local_sums(plan, inputs)
    _combine(plan, buffers, "allreduce" if num_outputs > 1 else "reduce", plan.op_physical)
    if num_outputs == 1:
        with plan.on(plan.op_physical):
            result = buffers[plan.op_physical].copy()
        plan.join()
        return result
    outs = _outputs(plan, buffers, inputs)
    plan.join()
    return tuple(outs)


def reduce(backend, inputs):
    return allreduce(backend, inputs, 1)


def broadcast(backend, inputs, root):
    rt, cp = backend.rt, backend.xp
    plan = _Plan(rt, inputs, cp.cuda.Device().id)
    root_physical = inputs[root].device.id
    buffers = {}
    for p in plan.physical:
        with plan.on(p):
            buffers[p] = (inputs[root].copy() if p == root_physical
                          else cp.empty(inputs[root].shape, inputs[root].dtype))
    _combine(plan, buffers, "bcast", root_physical)
    outs = _outputs(plan, buffers, inputs)
    plan.join()
    return tuple(outs)


def all_gather(backend, inputs):
    """NCCLAllGather: output i, on input i's GPU, stacks every input (copied there on
    that GPU's collective stream, peer or staged)."""
    plan = _Plan(backend.rt, inputs, backend.xp.cuda.Device().id)
    outs = []
    for home in inputs:
        with plan.on(home.device.id):
            outs.append(plan.cp.stack([_beside(plan, x, home) for x in inputs]))
    plan.join()
    return tuple(outs)


def reduce_scatter(backend, inputs):
    """NCCLReduceScatter: output i, on input i's GPU, sums slice [i] of every input
    in input order (as the numpy kernel adds them)."""
    plan = _Plan(backend.rt, inputs, backend.xp.cuda.Device().id)
    outs = []
    for i, home in enumerate(inputs):
        with plan.on(home.device.id):
            total = _beside(plan, inputs[0][i], home).copy()
            for x in inputs[1:]:
                total += _beside(plan, x[i], home)
            outs.append(total)
    plan.join()
    return tuple(outs)


def _beside(plan, x, home):
    """`x` readable on `home`'s GPU: itself there, else a copy on the current
    (collective) stream."""
    if x.device.id == home.device.id:
        return x
    return copies.to_device(plan.rt, x, home.device.id, plan.cp.cuda.get_current_stream())
