"""Gather family: indexing along an axis and scattering gradients back (Gather,
BatchGather, BatchGatherGradient, SparseToDense, Unique, UnsortedSegmentSum/Mean and
their gradient ops).

Scatter-adds run as np.add.at on numpy (Caffe2's accumulation order, so float32
results match bit for bit) and as xp.bincount elsewhere. Imports numpy, the
registry and ops._common only.
"""

import functools
from collections import namedtuple

import numpy as np

from graphnet.registry import Arg, EnforceError, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._common import (F32, I32, INDEX_TYPES, check_dispatch, check_type, checked,
                      compiled_scatter_add, cpp_name, device_rows_valid, numel,
                      rows_valid)
from ._cuda_checks import (deferred_checks, deferred_flag, flag_rows, host_error,
                           index_stats, known_stats, to_numpy)
from ._fused import INT32, fill_zero_vm, rows_in_range, vm_helper, vm_kernel


def _c2_type(dtype):
    """How Caffe2's TypeMeta printed a dtype, with numpy's name beside it."""
    return "%s (%s)" % (cpp_name(dtype), np.dtype(dtype).name)


def _check_index_type(info, what, input_index):
    if info.dtype not in INDEX_TYPES:
        check_dispatch(info, INDEX_TYPES, input_index, "Expected int32 or int64 %s, found %s. "
                       "Fix: cast %s with astype(np.int64)." % (what, info.dtype.name, what))


def _check_typed(info, expected, what, input_index):
    expected = np.dtype(expected)
    if info.dtype != expected:
        check_type(info, expected, input_index, "%s: expected %s, found %s. Fix: cast it with "
                   "astype(np.%s)." % (what, expected.name, info.dtype.name, expected.name))


def _check_vector(info, message, what, input_index):
    if len(info.shape) != 1:
        enforce(False, "%s: expected a 1-D %s, found shape %s. Fix: reshape "
                "it to 1-D." % (message, what, list(info.shape)), input_index=input_index)


# --- Gather / BatchGather ------------------------------------------------------

_Geometry = namedtuple("_Geometry", ["axis", "out_shape", "outer", "n", "block", "count"])


def _geometry(data, indices, axis, match_outer, min_dims=1):
    """Caffe2's gather helper: the normalized axis, output shape and flat sizes.

    count is how many indices each outer slice uses (all of them unless match_outer).
    """
    ndim = len(data.shape)
    if axis < 0:
        axis += ndim
    if not (ndim >= max(axis + 1, min_dims)):
        enforce(False,
                "DATA should be at least [axis+1]-D: expected at least %d dims for axis %d, "
                "found shape %s. Fix: pass an axis in [-%d, %d)."
                % (max(axis + 1, min_dims), axis, list(data.shape), ndim, ndim), input_index=0)
    if not (axis >= 0):
        enforce(False, "Axis should be non-negative: axis %d is below -%d for DATA of "
                "shape %s. Fix: pass an axis in [-%d, %d)."
                % (axis - ndim, ndim, list(data.shape), ndim, ndim), input_index=0)
    inner = indices.shape
    if match_outer:
        if not (axis >= 1):
            enforce(False, "Axis should be at least 1 with match_outer: found axis %d. "
                    "Fix: drop match_outer or gather along an inner axis." % axis)
        if indices.shape[:axis] != data.shape[:axis]:
            enforce(False,
                    "INDICES must have the same outer dims as DATA (before dim AXIS): expected "
                    "INDICES shape to start with %s, found %s. Fix: give INDICES one row of "
                    "indices per outer slice of DATA."
                    % (list(data.shape[:axis]), list(indices.shape)), input_index=1)
        inner = indices.shape[axis:]
    if data.shape[axis] == 0:  # empty batches keep DATA's shape (pytorch#13781)
        out_shape = data.shape
    else:
        out_shape = data.shape[:axis] + inner + data.shape[axis + 1:]
    return _Geometry(axis, tuple(out_shape), numel(data.shape[:axis]), data.shape[axis],
                     numel(data.shape[axis + 1:]), numel(inner))


