"""Where a DLRM training step spends its time in graphnet, op type by op type.

Builds benchmarks/dlrm_caffe2_model.py's net for a config, then runs its compiled
step closures one by one, timing each; batches cycle as in the benchmark. Per op
type: how many ops of it the net has and the minimum time of one (the least
disturbed run; medians on a shared machine are 1.5-2x higher), sorted by their
share of the step, and the sum: the kernel time of one step before feeding.

    python benchmarks/op_profile.py --config tiny
"""

import argparse
import collections
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from graphnet import compat  # noqa: E402

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", choices=sorted(model.CONFIGS))
    parser.add_argument("--iters", type=int, default=500)
    args = parser.parse_args(argv)
    rows = profile(args.config, args.iters)
    print("| op | ops in the net | us per op (min) |")
    print("|---|---|---|")
    for op, count, us in rows:
        print("| %s | %d | %.1f |" % (op, count, us))
    print("\nsum: %.1f us per step" % sum(count * us for _, count, us in rows))


if __name__ == "__main__":
    main()
