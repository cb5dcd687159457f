"""DLRM training step on one GPU: graphnet (Caffe2 API, CuPy executor) vs the same
model in PyTorch eager on the same GPU (benchmarks/dlrm_caffe2_model.py and
dlrm_torch_model.py: same weights, batches and SGD). Ratio = graphnet / PyTorch
seconds per step (target <= 1.0). Batches are fed every step in both peers
(host -> device); losses of the first steps are printed side by side.

    python benchmarks/gpu_dlrm_step.py [--config medium small2048] [--iters 20]
        [--modes eager deferred graphs]
        # eager: index checks before each kernel (GRAPHNET_CUDA_CHECKS=sync, the default;
        #   the fed INDICES/LENGTHS are checked on the host's copy: no device reads);
        # deferred: checks made by the kernels, read when the run ends (no host waits,
        #   as PyTorch's device-side asserts); graphs: GRAPHNET_CUDA_GRAPHS (captured on
        #   run 2, checks deferred)
        [--bags random fixed]    # fixed: static shapes (dlrm --num-indices-per-lookup-fixed)
    python benchmarks/gpu_dlrm_step.py --config medium --profile 30   # where time goes
        [--modes graphs --bags fixed]  # (profiles the first mode and bags given)

--profile N prints the host-side cProfile of graphnet's timed steps (the N functions
with the most own time: a function that waits for the GPU, in a sync or a .get(),
shows that wait as its own time) and the GPU time of each op type from CUDA events
(graphnet.executors.cuda.runner.profile), instead of the comparison.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gpu_common import summary  # noqa: E402


def run_graphnet(cfg, batches, weights, warmup, iters, profile=0, mode="eager"):
    import graphnet.compat
    graphnet.compat.install()
    import dlrm_caffe2_model as c2model
    from graphnet import config, core, workspace
    from graphnet.executors.cuda import graphs, settings
    config.set_virtual_gpu_count(0)
    settings.set_cuda_graphs(mode == "graphs")
    settings.set_checks_mode("deferred" if mode == "deferred" else "sync")
    workspace.ResetWorkspace()
    gpu0 = core.DeviceOption(workspace.GpuDeviceType, 0)
    with core.DeviceScope(gpu0):
        model, loss = c2model.build(cfg, train=True)
        for name, value in sorted(weights.items()):
            workspace.FeedBlob(name, value)
        workspace.FeedBlob("tril_indices", c2model.tril_indices(len(cfg["rows"]) + 1))
        c2model.feed_batch(workspace, batches[0])
        workspace.RunNetOnce(model.param_init_net)
        workspace.CreateNet(model.net)
        times, losses = [], []
        if profile:
            for it in range(warmup):
                c2model.feed_batch(workspace, batches[it % len(batches)])
                workspace.RunNet(model.net.Proto().name)
            return _profile(workspace, model, c2model, batches, iters, profile)
        for it in range(warmup + iters):
            start = time.perf_counter()
            c2model.feed_batch(workspace, batches[it % len(batches)])
            workspace.RunNet(model.net.Proto().name)  # ends with a stream sync
            losses.append(float(workspace.FetchBlob(loss)))  # timed, as PyTorch's .item()
            elapsed = time.perf_counter() - start
            if it >= warmup:
                times.append(elapsed)
        if mode == "graphs":
            plan = workspace._ws()._nets[model.net.Proto().name]
            print("  CUDA graphs: " + "; ".join(graphs.report(plan)))
    return float(np.median(times)), losses


def _profile(workspace, model, c2model, batches, iters, top):
    import cProfile
    import pstats
    from graphnet.executors.cuda import runner
    name = model.net.Proto().name
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for it in range(iters):
        c2model.feed_batch(workspace, batches[it % len(batches)])
        workspace.RunNet(name)
    prof.disable()
    print("host: %.3f ms per step under cProfile" % ((time.perf_counter() - start) / iters
                                                     * 1e3))
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    pstats.Stats(prof).sort_stats("cumulative").print_stats("graphnet|ops", top)
    gpu = {}
    with runner.profile() as records:
        workspace.RunNet(name)
    for step, begin, end in records:
        total, count = gpu.get(step.op_type, (0.0, 0))
        gpu[step.op_type] = (total + _elapsed(begin, end), count + 1)
    print("GPU time per op type, one step (CUDA events around each op, ms):")
    for op_type, (ms, count) in sorted(gpu.items(), key=lambda kv: -kv[1][0]):
        print("  %-44s %3d ops %8.3f ms" % (op_type, count, ms))
    print("  total %.3f ms" % sum(ms for ms, _ in gpu.values()))
    return None, []


def _elapsed(begin, end):
    import cupy
    return cupy.cuda.get_elapsed_time(begin, end)


# PyTorch's device ("cpu" only where tests run this script on the CuPy stand-in)
TORCH_DEVICE = "cuda"


def run_torch(cfg, batches, weights, warmup, iters):
    import torch
    import dlrm_torch_model as tmodel
    device = torch.device(TORCH_DEVICE)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = tmodel.DLRM(cfg, weights).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.MSELoss()
    host = [tmodel.to_torch(b) for b in batches]
    times, losses = [], []
    for it in range(warmup + iters):
        dense, indices, offsets, target = host[it % len(host)]
        sync()
        start = time.perf_counter()
        dense, target = dense.to(device), target.to(device)
        indices = [i.to(device) for i in indices]
        offsets = [o.to(device) for o in offsets]
        out = model(dense, indices, offsets)
        loss = loss_fn(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())  # a host sync, as graphnet's FetchBlob
        elapsed = time.perf_counter() - start
        losses.append(value)
        if it >= warmup:
            times.append(elapsed)
    return float(np.median(times)), losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", default=["medium", "small2048"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--modes", nargs="+", default=["eager", "deferred", "graphs"],
                        choices=["eager", "deferred", "graphs"])
    parser.add_argument("--bags", nargs="+", default=["random", "fixed"],
                        choices=["random", "fixed"],
                        help="random: 1..lookups indices per bag (INDICES changes shape "
                             "every batch, so graphs fall back to eager); fixed: exactly "
                             "lookups per bag (static shapes); both peers get the same")
    args = parser.parse_args(argv)
    import dlrm_caffe2_model as c2model
    for name in args.config:
        cfg = c2model.config(name)
        for bags in args.bags:
            weights, batches = c2model.make_data(cfg, 4, fixed_bags=bags == "fixed")
            if args.profile:  # (the first of --modes and of --bags)
                run_graphnet(cfg, batches, weights, args.warmup, args.iters, args.profile,
                             mode=args.modes[0])
                break
            peer, peer_losses = run_torch(cfg, batches, weights, args.warmup, args.iters)
            for mode in args.modes:
                ours, our_losses = run_graphnet(cfg, batches, weights, args.warmup,
                                                args.iters, mode=mode)
                label = "%s, %s bags" % (mode, bags)
                print("DLRM %s (%s): graphnet %.3f ms/step, PyTorch eager %.3f ms/step; "
                      "losses graphnet %s, PyTorch %s"
                      % (name, label, ours * 1e3, peer * 1e3,
                         ["%.5f" % v for v in our_losses[:3]],
                         ["%.5f" % v for v in peer_losses[:3]]))
                summary("DLRM step (%s, %s) vs PyTorch eager" % (name, label),
                        "%.3f ms" % (ours * 1e3), "%.3f ms" % (peer * 1e3), ours / peer,
                        "<= 1.0 (stretch 0.5)")


if __name__ == "__main__":
    main()
