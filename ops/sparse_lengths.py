"""SparseLengths family: SparseLengthsSum, SparseLengthsWeightedSum and
SparseLengthsMean (a Gather of DATA rows fused with a per-segment reduction)
and their gradient ops. Imports numpy, the registry and ops._common only.

Segment m covers the next LENGTHS[m] entries of INDICES. Kernels are
vectorized: on numpy, segments are grouped by length and each group is one
gather and sum (a loop over distinct lengths, never over segments); other
array modules scatter-add with ufunc.at. Gradients repeat dY rows by LENGTHS.
"""

import numpy as np

from graphnet import config
from graphnet.registry import Arg, OpSchema, TensorInfo, enforce

from ._common import (F32, I32, INDEX_TYPES, PREFETCH_AHEAD, check_dispatch, check_type,
                      checked, compiled_loop, compiled_segments_check,
                      device_segments_valid, dtype_names, gather_rows, lengths_low_total, numel,
                      segment_sum, segments_valid, size_from_dim)
from ._cuda_checks import (deferred_checks, deferred_flag, host_error, known_stats,
                           to_numpy)
from ._fused import INT32, fill_zero_vm, vm_bind, vm_helper, vm_kernel

_DATA_TYPES = (F32, np.dtype(np.float16))


# --- checks shared by forward and gradient ops ------------------------------------

def _check_dtype(op_type, x, want, name, index):
    """Caffe2's Tensor::data<T>() check: exactly dtype `want`."""
    want = np.dtype(want)
    if x.dtype != want:
        check_type(x, want, index, "%s input %s must be %s, found %s. Fix: cast it with "
                   ".astype(np.%s)." % (op_type, name, want.name, x.dtype.name, want.name))


def _check_dispatch(op_type, x, allowed, name, index):
    """Caffe2's DispatchHelper: one of the `allowed` dtypes."""
    if x.dtype not in allowed:
        check_dispatch(x, allowed, index, "%s input %s must be one of %s, found %s. Fix: cast "
                       "it with .astype(np.%s)." % (op_type, name, dtype_names(allowed),
                                                    x.dtype.name, allowed[0].name))


def _check_vector(op_type, x, name, caffe2_text, index):
    if x.ndim != 1:
        enforce(False,
                "%s. %s expected a 1-D %s, found shape %s. Fix: pass a flat vector "
                "(reshape(-1))." % (caffe2_text, op_type, name, tuple(x.shape)),
                input_index=index)


def _check_segments(xp, op_type, indices, lengths, n_rows, idx_slot, len_slot):
    """Bounds and sum(LENGTHS) checks in Caffe2's order: every index a segment
    reaches is checked before the segments overrun INDICES."""
    n, m = indices.shape[0], lengths.shape[0]
    negative = m > 0 and int(lengths.min()) < 0
    total = int((xp.maximum(lengths, 0) if negative else lengths).sum(dtype=np.int64))
    head = indices[:min(total, n)]
    # two reductions decide the common case; the mask is built only to report
    if head.size and (int(head.min()) < 0 or int(head.max()) >= n_rows):
        bad = (head < 0) | (head >= n_rows)
        j = int(xp.argmax(bad))
        enforce(False,
                "Index %d is out of bounds: %d, range 0 to %d, actual batch length is "
                "%d. %s: every INDICES value must be a row of DATA, in [0, %d). Fix: "
                "clamp or remap the ids into the table (hash them modulo %d)."
                % (j, int(head[j]), n_rows, m, op_type, n_rows, max(n_rows, 1)),
                input_index=idx_slot)
    _check_total(op_type, total, n, len_slot)
    if negative:
        _check_non_negative(xp, op_type, lengths, len_slot)


def _check_total(op_type, total, n, len_slot):
    if total != n:
        enforce(False,
                "Your input seems to be incorrect: the sum of lengths values should be the "
                "size of the indices tensor, but it appears not. %s expected sum(LENGTHS) == "
                "len(INDICES) == %d, found sum(LENGTHS) = %d. Fix: LENGTHS[m] must count the "
                "INDICES entries of segment m." % (op_type, n, total), input_index=len_slot)


def _check_non_negative(xp, op_type, lengths, len_slot):
    if lengths.size == 0 or int(lengths.min()) >= 0:
        return
    negative = lengths < 0
    if bool(negative.any()):
        k = int(xp.argmax(negative))
        enforce(False,
                "%s: LENGTHS must be non-negative, found LENGTHS[%d] = %d. Fix: pass "
                "segment sizes >= 0 (0 gives an empty segment)."
                % (op_type, k, int(lengths[k])), input_index=len_slot)


# --- segment arithmetic: generic (any xp) and numpy-only versions ------------------

def _segment_ids(xp, lengths, n):
    """Segment of every INDICES position (LENGTHS non-negative, summing to n)."""
    ends = xp.cumsum(lengths.astype(np.int64))
    return xp.searchsorted(ends, xp.arange(n), side="right")


