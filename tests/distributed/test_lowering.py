"""The global schedule and the butterfly pass, in one process (no MPI needed): what
each rank runs, what moves between ranks, and when the all-to-all merge is refused."""

import os
import sys
import warnings

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import CPU, Device
from graphnet.distributed.butterfly import find_groups, merge_butterflies
from graphnet.distributed.errors import PlacementError
from graphnet.distributed.lowering import build_schedule
from graphnet.distributed.placement import EVERY_RANK, Placement, devices_per_rank_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import dlrm_train  # noqa: E402


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def test_default_placement_and_its_errors(monkeypatch):
    monkeypatch.delenv("GRAPHNET_DEVICES_PER_RANK", raising=False)
    assert devices_per_rank_for(4, 4) == 1
    assert devices_per_rank_for(8, 4) == 2
    assert devices_per_rank_for(5, 4) == 2
    assert devices_per_rank_for(0, 4) == 1
    p = Placement(1, 2, 2)
    assert [p.owner(Device(1, d)) for d in range(4)] == [0, 0, 1, 1]
    assert p.owner(CPU) is EVERY_RANK and p.is_local(CPU)
    assert p.is_local(Device(1, 3)) and not p.is_local(Device(1, 0))
    assert p.local_device_index(Device(1, 3)) == 1
    with pytest.raises(PlacementError, match="gpu_4 has no rank: 2 ranks x 2 devices per "
                                             "rank hold gpu_0..gpu_3"):
        p.owner(Device(1, 4))
    monkeypatch.setenv("GRAPHNET_DEVICES_PER_RANK", "3")
    assert devices_per_rank_for(4, 4) == 3
    monkeypatch.setenv("GRAPHNET_DEVICES_PER_RANK", "0")
    with pytest.raises(PlacementError, match="GRAPHNET_DEVICES_PER_RANK"):
        devices_per_rank_for(4, 4)


def _compiled(net):
    workspace.CreateNet(net)
    return workspace._ws()._nets[net.Name()]


def _holders(placement):
    """Where the blobs fed so far live under `placement` (what FeedBlob records)."""
    return {name: placement.owner(blob.device) for name, blob in
            workspace._ws()._blobs.items() if blob.device.is_gpu}


