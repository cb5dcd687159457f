"""DLRM training on MPI ranks: measured step time and traffic, and a scaling model.

    python benchmarks/distributed_dlrm.py                # measure 1, 2, 4 ranks + model
    python benchmarks/distributed_dlrm.py --model-only   # the cost model only
    python benchmarks/distributed_dlrm.py --model-only --alpha-us 2 --bandwidth-gbs 50

Part 1 (measured, this machine). The 4-GPU DLRM training net of
examples/dlrm_train.py (bigger: 8 tables, batch 256) runs on 1 process with 4
emulated GPUs, then under `mpiexec -n 2` (2 GPUs per rank) and `-n 4` (1 each),
with the butterfly all-to-all pass on and off. Per step: wall time on rank 0, bytes
of tensor payload all ranks sent (point to point and all-to-all; headers
excluded), messages, and the all-reduce volume a ring algorithm moves
(2(P-1)/P x bytes per rank: MPI picks its own algorithm, so this one is a model).

Part 2 (model). Per-op costs measured here (FC FLOP rate, embedding bytes/s, the
rest per sample) are scaled to a DLRM of production shape on D = 8 .. 1,024 devices
and combined with a link model (latency alpha, bandwidth beta). Assumptions,
printed with the table: weak scaling (per-device batch fixed); T tables spread
evenly, row-sharded when D > T (each device holds T/D tables' worth, at least one
shard); the top MLP's input width is fixed (--top[0]); one message costs
alpha + bytes/beta, a rank sends one message at a time (no overlap of
communication with compute or with itself); the butterfly shuffle without the pass
is one message per (table, peer) per direction, with the pass one all-to-all per
direction = D-1 messages per device (pairwise exchange); the all-reduce is a ring
per dense parameter tensor as DLRM issues it (2(D-1) steps of alpha plus
2(D-1)/D x bytes / beta); compute runs at the measured rates times
--compute-speedup (1: this machine's numpy; ~1000: a GPU, whose GEMM and memory
bandwidth are three to four orders of magnitude above numpy on 2 CPU cores).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, ROOT)

ASSUMPTIONS = (
    "Assumptions (also in this file's docstring): weak scaling; T tables spread evenly, "
    "row-sharded when D > T; the top MLP's input width is fixed (--top[0]); one message "
    "costs alpha + bytes/beta, no overlap; butterfly without the pass = one message per "
    "(table or shard, peer) per direction, with it one pairwise all-to-all (D-1 "
    "messages) per direction; ring all-reduce per dense parameter tensor; compute at the "
    "rates measured here times the speed-up.")
BENCH_CFG = dict(batch=256, dense_dim=13, emb_dim=16, table_rows=(1000,) * 8,
                 bottom=(13, 64, 16), top=(0, 64, 1), max_bag=4)


# --- part 1: measurement -------------------------------------------------------------

def _build(cfg, net_type="simple"):
    """The 4-GPU training net, fed and created; returns (model, batches)."""
    import dlrm_train
    from graphnet import workspace
    data = dlrm_train.make_data(cfg, num_batches=2)  # (resets the workspace)
    model = dlrm_train.TrainableDLRM(cfg, 4, device_option=dlrm_train.gpu(0))
    model.build()
    model.sgd(model.loss(), 0.05)
    model.feed(dlrm_train.make_weights(cfg), data[0][0], data[0][1])
    model.feed_targets(data[0][2])
    workspace.RunNetOnce(model.model.param_init_net)
    model.model.net.Proto().type = net_type
    workspace.CreateNet(model.model.net)
    return model, data


def worker(out, iters, warmup):
    """One rank of a measured run (or the 1-process run): writes JSON on rank 0."""
    import dlrm_train
    from graphnet import distributed, workspace
    warnings.simplefilter("ignore")
    workspace.SetVirtualGpuCount(4)
    cfg = dlrm_train.Config(**BENCH_CFG)
    result = {}
    for alltoall in (True, False):
        distributed.set_alltoall(alltoall)
        model, data = _build(cfg)
        name = model.model.net.Name()
        for it in range(warmup):
            workspace.RunNet(name)
        _barrier()
        distributed.reset_stats()
        steps = []
        for it in range(iters):
            dense, sparse, targets = data[it % len(data)]
            model.feed_batch(dense, sparse)
            model.feed_targets(targets)
            start = time.perf_counter()
            workspace.RunNet(name)
            steps.append(time.perf_counter() - start)
        _barrier()
        stats = _gather(distributed.stats())
        chunks = np.array_split(np.array(steps), 3)  # other load on the machine comes
        result["on" if alltoall else "off"] = {   # and goes: the quietest third counts
            "step_ms": 1e3 * float(min(np.median(c) for c in chunks)),
            "bytes": sum(s["bytes_sent"] for s in stats) / iters,
            "messages": sum(s["messages"] for s in stats) / iters,
            "allreduce_bytes": sum(s["allreduce_bytes"] for s in stats) / iters,
        }
    if distributed.rank() == 0:
        with open(out, "w") as f:
            json.dump(result, f)


def _barrier():
    from graphnet import distributed
    if distributed.is_active():
        distributed.cluster().comm.barrier("benchmark barrier")


def _gather(stats):
    from graphnet import distributed
    if not distributed.is_active():
        return [stats]
    from mpi4py import MPI
    return MPI.COMM_WORLD.allgather(stats)


def measure(ranks_list, iters, warmup):
    """{ranks: result} from `mpiexec -n R` runs (R = 1 runs in one process)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "distributed"))
    from mpirun import MPIEXEC, _launcher_flags
    results = {}
    for ranks in ranks_list:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.json")
            cmd = [sys.executable, "-m", "graphnet", "run", os.path.abspath(__file__),
                   "--worker", out, "--iters", str(iters), "--warmup", str(warmup)]
            if ranks > 1:
                if MPIEXEC is None:
                    print("skip %d ranks: no mpiexec (pip install mpi4py mpich)" % ranks)
                    continue
                cmd = [MPIEXEC] + _launcher_flags() + ["-n", str(ranks)] + cmd
            env = dict(os.environ, PYTHONPATH=ROOT)
            threads = str(max(1, (os.cpu_count() or 1) // ranks))  # BLAS threads per rank
            env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                       MKL_NUM_THREADS=threads)
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print("%d ranks failed:\n%s" % (ranks, done.stdout + done.stderr))
                continue
            with open(out) as f:
                results[ranks] = json.load(f)
    return results


def print_measured(results):
    print("Measured on this machine (%d CPU cores): DLRM training, 4 GPUs (emulated) "
          "placed on the ranks, batch %d, %d tables x %d rows x dim %d"
          % (os.cpu_count() or 0, BENCH_CFG["batch"], len(BENCH_CFG["table_rows"]),
             BENCH_CFG["table_rows"][0], BENCH_CFG["emb_dim"]))
    print("%-6s %-9s %10s %16s %12s %20s" % ("ranks", "all2all", "step ms**",
                                             "p2p+a2a B/step", "msgs/step",
                                             "allreduce B/step*"))
    for ranks in sorted(results):
        for key in ("on", "off"):
            r = results[ranks][key]
            print("%-6d %-9s %10.2f %16d %12.1f %20d" % (
                ranks, key, r["step_ms"], r["bytes"], r["messages"], r["allreduce_bytes"]))
    cores = os.cpu_count() or 0
    print("* ring model 2(P-1)/P x bytes per rank, summed over ranks.")
    print("** on rank 0: the median step of the quietest third of the steps. With more "
          "ranks than cores (4 on %d) the ranks time-share the CPU, so a step includes "
          "waiting for a core; 1 rank runs the 4 GPUs' ops one after another. BLAS "
          "threads per rank: cores / ranks." % cores)


# --- part 2: per-op costs and the model -------------------------------------------------

def measure_op_costs(iters=5):
    """Rates from timing every op of the 1-process 4-GPU net (this machine, numpy)."""
    import dlrm_train
    from graphnet import workspace
    from graphnet.executors.run import run_step
    warnings.simplefilter("ignore")
    workspace.SetVirtualGpuCount(4)
    cfg = dlrm_train.Config(**BENCH_CFG)
    model, data = _build(cfg)
    plan = workspace._ws()._nets[model.model.net.Name()]
    workspace.RunNet(model.model.net.Name())
    times = {}
    for _ in range(iters):
        for step in plan.steps:
            t0 = time.perf_counter()
            run_step(plan, step)
            times[step.index] = times.get(step.index, 0.0) + time.perf_counter() - t0
    fc_s = fc_flops = emb_s = emb_bytes = other_s = 0.0
    per_device_batch = cfg.batch / 4
    lookups = cfg.batch * (cfg.max_bag + 1) / 2.0  # mean bag size of the data
    for step in plan.steps:
        t = times[step.index] / iters
        kind = step.op_type
        if kind in ("FC", "FCGradient"):
            w = step.in_blobs[1].value
            flops = 2.0 * per_device_batch * w.size * (1 if kind == "FC" else 2)
            fc_s, fc_flops = fc_s + t, fc_flops + flops
        elif "SparseLengths" in kind or kind == "ScatterWeightedSum":
            emb_s, emb_bytes = emb_s + t, emb_bytes + lookups * cfg.emb_dim * 4
        elif kind != "NCCLAllreduce" and not kind.startswith("Copy"):
            other_s += t
    samples = per_device_batch * 4
    return {"flops_per_s": fc_flops / fc_s, "emb_bytes_per_s": emb_bytes / emb_s,
            "other_s_per_sample": other_s / samples}


def model_step(D, rates, a, speedup):
    """Seconds per training step on D devices: compute and each communication part."""
    b, T, e = a.per_device_batch, a.tables, a.emb_dim
    mlp = list(zip(a.bottom[:-1], a.bottom[1:])) + list(zip(a.top[:-1], a.top[1:]))
    flops = 3 * 2.0 * b * sum(n * m for n, m in mlp)  # forward + 2x backward
    emb_bytes = 3 * T * b * a.bag * e * 4.0           # lookup, gradient, update
    compute = (flops / rates["flops_per_s"] + emb_bytes / rates["emb_bytes_per_s"]
               + b * rates["other_s_per_sample"]) / speedup
    alpha, beta = a.alpha_us * 1e-6, a.bandwidth_gbs * 1e9
    slice_bytes = b * e * 4.0                 # one table's slice for one peer
    shuffle_bytes = (T / D) * (D - 1) * slice_bytes  # out of one device, per direction
    shards = max(T / D, 1.0)                  # tables (or row shards of one) per device
    p2p = 2 * (shards * (D - 1) * alpha + shuffle_bytes / beta)
    a2a = 2 * ((D - 1) * alpha + shuffle_bytes / beta)
    tensors = [n * m for n, m in mlp] + [m for n, m in mlp]  # weights and biases
    allreduce = sum(2 * (D - 1) * alpha + 2 * (D - 1) / D * 4.0 * size / beta
                    for size in tensors)
    return compute, p2p, a2a, allreduce


def print_model(rates, a, speedup):
    print()
    print("Scaling model: DLRM with %d tables x dim %d (bag %d), bottom %s, top "
          "%s, %d samples per device (weak scaling); compute at the rates measured here "
          "x %g" % (a.tables, a.emb_dim, a.bag, "-".join(map(str, a.bottom)),
                    "-".join(map(str, a.top)), a.per_device_batch, speedup))
    print("  measured here: FC %.2f GFLOP/s, embeddings %.3f GB/s, other ops %.1f us per "
          "sample; link: alpha %g us, beta %g GB/s" % (
              rates["flops_per_s"] / 1e9, rates["emb_bytes_per_s"] / 1e9,
              rates["other_s_per_sample"] * 1e6, a.alpha_us, a.bandwidth_gbs))
    print("%7s %11s %13s %11s %13s %13s %13s %11s  %s" % (
        "devices", "compute ms", "butterfly ms", "a2a ms", "allreduce ms",
        "step(p2p) ms", "step(a2a) ms", "msgs p2p/a2a", "largest part (with the pass)"))
    first = {}
    D = 8
    while D <= 1024:
        compute, p2p, a2a, allreduce = model_step(D, rates, a, speedup)
        parts = {"compute": compute, "all-to-all": a2a, "all-reduce": allreduce}
        largest = max(parts, key=parts.get)
        msgs = "%d/%d" % (2 * max(a.tables / D, 1) * (D - 1), 2 * (D - 1))
        print("%7d %11.3f %13.3f %11.3f %13.3f %13.3f %13.3f %12s  %s" % (
            D, 1e3 * compute, 1e3 * p2p, 1e3 * a2a, 1e3 * allreduce,
            1e3 * (compute + p2p + allreduce), 1e3 * (compute + a2a + allreduce), msgs,
            largest))
        for name, value in (("butterfly shuffle (p2p)", p2p), ("all-to-all", a2a),
                            ("all-reduce", allreduce)):
            if value > compute and name not in first:
                first[name] = D
        D *= 2
    for name in ("butterfly shuffle (p2p)", "all-to-all", "all-reduce"):
        print("  %s exceeds compute from %s" % (
            name, "%d devices on" % first[name] if name in first else
            "no D up to 1,024"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--model-only", action="store_true")
    parser.add_argument("--alpha-us", type=float, default=5.0, help="link latency (us)")
    parser.add_argument("--bandwidth-gbs", type=float, default=12.5,
                        help="link bandwidth per device (GB/s; 12.5 = 100 Gb/s)")
    parser.add_argument("--compute-speedup", type=float, nargs="*", default=[1.0, 1000.0],
                        help="device compute vs this machine's numpy (1: as measured; "
                             "~1000: a GPU); one table each")
    parser.add_argument("--per-device-batch", type=int, default=2048)
    parser.add_argument("--tables", type=int, default=64)
    parser.add_argument("--emb-dim", type=int, default=64)
    parser.add_argument("--bag", type=int, default=1)
    parser.add_argument("--bottom", type=int, nargs="*", default=[13, 512, 256, 64])
    parser.add_argument("--top", type=int, nargs="*", default=[512, 256, 1])
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.iters, args.warmup)
        return 0
    if not args.model_only:
        print_measured(measure(args.ranks, args.iters, args.warmup))
    rates = measure_op_costs()
    for speedup in args.compute_speedup:
        print_model(rates, args, speedup)
    print(ASSUMPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
