"""Caffe2's MPI ops (caffe2/mpi/mpi_ops.h): MPICreateCommonWorld, MPIBroadcast,
MPIReduce, MPIAllgather, MPIAllreduce, MPISendTensor, MPIReceiveTensor.

They run in the process that calls them, as in Caffe2 (each rank runs its own
copy; under `graphnet run` on several ranks they are `every_rank` ops, never
placed on one rank). Counts and in-place rules are those of their engine twins
in caffe2/operators/communicator_op.cc (Receive: 2 or 4 inputs, Y in place,
3 outputs; Send: 2 or 4 inputs); none has a gradient. Input 0 is the common
world that MPICreateCommonWorld made by duplicating the global communicator. Reduce, Allgather and Allreduce take
float32 only (Caffe2 registered the float kernels only); Broadcast, Send and
Receive move raw bytes of any dtype. Waits poll with graphnet's deadline and
failure notices, so a lost peer gives an error, not a hang. mpi4py is imported
only when one of these ops runs.
"""

import numpy as np

from graphnet.devices import CPU
from graphnet.errors import ArgumentError
from graphnet.registry import Arg, INF, OpSchema, TensorInfo, enforce


class MPICommonWorld(object):
    """Blob value of a common world: the communicator, its size and this rank."""

    def __init__(self, comm):
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()

    def __repr__(self):
        return "MPICommonWorld(rank %d of %d)" % (self.rank, self.size)


def _runtime():
    """graphnet's Comm (deadline, notices) and mpi4py's MPI module."""
    from graphnet.distributed import mpi_comm
    comm = mpi_comm()
    return comm, comm.MPI


def _world(op_type, value):
    if not (isinstance(value, MPICommonWorld)):
        enforce(False,
                "%s: input 0 must be a common world made by MPICreateCommonWorld, found %s."
                " Fix: run MPICreateCommonWorld([], ['comm']) first and pass 'comm' as "
                "input 0." % (op_type, type(value).__name__), input_index=0)
    return value


def _float(op_type, x, index=1):
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
        enforce(False,
                "%s: Tensor type mismatch, caller expects elements to be float while tensor "
                "contains %s. (Caffe2 registered the float kernel only; cast to float32.)"
                % (op_type, getattr(x, "dtype", type(x).__name__)), input_index=index)


def _label(ctx):
    return "%s (%s)" % (ctx.op.type, ", ".join(ctx.input_names[1:2]) or "-")


def _mpi_devices(schema, op_device, n_in, n_out, input_devices):
    """The world anywhere, the tensor on the op's device, rank / tag blobs on CPU."""
    wanted = ([None, op_device] + [CPU] * max(0, n_in - 2))[:n_in]
    outs = ([op_device] + [CPU] * max(0, n_out - 1))[:n_out]
    return wanted, outs


def _schema(op_type, **kw):
    schema = OpSchema(op_type, devices=_mpi_devices, should_not_do_gradient=True, **kw)
    schema.every_rank = True  # runs in every process that calls it (graphnet.distributed)
    return schema


def _same(args, comm, x, *rest):
    return [TensorInfo(x.shape, x.dtype)]


# --- MPICreateCommonWorld -----------------------------------------------------------

CREATE_COMMON_WORLD = _schema(
    "MPICreateCommonWorld", inputs=0, outputs=1,
    doc="A common world with the topology of the global communicator (Caffe2: "
        "MPI_Comm_split of it with color 0). Collective over every rank.")


@CREATE_COMMON_WORLD.kernel
def mpi_create_common_world(ctx, args):
    comm, MPI = _runtime()
    new, request = MPI.COMM_WORLD.Idup()
    comm.wait([request], "MPICreateCommonWorld", range(comm.size))
    return MPICommonWorld(new)


# --- MPIBroadcast -------------------------------------------------------------------

BROADCAST = _schema(
    "MPIBroadcast", inputs=2, outputs=1, args=[Arg("root", "int", 0)],
    enforce_inplace={(1, 0)},
    doc="Overwrite X (in place, already allocated) with root's X, byte for byte.")
