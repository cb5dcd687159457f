"""Write model files as REAL Caffe2 saves them, for graphnet to load.

    $C2REF/venv-torch1.10.2/bin/python tests/goldens/make_model_files.py

For each model below: build it with brew, run its init net, export it with
Caffe2's own `mobile_exporter.Export` (an init net of GivenTensor*Fill ops with
the weights + the predict net), run the exported pair as a Predictor would, and
write tests/goldens/models/<name>/{init_net,predict_net}.pb (+ .pbtxt),
inputs.npz and outputs.npz (Caffe2's outputs, keyed by blob name).

The same script runs under graphnet (written against the caffe2 API only):

    python -m graphnet run tests/goldens/make_model_files.py /tmp/gn_models

writes graphnet's own files to the given folder (check_model_files_in_caffe2.py
then loads those in real Caffe2). Keep it Python 3.8 compatible.
"""

import os
import sys

import numpy as np

from caffe2.proto import caffe2_pb2
from caffe2.python import brew, core, model_helper, workspace
from caffe2.python.predictor import mobile_exporter

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {}


def model(fn):
    MODELS[fn.__name__] = fn
    return fn


@model
def mlp():
    """FC -> Relu -> FC -> Relu -> FC -> Softmax."""
    m = model_helper.ModelHelper(name="mlp")
    h = brew.fc(m, "data", "fc1", dim_in=8, dim_out=16)
    h = brew.relu(m, h, "relu1")
    h = brew.fc(m, h, "fc2", dim_in=16, dim_out=16)
    h = brew.relu(m, h, "relu2")
    h = brew.fc(m, h, "fc3", dim_in=16, dim_out=3)
    brew.softmax(m, h, "prob")
    rng = np.random.RandomState(0)
    return m, {"data": rng.randn(4, 8).astype(np.float32)}


@model
def ranker():
    """A dense tower and a pooled embedding joined by Concat, then FC/Tanh/FC,
    Sigmoid and Scale: int64 ids, int32 lengths, an int32 output (split_info)."""
    m = model_helper.ModelHelper(name="ranker")
    dense = brew.relu(m, brew.fc(m, "dense", "fc_dense", dim_in=5, dim_out=8), "dense_h")
    table = m.param_init_net.GaussianFill([], "emb_table", shape=[10, 4], std=0.5)
    m.AddParameter(table)
    emb = m.net.SparseLengthsSum([table, "ids", "lengths"], "emb")
    both = m.net.Mul([dense, m.net.Sigmoid(dense, "gate")], "gated")
    cat, _ = m.net.Concat([both, emb], ["cat", "cat_info"], axis=1)
    top = m.net.Tanh(brew.fc(m, cat, "fc_top", dim_in=12, dim_out=6), "top")
    score = m.net.Sigmoid(brew.fc(m, top, "fc_out", dim_in=6, dim_out=1), "score")
    m.net.Scale(score, "score_scaled", scale=2.0)
    rng = np.random.RandomState(1)
    inputs = {"dense": rng.randn(4, 5).astype(np.float32),
              "ids": rng.randint(0, 10, size=7).astype(np.int64),
              "lengths": np.array([2, 0, 4, 1], dtype=np.int32)}
    return m, inputs


def export(name):
    """Build, initialise (seeded) and export model `name`: (init_net, predict_net,
    inputs)."""
    m, inputs = MODELS[name]()
    m.param_init_net.set_rand_seed(seed=7)
    workspace.RunNetOnce(m.param_init_net)
    init_net, predict_net = mobile_exporter.Export(workspace, m.net, m.params)
    return init_net, predict_net, inputs


def run_exported(init_net, predict_net, inputs):
    """Run an exported pair in a fresh workspace as a Predictor does."""
    workspace.ResetWorkspace()
    named = caffe2_pb2.NetDef()
    named.CopyFrom(init_net)
    named.name = named.name or "init_net"     # graphnet's RunNetOnce wants a name
    workspace.RunNetOnce(named)
    for key, value in inputs.items():
        workspace.FeedBlob(key, value)
    workspace.CreateNet(predict_net)
    workspace.RunNet(predict_net.name)
    return {o: workspace.FetchBlob(o) for o in predict_net.external_output}


def write(out_dir, name, init_net, predict_net, inputs, outputs):
    folder = os.path.join(out_dir, name)
    if not os.path.isdir(folder):
        os.makedirs(folder)
    for key, net in (("init_net", init_net), ("predict_net", predict_net)):
        with open(os.path.join(folder, key + ".pb"), "wb") as f:
            f.write(net.SerializeToString())
        with open(os.path.join(folder, key + ".pbtxt"), "w") as f:
            f.write(str(net))
    np.savez(os.path.join(folder, "inputs.npz"), **inputs)
    np.savez(os.path.join(folder, "outputs.npz"), **outputs)


def main(argv):
    real_caffe2 = core.__name__.startswith("caffe2")
    if len(argv) > 1:
        out_dir = argv[1]
    elif real_caffe2:
        out_dir = os.path.join(HERE, "models")
    else:
        raise SystemExit("Under graphnet pass an output folder (the goldens in "
                         "tests/goldens/models come from real Caffe2).")
    for name in sorted(MODELS):
        workspace.ResetWorkspace()
        init_net, predict_net, inputs = export(name)
        outputs = run_exported(init_net, predict_net, inputs)
        write(out_dir, name, init_net, predict_net, inputs, outputs)
        print("wrote", os.path.join(out_dir, name), sorted(outputs))


if __name__ == "__main__":
    main(sys.argv)
