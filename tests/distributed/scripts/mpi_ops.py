"""Caffe2's MPI ops on every rank of the job, as caffe2/python/operator_test/mpi_test.py
drove them (each rank runs its own copy of each op); asserts, then prints a line.

    mpiexec -n R python -m graphnet run mpi_ops.py                   # placement on
    GRAPHNET_DIST=0 mpiexec -n R python -m graphnet run mpi_ops.py   # Caffe2's model

With placement on, `gpu_0` is one device of the whole job (rank 0's); with
GRAPHNET_DIST=0 every rank is an independent process with its own GPU 0, as in
Caffe2 MPI programs, and only the MPI ops talk.
"""

import numpy as np

from caffe2.python import core, workspace
from graphnet import distributed

rank, size = distributed.mpi_comm().rank, distributed.mpi_comm().size
X = np.zeros((3, 2), np.float32)


def run(op_type, inputs, outputs, **kw):
    assert workspace.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **kw))


run("MPICreateCommonWorld", [], "comm")
world = workspace.FetchBlob("comm")  # the wrapper object, as a 0-d object array
assert world.item().size == size and world.item().rank == rank, world

for root in range(size):  # MPIBroadcast: in place, any dtype (raw bytes)
    workspace.FeedBlob("X", X + rank)
    run("MPIBroadcast", ["comm", "X"], "X", root=root)
    np.testing.assert_array_equal(workspace.FetchBlob("X"), root)
    workspace.FeedBlob("I", np.full(4, rank, np.int64))
    run("MPIBroadcast", ["comm", "I"], "I", root=root)
    assert workspace.FetchBlob("I").dtype == np.int64
    np.testing.assert_array_equal(workspace.FetchBlob("I"), root)

for inplace in (False, True):  # MPIAllreduce: sum on every rank
    workspace.FeedBlob("X", X + rank)
    out = "X" if inplace else "X_reduced"
    run("MPIAllreduce", ["comm", "X"], out)
    np.testing.assert_array_equal(workspace.FetchBlob(out), size * (size - 1) / 2)

for root in range(size):  # MPIReduce: the sum on root
    workspace.FeedBlob("X", X + rank)
    run("MPIReduce", ["comm", "X"], "X_reduced", root=root)
    if rank == root:
        np.testing.assert_array_equal(workspace.FetchBlob("X_reduced"),
                                      size * (size - 1) / 2)

workspace.FeedBlob("X", X + rank)  # MPIAllgather: stacked along dim 0 in rank order
run("MPIAllgather", ["comm", "X"], "X_all")
np.testing.assert_array_equal(workspace.FetchBlob("X_all"),
                              np.concatenate([X + r for r in range(size)]))

for specify_blobs in (False, True):  # MPISendTensor / MPIReceiveTensor, every pair
    for src in range(size):
        for dst in range(size):
            tag = src * size + dst
            if src == dst:
                continue
            if rank == src:
                workspace.FeedBlob("X", X + rank)
                if specify_blobs:
                    workspace.FeedBlob("dst", np.array(dst, np.int32))
                    workspace.FeedBlob("tag", np.array(tag, np.int32))
                    run("MPISendTensor", ["comm", "X", "dst", "tag"], [], raw_buffer=True)
                else:
                    run("MPISendTensor", ["comm", "X"], [], dst=dst, tag=tag,
                        raw_buffer=True)
            elif rank == dst:
                workspace.FeedBlob("X", X - 1)
                if specify_blobs:
                    workspace.FeedBlob("src", np.array(src, np.int32))
                    workspace.FeedBlob("tag", np.array(tag, np.int32))
                    run("MPIReceiveTensor", ["comm", "X", "src", "tag"],
                        ["X", "src", "tag"], raw_buffer=True)
                else:
                    run("MPIReceiveTensor", ["comm", "X"], ["X", "src", "tag"],
                        src=src, tag=tag, raw_buffer=True)
                np.testing.assert_array_equal(workspace.FetchBlob("X"), src)
                np.testing.assert_array_equal(workspace.FetchBlob("src"), src)
                np.testing.assert_array_equal(workspace.FetchBlob("tag"), tag)
                assert workspace.FetchBlob("src").shape == ()
            run("MPIAllreduce", ["comm", "X"], "sync")  # everyone waits for the pair

if rank == 1:  # any source, any tag (the defaults)
    workspace.FeedBlob("X", X + 7)
    run("MPISendTensor", ["comm", "X"], [], dst=0, tag=42, raw_buffer=True)
elif rank == 0:
    workspace.FeedBlob("X", X)
    run("MPIReceiveTensor", ["comm", "X"], ["X", "src", "tag"], raw_buffer=True)
    np.testing.assert_array_equal(workspace.FetchBlob("X"), 7)
    assert int(workspace.FetchBlob("src")) == 1 and int(workspace.FetchBlob("tag")) == 42

if distributed.is_active():
    # placement on: a blob fed on gpu_0 lives on rank 0 only; an MPI op (run on every
    # rank) reading it gets rank 0's value on every rank
    workspace.SetVirtualGpuCount(1)
    net = core.Net("mpi_net_placed")
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 0)):
        net.MPIAllreduce(["comm", "G"], "G_sum")
    workspace.FeedBlob("G", np.full(2, rank + 1, np.float32),
                       core.DeviceOption(workspace.GpuDeviceType, 0))
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("G_sum"), size)
    print("MPI ops OK on rank %d of %d (placement on)" % (rank, size))
    raise SystemExit(0)

# Caffe2's model: every process has its own GPU 0 and runs the whole net
workspace.SetVirtualGpuCount(1)
net = core.Net("mpi_net")
with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 0)):
    net.MPIAllreduce(["comm", "G"], "G_sum")
workspace.FeedBlob("G", np.full(2, rank + 1, np.float32),
                   core.DeviceOption(workspace.GpuDeviceType, 0))
workspace.RunNetOnce(net)
np.testing.assert_array_equal(workspace.FetchBlob("G_sum"), size * (size + 1) / 2)
print("MPI ops OK on rank %d of %d (independent processes)" % (rank, size))