def _checked_indices(xp, indices, n, wrap):
    """INDICES as int64, negatives wrapped when asked, all inside [0, n)."""
    idx = indices.astype(np.int64, copy=False)
    if xp is not np and idx.size:
        # the bounds of INDICES as given (not of its int64 copy, which the host never
        # uploaded): from the host's copy of a fed blob, else (sync checks) one
        # transfer; wrapped, [-n, n) is valid; without negatives nothing to wrap.
        # Deferred checks of unknown indices are the kernels' (below).
        stats = known_stats(indices) if deferred_checks() else index_stats(xp, indices)
        if stats is not None and (-n if wrap else 0) <= stats[2] and stats[3] < n:
            return xp.where(idx < 0, idx + n, idx) if wrap and stats[2] < 0 else idx
    if wrap:
        idx = xp.where(idx < 0, idx + n, idx)
    if idx.size == 0 or (xp is np and rows_valid(idx.reshape(-1), n)):
        return idx  # one compiled pass decides the common case
    if xp is not np and deferred_checks():  # CuPy wraps bad rows; the flag reports them
        flag_rows(xp, idx, n, deferred_flag(xp, lambda _: host_error(
            lambda: _checked_indices(np, to_numpy(indices), n, wrap))))
        return idx
    if device_rows_valid(xp, idx, n):
        return idx  # (numpy without numba; on a GPU the bounds above failed already)
    bad = ((idx < 0) | (idx >= n)).reshape(-1)
    if bool(bad.any()):
        first = int(idx.reshape(-1)[int(xp.argmax(bad))])
        raise EnforceError(
            "INDICES element is out of DATA bounds, id=%d axis_dim=%d: expected indices in "
            "[0, %d)%s, found %d. Fix: clip or remap the indices."
            % (first, n, n, " (negatives wrap)" if wrap else "", first), input_index=1)
    return idx


def _gather(xp, data, indices, axis, wrap, match_outer, geo=None):
    geo = geo or _geometry(data, indices, axis, match_outer)
    if numel(geo.out_shape) == 0:  # Caffe2 returns before looking at any index
        return xp.empty(geo.out_shape, dtype=data.dtype)
    idx = _checked_indices(xp, indices, geo.n, wrap)
    if not match_outer:
        return xp.take(data, idx, axis=geo.axis)
    rows = xp.arange(geo.outer).reshape(-1, 1)
    picked = data.reshape(geo.outer, geo.n, geo.block)[rows, idx.reshape(geo.outer, -1)]
    return picked.reshape(geo.out_shape)


def _wrap_indices(args):
    return args.wrap_indices if args.has("wrap_indices") else args.axis == 0


GATHER = OpSchema(
    "Gather", inputs=2, outputs=1,
    args=[Arg("axis", "int", 0), Arg("match_outer", "bool", False),
          Arg("wrap_indices", "bool", False)],
    doc="OUTPUT = DATA indexed along `axis` by INDICES (int32/int64, any shape); "
        "negative indices wrap by default on axis 0 only.")


@GATHER.shape
def _gather_shape(args, data, indices):
    _check_index_type(indices, "INDICES", 1)
    return [TensorInfo(_geometry(data, indices, args.axis, args.match_outer).out_shape,
                       data.dtype)]


@GATHER.kernel
def gather(ctx, args, data, indices):
    _gather_shape(args, TensorInfo.of(data), TensorInfo.of(indices))
    return _gather(ctx.xp, data, indices, args.axis, _wrap_indices(args), args.match_outer)


# What Gather's C++ maker reads (dense_gradient is read only there, never forward).
_GATHER_GRADIENT_ARGS = OpSchema(
    "Gather", args=[Arg("axis", "int", 0), Arg("dense_gradient", "bool", False)],
    register_now=False)


@GATHER.gradient
def _gather_gradient(g):
    args = _GATHER_GRADIENT_ARGS.parse_args(g.def_)
    if args.axis != 0:
        if not (args.dense_gradient or not args.has("dense_gradient")):
            enforce(False,
                    "Gather with axis > 0 must use dense_gradient: found dense_gradient=0 with "
                    "axis %d. Fix: drop dense_gradient or set it to True." % args.axis)
        return [g.op("BatchGatherGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)],
                     axis=args.axis)]
    if args.dense_gradient:
        return [g.op("SparseToDense", [g.I(1), g.GO(0), g.I(0)], [g.GI(0)])]
    g.SetSparse(0, g.I(1), g.GO(0))  # pass-through: names existing blobs, no op
    return []


