"""Index checks of the CUDA kernels: what the ops must know about INDICES and
LENGTHS before they launch, in one kernel and one device-to-host transfer.

* index_stats: min and sum of LENGTHS, min and max of INDICES, and the bits of one
  float32 scalar (ScatterWeightedSum's w_0) -- a grid-stride pass with warp
  shuffles and one atomic per block, then a single read of five int64s. The
  generic formulation (four CuPy reductions, each read back) waited for the GPU
  four times per op.
* flag_rows: the deferred form (GRAPHNET_CUDA_CHECKS=deferred, and CUDA graphs,
  where nothing may wait for the device): the smallest position holding a row
  outside [0, rows) goes into the op's error flag, read when the run ends.

Imports numpy and ops/_cuda.py only; CuPy comes in through the kernels' arrays.
"""

import numpy as np

from graphnet.errors import EnforceError

from ._cuda import INDEX_TYPES, CudaSource, index_type, launch, null_flag, variants

__all__ = ["index_stats", "known_stats", "flag_rows", "deferred_checks", "deferred_flag",
           "host_error", "to_numpy", "capturing"]

CHECKS_CUDA = CudaSource("index_checks", r"""
#define GN_I64_MAX 9223372036854775807LL
#define GN_I64_MIN (-GN_I64_MAX - 1LL)
__device__ __forceinline__ i64 gn_min(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 gn_max(i64 a, i64 b) { return a > b ? a : b; }

extern "C" __global__ void index_stats_init(i64* out) {
    out[0] = GN_I64_MAX; out[1] = 0; out[2] = GN_I64_MAX; out[3] = GN_I64_MIN; out[4] = 0;
}
""" + variants(r"""
/* out: [min LENGTHS, sum LENGTHS, min INDICES, max INDICES, bits of *scalar] */
extern "C" __global__ void index_stats$SUFFIX(const $IT* idx, i64 n, const int* len,
        i64 m, const unsigned int* scalar, i64* out) {
    i64 low = GN_I64_MAX, total = 0, first = GN_I64_MAX, last = GN_I64_MIN;
    i64 start = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = start; i < n; i += stride) {
        i64 v = (i64)idx[i];
        first = gn_min(first, v);
        last = gn_max(last, v);
    }
    for (i64 i = start; i < m; i += stride) {
        i64 v = (i64)len[i];
        low = gn_min(low, v);
        total += v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        low = gn_min(low, __shfl_down_sync(0xffffffffu, low, o));
        total += __shfl_down_sync(0xffffffffu, total, o);
        first = gn_min(first, __shfl_down_sync(0xffffffffu, first, o));
        last = gn_max(last, __shfl_down_sync(0xffffffffu, last, o));
    }
    __shared__ i64 part[4][32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    if (lane == 0) {
        part[0][warp] = low; part[1][warp] = total;
        part[2][warp] = first; part[3][warp] = last;
    }
    __syncthreads();
    if (warp != 0) return;
    low = lane < warps ? part[0][lane] : GN_I64_MAX;
    total = lane < warps ? part[1][lane] : 0;
    first = lane < warps ? part[2][lane] : GN_I64_MAX;
    last = lane < warps ? part[3][lane] : GN_I64_MIN;
    for (int o = 16; o > 0; o >>= 1) {
        low = gn_min(low, __shfl_down_sync(0xffffffffu, low, o));
        total += __shfl_down_sync(0xffffffffu, total, o);
        first = gn_min(first, __shfl_down_sync(0xffffffffu, first, o));
        last = gn_max(last, __shfl_down_sync(0xffffffffu, last, o));
    }
    if (lane != 0) return;
    atomicMin(&out[0], low);
    atomicAdd((unsigned long long*)&out[1], (unsigned long long)total);
    atomicMin(&out[2], first);
    atomicMax(&out[3], last);
    if (scalar && start == 0) out[4] = (i64)scalar[0];
}

extern "C" __global__ void flag_rows$SUFFIX(const $IT* idx, i64 n, i64 rows, i64* flag) {
    i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    i64 r = (i64)idx[j];
    if (r < 0 || r >= rows) gn_flag(flag, j);
}
""", IT=INDEX_TYPES))

_BLOCK = 256
_MAX_BLOCKS = 1024  # enough to fill any GPU; the grid-stride loop covers the rest


_I64_MAX, _I64_MIN = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)


