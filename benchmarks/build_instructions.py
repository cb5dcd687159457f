"""Instructions spent building and creating a DLRM training net, phase by phase.

On a shared 2-core VM the wall time of one build moves ±30% between runs, so a
change of 10% to the front end cannot be seen in benchmarks/overhead.py's seconds.
Instruction counts can: this script runs itself under valgrind (cachegrind,
no cache simulation) once per phase boundary and prints what each phase cost,
the same to within ~1% run to run (PYTHONHASHSEED is fixed).

Phases, on benchmarks/overhead.py's net and its helpers (DLRM on 8 emulated GPUs,
4-row tables):
forward build (core.Net ops), loss + AddGradientOperators + SGD, CreateNet.
Needs valgrind on PATH; about 1 minute for the default 520 tables (10k ops).

    python benchmarks/build_instructions.py                # 10k ops
    python benchmarks/build_instructions.py --tables 2000  # ~38k ops: check linearity
"""

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ["imports", "forward", "gradients", "fed", "created"]


def run_until(stage, tables):
    """Build the net up to `stage` (one of STAGES), in this process; its op count."""
    sys.path.insert(0, HERE)
    import overhead  # noqa: E402 (puts examples/ on the path)
    from graphnet import registry, workspace
    import dlrm_parallel_forward  # noqa: F401 (imported before any phase is counted)
    import dlrm_train  # noqa: F401
    registry.registered_types()  # the op library loaded before any phase
    workspace.ResetWorkspace()
    workspace.SetVirtualGpuCount(8)
    upto = STAGES.index(stage)
    if upto == 0:
        return 0
    cfg, model = overhead.dlrm_forward_net(tables)
    if upto >= 2:
        model.sgd(model.loss(), 0.1)
    if upto >= 3:
        overhead.feed_and_init(cfg, model)
    if upto >= 4:
        workspace.CreateNet(model.model.net)
    return len(model.model.net.Proto().op)


def count(stage, tables):
    """Instructions (total of the process) of a run up to `stage`."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no",
         "--cachegrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__),
         "--stage", stage, "--tables", str(tables)],
        env=env, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError("no instruction count in valgrind's output:\n" + out.stderr)
    ops = re.search(r"ops (\d+)", out.stdout)
    return int(match.group(1).replace(",", "")), int(ops.group(1)) if ops else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=520)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:  # the measured child
        print("ops %d" % run_until(args.stage, args.tables))
        return
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(STAGES, pool.map(lambda s: count(s, args.tables), STAGES)))
    ops = counts["created"][1]
    n = {s: c for s, (c, _) in counts.items()}
    phases = [("forward build", n["forward"] - n["imports"]),
              ("loss + gradients + SGD", n["gradients"] - n["forward"]),
              ("CreateNet", n["created"] - n["fed"])]
    print("Instructions, DLRM training net on 8 emulated GPUs, %d tables, %d ops"
          % (args.tables, ops))
    print("| phase | million instructions | thousand per op of the final net |")
    print("|---|---|---|")
    for name, value in phases + [("total", sum(v for _, v in phases))]:
        print("| %s | %.0f | %.1f |" % (name, value / 1e6, value / ops / 1e3))


if __name__ == "__main__":
    main()
