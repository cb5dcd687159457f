"""cost: per-op FLOP/byte formulas, per-device totals, and the bytes a run moves
between devices (DLRM's butterfly shuffle and NCCLAllreduce checked by hand)."""

import numpy as np

from graphnet import core
from graphnet.analysis import communication, device_costs, op_costs
from graphnet.devices import CPU, Device
from graphnet.registry import TensorInfo
from tests.analysis import nets


def _one(build, shapes):
    net = core.Net("one")
    build(net)
    return op_costs(net.Proto(), shapes)[0]


def test_fc_and_matmul_flops():
    m, k, n = 4, 5, 8
    fc = _one(lambda net: net.FC(["x", "w", "b"], "y"),
              {"x": (m, k), "w": (n, k), "b": TensorInfo((n,), np.float32)})
    assert fc.flops == 2 * m * k * n + m * n
    assert fc.bytes == 4 * (m * k + n * k + n + m * n) and fc.known
    bmm = _one(lambda net: net.BatchMatMul(["a", "c"], "y", trans_b=1),
               {"a": (3, 4, 5), "c": (3, 6, 5)})
    assert bmm.flops == 2 * 5 * (3 * 4 * 6)
    mm = _one(lambda net: net.MatMul(["a", "c"], "y", trans_a=1),
              {"a": (5, 4), "c": (5, 7)})
    assert mm.flops == 2 * 5 * 4 * 7


def test_sparse_lengths_sum_counts_only_the_rows_it_gathers():
    shapes = {"table": ((1000, 16), "float32"), "ids": ((30,), "int64"),
              "lengths": ((8,), "int32")}
    sls = _one(lambda net: net.SparseLengthsSum(["table", "ids", "lengths"], "y"), shapes)
    assert sls.flops == 30 * 16
    assert sls.bytes == 30 * 16 * 4 + 30 * 8 + 8 * 4 + 8 * 16 * 4  # not the whole table
    gather = _one(lambda net: net.Gather(["table", "ids"], "y"), shapes)
    assert (gather.flops, gather.bytes) == (0, 2 * 30 * 16 * 4 + 30 * 8)


def test_elementwise_losses_optimizers_and_default():
    x = {"x": (10, 3), "y": (10, 3), "z": (10, 3)}
    assert _one(lambda net: net.Relu("x", "r"), x).flops == 30
    assert _one(lambda net: net.Sum(["x", "y", "z"], "s"), x).flops == 60
    assert _one(lambda net: net.SquaredL2Distance(["x", "y"], "d"), x).flops == 90
    sgd = _one(lambda net: net.WeightedSum(["x", "a", "y", "b"], "x"),
               dict(x, a=(1,), b=(1,)))
    assert sgd.flops == 3 * 30
    concat = _one(lambda net: net.Concat(["x", "y"], ["c", "info"], axis=1), x)
    assert concat.flops == 0 and concat.bytes == 4 * (30 + 30 + 60) + 4 * 2
    unknown = _one(lambda net: net.Relu("nothing_known", "r"), {})
    assert unknown == (0, 0, False)


def test_device_costs_of_dlrm_forward():
    case = nets.dlrm_forward()
    per_device = device_costs(case.netdef, case.shapes, case.devices)
    assert sorted(per_device) == [Device(1, d) for d in range(4)]
    assert sum(c.ops for c in per_device.values()) == len(case.netdef.op)
    costs = op_costs(case.netdef, case.shapes)
    assert all(c.known for c in costs)
    assert sum(c.flops for c in per_device.values()) == sum(c.flops for c in costs)


def test_dlrm_forward_communication_is_the_butterfly_shuffle():
    """Each table's pooled output (B, d) float32 is split over N devices; the N - 1
    slices that do not stay home are copied, B/N rows each."""
    n, batch, dim, tables = 4, 8, 2, 4
    case = nets.dlrm_forward(ndevices=n, batch=batch)
    comm = communication(case.netdef, case.shapes, case.devices)
    per_table = (n - 1) * (batch * dim * 4) // n
    assert comm.total == tables * per_table == 192
    assert comm.by_kind == {"copy": 192} and not comm.unknown
    slice_bytes = batch // n * dim * 4
    assert comm.by_pair == {(Device(1, s), Device(1, d)): slice_bytes
                            for s in range(n) for d in range(n) if s != d}