BATCH_GATHER = OpSchema(
    "BatchGather", inputs=2, outputs=1, args=[Arg("match_outer", "bool", False)],
    doc="OUTPUT = DATA[:, INDICES]: Gather along axis 1 without index wrapping.")


@BATCH_GATHER.shape
def _batch_gather_shape(args, data, indices):
    _check_index_type(indices, "INDICES", 1)
    return [TensorInfo(_geometry(data, indices, 1, args.match_outer).out_shape,
                       data.dtype)]


@BATCH_GATHER.kernel
def batch_gather(ctx, args, data, indices):
    geo = checked(ctx, (data.shape, indices.shape, data.dtype, indices.dtype),
                  lambda: _batch_gather_geometry(args, data, indices))
    return _gather(ctx.xp, data, indices, 1, False, args.match_outer, geo)


def _batch_gather_geometry(args, data, indices):
    _batch_gather_shape(args, TensorInfo.of(data), TensorInfo.of(indices))
    return _geometry(data, indices, 1, args.match_outer)


@BATCH_GATHER.gradient
def _batch_gather_gradient(g):
    return [g.op("BatchGatherGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


# --- scatter-add, the inverse of the gathers -----------------------------------------

def _scatter_add_at(xp, rows, values, nrows):
    """out[rows[j]] += values[j], in order (numpy backend; compiled when available)."""
    out = np.zeros((nrows,) + values.shape[1:], dtype=values.dtype)
    loop = compiled_scatter_add() if values.dtype == F32 and values.ndim == 2 else None
    if loop is not None and rows.size:
        loop(out, rows.astype(np.int64, copy=False), np.ascontiguousarray(values),
             np.float32(1))
    else:
        np.add.at(out, rows, values)
    return out


def _scatter_bincount(xp, rows, values, nrows):
    """The same through xp.bincount (any array module; sums in float64)."""
    block = numel(values.shape[1:])
    pos = rows.astype(np.int64).reshape(-1, 1) * block + xp.arange(block)
    flat = xp.bincount(pos.reshape(-1), weights=values.reshape(-1).astype(np.float64),
                       minlength=nrows * block)
    return flat.astype(values.dtype).reshape((nrows,) + values.shape[1:])


def _scatter_kernels(schema, body):
    """Register body(ctx, args, *inputs, scatter=...) for numpy and generically."""
    schema.kernel(functools.partial(body, scatter=_scatter_bincount))
    schema.kernel(functools.partial(body, scatter=_scatter_add_at), backend="numpy")


BATCH_GATHER_GRADIENT = OpSchema(
    "BatchGatherGradient", inputs=3, outputs=1,
    args=[Arg("axis", "int", 1), Arg("match_outer", "bool", False)],
    doc="[DATA, INDICES, dY] -> DATA_grad: zeros of DATA's shape with dY scatter-added "
        "at the gathered positions along `axis` (duplicates accumulate).")


@BATCH_GATHER_GRADIENT.shape
def _batch_gather_gradient_shape(args, data, indices, grad):
    _check_index_type(indices, "INDICES", 1)
    if data.dtype != F32:
        enforce(False, "BatchGatherGradient is not implemented on tensor of type "
                "%s: expected float32 DATA, found %s. Fix: gather float32 data."
                % (_c2_type(data.dtype), data.dtype.name), input_index=0)
    _check_typed(grad, F32, "GRAD", 2)
    geo = _geometry(data, indices, args.axis, args.match_outer, min_dims=2)
    if grad.shape[:geo.axis] != data.shape[:geo.axis]:
        enforce(False,
                "batch gather outer dimensions should match: expected GRAD shape to start with "
                "%s, found %s. Fix: pass the gradient of this gather's output."
                % (list(data.shape[:geo.axis]), list(grad.shape)), input_index=2)
    want = geo.outer * geo.count * geo.block
    if not (numel(data.shape) == 0 or numel(grad.shape) == want):
        enforce(False,
                "BatchGatherGradient: GRAD does not match the gathered shape: expected %d "
                "elements (shape %s), found shape %s. Fix: pass the gradient of this gather's "
                "output." % (want, list(geo.out_shape), list(grad.shape)), input_index=2)
    return [TensorInfo(data.shape, data.dtype)]


def batch_gather_gradient(ctx, args, data, indices, grad, scatter):
    geo = checked(ctx, (data.shape, indices.shape, grad.shape, data.dtype, indices.dtype,
                        grad.dtype), lambda: _batch_gather_gradient_geometry(
                            args, data, indices, grad))
    xp = ctx.xp
    if data.size == 0 or geo.count == 0:
        return xp.zeros(data.shape, dtype=data.dtype)
    idx = _checked_indices(xp, indices, geo.n, False).reshape(-1, geo.count)
    # rows of the (outer * n, block) view
    rows = (idx if geo.outer == 1 else
            xp.arange(0, geo.outer * geo.n, geo.n).reshape(-1, 1) + idx)
    out = scatter(xp, rows.reshape(-1), grad.reshape(-1, geo.block), geo.outer * geo.n)
    return out.reshape(data.shape)


def _batch_gather_gradient_geometry(args, data, indices, grad):
    _batch_gather_gradient_shape(args, TensorInfo.of(data), TensorInfo.of(indices),
                                 TensorInfo.of(grad))
    return _geometry(data, indices, args.axis, args.match_outer, min_dims=2)


_scatter_kernels(BATCH_GATHER_GRADIENT, batch_gather_gradient)


# --- SparseToDense -------------------------------------------------------------------

_S2D_VALUES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64))