def _pool_generic(xp, data, indices, lengths, weights, shape, flag=None):
    """Gather every row once, scatter-add it into its segment (ufunc.at)."""
    rows = xp.take(data, indices, axis=0).astype(np.float32)
    if weights is not None:
        rows *= _column(weights, rows.ndim)
    out = xp.zeros(shape, dtype=np.float32)
    xp.add.at(out, _segment_ids(xp, lengths, rows.shape[0]), rows)
    return out


def _pool_numpy(xp, data, indices, lengths, weights, shape, flag=None):
    """Segment sums in index order, in float32: one compiled pass over the rows
    when numba is installed (the [fast] extra), else whole rows gathered at once
    (gather_rows) and summed with np.add.reduceat. GRAPHNET_FAST_KERNELS=0: the
    plain formulation, np.take + reduceat (the reference for the others)."""
    fast = config.fast_kernels()
    table = data.reshape(data.shape[0], -1)
    loop = _compiled_pool() if fast and data.dtype == F32 else None
    if loop is not None:
        out = np.empty((lengths.shape[0], table.shape[1]), F32)
        loop(table, indices, lengths, weights, out)
        return out.reshape(shape)
    rows = gather_rows(table, indices) if fast else np.take(table, indices, axis=0)
    if rows.dtype != F32:
        rows = rows.astype(F32)  # float16 tables accumulate in float, as in Caffe2
    return segment_sum(rows, lengths, weights).reshape(shape)


def _pool_loop(table, indices, lengths, weights, out):
    """out[m] = sum of (weights[j] *) table[indices[j]] over segment m, in index order
    (compiled; numba specializes `weights is None` away)."""
    j, ahead = 0, indices.shape[0] - PREFETCH_AHEAD
    for m in range(lengths.shape[0]):
        for k in range(table.shape[1]):
            out[m, k] = 0.0
        for _ in range(lengths[m]):
            if j < ahead:
                for k in range(0, table.shape[1], 16):  # every 64-byte line of the row
                    prefetch(table, indices[j + PREFETCH_AHEAD], k)
            row = indices[j]
            if weights is None:
                for k in range(table.shape[1]):
                    out[m, k] += table[row, k]
            else:
                w = weights[j]
                for k in range(table.shape[1]):
                    out[m, k] += w * table[row, k]
            j += 1


_COMPILED = {}
prefetch = None  # bound by compiled_loop before _pool_loop is compiled


def _compiled_pool():
    """The segment loop compiled by numba (fused gather + sum), or None."""
    return compiled_loop(_COMPILED, "pool", _pool_loop)


def _repeat_generic(xp, rows, lengths, n, flag=None):
    return rows[_segment_ids(xp, lengths, n)]


def _repeat_numpy(xp, rows, lengths, n, flag=None):
    return np.repeat(rows, lengths, axis=0)


def _column(v, ndim):
    """A per-row vector shaped to broadcast over rows with `ndim` dimensions."""
    return v.reshape((-1,) + (1,) * (ndim - 1))


def _inverse_lengths(xp, lengths):
    """float32(1 / length) per segment (0 for empty segments), as Caffe2 scaled."""
    safe = xp.maximum(lengths, 1).astype(np.float64)
    return xp.where(lengths > 0, 1.0 / safe, 0.0).astype(np.float32)


# --- forward ops ------------------------------------------------------------------

def _defer(xp, lengths, rows, n, indices=None):
    """Checks made by a GPU kernel (deferred) rather than before it; a kernel with no
    thread (no segment, empty rows) checks nothing, so those check first, and so do
    inputs the host knows to be valid (fed from it: the check is free and passes).
    n: the INDICES count; indices: given when their rows are checked (against
    rows.shape[0])."""
    if not (xp is not np and deferred_checks() and lengths.shape[0] > 0
            and size_from_dim(rows.shape, 1) > 0):
        return False
    known = known_stats(indices, lengths)
    if known is None:
        return True
    low, total, first, last, _ = known
    return not (low >= 0 and total == n and (
        indices is None or not indices.size or 0 <= first <= last < rows.shape[0]))


def _validate_forward(xp, op_type, slots, data, indices, lengths, weights, ctx=None,
                      defer=False):
    """Caffe2's checks in Caffe2's order. False when INDICES is empty: the output is
    zeros and nothing else is checked, as in Caffe2. With `ctx`, the checks of
    shapes and dtypes run once per input signature; the index checks every time,
    or (`defer`) in the kernel, reported when the run ends."""
    if ctx is None:
        ok = _validate_static(op_type, slots, data, indices, lengths, weights)
    else:
        ok = checked(ctx, (data.shape, data.dtype, indices.shape, indices.dtype,
                           lengths.shape, lengths.dtype,
                           None if weights is None else (weights.shape, weights.dtype)),
                     lambda: _validate_static(op_type, slots, data, indices, lengths,
                                              weights))
    if not ok or defer:
        return ok
    valid = (segments_valid(indices, lengths, data.shape[0]) if xp is np else
             device_segments_valid(xp, indices, lengths, data.shape[0]))
    if not valid:
        _check_segments(xp, op_type, indices, lengths, data.shape[0], slots[2], slots[3])
    return ok


