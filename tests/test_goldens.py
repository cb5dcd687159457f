"""Nets built by graphnet equal the nets real Caffe2 built for the same calls.

The goldens in tests/goldens/data were written by tests/goldens/make_goldens.py
running tests/goldens/scenarios.py on real Caffe2 (torch 1.10.2). Here the
same scenarios run on graphnet through graphnet.compat.
"""

import json
import os
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from graphnet import compat, core
from graphnet.proto import caffe2_pb2

DATA = os.path.join(os.path.dirname(__file__), "goldens", "data")


@pytest.fixture(scope="module")
def scenarios():
    compat.install()
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "goldens"))
    try:
        import scenarios as module
        yield module
    finally:
        sys.path.pop(0)
        sys.modules.pop("scenarios", None)
        compat.uninstall()


def _scenario_names():
    names = sorted({f.split(".")[0] for f in os.listdir(DATA)})
    assert names, "no goldens found in %s" % DATA
    return names


@pytest.mark.parametrize("name", _scenario_names())
def test_scenario_matches_real_caffe2(name, scenarios):
    fn = next(f for f in scenarios.SCENARIOS if f.__name__ == name)
    saved = set(core.Net._net_names_used)
    core.Net._net_names_used.clear()
    # Real Caffe2 ran every scenario in one process, in order: replay the earlier
    # ones so process-wide net-name de-duplication sees the same history.
    try:
        for earlier in scenarios.SCENARIOS:
            if earlier is fn:
                break
            earlier()
        result = fn()
    finally:
        core.Net._net_names_used.clear()
        core.Net._net_names_used.update(saved)
    checked = 0
    for key, value in result.items():
        path = os.path.join(DATA, "%s.%s" % (name, key))
        if isinstance(value, caffe2_pb2.NetDef):
            with open(path + ".pb", "rb") as f:
                golden_bytes = f.read()
            golden = caffe2_pb2.NetDef.FromString(golden_bytes)
            assert value == golden, "%s.%s differs:\n--- graphnet\n%s\n--- caffe2\n%s" % (
                name, key, value, golden)
            assert value.SerializeToString() == golden_bytes
            with open(path + ".pbtxt") as f:
                parsed = text_format.Parse(f.read(), caffe2_pb2.NetDef())
            assert parsed == value
            checked += 1
        elif isinstance(value, np.ndarray):
            golden = np.load(os.path.join(DATA, name + ".npz"))[key]
            np.testing.assert_allclose(value, golden, rtol=1e-5, atol=1e-6)
            checked += 1
        else:
            with open(os.path.join(DATA, name + ".json")) as f:
                golden = json.load(f)[key]
            assert json.loads(json.dumps(value)) == golden, key
            checked += 1
    assert checked == len(result) > 0