SPARSE_TO_DENSE = OpSchema(
    "SparseToDense", inputs=(2, 3), outputs=1, args=[Arg("output_first_dim", "int", 0)],
    doc="output[indices[j]] += values[j] into zeros; the first dim comes from "
        "output_first_dim, data_to_infer_dim's first dim, or max(indices) + 1.")


@SPARSE_TO_DENSE.shape
def _sparse_to_dense_shape(args, indices, values, data=None):
    _check_index_type(indices, "indices", 0)
    if values.dtype not in _S2D_VALUES:
        enforce(False, "SparseToDense is not implemented on tensor of "
                "type %s: expected float32, int32 or int64 values, found %s. Fix: cast the "
                "values." % (_c2_type(values.dtype), values.dtype.name), input_index=1)
    _check_vector(indices, "SparseToDense: indices must be a vector", "indices", 0)
    enforce(len(values.shape) >= 1, "SparseToDense: values must have at least 1 dim, "
            "found a scalar. Fix: reshape values to (len(indices), ...).", input_index=1)
    if indices.shape[0] != values.shape[0]:
        enforce(False, "SparseToDense: sparse_indices.numel() "
                "== sparse_values.size(0): expected %d rows of values, found %d. Fix: give one "
                "value row per index." % (indices.shape[0], values.shape[0]), input_index=1)
    if args.output_first_dim > 0:
        if data is not None:
            enforce(False, "SparseToDense: output_first_dim excludes data_to_infer_dim:"
                    " expected 2 inputs with output_first_dim=%d, found 3. Fix: drop one."
                    % args.output_first_dim, input_index=2)
        first = args.output_first_dim
    elif data is not None:
        enforce(len(data.shape) >= 1, "SparseToDense: data_to_infer_dim must have at "
                "least 1 dim, found a scalar. Fix: pass a tensor whose first dim is the "
                "output's.", input_index=2)
        first = data.shape[0]
    else:
        return [None]  # max(indices) + 1: known only at run time
    return [TensorInfo((first,) + values.shape[1:], values.dtype)]


def sparse_to_dense(ctx, args, indices, values, data=None, scatter=None):
    xp = ctx.xp
    infos = [TensorInfo.of(x) for x in (indices, values, data) if x is not None]
    known = _sparse_to_dense_shape(args, *infos)[0]
    if known is not None:
        first = known.shape[0]
    else:
        first = int(indices.max()) + 1 if indices.size else 0
        if not (first >= 0):
            enforce(False, "SparseToDense: the output first dim max(indices) + 1 is "
                    "negative: found %d. Fix: use indices >= 0." % first, input_index=0)
    if first == 0:  # Caffe2 returns before looking at any index
        return xp.zeros((0,) + values.shape[1:], dtype=values.dtype)
    bad = (indices < 0) | (indices >= first)
    if bool(bad.any()):
        j = int(xp.argmax(bad))
        raise EnforceError(
            "SparseToDense: index out of range: expected indices in [0, %d), found "
            "indices[%d] = %d. Fix: raise the output first dim or fix the index."
            % (first, j, int(indices[j])), input_index=0)
    return scatter(xp, indices, values, first)


