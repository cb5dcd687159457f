"""Adam, SparseAdam (optionally RAdam) and RowWiseSparseAdam (SHOULD_NOT_DO_GRADIENT).
Imports numpy, the registry, ops._common and ops._optimizer only.
"""

import numpy as np

from graphnet.registry import Arg, OpSchema, TensorInfo, enforce

from ._common import F32, F64, I64, infos, numel, occurrence_rounds
from ._optimizer import (as_float32, check_block, check_bounds, check_eq, check_index_type,
                         check_lr, check_param_dims, check_updatable, lr_value, mutable,
                         require, sparse_rows)


_ADAM_ARGS = [Arg("beta1", "float", 0.9), Arg("beta2", "float", 0.999),
              Arg("epsilon", "float", 1e-5)]


def _check_iter(info, op, index):
    require(info, I64, op, "iter", index)
    if not (numel(info.shape) >= 1):
        enforce(False,
                "%s reads iter[0]: expected a 1-element int64 counter, found an empty tensor. "
                "Fix: create it with brew.iter / Iter." % op, input_index=index)


class _AdamScalars(object):
    """Caffe2's per-step scalars: float32 betas, powers and corrections in double
    (std::pow(float, int64) promotes), t = iter + 1."""

    def __init__(self, args, iteration):
        self.b1, self.b2 = np.float32(args.beta1), np.float32(args.beta2)
        self.eps = np.float32(args.epsilon)
        self.one_b1, self.one_b2 = np.float32(1) - self.b1, np.float32(1) - self.b2
        self.t = t = int(iteration.reshape(-1)[0]) + 1
        with np.errstate(all="ignore"):
            p1 = np.float64(self.b1) ** np.float64(t)
            p2 = np.float64(self.b2) ** np.float64(t)
            self.b1_correction = np.float64(1.0) / (np.float64(1.0) - p1)
            self.correction = np.sqrt(np.float64(1.0) - p2) / (np.float64(1.0) - p1)
            # RAdam (SparseAdam enableRAdam): rho_inf and r_correction are float.
            self.rho_inf = np.float32(2) / self.one_b2 - np.float32(1)
            self.rho_t = (np.float64(self.rho_inf) - np.float64(np.float32(2) * np.float32(t))
                          * p2 / (np.float64(1.0) - p2))
            self.r_correction = np.sqrt(self.rho_inf / ((self.rho_inf - np.float32(4)) *
                                                        (self.rho_inf - np.float32(2))))

    def moments(self, g, m1, m2):
        return m1 * self.b1 + g * self.one_b1, m2 * self.b2 + g * g * self.one_b2


def _adam_shape(op, param, m1, m2, grad, lr, it, dense):
    """Dtypes: dense Adam may reinterpret in-place state; the sparse ones read every
    state tensor as float before writing, so only float32 passes there."""
    for k, (info, what) in enumerate(((param, "param"), (m1, "moment_1"),
                                      (m2, "moment_2"))):
        if dense:
            check_updatable(info, op, what, k)
        else:
            require(info, F32, op, what, k)
    require(grad, F32, op, "grad", 3 if dense else 4)
    check_lr(lr, op, 4 if dense else 5)
    _check_iter(it, op, 5 if dense else 6)


ADAM = OpSchema(
    "Adam", inputs=6, outputs=(3, 4), allow_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={5}, should_not_do_gradient=True, args=_ADAM_ARGS,
    doc="Dense Adam: inputs param, moment_1, moment_2, grad, lr, iter (int64, CPU); "
        "t = iter + 1; optional output effective grad.")


@ADAM.shape
def _adam_dense_shape(args, param, m1, m2, grad, lr, it):
    op = "Adam"
    _adam_shape(op, param, m1, m2, grad, lr, it, True)
    n = numel(grad.shape)
    for k, info, what in ((0, param, "PARAM"), (1, m1, "MOMENT_1"), (2, m2, "MOMENT_2")):
        check_eq(n, numel(info.shape), "Input(GRAD).numel() == Input(%s).numel()" % what,
                 op, "grad %s, %s %s" % (list(grad.shape), what.lower(), list(info.shape)),
                 "give %s as many elements as grad" % what.lower(), k)
    return [TensorInfo(param.shape, F32), TensorInfo(m1.shape, F32),
            TensorInfo(m2.shape, F32), TensorInfo(grad.shape, F32)]