def _validate_static(op_type, slots, data, indices, lengths, weights):
    """The shape and dtype half of _validate_forward."""
    d_slot, w_slot, i_slot, l_slot = slots
    _check_dispatch(op_type, data, _DATA_TYPES, "DATA", d_slot)
    if not (data.ndim >= 1):
        enforce(False, "%s: DATA must have at least 1 dimension (rows to gather), "
                "found a scalar. Fix: pass a table of shape (N, ...)." % op_type,
                input_index=d_slot)
    _check_dispatch(op_type, indices, INDEX_TYPES, "INDICES", i_slot)
    if not (lengths.ndim >= 1):
        enforce(False, "LENGTHS must be a vector. %s expected a 1-D LENGTHS, "
                "found a scalar. Fix: pass one length per segment, e.g. np.array([n], "
                "np.int32)." % op_type, input_index=l_slot)
    if indices.size == 0:
        return False
    _check_vector(op_type, indices, "INDICES", "INDICES must be a vector", i_slot)
    _check_vector(op_type, lengths, "LENGTHS", "LENGTHS must be a vector", l_slot)
    _check_dtype(op_type, lengths, I32, "LENGTHS", l_slot)
    if weights is not None:
        _check_vector(op_type, weights, "WEIGHTS", "WEIGHT must be a vector", w_slot)
        if weights.shape[0] != indices.shape[0]:
            enforce(False,
                    "Weight should have the same length as indices. %s expected %d WEIGHTS "
                    "(one per index), found %d. Fix: give one weight per INDICES entry."
                    % (op_type, indices.shape[0], weights.shape[0]), input_index=w_slot)
        _check_dtype(op_type, weights, F32, "WEIGHTS", w_slot)
    return True


def _forward_kernel(op_type, weighted, mean, pool):
    slots = (0, 1, 2, 3) if weighted else (0, None, 1, 2)

    def kernel(ctx, args, data, *rest):
        xp = ctx.xp
        weights, (indices, lengths) = (rest[0], rest[1:]) if weighted else (None, rest)
        defer = _defer(xp, lengths, data, indices.shape[0] if indices.ndim else 1, indices)
        ok = _validate_forward(xp, op_type, slots, data, indices, lengths, weights, ctx,
                               defer)
        shape = (lengths.shape[0],) + tuple(data.shape[1:])
        if not ok:
            return xp.zeros(shape, dtype=np.float32)
        flag = None
        if defer:
            n_rows = data.shape[0]
            flag = deferred_flag(xp, lambda _: host_error(lambda: _check_segments(
                np, op_type, to_numpy(indices), to_numpy(lengths), n_rows, slots[2],
                slots[3])))
        out = pool(xp, data, indices, lengths, weights, shape, flag)  # float32 sums
        if mean:
            out *= _column(_inverse_lengths(xp, lengths), out.ndim)
        return out
    return kernel


def _forward_shape(args, data, *rest):
    """(len(LENGTHS),) + DATA.shape[1:], float32 whatever DATA's float type."""
    lengths = rest[-1]
    if len(data.shape) < 1 or len(lengths.shape) < 1:
        return [None]
    return [TensorInfo((lengths.shape[0],) + data.shape[1:], np.float32)]


def _forward_schema(op_type, weighted, mean, doc):
    schema = OpSchema(op_type, inputs=4 if weighted else 3, outputs=1,
                      args=[Arg("grad_on_weights", "bool", False)] if weighted else (),
                      doc=doc)
    schema.shape(_forward_shape)
    schema.kernel(_forward_kernel(op_type, weighted, mean, _pool_generic))
    schema.kernel(_forward_kernel(op_type, weighted, mean, _pool_numpy),
                  backend="numpy")
    return schema


SPARSE_LENGTHS_SUM = _forward_schema(
    "SparseLengthsSum", False, False,
    "OUTPUT[m] = sum of DATA[INDICES[j]] over segment m; inputs DATA, INDICES, LENGTHS.")
SPARSE_LENGTHS_MEAN = _forward_schema(
    "SparseLengthsMean", False, True,
    "OUTPUT[m] = mean of DATA[INDICES[j]] over segment m (zeros for empty segments).")
SPARSE_LENGTHS_WEIGHTED_SUM = _forward_schema(
    "SparseLengthsWeightedSum", True, False,
    "OUTPUT[m] = sum of WEIGHTS[j] * DATA[INDICES[j]] over segment m; inputs DATA, "
    "WEIGHTS, INDICES, LENGTHS.")


# --- gradient makers -----------------------------------------------------------------

def _values_name(g):
    return g.I(0) + "_grad_values"


def _unweighted_maker(grad_type):
    def maker(g):
        g.SetSparse(0, g.I(1), _values_name(g))
        return [g.op(grad_type, [g.GO(0), g.I(2), g.I(1)], [_values_name(g)])]
    return maker


