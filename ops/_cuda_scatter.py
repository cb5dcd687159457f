"""Row scatter-add on CUDA, shared by gather.py and weighted_sum.py:
out[rows[j]] += scale * values[j] for a float32 (nrows, block) `out`, in place.

Two algorithms (GRAPHNET_CUDA_DETERMINISTIC / graphnet.executors.cuda.settings):
* atomics (default): one thread per (j, column), atomicAdd; duplicates all add,
  in an order that can change from run to run (float32 sums may differ in the
  last bits);
* deterministic: positions sorted by (row, position); the first thread of each
  run of equal rows adds the run's values in position order. This is exactly
  numpy's np.add.at order, so results equal the numpy backend bit for bit (where
  no subnormal float arises: CuPy builds kernels with -ftz=true, flushing them).
Out-of-range rows are skipped and flagged (ops check them before launching).
Imports numpy and ops._cuda only.
"""

import numpy as np

from ._cuda import INDEX_TYPES, CudaSource, index_type, launch, null_flag, variants

__all__ = ["scatter_add_rows", "scale_rows", "deterministic", "sorted_runs"]

SCATTER_CUDA = CudaSource("scatter_rows", variants(r"""
extern "C" __global__ void scatter_atomic$SUFFIX(float* out, const $IT* rows,
        const float* values, float scale, const float* scale_at, i64 k, i64 block,
        i64 nrows, i64* flag) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= k * block) return;
    if (scale_at) scale = scale_at[0];
    i64 j = t / block, c = t - j * block;
    i64 r = (i64)rows[j];
    if (r < 0 || r >= nrows) { if (c == 0) gn_flag(flag, j); return; }
    atomicAdd(out + r * block + c, __fmul_rn(scale, values[t]));
}

extern "C" __global__ void scatter_sorted$SUFFIX(float* out, const $IT* sorted_rows,
        const i64* order, const float* values, float scale, const float* scale_at, i64 k,
        i64 block, i64 nrows, i64* flag) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= k * block) return;
    if (scale_at) scale = scale_at[0];
    i64 p = t / block, c = t - p * block;
    i64 r = (i64)sorted_rows[p];
    if (p > 0 && (i64)sorted_rows[p - 1] == r) return;  /* not the first of its run */
    if (r < 0 || r >= nrows) { if (c == 0) gn_flag(flag, order[p]); return; }
    float acc = out[r * block + c];
    for (i64 q = p; q < k && (i64)sorted_rows[q] == r; ++q)
        acc = __fadd_rn(acc, __fmul_rn(scale, values[order[q] * block + c]));
    out[r * block + c] = acc;
}

/* out[r] *= factor once per occurrence of r (ScatterWeightedSum's w_0), in order. */
extern "C" __global__ void scale_rows_sorted$SUFFIX(float* out, const $IT* sorted_rows,
        const float* factor_at, i64 k, i64 block, i64 nrows) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= k * block) return;
    float factor = factor_at[0];
    if (factor == 1.0f) return;
    i64 p = t / block, c = t - p * block;
    i64 r = (i64)sorted_rows[p];
    if (p > 0 && (i64)sorted_rows[p - 1] == r) return;
    if (r < 0 || r >= nrows) return;
    float v = out[r * block + c];
    for (i64 q = p; q < k && (i64)sorted_rows[q] == r; ++q) v = __fmul_rn(v, factor);
    out[r * block + c] = v;
}

/* The same without sorting: occurrences counted per row, one claiming position per
   row (atomicExch) multiplies it that many times (the same products, in sequence). */
extern "C" __global__ void count_rows$SUFFIX(const $IT* rows, i64 k, i64 nrows,
        int* counts) {
    i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= k) return;
    i64 r = (i64)rows[j];
    if (r >= 0 && r < nrows) atomicAdd(counts + r, 1);
}

extern "C" __global__ void claim_rows$SUFFIX(const $IT* rows, i64 k, i64 nrows,
        int* counts, int* times) {
    i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= k) return;
    i64 r = (i64)rows[j];
    times[j] = (r >= 0 && r < nrows) ? atomicExch(counts + r, 0) : 0;
}

extern "C" __global__ void scale_claimed$SUFFIX(float* out, const $IT* rows,
        const int* times, const float* factor_at, i64 k, i64 block) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= k * block) return;
    float factor = factor_at[0];
    if (factor == 1.0f) return;
    i64 j = t / block, c = t - j * block;
    int n = times[j];
    if (n == 0) return;
    i64 at = (i64)rows[j] * block + c;
    float v = out[at];
    for (int q = 0; q < n; ++q) v = __fmul_rn(v, factor);
    out[at] = v;
}
""", IT=INDEX_TYPES))