@ADAM.kernel
def adam(ctx, args, param, m1, m2, grad, lr, it):
    xp, op = ctx.xp, "Adam"
    _adam_dense_shape(args, *infos(param, m1, m2, grad, lr, it))
    w = as_float32(xp, param, op, "param", 0, ctx.inplace(0, 0)).reshape(-1)
    a = as_float32(xp, m1, op, "moment_1", 1, ctx.inplace(1, 1)).reshape(-1)
    b = as_float32(xp, m2, op, "moment_2", 2, ctx.inplace(2, 2)).reshape(-1)
    s, rate = _AdamScalars(args, it), lr_value(lr)
    corr = np.float32(s.correction)
    with np.errstate(all="ignore"):
        mi, vi = s.moments(grad.reshape(-1), a, b)
        denom = xp.sqrt(vi) + s.eps
        outs = [None, mi.reshape(m1.shape), vi.reshape(m2.shape)]
        if ctx.num_outputs == 3:
            outs[0] = (w + rate * corr * mi / denom).reshape(param.shape)
        else:
            ng = corr * mi / denom
            outs[0] = (w + rate * ng).reshape(param.shape)
            outs.append(ng.reshape(grad.shape))
    return tuple(outs)


# --- SparseAdam / RowWiseSparseAdam ------------------------------------------------

SPARSE_ADAM = OpSchema(
    "SparseAdam", inputs=7, outputs=(3, 4), enforce_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={6}, should_not_do_gradient=True,
    args=_ADAM_ARGS + [Arg("enableRAdam", "bool", False)],
    doc="Adam on the rows param[indices[i]], in index order; inputs param, moment_1, "
        "moment_2, indices, grad, lr, iter; optional output effective grad.")


def _sparse_adam_shape(op, args, param, m1, m2, indices, grad, lr, it, m2_rows):
    n_param = numel(param.shape)
    check_eq(n_param, numel(m1.shape), "Input(PARAM).numel() == Input(MOMENT_1).numel()",
             op, "param %s, moment_1 %s" % (list(param.shape), list(m1.shape)),
             "give moment_1 the shape of param", 1)
    if m2_rows:
        check_param_dims(param, op)
        check_eq(param.shape[0], numel(m2.shape), "Input(PARAM).sizes()[0] == "
                 "Input(MOMENT_2).numel()", op, "one moment_2 per param row: param %s, "
                 "moment_2 %s" % (list(param.shape), list(m2.shape)),
                 "feed moment_2 of shape (param.shape[0],)", 2)
    else:
        check_eq(n_param, numel(m2.shape), "Input(PARAM).numel() == Input(MOMENT_2)"
                 ".numel()", op, "param %s, moment_2 %s" % (list(param.shape),
                                                            list(m2.shape)),
                 "give moment_2 the shape of param", 2)
    check_block(param, grad, indices, op, 4)
    check_index_type(indices, op, 3)
    _adam_shape(op, param, m1, m2, grad, lr, it, False)
    sparse_rows(op, param, grad, indices, 3)
    return [TensorInfo(param.shape, F32), TensorInfo(m1.shape, F32),
            TensorInfo(m2.shape, F32), TensorInfo(grad.shape, F32)]


@SPARSE_ADAM.shape
def _sparse_adam_shape_rule(args, *infos):
    return _sparse_adam_shape("SparseAdam", args, *infos, m2_rows=False)


ROWWISE_SPARSE_ADAM = OpSchema(
    "RowWiseSparseAdam", inputs=7, outputs=(3, 4), enforce_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={6}, should_not_do_gradient=True, args=_ADAM_ARGS,
    doc="SparseAdam with one second moment per row (the mean squared row gradient).")


@ROWWISE_SPARSE_ADAM.shape
def _rowwise_sparse_adam_shape(args, *infos):
    return _sparse_adam_shape("RowWiseSparseAdam", args, *infos, m2_rows=True)


def _f64(x):
    return x.astype(F64)


