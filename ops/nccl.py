"""Collectives across GPUs: NCCLAllreduce, NCCLBroadcast, NCCLReduce, NCCLAllGather,
NCCLReduceScatter.

Caffe2's contrib/nccl ops (CUDA only). Input i lives on GPU i of the
communicator (its own device), outputs land where their input lives, and
the op's own device only names the stream that drives the collective. On
emulated GPUs the reduction is a numpy sum with the same semantics and
device bookkeeping; the CuPy executor lowers these ops to NCCL.
"""

import numpy as np

from graphnet.devices import device_name
from graphnet.errors import EnforceError
from graphnet.registry import Arg, INF, OpSchema, TensorInfo, enforce


def _per_input_devices(schema, op_device, n_in, n_out, input_devices):
    """Each input on its own device (distinct); output i where input i lives."""
    known = [d for d in input_devices if d is not None]
    if len(set(known)) != len(known):
        seen = {}
        for i, d in enumerate(input_devices):
            if d is not None and d in seen:
                raise EnforceError(
                    "%s: inputs %d and %d both live on %s; a collective takes one "
                    "tensor per device. Fix: Copy one of them to another GPU or Sum them "
                    "first." % (schema.type, seen[d], i, device_name(d)), input_index=i)
            seen[d] = i
    outs = []
    for o in range(n_out):
        source = input_devices[o] if n_out > 1 else input_devices[0] if n_in == 1 else None
        outs.append(source if source is not None else op_device)
    return [None] * n_in, outs


def _reduce_devices(schema, op_device, n_in, n_out, input_devices):
    wanted, _ = _per_input_devices(schema, op_device, n_in, n_out, input_devices)
    return wanted, [op_device] * n_out


_NCCL_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def _same_float_inputs(op_type, inputs):
    dtype = inputs[0].dtype
    for i, x in enumerate(inputs):
        if not (x.dtype == dtype and dtype in _NCCL_FLOATS):
            enforce(False,
                    "%s: all inputs must be float32 or all float16; input %d is %s (input 0 "
                    "is %s). Fix: cast with a Cast op or feed float32." % (
                        op_type, i, x.dtype, dtype), input_index=i)
        if x.shape != inputs[0].shape:
            enforce(False,
                    "%s requires inputs to be of same shape: input %d is %s, input 0 is %s."
                    % (op_type, i, list(x.shape), list(inputs[0].shape)), input_index=i)


def _identical_shapes(args, *infos):
    for i, info in enumerate(infos):
        if info.shape != infos[0].shape:
            enforce(False,
                    "NCCLAllreduce requires inputs to be of same shape (input %d: %s, input 0:"
                    " %s)" % (i, list(info.shape), list(infos[0].shape)))
    return [TensorInfo(infos[0].shape, infos[0].dtype) for _ in infos]


ALLREDUCE = OpSchema(
    "NCCLAllreduce", inputs=(1, INF), outputs=(1, INF), args=[Arg("root", "int", 0)],
    declared_devices="gpu_per_input",
    output_check=lambda n: True, allow_inplace=lambda i, o: i == o,
    devices=_per_input_devices, device_kinds=("gpu",), should_not_do_gradient=True,
    doc="Sum the inputs (one per GPU) elementwise; output i, on input i's GPU, gets the "
        "sum. With one output only the root receives it.")


@ALLREDUCE.shape
def _allreduce_shape(args, *infos):
    return _identical_shapes(args, *infos)


def _check_allreduce(ctx, inputs):
    if ctx.num_outputs not in (1, len(inputs)):
        enforce(False,
                "NCCLAllreduce: %d outputs for %d inputs; use one output per input (or one "
                "output for a reduce to the root)." % (ctx.num_outputs, len(inputs)))
    _same_float_inputs("NCCLAllreduce", inputs)


