"""Build dlrm_s_caffe2.DLRM_Net's N-device SGD training net and write its NetDefs.

Run it under real Caffe2 with `stub` (its CPU-only build cannot hold the CUDA
blobs DLRM feeds while building, and FeedBlob plays no part in the protos) and
under graphnet, then compare the files byte for byte:

    DLRM_SRC=~/dlrm $C2REF tests/dlrm/build_training_nets.py ref 4 stub
    DLRM_SRC=~/dlrm GRAPHNET_VIRTUAL_GPUS=4 python -m graphnet run \
        tests/dlrm/build_training_nets.py gn 4
    cmp ref/dlrm_4.pb gn/dlrm_4.pb && cmp ref/dlrm_4_init.pb gn/dlrm_4_init.pb

Nothing from dlrm is copied here; the script imports it from DLRM_SRC.
"""
import os
import sys
import numpy as np
out, nd, stub = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3
sys.argv = ["dlrm_s_caffe2.py"]
sys.path.insert(0, os.environ.get("DLRM_SRC", "/tmp/dlrm"))
from caffe2.python import workspace
if stub:
    workspace.FeedBlob = lambda *a, **k: True
import dlrm_s_caffe2 as d
np.random.seed(123)
ln_emb = np.array([4, 3, 2, 5]); ln_bot = np.array([4, 3, 2]); ln_top = np.array([12, 4, 2, 1])
from caffe2.python import core
dev = core.DeviceOption(workspace.GpuDeviceType, 0)
with core.DeviceScope(dev):
    m = d.DLRM_Net(2, ln_emb, ln_bot, ln_top, "dot", sigmoid_bot=-1, sigmoid_top=2,
                   ndevices=nd)
    m.MSEloss(scale=1.0 / nd)
    m.sgd_optimizer(0.01)
open("%s/dlrm_%d.pb" % (out, nd), "wb").write(m.model.net.Proto().SerializeToString())
open("%s/dlrm_%d_init.pb" % (out, nd), "wb").write(m.model.param_init_net.Proto().SerializeToString())
print("ops", len(m.model.net.Proto().op))