SPARSE_LENGTHS_SUM.gradient(_unweighted_maker("SparseLengthsIndicesInGradientSumGradient"))
SPARSE_LENGTHS_MEAN.gradient(
    _unweighted_maker("SparseLengthsIndicesInGradientMeanGradient"))


@SPARSE_LENGTHS_WEIGHTED_SUM.gradient
def _weighted_sum_gradient(g):
    """DATA gets GradientSlice(INDICES, DATA_grad_values); WEIGHTS a dense gradient
    only with grad_on_weights (the op then also reads DATA)."""
    g.SetSparse(0, g.I(2), _values_name(g))
    if g.arg("grad_on_weights", 0):
        return [g.op("SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
                     [g.I(1), g.GO(0), g.I(3), g.I(0), g.I(2)],
                     [_values_name(g), g.GI(1)])]
    return [g.op("SparseLengthsIndicesInGradientWeightedSumGradient",
                 [g.I(1), g.GO(0), g.I(3), g.I(2)], [_values_name(g)])]


# --- gradient ops ----------------------------------------------------------------------

def _check_segment_grads(op_type, dy, lengths, dy_slot, len_slot):
    """AbstractLengthsGradientOp's checks on dY and LENGTHS."""
    _check_vector(op_type, lengths, "LENGTHS", "LENGTHS must be a vector", len_slot)
    if not (dy.ndim > 0):
        enforce(False, "%s: the segment gradient dY must have a segment dimension, "
                "found a scalar. Fix: pass dY shaped like the forward OUTPUT." % op_type,
                input_index=dy_slot)
    if dy.shape[0] != lengths.shape[0]:
        enforce(False,
                "%s: numSegments == segmentGradsInput.size(0) failed: expected dY with %d "
                "rows (one per LENGTHS entry), found %d. Fix: dY must be the gradient of "
                "the forward OUTPUT." % (op_type, lengths.shape[0], dy.shape[0]),
                input_index=dy_slot)
    _check_dtype(op_type, lengths, I32, "LENGTHS", len_slot)


def _check_lengths_total(op_type, lengths, n, len_slot):
    """A gradient's LENGTHS (host copy) checked against the INDICES count n."""
    _check_non_negative(np, op_type, lengths, len_slot)
    total = int(lengths.sum(dtype=np.int64))
    _check_total(op_type, total, n, len_slot)


def _gradient_kernel(op_type, weighted, mean, repeat):
    """Sum/Mean/WeightedSum gradients: values[j] = scale(j) * dY[segment(j)]."""
    w_slot, dy_slot, len_slot = (0, 1, 2) if weighted else (None, 0, 1)
    with_indices = "IndicesInGradient" in op_type

    def kernel(ctx, args, *inputs):
        xp = ctx.xp
        dy, lengths = inputs[dy_slot], inputs[len_slot]
        checked(ctx, (dy.shape, dy.dtype, lengths.shape, lengths.dtype),
                lambda: _check_segment_grads(op_type, dy, lengths, dy_slot, len_slot))
        flag = None
        n = inputs[-1].shape[0] if with_indices and inputs[-1].ndim else 0
        if with_indices and _defer(xp, lengths, dy, n):
            # sized by INDICES, as Caffe2's CUDA kernels were; segments checked there
            low, total = 0, inputs[-1].shape[0]
            flag = deferred_flag(xp, lambda _: host_error(lambda: _check_lengths_total(
                op_type, to_numpy(lengths), total, len_slot)))
        else:
            low, total = lengths_low_total(xp, lengths)  # a GPU waits once for both
        if weighted:
            weights = inputs[w_slot]
            if not (weights.ndim >= 1 and weights.shape[0] == total):
                enforce(False,
                        "Input 0 must have the same first dim as SEGMENT_IDS. %s expected "
                        "%d WEIGHTS (sum of LENGTHS), found shape %s. Fix: pass the forward "
                        "WEIGHTS." % (op_type, total, tuple(weights.shape)),
                        input_index=w_slot)
            _check_dtype(op_type, weights, F32, "WEIGHTS", w_slot)
        _check_dtype(op_type, dy, F32, "dY", dy_slot)
        if low < 0:
            _check_non_negative(xp, op_type, lengths, len_slot)
        if mean:
            dy = dy * _column(_inverse_lengths(xp, lengths), dy.ndim)
        values = repeat(xp, dy, lengths, total, flag)
        if weighted:  # Caffe2 read the first sum(LENGTHS) weights of the flat blob
            values *= _column(weights.reshape(-1)[:total], values.ndim)
        return values
    return kernel


