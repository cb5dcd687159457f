"""Placement semantics on 2 ranks x 2 devices (4 emulated GPUs); asserts on every rank.

    GRAPHNET_DEVICES_PER_RANK=2 mpiexec -n 2 python -m graphnet run semantics.py
"""

import warnings

import numpy as np
from mpi4py import MPI

from caffe2.python import core, workspace
from graphnet import distributed
from graphnet.distributed.placement import RemoteValue

rank, size = distributed.rank(), distributed.world_size()
assert size == 2, size
world = MPI.COMM_WORLD
workspace.SetVirtualGpuCount(4)


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def local_value(name):
    return workspace._ws()._blobs[name].value


# 1. a blob fed onto gpu_2 (rank 1's) is kept only by rank 1
workspace.FeedBlob("a2", np.arange(4, dtype=np.float32), gpu(2))
if rank == 0:
    assert isinstance(local_value("a2"), RemoteValue) and local_value("a2").owner == 1
else:
    np.testing.assert_array_equal(local_value("a2"), np.arange(4))
# ... and FetchBlob brings it to every rank (collective: its holder broadcasts it)
np.testing.assert_array_equal(workspace.FetchBlob("a2"), np.arange(4))
assert workspace.BlobDevice("a2").id == 2

# 2. copies within a rank stay local; across ranks they are a send / receive
net = core.Net("moves")
with core.DeviceScope(gpu(0)):
    net.Relu("a0", "r0")
with core.DeviceScope(gpu(1)):
    net.Copy("r0", "r0_on1")          # rank 0 -> rank 0: local
with core.DeviceScope(gpu(3)):
    net.Copy("r0_on1", "r0_on3")      # rank 0 -> rank 1: send / receive
    net.Add(["r0_on3", "a2"], "s3")   # a2 lives on gpu_2, same rank: a local read
with core.DeviceScope(gpu(3)):
    net.CopyGPUToCPU("s3", "s_cpu")   # CPU blob written on rank 1 only
net.Scale("s_cpu", "s_cpu_x2", scale=2.0)  # a CPU op runs on every rank: pulls s_cpu
workspace.FeedBlob("a0", np.array([-1, 0, 1, 2], np.float32), gpu(0))
distributed.reset_stats()
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    workspace.RunNetOnce(net)
expected = np.maximum([-1, 0, 1, 2], 0) + np.arange(4)
np.testing.assert_array_equal(workspace.FetchBlob("s3"), expected)
np.testing.assert_array_equal(workspace.FetchBlob("s_cpu"), expected)
np.testing.assert_array_equal(local_value("s_cpu_x2"), 2 * expected)  # on each rank
sent = distributed.stats()
if rank == 0:   # r0_on1 to rank 1, then the FetchBlob broadcasts (none from rank 0)
    assert sent["messages"] == 1, sent
else:           # s_cpu to rank 0 (for the CPU Scale)
    assert sent["messages"] == 1, sent
if rank == 0:
    assert isinstance(local_value("s3"), RemoteValue)
# GPU arrays would travel over NCCL only if every rank ran its GPU ops on CuPy
how, why = distributed.transport()
assert how == "mpi" and why.startswith("rank 0: its GPU ops run on numpy"), (how, why)

# 3. replicated CPU ops with random fills draw the same numbers on every rank
init = core.Net("init")
init.UniformFill([], "u", shape=[5], min=0.0, max=1.0)
init.GaussianFill([], "g", shape=[3])
workspace.RunNetOnce(init)
for name in ("u", "g"):
    mine = local_value(name)
    others = world.allgather(mine)
    assert all(np.array_equal(mine, o) for o in others), (name, others)

# 4. blobs moving between runs: the net is lowered again for the new holders
net2 = core.Net("moving")
with core.DeviceScope(gpu(1)):
    net2.Relu("m", "m_relu")
workspace.FeedBlob("m", np.array([-3.0, 3.0], np.float32), gpu(3))  # held by rank 1
workspace.CreateNet(net2)
workspace.RunNet("moving")
np.testing.assert_array_equal(workspace.FetchBlob("m_relu"), [0, 3])
workspace.FeedBlob("m", np.array([5.0, -5.0], np.float32), gpu(0))  # now rank 0
workspace.RunNet("moving")
np.testing.assert_array_equal(workspace.FetchBlob("m_relu"), [5, 0])

# 5. NCCLAllreduce over 4 devices on 2 ranks: local partial sums + one MPI all-reduce
net3 = core.Net("allreduce")
names = ["g%d" % d for d in range(4)]
with core.DeviceScope(gpu(0)):
    net3.NCCLAllreduce(names, names)
for d in range(4):
    workspace.FeedBlob("g%d" % d, np.full(3, d + 1, np.float32), gpu(d))
workspace.RunNetOnce(net3)
for d in range(4):
    np.testing.assert_array_equal(workspace.FetchBlob("g%d" % d), 10)
    assert workspace.BlobDevice("g%d" % d).id == d
print("semantics OK on rank %d" % rank)
