"""WeightedSum with WeightedSumGradient, and ScatterWeightedSum (in place on rows of
X_0). Imports numpy, the registry and ops._common only.
"""

import numpy as np

from graphnet import config
from graphnet.registry import Arg, INF, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._common import (F32, FLOATS, INDEX_TYPES, checked, cpp_float, cpp_name, dims_text,
                      compiled_scatter_add, compiled_scatter_loop, expect_dtype, expect_dtypes,
                      gather_rows, numel, occurrence_rounds, repeated_positions, rows_valid,
                      scatter_rows)
from ._fused import INT32, rows_in_range, vm_bind, vm_helper, vm_kernel


def _one_element(op, w, k, pair):
    """Weight w_pair (input k) is a single float."""
    n = numel(w.shape)
    if n != 1:
        enforce(False,
                "weight%d.numel() == 1. %d vs 1. %s input %d (weight w_%d) must hold exactly "
                "1 element, found %d (shape %s). Fix: feed a 1-element float32 tensor." % (
                    pair, n, op, k, pair, n, dims_text(w.shape)), input_index=k)


# --- WeightedSum ----------------------------------------------------------------------

WEIGHTED_SUM = OpSchema(
    "WeightedSum", inputs=(2, INF), outputs=1, input_check=lambda n: n % 2 == 0,
    allow_inplace={(0, 0)},
    doc="Y = sum_i w_i * X_i over inputs X_0, w_0, X_1, w_1, ... (float32; 1-element "
        "float32 weights); in place only on X_0.")


