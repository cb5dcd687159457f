"""SoftmaxWithLoss with SoftmaxWithLossGradient, and Accuracy (top-k, no gradient).
Imports numpy, the registry, graphnet.errors, ops._common and ops.losses only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import INF, Arg, EnforceError, OpSchema, enforce

from ._common import I32, canonical_axis, size_from_dim, size_to_dim
from .losses import (LOG_THRESHOLD, expect_loss_type, f32_info, f32_scalar, first_value,
                     value_range)

# --- SoftmaxWithLoss ------------------------------------------------------------------

_SWL_ARGS = [Arg("label_prob", "int", 0), Arg("axis", "int", 1), Arg("scale", "float", 1.0),
             Arg("average_by_batch_size", "int", 0), Arg("order", "string", "NCHW")]


def _swl_arg_check(op_type):
    """Caffe2's constructor checks, of the forward and the gradient op alike."""
    def check(args):
        if not args.scale >= 0:
            raise ArgumentError("scale_ >= 0. %s: scale must be >= 0, found %r. Fix: pass "
                                "a non-negative scale." % (op_type, args.scale))
        if args.order != "NCHW":
            raise ArgumentError("Only NCHW order is supported right now. %s: found order "
                                "%r. Fix: drop the order argument or pass order='NCHW'."
                                % (op_type, args.order))
    return check


SOFTMAX_WITH_LOSS = OpSchema(
    "SoftmaxWithLoss", inputs=(2, 3), outputs=(0, INF), args=_SWL_ARGS,
    output_check=lambda n: n in (2, 3), arg_check=_swl_arg_check("SoftmaxWithLoss"),
    doc="[logits, labels, (weight)] -> [softmax, 0-d average loss]; a third output is "
        "allowed and left unwritten, as in Caffe2.")
SOFTMAX_WITH_LOSS_GRAD = OpSchema(
    "SoftmaxWithLossGradient", inputs=(0, INF), outputs=1,
    args=_SWL_ARGS + [Arg("only_loss", "bool", False)],
    arg_check=_swl_arg_check("SoftmaxWithLossGradient"),
    doc="[X, labels, (weight), P, d_avg_loss] -> dX (Caffe2 put no bound on inputs).")


def _swl_setup(op_type, x, args):
    """(canonical axis, N, D): the logits as N rows of D classes around the axis."""
    expect_loss_type(op_type, "X (logits)", x, 0)
    axis = args.axis + x.ndim if -x.ndim <= args.axis < 0 else args.axis
    if not 0 <= axis < x.ndim:
        canonical_axis(args.axis, x.ndim, "%s: axis %d is out of range for logits of "
                       "shape %s (valid: [%d, %d)). Fix: pass an axis inside that range."
                       % (op_type, args.axis, list(x.shape), -x.ndim, x.ndim), 0)
    return axis, size_to_dim(x.shape, axis), size_from_dim(x.shape, axis)


def _split_dims(op_type, t, axis, index=1):
    if not (axis <= t.ndim):
        enforce(False,
                "Expected (unsigned)k <= dims.size() to be true, but got false. %s: labels "
                "of shape %s have fewer than axis=%d dimensions. Fix: shape labels like the "
                "logits up to the axis." % (op_type, list(t.shape), axis), input_index=index)
    return size_to_dim(t.shape, axis), size_from_dim(t.shape, axis)