def deterministic():
    from graphnet.executors.cuda import settings
    return settings.deterministic()


def sorted_runs(xp, rows):
    """(order, rows[order]): positions sorted by row, ties by position.
    The sort key row * k + position is unique, so any sort algorithm gives it. Rows
    are clipped to [-1, 2**63 / k) first so the key cannot overflow: a huge bad row
    (flagged by the deferred checks) would otherwise land inside a valid row's run,
    and two threads would update that row at once."""
    k = max(rows.shape[0], 1)
    top = np.int64(np.iinfo(np.int64).max // k - 1)
    key = (xp.clip(rows.astype(np.int64), np.int64(-1), top) * np.int64(k)
           + xp.arange(rows.shape[0], dtype=np.int64))
    order = xp.argsort(key)
    return order, xp.ascontiguousarray(rows[order])


def scatter_add_rows(xp, out, rows, values, scale=1.0, flag=None, sorted_=None):
    """out (float32, C-contiguous, (nrows, block)) += scale * values at rows, in place.

    `scale` is a number or a one-element float32 device array (read by the kernel,
    no host sync); `sorted_` reuses sorted_runs(xp, rows) when the caller has it."""
    rows = xp.ascontiguousarray(rows.reshape(-1))
    k = rows.shape[0]
    nrows = out.shape[0]
    block = out.size // nrows if nrows else 0
    if k == 0 or block == 0:
        return out
    values = xp.ascontiguousarray(values.reshape(k, block), dtype=np.float32)
    flag = null_flag() if flag is None else flag
    if rows.dtype not in (np.int32, np.int64):
        rows = rows.astype(np.int64)
    suffix = index_type(rows.dtype)
    if isinstance(scale, xp.ndarray):
        scale_value, scale_at = np.float32(0), xp.ascontiguousarray(scale.reshape(-1)[:1])
    else:
        scale_value, scale_at = np.float32(scale), null_flag()
    if deterministic():
        order, sorted_rows = sorted_ if sorted_ is not None else sorted_runs(xp, rows)
        launch(SCATTER_CUDA.function("scatter_sorted_" + index_type(sorted_rows.dtype)),
               k * block, (out, sorted_rows, order, values, scale_value, scale_at,
                           np.int64(k), np.int64(block), np.int64(nrows), flag))
    else:
        launch(SCATTER_CUDA.function("scatter_atomic_" + suffix), k * block,
               (out, rows, values, scale_value, scale_at, np.int64(k), np.int64(block),
                np.int64(nrows), flag))
    return out


def scale_rows(xp, out, factor, sorted_=None, rows=None):
    """out[r] *= factor (a one-element float32 device array) once per occurrence of
    r: along sorted_runs(rows) when given, else by counting (no sort: nothing waits
    for the device, as a CUDA graph capture needs)."""
    if sorted_ is None:
        return _scale_rows_counted(xp, out, factor, rows)
    order, sorted_rows = sorted_
    k = sorted_rows.shape[0]
    nrows = out.shape[0]
    block = out.size // nrows if nrows else 0
    if k == 0 or block == 0:
        return out
    launch(SCATTER_CUDA.function("scale_rows_sorted_" + index_type(sorted_rows.dtype)),
           k * block, (out, sorted_rows, xp.ascontiguousarray(factor.reshape(-1)[:1]),
                       np.int64(k), np.int64(block), np.int64(nrows)))
    return out


def _scale_rows_counted(xp, out, factor, rows):
    rows = xp.ascontiguousarray(rows.reshape(-1))
    k, nrows = rows.shape[0], out.shape[0]
    block = out.size // nrows if nrows else 0
    if k == 0 or block == 0:
        return out
    suffix = index_type(rows.dtype)
    counts = xp.zeros((nrows,), dtype=np.int32)
    times = xp.empty((k,), dtype=np.int32)
    launch(SCATTER_CUDA.function("count_rows_" + suffix), k,
           (rows, np.int64(k), np.int64(nrows), counts))
    launch(SCATTER_CUDA.function("claim_rows_" + suffix), k,
           (rows, np.int64(k), np.int64(nrows), counts, times))
    launch(SCATTER_CUDA.function("scale_claimed_" + suffix), k * block,
           (out, rows, times, xp.ascontiguousarray(factor.reshape(-1)[:1]), np.int64(k),
            np.int64(block)))
    return out
