"""MomentumSGD, MomentumSGDUpdate and SparseMomentumSGDUpdate, plain or Nesterov
(SHOULD_NOT_DO_GRADIENT). Imports numpy, the registry, ops._common and ops._optimizer.
"""

import numpy as np

from graphnet.registry import Arg, OpSchema, TensorInfo, enforce

from ._common import F32, infos, numel, occurrence_rounds
from ._optimizer import (as_float32, check_block, check_bounds, check_eq, check_index_type,
                         check_lr, check_updatable, lr_value, mutable, require,
                         sparse_rows)

# --- MomentumSGD family ----------------------------------------------------------------

_MOMENTUM_ARGS = [Arg("momentum", "float", 0.0), Arg("nesterov", "bool", False)]


def _momentum_step(args, rate, g, m):
    """(new grad, new moment) of Caffe2's momentum_sgd_update, in float32."""
    mu = np.float32(args.momentum)
    if not args.nesterov:
        adjusted = rate * g + mu * m
        return adjusted, adjusted.copy()
    m_new = mu * m + rate * g
    return (np.float32(1) + mu) * m_new - mu * m, m_new


def _momentum_shape(op, grad, moment, lr):
    check_updatable(grad, op, "grad", 0)
    check_updatable(moment, op, "moment", 1)
    check_lr(lr, op, 2)
    check_eq(numel(grad.shape), numel(moment.shape),
             "Input(GRAD).numel() == Input(MOMENTUM).numel()", op,
             "grad %s, moment %s" % (list(grad.shape), list(moment.shape)),
             "give moment as many elements as grad", 1)


MOMENTUM_SGD = OpSchema(
    "MomentumSGD", inputs=3, outputs=2, allow_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="(grad, moment, lr) -> (adjusted grad, new moment); no parameter update.")


@MOMENTUM_SGD.shape
def _momentum_sgd_shape(args, grad, moment, lr):
    _momentum_shape("MomentumSGD", grad, moment, lr)
    return [TensorInfo(grad.shape, F32), TensorInfo(moment.shape, F32)]


@MOMENTUM_SGD.kernel
def momentum_sgd(ctx, args, grad, moment, lr):
    xp, op = ctx.xp, "MomentumSGD"
    _momentum_sgd_shape(args, *infos(grad, moment, lr))
    g = as_float32(xp, grad, op, "grad", 0, ctx.inplace(0, 0))
    m = as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1))
    with np.errstate(all="ignore"):
        ng, nm = _momentum_step(args, lr_value(lr), g.reshape(-1), m.reshape(-1))
    return ng.reshape(grad.shape), nm.reshape(moment.shape)


MOMENTUM_SGD_UPDATE = OpSchema(
    "MomentumSGDUpdate", inputs=4, outputs=3, allow_inplace={(0, 0), (1, 1), (3, 2)},
    should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="(grad, moment, lr, param) -> (adjusted grad, new moment, param - adjusted "
        "grad); the param output must be the param input.")


@MOMENTUM_SGD_UPDATE.shape
def _momentum_sgd_update_shape(args, grad, moment, lr, param):
    op = "MomentumSGDUpdate"
    _momentum_shape(op, grad, moment, lr)
    check_updatable(param, op, "param", 3)
    check_eq(numel(param.shape), numel(grad.shape), "Input(PARAM).numel() == "
             "Input(GRAD).numel()", op, "param %s, grad %s" % (list(param.shape),
                                                               list(grad.shape)),
             "feed the gradient of this param", 3)
    return [TensorInfo(grad.shape, F32), TensorInfo(moment.shape, F32),
            TensorInfo(param.shape, F32)]


@MOMENTUM_SGD_UPDATE.kernel
def momentum_sgd_update(ctx, args, grad, moment, lr, param):
    xp, op = ctx.xp, "MomentumSGDUpdate"
    _momentum_sgd_update_shape(args, *infos(grad, moment, lr, param))
    # Caffe2 subtracted from the output buffer without sizing it: only in place works.
    if not (ctx.inplace(3, 2)):
        enforce(False,
                "%s updates param in place: expected output 2 to be input 3 ('%s'), found "
                "'%s'. Fix: name the param blob as output 2." % (op, ctx.input_names[3],
                                                                 ctx.output_names[2]),
                input_index=3)
    g = as_float32(xp, grad, op, "grad", 0, ctx.inplace(0, 0))
    m = as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1))
    w = as_float32(xp, param, op, "param", 3, True)
    with np.errstate(all="ignore"):
        ng, nm = _momentum_step(args, lr_value(lr), g.reshape(-1), m.reshape(-1))
        nw = w.reshape(-1) - ng
    return ng.reshape(grad.shape), nm.reshape(moment.shape), nw.reshape(param.shape)


SPARSE_MOMENTUM_SGD_UPDATE = OpSchema(
    "SparseMomentumSGDUpdate", inputs=5, outputs=3, allow_inplace={(0, 0)},
    enforce_inplace={(1, 1), (3, 2)}, should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="MomentumSGDUpdate on the rows param[indices[i]], in index order; inputs grad, "
        "moment, lr, param, indices; moment and param in place.")


@SPARSE_MOMENTUM_SGD_UPDATE.shape
def _sparse_momentum_shape(args, grad, moment, lr, param, indices):
    op = "SparseMomentumSGDUpdate"
    check_lr(lr, op, 2)
    check_eq(numel(param.shape), numel(moment.shape), "Input(PARAM).numel() == "
             "Input(MOMENTUM).numel()", op, "param %s, moment %s"
             % (list(param.shape), list(moment.shape)), "give moment the shape of param",
             1)
    check_block(param, grad, indices, op, 0)
    check_index_type(indices, op, 4)
    require(grad, F32, op, "grad", 0)
    require(moment, F32, op, "moment", 1)
    check_updatable(param, op, "param", 3)
    sparse_rows(op, param, grad, indices, 4)
    return [TensorInfo(grad.shape, F32), TensorInfo(moment.shape, F32),
            TensorInfo(param.shape, F32)]


@SPARSE_MOMENTUM_SGD_UPDATE.kernel
def sparse_momentum_sgd_update(ctx, args, grad, moment, lr, param, indices):
    xp, op = ctx.xp, "SparseMomentumSGDUpdate"
    _sparse_momentum_shape(args, *infos(grad, moment, lr, param, indices))
    w = mutable(xp, as_float32(xp, param, op, "param", 3, True))
    m = mutable(xp, moment)
    block, n = sparse_rows(op, param, grad, indices, 4)
    out = xp.array(grad, dtype=F32, copy=True)
    if n == 0:
        return out, m, w
    rows = param.shape[0]
    idx = indices.reshape(-1)[:n].astype(np.int64)
    check_bounds(xp, ctx, idx, rows, block, w.size, op, (3, 4))
    W, M = w.reshape(rows, block), m.reshape(rows, block)
    G, O = grad.reshape(n, block), out.reshape(n, block)
    rate = lr_value(lr)
    with np.errstate(all="ignore"):
        for pos in occurrence_rounds(xp, idx):
            r = idx[pos]
            ng, nm = _momentum_step(args, rate, G[pos], M[r])
            M[r] = nm
            O[pos] = ng
            W[r] = W[r] - ng
    return out, m, w
