"""Produce the golden files from REAL Caffe2 (run in the reference environment).

    $C2REF/venv-torch1.10.2/bin/python tests/goldens/make_goldens.py

Writes, per scenario, <name>.pb (a NetDefs-in-a-PlanDef-free container:
one serialized NetDef per key), <name>.pbtxt (Caffe2's printed text) and
<name>.json (lists), plus <name>.npz (arrays). graphnet is never imported here.
"""

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from caffe2.proto import caffe2_pb2  # noqa: E402
from caffe2.python import workspace  # noqa: E402

# The examples are written against graphnet's module names; here they must
# build their nets with real Caffe2, so graphnet's names point at caffe2.python.
import caffe2.python  # noqa: E402
from caffe2.python import brew, core, model_helper, scope  # noqa: E402,F401

sys.modules.setdefault("graphnet", caffe2.python)
for _name in ("core", "workspace", "model_helper", "brew", "scope"):
    sys.modules.setdefault("graphnet." + _name, getattr(caffe2.python, _name))
import caffe2.proto  # noqa: E402
sys.modules.setdefault("graphnet.proto", caffe2.proto)

import scenarios  # noqa: E402


def main():
    out_dir = os.path.join(HERE, "data")
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    for fn in scenarios.SCENARIOS:
        workspace.ResetWorkspace()
        result = fn()
        protos, lists, arrays = {}, {}, {}
        for key, value in result.items():
            if isinstance(value, caffe2_pb2.NetDef):
                protos[key] = value
            elif isinstance(value, np.ndarray):
                arrays[key] = value
            else:
                lists[key] = value
        base = os.path.join(out_dir, fn.__name__)
        for key, proto in protos.items():
            with open("%s.%s.pb" % (base, key), "wb") as f:
                f.write(proto.SerializeToString())
            with open("%s.%s.pbtxt" % (base, key), "w") as f:
                f.write(str(proto))
        if lists:
            with open(base + ".json", "w") as f:
                json.dump(lists, f, indent=1, sort_keys=True)
        if arrays:
            np.savez(base + ".npz", **arrays)
        print("wrote", fn.__name__, sorted(result))


if __name__ == "__main__":
    main()