def _sparse_adam_step(xp, s, args, rate, w, mi, vi, block, want_grad):
    """(new rows, effective grad rows) of SparseAdam, with Caffe2's float/double mix:
    one-element rows computed inline in double, wider rows in float32 helpers."""
    sqrt_eps = xp.sqrt(vi) + s.eps
    wide = block != 1
    if not args.enableRAdam:
        if wide:
            corr = np.float32(s.correction)
            if not want_grad:
                return w + rate * corr * mi / sqrt_eps, None
            ng = corr * mi / sqrt_eps
            return w + rate * ng, ng
        if not want_grad:
            return (_f64(w) + np.float64(rate) * s.correction * _f64(mi) /
                    _f64(sqrt_eps)).astype(F32), None
        ng = (s.correction * _f64(mi) / _f64(sqrt_eps)).astype(F32)
        return w + rate * ng, ng
    rho_t = np.float64(np.float32(s.rho_t)) if wide else s.rho_t
    if rho_t >= 5.0:
        r_t = np.float32(np.sqrt(((rho_t - 4.0) * (rho_t - 2.0)) / rho_t) *
                         np.float64(s.r_correction))
        if wide:
            corr = np.float32(s.correction)
            ng = r_t * corr * mi / sqrt_eps
            if not want_grad:
                return w + rate * r_t * corr * mi / sqrt_eps, None
            return w + rate * ng, ng
        if not want_grad:
            step = np.float64(rate * r_t) * s.correction * _f64(mi) / _f64(sqrt_eps)
            return (_f64(w) + step).astype(F32), None
        ng = (np.float64(r_t) * s.correction * _f64(mi) / _f64(sqrt_eps)).astype(F32)
        return w + rate * ng, ng
    if wide:
        b1c = np.float32(s.b1_correction)
        ng = b1c * mi
        return (w + rate * b1c * mi, None) if not want_grad else (w + rate * ng, ng)
    if not want_grad:
        return (_f64(w) + np.float64(rate) * s.b1_correction * _f64(mi)).astype(F32), None
    ng = (s.b1_correction * _f64(mi)).astype(F32)
    return w + rate * ng, ng


def _sparse_adam_kernel(ctx, args, op, m2_rows, rows_step, param, m1, m2, indices, grad,
                        lr, it):
    """SparseAdam and RowWiseSparseAdam: every check, then `rows_step` once per round
    of distinct rows (Caffe2's sequential loop, vectorized)."""
    xp = ctx.xp
    _sparse_adam_shape(op, args, *infos(param, m1, m2, indices, grad, lr, it),
                       m2_rows=m2_rows)
    w, a, b = (mutable(xp, x) for x in (param, m1, m2))
    block, n = sparse_rows(op, param, grad, indices, 3)
    idx = indices.reshape(-1)[:n].astype(np.int64)
    if n and block:
        check_bounds(xp, ctx, idx, param.shape[0], block, param.size, op, (0, 3))
    want_grad = ctx.num_outputs == 4
    out = xp.zeros(grad.shape, dtype=F32)
    if n and block:
        s, rate = _AdamScalars(args, it), lr_value(lr)
        rows = param.shape[0]
        W, A = w.reshape(rows, block), a.reshape(rows, block)
        B = b.reshape(-1) if m2_rows else b.reshape(rows, block)
        G, O = grad.reshape(n, block), out.reshape(n, block)
        with np.errstate(all="ignore"):
            for pos in occurrence_rounds(xp, idx):
                r = idx[pos]
                W[r], A[r], B[r], ng = rows_step(xp, s, args, rate, W[r], A[r], B[r],
                                                 G[pos], block, want_grad)
                if want_grad:
                    O[pos] = ng
    return (w, a, b, out) if want_grad else (w, a, b)


def _sparse_adam_rows(xp, s, args, rate, w, m, v, g, block, want_grad):
    mi, vi = s.moments(g, m, v)
    w, ng = _sparse_adam_step(xp, s, args, rate, w, mi, vi, block, want_grad)
    return w, mi, vi, ng


def _rowwise_adam_rows(xp, s, args, rate, w, m, v, g, block, want_grad):
    # Caffe2 summed the squares left to right in float (a cumulative sum).
    mean_sq = xp.cumsum(g * g, axis=1, dtype=F32)[:, -1] / np.float32(block)
    vi = v * s.b2 + mean_sq * s.one_b2
    mi = m * s.b1 + g * s.one_b1
    denom = _f64((xp.sqrt(vi) + s.eps)[:, None])
    if want_grad:
        ng = (s.correction * _f64(mi) / denom).astype(F32)
        return w + rate * ng, mi, vi, ng
    step = np.float64(rate) * s.correction * _f64(mi) / denom
    return (_f64(w) + step).astype(F32), mi, vi, None


@SPARSE_ADAM.kernel
def sparse_adam(ctx, args, param, m1, m2, indices, grad, lr, it):
    return _sparse_adam_kernel(ctx, args, "SparseAdam", False, _sparse_adam_rows, param,
                               m1, m2, indices, grad, lr, it)


@ROWWISE_SPARSE_ADAM.kernel
def rowwise_sparse_adam(ctx, args, param, m1, m2, indices, grad, lr, it):
    return _sparse_adam_kernel(ctx, args, "RowWiseSparseAdam", True, _rowwise_adam_rows,
                               param, m1, m2, indices, grad, lr, it)
