"""graphnet draw: device clusters, highlighted cross-device edges and
net_drawer's node styles in the .dot (always; no graphviz needed), and
rendered .svg/.png when graphviz's `dot` is installed."""

import re
import shutil

import pytest

from graphnet import core, workspace
from graphnet.cli.draw import CROSS_DEVICE_STYLE
from graphnet.net_drawer import OP_STYLE
from tests.cli.helpers import (dlrm_model, golden, mlp_net, one_line_error, run_cli,
                               run_subprocess, write_net)

pytest.importorskip("pydot", reason="pydot is part of the [test] extra")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's dot is not installed")


_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]\s]+)')
_NODE = re.compile(r'^("(?:[^"\\]|\\.)*"|\w+) \[(.*)\];$')
_EDGE = re.compile(r'^(\w+) -> (\w+)(?: \[(.*)\])?;$')


def _attributes(text):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTR.findall(text or "")}


class Drawing(object):
    """A .dot as graphnet draw writes it (pydot's one statement per line): node id
    -> (label of its cluster or None, attributes); edges (src, dst, attributes);
    graph attributes; clusters [(name, label)] in file order."""

    def __init__(self, path):
        self.nodes, self.edges, self.clusters, self.attributes = {}, [], [], {}
        cluster = None
        for line in path.read_text().splitlines():
            if line.startswith("subgraph "):
                cluster = [line.split()[1], None]
                if cluster[0].startswith("cluster_"):
                    self.clusters.append(cluster)
            elif line == "}":
                cluster = None
            elif _EDGE.match(line):
                src, dst, attrs = _EDGE.match(line).groups()
                attrs = _attributes(attrs)
                if attrs.get("style") != "invis":
                    self.edges.append((src, dst, attrs))
            elif _NODE.match(line):
                name, attrs = _NODE.match(line).groups()
                if name not in ("node", "edge", "graph"):
                    self.nodes[name] = (cluster[1] if cluster else None,
                                        _attributes(attrs))
            elif "=" in line and line.endswith(";"):
                key, value = line[:-1].split("=", 1)
                value = value[1:-1] if value.startswith('"') else value
                if cluster is not None and key == "label":
                    cluster[1] = value
                elif cluster is None:
                    self.attributes[key] = value
        self.clusters = [tuple(c) for c in self.clusters]

    def label(self, node):
        return self.nodes[node][1].get("label")

    def cluster(self, node):
        return self.nodes[node][0]

    def red(self):
        return [e for e in self.edges if e[2].get("color") == CROSS_DEVICE_STYLE["color"]]


def test_dlrm_4_devices_minimal_dot(capsys, tmp_path, monkeypatch):
    dlrm = dlrm_model(tmp_path)
    out = tmp_path / "dlrm.dot"
    monkeypatch.setenv("PATH", str(tmp_path))  # no graphviz: .dot needs none
    result = run_cli(capsys, "draw", dlrm.predict, "-o", out, "--minimal")
    assert result.code == 0, result.err
    assert result.out == ("wrote %s: net 'dlrm_4gpu' (%s, binary), 72 ops, clusters "
                          "gpu_0, gpu_1, gpu_2, gpu_3, 12 cross-device edges (minimal)\n"
                          % (out, dlrm.predict))
    drawing = Drawing(out)
    assert drawing.clusters == [("cluster_gpu_%d" % d, "gpu_%d" % d) for d in range(4)]
    ops = {drawing.label(n): n for n in drawing.nodes if n.startswith("op")}
    assert len(ops) == 72
    for label, node in ops.items():
        attributes = drawing.nodes[node][1]
        assert {k: attributes[k] for k in OP_STYLE} == OP_STYLE
    # the butterfly: each Split feeds 3 Copies, each on another device; those 12
    # edges, and only those, cross clusters and are red and thick
    red = drawing.red()
    assert len(red) == 12
    for src, dst, attributes in red:
        assert drawing.label(src).startswith("Split (op#")
        assert drawing.label(dst).startswith("Copy (op#")
        assert drawing.cluster(src) != drawing.cluster(dst)
        assert attributes["penwidth"] == CROSS_DEVICE_STYLE["penwidth"]
    for src, dst, _ in drawing.edges:
        if (src, dst, _) not in red and src.startswith("op"):
            assert drawing.cluster(src) == drawing.cluster(dst)
    copies = [drawing.cluster(n) for label, n in ops.items() if label.startswith("Copy")]
    assert sorted(copies) == ["gpu_%d" % d for d in range(4) for _ in range(3)]
    assert drawing.cluster(ops["SparseLengthsSum (op#2)"]) == "gpu_2"


