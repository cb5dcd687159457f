"""SparseLengthsSum forward + backward on a GPU: achieved memory bandwidth through
graphnet's CUDA kernels vs a device-to-device copy (cudaMemcpy) on the same GPU.

Bytes counted: forward reads the gathered rows, the indices and lengths and writes
the output; backward (SparseLengthsIndicesInGradientSumGradient) reads dY and writes
one row per index. Times are whole RunNet calls (Python, validation and the final
stream synchronization included), median of --repeat.

    python benchmarks/gpu_sls_bandwidth.py [--rows 1000000 --dim 64 --bags 65536 --bag 64]
        [--modes eager graphs]

eager: the ops check indices before their kernels -- fed from the host, INDICES and
LENGTHS are checked on the host's copy once per feed (graphnet.executors.cuda.
host_values), so a RunNet is the kernels and the final synchronization; graphs:
GRAPHNET_CUDA_GRAPHS, the two ops replayed as one CUDA graph with the checks made by
the kernels and read when the run ends.

For context (no target), the same bytes through PyTorch on the same data when it sees
the GPU: F.embedding_bag (mode "sum") forward, and the values of its sparse gradient
(dY repeated per lookup, torch.repeat_interleave): what a tuned library's gathers
reach on this GPU beside the copy.
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
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--bags", type=int, default=65536)
    parser.add_argument("--bag", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=["eager", "graphs"],
                        choices=["eager", "graphs"])
    args = parser.parse_args(argv)
    import cupy as cp
    from graphnet.executors.cuda import settings
    config.set_virtual_gpu_count(0)
    gpu0 = core.DeviceOption(workspace.GpuDeviceType, 0)
    rng = np.random.default_rng(0)
    n = args.bags * args.bag
    data = {"table": rng.standard_normal((args.rows, args.dim)).astype(np.float32),
            "idx": rng.integers(0, args.rows, n).astype(np.int64),
            "len": np.full(args.bags, args.bag, np.int32),
            "dy": rng.standard_normal((args.bags, args.dim)).astype(np.float32)}
    with core.DeviceScope(gpu0):
        for name, value in data.items():
            workspace.FeedBlob(name, value)
        net = core.Net("sls_fwd_bwd")
        net.SparseLengthsSum(["table", "idx", "len"], "out")
        net.SparseLengthsIndicesInGradientSumGradient(["dy", "len", "idx"], "grad_values")
    workspace.CreateNet(net)
    row = args.dim * 4
    moved = (n * row + n * 8 + args.bags * 4 + args.bags * row      # forward
             + args.bags * row + args.bags * 4 + n * row)           # backward
    src = cp.empty(moved // 2, dtype=cp.uint8)
    dst = cp.empty_like(src)

    def copy():
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes, 3,
                                    cp.cuda.get_current_stream().ptr)
        cp.cuda.get_current_stream().synchronize()
    peer_seconds = time_gpu(copy, args.repeat)
    peer = 2 * src.nbytes / peer_seconds / 1e9  # read + write
    for mode in args.modes:
        settings.set_cuda_graphs(mode == "graphs")
        seconds = time_gpu(lambda: workspace.RunNet("sls_fwd_bwd"), args.repeat)
        ours = moved / seconds / 1e9
        label = "" if mode == "eager" else ", CUDA graph"
        print("SparseLengthsSum fwd+bwd%s: %d bags x %d lookups of %d floats (table %d "
              "rows): %.3f ms per RunNet, %.1f GB/s; device-to-device copy %.1f GB/s"
              % (label, args.bags, args.bag, args.dim, args.rows, seconds * 1e3, ours,
                 peer))
        summary("SLS fwd+bwd bandwidth vs D2D copy%s" % label, "%.1f GB/s" % ours,
                "%.1f GB/s" % peer, ours / peer, ">= 0.60")
    per_op(cp, row, n, args.bags)
    pytorch_context(data, moved, peer, args.repeat)


def torch_sls(table, idx, lengths, dy, device):
    """SparseLengthsSum and SparseLengthsIndicesInGradientSumGradient in PyTorch on
    `device`: a function returning (pooled (bags, dim), gradient values (n, dim)),
    done with the device when it returns; None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    w, i, g = put(table), put(idx), put(dy)
    counts = put(lengths.astype(np.int64))
    offsets = torch.cumsum(counts, 0) - counts
    n = int(idx.shape[0])
    wait = torch.cuda.synchronize if w.is_cuda else (lambda: None)

    def step():
        pooled = F.embedding_bag(i, w, offsets, mode="sum")
        values = torch.repeat_interleave(g, counts, dim=0, output_size=n)  # (no sync)
        wait()
        return pooled, values
    return step


def pytorch_context(data, moved, peer, repeat):
    try:
        import torch
        if not torch.cuda.is_available():
            raise ImportError("no GPU for torch")
    except ImportError as exc:
        print("PyTorch embedding_bag: not run (%s)" % exc)
        return
    step = torch_sls(data["table"], data["idx"], data["len"], data["dy"], "cuda")
    seconds = time_gpu(step, repeat)
    rate = moved / seconds / 1e9
    print("PyTorch %s embedding_bag fwd + repeat_interleave bwd, same data: %.3f ms, "
          "%.1f GB/s" % (torch.__version__, seconds * 1e3, rate))
    summary("SLS fwd+bwd, PyTorch embedding_bag vs D2D", "%.1f GB/s" % rate,
            "%.1f GB/s" % peer, rate / peer, "context, no target")


def per_op(cp, row, n, bags):
    """Where the time goes: each op's GPU time between CUDA events around it (one
    eager run, median of 5) and its own bytes, against the whole RunNet's; the
    forward with each pooling kernel (graphnet.ops.sparse_lengths.POOL_ROWS: rows in
    flight per thread, 4 by default)."""
    from graphnet.executors.cuda import runner, settings
    from graphnet.ops import sparse_lengths
    settings.set_cuda_graphs(False)
    moved = {"SparseLengthsSum": n * row + n * 8 + bags * 4 + bags * row,
             "SparseLengthsIndicesInGradientSumGradient": bags * row + bags * 4 + n * row}
    default = sparse_lengths.POOL_ROWS
    try:
        for rows in (4, 8):
            sparse_lengths.POOL_ROWS = rows
            times = {}
            for _ in range(5):
                with runner.profile() as records:
                    workspace.RunNet("sls_fwd_bwd")
                for step, begin, end in records:
                    times.setdefault(step.op_type, []).append(
                        cp.cuda.get_elapsed_time(begin, end) / 1e3)
            for op_type, seconds in times.items():
                if rows != default and op_type != "SparseLengthsSum":
                    continue
                seconds = sorted(seconds)[len(seconds) // 2]
                rate = ("%7.1f GB/s" % (moved[op_type] / seconds / 1e9) if seconds > 0
                        else "n/a")
                label = op_type + (" (%d rows in flight)" % rows
                                   if op_type == "SparseLengthsSum" else "")
                print("  %-44s %8.3f ms on the GPU, %s" % (label, seconds * 1e3, rate))
    finally:
        sparse_lengths.POOL_ROWS = default


if __name__ == "__main__":
    main()