def test_dlrm_training_allreduce_volume_and_implicit_reads():
    """Ring all-reduce: each of N devices sends 2 (N - 1) / N of every dense gradient
    to the next; the loss seeds on GPU 0 are read by GPUs 1..3."""
    n = 4
    case = nets.dlrm_training(ndevices=n, num_batches=1)
    comm = communication(case.netdef, case.observed_shapes(), case.devices)
    dense = sum(v.nbytes for name, (v, _) in case.feeds.items()
                if name.startswith("gpu_0/") and ":::fc" in name)
    assert dense == 4 * (3 * 4 + 3 + 2 * 3 + 2 + 2 * 12 + 2 + 1 * 2 + 1)
    assert comm.by_kind["collective"] == 2 * (n - 1) * dense
    ring = [t for t in comm.transfers if t.kind == "collective"]
    assert {(t.src.id, t.dst.id) for t in ring} == {(d, (d + 1) % n) for d in range(n)}
    assert sum(t.bytes for t in ring if t.src.id == 0) == 2 * (n - 1) * dense // n
    implicit = [t for t in comm.transfers if t.kind == "implicit"]
    assert sorted((t.src.id, t.dst.id, t.bytes) for t in implicit) == [
        (0, 1, 4), (0, 2, 4), (0, 3, 4)]
    slice_bytes = 16 // n * 2 * 4
    assert comm.by_kind["copy"] == 2 * 4 * (n - 1) * slice_bytes  # forward + gradient


def test_broadcast_reduce_and_host_copies():
    """Broadcast: a chain from the root; reduce: a chain ending at the op's device."""
    net = core.Net("collectives")
    blobs = ["gpu_%d/x" % d for d in range(3)]
    with core.DeviceScope(core.DeviceOption(1, 0)):
        net.NCCLBroadcast(blobs, blobs, root=1)
        net.NCCLReduce(blobs, ["gpu_0/sum"])
        net.CopyGPUToCPU("gpu_0/sum", "host")
    with core.DeviceScope(core.DeviceOption(1, 2)):
        net.CopyCPUToGPU("host", "gpu_2/back")
    devices = {b: Device(1, d) for d, b in enumerate(blobs)}
    comm = communication(net.Proto(), {b: (10,) for b in blobs}, devices)
    links = [(t.op_type, t.src, t.dst, t.bytes) for t in comm.transfers]
    g = [Device(1, d) for d in range(3)]
    assert links == [("NCCLBroadcast", g[1], g[0], 40), ("NCCLBroadcast", g[0], g[2], 40),
                     ("NCCLReduce", g[1], g[2], 40), ("NCCLReduce", g[2], g[0], 40),
                     ("CopyGPUToCPU", g[0], CPU, 40), ("CopyCPUToGPU", CPU, g[2], 40)]


def test_all_gather_and_reduce_scatter_are_rings():
    """3 devices, inputs of 30 float32 (120 bytes): the all-gather sends (n-1) * S = 240
    bytes per link, the reduce-scatter (n-1)/n * S = 80."""
    net = core.Net("gather_scatter")
    blobs = ["gpu_%d/x" % d for d in range(3)]
    with core.DeviceScope(core.DeviceOption(1, 0)):
        net.NCCLAllGather(blobs, ["gpu_%d/all" % d for d in range(3)])
        net.NCCLReduceScatter(blobs, ["gpu_%d/part" % d for d in range(3)])
    devices = {b: Device(1, d) for d, b in enumerate(blobs)}
    comm = communication(net.Proto(), {b: (3, 10) for b in blobs}, devices)
    links = [(t.op_type, t.src, t.dst, t.bytes) for t in comm.transfers]
    g = [Device(1, d) for d in range(3)]
    ring = [(g[0], g[1]), (g[1], g[2]), (g[2], g[0])]
    assert links == ([("NCCLAllGather", s, d, 240) for s, d in ring]
                     + [("NCCLReduceScatter", s, d, 80) for s, d in ring])
