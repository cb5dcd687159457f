"""Adagrad, SparseAdagrad and RowWiseSparseAdagrad (SHOULD_NOT_DO_GRADIENT).
Imports numpy, the registry, graphnet.errors, ops._common and ops._optimizer only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import Arg, OpSchema, TensorInfo, enforce

from ._common import F32, F64, infos, numel, occurrence_rounds
from ._optimizer import (as_float32, check_block, check_bounds, check_eq, check_index_type,
                         check_lr, check_param_dims, check_updatable, lr_value, mutable,
                         require)


def _fma(xp, a, x, y):
    """float32 fma(a, x, y) with one rounding (Caffe2's std::fma / FMA kernels)."""
    if a == 0.0:
        return y
    exact = np.float64(np.float32(a)) * x.astype(F64) + y.astype(F64)
    return exact.astype(F32)


# --- Adagrad ---------------------------------------------------------------------------

ADAGRAD = OpSchema(
    "Adagrad", inputs=4, outputs=(2, 4), allow_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True,
    args=[Arg("epsilon", "float", 1e-5), Arg("decay", "float", 1.0),
          Arg("weight_decay", "float", 0.0)],
    doc="Dense Adagrad: inputs param, moment, grad, lr (this order, not the doc's); "
        "g' = g + weight_decay*w, h' = decay*h + g'^2, w' = w + lr*g'/(sqrt(h')+epsilon); "
        "optional outputs effective_lr and update.")


@ADAGRAD.shape
def _adagrad_shape(args, param, moment, grad, lr):
    op = "Adagrad"
    check_updatable(param, op, "param", 0)
    check_updatable(moment, op, "moment", 1)
    require(grad, F32, op, "grad", 2)
    check_lr(lr, op, 3, exact=False)
    n_grad = numel(grad.shape)
    check_eq(n_grad, numel(moment.shape), "Input(GRAD).numel() == Input(MOMENT_1).numel()",
             op, "PARAM size: %d, GRAD size: %d, MOMENT_1 size: %d, LR size: %d"
             % (numel(param.shape), n_grad, numel(moment.shape), numel(lr.shape)),
             "give moment as many elements as grad", 1)
    check_eq(n_grad, numel(param.shape), "Input(GRAD).numel() == Input(PARAM).numel()",
             op, "grad has %d elements, param %d" % (n_grad, numel(param.shape)),
             "feed the gradient of this param", 2)
    return [TensorInfo(param.shape, F32), TensorInfo(moment.shape, F32),
            TensorInfo(grad.shape, F32), TensorInfo(grad.shape, F32)]


@ADAGRAD.kernel
def adagrad(ctx, args, param, moment, grad, lr):
    xp, op = ctx.xp, "Adagrad"
    _adagrad_shape(args, *infos(param, moment, grad, lr))
    w = as_float32(xp, param, op, "param", 0, ctx.inplace(0, 0)).reshape(-1)
    h = as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1)).reshape(-1)
    rate, eps = lr_value(lr), np.float32(args.epsilon)
    with np.errstate(all="ignore"):
        g = _fma(xp, args.weight_decay, w, grad.reshape(-1))
        nh = np.float32(args.decay) * h + g * g
        denom = xp.sqrt(nh) + eps
        if ctx.num_outputs == 2:
            return (w + rate * g / denom).reshape(param.shape), nh.reshape(moment.shape)
        effective_lr = rate / denom
        update = effective_lr * g
        outs = [(w + update).reshape(param.shape), nh.reshape(moment.shape),
                effective_lr.reshape(grad.shape), update.reshape(grad.shape)]
    return tuple(outs[:ctx.num_outputs])


# --- SparseAdagrad / RowWiseSparseAdagrad --------------------------------------------------

def _sparse_adagrad_decay(args):
    if args.decay != 1.0:
        raise ArgumentError(
            "decay == 1.0. %g vs 1. Decay is not supported for SparseSimdAdagradOp: "
            "SparseAdagrad expects decay 1.0 (or no decay argument), found %g. Fix: drop "
            "decay, or use dense Adagrad for a decaying moment." % (args.decay, args.decay))


SPARSE_ADAGRAD = OpSchema(
    "SparseAdagrad", inputs=5, outputs=2, enforce_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True, arg_check=_sparse_adagrad_decay,
    args=[Arg("epsilon", "float", 1e-5), Arg("weight_decay", "float", 0.0),
          Arg("decay", "float", 1.0)],
    doc="Adagrad on the rows param[indices[i]], in index order (a repeated index is "
        "updated twice); inputs param, moment, indices, grad, lr; in place.")


