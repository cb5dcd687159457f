"""DLRM training and inference on the CPU: graphnet vs PyTorch eager vs real Caffe2.

Each peer runs the same model on the same weights and batches
(dlrm_caffe2_model.make_data) in its own process, with the thread count set
before numpy/torch load:

  graphnet  python -m graphnet run dlrm_caffe2_model.py   (the Caffe2-API script)
  pytorch   python dlrm_torch_model.py                    (EmbeddingBag, Linear, SGD)
  caffe2    $GRAPHNET_CAFFE2_PYTHON dlrm_caffe2_model.py  (the same script, real
            Caffe2; only when that variable names an interpreter, e.g. the one
            ../shared/reference/caffe2_reference_env.sh builds)

Times are per iteration (feed the batch + run the net, or forward + backward +
SGD step), warm-up excluded; the table shows medians with min-max and the
ratio graphnet / peer (below 1: graphnet is faster). The first losses of each
peer are compared too: the runs must compute the same thing.

    python benchmarks/dlrm_cpu.py                         # every config, 1 thread
    python benchmarks/dlrm_cpu.py --configs tiny small128 --threads 1 2
    GRAPHNET_CAFFE2_PYTHON=/tmp/c2ref/venv-torch1.10.2/bin/python \\
        python benchmarks/dlrm_cpu.py --json dlrm_cpu.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "dlrm_caffe2_model.py")
TORCH_MODEL = os.path.join(HERE, "dlrm_torch_model.py")

# (label, model config, inference?, warm-up iterations, timed iterations)
RUNS = [
    ("tiny", "tiny", False, 100, 400),
    ("dlrm-test", "dlrm-test", False, 100, 400),
    ("medium", "medium", False, 100, 100),
    ("small(128)", "small128", False, 5, 30),
    ("small(2048)", "small2048", False, 2, 8),
    ("bench(2048)", "bench2048", False, 2, 5),
    ("small(2048) inference", "small2048", True, 2, 10),
]


def peer_commands(config, inference, warmup, iters, threads, net_type):
    common = ["--config", config, "--warmup", str(warmup), "--iters", str(iters)]
    if inference:
        common.append("--inference")
    # Threads are BLAS threads for graphnet and real Caffe2, intra-op threads for
    # PyTorch; `--net-type dag` also runs graphnet's independent ops on a thread pool.
    peers = [("graphnet", [sys.executable, "-m", "graphnet", "run", MODEL] + common
              + ["--net-type", net_type]),
             ("pytorch", [sys.executable, TORCH_MODEL] + common + ["--threads", str(threads)])]
    caffe2 = os.environ.get("GRAPHNET_CAFFE2_PYTHON")
    if caffe2:
        peers.append(("caffe2", [caffe2, MODEL] + common))
    return peers


def run_peer(command, threads):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONWARNINGS"] = "ignore"
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "wall_s": time.time() - start}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.time() - start
    return result


def summarize(times):
    ms = [t * 1e3 for t in times]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def max_relative_difference(a, b):
    n = min(len(a), len(b))
    return max((abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a[:n], b[:n])),
               default=0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="*", help="labels or model configs to run "
                        "(default: all): " + ", ".join(r[0] for r in RUNS))
    parser.add_argument("--threads", type=int, nargs="*", default=[1])
    parser.add_argument("--json", default="dlrm_cpu_results.json",
                        help="where to write every measurement")
    parser.add_argument("--net-type", default="simple",
                        help="graphnet's executor: simple (default) or dag")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every peer this many times, in turns, pooling the "
                             "timed iterations (a noisy machine's slow spells then hit "
                             "each peer alike)")
    parser.add_argument("--quick", action="store_true",
                        help="a fifth of the iterations (a smoke run)")
    args = parser.parse_args(argv)

    runs = [r for r in RUNS if not args.configs or r[0] in args.configs
            or r[1] in args.configs]
    rows, records = [], []
    for threads in args.threads:
        for label, config, inference, warmup, iters in runs:
            if args.quick:
                warmup, iters = max(1, warmup // 5), max(3, iters // 5)
            results = {}
            commands = peer_commands(config, inference, warmup, iters, threads,
                                     args.net_type)
            for _ in range(args.rounds):  # peers take turns: slow spells hit them alike
                for peer, command in commands:
                    result = run_peer(command, threads)
                    if peer not in results or "error" in result:
                        results[peer] = result
                    elif "times" in result:
                        results[peer]["times"] += result["times"]
            for result in results.values():
                if "times" in result:
                    result.update(summarize(result["times"]))
            records.append({"label": label, "config": config, "inference": inference,
                            "threads": threads, "results": results})
            rows.append(format_row(label, threads, results))
            print(rows[-1], flush=True)
    print()
    print(format_table(rows))
    with open(args.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                   "runs": records}, f, indent=1)
    print("\nwritten: %s" % os.path.abspath(args.json))


HEADER = ("| config | threads | graphnet ms/it | pytorch ms/it | caffe2 ms/it | "
          "graphnet/pytorch | graphnet/caffe2 | same losses |")


def format_row(label, threads, results):
    def cell(peer):
        r = results.get(peer)
        if r is None:
            return "-"
        if "error" in r:
            return "failed: " + r["error"][:60]
        return "%.3g (%.3g-%.3g)" % (r["median_ms"], r["min_ms"], r["max_ms"])

    def ratio(peer):
        a, b = results.get("graphnet", {}), results.get(peer, {})
        if "median_ms" in a and "median_ms" in b:
            return "%.2f" % (a["median_ms"] / b["median_ms"])
        return "-"

    agree = []
    base = results.get("graphnet", {}).get("losses")
    for peer in ("pytorch", "caffe2"):
        other = results.get(peer, {}).get("losses")
        if base and other:
            agree.append("%s %.1e" % (peer, max_relative_difference(base, other)))
    return "| %s | %d | %s | %s | %s | %s | %s | %s |" % (
        label, threads, cell("graphnet"), cell("pytorch"), cell("caffe2"),
        ratio("pytorch"), ratio("caffe2"), ", ".join(agree) or "-")


def format_table(rows):
    return "\n".join([HEADER, "|" + "---|" * 8] + rows)


def machine():
    import numpy
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__}


if __name__ == "__main__":
    main()
