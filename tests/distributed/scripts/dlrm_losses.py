"""DLRM training losses on this job's ranks, written by rank 0 to OUT (.npz).

    mpiexec -n R python -m graphnet run dlrm_losses.py OUT [--net-type dag] [--iters N]
        [--real-gpus]

Trains examples/dlrm_train.py's model on 4 GPUs (placed on the R ranks) with the
butterfly all-to-all pass on, again with it off, and on 1 device (the CPU, every
rank runs it); saves the three loss curves, the bytes each rank sent and how GPU
arrays travelled (distributed.transport()). --real-gpus: the 4 GPUs are logical
GPUs on the machine's real ones (CuPy) instead of emulated.
"""

import argparse
import os
import sys
import warnings

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "..", "examples"))
import dlrm_train  # noqa: E402

from graphnet import distributed, workspace  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--net-type", default="simple")
parser.add_argument("--iters", type=int, default=20)
parser.add_argument("--real-gpus", action="store_true")
parser.add_argument("--host-transport", action="store_true",
                    help="float32 arrays take the device-transport path "
                         "(tests/distributed/host_transport.py)")
args = parser.parse_args()
if args.host_transport:
    from tests.distributed.host_transport import install
    host_transport = install()

warnings.simplefilter("ignore")  # DLRM's seeds on GPU 0 are read by every GPU
cfg = dlrm_train.Config(batch=16)
if args.real_gpus:
    workspace.SetGpuDeviceMapping(4)
else:
    workspace.SetVirtualGpuCount(4)
data = dlrm_train.make_data(cfg, num_batches=8)
result = {}
for name, alltoall in (("alltoall_on", True), ("alltoall_off", False)):
    distributed.set_alltoall(alltoall)
    distributed.reset_stats()
    result[name] = dlrm_train.train(cfg, 4, data, args.iters, net_type=args.net_type,
                                    show=False)
    result[name + "_bytes"] = distributed.stats()["bytes_sent"]
result["one_device"] = dlrm_train.train(cfg, 0, data, args.iters, show=False)
result["transport"] = "%s: %s" % distributed.transport()
if args.host_transport:
    for key, count in host_transport.counts.items():
        result["transport_" + key] = count
if distributed.rank() == 0:
    np.savez(args.out, **{k: np.asarray(v) for k, v in result.items()})
print("rank %d of %d done" % (distributed.rank(), distributed.world_size()))