def _with_main_input_kernel(repeat):
    op_type = "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient"

    def kernel(ctx, args, weights, dy, lengths, data, indices):
        xp = ctx.xp
        _check_dispatch(op_type, indices, INDEX_TYPES, "INDICES", 4)
        _check_segment_grads(op_type, dy, lengths, 1, 2)
        _check_dtype(op_type, weights, F32, "WEIGHTS", 0)
        _check_dtype(op_type, dy, F32, "dY", 1)
        _check_dtype(op_type, data, F32, "DATA", 3)
        # Caffe2 trusted the forward pass here; we re-check what it would overrun.
        _check_vector(op_type, indices, "INDICES", "INDICES must be a vector", 4)
        _check_vector(op_type, weights, "WEIGHTS", "WEIGHT must be a vector", 0)
        n = indices.shape[0]
        if weights.shape[0] != n:
            enforce(False,
                    "Weight should have the same length as indices. %s expected %d WEIGHTS, "
                    "found %d. Fix: pass the forward WEIGHTS and INDICES."
                    % (op_type, n, weights.shape[0]), input_index=0)
        block = size_from_dim(dy.shape, 1)
        if not (data.ndim >= 1 and size_from_dim(data.shape, 1) == block):
            enforce(False,
                    "%s: DATA rows must match dY rows: expected DATA of shape (N,) + %s, "
                    "found %s. Fix: pass the forward DATA." % (
                        op_type, tuple(dy.shape[1:]), tuple(data.shape)), input_index=3)
        _check_segments(xp, op_type, indices, lengths, data.shape[0], 4, 2)
        grads = repeat(xp, dy.reshape(dy.shape[0], block), lengths, n)
        rows = xp.take(data.reshape(data.shape[0], block), indices, axis=0)
        weights_grad = xp.einsum("ij,ij->i", grads, rows).astype(np.float32)
        grads *= weights[:, None]  # a fresh array: becomes DATA's gradient values
        values = grads.reshape((n,) + tuple(dy.shape[1:]))
        return values, weights_grad.reshape(weights.shape)
    return kernel


def _gradient_shape(weighted, with_indices):
    def shape(args, *infos):
        dy = infos[1 if weighted else 0]
        if len(dy.shape) < 1:
            return [None]
        if weighted:
            rows = infos[0].shape[0] if infos[0].shape else None
        else:  # INDICES when present (sum(LENGTHS) == len(INDICES) in valid nets)
            rows = infos[-1].shape[0] if with_indices and infos[-1].shape else None
        if rows is None:
            return [None]
        return [TensorInfo((rows,) + dy.shape[1:], np.float32)]
    return shape


def _gradient_schema(op_type, weighted, mean, with_indices):
    inputs = 2 + int(weighted) + int(with_indices)
    schema = OpSchema(op_type, inputs=inputs, outputs=1,
                      doc="Gradient values of a SparseLengths op: one row per INDICES "
                          "entry.")
    schema.shape(_gradient_shape(weighted, with_indices))
    schema.kernel(_gradient_kernel(op_type, weighted, mean, _repeat_generic))
    schema.kernel(_gradient_kernel(op_type, weighted, mean, _repeat_numpy),
                  backend="numpy")
    return schema


_gradient_schema("SparseLengthsIndicesInGradientSumGradient", False, False, True)
_gradient_schema("SparseLengthsSumGradient", False, False, False)
_gradient_schema("SparseLengthsIndicesInGradientMeanGradient", False, True, True)
_gradient_schema("SparseLengthsMeanGradient", False, True, False)
_gradient_schema("SparseLengthsIndicesInGradientWeightedSumGradient", True, False, True)
_gradient_schema("SparseLengthsWeightedSumGradient", True, False, False)

WITH_MAIN_INPUT = OpSchema(
    "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient", inputs=5, outputs=2,
    doc="Inputs WEIGHTS, dY, LENGTHS, DATA, INDICES -> DATA_grad_values, WEIGHTS_grad.")
WITH_MAIN_INPUT.kernel(_with_main_input_kernel(_repeat_generic))
WITH_MAIN_INPUT.kernel(_with_main_input_kernel(_repeat_numpy), backend="numpy")


@WITH_MAIN_INPUT.shape
def _with_main_input_shape(args, weights, dy, lengths, data, indices):
    if not dy.shape or not indices.shape:
        return [None, TensorInfo(weights.shape, np.float32)]
    return [TensorInfo((indices.shape[0],) + dy.shape[1:], np.float32),
            TensorInfo(weights.shape, np.float32)]


# --- CUDA kernels (backend "cupy"; compiled lazily, see ops/_cuda.py) -----------------
# The ops keep their generic validation (Caffe2's checks and messages, run before any
# launch); only the pooling / repeating step is a kernel. Their arrays never alias
# (outputs are fresh), so the pointers are __restrict__: DATA's rows may then be read
# through the read-only cache. One thread per (segment,
# column) walks its segment in index order: no atomics, so the forward pass and its
# gradient are deterministic, and reads of a DATA row are coalesced across columns.

from graphnet import registry as _registry  # noqa: E402

from ._cuda import (DATA_TYPES, INDEX_TYPES as _CUDA_INDEX_TYPES, CudaSource,  # noqa: E402
                    index_type, launch, null_flag, variants)