def _swl_labels(op_type, t, axis, n, d, prob):
    """Label checks of SoftmaxWithLoss(Gradient); returns labels as (N,) or (N, D)."""
    if prob:
        expect_loss_type(op_type, "labels (probabilities)", t, 1)
        if not (t.ndim >= 2):
            enforce(False, "T.dim() >= 2. %d vs 2. %s: with label_prob=1 the labels "
                    "are probabilities shaped like the logits, found shape %s. Fix: feed "
                    "an (N, D) float32 tensor." % (t.ndim, op_type, list(t.shape)),
                    input_index=1)
        rows, cols = _split_dims(op_type, t, axis)
        if (rows, cols) != (n, d):
            enforce(False,
                    "T.size_to_dim(canonical_axis) == N && T.size_from_dim(canonical_axis) "
                    "== D. %s: expected label probabilities of %d rows x %d classes, found "
                    "%d x %d (shape %s). Fix: shape them like the logits."
                    % (op_type, n, d, rows, cols, list(t.shape)), input_index=1)
        return t.reshape(n, d)
    expect_loss_type(op_type, "labels", t, 1, I32)
    if t.ndim == axis:
        if t.size != n:
            enforce(False, "T.numel() == N. %d vs %d. %s: expected one label per row "
                    "(N=%d), found %d. Fix: feed N int32 labels."
                    % (t.size, n, op_type, n, t.size), input_index=1)
    else:
        rows, cols = _split_dims(op_type, t, axis)
        if not (rows == n and cols == 1):
            enforce(False,
                    "T.size_to_dim(canonical_axis) == N && T.size_from_dim(canonical_axis) "
                    "== 1. %s: expected labels shaped (N,) or (N, 1) with N=%d, found shape "
                    "%s. Fix: one int32 class index per row." % (op_type, n, list(t.shape)),
                    input_index=1)
    t = t.reshape(n)
    bad = (t < 0) | (t >= d)
    if bool(bad.any()):
        first = int(t[bad][0])
        raise EnforceError(
            "Label seems incorrect: label value larger than number of classes: %d vs %d. "
            "%s: labels must lie in [0, %d). Fix: check the labels or the axis."
            % (first, d, op_type, d), input_index=1)
    return t


def _check_label_probs(xp, t):
    """Row by row, as Caffe2 did: negative entries first, then the row sum."""
    neg_rows = (t < 0).any(axis=1)
    sums = t.sum(axis=1, dtype=np.float32)
    bad = neg_rows | (abs(sums - 1.0) >= np.float32(1e-5))
    if not bool(bad.any()):
        return
    row = int(xp.argmax(bad))  # the first bad row
    if bool(neg_rows[row]):
        raise EnforceError("Label prob seems incorrect: label prob value must be "
                           "nonnegative: %g (row %d). Fix: labels must be probabilities."
                           % (float(t[row][t[row] < 0][0]), row), input_index=1)
    raise EnforceError("Label prob seems incorrect: label prob values do not sum to 1.0: "
                       "%g vs 1.0 (+/- 1e-5) (row %d). Fix: normalize each label row."
                       % (float(sums[row]), row), input_index=1)


def _swl_weights(op_type, w, n, index=2):
    expect_loss_type(op_type, "weight", w, index)
    # Caffe2 read the first N weights; fewer was an out-of-bounds read.
    if not (w.size >= n):
        enforce(False, "%s: the weight input needs one value per row (N=%d), found "
                "shape %s. Fix: feed N float32 weights." % (op_type, n, list(w.shape)),
                input_index=index)
    return w.reshape(-1)[:n]


@SOFTMAX_WITH_LOSS.shape
def _(args, x, *rest):
    return [f32_info(x.shape), f32_info(())]


@SOFTMAX_WITH_LOSS.kernel
def softmax_with_loss(ctx, args, x, t, w=None):
    xp, op_type = ctx.xp, "SoftmaxWithLoss"
    axis, n, d = _swl_setup(op_type, x, args)
    prob = bool(args.label_prob)
    t = _swl_labels(op_type, t, axis, n, d, prob)
    w = None if w is None else _swl_weights(op_type, w, n)
    x2 = x.reshape(n, d)
    shifted = x2 - (x2.max(axis=1, keepdims=True) if n and d else 0)
    if prob:
        _check_label_probs(xp, t)
        e = xp.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        losses = -(xp.log(xp.maximum(p, np.float32(LOG_THRESHOLD))) * t).sum(axis=1)
    else:
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        losses = -log_p[xp.arange(n), t]
        p = xp.exp(log_p)
    if w is not None:
        losses = losses * w
    weight_sum = float(w.sum(dtype=np.float32)) if w is not None else float(n)
    loss_sum = losses.sum(dtype=np.float32)
    if weight_sum != 0.0:
        denominator = n if args.average_by_batch_size else weight_sum
        loss = loss_sum * np.float32(args.scale) / np.float32(denominator)
    else:
        loss = 0.0
    outs = (p.reshape(x.shape).astype(np.float32), f32_scalar(xp, loss))
    return outs + (None,) * (ctx.num_outputs - 2)


@SOFTMAX_WITH_LOSS_GRAD.shape
def _(args, x, *rest):
    return [f32_info(x.shape)]


