"""caffe2.python.net_drawer: pydot graphs of nets (ops as boxes, blobs as octagons).

pydot is optional (`pip install graphnet[draw]`); without it, drawing raises
an ImportError naming the fix.
"""

import json
from collections import defaultdict

from graphnet.proto import caffe2_pb2

try:
    import pydot
except ImportError:  # optional dependency
    pydot = None

__all__ = ["GetPydotGraph", "GetPydotGraphMinimal", "GetOpNodeProducer",
           "GetBlobNodeProducer", "OP_STYLE", "BLOB_STYLE"]

OP_STYLE = {"shape": "box", "color": "#0F9D58", "style": "filled",
            "fontcolor": "#FFFFFF"}
BLOB_STYLE = {"shape": "octagon"}


def _require_pydot():
    if pydot is None:
        raise ImportError("net_drawer needs pydot (and graphviz to render). Fix: "
                          "pip install 'graphnet[draw]'.")


def _rectify_operator_and_name(operators_or_net, name):
    if isinstance(operators_or_net, caffe2_pb2.NetDef):
        operators = operators_or_net.op
        name = name if name is not None else operators_or_net.name
    elif hasattr(operators_or_net, "Proto"):
        net = operators_or_net.Proto()
        if not isinstance(net, caffe2_pb2.NetDef):
            raise RuntimeError("Expecting NetDef, but got {}".format(type(net)))
        operators = net.op
        name = name if name is not None else net.name
    else:
        operators = operators_or_net
        name = name if name is not None else "unnamed"
    return operators, name


def _escape_label(name):
    return json.dumps(name)  # json string escaping suits dot labels


def GetOpNodeProducer(append_output, **kwargs):
    def ReallyGetOpNode(op, op_id):
        if op.name:
            node_name = "%s/%s (op#%d)" % (op.name, op.type, op_id)
        else:
            node_name = "%s (op#%d)" % (op.type, op_id)
        if append_output:
            for output_name in op.output:
                node_name += "\n" + output_name
        return pydot.Node(node_name, **kwargs)
    return ReallyGetOpNode


def GetBlobNodeProducer(**kwargs):
    def ReallyGetBlobNode(node_name, label):
        return pydot.Node(node_name, label=label, **kwargs)
    return ReallyGetBlobNode


def GetPydotGraph(operators_or_net, name=None, rankdir="LR", op_node_producer=None,
                  blob_node_producer=None):
    """A pydot.Dot with one node per op and per blob version, edges blob->op->blob."""
    _require_pydot()
    op_node_producer = op_node_producer or GetOpNodeProducer(False, **OP_STYLE)
    blob_node_producer = blob_node_producer or GetBlobNodeProducer(**BLOB_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = pydot.Dot(name, rankdir=rankdir)
    nodes, counts = {}, defaultdict(int)
    for op_id, op in enumerate(operators):
        op_node = op_node_producer(op, op_id)
        graph.add_node(op_node)
        for input_name in op.input:
            if input_name not in nodes:
                nodes[input_name] = blob_node_producer(
                    _escape_label(input_name + str(counts[input_name])),
                    label=_escape_label(input_name))
            graph.add_node(nodes[input_name])
            graph.add_edge(pydot.Edge(nodes[input_name], op_node))
        for output_name in op.output:
            if output_name in nodes:
                counts[output_name] += 1  # a rewrite: new version node
            nodes[output_name] = blob_node_producer(
                _escape_label(output_name + str(counts[output_name])),
                label=_escape_label(output_name))
            graph.add_node(nodes[output_name])
            graph.add_edge(pydot.Edge(op_node, nodes[output_name]))
    return graph


def GetPydotGraphMinimal(operators_or_net, name=None, rankdir="LR",
                         minimal_dependency=False, op_node_producer=None):
    """Op nodes only; with minimal_dependency, edges implied transitively are dropped."""
    _require_pydot()
    op_node_producer = op_node_producer or GetOpNodeProducer(False, **OP_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = pydot.Dot(name, rankdir=rankdir)
    blob_parents, ancestry, op_nodes = {}, defaultdict(set), []
    for op_id, op in enumerate(operators):
        op_node = op_node_producer(op, op_id)
        op_nodes.append(op_node)
        graph.add_node(op_node)
        parents = [blob_parents[i] for i in op.input if i in blob_parents]
        ancestry[op_id].update(parents)
        for p in parents:
            ancestry[op_id].update(ancestry[p])
        for p in dict.fromkeys(parents):
            if not minimal_dependency or all(p not in ancestry[o] for o in parents):
                graph.add_edge(pydot.Edge(op_nodes[p], op_node))
        for output_name in op.output:
            blob_parents[output_name] = op_id
    return graph
