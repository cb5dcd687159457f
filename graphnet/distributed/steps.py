"""This rank's part of a Schedule as executor Steps (what the run loop runs).

Ops placed here keep their compiled Step (inputs pulled from other ranks are
rebound to the received temporaries); every transfer, all-reduce and all-to-all
this rank takes part in becomes a Step whose kernel calls the Comm, so the one
run loop (executors/run.py) runs them, reports their errors naming the op they
serve, and the dag scheduler can run them (chained in schedule order, so both
sides of every transfer still meet it in the same order). Imports executors,
blobs, lowering and placement.
"""

import types
import zlib

import numpy as np

from graphnet.blobs import Blob
from graphnet.devices import CPU, CUDA_TYPE, Device, device_name
from graphnet.errors import EnforceError
from graphnet.executors.backends import (backend_for, cuda_backend, num_gpu_devices,
                                         to_numpy)
from graphnet.executors.cuda import copies
from graphnet.executors.dag import dependencies
from graphnet.executors.plan import Step
from graphnet.distributed.nccl import is_device_array
from graphnet.distributed.placement import EVERY_RANK, RemoteValue

__all__ = ["local_steps"]

_NO_OP = types.SimpleNamespace(control_input=())


def _tag(xfer_id):
    return 100 + xfer_id % 30000


def _where(step, net):
    return "op #%d (%s) of net '%s'" % (step.index, step.op_type, net)


def _comm_step(base, op_type, kernel, ins, in_blobs, outs, out_blobs, out_devices,
               device):
    """A Step running `kernel` on `device`, one of this rank's own (with real GPUs the
    CUDA runner makes its stream wait for the inputs' writers, wherever they ran)."""
    s = Step()
    s.index, s.op, s.op_type, s.schema = base.index, base.op, op_type, base.schema
    s.args, s.kernel, s.ctx = None, kernel, None
    s.device, s.backend = device, backend_for(device)
    s.in_names, s.in_blobs, s.want_devices = list(ins), list(in_blobs), [None] * len(ins)
    s.out_names, s.out_blobs, s.out_devices = list(outs), list(out_blobs), list(out_devices)
    s.dynamic_devices, s.warned = False, set()
    return s


def _placed(value, device, fresh=False):
    """A received value on `device`: on real GPUs CuPy memory of the device's own GPU
    (a host array staged over MPI is uploaded, an array NCCL delivered to another
    GPU of this rank is copied over), on numpy devices a host array. `fresh`: never
    the value itself (outputs of one all-reduce must not alias)."""
    if is_device_array(value):
        backend = backend_for(device)
        if not device.is_gpu or backend.name != "cupy":
            return np.array(to_numpy(value), copy=True)
        if fresh or value.device.id != backend.rt.physical_of(device.id):
            return backend.copy_to(value, device)
        return value
    if fresh:
        value = np.array(value, copy=True)
    if not isinstance(value, np.ndarray) or not device.is_gpu:
        return value
    return backend_for(device).from_host(value, device)


def _partial_sum(inputs, on_device):
    """The sum of this rank's all-reduce inputs, in input order as the numpy kernel
    adds them: on the first input's GPU when NCCL reduces it, else on the host."""
    if on_device and all(map(is_device_array, inputs)):
        # on the op's GPU and stream (current here), whose work is ordered after the
        # inputs' writers; inputs on other GPUs of this rank are copied over first
        backend = cuda_backend()
        here, stream = backend.xp.cuda.Device().id, backend.xp.cuda.get_current_stream()
        local = [x if x.device.id == here else copies.to_device(backend.rt, x, here, stream)
                 for x in inputs]
        partial = local[0].copy() if local[0] is inputs[0] else local[0]
        for x in local[1:]:
            partial += x
        return partial
    partial = np.array(to_numpy(inputs[0]), copy=True)
    for x in inputs[1:]:
        partial += to_numpy(x)
    return partial


def _tracked(kernel, board, label):
    def run(ctx, args, *inputs):
        board.set_label(label)
        return kernel(ctx, args, *inputs)
    run.original = kernel
    return run


