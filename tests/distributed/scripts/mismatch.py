"""Rank 1 builds a net with one more op: CreateNet must fail on every rank."""

import numpy as np

from caffe2.python import core, workspace
from graphnet import distributed

workspace.SetVirtualGpuCount(2)
net = core.Net("mismatched")
for d in range(2):
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, d)):
        net.Relu("x%d" % d, "y%d" % d)
        if d == 1 and distributed.rank() == 1:
            net.Relu("y1", "y1")
    workspace.FeedBlob("x%d" % d, np.ones(3, np.float32),
                       core.DeviceOption(workspace.GpuDeviceType, d))
workspace.CreateNet(net)
print("not reached")