_scatter_kernels(SPARSE_TO_DENSE, sparse_to_dense)


@SPARSE_TO_DENSE.gradient
def _sparse_to_dense_gradient(g):
    return [g.op("Gather", [g.GO(0), g.I(0)], [g.GI(1)])]


# --- Unique ----------------------------------------------------------------------

UNIQUE = OpSchema(
    "Unique", inputs=1, outputs=(1, 2), should_not_do_gradient=True,
    doc="Sorted distinct values of a 1-D int32/int64 tensor, and optionally remapping "
        "(int32) with unique[remapping] == input.")


@UNIQUE.shape
def _unique_shape(args, x):
    """unique's length is data-dependent; remapping (if asked for) is x-shaped int32."""
    _check_index_type(x, "input", 0)
    _check_vector(x, "Input should be a vector", "tensor", 0)
    return [None, TensorInfo(x.shape, np.int32)]


@UNIQUE.kernel
def unique(ctx, args, x):
    _unique_shape(args, TensorInfo.of(x))
    values, remapping = ctx.xp.unique(x, return_inverse=True)
    values = values.astype(x.dtype)
    if ctx.num_outputs == 1:
        return values
    return values, remapping.reshape(x.shape).astype(np.int32)


# --- UnsortedSegmentSum / UnsortedSegmentMean ----------------------------------------

def _check_segment_ids(ids, n, message, input_index=1):
    _check_vector(ids, "SEGMENT_IDS must be a vector", "SEGMENT_IDS", input_index)
    _check_typed(ids, I32, "SEGMENT_IDS", input_index)
    if n is not None:
        if ids.shape[0] != n:
            enforce(False, "%s: expected %d segment ids, found %d. Fix: give one "
                    "id per row." % (message, n, ids.shape[0]), input_index=input_index)


def _check_ids_range(xp, ids, k):
    bad = (ids < 0) | (ids >= k)
    if bool(bad.any()):
        s_id = int(ids[int(xp.argmax(bad))])
        raise EnforceError("Segment id out of range: %d, range 0 to %d: expected ids in "
                           "[0, %d), found %d. Fix: raise num_segments or fix the id."
                           % (s_id, k, k, s_id), input_index=1)


def _segment_shape(args, data, ids):
    enforce(len(data.shape) >= 1, "UnsortedSegment: DATA must have at least 1 dim, found "
            "a scalar. Fix: reshape DATA to (len(SEGMENT_IDS), ...).", input_index=0)
    _check_segment_ids(ids, data.shape[0],
                       "DATA must have the same first dimension as SEGMENT_IDS")
    if data.dtype != F32:
        enforce(False, "Unsupported input type: %s: expected float32 DATA, found "
                "%s. Fix: cast it with astype(np.float32)." % (_c2_type(data.dtype),
                                                               data.dtype.name), input_index=0)
    if not (args.num_segments >= -1):
        enforce(False, "UnsortedSegment: num_segments must be -1 (infer) or "
                ">= 0, found %d. Fix: pass num_segments >= 0." % args.num_segments)
    if args.num_segments == -1:
        return [None]  # max(SEGMENT_IDS) + 1: known only at run time
    return [TensorInfo((args.num_segments,) + data.shape[1:], data.dtype)]


def unsorted_segment(ctx, args, data, ids, scatter, mean):
    _segment_shape(args, TensorInfo.of(data), TensorInfo.of(ids))
    xp = ctx.xp
    k = args.num_segments
    if k == -1:
        k = max(int(ids.max()) + 1, 0) if ids.size else 0
    _check_ids_range(xp, ids, k)
    out = scatter(xp, ids, data, k)
    if mean:
        counts = xp.bincount(ids, minlength=k).reshape((k,) + (1,) * (data.ndim - 1))
        out = out * (1.0 / xp.maximum(counts, 1)).astype(data.dtype)  # Caffe2's Scale
    return out


def _segment_gradient(grad_type):
    def maker(g):
        return [g.op(grad_type, [g.GO(0), g.I(1)], [g.GI(0)])]
    return maker


