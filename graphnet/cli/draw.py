"""Draw a NetDef with one cluster per device and the edges that cross devices
highlighted.

  graphnet draw net.pb -o net.svg            (.svg and .png need graphviz's `dot`)
  graphnet draw net.pb -o net.dot --minimal  (.dot is written without graphviz)

Ops are boxes and blobs octagons, styled as caffe2.python.net_drawer drew them;
each device (cpu, gpu_0, gpu_1, ...) is a cluster, in device order, holding its ops
and the blob versions that live there (labelled without the cluster's `gpu_d/`
prefix); an edge between two devices is drawn thick and red, a control input dashed.
--minimal draws ops only, with an edge from each op to the ops that read its
outputs. --blobs-from INIT tells where blobs fed before the run live (else where
their first reader expects them). Imports pydot (optional: graphnet[draw]),
networkx via graphnet.analysis, net_drawer's styles and graphnet.cli's loading.
"""

import os
import shutil

from graphnet.analysis import net_graph
from graphnet.cli import EXIT_FAILED, EXIT_OK, CliError, loading, one_line
from graphnet.cli._format import plural
from graphnet.devices import device_name
from graphnet.net_drawer import BLOB_STYLE, OP_STYLE

__all__ = ["add_arguments", "run", "pydot_graph", "CROSS_DEVICE_STYLE",
           "CLUSTER_COLORS"]

FORMATS = ("dot", "svg", "png", "pdf")
# Edges between devices: Caffe2's palette red, thick.
CROSS_DEVICE_STYLE = {"color": "#DB4437", "penwidth": "3", "arrowsize": "1.2",
                      "minlen": "2"}
EDGE_STYLE = {"color": "#5F6368"}
CLUSTER_STYLE = {"style": "rounded,filled", "color": "#9AA0A6", "fontsize": "20",
                 "fontname": "Helvetica-Bold", "margin": "12"}
# Cluster fills: the CPU grey, GPUs in turn.
CPU_COLOR = "#F1F3F4"
CLUSTER_COLORS = ("#E8F0FE", "#FEF7E0", "#F3E8FD", "#E6F4EA", "#FCE8E6", "#E4F7FB")


def add_arguments(parser):
    parser.add_argument("file", metavar="FILE", help="NetDef (binary or text)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="file to write: .dot, .svg, .png or .pdf")
    parser.add_argument("--minimal", action="store_true",
                        help="ops only (edges: an op feeds another)")
    parser.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB",
                        help="direction of the data flow (default TB: devices side by "
                             "side)")
    parser.add_argument("--blobs-from", metavar="INIT",
                        help="init net whose blobs live where it creates them")


def _require_pydot():
    try:
        import pydot
    except ImportError:
        raise CliError("drawing needs pydot; install it with pip install "
                       "'graphnet[draw]'", EXIT_FAILED)
    return pydot


def _text(label):
    return label.replace("\\", "\\\\")  # dot reads a backslash as an escape


def _op_label(op, index):
    """net_drawer's op node name: [name/]Type (op#i)."""
    return _text("%s%s (op#%d)" % (op.name + "/" if op.name else "", op.type, index))


def _blob_label(name, device):
    """The blob's name without the `gpu_d/` prefix its cluster already says."""
    prefix = device_name(device) + "/" if device is not None else None
    return _text(name[len(prefix):] if prefix and name.startswith(prefix) else name)


def _clusters(pydot, graph, devices):
    clusters, gpu = {}, 0
    for device in sorted(d for d in devices if d is not None):
        if device.is_gpu:
            fill, gpu = CLUSTER_COLORS[gpu % len(CLUSTER_COLORS)], gpu + 1
        else:
            fill = CPU_COLOR
        name = device_name(device)
        cluster = pydot.Cluster(name, label=name, fillcolor=fill, **CLUSTER_STYLE)
        graph.add_subgraph(cluster)
        clusters[device] = cluster
    return clusters