BROADCAST.shape(_same)


@BROADCAST.kernel
def mpi_broadcast(ctx, args, world, x):
    comm, MPI = _runtime()
    world = _world("MPIBroadcast", world)
    enforce(isinstance(x, np.ndarray), "Output is of wrong type.", input_index=1)
    enforce(x.size > 0, "Broadcast op uses in-place operation so the output should be "
            "already allocated.", input_index=1)
    if not (0 <= args.root < world.size):
        enforce(False, "MPIBroadcast: root %d is not a rank of the "
                "%d-rank common world." % (args.root, world.size))
    out = np.array(x, copy=True, order="C")
    comm.wait([world.comm.Ibcast([out.reshape(-1).view(np.uint8), MPI.BYTE],
                                 root=args.root)], _label(ctx), range(world.size))
    return out


# --- MPIReduce / MPIAllgather / MPIAllreduce ---------------------------------------

REDUCE = _schema(
    "MPIReduce", inputs=2, outputs=1, args=[Arg("root", "int", 0)],
    doc="Sum of X over the world into the root's output (float32). Other ranks' output "
        "is undefined in Caffe2; graphnet gives them zeros.")
REDUCE.shape(_same)


@REDUCE.kernel
def mpi_reduce(ctx, args, world, x):
    comm, MPI = _runtime()
    world = _world("MPIReduce", world)
    _float("MPIReduce", x)
    if not (0 <= args.root < world.size):
        enforce(False, "MPIReduce: root %d is not a rank of the "
                "%d-rank common world." % (args.root, world.size))
    send = np.asarray(x, order="C")
    out = np.zeros_like(send)
    comm.wait([world.comm.Ireduce(send, out, op=MPI.SUM, root=args.root)], _label(ctx),
              range(world.size))
    return out


ALLGATHER = _schema(
    "MPIAllgather", inputs=(2, INF), outputs=1,
    doc="Every rank's X stacked along dim 0 in rank order (float32).")


@ALLGATHER.kernel
def mpi_allgather(ctx, args, world, x, *ignored):
    comm, MPI = _runtime()
    world = _world("MPIAllgather", world)
    _float("MPIAllgather", x)
    enforce(x.ndim >= 1, "MPIAllgather: X must have at least one dimension.",
            input_index=1)
    send = np.asarray(x, order="C")
    out = np.empty((x.shape[0] * world.size,) + x.shape[1:], np.float32)
    comm.wait([world.comm.Iallgather(send, out)], _label(ctx), range(world.size))
    return out


ALLREDUCE = _schema(
    "MPIAllreduce", inputs=2, outputs=1, allow_inplace={(1, 0)},
    doc="Sum of X over the world, on every rank (float32; in place allowed).")
ALLREDUCE.shape(_same)


@ALLREDUCE.kernel
def mpi_allreduce(ctx, args, world, x):
    comm, MPI = _runtime()
    world = _world("MPIAllreduce", world)
    _float("MPIAllreduce", x)
    out = np.array(x, copy=True, order="C")
    comm.wait([world.comm.Iallreduce(MPI.IN_PLACE, out, op=MPI.SUM)], _label(ctx),
              range(world.size))
    return out


# --- MPISendTensor / MPIReceiveTensor ----------------------------------------------

def _check_send(args):
    if not args.raw_buffer:
        raise ArgumentError("[enforce fail] raw_buffer_. non-raw-buffer transfer not "
                            "supported yet. (MPISendTensor: pass raw_buffer=1)")
    if not args.has("dst") and args._num_inputs != 4:
        raise ArgumentError("[enforce fail] You should explicitly specify the to rank "
                            "either via argument or via input blobs. (MPISendTensor: "
                            "pass dst=, or inputs [comm, X, dst, tag])")
    if not args.has("tag") and args._num_inputs != 4:
        raise ArgumentError("[enforce fail] You should explicitly specify the tag either "
                            "via argument or via input blobs. (MPISendTensor: pass tag=, "
                            "or inputs [comm, X, dst, tag])")