def _sparse_adagrad_common(op, param, moment, indices, grad, lr):
    check_updatable(param, op, "param", 0)
    check_updatable(moment, op, "moment", 1)
    check_index_type(indices, op, 2)
    require(grad, F32, op, "grad", 3)
    check_lr(lr, op, 4)
    check_block(param, grad, indices, op, 3)


@SPARSE_ADAGRAD.shape
def _sparse_adagrad_shape(args, param, moment, indices, grad, lr):
    op = "SparseAdagrad"
    check_eq(numel(param.shape), numel(moment.shape),
             "Input(PARAM).numel() == Input(MOMENT_1).numel()", op,
             "Input Param size: %d Input Moment size: %d"
             % (numel(param.shape), numel(moment.shape)),
             "give moment the shape of param", 1)
    _sparse_adagrad_common(op, param, moment, indices, grad, lr)
    return [TensorInfo(param.shape, F32), TensorInfo(moment.shape, F32)]


def _sparse_geometry(xp, ctx, op, indices, grad, param_numel, label="block size"):
    """(flat indices, block, rows), checked: Caffe2's block = grad.numel / n."""
    n = int(indices.size)
    block = int(grad.size) // n
    if int(grad.size) % n != 0:
        enforce(False,
                "Input(GRAD).numel() %% n == 0. Incorrect gradient size:%d size of indexes:%d. "
                "%s: expected a multiple of %d grad elements, found %d. Fix: give one grad "
                "slice per index." % (grad.size, n, op, n, grad.size), input_index=3)
    idx = indices.reshape(-1).astype(np.int64)
    rows = param_numel // block if block else 0
    if block:
        check_bounds(xp, ctx, idx, rows, block, param_numel, op, (0, 2), label)
    return idx, block, rows


def _sparse_setup(ctx, args, param, moment, indices, grad, lr):
    """SparseAdagrad's checks and buffers, for every backend: (w, h) and, when there
    is something to update, (idx, block, rows); else None."""
    xp, op = ctx.xp, "SparseAdagrad"
    _sparse_adagrad_shape(args, *infos(param, moment, indices, grad, lr))
    w = mutable(xp, as_float32(xp, param, op, "param", 0, True))
    h = mutable(xp, as_float32(xp, moment, op, "moment", 1, True))
    if indices.size == 0:
        return (w, h), None
    idx, block, rows = _sparse_geometry(xp, ctx, op, indices, grad, w.size, "block_size")
    return (w, h), (None if block == 0 else (idx, block, rows))


@SPARSE_ADAGRAD.kernel
def sparse_adagrad(ctx, args, param, moment, indices, grad, lr):
    xp = ctx.xp
    (w, h), work = _sparse_setup(ctx, args, param, moment, indices, grad, lr)
    if work is None:
        return w, h
    idx, block, rows = work
    rate, eps = lr_value(lr), np.float32(args.epsilon)
    W = w.reshape(-1)[:rows * block].reshape(rows, block)
    H = h.reshape(-1)[:rows * block].reshape(rows, block)
    G = grad.reshape(-1, block)
    with np.errstate(all="ignore"):
        for pos in occurrence_rounds(xp, idx):
            r = idx[pos]
            wr = W[r]
            g = _fma(xp, args.weight_decay, wr, G[pos])
            hr = H[r] + g * g
            H[r] = hr
            W[r] = wr + rate * g / (xp.sqrt(hr) + eps)
    return w, h


ROWWISE_SPARSE_ADAGRAD = OpSchema(
    "RowWiseSparseAdagrad", inputs=(5, 6), outputs=2, enforce_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True,
    args=[Arg("epsilon", "float", 1e-5), Arg("weight_decay", "float", 0.0),
          Arg("counter_halflife", "int", -1)],
    doc="SparseAdagrad with one moment per row (the mean of the squared row gradient); "
        "optional float64 counter input scales weight_decay by counter_halflife/count.")


@ROWWISE_SPARSE_ADAGRAD.shape
def _rowwise_sparse_adagrad_shape(args, param, moment, indices, grad, lr, counter=None):
    op = "RowWiseSparseAdagrad"
    check_param_dims(param, op)
    check_eq(param.shape[0], numel(moment.shape),
             "Input(PARAM).sizes()[0] == Input(MOMENT_1).numel()", op,
             "one moment per param row: param %s, moment %s"
             % (list(param.shape), list(moment.shape)),
             "feed moment of shape (param.shape[0],)", 1)
    _sparse_adagrad_common(op, param, moment, indices, grad, lr)
    if args.counter_halflife != -1:
        if counter is None:
            enforce(False,
                    "%s with counter_halflife=%d reads input 5 (counter), found only 5 inputs. "
                    "Fix: pass the float64 row counter, or leave counter_halflife at -1."
                    % (op, args.counter_halflife))
        require(counter, F64, op, "counter", 5)
    return [TensorInfo(param.shape, F32), TensorInfo(moment.shape, F32)]