# data element -> (pointer type, accumulator): float, half, or 4 floats at a time
_POOL_TYPES = dict({k: dict(v, AT="float") for k, v in DATA_TYPES.items()},
                   f32x4={"DT": "float4", "AT": "float4"})

_SLS_CUDA = CudaSource("sparse_lengths", r"""
/* Deferred checks (flag non-null): a negative length, or segments that do not end
   exactly at n, flag position 0; the host re-runs the checks for Caffe2's message. */
__device__ __forceinline__ void gn_check_segment(i64* flag, i64 m, i64 segs, i64 s,
                                                 i64 e, i64 n) {
    if (e < s || (m == segs - 1 && e != n)) gn_flag(flag, 0);
}
/* One element (float, half read as float) or four floats (16-byte loads) per thread:
   the same products and sums, in the same order, per column. */
__device__ __forceinline__ float4 gn_load(const float4* p, i64 i) { return p[i]; }
__device__ __forceinline__ void gn_zero(float& a) { a = 0.0f; }
__device__ __forceinline__ void gn_zero(float4& a) { a = make_float4(0.f, 0.f, 0.f, 0.f); }
__device__ __forceinline__ void gn_add(float& acc, const float* w, i64 j, float v) {
    acc += w ? __fmul_rn(w[j], v) : v;
}
__device__ __forceinline__ void gn_add(float4& acc, const float* w, i64 j, float4 v) {
    gn_add(acc.x, w, j, v.x); gn_add(acc.y, w, j, v.y);
    gn_add(acc.z, w, j, v.z); gn_add(acc.w, w, j, v.w);
}
/* Exclusive prefix sums of LENGTHS in one launch (one block): each thread sums a
   run of consecutive lengths, the block scans the run totals in shared memory, then
   each thread writes its run's starts. Replaces a cast, a scan and a subtraction. */
extern "C" __global__ void segment_starts(const int* lengths, i64 m, i64* starts) {
    __shared__ i64 part[1024];
    int t = threadIdx.x, threads = blockDim.x;
    i64 per = (m + threads - 1) / threads;
    i64 lo = t * per, hi = lo + per < m ? lo + per : m;
    i64 sum = 0;
    for (i64 i = lo; i < hi; ++i) sum += lengths[i];
    part[t] = sum;
    __syncthreads();
    for (int off = 1; off < threads; off <<= 1) {  /* inclusive scan of the totals */
        i64 v = t >= off ? part[t - off] : 0;
        __syncthreads();
        part[t] += v;
        __syncthreads();
    }
    i64 run = part[t] - sum;
    for (i64 i = lo; i < hi; ++i) { starts[i] = run; run += lengths[i]; }
}
""" + "".join(variants(r"""
extern "C" __global__ void sls_pool$ROWS$SUFFIX(const $DT* __restrict__ data,
        const $IT* __restrict__ idx, const float* __restrict__ w,
        const i64* __restrict__ starts, const int* __restrict__ lengths, i64 segs,
        i64 block, i64 rows, i64 n, $AT* __restrict__ out, i64* flag) {
    const int R = $RN;  /* rows in flight per thread */
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= segs * block) return;
    i64 m = t / block, c = t - m * block;
    i64 s = starts[m], e = s + lengths[m];
    if (c == 0) gn_check_segment(flag, m, segs, s, e, n);
    if (s < 0 || e < s) e = s;  /* after a negative length: flagged, never read */
    if (e > n) e = n;  /* past INDICES' end: never read (the last segment is flagged) */
    $AT acc, z;
    gn_zero(acc);
    gn_zero(z);
    i64 j = s;
    /* R rows in flight per thread: every load is issued before the sums, which stay
       in index order (the same float results as one row at a time). */
    for (; j + R <= e; j += R) {
        i64 r[R];
        bool k[R];
        $AT v[R];
#pragma unroll
        for (int u = 0; u < R; ++u) {
            r[u] = (i64)idx[j + u];
            k[u] = r[u] >= 0 && r[u] < rows;
        }
#pragma unroll
        for (int u = 0; u < R; ++u) v[u] = k[u] ? gn_load(data, r[u] * block + c) : z;
#pragma unroll
        for (int u = 0; u < R; ++u) {
            if (k[u]) gn_add(acc, w, j + u, v[u]); else gn_flag(flag, j + u);
        }
    }
    for (; j < e; ++j) {
        i64 r = (i64)idx[j];
        if (r < 0 || r >= rows) { gn_flag(flag, j); continue; }
        gn_add(acc, w, j, gn_load(data, r * block + c));
    }
    out[t] = acc;
}
""".replace("$ROWS", rows).replace("$RN", str(count)), DT=_POOL_TYPES, IT=_CUDA_INDEX_TYPES)
    for rows, count in (("", 4), ("8", 8))) + variants(r"""
extern "C" __global__ void sls_repeat$SUFFIX(const $AT* __restrict__ dy,
        const i64* __restrict__ starts, const int* __restrict__ lengths, i64 segs,
        i64 block, i64 n, $AT* __restrict__ out, i64* flag) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= segs * block) return;
    i64 m = t / block, c = t - m * block;
    i64 s = starts[m], e = s + lengths[m];
    if (c == 0) gn_check_segment(flag, m, segs, s, e, n);
    if (s < 0 || e < s) return;  /* after a negative length: flagged, never written */
    $AT v = dy[t];
    for (i64 j = s; j < e && j < n; ++j) out[j * block + c] = v;
}
""", AT={"f32": {"AT": "float"}, "f32x4": {"AT": "float4"}}))