@pytest.fixture
def dlrm_plan():
    cfg = dlrm_train.Config(batch=16)
    data = dlrm_train.make_data(cfg, num_batches=1)
    workspace.ResetWorkspace()
    model = dlrm_train.TrainableDLRM(cfg, 4, device_option=gpu(0))
    model.build()
    model.sgd(model.loss(), 0.1)
    model.feed(dlrm_train.make_weights(cfg), data[0][0], data[0][1])
    model.feed_targets(data[0][2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace.RunNetOnce(model.model.param_init_net)
    return _compiled(model.model.net)


def test_dlrm_on_four_ranks_runs_each_op_once_and_moves_only_what_the_net_says(dlrm_plan):
    placement = Placement(0, 4, 1)
    schedule = build_schedule(dlrm_plan.steps, placement, _holders(placement))
    ops = [e for e in schedule.events if e.kind == "op"]
    allreduces = [e for e in schedule.events if e.kind == "allreduce"]
    assert len(ops) + len(allreduces) == len(dlrm_plan.steps)
    assert all(e.rank == e.step.device.id for e in ops)  # gpu_d on rank d
    # NCCLAllreduce of each dense gradient: one MPI all-reduce over the 4 ranks
    assert len(allreduces) == 8 and all(e.ranks == (0, 1, 2, 3) for e in allreduces)
    xfers = [e for e in schedule.events if e.kind == "xfer"]
    kinds = {}
    for x in xfers:
        kinds.setdefault((x.step.op_type, x.push), []).append(x)
    # forward butterfly: 4 tables x 3 slices pulled by Copy; backward: the gradient
    # slices pushed home by CopyOnDeviceLike (whose 'like' input never moves);
    # DLRM's gradient seeds live on GPU 0: ConstantFill reads each loss there and
    # each AveragedLossGradient reads its seed back (the reads dlrm#70 is about)
    assert {k: len(v) for k, v in kinds.items()} == {
        ("Copy", False): 12, ("CopyOnDeviceLike", True): 12,
        ("ConstantFill", False): 3, ("AveragedLossGradient", False): 3}
    assert schedule.is_placed()
    groups = find_groups(schedule.events)
    assert [g.kind for g in groups] == ["scatter"] * 4 + ["gather"] * 4
    merged = merge_butterflies(schedule.events)
    exchanges = [e for e in merged if e.kind == "exchange"]
    assert len(exchanges) == 2
    assert [len(e.xfers) for e in exchanges] == [12, 12]
    assert all(e.ranks == (0, 1, 2, 3) for e in exchanges)
    assert sum(e.kind == "xfer" for e in merged) == 6  # the seeds stay point to point
    assert sum(e.kind in ("op", "allreduce") for e in merged) == len(dlrm_plan.steps)


def test_two_devices_per_rank_keep_copies_between_them_local(dlrm_plan):
    placement = Placement(0, 2, 2)
    schedule = build_schedule(dlrm_plan.steps, placement, _holders(placement))
    copies = [x for x in schedule.events if x.kind == "xfer" and x.step.op_type == "Copy"]
    assert len(copies) == 8  # each table's 2 slices for the other rank's 2 devices
    assert all(x.src != x.dst for x in copies)
    merged = merge_butterflies(schedule.events)
    assert [len(e.xfers) for e in merged if e.kind == "exchange"] == [8, 8]


def _butterfly(read_between):
    """Two tables' Split + Copy on 2 GPUs; optionally a read of table 0's copied
    slice before table 1's copies (then one all-to-all cannot hold both)."""
    net = core.Net("bf_%d" % read_between)
    for t, home in ((0, 0), (1, 1)):
        with core.DeviceScope(gpu(home)):
            workspace.FeedBlob("e%d" % t, np.ones((4, 2), np.float32), gpu(home))
            net.Split("e%d" % t, ["e%d_s0" % t, "e%d_s1" % t], axis=0)
        other = 1 - home
        with core.DeviceScope(gpu(other)):
            net.Copy("e%d_s%d" % (t, other), "e%d_s%d_on%d" % (t, other, other))
            if read_between and t == 0:
                net.Relu("e0_s1_on1", "early")
                net.Relu("early", "e1")  # ... and overwrites table 1's input
    return _compiled(net)


@pytest.mark.parametrize("conflict", [False, True])
def test_the_pass_merges_only_what_commutes(conflict):
    plan = _butterfly(conflict)
    placement = Placement(0, 2, 1)
    events = build_schedule(plan.steps, placement, _holders(placement)).events
    merged = merge_butterflies(events)
    exchanges = [e for e in merged if e.kind == "exchange"]
    if conflict:
        assert [len(e.xfers) for e in exchanges] == [1, 1]
    else:
        assert [len(e.xfers) for e in exchanges] == [2]
    # every op still runs once, on the rank of its device
    assert sorted(e.step.index for e in merged if e.kind == "op") == \
        list(range(len(plan.steps)))


def test_cpu_ops_run_everywhere_and_read_remote_blobs_by_pulls():
    net = core.Net("cpu_reads")
    with core.DeviceScope(gpu(1)):
        net.Relu("x", "y")
    net.Scale("y", "z", scale=2.0)  # a CPU op reading gpu_1's blob
    workspace.FeedBlob("x", np.ones(2, np.float32), gpu(1))
    plan = _compiled(net)
    placement = Placement(0, 3, 1)
    schedule = build_schedule(plan.steps, placement, _holders(placement))
    kinds = [(e.kind, getattr(e, "rank", None), getattr(e, "dst", None))
             for e in schedule.events]
    assert kinds == [("op", 1, None), ("xfer", None, 0), ("xfer", None, 2),
                     ("op", EVERY_RANK, None)]
    assert schedule.final == {"y": 1, "z": EVERY_RANK}
    assert schedule.assumed == {"x": 1}