def _weighted_sum_checks(xs):
    op = "WeightedSum"
    expect_dtype(op, xs[0], F32, 0)
    expect_dtype(op, xs[1], F32, 1)
    _one_element(op, xs[1], 1, 0)
    if numel(xs[0].shape) == 0:
        return False  # Caffe2 returns the empty output before looking further
    size = numel(xs[0].shape)
    for k in range(2, len(xs), 2):
        x, w = xs[k], xs[k + 1]
        expect_dtype(op, x, F32, k)
        if numel(x.shape) != size:
            enforce(False,
                    "X%d.numel() == size. %d vs %d. WeightedSum input #%d has %d elements, "
                    "expected %d (those of X_0 %s). Fix: feed X_i with X_0's element count."
                    % (k // 2, numel(x.shape), size, k, numel(x.shape), size,
                       dims_text(xs[0].shape)), input_index=k)
        expect_dtype(op, w, F32, k + 1)
        _one_element(op, w, k + 1, k // 2)
    return True


@WEIGHTED_SUM.shape
def _(args, *xs):
    _weighted_sum_checks(xs)
    return [TensorInfo(xs[0].shape, np.float32)]


def _weighted_sum_plan(ctx, xs):
    for k in range(2, len(xs), 2):
        if ctx.inplace(k, 0):
            enforce(False,
                    "Input #%d is the same as output. If you want to do in-place updates, put "
                    "the output as input #0." % k, input_index=k)
    return _weighted_sum_checks(xs)


@WEIGHTED_SUM.kernel
def weighted_sum(ctx, args, *xs):
    if not checked(ctx, tuple((x.shape, x.dtype) for x in xs),
                   lambda: _weighted_sum_plan(ctx, xs)):
        return ctx.xp.empty(xs[0].shape, np.float32)
    x0 = xs[0]
    out = x0 * xs[1].reshape(())
    for k in range(2, len(xs), 2):
        x = xs[k]
        out += xs[k + 1].reshape(()) * (x if x.shape == x0.shape else x.reshape(x0.shape))
    return out


# CUDA (backend "cupy"): SGD's update, X_0 * w_0 + w_1 * X_1, is one kernel instead of
# two products and a sum (three launches and two temporaries); each further pair adds
# in one more. Products and sums are rounded one by one, as the generic path rounds
# them (no fused multiply-add), and the weights stay on the device.

from ._cuda import CudaSource, launch  # noqa: E402

_WEIGHTED_SUM_CUDA = CudaSource("weighted_sum", r"""
extern "C" __global__ void weighted_sum_pair(const float* x0, const float* w0,
        const float* x1, const float* w1, i64 n, float* y) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(__fmul_rn(x0[i], w0[0]), __fmul_rn(w1[0], x1[i]));
}
extern "C" __global__ void weighted_sum_add(const float* x, const float* w, i64 n,
                                            float* y) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(y[i], __fmul_rn(w[0], x[i]));
}
""")


@WEIGHTED_SUM.kernel(backend="cupy")
def weighted_sum_cuda(ctx, args, *xs):
    if len(xs) < 4:
        return weighted_sum(ctx, args, *xs)  # one pair: a single product anyway
    if not checked(ctx, tuple((x.shape, x.dtype) for x in xs),
                   lambda: _weighted_sum_plan(ctx, xs)):
        return ctx.xp.empty(xs[0].shape, np.float32)
    xp = ctx.xp
    flat = [xp.ascontiguousarray(x).reshape(-1) for x in xs]
    n = flat[0].shape[0]
    out = xp.empty(xs[0].shape, np.float32)
    launch(_WEIGHTED_SUM_CUDA.function("weighted_sum_pair"), n,
           (flat[0], flat[1], flat[2], flat[3], np.int64(n), out))
    for k in range(4, len(xs), 2):
        launch(_WEIGHTED_SUM_CUDA.function("weighted_sum_add"), n,
               (flat[k], flat[k + 1], np.int64(n), out))
    return out


@WEIGHTED_SUM.gradient
def _(g):
    n = len(g.def_.input)
    ins = [g.GO(0)] + list(g.def_.input)
    outs = [g.GI(i) for i in range(0, n, 2)]
    if g.arg("grad_on_w", 0):
        outs += [g.GI(i + 1) for i in range(0, n, 2)]
    return [g.op("WeightedSumGradient", ins, outs)]


WEIGHTED_SUM_GRADIENT = OpSchema(
    "WeightedSumGradient", inputs=(3, INF), outputs=(1, INF),
    input_check=lambda n: n % 2 == 1, args=[Arg("grad_on_w", "bool", False)])


def _wsg_count(args, n_in):
    return n_in - 1 if args.grad_on_w else n_in // 2


@WEIGHTED_SUM_GRADIENT.shape
def _(args, dy, *xs):
    pairs = len(xs) // 2
    infos = [TensorInfo(dy.shape, np.float32)] * pairs
    if args.grad_on_w:
        infos += [TensorInfo((1,), np.float32)] * pairs
    return infos


@WEIGHTED_SUM_GRADIENT.kernel
def weighted_sum_gradient(ctx, args, dy, *xs):
    op = "WeightedSumGradient"
    want = _wsg_count(args, len(xs) + 1)
    if ctx.num_outputs != want:
        enforce(False,
                "OutputSize() == output_size. %d vs %d. %s with grad_on_w=%d and %d inputs "
                "needs %d outputs. Fix: list one X_i gradient per pair%s." % (
                    ctx.num_outputs, want, op, int(args.grad_on_w), len(xs) + 1, want,
                    " plus one w_i gradient per pair" if args.grad_on_w else ""))
    expect_dtype(op, dy, F32, 0)
    size = numel(dy.shape)
    for k in range(0, len(xs), 2):
        expect_dtype(op, xs[k + 1], F32, k + 2)
        _one_element(op, xs[k + 1], k + 2, k // 2)
        if args.grad_on_w:
            expect_dtype(op, xs[k], F32, k + 1)
            if numel(xs[k].shape) != size:
                enforce(False,
                        "cur_X.numel() == size. %d vs %d. %s: X at input %d must have dY's "
                        "element count. Fix: pass the forward inputs unchanged." % (
                            numel(xs[k].shape), size, op, k + 1), input_index=k + 1)
    xp = ctx.xp
    dxs = [dy * xs[k + 1].reshape(()) for k in range(0, len(xs), 2)]
    dws = []
    if args.grad_on_w:
        flat = dy.reshape(-1)
        dws = [xp.dot(flat, xs[k].reshape(-1)).astype(np.float32).reshape(1)
               for k in range(0, len(xs), 2)]
    return tuple(dxs + dws)


# --- ScatterWeightedSum ---------------------------------------------------------------

SCATTER_WEIGHTED_SUM = OpSchema(
    "ScatterWeightedSum", inputs=(5, INF), outputs=1,
    input_check=lambda n: (n - 3) % 2 == 0,
    enforce_inplace={(0, 0)}, should_not_do_gradient=True,
    doc="X_0[idx] = w_0 * X_0[idx] + sum_k w_k * X_k[i] for inputs X_0, w_0, INDICES, "
        "X_1, w_1, ...; duplicates are scaled and accumulated once per occurrence.")


def _scatter_checks(xs):
    op = "ScatterWeightedSum"
    x0, w0, idx = xs[0], xs[1], xs[2]
    if x0.dtype not in FLOATS:
        enforce(False,
                "Unsupported type of tensor X_0: %s. Expected float32/float64, found %s. Fix: "
                "cast X_0." % (cpp_name(x0.dtype), x0.dtype.name), input_index=0)
    expect_dtypes(op, idx, INDEX_TYPES, 2)
    if numel(x0.shape) == 0:
        return None
    enforce(len(x0.shape) > 0, "X0.dim() > 0. X0 has to be at least the vector. Found a "
                               "0-d X_0. Fix: reshape X_0 to (N, ...).", input_index=0)
    _one_element(op, w0, 1, 0)
    expect_dtype(op, w0, F32, 1)
    n = int(x0.shape[0])
    block = numel(x0.shape) // n
    k = numel(idx.shape)
    for j in range(3, len(xs), 2):
        x, w = xs[j], xs[j + 1]
        if numel(x.shape) != block * k:
            enforce(False,
                    "X.numel() == block_size * K. %d vs %d. %s input %d must hold one row of "
                    "%d values per index (%d indices). Fix: feed a (%d, ...) update." % (
                        numel(x.shape), block * k, op, j, block, k, k), input_index=j)
        _one_element(op, w, j + 1, (j - 1) // 2)
        expect_dtype(op, x, x0.dtype, j)
        expect_dtype(op, w, F32, j + 1)
    return n, block


def _scatter_sizes(ctx, xs):
    """_scatter_checks once per input signature (shapes and dtypes: all it reads)."""
    return checked(ctx, tuple((x.shape, x.dtype) for x in xs), lambda: _scatter_checks(xs))


@SCATTER_WEIGHTED_SUM.shape
def _(args, *xs):
    _scatter_checks(xs)
    return [TensorInfo(xs[0].shape, xs[0].dtype)]


def _accumulate_rows(ctx, data, idx, x, w):
    """Caffe2's w_0 == 1 loop, data[idx[i]] += w * X[i] for i in order, on numpy.

    Rows hit once are gathered, updated and written back whole (gather_rows /
    scatter_rows); rows hit several times are updated in rounds of distinct rows in
    index order, so every row sees its additions in Caffe2's order."""
    scratch = ctx.cache.get("rows")
    if scratch is None or scratch.shape[0] < data.shape[0]:
        scratch = ctx.cache["rows"] = np.empty(data.shape[0], np.int64)
    repeated = repeated_positions(idx, scratch)
    many = np.flatnonzero(repeated) if repeated.any() else None
    if many is not None:
        rows = idx[many]
        before = gather_rows(data, rows)  # exact values, restored below
    values = gather_rows(data, idx)
    values += w * x
    scatter_rows(data, idx, values)  # right for every row hit once
    if many is None:
        return
    scatter_rows(data, rows, before)  # repeated rows: back to their value before the op
    for sel in occurrence_rounds(np, rows):
        at = rows[sel]
        values = gather_rows(data, at)
        values += w * gather_rows(x, many[sel])
        scatter_rows(data, at, values)


@SCATTER_WEIGHTED_SUM.kernel
def scatter_weighted_sum(ctx, args, *xs):
    sizes = _scatter_sizes(ctx, xs)
    x0 = xs[0]
    if sizes is None:
        return x0
    n, block = sizes
    host = np.asarray(ctx.backend.to_host(xs[2])).reshape(-1).astype(np.int64, copy=False)
    if host.size and not rows_valid(host, n) and (host.min() < 0 or host.max() >= n):
        bad = np.nonzero((host < 0) | (host >= n))[0]
        enforce(False, "Index out of bounds: %d, range 0 to %d. ScatterWeightedSum: "
                       "INDICES[%d] must address a row of X_0 (shape %s); nothing was "
                       "updated. Fix: keep indices in [0, %d)." % (
                           host[bad[0]], n, bad[0], dims_text(x0.shape), n), input_index=2)
    xp = ctx.xp
    data = x0.reshape(n, block)
    if isinstance(data, np.ndarray) and not data.flags.writeable:
        data = data.copy()
    w0 = np.float32(np.asarray(ctx.backend.to_host(xs[1])).reshape(()))
    pairs = [(xs[j].reshape(-1, block),
              cpp_float(data, np.asarray(ctx.backend.to_host(xs[j + 1])).reshape(())))
             for j in range(3, len(xs), 2)]
    if w0 == np.float32(1.0) and isinstance(data, np.ndarray):
        # Caffe2 adds pair after pair, each over all indices in order (checked on
        # real Caffe2 with values whose rounding tells the two orders apart).
        compiled = compiled_scatter_add()  # None without numba or with fast kernels off
        for x, w in pairs:
            if compiled is not None:
                compiled(data, host, np.ascontiguousarray(x), w)
            elif config.fast_kernels():
                _accumulate_rows(ctx, data, host, x, w)
            else:
                np.add.at(data, host, w * x)  # the plain formulation
        return data.reshape(x0.shape)
    # Rounds follow Caffe2's sequential order, each touching distinct rows.
    rounds = occurrence_rounds(np, host)
    if w0 != np.float32(1.0):
        for sel in rounds:
            rows = xp.asarray(host[sel])
            data[rows] *= cpp_float(data, w0)
    for x, w in pairs:
        for sel in rounds:
            rows = xp.asarray(host[sel])
            data[rows] += w * x[xp.asarray(sel)]
    return data.reshape(x0.shape)


# --- CUDA kernels (backend "cupy"; compiled lazily, see ops/_cuda.py) -----------------
# float32 X_0 is updated in place on the GPU: w_0 scales each occurrence of a row once
# (counted per row, or along sorted runs when deterministic), then every (X_k, w_k)
# pair scatter-adds through ops/_cuda_scatter.py (atomics, or sorted runs with
# GRAPHNET_CUDA_DETERMINISTIC=1).
# Weights stay on the device. Indices are checked before any write (default), or by
# the kernels and reported at the end of the run (GRAPHNET_CUDA_CHECKS=deferred).
# float64 X_0 keeps the generic kernel.

from graphnet.errors import EnforceError as _EnforceError  # noqa: E402

from ._cuda_checks import index_stats, known_stats  # noqa: E402
from ._cuda_scatter import (deterministic, scale_rows, scatter_add_rows,  # noqa: E402
                            sorted_runs)


def _bounds_message(position, value, n, shape):
    return ("Index out of bounds: %d, range 0 to %d. ScatterWeightedSum: INDICES[%d] "
            "must address a row of X_0 (shape %s); nothing was updated. Fix: keep "
            "indices in [0, %d)." % (value, n, position, dims_text(shape), n))


@SCATTER_WEIGHTED_SUM.kernel(backend="cupy")
def scatter_weighted_sum_cuda(ctx, args, *xs):
    x0 = xs[0]
    if x0.dtype != F32:
        return scatter_weighted_sum(ctx, args, *xs)
    sizes = _scatter_sizes(ctx, xs)
    if sizes is None:
        return x0
    n, block = sizes
    xp = ctx.xp
    idx = xp.ascontiguousarray(xs[2].reshape(-1))
    from graphnet.executors.cuda import checks, host_values
    flag, w0_is_one = None, False
    if checks.sync_checks():
        # bounds and w_0 in one transfer (none when the host fed them, or ConstantFill
        # made w_0): w_0 == 1 (SGD's ONE) leaves rows unscaled,
        # so the scaling kernels are skipped (x * 1.0 == x)
        _, _, first, last, w0 = (index_stats(xp, idx, scalar=xs[1]) if idx.size
                                 else (0, 0, 0, 0, 1.0))  # no index: nothing to do
        if first < 0 or last >= n:
            bad = (idx < 0) | (idx >= n)
            j = int(xp.argmax(bad))
            enforce(False, _bounds_message(j, int(idx[j]), n, x0.shape), input_index=2)
        w0_is_one = w0 == 1.0
    else:
        shape = tuple(x0.shape)
        known = known_stats(idx)  # (fed from the host: valid indices need no flag)
        if known is None or not 0 <= known[2] <= known[3] < n:
            flag = checks.new_flag(xp, lambda j: _EnforceError(
                _bounds_message(j, int(idx[j]), n, shape), input_index=2))
        w0 = host_values.lookup(xs[1])  # (None under capture: a replay may see others)
        w0_is_one = w0 is not None and np.float32(w0.reshape(-1)[0]) == np.float32(1.0)
    data = xp.ascontiguousarray(x0).reshape(n, block)
    runs = sorted_runs(xp, idx) if deterministic() else None
    if not w0_is_one:
        scale_rows(xp, data, xs[1], runs, rows=idx)
    for j in range(3, len(xs), 2):
        scatter_add_rows(xp, data, idx, xs[j].reshape(-1, block), scale=xs[j + 1],
                         flag=flag, sorted_=runs)
    return data.reshape(x0.shape)


# --- fused lowering (graphnet.executors.fused) -----------------------------------------

@vm_helper
def _axpby(x, a, y, b, out):
    """out = x * a + b * y elementwise (out may be x or y)."""
    for i in range(x.shape[0]):
        out[i] = x[i] * a + b * y[i]


@vm_kernel
def weighted_sum_vm(c, p, f4, i4, i8):
    """y = x0 * w0 + w1 * x1 + ..., the kernel's order (n, y, pairs, then x_k, w_k)."""
    n, y, pairs = c[p], c[p + 1], c[p + 2]
    w0 = f4[c[p + 4]]
    if pairs == 2:  # SGD's update: one vectorized pass
        x0, x1 = c[p + 3], c[p + 5]
        _axpby(f4[x0:x0 + n], w0, f4[x1:x1 + n], f4[c[p + 6]], f4[y:y + n])
        return True
    for i in range(n):
        total = f4[c[p + 3] + i] * w0
        for k in range(1, pairs):
            total += f4[c[p + 4 + 2 * k]] * f4[c[p + 3 + 2 * k] + i]
        f4[y + i] = total
    return True


@WEIGHTED_SUM.lowering
def _lower_weighted_sum(f):
    if not (f.all_dtypes(np.float32) and f.same_sizes(range(0, len(f.in_info), 2))
            and all(numel(i.shape) == 1 for i in f.in_info[1::2])):
        return False
    f.emit(weighted_sum_vm, f.size(), f.out(0), len(f.in_info) // 2,
           *[f.off(k) for k in range(len(f.in_info))])
    return True


_scatter_vm = None  # bound to the interpreter's compiled scatter loop when a net is fused
vm_bind(__name__, "_scatter_vm", compiled_scatter_loop)


@vm_helper
def _scatter_pairs(c, p, f4, idx, n, block, count):
    """X_0 rows idx += w_k * X_k, pair after pair; False (nothing written) when w_0 is
    not 1 (the kernel's rounds path) or an index is outside [0, n)."""
    if f4[c[p + 2]] != np.float32(1) or not rows_in_range(idx, n):
        return False
    data = f4[c[p + 1]:c[p + 1] + n * block].reshape((n, block))
    for k in range(c[p + 7]):
        x = c[p + 8 + 2 * k]
        _scatter_vm(data, idx, f4[x:x + count * block].reshape((count, block)),
                    f4[c[p + 9 + 2 * k]])
    return True


@vm_kernel
def scatter_weighted_sum_vm(c, p, f4, i4, i8):
    """(n, x0, w0, index kind, indices, block, count, pairs, then x_k, w_k)."""
    n, kind, idx, block, count = c[p], c[p + 3], c[p + 4], c[p + 5], c[p + 6]
    if kind == INT32:
        return _scatter_pairs(c, p, f4, i4[idx:idx + count], n, block, count)
    return _scatter_pairs(c, p, f4, i8[idx:idx + count], n, block, count)


@SCATTER_WEIGHTED_SUM.lowering
def _lower_scatter_weighted_sum(f):
    x0, idx = f.in_info[0], f.in_info[2]
    if not (x0.dtype == F32 and idx.dtype in INDEX_TYPES and all(
            i.dtype == F32 for k, i in enumerate(f.in_info) if k != 2)):
        return False
    count = numel(idx.shape)
    if numel(x0.shape) == 0 or count == 0:
        return True  # X_0 unchanged
    n = x0.shape[0]
    kind, offset = f.index(2)
    pairs = [f.off(k) for k in range(3, len(f.in_info))]
    f.emit(scatter_weighted_sum_vm, n, f.off(0), f.off(1), kind, offset,
           numel(x0.shape) // n, count, len(pairs) // 2, *pairs)
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("WeightedSum", "ScatterWeightedSum")