def _segment_starts(xp, lengths):
    """Where each segment starts in INDICES (int64 exclusive prefix sum of the int32,
    C-contiguous LENGTHS), one kernel launch. LENGTHS fed from the host keep their
    starts (per stream) while unchanged: a SparseLengths op and its gradient, and
    every later run until the next feed, share one launch."""
    from graphnet.executors.cuda import host_values
    if host_values.lookup(lengths) is None:
        return _starts(xp, lengths)
    key = ("starts", xp.cuda.get_current_stream().ptr)
    return host_values.cached(lengths, key, lambda _: _starts(xp, lengths))


def _starts(xp, lengths):
    starts = xp.empty(lengths.shape, dtype=np.int64)
    if lengths.size:
        launch(_SLS_CUDA.function("segment_starts"), 1024,
               (lengths, np.int64(lengths.size), starts), block=1024)
    return starts


# DATA rows each pooling thread has in flight: 4 or 8 (both compiled; the kernels
# agree bit for bit; benchmarks/gpu_sls_bandwidth.py measures both on a GPU).
POOL_ROWS = 4


def _pool_cuda(xp, data, indices, lengths, weights, shape, flag=None):
    """_pool_generic as one kernel (float32 accumulation, index order); a deferred
    check's `flag` records bad indices and segments instead of a check before."""
    data = xp.ascontiguousarray(data)
    indices = xp.ascontiguousarray(indices)
    lengths = xp.ascontiguousarray(lengths)
    segs, block = shape[0], size_from_dim(data.shape, 1)
    out = xp.empty(shape, dtype=np.float32)
    w = null_flag() if weights is None else xp.ascontiguousarray(weights)
    kind = "f16" if data.dtype == np.float16 else "f32"
    if _quads(data):  # 16-byte loads: the same sums, in the same order, per column
        kind, block = "f32x4", block // 4
    name = "sls_pool%s_%s_%s" % ("" if POOL_ROWS == 4 else POOL_ROWS, kind,
                                  index_type(indices.dtype))
    launch(_SLS_CUDA.function(name), segs * block,
           (data, indices, w, _segment_starts(xp, lengths), lengths, np.int64(segs),
            np.int64(block), np.int64(data.shape[0]), np.int64(indices.shape[0]), out,
            null_flag() if flag is None else flag))
    return out


def _quads(rows):
    """float32 rows of a multiple of 4 floats on a 16-byte boundary: float4 kernels."""
    block = size_from_dim(rows.shape, 1)
    return (rows.dtype == np.float32 and block % 4 == 0 and block > 0
            and rows.data.ptr % 16 == 0)


def _repeat_cuda(xp, rows, lengths, n, flag=None):
    """_repeat_generic as one kernel: row m of `rows` written LENGTHS[m] times."""
    rows = xp.ascontiguousarray(rows, dtype=np.float32)
    lengths = xp.ascontiguousarray(lengths)
    segs, block = rows.shape[0], size_from_dim(rows.shape, 1)
    out = xp.empty((n,) + tuple(rows.shape[1:]), dtype=np.float32)
    name = "sls_repeat_f32"
    if _quads(rows):
        name, block = "sls_repeat_f32x4", block // 4
    launch(_SLS_CUDA.function(name), segs * block,
           (rows, _segment_starts(xp, lengths), lengths, np.int64(segs), np.int64(block),
            np.int64(n), out, null_flag() if flag is None else flag))
    return out


for _schema, _weighted, _mean in ((SPARSE_LENGTHS_SUM, False, False),
                                  (SPARSE_LENGTHS_MEAN, False, True),
                                  (SPARSE_LENGTHS_WEIGHTED_SUM, True, False)):
    _schema.kernel(_forward_kernel(_schema.type, _weighted, _mean, _pool_cuda),
                   backend="cupy")
for _name, _weighted, _mean in (
        ("SparseLengthsIndicesInGradientSumGradient", False, False),
        ("SparseLengthsSumGradient", False, False),
        ("SparseLengthsIndicesInGradientMeanGradient", False, True),
        ("SparseLengthsMeanGradient", False, True),
        ("SparseLengthsIndicesInGradientWeightedSumGradient", True, False),
        ("SparseLengthsWeightedSumGradient", True, False)):
    _registry.lookup(_name).kernel(_gradient_kernel(_name, _weighted, _mean, _repeat_cuda),
                                   backend="cupy")
