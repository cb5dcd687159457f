"""A 2-rank net whose op 'FaultOnRank' fails on one rank mid-run.

    mpiexec -n 2 python -m graphnet run fault.py MODE RANK ITER
MODE: raise (a Python exception in the op), exit (os._exit(3) in the op),
kill (SIGKILL to itself in the op), hang (sleeps 120 s in the op: the other rank
gives up after GRAPHNET_DIST_TIMEOUT), silent (as if dead: stops its heartbeats
after one more, then sleeps; the other rank notices after GRAPHNET_DIST_LIVENESS).
The other rank waits in the all-reduce. GRAPHNET_TEST_HOST_TRANSPORT=1: float32
arrays take the device-transport path (tests/distributed/host_transport.py).
"""

import os
import signal
import sys

import numpy as np

from caffe2.python import core, workspace
from graphnet.registry import OpSchema, lookup

mode, bad_rank, bad_iter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

if lookup("FaultOnRank") is None:
    FAULT = OpSchema("FaultOnRank", inputs=1, outputs=1, allow_inplace={(0, 0)},
                     doc="test op: fails on one rank at one iteration")

    @FAULT.kernel
    def fault_on_rank(ctx, args, x):
        from graphnet import distributed
        state = fault_on_rank.__dict__
        state["runs"] = state.get("runs", 0) + 1
        if distributed.rank() == bad_rank and state["runs"] == bad_iter:
            if mode == "raise":
                raise ValueError("injected failure on rank %d" % bad_rank)
            if mode == "exit":
                os._exit(3)
            if mode in ("hang", "silent"):
                import time
                if mode == "silent":
                    time.sleep(1.5)  # one more heartbeat, carrying this op's label
                    distributed.cluster().comm.stop_watchdog()
                time.sleep(120)
            os.kill(os.getpid(), signal.SIGKILL)
        return x * 1.0

if os.environ.get("GRAPHNET_TEST_HOST_TRANSPORT") == "1":
    from tests.distributed.host_transport import install
    install()
workspace.SetVirtualGpuCount(2)
net = core.Net("fault")
for d in range(2):
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, d)):
        net.FaultOnRank("x%d" % d, "y%d" % d)
with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 0)):
    net.NCCLAllreduce(["y0", "y1"], ["y0", "y1"])
for d in range(2):
    workspace.FeedBlob("x%d" % d, np.ones(3, np.float32),
                       core.DeviceOption(workspace.GpuDeviceType, d))
workspace.CreateNet(net)
for it in range(5):
    workspace.RunNet("fault")
print("all runs done", workspace.FetchBlob("y0"))