def _check_receive(args):
    if not args.raw_buffer:
        raise ArgumentError("[enforce fail] raw_buffer_. non-raw-buffer transfer not "
                            "supported yet. (MPIReceiveTensor: pass raw_buffer=1)")


def _int_blob(op_type, value, index, what):
    if not (isinstance(value, np.ndarray) and value.dtype == np.int32 and value.size >= 1):
        enforce(False,
                "%s: input %d (%s) must be an int32 tensor, found %s." % (
                    op_type, index, what, getattr(value, "dtype", type(value).__name__)),
                input_index=index)
    return int(value.reshape(-1)[0])


SEND = _schema(
    "MPISendTensor", inputs=(2, 4), input_check=lambda n: n in (2, 4), outputs=0,
    args=[Arg("dst", "int"), Arg("tag", "int"), Arg("raw_buffer", "bool", False)],
    arg_check=_check_send,
    doc="Send X's bytes to rank `dst` with `tag` (args, or int32 inputs 2 and 3).")


@SEND.kernel
def mpi_send_tensor(ctx, args, world, x, *rest):
    comm, MPI = _runtime()
    world = _world("MPISendTensor", world)
    dst, tag = args.dst, args.tag
    if len(rest) == 2:
        dst = _int_blob("MPISendTensor", rest[0], 2, "dst")
        tag = _int_blob("MPISendTensor", rest[1], 3, "tag")
    enforce(isinstance(x, np.ndarray), "MPISendTensor: X must be a tensor.",
            input_index=1)
    data = np.asarray(x, order="C").reshape(-1).view(np.uint8)
    comm.wait([world.comm.Isend([data, MPI.BYTE], dest=dst, tag=tag)],
              "%s to rank %d" % (_label(ctx), dst), [dst])
    return ()


RECEIVE = _schema(
    "MPIReceiveTensor", inputs=(2, 4), input_check=lambda n: n in (2, 4), outputs=3,
    enforce_inplace={(1, 0)}, allow_inplace={(2, 1), (3, 2)},
    args=[Arg("src", "int"), Arg("tag", "int"), Arg("raw_buffer", "bool", False)],
    arg_check=_check_receive,
    doc="Receive bytes into output 0's existing tensor (from `src` with `tag`, args or "
        "int32 inputs 2 and 3; any source / tag by default); outputs 1 and 2 get the "
        "sender's rank and the tag (int32 scalars on the CPU).")


@RECEIVE.shape
def _receive_shape(args, world, x, *rest):
    scalar = TensorInfo((), np.int32)
    return [TensorInfo(x.shape, x.dtype), scalar, scalar]


@RECEIVE.kernel
def mpi_receive_tensor(ctx, args, world, x, *rest):
    comm, MPI = _runtime()
    world = _world("MPIReceiveTensor", world)
    src = args.src if args.has("src") else MPI.ANY_SOURCE
    tag = args.tag if args.has("tag") else MPI.ANY_TAG
    if len(rest) == 2:
        src = _int_blob("MPIReceiveTensor", rest[0], 2, "src")
        tag = _int_blob("MPIReceiveTensor", rest[1], 3, "tag")
    template = ctx.output_value(0)
    if not isinstance(template, np.ndarray):
        template = x
    if not (isinstance(template, np.ndarray) and template.size > 0):
        enforce(False,
                "MPIReceiveTensor receives into the tensor output 0 ('%s') already holds, as "
                "Caffe2 did; found %s. Fix: feed a tensor of the expected shape and dtype "
                "first." % (ctx.output_names[0], type(template).__name__))
    out = np.array(template, copy=True, order="C")
    status = MPI.Status()
    request = world.comm.Irecv([out.reshape(-1).view(np.uint8), MPI.BYTE], source=src,
                               tag=tag)
    comm.wait([request], _label(ctx), range(world.size) if src == MPI.ANY_SOURCE
              else [src], status=status)
    return (out, np.array(status.Get_source(), np.int32),
            np.array(status.Get_tag(), np.int32))

