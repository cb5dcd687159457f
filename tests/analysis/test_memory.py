"""memory: liveness, and a planner whose renamed nets compute bit-identical results
with a lower peak (an MLP, DLRM's 4-GPU forward net, DLRM's training net)."""

import networkx as nx
import numpy as np
import pytest

from graphnet import core
from graphnet.analysis import liveness, op_dag, plan_memory
from graphnet.devices import Device
from tests.analysis import nets


def _same(a, b):
    (runs_a, final_a), (runs_b, final_b) = a, b
    assert len(runs_a) == len(runs_b)
    for x, y in zip(runs_a, runs_b):
        for name in x:
            assert x[name].dtype == y[name].dtype, name
            assert np.array_equal(x[name], y[name]), name
    for name in final_a:
        assert np.array_equal(final_a[name], final_b[name]), name


def _check_plan(case, shapes, net_types=("simple",)):
    planned, report = plan_memory(case.netdef, shapes, case.devices, keep=case.fetch)
    assert report.renamed, "nothing was shared"
    for net_type in net_types:
        _same(nets.run(case, case.netdef, net_type), nets.run(case, planned, net_type))
    for device, before in report.before.items():
        assert report.live_peak[device] <= report.after[device] <= before
    assert sum(report.after.values()) < sum(report.before.values())
    untouchable = set(case.netdef.external_input) | set(case.netdef.external_output)
    assert not (untouchable | set(case.fetch)) & set(report.renamed)
    return planned, report


def test_liveness_of_an_mlp():
    case = nets.mlp()
    lives = liveness(case.netdef, case.shapes, case.devices)
    assert (lives["x"].start, lives["x"].end) == (-1, 0)
    assert (lives["fc1"].start, lives["fc1"].end, lives["fc1"].bytes) == (0, 1, 4 * 8 * 4)
    assert lives["prob"].end == len(case.netdef.op)  # an external output outlives the run
    assert lives["relu1"].device == Device(1, 2)


def test_mlp_plan_is_bit_identical_and_smaller():
    case = nets.mlp()
    planned, report = _check_plan(case, case.shapes, ("simple", "dag"))
    assert sorted(report.buffers.values()) == [["fc1", "fc2", "fc3"],
                                               ["relu1", "relu2", "relu3"]]
    assert report.before[Device(1, 2)] - report.after[Device(1, 2)] == 4 * 4 * 8 * 4
    assert planned.op[2].output[0] == report.renamed["fc2"]


def test_dlrm_forward_on_four_gpus():
    case = nets.dlrm_forward(ndevices=4)
    planned, report = _check_plan(case, case.shapes, ("simple", "dag"))
    for gpu in range(4):
        assert report.after[Device(1, gpu)] < report.before[Device(1, gpu)]
    lives = liveness(case.netdef, case.shapes, case.devices)
    for members in report.buffers.values():  # one device and one size per buffer
        assert len({(lives[m].device, lives[m].bytes) for m in members}) == 1
    # The butterfly's slices are read by a Copy on another device: never shared.
    assert report.skipped["gpu_0/emb:::sls0_z_split_1"].startswith("read by op #")


def test_dlrm_training_net_two_steps():
    case = nets.dlrm_training(ndevices=4, num_batches=2)
    planned, report = _check_plan(case, case.observed_shapes())
    assert report.skipped["gpu_0/bot:::fc1_w_grad"].startswith("written by 2 ops")
    assert report.skipped["gpu_0/bot:::fc1_w"] == "external input"
    assert report.skipped["gpu_1/loss_autogen_grad"].startswith("read by op #")


def test_dag_order_adds_no_dependency():
    case = nets.dlrm_forward(ndevices=4)
    planned, report = plan_memory(case.netdef, case.shapes, case.devices,
                                  keep=case.fetch, order="dag")
    assert report.renamed
    reach = nx.transitive_closure_dag(op_dag(case.netdef))
    assert all(reach.has_edge(a, b) for a, b in op_dag(planned).edges)
    _same(nets.run(case, case.netdef, "dag"), nets.run(case, planned, "dag"))
    with pytest.raises(ValueError, match="order must be"):
        plan_memory(case.netdef, order="random")


def test_size_classes_and_what_is_never_shared():
    net = core.Net("classes")
    net.Relu("x", "a")                     # 0: 12 bytes
    net.Relu("a", "b")                     # 1
    net.Relu("y", "c")                     # 2: 16 bytes, a is dead by now
    net.Relu("c", "d")                     # 3
    net.Relu("d", "d")                     # 4: in place
    net.Proto().op.add(type="Iter", output=["legacy_it"])  # 5: legacy, stateful
    net.Relu("d", "out")                   # 6
    shapes = {"x": (3,), "y": (4,), "legacy_it": ((1,), "int64")}
    keep = ["b", "out"]
    _, exact = plan_memory(net.Proto(), shapes, keep=keep)
    assert exact.buffers == {}
    _, classes = plan_memory(net.Proto(), shapes, keep=keep, size_classes=True)
    assert list(classes.buffers.values()) == [["a", "c"]]
    assert exact.skipped["d"].startswith("written by 2 ops")
    assert exact.skipped["legacy_it"] == "its op updates it from its previous value"
    assert exact.skipped["b"] == "kept" and exact.skipped["x"] == "external input"
