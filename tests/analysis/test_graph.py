"""graph: the dataflow graph over blob versions, the executor's op DAG, topological
order and the critical path."""

import networkx as nx

from graphnet import core
from graphnet.analysis import (blob_versions, critical_path, net_graph, op_dag,
                               topological_order)
from graphnet.devices import CPU, Device
from graphnet.executors.dag import dependencies
from tests.analysis import nets

GPU1 = core.DeviceOption(1, 1)


def test_mlp_graph_has_op_and_blob_nodes_with_devices_and_shapes():
    case = nets.mlp()
    graph = net_graph(case.netdef, case.devices, case.shapes)
    ops = [n for n in graph if n[0] == "op"]
    assert len(ops) == len(case.netdef.op) == 8  # 4 FC, 3 Relu, Softmax
    assert graph.nodes[("op", 0)]["type"] == "FC"
    assert all(graph.nodes[n]["device"] == Device(1, 2) for n in ops)
    fc1 = graph.nodes[("blob", "fc1", 1)]
    assert (fc1["shape"], fc1["dtype"], fc1["device"]) == ((4, 8), "float32", Device(1, 2))
    assert graph.nodes[("blob", "x", 0)]["external_input"]
    assert graph.nodes[("blob", "prob", 1)]["external_output"]
    assert graph[("blob", "w1", 0)][("op", 0)]["slots"] == [1]
    assert nx.is_directed_acyclic_graph(graph)


def test_in_place_writes_make_new_versions():
    net = core.Net("inplace")
    net.Relu("x", "x")
    net.Scale("x", "x", scale=2.0)
    net.Add(["x", "x"], "y")
    graph = net_graph(net.Proto(), shapes={"x": (3,)})
    versions = [graph.nodes[n]["version"] for n in graph if n[:2] == ("blob", "x")]
    assert versions == [0, 1, 2]
    assert graph.has_edge(("blob", "x", 1), ("op", 1))
    assert graph[("blob", "x", 2)][("op", 2)]["slots"] == [0, 1]
    assert graph.nodes[("blob", "y", 1)]["shape"] == (3,)
    assert [v.outputs for v in blob_versions(net.Proto())] == [[("x", 1)], [("x", 2)],
                                                              [("y", 1)]]


def test_devices_follow_each_schemas_devices_rule():
    """Copy lands on its op's device but reads where its input lives; Concat's
    split_info is a CPU output; an unknown op keeps its device option."""
    case = nets.dlrm_forward()
    graph = net_graph(case.netdef, case.devices, case.shapes)
    copy = next(i for i, op in enumerate(case.netdef.op) if op.type == "Copy")
    src, = graph.predecessors(("op", copy))
    dst, = graph.successors(("op", copy))
    assert graph.nodes[src]["device"] != graph.nodes[dst]["device"]
    assert graph.nodes[dst]["device"] == graph.nodes[("op", copy)]["device"]
    info = ("blob", "gpu_1/interaction_info", 1)
    assert graph.nodes[info]["device"] == CPU and graph.nodes[info]["shape"] == (2,)
    net = core.Net("unknown")
    net.Proto().op.add(type="NoSuchOp", input=["a"], output=["b"]).device_option.CopyFrom(
        GPU1)
    graph = net_graph(net.Proto())
    assert graph.nodes[("op", 0)]["device"] == Device(1, 1)
    assert graph.nodes[("op", 0)]["device_error"] is not None


def test_op_dag_has_raw_waw_war_and_control_edges():
    net = core.Net("deps")
    net.Relu("a", "b")        # 0
    net.Relu("b", "c")        # 1  RaW on b (0)
    net.Relu("a", "b")        # 2  WaW on b (0), WaR on b (1)
    net.Relu("z", "d")        # 3  independent
    net.Relu("d", "e")        # 4  RaW on d (3)
    net.Proto().op[4].control_input.append("c")  # 4 also waits for c's writer (1)
    dag = op_dag(net.Proto())
    assert set(dag.edges) == {(0, 1), (0, 2), (1, 2), (3, 4), (1, 4)}
    assert topological_order(net.Proto()) == [0, 1, 2, 3, 4]
    assert topological_order(dag) == [0, 1, 2, 3, 4]


def test_op_dag_is_the_dag_executors_dependency_graph():
    case = nets.dlrm_training()
    netdef = case.netdef

    class Step(object):
        def __init__(self, index, op):
            self.index, self.op = index, op
            self.in_names, self.out_names = list(op.input), list(op.output)

    parents = dependencies([Step(i, op) for i, op in enumerate(netdef.op)])
    expected = {(p, i) for i, ps in enumerate(parents) for p in ps}
    assert set(op_dag(netdef).edges) == expected
    order = topological_order(netdef)
    assert sorted(order) == list(range(len(netdef.op)))
    position = {op: k for k, op in enumerate(order)}
    assert all(position[p] < position[i] for p, i in expected)


def test_critical_path_by_unit_cost_and_by_flops():
    net = core.Net("branches")
    net.FC(["x", "w_big", "b_big"], "big")      # 0: 2*2*64*64 + 128 flops
    net.Relu("x", "r1")                          # 1
    net.Relu("r1", "r2")                         # 2
    net.Relu("r2", "r3")                         # 3
    net.Sum(["big", "r3"], "out")                # 4
    shapes = {"x": (2, 64), "w_big": (64, 64), "b_big": (64,)}
    assert critical_path(net.Proto()) == (4.0, [1, 2, 3, 4])
    path = critical_path(net.Proto(), cost="flops", shapes=shapes)
    assert path.ops == [0, 4]
    assert path.length == 2 * 2 * 64 * 64 + 2 * 64 + 2 * 64
    assert critical_path(net.Proto(), cost={0: 1, 4: 1}).ops == [0, 4]
    assert critical_path(net.Proto(), cost=lambda i, op: 1.0).length == 4.0


def test_critical_path_of_dlrm_forward_is_a_dependency_chain():
    case = nets.dlrm_forward()
    dag = op_dag(case.netdef)
    path = critical_path(case.netdef, cost="flops", shapes=case.shapes)
    assert all(dag.has_edge(a, b) for a, b in zip(path.ops, path.ops[1:]))
    assert case.netdef.op[path.ops[-1]].type == "Sigmoid"
    assert path.length > critical_path(case.netdef).length