def test_full_drawing_has_blob_versions_in_their_devices(capsys, tmp_path):
    net = core.Net("mixed")
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 1)):
        net.FC(["x", "w", "b"], "y")
        net.Relu("y", "y")                     # in place: a second version of y
    net.Copy("y", "y_host")                    # to the CPU
    netdef = net.Proto()
    path = write_net(netdef, tmp_path / "mixed.pbtxt")
    out = tmp_path / "mixed.dot"
    result = run_cli(capsys, "draw", path, "-o", out, "--rankdir", "LR")
    assert result.code == 0, result.err
    assert "clusters cpu, gpu_1, 1 cross-device edge\n" in result.out
    drawing = Drawing(out)
    assert drawing.attributes["rankdir"] == "LR"
    blobs = {}
    for node, (cluster, attributes) in drawing.nodes.items():
        if node.startswith("blob"):
            assert attributes["shape"] == "octagon"
            blobs.setdefault(attributes["label"], []).append(cluster)
    assert blobs == {"x": ["gpu_1"], "w": ["gpu_1"], "b": ["gpu_1"],
                     "y": ["gpu_1", "gpu_1"], "y_host": ["cpu"]}
    (src, dst, _), = drawing.red()
    assert drawing.label(src) == "y" and drawing.label(dst) == "Copy (op#2)"


def test_golden_training_net_draws(capsys, tmp_path):
    out = tmp_path / "train.dot"
    result = run_cli(capsys, "draw", golden("dlrm_training_net_2devices.net.pb"), "-o",
                     out, "--blobs-from", golden("dlrm_training_net_2devices.init.pb"))
    assert result.code == 0, result.err
    drawing = Drawing(out)
    assert ("cluster_gpu_0", "gpu_0") in drawing.clusters
    assert ("cluster_gpu_1", "gpu_1") in drawing.clusters
    labels = [drawing.label(n) for n in drawing.nodes if n.startswith("op")]
    assert any(label.startswith("NCCLAllreduce (op#") for label in labels)
    assert drawing.red()


def test_svg_and_png_without_graphviz_fail_in_one_line(capsys, tmp_path, monkeypatch):
    path = write_net(mlp_net(), tmp_path / "mlp.pb")
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run_cli(capsys, "draw", path, "-o", tmp_path / "mlp.svg")
    assert result.code == 1
    assert one_line_error(result, "draw") == (
        "graphnet draw: writing %s needs graphviz's `dot` program, which is not on PATH; "
        "install graphviz (apt-get install -y graphviz) or write .dot instead (-o %s.dot)"
        % (tmp_path / "mlp.svg", tmp_path / "mlp"))
    assert not (tmp_path / "mlp.svg").exists()


def test_unknown_output_format(capsys, tmp_path):
    path = write_net(mlp_net(), tmp_path / "mlp.pb")
    result = run_cli(capsys, "draw", path, "-o", tmp_path / "mlp.jpeg")
    assert result.code == 2
    assert "unknown output format 'jpeg'" in one_line_error(result, "draw")


@needs_dot
def test_svg_and_png(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    svg, png = tmp_path / "d.svg", tmp_path / "d.png"
    assert run_cli(capsys, "draw", dlrm.predict, "-o", svg, "--minimal").code == 0
    text = svg.read_text()
    assert "<svg" in text and text.count("<title>cluster_gpu_") == 4
    assert text.count('stroke="#db4437"') + text.count('stroke="#DB4437"') >= 12
    assert run_cli(capsys, "draw", dlrm.predict, "-o", png).code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subprocess_python_m_graphnet_draw(tmp_path):
    path = write_net(mlp_net(), tmp_path / "mlp.pbtxt")
    result = run_subprocess("draw", path, "-o", tmp_path / "mlp.dot", "--minimal")
    assert result.code == 0, result.err
    drawing = Drawing(tmp_path / "mlp.dot")
    assert drawing.clusters == [("cluster_cpu", "cpu")]
    (src, dst, _), = drawing.edges
    assert (drawing.label(src), drawing.label(dst)) == ("FC (op#0)", "Relu (op#1)")
