"""SigmoidCrossEntropyWithLogits (default, log_D_trick, unjoined_lr_loss modes) and its
weighted form, with gradient ops. Imports numpy, the registry, graphnet.errors and
ops.losses only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import Arg, OpSchema, enforce

from .losses import expect_loss_type, expect_shape_like, f32_info

_SCE_ARGS = [Arg("log_D_trick", "bool", False), Arg("unjoined_lr_loss", "bool", False)]


def _check_modes(args):
    """Caffe2's constructor check (the gradient op has none)."""
    if args.log_D_trick and args.unjoined_lr_loss:
        raise ArgumentError(
            "log_D_trick_ and unjoined_lr_loss_ cannot be set as True simultaneously. "
            "SigmoidCrossEntropyWithLogits: both arguments are set. Fix: pick one loss "
            "mode.")


SIGMOID_XENT = OpSchema(
    "SigmoidCrossEntropyWithLogits", inputs=2, outputs=1, args=_SCE_ARGS,
    arg_check=_check_modes,
    doc="Mean over the last dim of the stable binary cross-entropy with logits.")
SIGMOID_XENT_GRAD = OpSchema(
    "SigmoidCrossEntropyWithLogitsGradient", inputs=3, outputs=1, args=_SCE_ARGS,
    doc="dlogits from [dOut, logits, targets].")
W_SIGMOID_XENT = OpSchema(
    "WeightedSigmoidCrossEntropyWithLogits", inputs=3, outputs=1,
    doc="Like SigmoidCrossEntropyWithLogits with a per-element weight (default mode).")
W_SIGMOID_XENT_GRAD = OpSchema(
    "WeightedSigmoidCrossEntropyWithLogitsGradient", inputs=4, outputs=1,
    doc="dlogits from [dOut, logits, targets, weights].")


class _DEFAULT_MODE(object):
    """The weighted ops have no mode arguments: always the plain loss."""
    log_D_trick = unjoined_lr_loss = False


def _sce_inputs(op_type, logits, targets, base=0, weights=None):
    """Dtype and shape checks; returns the row length (inner) and row count."""
    expect_loss_type(op_type, "logits", logits, base)
    expect_loss_type(op_type, "targets", targets, base + 1)
    expect_shape_like(op_type, "logits.sizes() == targets.sizes()", "logits", logits,
                      "targets", targets, base + 1)
    if weights is not None:
        expect_loss_type(op_type, "weights", weights, base + 2)
        expect_shape_like(op_type, "weights.sizes() == targets.sizes()", "targets", targets,
                          "weights", weights, base + 2)
    inner = logits.shape[-1] if logits.ndim else 1
    if not (inner > 0):
        enforce(False,
                "%s: the last dimension of logits is 0, so the per-row mean divides by zero "
                "(Caffe2 crashed here). Fix: give logits at least one column." % op_type,
                input_index=base)
    return inner, logits.size // inner


def _softplus_tail(xp, x):
    """log(1 + exp(-|x|)), the part of log(1 + exp(x)) that never overflows."""
    return xp.log1p(xp.exp(-xp.abs(x)))


def _sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _sce_terms(xp, x, t, args):
    """The per-element value Caffe2 summed (the loss is -mean of it)."""
    pos = (x >= 0).astype(np.float32)
    if args.unjoined_lr_loss:
        return x * t + (t - 1) * x * pos - (1 - t) * _softplus_tail(xp, x)
    if args.log_D_trick:
        return (2 * t - 1) * (x - (x * pos + _softplus_tail(xp, x)))
    return x * (t - pos) - _softplus_tail(xp, x)


def _sce_slopes(xp, x, t, args):
    """d(term)/dx per element, for each mode."""
    if args.unjoined_lr_loss:
        return t - (1 - t) * _sigmoid(xp, x)
    if args.log_D_trick:
        return (2 * t - 1) * _sigmoid(xp, -x)
    return t - _sigmoid(xp, x)


def _row_mean_loss(terms, inner, logits):
    if logits.ndim == 0:
        return (-terms).astype(np.float32)
    return (-terms.sum(axis=-1) / np.float32(inner)).astype(np.float32)


def _sce_grad(op_type, ctx, g, logits, targets, weights, args):
    inner, outer = _sce_inputs(op_type, logits, targets, 1, weights)
    expect_loss_type(op_type, "dOut", g, 0)
    if g.size != outer:
        enforce(False,
                "g.numel() == outer_size. %s: the output gradient must hold one value per "
                "row of logits (%d), found shape %s. Fix: feed the gradient of the forward "
                "output (shape %s)." % (op_type, outer, list(g.shape),
                                        list(logits.shape[:-1])), input_index=0)
    factor = (-g.reshape(logits.shape[:-1] + (1,) if logits.ndim else ())
              / np.float32(inner))
    dx = factor * _sce_slopes(ctx.xp, logits, targets, args)
    if weights is not None:
        dx = dx * weights
    return dx.astype(np.float32)


@SIGMOID_XENT.kernel
def sigmoid_cross_entropy_with_logits(ctx, args, logits, targets):
    inner, _ = _sce_inputs("SigmoidCrossEntropyWithLogits", logits, targets)
    return _row_mean_loss(_sce_terms(ctx.xp, logits, targets, args), inner, logits)


@SIGMOID_XENT_GRAD.kernel
def sigmoid_cross_entropy_with_logits_gradient(ctx, args, g, logits, targets):
    # No both-modes check here (Caffe2 had none); unjoined_lr_loss wins, as there.
    return _sce_grad("SigmoidCrossEntropyWithLogitsGradient", ctx, g, logits, targets,
                     None, args)


@W_SIGMOID_XENT.kernel
def weighted_sigmoid_cross_entropy_with_logits(ctx, args, logits, targets, weights):
    op_type = "WeightedSigmoidCrossEntropyWithLogits"
    inner, _ = _sce_inputs(op_type, logits, targets, 0, weights)
    terms = _sce_terms(ctx.xp, logits, targets, _DEFAULT_MODE) * weights
    return _row_mean_loss(terms, inner, logits)


@W_SIGMOID_XENT_GRAD.kernel
def weighted_sigmoid_cross_entropy_with_logits_gradient(ctx, args, g, logits, targets,
                                                        weights):
    return _sce_grad("WeightedSigmoidCrossEntropyWithLogitsGradient", ctx, g, logits,
                     targets, weights, _DEFAULT_MODE)


def _row_shape(args, logits, *rest):
    return [f32_info(tuple(logits.shape)[:-1])]


SIGMOID_XENT.shape(_row_shape)
W_SIGMOID_XENT.shape(_row_shape)
SIGMOID_XENT_GRAD.shape(lambda args, g, logits, targets: [f32_info(logits.shape)])
W_SIGMOID_XENT_GRAD.shape(lambda args, g, logits, *rest: [f32_info(logits.shape)])


@SIGMOID_XENT.gradient
def _(g):
    return [g.op("SigmoidCrossEntropyWithLogitsGradient", [g.GO(0), g.I(0), g.I(1)],
                 [g.GI(0)])]


@W_SIGMOID_XENT.gradient
def _(g):
    return [g.op("WeightedSigmoidCrossEntropyWithLogitsGradient",
                 [g.GO(0), g.I(0), g.I(1), g.I(2)], [g.GI(0)])]