@ALLREDUCE.kernel
def nccl_allreduce(ctx, args, *inputs):
    _check_allreduce(ctx, inputs)
    total = inputs[0].astype(inputs[0].dtype, copy=True)
    for x in inputs[1:]:
        total += x
    if ctx.num_outputs == 1:
        return total
    return tuple([total] + [ctx.xp.array(total, copy=True) for _ in inputs[1:]])


BROADCAST = OpSchema(
    "NCCLBroadcast", inputs=(1, INF), outputs=(1, INF), args=[Arg("root", "int", 0)],
    declared_devices="gpu_per_input",
    enforce_inplace=lambda i, o: i == o, devices=_per_input_devices,
    device_kinds=("gpu",), should_not_do_gradient=True,
    doc="Copy the root's tensor into every input (in place, one per GPU).")


@BROADCAST.shape
def _broadcast_shape(args, *infos):
    return [TensorInfo(info.shape, info.dtype) for info in infos]


@BROADCAST.kernel
def nccl_broadcast(ctx, args, *inputs):
    if not (0 <= args.root < len(inputs)):
        enforce(False, "NCCLBroadcast: root %d out of range for %d "
                "inputs" % (args.root, len(inputs)))
    _same_float_inputs("NCCLBroadcast", inputs)
    source = inputs[args.root]
    return tuple(ctx.xp.array(source, copy=True) for _ in inputs)


REDUCE = OpSchema(
    "NCCLReduce", inputs=(1, INF), outputs=1, args=[Arg("root", "int", 0)],
    declared_devices="gpu_per_input",
    allow_inplace=lambda i, o: o == 0, devices=_reduce_devices, device_kinds=("gpu",),
    should_not_do_gradient=True,
    doc="Sum the inputs (one per GPU) into one output on the op's device.")


@REDUCE.shape
def _reduce_shape(args, *infos):
    return [TensorInfo(infos[0].shape, infos[0].dtype)]


@REDUCE.kernel
def nccl_reduce(ctx, args, *inputs):
    _same_float_inputs("NCCLReduce", inputs)
    total = inputs[0].astype(inputs[0].dtype, copy=True)
    for x in inputs[1:]:
        total += x
    return total


def _one_output_per_input(op_type, ctx, inputs):
    # Caffe2 gives the collective one element per input and writes output i from it:
    # with fewer outputs its elements had no destination (a crash there).
    if ctx.num_outputs != len(inputs):
        enforce(False, "%s: %d outputs for %d inputs; it writes one output per input "
                "(output i on input i's GPU). Fix: name %d outputs." % (
                    op_type, ctx.num_outputs, len(inputs), len(inputs)))


ALL_GATHER = OpSchema(
    "NCCLAllGather", inputs=(1, INF), outputs=(1, INF), declared_devices="gpu_per_input",
    devices=_per_input_devices, device_kinds=("gpu",), should_not_do_gradient=True,
    doc="Every output i (on input i's GPU) gets all N inputs stacked: shape "
        "[N] + input shape, input j at [j]. Inputs float32 or float16, equal shapes; "
        "not in place.")


@ALL_GATHER.shape
def _all_gather_shape(args, *infos):
    _identical_shapes(args, *infos)
    shape = (len(infos),) + tuple(infos[0].shape)
    return [TensorInfo(shape, infos[0].dtype) for _ in infos]


@ALL_GATHER.kernel
def nccl_all_gather(ctx, args, *inputs):
    _one_output_per_input("NCCLAllGather", ctx, inputs)
    _same_float_inputs("NCCLAllGather", inputs)
    return tuple(ctx.xp.stack(inputs) for _ in inputs)


REDUCE_SCATTER = OpSchema(
    "NCCLReduceScatter", inputs=(1, INF), outputs=(1, INF),
    declared_devices="gpu_per_input", devices=_per_input_devices, device_kinds=("gpu",),
    should_not_do_gradient=True,
    doc="Inputs of shape [N, ...] (N = the number of inputs); output i (on input i's GPU) "
        "is the sum over the inputs of their slice [i], shape [...]. Float32 or float16, "
        "equal shapes; not in place.")