WITH_MAIN_INPUT.kernel(_with_main_input_kernel(_repeat_cuda), backend="cupy")


# --- fused lowering (graphnet.executors.fused) -----------------------------------------
# The interpreter's own compiled segment loop, after the same one-pass check.

_pool_vm = _segments_vm = None  # bound to the compiled loops when a net is fused
vm_bind(__name__, "_pool_vm", lambda: compiled_loop({}, "pool", _pool_loop))
vm_bind(__name__, "_segments_vm", compiled_segments_check)


@vm_helper
def _pool_segments(f4, table, idx, lengths, weights, out):
    if not _segments_vm(idx, lengths, table.shape[0]):
        return False
    if weights.shape[0] == 0:
        _pool_vm(table, idx, lengths, None, out)
    else:
        _pool_vm(table, idx, lengths, weights, out)
    return True


@vm_kernel
def sparse_lengths_vm(c, p, f4, i4, i8):
    """(rows, block, segments, count, data, index kind, indices, lengths (int32),
    weights or -1, out)."""
    rows, block, segments, count = c[p], c[p + 1], c[p + 2], c[p + 3]
    data, kind, idx, lengths, weights, out = c[p + 4], c[p + 5], c[p + 6], c[p + 7], \
        c[p + 8], c[p + 9]
    table = f4[data:data + rows * block].reshape((rows, block))
    pooled = f4[out:out + segments * block].reshape((segments, block))
    w = f4[weights:weights + count] if weights >= 0 else f4[0:0]
    lens = i4[lengths:lengths + segments]
    if kind == INT32:
        return _pool_segments(f4, table, i4[idx:idx + count], lens, w, pooled)
    return _pool_segments(f4, table, i8[idx:idx + count], lens, w, pooled)


def _lower_pool(f, weighted):
    data, indices, lengths = f.in_info[0], f.in_info[-2], f.in_info[-1]
    if not (data.dtype == F32 and len(data.shape) >= 1 and f.distinct()
            and indices.dtype in INDEX_TYPES and len(indices.shape) == 1
            and lengths.dtype == I32 and len(lengths.shape) == 1):
        return False
    count = numel(indices.shape)
    block = numel(data.shape[1:])
    if count == 0:  # zeros, nothing checked (Caffe2)
        f.emit(fill_zero_vm, f.out(0), f.size())
        return True
    kind, idx = f.index(len(f.in_info) - 2)
    f.emit(sparse_lengths_vm, data.shape[0], block, lengths.shape[0], count, f.off(0),
           kind, idx, f.off(len(f.in_info) - 1), f.off(1) if weighted else -1, f.out(0))
    return True


SPARSE_LENGTHS_SUM.lowering(lambda f: _lower_pool(f, False))
SPARSE_LENGTHS_WEIGHTED_SUM.lowering(lambda f: _lower_pool(f, True))


@vm_helper
def _repeat_rows(dy, lengths, out):
    """out[j] = dY[segment of j]; False for a negative length or lengths not summing
    to out's rows."""
    total = 0
    for m in range(lengths.shape[0]):
        if lengths[m] < 0:
            return False
        total += lengths[m]
    if total != out.shape[0]:
        return False
    j = 0
    for m in range(lengths.shape[0]):
        for _ in range(lengths[m]):
            for q in range(out.shape[1]):
                out[j, q] = dy[m, q]
            j += 1
    return True


@vm_kernel
def repeat_segments_vm(c, p, f4, i4, i8):
    """out[j] = dY[segment of j] for int32 LENGTHS >= 0 summing to `rows`; else False
    (segments, block, rows, dy, lengths, out)."""
    segments, block, rows, dy, lengths, out = c[p], c[p + 1], c[p + 2], c[p + 3], \
        c[p + 4], c[p + 5]
    return _repeat_rows(f4[dy:dy + segments * block].reshape((segments, block)),
                        i4[lengths:lengths + segments],
                        f4[out:out + rows * block].reshape((rows, block)))


def _lower_sum_gradient(f):
    dy, lengths = f.in_info[0], f.in_info[1]
    if not (dy.dtype == F32 and len(dy.shape) >= 1 and lengths.dtype == I32
            and len(lengths.shape) == 1 and f.distinct()):
        return False
    f.emit(repeat_segments_vm, dy.shape[0], numel(dy.shape[1:]), f.out_info[0].shape[0],
           f.off(0), f.off(1), f.out(0))
    return True


_registry.get("SparseLengthsIndicesInGradientSumGradient").lowering(_lower_sum_gradient)
_registry.get("SparseLengthsSumGradient").lowering(_lower_sum_gradient)


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
# (the IndicesInGradient gradients are sized by INDICES there, as on Caffe2's GPU)
_registry.declare_graph_safe(
    "SparseLengthsSum", "SparseLengthsWeightedSum", "SparseLengthsMean",
    "SparseLengthsIndicesInGradientSumGradient", "SparseLengthsIndicesInGradientMeanGradient",
    "SparseLengthsIndicesInGradientWeightedSumGradient")
