"""What the command-line tests share: running `graphnet` in-process and as
`python -m graphnet`, the files they read (written in tmp_path from nets built
here, and the real-Caffe2-saved NetDefs in tests/goldens/data), and the 4-device
DLRM forward model of examples/dlrm_parallel_forward.py as a model directory.
"""

import contextlib
import os
import subprocess
import sys
from collections import namedtuple

import numpy as np

from graphnet import core, workspace
from graphnet.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDENS = os.path.join(ROOT, "tests", "goldens", "data")
sys.path.insert(0, os.path.join(ROOT, "examples"))
import dlrm_parallel_forward  # noqa: E402

Result = namedtuple("Result", ["code", "out", "err"])


def run_cli(capsys, *args):
    """graphnet.__main__.main(args) in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def run_subprocess(*args, cwd=None):
    """`python -m graphnet ARGS` in a fresh process."""
    done = subprocess.run([sys.executable, "-m", "graphnet"] + [str(a) for a in args],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, GRAPHNET_VIRTUAL_GPUS="0"))
    return Result(done.returncode, done.stdout, done.stderr)


def golden(name):
    return os.path.join(GOLDENS, name)


def rows(text):
    """Every output line split on whitespace (tables compare cell by cell)."""
    return [line.split() for line in text.splitlines()]


def one_line_error(result, command):
    """The stderr of a failed command: exactly one line, `graphnet COMMAND: ...`."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("graphnet %s: " % command), lines[0]
    assert "Traceback" not in result.err
    return lines[0]


def write_net(netdef, path, fmt=None):
    """Write `netdef` as text (.pbtxt) or binary (anything else)."""
    from google.protobuf import text_format
    path = str(path)
    fmt = fmt or ("text" if path.endswith(".pbtxt") else "binary")
    data = text_format.MessageToString(netdef).encode() if fmt == "text" else \
        netdef.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return path


def _scope(device):
    return core.DeviceScope(device) if device is not None else contextlib.nullcontext()


def mlp_net(device=None, outputs=True):
    """x (2, 3) -> FC(w (4, 3), b (4)) -> Relu -> z, on `device` (a DeviceOption)."""
    net = core.Net("mlp")
    with _scope(device):
        net.FC(["x", "w", "b"], "y")
        net.Relu("y", "z")
    netdef = net.Proto()
    netdef.name = "mlp"  # core.Net numbers repeated names: mlp_1, ...
    if outputs:
        netdef.external_output.append("z")
    return netdef


def mlp_init(w_shape=(4, 3), device=None):
    """Init net filling w and b (GivenTensorFill / ConstantFill)."""
    init = core.Net("mlp_init")
    with _scope(device):
        init.GivenTensorFill([], "w", shape=list(w_shape),
                             values=[0.5] * int(np.prod(w_shape)))
        init.ConstantFill([], "b", shape=[w_shape[0]], value=0.25)
    netdef = init.Proto()
    netdef.name = "mlp_init"
    return netdef


DLRM = namedtuple("DLRM", ["dir", "init", "predict", "inputs", "outputs", "cfg",
                           "feeds"])


def dlrm_model(tmp_path, ndevices=4):
    """examples/dlrm_parallel_forward.py's `ndevices` forward model written as a
    Caffe2 model directory, with its per-device outputs from the example's own run
    and the shapes of every blob the example feeds."""
    cfg = dlrm_parallel_forward.Config()
    weights = dlrm_parallel_forward.make_weights(cfg)
    batch = dlrm_parallel_forward.make_batch(cfg)
    directory = os.path.join(str(tmp_path), "dlrm%d" % ndevices)
    init, predict, inputs = dlrm_parallel_forward.save_model(
        directory, cfg, ndevices, weights, batch)
    model = dlrm_parallel_forward.ParallelDLRM(cfg, ndevices)
    workspace.ResetWorkspace()
    model.feed(weights, *batch)
    feeds = {n: (workspace.FetchBlob(n).shape, workspace.FetchBlob(n).dtype,
                 workspace.BlobDevice(n)) for n in workspace.Blobs()}
    dlrm_parallel_forward.run(cfg, ndevices, weights, batch)
    outputs = {model.prefix(d) + "prob_click":
               workspace.FetchBlob(model.prefix(d) + "prob_click")
               for d in range(ndevices)}
    workspace.ResetWorkspace()
    return DLRM(directory, init, predict, inputs, outputs, cfg, feeds)


def caffe2_model_dirs():
    """tests/goldens/models/<name>/: init_net.pb + predict_net.pb exported by real
    Caffe2's mobile_exporter, with inputs.npz and Caffe2's outputs.npz."""
    root = os.path.join(ROOT, "tests", "goldens", "models")
    if not os.path.isdir(root):
        return []
    return sorted(os.path.join(root, name) for name in os.listdir(root)
                  if os.path.isfile(os.path.join(root, name, "predict_net.pb")))
