"""Load model files written by graphnet into REAL Caffe2 and compare outputs.

    python -m graphnet run tests/goldens/make_model_files.py /tmp/gn_models
    $C2REF/venv-torch1.10.2/bin/python tests/goldens/check_model_files_in_caffe2.py \
        /tmp/gn_models

For every <name>/ folder: run init_net.pb then predict_net.pb in a Caffe2
workspace, and again through Caffe2's C++ Predictor, and compare with the
outputs graphnet recorded (outputs.npz). Needs the reference environment, so
it is not part of the pytest suite. Exits non-zero on any mismatch.
"""

import os
import sys

import numpy as np

from caffe2.proto import caffe2_pb2
from caffe2.python import workspace


def check(folder):
    with open(os.path.join(folder, "init_net.pb"), "rb") as f:
        init_bytes = f.read()
    with open(os.path.join(folder, "predict_net.pb"), "rb") as f:
        predict_bytes = f.read()
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    want = dict(np.load(os.path.join(folder, "outputs.npz")))
    predict_net = caffe2_pb2.NetDef.FromString(predict_bytes)

    workspace.ResetWorkspace()
    workspace.RunNetOnce(caffe2_pb2.NetDef.FromString(init_bytes))
    for key, value in inputs.items():
        workspace.FeedBlob(key, value)
    workspace.CreateNet(predict_net)
    workspace.RunNet(predict_net.name)
    got = {o: workspace.FetchBlob(o) for o in predict_net.external_output}

    # The C++ Predictor feeds inputs to the first external inputs, in order.
    predictor = workspace.Predictor(init_bytes, predict_bytes)
    ordered = [inputs[name] for name in predict_net.external_input[:len(inputs)]]
    from_predictor = dict(zip(predict_net.external_output, predictor.run(ordered)))

    worst = 0.0
    for key, value in want.items():
        for result in (got[key], from_predictor[key]):
            assert result.dtype == value.dtype and result.shape == value.shape, key
            np.testing.assert_allclose(result, value, rtol=1e-5, atol=1e-6, err_msg=key)
            if value.size:
                worst = max(worst, float(np.max(np.abs(result.astype(np.float64)
                                                       - value.astype(np.float64)))))
    return sorted(want), worst


def main(argv):
    root = argv[1]
    for name in sorted(os.listdir(root)):
        outputs, worst = check(os.path.join(root, name))
        print("%s: real Caffe2 reproduces graphnet's outputs %s (max |diff| %.3g)"
              % (name, outputs, worst))


if __name__ == "__main__":
    main(sys.argv)
