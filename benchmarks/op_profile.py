"""Where a DLRM training step spends its time in graphnet, op type by op type.

Builds benchmarks/dlrm_caffe2_model.py's net for a config, then runs its compiled
step closures one by one, timing each; batches cycle as in the benchmark. Per op
type: how many ops of it the net has and the minimum time of one (the least
disturbed run; medians on a shared machine are 1.5-2x higher), sorted by their
share of the step, and the sum: the kernel time of one step before feeding.

    python benchmarks/op_profile.py --config tiny
    python benchmarks/op_profile.py --config medium --fused   # the fused program
"""

import argparse
import collections
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from graphnet import compat, config as graphnet_config  # noqa: E402

compat.install()
import dlrm_caffe2_model as model  # noqa: E402
from caffe2.python import workspace  # noqa: E402

from graphnet.executors.run import runners  # noqa: E402


def profile(config, iters):
    cfg = model.config(config)
    weights, batches = model.make_data(cfg, 4)
    built, _ = model.create(workspace, cfg, weights, batches[0])
    plan = workspace._ws()._nets[built.net.Name()]  # the compiled Plan CreateNet made
    steps, closures = plan.steps, runners(plan)
    times = collections.defaultdict(list)
    with np.errstate(all="ignore"):
        for it in range(iters):
            model.feed_batch(workspace, batches[it % len(batches)])
            for step, run in zip(steps, closures):
                start = time.perf_counter()
                run()
                times[step.op_type].append(time.perf_counter() - start)
    rows = [(op, len(v) // iters, min(v) * 1e6) for op, v in times.items()]
    return sorted(rows, key=lambda r: -r[1] * r[2])


def profile_fused(config, iters):
    """The same for the net's fused program (graphnet.executors.fused): each of its
    instructions run on its own through the compiled loop, timed per kernel."""
    from graphnet.ops import _fused
    cfg = model.config(config)
    weights, batches = model.make_data(cfg, 1)
    built, _ = model.create(workspace, cfg, weights, batches[0])
    plan = workspace._ws()._nets[built.net.Name()]
    for _ in range(graphnet_config.fuse_after() + 1):
        workspace.RunNet(built.net.Name())
    fused = plan.fused
    if fused is None:
        raise SystemExit("net '%s' is not fused: %s" % (plan.name, plan.fusion))
    code, arenas = fused.code, fused.arenas.arenas
    instructions, p = [], 0
    while p < len(code):
        instructions.append(code[p:p + code[p + 1]].copy())
        p += code[p + 1]
    times = collections.defaultdict(list)
    for _ in range(iters):
        for instruction in instructions:
            start = time.perf_counter()
            fused.vm(instruction, *arenas)
            times[_fused.KERNELS[instruction[0]].__name__].append(
                time.perf_counter() - start)
    whole = []
    for _ in range(iters):
        start = time.perf_counter()
        fused.vm(code, *arenas)
        whole.append(time.perf_counter() - start)
    counts = collections.Counter(_fused.KERNELS[i[0]].__name__ for i in instructions)
    rows = [(kernel, counts[kernel], min(v) * 1e6) for kernel, v in times.items()]
    return sorted(rows, key=lambda r: -r[1] * r[2]), min(whole) * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", choices=sorted(model.CONFIGS))
    parser.add_argument("--iters", type=int, default=500)
    parser.add_argument("--fused", action="store_true",
                        help="profile the net's fused program, kernel by kernel")
    args = parser.parse_args(argv)
    if args.fused:
        rows, whole = profile_fused(args.config, args.iters)
        print("| VM kernel | instructions | us per instruction (min, with the call) |")
        print("|---|---|---|")
        for kernel, count, us in rows:
            print("| %s | %d | %.1f |" % (kernel, count, us))
        print("\nwhole program: %.1f us per run (one call, min)" % whole)
        return
    rows = profile(args.config, args.iters)
    print("| op | ops in the net | us per op (min) |")
    print("|---|---|---|")
    for op, count, us in rows:
        print("| %s | %d | %.1f |" % (op, count, us))
    print("\nsum: %.1f us per step" % sum(count * us for _, count, us in rows))


if __name__ == "__main__":
    main()