@SOFTMAX_WITH_LOSS_GRAD.kernel
def softmax_with_loss_gradient(ctx, args, *inputs):
    xp, op_type = ctx.xp, "SoftmaxWithLossGradient"
    if len(inputs) not in (4, 5):
        enforce(False,
                "%s expects [X, labels, (weight), P, d_avg_loss]: 4 or 5 inputs, found %d. "
                "Fix: let the gradient maker of SoftmaxWithLoss build this op."
                % (op_type, len(inputs)))
    x, t, p, dl = inputs[0], inputs[1], inputs[-2], inputs[-1]
    axis, n, d = _swl_setup(op_type, x, args)
    prob = bool(args.label_prob)
    t = _swl_labels(op_type, t, axis, n, d, prob)
    w = _swl_weights(op_type, inputs[2], n) if len(inputs) == 5 else None
    p_index = len(inputs) - 2
    expect_loss_type(op_type, "P (softmax)", p, p_index)
    if p.shape != x.shape:
        enforce(False, "%s: P must be the forward softmax output, shaped like X "
                "%s, found %s. Fix: pass SoftmaxWithLoss's first output."
                % (op_type, list(x.shape), list(p.shape)), input_index=p_index)
    dl = first_value(op_type, "d_avg_loss", dl, len(inputs) - 1)
    dx = p.reshape(n, d).copy()
    if prob:
        dx = dx - t
    else:
        dx[xp.arange(n), t] -= np.float32(1.0)
    if w is not None:
        dx = dx * w.reshape(n, 1)
        total = float(w.sum(dtype=np.float32))
    else:
        total = float(n)
    if total > 0:  # Caffe2 left dX unscaled when the weights summed to <= 0
        denominator = n if args.average_by_batch_size else total
        dx = dx * (np.float32(args.scale) / np.float32(denominator) * dl)
    return dx.reshape(x.shape).astype(np.float32)


def _need_go(g, k):
    """C++ GO(k) refuses an output that has no gradient."""
    if not g.has_GO(k):
        raise EnforceError("g_output_.at(i).IsDense(). Gradient of output %s is not "
                           "provided! (%s needs the gradient of output %d)"
                           % (g.O(k), g.def_.type, k))
    return g.GO(k)


@SOFTMAX_WITH_LOSS.gradient
def _(g):
    inputs = [g.I(0), g.I(1), g.O(0), _need_go(g, 1)]
    if len(g.def_.input) == 3:
        inputs.insert(2, g.I(2))
    return [g.op("SoftmaxWithLossGradient", inputs, [g.GI(0)])]


# --- Accuracy -----------------------------------------------------------------------

ACCURACY = OpSchema("Accuracy", inputs=2, outputs=1, args=[Arg("top_k", "int", 1)],
                    should_not_do_gradient=True,
                    doc="0-d fraction of rows whose label is among the top_k scores "
                        "(ties go to the lower class index).")
ACCURACY.shape(lambda args, x, label: [f32_info(())])


@ACCURACY.kernel
def accuracy(ctx, args, x, label):
    xp, op_type = ctx.xp, "Accuracy"
    expect_loss_type(op_type, "predictions", x, 0)
    expect_loss_type(op_type, "labels", label, 1, I32)
    if x.ndim != 2:
        enforce(False, "X.dim() == 2. %d vs 2. Accuracy: predictions must be (N, D), "
                "found shape %s. Fix: reshape the scores to 2-D." % (x.ndim, list(x.shape)),
                input_index=0)
    n, d = x.shape
    if label.ndim != 1:
        enforce(False, "label.dim() == 1. %d vs 1. Accuracy: labels must be 1-D, "
                "found shape %s. Fix: flatten them to (N,)." % (label.ndim, list(label.shape)),
                input_index=1)
    if label.shape[0] != n:
        enforce(False, "label.dim32(0) == N. %d vs %d. Accuracy: expected one "
                "label per row of predictions." % (label.shape[0], n), input_index=1)
    if bool(((label < 0) | (label >= d)).any()):
        raise EnforceError(
            "Accuracy: labels must lie in [0, %d), found values from %s to %s (Caffe2 "
            "read out of bounds). Fix: check the labels." % ((d,) + value_range(label)),
            input_index=1)
    if n == 0:
        return f32_scalar(xp, np.nan)  # Caffe2 computed 0 / 0
    target = x[xp.arange(n), label][:, None]
    before = (x > target) | ((x == target) & (xp.arange(d)[None, :] < label[:, None]))
    correct = int((before.sum(axis=1) < args.top_k).sum())
    return f32_scalar(xp, np.float32(correct) / np.float32(n))
