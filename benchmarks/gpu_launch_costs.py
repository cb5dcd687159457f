"""Host time per call of what a small eager DLRM step is made of: graphnet's CuPy
calls (and its per-op overhead) against PyTorch's equivalents, on the same GPU.

The medium DLRM step (benchmarks/gpu_dlrm_step.py) moves so little data that its time
is the host's: Python, CuPy's wrappers, cuBLAS's and CUDA's launch paths. Each row
times N back-to-back calls on small operands (the step's shapes) with one
synchronization at the end, so the figure is the host's cost per call (the GPU keeps
up: each kernel runs in a few microseconds); ratio = graphnet / PyTorch.

    python benchmarks/gpu_launch_costs.py [--calls 2000] [--repeat 5]

Rows:
  matmul (32x64 @ 64x16)   cupy.matmul (FC's product with GRAPHNET_CUDA_DIRECT_BLAS=0)
                            | torch.mm
  matmul, cuBLAS direct     graphnet.executors.cuda.blas.matmul (ctypes: FC's product
                            by default, eager and captured) | torch.mm
  FC (matmul + bias)        FC's calls (the direct product, then the bias added in
                            place) | torch.nn.functional.linear
  elementwise (relu)        cupy.maximum(x, 0) | torch.relu
  in-place add              y += b | y.add_(b)
  column sums               x.sum(axis=0) | x.sum(0)
  RawKernel launch          a graphnet CUDA kernel (WeightedSum's) | torch.add(alpha=)
  empty (32x16)             cupy.empty | torch.empty
  host -> device (32x40 i64) graphnet's FeedBlob path (pinned) | tensor.to(cuda)
  graphnet op (Relu)        one op of a RunNet (a chain of 200 Relu) | torch.relu
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import summary  # noqa: E402


def per_call(fn, calls, repeat, sync):
    """Median over `repeat` of (seconds for `calls` calls + one sync) / calls."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return sorted(times)[len(times) // 2]


def cupy_rows(cp, calls, repeat):
    from graphnet import config, core, registry, workspace
    registry.registered_types()  # (graphnet.ops without the editable install too)
    from graphnet.executors.cuda import blas, copies
    from graphnet.executors.cuda.runtime import runtime
    from graphnet.ops import weighted_sum
    from graphnet.ops._cuda import launch
    rng = np.random.default_rng(0)

    def dev(shape):
        return cp.asarray(rng.standard_normal(shape).astype(np.float32))
    x, w, b, y = dev((32, 64)), dev((16, 64)), dev((16,)), dev((32, 16))
    stream = cp.cuda.get_current_stream()
    sync = stream.synchronize
    kernel = weighted_sum._WEIGHTED_SUM_CUDA.function("weighted_sum_pair")
    one = cp.ones((1,), np.float32)
    flat = y.reshape(-1)
    n = np.int64(flat.size)
    out = cp.empty_like(flat)
    host = rng.integers(0, 1000, (32, 40)).astype(np.int64)
    rt = runtime()

    def fc():
        z = blas.matmul(cp, x, w.T)
        z += b
        return z
    rows = {
        "matmul (32x64 @ 64x16)": lambda: x @ w.T,
        "matmul, cuBLAS direct": lambda: blas.matmul(cp, x, w.T),
        "FC (matmul + bias)": fc,
        "elementwise (relu)": lambda: cp.maximum(y, 0),
        "in-place add": lambda: y.__iadd__(b),
        "column sums": lambda: y.sum(axis=0),
        "RawKernel launch": lambda: launch(kernel, flat.size, (flat, one, flat, one, n, out)),
        "empty (32x16)": lambda: cp.empty((32, 16), np.float32),
        "host -> device (32x40 i64)": lambda: copies.to_device(rt, host, 0, stream),
    }
    times = {name: per_call(fn, calls, repeat, sync) for name, fn in rows.items()}
    # graphnet's own cost per op: a RunNet of a chain of Relu ops, per op
    config.set_virtual_gpu_count(0)
    chain = 200
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 0)):
        workspace.FeedBlob("launch_x", rng.standard_normal((32, 16)).astype(np.float32))
        net = core.Net("launch_chain")
        for k in range(chain):
            net.Relu(["launch_x" if k == 0 else "launch_y%d" % (k % 2)],
                     ["launch_y%d" % ((k + 1) % 2)])
    workspace.CreateNet(net)
    run = per_call(lambda: workspace.RunNet("launch_chain"), max(1, calls // chain),
                   repeat, sync)
    times["graphnet op (Relu)"] = run / chain
    return times


def torch_rows(calls, repeat):
    import torch
    if not torch.cuda.is_available():
        return {}
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dev)
    x, w, b, y = rand(32, 64), rand(16, 64), rand(16), rand(32, 16)
    host = torch.randint(0, 1000, (32, 40), dtype=torch.int64)
    sync = torch.cuda.synchronize
    rows = {
        "matmul (32x64 @ 64x16)": lambda: torch.mm(x, w.t()),
        "matmul, cuBLAS direct": lambda: torch.mm(x, w.t()),
        "FC (matmul + bias)": lambda: torch.nn.functional.linear(x, w, b),
        "elementwise (relu)": lambda: torch.relu(y),
        "in-place add": lambda: y.add_(b),
        "column sums": lambda: y.sum(0),
        "RawKernel launch": lambda: torch.add(y, y, alpha=1.0),
        "empty (32x16)": lambda: torch.empty((32, 16), device=dev),
        "host -> device (32x40 i64)": lambda: host.to(dev),
        "graphnet op (Relu)": lambda: torch.relu(y),
    }
    return {name: per_call(fn, calls, repeat, sync) for name, fn in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import cupy as cp
    ours = cupy_rows(cp, args.calls, args.repeat)
    try:
        peer = torch_rows(args.calls, args.repeat)
    except ImportError:
        peer = {}
    print("%-28s %12s %12s %8s" % ("host us per call", "graphnet", "PyTorch", "ratio"))
    for name, seconds in ours.items():
        other = peer.get(name)
        print("%-28s %12.2f %12s %8s" % (
            name, seconds * 1e6, "%.2f" % (other * 1e6) if other else "n/a",
            "%.2f" % (seconds / other) if other else "n/a"))
    for name in ("matmul (32x64 @ 64x16)", "matmul, cuBLAS direct", "graphnet op (Relu)"):
        if name in peer:  # (in run.sh's summary table)
            summary("host per call: %s" % name, "%.2f us" % (ours[name] * 1e6),
                    "%.2f us" % (peer[name] * 1e6), ours[name] / peer[name],
                    "(informative)")


if __name__ == "__main__":
    main()
