"""Model files written by REAL Caffe2 load and run in graphnet, and graphnet
writes the same bytes for the same model.

tests/goldens/models/<name>/ holds init_net.pb + predict_net.pb exported by
Caffe2 1.10.2's mobile_exporter, inputs.npz and Caffe2's outputs.npz
(tests/goldens/make_model_files.py). The reverse direction (graphnet's files in
real Caffe2) needs the reference environment: tests/goldens/
check_model_files_in_caffe2.py.
"""

import os
import sys

import numpy as np
import pytest

from graphnet import compat, core, workspace
from graphnet.proto import caffe2_pb2

GOLDENS = os.path.join(os.path.dirname(__file__), "goldens")
MODELS = os.path.join(GOLDENS, "models")
NAMES = sorted(os.listdir(MODELS))


def _read(name, key):
    with open(os.path.join(MODELS, name, key + ".pb"), "rb") as f:
        return f.read()


def _arrays(name, key):
    with np.load(os.path.join(MODELS, name, key + ".npz")) as data:
        return {k: data[k] for k in data.files}


def _init_net(name):
    """Caffe2's exporter leaves the init net nameless (RunNetOnce accepts that)."""
    init_net = caffe2_pb2.NetDef.FromString(_read(name, "init_net"))
    assert init_net.name == ""
    return init_net


def test_models_present():
    assert NAMES == ["mlp", "ranker"]


def test_nameless_init_net_runs_once():
    """Caffe2's exporter leaves the init net nameless; RunNetOnce accepts it."""
    assert workspace.RunNetOnce(caffe2_pb2.NetDef.FromString(_read("mlp", "init_net")))


@pytest.mark.parametrize("name", NAMES)
def test_caffe2_model_files_run_in_graphnet(name):
    init_net = _init_net(name)
    predict_net = caffe2_pb2.NetDef.FromString(_read(name, "predict_net"))
    assert all(op.type.startswith("GivenTensor") for op in init_net.op)
    workspace.RunNetOnce(init_net)
    for key, value in _arrays(name, "inputs").items():
        workspace.FeedBlob(key, value)
    workspace.CreateNet(predict_net)
    workspace.RunNet(predict_net.name)
    want = _arrays(name, "outputs")
    assert sorted(want) == sorted(predict_net.external_output)
    for key, value in want.items():
        got = workspace.FetchBlob(key)
        assert got.dtype == value.dtype and got.shape == value.shape, key
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(got, value, err_msg=key)


@pytest.fixture
def generator():
    """tests/goldens/make_model_files.py imported through graphnet.compat, with a
    fresh net-name history (Caffe2 built each model in a fresh process)."""
    compat.install()
    sys.path.insert(0, GOLDENS)
    saved = set(core.Net._net_names_used)
    core.Net._net_names_used.clear()
    try:
        import make_model_files
        yield make_model_files
    finally:
        core.Net._net_names_used.clear()
        core.Net._net_names_used.update(saved)
        sys.path.remove(GOLDENS)
        sys.modules.pop("make_model_files", None)
        compat.uninstall()


@pytest.mark.parametrize("name", NAMES)
def test_graphnet_writes_caffe2s_bytes(name, generator):
    from graphnet.predictor import mobile_exporter
    model, inputs = generator.MODELS[name]()
    # Same weights as Caffe2's: load them from its init net.
    workspace.RunNetOnce(_init_net(name))
    init_net, predict_net = mobile_exporter.Export(workspace, model.net, model.params)
    assert init_net.SerializeToString() == _read(name, "init_net")
    assert predict_net.SerializeToString() == _read(name, "predict_net")
    # The printed text parses to the same message (protobuf 7 prints the float
    # 2.0 as "2" where Caffe2's protobuf 3.20 printed "2.0").
    from google.protobuf import text_format
    with open(os.path.join(MODELS, name, "predict_net.pbtxt")) as f:
        assert text_format.Parse(f.read(), caffe2_pb2.NetDef()) == predict_net


def test_graphnet_generator_round_trip(tmp_path, generator):
    """The generator run on graphnet (its own random weights) writes files that
    graphnet loads back to the outputs it recorded."""
    generator.main(["make_model_files.py", str(tmp_path)])
    for name in NAMES:
        folder = tmp_path / name
        init_net = caffe2_pb2.NetDef.FromString((folder / "init_net.pb").read_bytes())
        predict_net = caffe2_pb2.NetDef.FromString(
            (folder / "predict_net.pb").read_bytes())
        want = dict(np.load(folder / "outputs.npz"))
        got = generator.run_exported(init_net, predict_net,
                                     dict(np.load(folder / "inputs.npz")))
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
