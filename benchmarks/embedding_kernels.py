"""The embedding kernels alone: SparseLengthsSum forward and ScatterWeightedSum.

Each op runs through graphnet (RunNet on a one-op net) with its three numpy-
backend implementations, against PyTorch doing the same work in the same run:

  plain     GRAPHNET_FAST_KERNELS=0: np.take + np.add.reduceat; np.add.at
  numpy     the fast numpy path: whole-row gathers (a void view), reduceat;
            rows hit once updated in one pass, repeated rows in rounds
  compiled  the numba loops of the [fast] extra (one pass, Caffe2's order)
  pytorch   F.embedding_bag(mode="sum"); Tensor.index_add_

Table: median ms per call (1 thread) and the ratio to PyTorch. This is the
measurement behind the README's note on the numba dependency.

    python benchmarks/embedding_kernels.py
    python benchmarks/embedding_kernels.py --rows 1000000 --dims 16 64 --batch 2048
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from graphnet import config, core, workspace  # noqa: E402
from graphnet.ops import _common, sparse_lengths  # noqa: E402


def median_ms(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def with_kernels(kind, run):
    """Time `run` with one implementation selected."""
    saved = dict(sparse_lengths._COMPILED), dict(_common._COMPILED)
    try:
        config.set_fast_kernels(kind != "plain")
        if kind == "numpy":
            sparse_lengths._COMPILED.update({"pool": None})
            _common._COMPILED.update({"scatter_add": None})
        return run()
    finally:
        config.set_fast_kernels(True)
        sparse_lengths._COMPILED.clear()
        sparse_lengths._COMPILED.update(saved[0])
        _common._COMPILED.clear()
        _common._COMPILED.update(saved[1])


def cycled_nets(name, op_type, inputs, outputs, batches):
    """One single-op net per batch of ids ("indices" in `inputs` becomes indices<b>),
    and a call running the next one: each call meets cold rows, as training does."""
    names = []
    for b in range(batches):
        net = core.Net("%s%d" % (name, b))
        ins = ["indices%d" % b if i == "indices" else i for i in inputs]
        net.Proto().op.extend([core.CreateOperator(op_type, ins, outputs)])
        workspace.CreateNet(net)
        names.append(net.Name())
    turn = [0]

    def call():
        turn[0] += 1
        workspace.RunNet(names[turn[0] % batches])
    return call


def bench(rows, dim, batch, lookups, repeats, kinds, batches=4):
    import torch
    torch.set_num_threads(1)
    rng = np.random.RandomState(0)
    table = rng.uniform(-1, 1, (rows, dim)).astype(np.float32)
    lengths = np.maximum(1, np.round(rng.uniform(0, 1, batch) * lookups)).astype(np.int32)
    ids = [rng.randint(0, rows, int(lengths.sum())).astype(np.int64) for _ in range(batches)]
    grads = rng.uniform(-1, 1, (len(ids[0]), dim)).astype(np.float32)
    workspace.ResetWorkspace()
    feeds = [("table", table), ("lengths", lengths), ("grads", grads),
             ("one", np.ones(1, np.float32)), ("lr", np.full(1, -0.01, np.float32))]
    for name, value in feeds + [("indices%d" % b, v) for b, v in enumerate(ids)]:
        workspace.FeedBlob(name, value)
    sls = cycled_nets("sls", "SparseLengthsSum", ["table", "indices", "lengths"],
                      ["pooled"], batches)
    sws = cycled_nets("sws", "ScatterWeightedSum",
                      ["table", "one", "indices", "grads", "lr"], ["table"], batches)
    t_table = torch.from_numpy(table.copy())
    t_ids = [torch.from_numpy(v) for v in ids]
    t_off = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    t_grads = torch.from_numpy(grads) * -0.01
    turn = [0]

    def torch_call(run):
        def call():
            turn[0] += 1
            run(t_ids[turn[0] % batches])
        return call
    results = {
        ("SparseLengthsSum", "pytorch"): median_ms(torch_call(
            lambda i: torch.nn.functional.embedding_bag(i, t_table, t_off, mode="sum")),
            repeats),
        ("ScatterWeightedSum", "pytorch"): median_ms(torch_call(
            lambda i: t_table.index_add_(0, i, t_grads)), repeats),
    }
    for kind in kinds:
        results[("SparseLengthsSum", kind)] = with_kernels(
            kind, lambda: median_ms(sls, repeats))
        results[("ScatterWeightedSum", kind)] = with_kernels(
            kind, lambda: median_ms(sws, repeats))
    return len(ids[0]), results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--dims", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--lookups", type=int, default=100, help="max bag size")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    kinds = ["plain", "numpy"]
    if _common.compiled_scatter_add() is not None:
        kinds.append("compiled")
    print("| op | dim | lookups | " + " | ".join("%s ms" % k for k in kinds + ["pytorch"])
          + " | " + " | ".join("%s / pytorch" % k for k in kinds) + " |")
    print("|---" * (3 + 2 * len(kinds) + 1) + "|")
    for dim in args.dims:
        n, results = bench(args.rows, dim, args.batch, args.lookups, args.repeats, kinds)
        for op in ("SparseLengthsSum", "ScatterWeightedSum"):
            peer = results[(op, "pytorch")]
            print("| %s | %d | %d | %s | %.2f | %s |" % (
                op, dim, n, " | ".join("%.2f" % results[(op, k)] for k in kinds), peer,
                " | ".join("%.2f" % (results[(op, k)] / peer) for k in kinds)), flush=True)


if __name__ == "__main__":
    main()
