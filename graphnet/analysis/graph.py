"""A NetDef as networkx graphs: the dataflow graph over blob versions, the op
DAG the `dag` executor schedules by, topological order and the critical path.

Imports networkx, graphnet.executors.dag (its `dependencies`, so the DAG here is
the executor's), analysis.cost (FLOPs as a path cost) and the analysis helpers.
"""

from collections import namedtuple

import networkx as nx

from graphnet.analysis._placement import place
from graphnet.analysis._shapes import known_infos, trace
from graphnet.analysis.cost import op_costs
from graphnet.executors.dag import dependencies

__all__ = ["blob_versions", "net_graph", "op_dag", "topological_order",
           "critical_path", "CriticalPath"]


class OpVersions(namedtuple("OpVersions", ["inputs", "outputs", "control"])):
    """(name, version) of each input, output and control input of one op."""

    __slots__ = ()


def blob_versions(netdef):
    """One OpVersions per op. Version 0 is a blob's value before the net runs;
    every write (in-place ones included) makes the next version."""
    current, ops = {}, []
    for op in netdef.op:
        inputs = [(name, current.get(name, 0)) for name in op.input]
        control = [(name, current.get(name, 0)) for name in op.control_input]
        outputs = []
        for name in op.output:
            current[name] = current.get(name, 0) + 1
            outputs.append((name, current[name]))
        ops.append(OpVersions(inputs, outputs, control))
    return ops


def net_graph(netdef, blob_devices=None, shapes=None):
    """The dataflow graph of `netdef` as a networkx.DiGraph.

    Nodes: ("op", i) with type, name, device (the schema's `devices` rule; the op's
    device option when the type is unknown) and device_error; ("blob", name, v)
    with name, version, device, shape, dtype (None when unknown), external_input
    and external_output. Edges blob -> op and op -> blob carry `slots` (the input
    or output positions); a control input makes a blob -> op edge with
    control=True. blob_devices: name -> Device of blobs fed before the run;
    shapes: name -> TensorInfo / (shape, dtype) / shape of known blobs.
    """
    placement = place(netdef, blob_devices)
    shaped = trace(netdef, known_infos(shapes))
    versions = blob_versions(netdef)
    external_in, external_out = set(netdef.external_input), set(netdef.external_output)
    last = {}
    graph = nx.DiGraph(name=netdef.name)

    def blob(name, version, device, info):
        node = ("blob", name, version)
        if node not in graph:
            graph.add_node(node, kind="blob", name=name, version=version, device=device,
                           shape=None if info is None else info.shape,
                           dtype=None if info is None else info.dtype,
                           external_input=version == 0 and name in external_in,
                           external_output=False)
        return node

    for index, op in enumerate(netdef.op):
        where, node = placement.ops[index], ("op", index)
        graph.add_node(node, kind="op", index=index, type=op.type, name=op.name,
                       device=where.device, device_error=where.error)
        for i, (name, version) in enumerate(versions[index].inputs):
            src = blob(name, version, where.input_devices[i], shaped[index].inputs[i])
            edge = graph.get_edge_data(src, node)
            if edge is None:
                graph.add_edge(src, node, slots=[i], control=False)
            else:
                edge["slots"].append(i)
        for name, version in versions[index].control:
            src = blob(name, version, placement.initial.get(name), None)
            if not graph.has_edge(src, node):
                graph.add_edge(src, node, slots=[], control=True)
        for o, (name, version) in enumerate(versions[index].outputs):
            dst = blob(name, version, where.outputs[o], shaped[index].outputs[o])
            if graph.has_edge(node, dst):
                graph[node][dst]["slots"].append(o)
            else:
                graph.add_edge(node, dst, slots=[o])
            last[name] = dst
    for name in external_out:
        node = last.get(name, ("blob", name, 0))
        if node in graph:
            graph.nodes[node]["external_output"] = True
    return graph


class _Step(namedtuple("_Step", ["index", "op", "in_names", "out_names"])):
    """The fields of an executor Step that `dependencies` reads."""

    __slots__ = ()


def op_dag(netdef):
    """DiGraph over op indices with an edge p -> i for every op p that op i waits
    for in the dag executor (read-after-write, write-after-write, write-after-read,
    control inputs). Nodes carry `type`."""
    steps = [_Step(i, op, list(op.input), list(op.output))
             for i, op in enumerate(netdef.op)]
    graph = nx.DiGraph(name=netdef.name)
    for step in steps:
        graph.add_node(step.index, type=step.op.type)
    for index, parents in enumerate(dependencies(steps)):
        graph.add_edges_from((p, index) for p in parents)
    return graph


def topological_order(net):
    """Op indices in an order the dag executor may run them (a NetDef, or an
    op_dag graph); among ready ops the lowest index comes first."""
    graph = net if isinstance(net, nx.DiGraph) else op_dag(net)
    return list(nx.lexicographical_topological_sort(graph))


class CriticalPath(namedtuple("CriticalPath", ["length", "ops"])):
    """length: the summed cost of the longest chain; ops: its op indices in order."""

    __slots__ = ()


def _op_costs(netdef, cost, shapes):
    n = len(netdef.op)
    if cost is None:
        return [1.0] * n
    if cost == "flops":
        return [c.flops for c in op_costs(netdef, shapes)]
    if callable(cost):
        return [float(cost(i, op)) for i, op in enumerate(netdef.op)]
    return [float(cost.get(i, 0)) for i in range(n)]  # a mapping index -> cost


def critical_path(netdef, cost=None, shapes=None):
    """The longest dependency chain of op_dag(netdef) by per-op cost.

    cost: None (every op costs 1), "flops" (cost.op_costs from `shapes`), a
    callable f(index, op) or a mapping index -> cost. Ties keep the chain that
    ends at the lowest op index.
    """
    dag = op_dag(netdef)
    weights = _op_costs(netdef, cost, shapes)
    best, came_from = {}, {}
    for i in topological_order(dag):
        parent = max(dag.predecessors(i), key=lambda p: (best[p], -p), default=None)
        best[i] = weights[i] + (best[parent] if parent is not None else 0.0)
        came_from[i] = parent
    if not best:
        return CriticalPath(0.0, [])
    end = max(best, key=lambda i: (best[i], -i))
    chain = []
    while end is not None:
        chain.append(end)
        end = came_from[end]
    return CriticalPath(best[chain[0]], chain[::-1])