def _segment_gradient_shape(args, grad, ids):
    _check_typed(grad, F32, "segment gradient", 0)
    enforce(len(grad.shape) >= 1, "UnsortedSegmentGradient: the segment gradient must "
            "have at least 1 dim, found a scalar. Fix: pass the forward output's gradient.",
            input_index=0)
    _check_segment_ids(ids, None, "")
    return [TensorInfo(ids.shape + grad.shape[1:], grad.dtype)]


def unsorted_segment_gradient(ctx, args, grad, ids, mean):
    """DATA_grad[j] = dY[ids[j]] (divided by the segment's size for the mean)."""
    _segment_gradient_shape(args, TensorInfo.of(grad), TensorInfo.of(ids))
    xp = ctx.xp
    k = grad.shape[0]
    _check_ids_range(xp, ids, k)
    out = xp.take(grad, ids, axis=0)
    if mean:
        counts = xp.bincount(ids, minlength=k)[ids].reshape((-1,) + (1,) * (grad.ndim - 1))
        out = out * (1.0 / counts).astype(grad.dtype)
    return out


for _name, _mean in (("UnsortedSegmentSum", False), ("UnsortedSegmentMean", True)):
    _how = "mean" if _mean else "sum"
    _fwd = OpSchema(
        _name, inputs=2, outputs=1, args=[Arg("num_segments", "int", -1)],
        doc="OUTPUT[s] = %s of DATA rows j with SEGMENT_IDS[j] == s (float32 DATA, int32 "
            "ids, any order; missing segments are zero)." % _how)
    _fwd.shape(_segment_shape)
    _scatter_kernels(_fwd, functools.partial(unsorted_segment, mean=_mean))
    _fwd.gradient(_segment_gradient(_name + "Gradient"))
    _bwd = OpSchema(_name + "Gradient", inputs=2, outputs=1,
                    doc="[dY, SEGMENT_IDS] -> DATA_grad = dY[SEGMENT_IDS]%s."
                        % (" / segment size" if _mean else ""))
    _bwd.shape(_segment_gradient_shape)
    _bwd.kernel(functools.partial(unsorted_segment_gradient, mean=_mean))


# --- CUDA kernels (backend "cupy"; compiled lazily, see ops/_cuda.py) -----------------
# The scatter-adds (BatchGatherGradient, SparseToDense, UnsortedSegmentSum/Mean) run
# ops/_cuda_scatter.py's kernel for float32 values: atomics, or with
# GRAPHNET_CUDA_DETERMINISTIC=1 a sorted segmented sum in numpy's np.add.at order.
# Other dtypes keep the generic bincount. Unique: sort, mark run starts, scatter.

from ._cuda import INDEX_TYPES as _CUDA_INDEX_TYPES  # noqa: E402
from ._cuda import CudaSource, index_type, launch, variants  # noqa: E402
from ._cuda_scatter import scatter_add_rows  # noqa: E402
from graphnet.registry import lookup as registry_lookup  # noqa: E402


def _scatter_cuda(xp, rows, values, nrows):
    """_scatter_add_at on the GPU: zeros of (nrows,) + values.shape[1:], rows added."""
    if values.dtype != F32:
        return _scatter_bincount(xp, rows, values, nrows)
    out = xp.zeros((nrows,) + tuple(values.shape[1:]), dtype=np.float32)
    if nrows and out.size:
        scatter_add_rows(xp, out.reshape(nrows, -1), rows, values)
    return out


def _cuda_scatter_kernels(schema, body):
    schema.kernel(functools.partial(body, scatter=_scatter_cuda), backend="cupy")


_cuda_scatter_kernels(BATCH_GATHER_GRADIENT, batch_gather_gradient)
_cuda_scatter_kernels(SPARSE_TO_DENSE, sparse_to_dense)
for _name, _mean in (("UnsortedSegmentSum", False), ("UnsortedSegmentMean", True)):
    _cuda_scatter_kernels(registry_lookup(_name), functools.partial(unsorted_segment,
                                                                    mean=_mean))