def pydot_graph(netdef, blob_devices=None, minimal=False, rankdir="TB"):
    """A pydot.Dot of `netdef`: a cluster per device, cross-device edges in
    CROSS_DEVICE_STYLE. Returns (graph, its devices in order, number of
    cross-device edges)."""
    pydot = _require_pydot()
    flow = net_graph(netdef, blob_devices)
    ops = [n for n in flow if n[0] == "op"]
    shown = ops if minimal else list(flow)
    devices = {flow.nodes[n]["device"] for n in shown}
    graph = pydot.Dot(netdef.name or "net", graph_type="digraph", rankdir=rankdir,
                      nodesep="0.25", ranksep="0.4",
                      fontname="Helvetica")
    graph.set_node_defaults(fontname="Helvetica", fontsize="11")
    clusters = _clusters(pydot, graph, devices)
    ids = {}
    for node in shown:
        data = flow.nodes[node]
        ids[node] = "%s%d" % (node[0], len(ids))
        if node[0] == "op":
            item = pydot.Node(ids[node], label=_op_label(netdef.op[node[1]], node[1]),
                              **OP_STYLE)
        else:
            item = pydot.Node(ids[node], label=_blob_label(data["name"], data["device"]),
                              **BLOB_STYLE)
        clusters.get(data["device"], graph).add_node(item)
    if minimal:
        edges = {}
        for blob in (n for n in flow if n[0] == "blob"):
            for producer in flow.predecessors(blob):
                for consumer in flow.successors(blob):
                    edges.setdefault((producer, consumer), None)
    else:
        edges = dict.fromkeys(flow.edges)
    crossing = 0
    for src, dst in edges:
        a, b = flow.nodes[src]["device"], flow.nodes[dst]["device"]
        crosses = a is not None and b is not None and a != b
        crossing += crosses
        style = dict(CROSS_DEVICE_STYLE if crosses else EDGE_STYLE)
        if not minimal and flow.edges[src, dst].get("control"):
            style["style"] = "dashed"  # a control input: ordering, no data
        graph.add_edge(pydot.Edge(ids[src], ids[dst], **style))
    _order_clusters(pydot, graph, clusters, flow, shown, ids)
    names = ", ".join(device_name(d) for d in sorted(clusters))
    graph.set_label("net '%s': %s on %s; red edges cross devices (%d)" % (
        netdef.name, plural(len(ops), "op"), names or "no device", crossing))
    graph.set_labelloc("t")
    graph.set_fontsize("22")
    return graph, sorted(clusters), crossing


def _order_clusters(pydot, graph, clusters, flow, shown, ids):
    """Keep the clusters in device order (cpu, gpu_0, gpu_1, ...): an invisible
    anchor atop each cluster, the anchors on one rank joined left to right by
    invisible edges."""
    if len(clusters) < 2:
        return
    graph.set("newrank", "true")
    same = pydot.Subgraph(rank="same")
    previous = None
    for device in sorted(clusters):
        anchor = "anchor_" + device_name(device)
        clusters[device].add_node(pydot.Node(anchor, style="invis", shape="point",
                                             width="0", height="0", label=""))
        same.add_node(pydot.Node(anchor))
        first = next((n for n in shown if flow.nodes[n]["device"] == device), None)
        if first is not None:
            graph.add_edge(pydot.Edge(anchor, ids[first], style="invis"))
        if previous is not None:
            graph.add_edge(pydot.Edge(previous, anchor, style="invis", weight="10"))
        previous = anchor
    graph.add_subgraph(same)


def _output_format(path):
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise CliError("%s: unknown output format '%s'; name it .dot, .svg, .png or .pdf"
                       % (path, ext or "(no extension)"))
    return ext


def run(args):
    fmt = _output_format(args.output)
    net = loading.read_netdef(args.file)
    devices = None
    if args.blobs_from:
        init = loading.init_blobs(loading.read_netdef(args.blobs_from).netdef)
        devices = {n: b.device for n, b in init.items() if b.device is not None}
    graph, drawn, crossing = pydot_graph(net.netdef, devices, args.minimal,
                                         args.rankdir)
    if fmt == "dot":
        data = graph.to_string().encode("utf-8")
    else:
        if shutil.which("dot") is None:
            raise CliError("writing %s needs graphviz's `dot` program, which is not on "
                           "PATH; install graphviz (apt-get install -y graphviz) or write "
                           ".dot instead (-o %s.dot)" % (
                               args.output, os.path.splitext(args.output)[0]), EXIT_FAILED)
        try:
            data = graph.create(prog="dot", format=fmt)
        except Exception as exc:  # dot failed: its stderr is in the message
            raise CliError("%s: graphviz `dot` failed: %s" % (args.output, one_line(exc)),
                           EXIT_FAILED)
    try:
        with open(args.output, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise CliError("%s: cannot write: %s" % (args.output, exc.strerror or exc))
    print("wrote %s: %s, %s, clusters %s, %s%s" % (
        args.output, net.describe(), plural(len(net.netdef.op), "op"),
        ", ".join(device_name(d) for d in drawn) or "none",
        plural(crossing, "cross-device edge"), " (minimal)" if args.minimal else ""))
    return EXIT_OK