def index_stats(cp, indices=None, lengths=None, scalar=None):
    """(min LENGTHS, sum LENGTHS, min INDICES, max INDICES, scalar) as Python values.

    indices: int32/int64 (any shape), lengths: int32 (any shape), scalar: a float32
    device array whose first element is returned as a float. An absent or empty
    input gives the sentinels (2**63 - 1, 0, 2**63 - 1, -2**63). Inputs whose values
    the host uploaded (graphnet.executors.cuda.host_values) are answered from those,
    without a kernel or a wait for the device."""
    known = known_stats(indices, lengths, scalar)
    if known is not None:
        return known
    out = cp.empty((5,), dtype=np.int64)
    launch(CHECKS_CUDA.function("index_stats_init"), 1, (out,), block=1)
    if indices is not None and indices.size:
        idx = cp.ascontiguousarray(indices).reshape(-1)
        suffix, n = index_type(idx.dtype), idx.shape[0]
    else:
        idx, suffix, n = null_flag(), "i64", 0
    if lengths is not None and lengths.size:
        lens, m = cp.ascontiguousarray(lengths, dtype=np.int32).reshape(-1), lengths.size
    else:
        lens, m = null_flag(), 0
    bits = null_flag()
    if scalar is not None:
        bits = cp.ascontiguousarray(scalar.reshape(-1)[:1], dtype=np.float32).view(np.uint32)
    blocks = max(1, min(_MAX_BLOCKS, (max(n, m) + _BLOCK - 1) // _BLOCK))
    launch(CHECKS_CUDA.function("index_stats_" + suffix), blocks * _BLOCK,
           (idx, np.int64(n), lens, np.int64(m), bits, out), block=_BLOCK)
    low, total, first, last, raw = (int(v) for v in out.get())
    value = float(np.array([raw & 0xFFFFFFFF], np.uint32).view(np.float32)[0])
    return low, total, first, last, value


def _first_last(host):
    return int(host.min()), int(host.max())


def _low_total(host):
    lengths = host.astype(np.int32, copy=False)  # (as the kernel reads them)
    return int(lengths.min()), int(lengths.sum(dtype=np.int64))


def known_stats(indices=None, lengths=None, scalar=None):
    """index_stats from the host's copies of the inputs, or None when one is unknown
    (the min/max and min/sum of an upload are computed once and kept with it). Free
    when known: deferred checks skip their kernels then."""
    from graphnet.executors.cuda import host_values
    first, last, low, total, value = _I64_MAX, _I64_MIN, _I64_MAX, 0, 0.0
    if indices is not None and indices.size:
        found = host_values.cached(indices, "first_last", _first_last)
        if found is None:
            return None
        first, last = found
    if lengths is not None and lengths.size:
        found = host_values.cached(lengths, "low_total", _low_total)
        if found is None:
            return None
        low, total = found
    if scalar is not None:
        host = host_values.lookup(scalar)
        if host is None:
            return None
        value = float(np.float32(host.reshape(-1)[0]))
    return low, total, first, last, value


def flag_rows(cp, indices, rows, flag):
    """Record in `flag` (ops' int64 error flag) the first position of INDICES outside
    [0, rows); launches only, never waits for the device."""
    idx = cp.ascontiguousarray(indices).reshape(-1)
    if idx.size:
        launch(CHECKS_CUDA.function("flag_rows_" + index_type(idx.dtype)), idx.size,
               (idx, np.int64(idx.size), np.int64(rows), flag))


def deferred_checks():
    """True when GPU kernels check indices themselves and the run reports a failure at
    its end (GRAPHNET_CUDA_CHECKS=deferred, and while a CUDA graph is captured)."""
    from graphnet.executors.cuda import checks
    return not checks.sync_checks()


def capturing():
    """True while this thread captures a CUDA graph (graphnet.executors.cuda.graphs):
    nothing may upload from host memory or wait for the device."""
    from graphnet.executors.cuda import checks
    return checks.is_capturing()


def deferred_flag(cp, describe):
    """A kernel's error flag, read when the run ends; describe(position) returns the
    exception to raise then (see graphnet.executors.cuda.checks)."""
    from graphnet.executors.cuda import checks
    return checks.new_flag(cp, describe)


def host_error(check):
    """The EnforceError `check()` raises: a flagged op's checks, rerun on host copies of
    its inputs after the run, give Caffe2's message."""
    try:
        check()
    except EnforceError as exc:
        return exc
    return EnforceError("a CUDA kernel flagged its indices or lengths, but the host "
                        "check of the same inputs passed: were they changed after the "
                        "run? Fix: rerun with GRAPHNET_CUDA_CHECKS=sync to check before "
                        "each launch.")


def to_numpy(x):
    """A host copy of a device array (numpy arrays as they are)."""
    return x if isinstance(x, np.ndarray) else x.get()
