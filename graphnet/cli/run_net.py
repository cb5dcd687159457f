"""Run a model on emulated devices and print its outputs.

  graphnet run-net MODEL_DIR --inputs batch.npz [--iters 10] [--save out.npz]
  graphnet run-net predict_net.pb --init init_net.pb --input data=x.npy --output prob
  graphnet run-net init_net.pb predict_net.pb --input data=x.npy

PATH...: a model directory (init_net.pb, then predict_net.pb) or NetDef files:
every file but the last runs once, first (init nets); the last runs --iters
times. Every external input of the last net that no init net fills must be
given (--input NAME=FILE.npy, --inputs FILE.npz by blob name); each is fed on the
device its first reader expects. Outputs: the --output names, else the external
outputs, else the blobs no op reads. GPUs gpu_0.. are emulated with numpy, as
many as the nets use; warnings (cross-device reads) go to stderr. Imports the
workspace, config, analysis placement and graphnet.cli's loading.
"""

import sys
import time
import warnings

import numpy as np

from graphnet import config
from graphnet.analysis._placement import place
from graphnet.cli import EXIT_FAILED, EXIT_OK, CliError, loading, one_line
from graphnet.cli._format import plural, shape_text
from graphnet.devices import device_name
from graphnet.errors import GraphnetError
from graphnet.proto import caffe2_pb2
from graphnet.workspace import Workspace

__all__ = ["add_arguments", "run"]

VALUES_SHOWN = 6


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="model directory, or NetDef files (init nets first)")
    parser.add_argument("--init", action="append", metavar="INIT",
                        help="init net to run once before the others; repeatable")
    parser.add_argument("--input", action="extend", nargs="+", metavar="NAME=FILE.npy",
                        help="feed blob NAME from a .npy file")
    parser.add_argument("--inputs", action="append", metavar="FILE.npz",
                        help="feed every array of an .npz archive (keys: blob names)")
    parser.add_argument("--output", action="extend", nargs="+", metavar="NAME",
                        help="blobs to print (default: the external outputs)")
    parser.add_argument("--iters", type=int, default=1, metavar="N",
                        help="runs of the last net (default 1)")
    parser.add_argument("--save", metavar="OUT.npz", help="save the outputs by name")
    parser.add_argument("--strict-devices", action="store_true",
                        help="cross-device reads are errors (as "
                             "GRAPHNET_STRICT_DEVICES=1)")


def _net_files(args):
    """(init paths, path of the net to run)."""
    inits, paths = list(args.init or []), list(args.paths)
    if len(paths) == 1:
        init, predict = loading.model_files(paths[0])
        return ([init] if init else []) + inits, predict
    return inits + paths[:-1], paths[-1]


def _gpus_used(netdefs):
    devices = [where.device for n in netdefs for where in place(n).ops]
    return max([d.id + 1 for d in devices if d.is_gpu], default=0)


def _outputs(netdef, names):
    if names:
        return list(names)
    if netdef.external_output:
        return list(dict.fromkeys(netdef.external_output))
    read = {name for op in netdef.op for name in op.input}
    return list(dict.fromkeys(n for op in netdef.op for n in op.output if n not in read))


def _values(value):
    flat = np.asarray(value).ravel()
    shown = ", ".join("%.6g" % v if flat.dtype.kind == "f" else str(v)
                      for v in flat[:VALUES_SHOWN])
    return "[%s%s]" % (shown, ", ..." if flat.size > VALUES_SHOWN else "")


def _run_checked(net_file, action):
    try:
        return action()
    except GraphnetError as exc:
        raise CliError("%s: net '%s' failed: %s" % (net_file.path, net_file.netdef.name,
                                                    one_line(exc)), EXIT_FAILED)


def run(args):
    if args.iters < 1:
        raise CliError("--iters must be at least 1, found %d" % args.iters)
    init_paths, predict_path = _net_files(args)
    files = [loading.read_netdef(p) for p in init_paths + [predict_path]]
    for net_file in files:
        loading.require_known_ops(net_file)
    inits, net = files[:-1], files[-1]
    netdef = caffe2_pb2.NetDef()
    netdef.CopyFrom(net.netdef)
    netdef.name = netdef.name or "net"  # CreateNet needs a name
    arrays = loading.read_arrays(args.input, args.inputs)
    created = {name for f in inits for op in f.netdef.op for name in op.output} - \
        {name for f in inits for name in loading.placeholders(f.netdef)}
    missing = [n for n in dict.fromkeys(netdef.external_input)
               if n not in created and n not in arrays]
    if missing:
        raise CliError("%s: no value for %s: %s; give --input "
                       "NAME=FILE.npy or --inputs FILE.npz%s" % (
                           net.path, plural(len(missing), "external input"),
                           ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else ""),
                           "" if inits else ", or the init net (--init INIT)"))
    saved = config.virtual_gpu_count(), config.strict_devices()
    config.set_virtual_gpu_count(max(saved[0], _gpus_used([f.netdef for f in files])))
    config.set_strict_devices(args.strict_devices or saved[1])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ws, elapsed = _execute(inits, net, netdef, arrays, args.iters)
        for w in caught:
            print("graphnet run-net: warning: %s" % one_line(w.message), file=sys.stderr)
    finally:
        config.set_virtual_gpu_count(saved[0])
        config.set_strict_devices(saved[1])
    print("ran %s: %s, %s, %.3g ms per run" % (
        net.describe(), plural(len(netdef.op), "op"), plural(args.iters, "run"),
        elapsed * 1e3 / args.iters))
    results = {}
    for name in _outputs(netdef, args.output):
        if not ws.HasBlob(name):
            raise CliError("--output %s: no such blob after the run" % name, EXIT_FAILED)
        value = ws.FetchBlob(name)
        results[name] = value
        if isinstance(value, bytes):
            print("%s  bytes: %r" % (name, value[:60]))
            continue
        print("%s  %s %s on %s: %s" % (name, value.dtype, shape_text(value.shape),
                                       device_name(ws.BlobDevice(name)), _values(value)))
    if args.save:
        try:
            np.savez(args.save, **results)
        except OSError as exc:
            raise CliError("%s: cannot write: %s" % (args.save, exc.strerror or exc))
        print("saved %s to %s" % (plural(len(results), "output"), args.save))
    return EXIT_OK


def _execute(inits, net, netdef, arrays, iters):
    """Run the init nets, feed, create and run the net; (workspace, seconds)."""
    ws = Workspace("graphnet run-net")
    for init in inits:  # unnamed ones too, as mobile_exporter writes them
        _run_checked(init, lambda: ws.RunNetOnce(init.netdef))
    devices = {name: ws.BlobDevice(name) for name in ws.Blobs()}
    where = place(netdef, devices).initial
    for name, value in arrays.items():
        device = where.get(name) or devices.get(name)
        option = None if device is None else caffe2_pb2.DeviceOption(
            device_type=device.type, device_id=device.id)
        try:
            ws.FeedBlob(name, value, device_option=option)
        except (GraphnetError, TypeError) as exc:
            raise CliError("--input %s: %s" % (name, one_line(exc)))
    _run_checked(net, lambda: ws.CreateNet(netdef))
    start = time.perf_counter()
    _run_checked(net, lambda: ws.RunNet(netdef.name, iters))
    return ws, time.perf_counter() - start