_UNIQUE_CUDA = CudaSource("unique", variants(r"""
extern "C" __global__ void unique_mark$SUFFIX(const $IT* sorted, i64 n, int* first) {
    i64 p = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (p < n) first[p] = (p == 0 || sorted[p] != sorted[p - 1]) ? 1 : 0;
}

extern "C" __global__ void unique_scatter$SUFFIX(const $IT* sorted, const i64* order,
        const int* first, const i64* ids, i64 n, $IT* values, int* remapping) {
    i64 p = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n) return;
    i64 id = ids[p];
    remapping[order[p]] = (int)id;
    if (first[p]) values[id] = sorted[p];
}
""", IT=_CUDA_INDEX_TYPES))


@UNIQUE.kernel(backend="cupy")
def unique_cuda(ctx, args, x):
    """Sorted distinct values and int32 remapping: one sort, two kernels, and one
    device->host read (the number of distinct values sizes the output)."""
    _unique_shape(args, TensorInfo.of(x))
    xp = ctx.xp
    n = int(x.shape[0])
    if n == 0:
        values = xp.empty((0,), dtype=x.dtype)
        return values if ctx.num_outputs == 1 else (values, xp.empty((0,), np.int32))
    suffix = index_type(x.dtype)
    order = xp.argsort(x)
    ordered = xp.ascontiguousarray(x[order])
    first = xp.empty((n,), dtype=np.int32)
    launch(_UNIQUE_CUDA.function("unique_mark_" + suffix), n,
           (ordered, np.int64(n), first))
    ids = xp.cumsum(first, dtype=np.int64) - 1
    count = int(ids[-1]) + 1
    values = xp.empty((count,), dtype=x.dtype)
    remapping = xp.empty((n,), dtype=np.int32)
    launch(_UNIQUE_CUDA.function("unique_scatter_" + suffix), n,
           (ordered, order.astype(np.int64), first, ids, np.int64(n), values, remapping))
    if ctx.num_outputs == 1:
        return values
    return values, remapping


# --- fused lowering (graphnet.executors.fused) -----------------------------------------
# Operands: outer, n, block, count, data (or dY), index kind, indices, output.

@vm_helper
def _batch_gather_rows(f4, idx, data, out, outer, n, block, count, gradient):
    """Gather (or, for the gradient, zero and scatter-add in order) rows of the
    (outer, n, block) view; False when an index is outside [0, n)."""
    if not rows_in_range(idx, n):
        return False
    if gradient:
        f4[out:out + outer * n * block] = 0
    for s in range(outer):
        for j in range(count):
            row = idx[j]
            src = data + (s * count + j) * block if gradient else \
                data + (s * n + row) * block
            dst = out + (s * n + row) * block if gradient else \
                out + (s * count + j) * block
            for q in range(block):
                if gradient:
                    f4[dst + q] += f4[src + q]
                else:
                    f4[dst + q] = f4[src + q]
    return True


@vm_kernel
def batch_gather_vm(c, p, f4, i4, i8):
    outer, n, block, count = c[p], c[p + 1], c[p + 2], c[p + 3]
    data, kind, idx, out, gradient = c[p + 4], c[p + 5], c[p + 6], c[p + 7], c[p + 8]
    if kind == INT32:
        return _batch_gather_rows(f4, i4[idx:idx + count], data, out, outer, n, block,
                                  count, gradient)
    return _batch_gather_rows(f4, i8[idx:idx + count], data, out, outer, n, block,
                              count, gradient)


def _lower_batch_gather_family(f, gradient):
    data = f.in_info[0].shape
    if f.args.match_outer or len(data) < 2 or not f.distinct() \
            or f.in_info[1].dtype not in INDEX_TYPES or f.out_info[0].dtype != F32 \
            or f.in_info[2 if gradient else 0].dtype != F32:
        return False
    count = numel(f.in_info[1].shape)
    if gradient and (numel(data) == 0 or count == 0):
        f.emit(fill_zero_vm, f.out(0), numel(data))
    elif numel(f.out_info[0].shape):  # (Caffe2 checked no index for an empty output)
        kind, idx = f.index(1)
        f.emit(batch_gather_vm, data[0], data[1], numel(data[2:]), count,
               f.off(2 if gradient else 0), kind, idx, f.out(0), int(gradient))
    return True


BATCH_GATHER.lowering(lambda f: _lower_batch_gather_family(f, False))
BATCH_GATHER_GRADIENT.lowering(
    lambda f: f.args.axis == 1 and _lower_batch_gather_family(f, True))


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Gather", "BatchGather", "BatchGatherGradient")