def _rowwise_setup(ctx, args, param, moment, indices, grad, lr, counter):
    """RowWiseSparseAdagrad's checks and buffers, for every backend: (w, h) and, when
    there is something to update, (idx, block, rows, use_counter); else None."""
    xp, op = ctx.xp, "RowWiseSparseAdagrad"
    _rowwise_sparse_adagrad_shape(args, *infos(param, moment, indices, grad, lr),
                                  counter=None if counter is None else TensorInfo.of(counter))
    w = mutable(xp, as_float32(xp, param, op, "param", 0, True))
    h = mutable(xp, as_float32(xp, moment, op, "moment", 1, True))
    if indices.size == 0:
        return (w, h), None
    n = int(indices.size)
    block = int(grad.size) // n
    if block:
        check_eq(w.size // block, h.size, "Input(PARAM).numel() / block_size == "
                 "Input(MOMENT_1).numel()", op, "Input Param size: %d Block size: %d Input "
                 "Moment size: %d" % (w.size, block, h.size),
                 "give one grad row of param.shape[1:] per index", 3)
    idx, block, rows = _sparse_geometry(xp, ctx, op, indices, grad, w.size)
    if block == 0:
        return (w, h), None
    use_counter = args.counter_halflife > 0
    if use_counter and not (counter.size >= rows):
        enforce(False,
                "%s reads counter[idx] for every row: expected at least %d counter entries, "
                "found %d. Fix: feed the row counter of this table." % (op, rows,
                                                                        counter.size),
                input_index=5)
    return (w, h), (idx, block, rows, use_counter)


@ROWWISE_SPARSE_ADAGRAD.kernel
def rowwise_sparse_adagrad(ctx, args, param, moment, indices, grad, lr, counter=None):
    xp = ctx.xp
    (w, h), work = _rowwise_setup(ctx, args, param, moment, indices, grad, lr, counter)
    if work is None:
        return w, h
    idx, block, rows, use_counter = work
    rate, eps = lr_value(lr), np.float32(args.epsilon)
    wd = np.float32(args.weight_decay)
    W = w.reshape(-1)[:rows * block].reshape(rows, block)
    H = h.reshape(-1)
    G = grad.reshape(-1, block)
    with np.errstate(all="ignore"):
        for pos in occurrence_rounds(xp, idx):
            r = idx[pos]
            wr, g = W[r], G[pos]
            if wd != 0:
                if use_counter:
                    count = counter.reshape(-1)[r]
                    freq = xp.where(count > 0, args.counter_halflife / count, 1.0)
                    scale = (wd * freq.astype(F32)).astype(F64)[:, None]
                    g = (scale * wr.astype(F64) + g.astype(F64)).astype(F32)
                else:
                    g = _fma(xp, wd, wr, g)
            hr = H[r] + (g * g).sum(axis=1, dtype=F32) / np.float32(block)
            H[r] = hr
            step = rate / (xp.sqrt(hr) + eps)
            W[r] = wr + g * step[:, None]
    return w, h


# --- CUDA kernels (backend "cupy"; compiled lazily, see ops/_cuda.py) -----------------
# Caffe2 updates a repeated index twice, the second time from the updated state. The
# GPU keeps that: positions are sorted by (row, position) and the first thread of each
# run of equal rows applies the run's updates in position order (no atomics, so the
# result is deterministic and equals the sequential loop up to float rounding of the
# row sums). Validation is the numpy kernels' (before any write); lr stays on device.

from ._cuda import INDEX_TYPES as _CUDA_INDEX_TYPES  # noqa: E402
from ._cuda import CudaSource, index_type, launch, null_flag, variants  # noqa: E402
from ._cuda_scatter import sorted_runs  # noqa: E402