def _check_scatter_rows(shape, n):
    if len(shape) < 1 or shape[0] != n:
        enforce(False, "NCCLReduceScatter: each input's first dimension must be the number "
                "of inputs (%d) so that output i receives the sum of slice [i]; found shape "
                "%s. Fix: reshape the inputs to [%d, ...]." % (n, list(shape), n))


@REDUCE_SCATTER.shape
def _reduce_scatter_shape(args, *infos):
    _identical_shapes(args, *infos)
    _check_scatter_rows(tuple(infos[0].shape), len(infos))
    return [TensorInfo(tuple(infos[0].shape)[1:], infos[0].dtype) for _ in infos]


@REDUCE_SCATTER.kernel
def nccl_reduce_scatter(ctx, args, *inputs):
    _one_output_per_input("NCCLReduceScatter", ctx, inputs)
    _same_float_inputs("NCCLReduceScatter", inputs)
    _check_scatter_rows(inputs[0].shape, len(inputs))
    outs = []
    for i in range(len(inputs)):
        total = inputs[0][i].copy()
        for x in inputs[1:]:
            total += x[i]
        outs.append(total)
    return tuple(outs)


# --- CUDA kernels (backend "cupy") ---------------------------------------------------
# The same checks, then graphnet.executors.cuda.nccl: per physical GPU a local
# combination of the inputs it hosts, one grouped NCCL call across physical GPUs, and
# outputs copied out on each input's GPU (imported only when the op runs on a GPU).

@ALLREDUCE.kernel(backend="cupy")
def nccl_allreduce_cuda(ctx, args, *inputs):
    _check_allreduce(ctx, inputs)
    from graphnet.executors.cuda import nccl
    return nccl.allreduce(ctx.backend, _on_device(ctx, inputs), ctx.num_outputs)


@BROADCAST.kernel(backend="cupy")
def nccl_broadcast_cuda(ctx, args, *inputs):
    if not (0 <= args.root < len(inputs)):
        enforce(False, "NCCLBroadcast: root %d out of range for %d "
                "inputs" % (args.root, len(inputs)))
    _same_float_inputs("NCCLBroadcast", inputs)
    from graphnet.executors.cuda import nccl
    return nccl.broadcast(ctx.backend, _on_device(ctx, inputs), args.root)


@REDUCE.kernel(backend="cupy")
def nccl_reduce_cuda(ctx, args, *inputs):
    _same_float_inputs("NCCLReduce", inputs)
    from graphnet.executors.cuda import nccl
    return nccl.reduce(ctx.backend, _on_device(ctx, inputs))


def _on_device(ctx, inputs):
    """Host inputs (a CPU-fed blob) go to the op's GPU first."""
    xp = ctx.xp
    return [x if isinstance(x, xp.ndarray) else ctx.backend.copy_to(x, ctx.device)
            for x in inputs]


# NCCLAllGather / NCCLReduceScatter on real GPUs: each output is assembled on its own
# input's GPU, on that GPU's collective stream, from copies of the other inputs
# (graphnet.executors.cuda.nccl), so any logical -> physical mapping gives the same
# values.

@ALL_GATHER.kernel(backend="cupy")
def nccl_all_gather_cuda(ctx, args, *inputs):
    _one_output_per_input("NCCLAllGather", ctx, inputs)
    _same_float_inputs("NCCLAllGather", inputs)
    from graphnet.executors.cuda import nccl
    return nccl.all_gather(ctx.backend, _on_device(ctx, inputs))


@REDUCE_SCATTER.kernel(backend="cupy")
def nccl_reduce_scatter_cuda(ctx, args, *inputs):
    _one_output_per_input("NCCLReduceScatter", ctx, inputs)
    _same_float_inputs("NCCLReduceScatter", inputs)
    _check_scatter_rows(inputs[0].shape, len(inputs))
    from graphnet.executors.cuda import nccl
    return nccl.reduce_scatter(ctx.backend, _on_device(ctx, inputs))
