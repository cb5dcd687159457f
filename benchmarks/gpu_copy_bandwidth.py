"""Copy between two logical GPUs (one net op, its own stream) vs cudaMemcpy of the
same bytes on the same GPU(s). With one physical GPU both logical devices share it
(a device-to-device copy); with two, gpu_1 maps to physical 1 (a peer copy).

    python benchmarks/gpu_copy_bandwidth.py [--mib 256]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import summary, time_gpu  # noqa: E402

from graphnet import config, core, workspace  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    import cupy as cp
    config.set_virtual_gpu_count(0)
    physical = cp.cuda.runtime.getDeviceCount()
    workspace.SetGpuDeviceMapping([0, 1] if physical > 1 else [0, 0])
    count = args.mib * 1024 * 1024 // 4
    workspace.FeedBlob("x", np.ones(count, np.float32),
                       core.DeviceOption(workspace.GpuDeviceType, 0))
    net = core.Net("copy")
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 1)):
        net.Copy("x", "y")
    workspace.CreateNet(net)
    seconds = time_gpu(lambda: workspace.RunNet("copy"), args.repeat)
    nbytes = count * 4
    dst_device = 1 if physical > 1 else 0
    src = workspace._ws()._blobs["x"].value
    with cp.cuda.Device(dst_device):
        dst = cp.empty_like(src)

    def memcpy():
        with cp.cuda.Device(dst_device):
            stream = cp.cuda.get_current_stream()
            cp.cuda.runtime.memcpyPeerAsync(dst.data.ptr, dst_device, src.data.ptr, 0,
                                            nbytes, stream.ptr)
            stream.synchronize()
    peer_seconds = time_gpu(memcpy, args.repeat)
    ours, peer = nbytes / seconds / 1e9, nbytes / peer_seconds / 1e9
    kind = "peer" if physical > 1 else "same-GPU"
    print("Copy gpu_0 -> gpu_1 (%s), %d MiB: %.3f ms per RunNet (%.1f GB/s); cudaMemcpy "
          "%.3f ms (%.1f GB/s)" % (kind, args.mib, seconds * 1e3, ours,
                                   peer_seconds * 1e3, peer))
    summary("Copy between logical GPUs vs cudaMemcpy (%s)" % kind, "%.1f GB/s" % ours,
            "%.1f GB/s" % peer, ours / peer, ">= 0.80")


if __name__ == "__main__":
    main()
