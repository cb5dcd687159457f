"""net_drawer: pydot graphs with Caffe2's node naming and styles."""

import json

import pytest

from graphnet import core, net_drawer

pydot = pytest.importorskip("pydot", reason="pydot is part of the [test] extra")


def _unquote(name):
    return name[1:-1] if name.startswith('"') and name.endswith('"') and \
        not name.startswith('""') and name.count('"') == 2 and "(" in name else name


def _net():
    net = core.Net("drawn")
    net.Relu("x", "y")
    net.Relu("y", "y")          # in place: a second version node of y
    net.Copy("y", "z", name="named")
    return net


def test_get_pydot_graph_nodes_and_edges():
    graph = net_drawer.GetPydotGraph(_net(), rankdir="BT")
    assert graph.get_name() == "drawn" and graph.get_rankdir() == "BT"
    names = {_unquote(n.get_name()) for n in graph.get_nodes()}
    assert "Relu (op#0)" in names and "named/Copy (op#2)" in names
    assert json.dumps("y0") in names and json.dumps("y1") in names
    op_node = next(n for n in graph.get_nodes() if _unquote(n.get_name()) == "Relu (op#0)")
    assert op_node.get("shape") == "box" and op_node.get("color").strip('"') == "#0F9D58"
    edges = {(_unquote(e.get_source()), _unquote(e.get_destination()))
             for e in graph.get_edges()}
    assert (json.dumps("x0"), "Relu (op#0)") in edges
    assert ("Relu (op#1)", json.dumps("y1")) in edges
    assert len(graph.get_edges()) == 6


def test_get_pydot_graph_minimal():
    graph = net_drawer.GetPydotGraphMinimal(_net().Proto(), minimal_dependency=True)
    edges = {(_unquote(e.get_source()), _unquote(e.get_destination()))
             for e in graph.get_edges()}
    assert edges == {("Relu (op#0)", "Relu (op#1)"), ("Relu (op#1)", "named/Copy (op#2)")}
    unnamed = net_drawer.GetPydotGraph(list(_net().Proto().op))
    assert unnamed.get_name() == "unnamed"