class _Local(object):
    """Builds the local step list and the names the dag scheduler orders them by."""

    def __init__(self, cluster, plan, blobs):
        self.cluster, self.comm, self.board = cluster, cluster.comm, cluster.board
        self.me = cluster.rank
        self.net = plan.name
        self.blobs = blobs
        self.temps = {}
        self.steps, self.names, self.is_comm = [], [], []
        first = cluster.placement().devices_per_rank * self.me
        # where a send runs: this rank's first GPU (the CPU if it has none)
        self.own_gpu = Device(CUDA_TYPE, first) if first < num_gpu_devices() else CPU

    def sender_device(self, names):
        """The device a step sending blobs `names` runs on: this rank's GPU when one
        of them lives on a GPU, else the CPU."""
        return self.own_gpu if any(self.blobs[n].device.is_gpu for n in names) else CPU

    def temp(self, xfer):
        if xfer.id not in self.temps:
            self.temps[xfer.id] = Blob(None, CPU)
        return self.temps[xfer.id]

    def add(self, step, ins, outs, comm):
        self.steps.append(step)
        self.names.append((list(ins), list(outs)))
        self.is_comm.append(comm)

    def label(self, text):
        return self.board.encode(text)

    # --- events ------------------------------------------------------------------
    def op(self, e):
        step = e.step
        ins = list(step.in_names)
        for i, by_rank in e.pulls.items():
            xfer = by_rank.get(self.me)
            if xfer is not None:
                step.in_blobs[i] = self.temp(xfer)
                ins[i] = "xfer:%d" % xfer.id
        for i, holder in e.remote.items():
            if holder != self.me:  # the op reads only where it lives
                step.in_blobs[i] = Blob(RemoteValue(holder), step.in_blobs[i].device)
                ins[i] = "remote:%s" % step.in_names[i]
        if e.rank is EVERY_RANK and step.ctx is not None and step.ctx._seed is None:
            # replicated ops draw the same numbers on every rank
            step.ctx._seed = zlib.crc32(("%d/%s/%d" % (self.cluster.seed, self.net,
                                                       step.index)).encode())
        where = "%s on %s" % (_where(step, self.net), device_name(step.device))
        step.kernel = _tracked(step.kernel, self.board, self.label("running " + where))
        self.add(step, ins + list(step.op.control_input), step.out_names, False)

    def xfer(self, x):
        comm, tag = self.comm, _tag(x.id)
        where = _where(x.step, self.net)
        if x.src == self.me:
            text = "%s: send '%s' to rank %d" % (where, x.name, x.dst)
            status = self.label("waiting in " + text)

            def send(ctx, args, value, _board=self.board):
                _board.set_label(status)
                comm.send(value, x.dst, tag, text)
                return ()
            blob = self.blobs[x.name]
            self.add(_comm_step(x.step, "%s [send to rank %d]" % (x.step.op_type, x.dst),
                                send, [x.name], [blob], [], [], [],
                                self.own_gpu if x.device.is_gpu
                                else self.sender_device([x.name])), [x.name], [], True)
        elif x.dst == self.me:
            text = "%s: receive '%s' from rank %d" % (where, x.name, x.src)
            status = self.label("waiting in " + text)

            def recv(ctx, args, _board=self.board):
                _board.set_label(status)
                return _placed(comm.recv(x.src, tag, text), x.device)
            out = self.blobs[x.name] if x.push else self.temp(x)
            out_name = x.name if x.push else "xfer:%d" % x.id
            self.add(_comm_step(x.step, "%s [receive from rank %d]" % (x.step.op_type,
                                                                       x.src),
                                recv, [], [], [out_name], [out], [x.device], x.device),
                     [], [out_name], True)

    def allreduce(self, e):
        if self.me not in e.ranks:
            return
        step, comm = e.step, self.comm
        mine = e.local[self.me]
        text = "%s: all-reduce (sum) over ranks %s" % (
            _where(step, self.net), ", ".join(map(str, e.ranks)))
        status = self.label("waiting in " + text)

        def allreduce(ctx, args, *inputs, _board=self.board):
            _board.set_label(status)
            _check_float_inputs(inputs, [step.in_names[i] for i in mine])
            total = comm.allreduce_sum(_partial_sum(inputs, comm.device is not None),
                                       e.ranks, text)
            return tuple(_placed(total, step.out_devices[i], fresh=True) for i in mine)
        ins = [step.in_names[i] for i in mine]
        outs = [step.out_names[i] for i in mine]
        self.add(_comm_step(step, "NCCLAllreduce [all-reduce over ranks %s]"
                            % ",".join(map(str, e.ranks)), allreduce, ins,
                            [step.in_blobs[i] for i in mine], outs,
                            [step.out_blobs[i] for i in mine],
                            [step.out_devices[i] for i in mine],
                            step.out_devices[mine[0]]), ins, outs, True)

    def exchange(self, e):
        if self.me not in e.ranks:
            return
        comm = self.comm
        sends = [x for x in e.xfers if x.src == self.me]
        recvs = [x for x in e.xfers if x.dst == self.me]
        expect = {}
        for x in recvs:
            expect[x.src] = expect.get(x.src, 0) + 1
        first = e.xfers[0].step
        text = "net '%s': %s (ops #%d..#%d)" % (
            self.net, e.label, min(x.step.index for x in e.xfers),
            max(x.step.index for x in e.xfers))
        status = self.label("waiting in " + text)

        def exchange(ctx, args, *values, _board=self.board):
            _board.set_label(status)
            out = {}
            for x, v in zip(sends, values):
                out.setdefault(x.dst, []).append(v)
            got = comm.alltoallv(out, expect, e.ranks, text)
            return tuple(_placed(got[x.src].pop(0), x.device) for x in recvs)
        ins = [x.name for x in sends]
        outs = [x.name if x.push else "xfer:%d" % x.id for x in recvs]
        out_blobs = [self.blobs[x.name] if x.push else self.temp(x) for x in recvs]
        device = recvs[0].device if recvs else self.sender_device(ins)
        self.add(_comm_step(first, "all-to-all [%s]" % e.label, exchange, ins,
                            [self.blobs[n] for n in ins], outs, out_blobs,
                            [x.device for x in recvs], device), ins, outs, True)

    def dependencies(self):
        """dag parents by position, plus a chain through the communication steps."""
        proxies = [types.SimpleNamespace(index=i, in_names=ins, out_names=outs, op=_NO_OP)
                   for i, (ins, outs) in enumerate(self.names)]
        parents = dependencies(proxies)
        last = None
        for i, comm in enumerate(self.is_comm):
            if comm:
                if last is not None and last not in parents[i]:
                    parents[i] = sorted(parents[i] + [last])
                last = i
        return parents


def _check_float_inputs(inputs, names):
    dtype = inputs[0].dtype
    for i, x in enumerate(inputs):
        if x.dtype != dtype or dtype.name not in ("float32", "float16"):
            raise EnforceError("NCCLAllreduce: all inputs must be float32 or all float16; "
                               "'%s' is %s ('%s' is %s). Fix: cast with a Cast op or feed "
                               "float32." % (names[i], x.dtype, names[0], dtype))
        if x.shape != inputs[0].shape:
            raise EnforceError("NCCLAllreduce requires inputs to be of same shape: '%s' is "
                               "%s, '%s' is %s." % (names[i], list(x.shape), names[0],
                                                     list(inputs[0].shape)))


def local_steps(cluster, plan, schedule, blobs):
    """(steps, dag parents) this rank runs for `schedule`."""
    local = _Local(cluster, plan, blobs)
    for e in schedule.events:
        if e.kind == "op":
            if e.runs_on(local.me):
                local.op(e)
        elif e.kind == "xfer":
            local.xfer(e)
        elif e.kind == "allreduce":
            local.allreduce(e)
        else:
            local.exchange(e)
    return local.steps, local.dependencies()