_ADAGRAD_CUDA = CudaSource("sparse_adagrad", variants(r"""
extern "C" __global__ void sparse_adagrad$SUFFIX(float* w, float* h, const float* g,
        const $IT* sorted_rows, const i64* order, const float* lr, float eps, float wd,
        i64 k, i64 block, i64 rows, i64* flag) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= k * block) return;
    i64 p = t / block, c = t - p * block;
    i64 r = (i64)sorted_rows[p];
    if (p > 0 && (i64)sorted_rows[p - 1] == r) return;
    if (r < 0 || r >= rows) { if (c == 0) gn_flag(flag, order[p]); return; }
    float rate = lr[0];
    float wv = w[r * block + c], hv = h[r * block + c];
    for (i64 q = p; q < k && (i64)sorted_rows[q] == r; ++q) {
        float gv = g[order[q] * block + c];
        if (wd != 0.0f) gv = fmaf(wd, wv, gv);
        hv = __fadd_rn(hv, __fmul_rn(gv, gv));
        wv = __fadd_rn(wv, __fdiv_rn(__fmul_rn(rate, gv), __fadd_rn(__fsqrt_rn(hv), eps)));
    }
    w[r * block + c] = wv;
    h[r * block + c] = hv;
}

extern "C" __global__ void rowwise_adagrad$SUFFIX(float* w, float* h, const float* g,
        const $IT* sorted_rows, const i64* order, const float* lr, float eps, float wd,
        const double* counter, double halflife, i64 k, i64 block, i64 rows, i64* flag) {
    i64 p = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= k) return;
    i64 r = (i64)sorted_rows[p];
    if (p > 0 && (i64)sorted_rows[p - 1] == r) return;
    if (r < 0 || r >= rows) { gn_flag(flag, order[p]); return; }
    float rate = lr[0];
    float* wr = w + r * block;
    float hv = h[r];
    float scale = wd;
    if (counter && wd != 0.0f) {
        double count = counter[r];
        float freq = (float)(count > 0.0 ? halflife / count : 1.0);
        scale = __fmul_rn(wd, freq);
    }
    for (i64 q = p; q < k && (i64)sorted_rows[q] == r; ++q) {
        const float* gq = g + order[q] * block;
        float sum = 0.0f;
        for (i64 c = 0; c < block; ++c) {
            float gv = gq[c];
            if (wd != 0.0f) gv = counter ? (float)((double)scale * (double)wr[c] + (double)gv)
                                         : fmaf(wd, wr[c], gv);
            sum = __fadd_rn(sum, __fmul_rn(gv, gv));
        }
        hv = __fadd_rn(hv, __fdiv_rn(sum, (float)block));
        float step = __fdiv_rn(rate, __fadd_rn(__fsqrt_rn(hv), eps));
        for (i64 c = 0; c < block; ++c) {
            float gv = gq[c];
            if (wd != 0.0f) gv = counter ? (float)((double)scale * (double)wr[c] + (double)gv)
                                         : fmaf(wd, wr[c], gv);
            wr[c] = __fadd_rn(wr[c], __fmul_rn(gv, step));
        }
    }
    h[r] = hv;
}
""", IT=_CUDA_INDEX_TYPES))


def _device_lr(xp, lr):
    return xp.ascontiguousarray(lr.reshape(-1)[:1], dtype=np.float32)


@SPARSE_ADAGRAD.kernel(backend="cupy")
def sparse_adagrad_cuda(ctx, args, param, moment, indices, grad, lr):
    xp = ctx.xp
    (w, h), work = _sparse_setup(ctx, args, param, moment, indices, grad, lr)
    if work is None:
        return w, h
    idx, block, rows = work
    order, sorted_rows = sorted_runs(xp, idx)
    k = int(idx.shape[0])
    launch(_ADAGRAD_CUDA.function("sparse_adagrad_" + index_type(sorted_rows.dtype)),
           k * block,
           (w, h, xp.ascontiguousarray(grad, dtype=np.float32), sorted_rows, order,
            _device_lr(xp, lr), np.float32(args.epsilon), np.float32(args.weight_decay),
            np.int64(k), np.int64(block), np.int64(rows), null_flag()))
    return w, h


@ROWWISE_SPARSE_ADAGRAD.kernel(backend="cupy")
def rowwise_sparse_adagrad_cuda(ctx, args, param, moment, indices, grad, lr, counter=None):
    xp = ctx.xp
    (w, h), work = _rowwise_setup(ctx, args, param, moment, indices, grad, lr, counter)
    if work is None:
        return w, h
    idx, block, rows, use_counter = work
    n = int(indices.size)
    order, sorted_rows = sorted_runs(xp, idx)
    launch(_ADAGRAD_CUDA.function("rowwise_adagrad_" + index_type(sorted_rows.dtype)), n,
           (w, h, xp.ascontiguousarray(grad, dtype=np.float32), sorted_rows, order,
            _device_lr(xp, lr), np.float32(args.epsilon), np.float32(args.weight_decay),
            xp.ascontiguousarray(counter.reshape(-1)) if use_counter else null_flag(),
            np.float64(args.counter_halflife), np.int64(n), np.int64(block),
            np.int64(rows), null_flag()))
    return w, h
