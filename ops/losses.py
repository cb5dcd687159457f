"""Loss family: SquaredL2Distance, AveragedLoss, MakeTwoClass, LabelCrossEntropy,
CrossEntropy, (Weighted)SigmoidCrossEntropyWithLogits, SoftmaxWithLoss, Accuracy,
and the gradient ops of all but Accuracy.

Caffe2 ran every one of them on float32 only (labels int32), CPU and CUDA alike;
other dtypes fail with its "Tensor type mismatch" text. Where Caffe2 read out of
bounds (labels out of range, short weights, a wrong P) we raise instead. Imports
the registry and numpy only.
"""

import numpy as np

from graphnet.registry import INF, Arg, EnforceError, OpSchema, TensorInfo, enforce

_F32 = np.dtype(np.float32)
_I32 = np.dtype(np.int32)
_LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD: log() never sees less than this

_CPP_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
              "int32": "int", "int64": "long int", "bool": "bool", "int8": "signed char",
              "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
              "object": "std::string"}


def _cpp(dtype):
    return _CPP_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


def _typed(op_type, what, x, index, expected=_F32):
    """Caffe2's fixed-type read (`X.data<float>()`)."""
    enforce(x.dtype == expected,
            "Tensor type mismatch, caller expects elements to be %s, while tensor "
            "contains %s. %s expects %s (input %d) as %s, found %s. Fix: cast it, e.g. "
            "x.astype(np.%s)." % (_cpp(expected), _cpp(x.dtype), op_type, what, index,
                                  expected.name, x.dtype.name, expected.name),
            input_index=index)


def _same_shape(op_type, cond, a_name, a, b_name, b, index):
    enforce(a.shape == b.shape,
            "%s. %s: %s and %s must have identical shapes: expected %s, found %s. Fix: "
            "feed %s shaped like %s." % (cond, op_type, a_name, b_name, list(a.shape),
                                         list(b.shape), b_name, a_name),
            input_index=index)


def _f32_scalar(xp, value):
    return xp.asarray(value, dtype=np.float32).reshape(())


def _prod(dims):
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def _first_value(op_type, what, x, index):
    """Caffe2 read element 0 of a gradient scalar (a DCHECK guarded its size)."""
    _typed(op_type, what, x, index)
    enforce(x.size == 1,
            "%s: %s must hold exactly one value (the loss gradient), found shape %s. "
            "Fix: feed a scalar or a 1-element tensor." % (op_type, what, list(x.shape)),
            input_index=index)
    return x.reshape(())


def _need_go(g, k):
    """C++ GO(k) refuses an output that has no gradient."""
    if not g.has_GO(k):
        raise EnforceError("g_output_.at(i).IsDense(). Gradient of output %s is not "
                           "provided! (%s needs the gradient of output %d)"
                           % (g.O(k), g.def_.type, k))
    return g.GO(k)


def _f32_info(shape):
    return TensorInfo(shape, _F32)


# --- SquaredL2Distance ------------------------------------------------------------

SQUARED_L2 = OpSchema("SquaredL2Distance", inputs=2, outputs=1,
                      doc="Z[i] = 0.5 * ||X_i - Y_i||^2 over each row (N = X.shape[0]).")
SQUARED_L2_GRAD = OpSchema("SquaredL2DistanceGradient", inputs=3, outputs=2,
                           doc="dX = (X - Y) * dZ[i] per row, dY = -dX.")


def _l2_rows(op_type, x, y):
    _typed(op_type, "X", x, 0)
    _typed(op_type, "Y", y, 1)
    enforce(x.ndim == y.ndim,
            "X.dim() == Y.dim(). %d vs %d. %s: X and Y must have identical shapes, found "
            "%s and %s. Fix: reshape Y like X." % (x.ndim, y.ndim, op_type, list(x.shape),
                                                  list(y.shape)), input_index=1)
    _same_shape(op_type, "X.dim32(i) == Y.dim32(i)", "X", x, "Y", y, 1)
    n = x.shape[0] if x.ndim > 0 else 1
    return n, (x.size // n if n > 0 else 0)


@SQUARED_L2.shape
def _(args, x, y):
    return [_f32_info((x.shape[0] if len(x.shape) else 1,))]


@SQUARED_L2.kernel
def squared_l2_distance(ctx, args, x, y):
    n, d = _l2_rows("SquaredL2Distance", x, y)
    diff = (x - y).reshape(n, d)
    return (0.5 * (diff * diff).sum(axis=1)).astype(np.float32)


@SQUARED_L2_GRAD.shape
def _(args, x, y, dz):
    return [_f32_info(x.shape), _f32_info(y.shape)]


@SQUARED_L2_GRAD.kernel
def squared_l2_distance_gradient(ctx, args, x, y, dz):
    op_type = "SquaredL2DistanceGradient"
    n, d = _l2_rows(op_type, x, y)
    _typed(op_type, "dDistance", dz, 2)
    enforce(dz.ndim == 1 and dz.shape[0] == n,
            "dDistance.dim() == 1 && dDistance.dim32(0) == N. %s: dDistance must be 1-D "
            "of length N=%d (one value per row of X), found shape %s. Fix: feed the "
            "gradient of SquaredL2Distance's output." % (op_type, n, list(dz.shape)),
            input_index=2)
    dx = ((x - y).reshape(n, d) * dz.reshape(n, 1)).reshape(x.shape)
    return dx, -dx


@SQUARED_L2.gradient
def _(g):
    return [g.op("SquaredL2DistanceGradient", [g.I(0), g.I(1), g.GO(0)],
                 [g.GI(0), g.GI(1)])]


# --- AveragedLoss ---------------------------------------------------------------------

AVERAGED_LOSS = OpSchema("AveragedLoss", inputs=1, outputs=1,
                         doc="0-d mean of all elements of X (0 for an empty X).")
AVERAGED_LOSS_GRAD = OpSchema("AveragedLossGradient", inputs=2, outputs=1,
                              doc="dX = dLoss / X.size everywhere.")
AVERAGED_LOSS.shape(lambda args, x: [_f32_info(())])
AVERAGED_LOSS_GRAD.shape(lambda args, x, dl: [_f32_info(x.shape)])


@AVERAGED_LOSS.kernel
def averaged_loss(ctx, args, x):
    _typed("AveragedLoss", "X", x, 0)
    total = x.sum(dtype=np.float32)
    if x.size:  # Caffe2 scaled the sum by the float 1 / numel
        total = total * (np.float32(1.0) / np.float32(x.size))
    return _f32_scalar(ctx.xp, total)


@AVERAGED_LOSS_GRAD.kernel
def averaged_loss_gradient(ctx, args, x, dl):
    _typed("AveragedLossGradient", "X", x, 0)
    dl = _first_value("AveragedLossGradient", "dLoss", dl, 1)
    # Caffe2 scaled in double (1.0 / X.size()) and stored the float result.
    value = float(dl) * (1.0 / x.size if x.size else 0.0)
    return ctx.xp.full(x.shape, value, dtype=np.float32)


@AVERAGED_LOSS.gradient
def _(g):
    return [g.op("AveragedLossGradient", [g.I(0), g.GO(0)], [g.GI(0)])]


# --- MakeTwoClass ------------------------------------------------------------------

MAKE_TWO_CLASS = OpSchema("MakeTwoClass", inputs=1, outputs=1,
                          doc="Y[..., 0] = 1 - X, Y[..., 1] = X; Y.shape = X.shape + (2,).")
MAKE_TWO_CLASS_GRAD = OpSchema("MakeTwoClassGradient", inputs=1, outputs=1,
                               doc="dX = dY[..., 1] - dY[..., 0].")
MAKE_TWO_CLASS.shape(lambda args, x: [_f32_info(tuple(x.shape) + (2,))])
MAKE_TWO_CLASS_GRAD.shape(lambda args, dy: [_f32_info(tuple(dy.shape)[:-1])])


@MAKE_TWO_CLASS.kernel
def make_two_class(ctx, args, x):
    _typed("MakeTwoClass", "X", x, 0)
    return ctx.xp.stack([1 - x, x], axis=-1).astype(np.float32)


@MAKE_TWO_CLASS_GRAD.kernel
def make_two_class_gradient(ctx, args, dy):
    _typed("MakeTwoClassGradient", "dY", dy, 0)
    enforce(dy.ndim >= 1 and dy.shape[-1] == 2,
            "shape.back() == 2. MakeTwoClassGradient: dY must end in a dimension of 2 "
            "(one column per class), found shape %s. Fix: feed the gradient of "
            "MakeTwoClass's output." % (list(dy.shape),), input_index=0)
    return dy[..., 1] - dy[..., 0]


@MAKE_TWO_CLASS.gradient
def _(g):
    return [g.op("MakeTwoClassGradient", [g.GO(0)], [g.GI(0)])]


# --- LabelCrossEntropy and CrossEntropy -------------------------------------------------

LABEL_XENT = OpSchema("LabelCrossEntropy", inputs=2, outputs=1,
                      doc="Y[i] = -log(max(X[i, label[i]], 1e-20)); label int32.")
LABEL_XENT_GRAD = OpSchema("LabelCrossEntropyGradient", inputs=3, outputs=1,
                           doc="dX[i, label[i]] = -dY[i] / max(X[i, label[i]], 1e-20).")
XENT = OpSchema("CrossEntropy", inputs=2, outputs=1,
                doc="Y[i] = -sum_j label[i, j] * log(max(X[i, j], 1e-20)); soft labels.")
XENT_GRAD = OpSchema("CrossEntropyGradient", inputs=3, outputs=1,
                     doc="dX = -dY[i] * label / max(X, 1e-20).")


def _rows(x):
    """Caffe2's (N, D): X.dim() > 1 -> (dim 0, the rest); 1-D -> (1, dim 0)."""
    if x.ndim > 1:
        return x.shape[0], _prod(x.shape[1:])
    return 1, (x.shape[0] if x.ndim == 1 else 0)  # a 0-d X gives D = 0 (no label fits)


def _int_labels(op_type, x, label):
    """Checks of LabelCrossEntropy(Gradient): returns (N, D, label as 1-D)."""
    _typed(op_type, "X", x, 0)
    _typed(op_type, "label", label, 1, _I32)
    n, d = _rows(x)
    enforce(label.ndim == 1 or (label.ndim == 2 and label.shape[1] == 1),
            "(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == 1). %s: label "
            "must be 1-D or (N, 1), found shape %s. Fix: one int32 class index per row."
            % (op_type, list(label.shape)), input_index=1)
    enforce(label.shape[0] == n,
            "label.dim32(0) == N. %d vs %d. %s: expected one label per row of X (N=%d, X "
            "shape %s), found %d. Fix: feed labels of the same batch size."
            % (label.shape[0], n, op_type, n, list(x.shape), label.shape[0]),
            input_index=1)
    label = label.reshape(-1)
    if bool(((label < 0) | (label >= d)).any()):
        raise EnforceError(
            "Label seems to be outside of supported range. Supported labels are in range "
            "[0,%d). %s: found labels from %s to %s. Fix: labels must index the %d "
            "columns of X." % ((d, op_type) + _minmax(label) + (d,)), input_index=1)
    return n, d, label


def _minmax(values, kind=int):
    return (kind(values.min()), kind(values.max())) if values.size else (None, None)


def _grad_rows(op_type, dy, n, index=2):
    _typed(op_type, "dY", dy, index)
    enforce(dy.ndim == 1 and dy.shape[0] == n,
            "dY.dim() == 1 && dY.dim32(0) == N. %s: dY must be 1-D of length N=%d, found "
            "shape %s. Fix: feed the gradient of the forward output Y (shape (N,))."
            % (op_type, n, list(dy.shape)), input_index=index)


@LABEL_XENT.shape
def _(args, x, label):
    return [_f32_info((x.shape[0] if len(x.shape) > 1 else 1,))]


@LABEL_XENT.kernel
def label_cross_entropy(ctx, args, x, label):
    n, d, label = _int_labels("LabelCrossEntropy", x, label)
    picked = x.reshape(n, d)[ctx.xp.arange(n), label]
    return -ctx.xp.log(ctx.xp.maximum(picked, np.float32(_LOG_THRESHOLD)))


@LABEL_XENT_GRAD.shape
def _(args, x, label, dy):
    return [_f32_info(x.shape)]


@LABEL_XENT_GRAD.kernel
def label_cross_entropy_gradient(ctx, args, x, label, dy):
    xp = ctx.xp
    n, d, label = _int_labels("LabelCrossEntropyGradient", x, label)
    _grad_rows("LabelCrossEntropyGradient", dy, n)
    rows = xp.arange(n)
    x2 = x.reshape(n, d)
    dx = xp.zeros((n, d), dtype=np.float32)
    dx[rows, label] = -dy / xp.maximum(x2[rows, label], np.float32(_LOG_THRESHOLD))
    return dx.reshape(x.shape)


def _soft_labels(op_type, x, label):
    _typed(op_type, "X", x, 0)
    _typed(op_type, "label", label, 1)
    n, d = _rows(x)
    enforce(label.ndim == 1 or (label.ndim == 2 and label.shape[1] == d),
            "(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == D). %s: label "
            "must be (N, D) = (%d, %d) probabilities, found shape %s. Fix: one "
            "probability row per row of X." % (op_type, n, d, list(label.shape)),
            input_index=1)
    enforce(label.shape[0] == n,
            "label.dim32(0) == N. %d vs %d. %s: expected %d label rows (X shape %s), "
            "found %d. Fix: feed labels of the same batch size."
            % (label.shape[0], n, op_type, n, list(x.shape), label.shape[0]),
            input_index=1)
    # Caffe2 read N*D values even from a 1-D label; only D == 1 made that valid.
    enforce(label.size == n * d,
            "%s: a 1-D label holds %d values but X needs N*D = %d (Caffe2 read past its "
            "end). Fix: feed label shaped (N, D) = (%d, %d)."
            % (op_type, label.size, n * d, n, d), input_index=1)
    return n, d, label.reshape(n, d)


@XENT.shape
def _(args, x, label):
    return [_f32_info((x.shape[0] if len(x.shape) > 1 else 1,))]


@XENT.kernel
def cross_entropy(ctx, args, x, label):
    xp = ctx.xp
    n, d, label = _soft_labels("CrossEntropy", x, label)
    if bool(((label > 1) | (label < 0)).any()):
        raise EnforceError(
            "Soft label seems incorrect: label value should be a probability between 0 "
            "and 1.0. You may be using the wrong cross entropy operator; use "
            "LabelCrossEntropy if the labels are integers whose values are at most the "
            "number of classes, %d. Found values in [%s, %s]."
            % ((d,) + _minmax(label, float)), input_index=1)
    logs = xp.log(xp.maximum(x.reshape(n, d), np.float32(_LOG_THRESHOLD)))
    return -(label * logs).sum(axis=1, dtype=np.float32)


@XENT_GRAD.shape
def _(args, x, label, dy):
    return [_f32_info(x.shape)]


@XENT_GRAD.kernel
def cross_entropy_gradient(ctx, args, x, label, dy):
    n, d, label = _soft_labels("CrossEntropyGradient", x, label)
    _grad_rows("CrossEntropyGradient", dy, n)
    dx = label / ctx.xp.maximum(x.reshape(n, d), np.float32(_LOG_THRESHOLD))
    return (dx * -dy.reshape(n, 1)).reshape(x.shape)


@LABEL_XENT.gradient
def _(g):
    return [g.op("LabelCrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


@XENT.gradient
def _(g):
    return [g.op("CrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


# --- SigmoidCrossEntropyWithLogits (plain and weighted) --------------------------------

_SCE_ARGS = [Arg("log_D_trick", "bool", False), Arg("unjoined_lr_loss", "bool", False)]
SIGMOID_XENT = OpSchema(
    "SigmoidCrossEntropyWithLogits", inputs=2, outputs=1, args=_SCE_ARGS,
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
    _typed(op_type, "logits", logits, base)
    _typed(op_type, "targets", targets, base + 1)
    _same_shape(op_type, "logits.sizes() == targets.sizes()", "logits", logits,
                "targets", targets, base + 1)
    if weights is not None:
        _typed(op_type, "weights", weights, base + 2)
        _same_shape(op_type, "weights.sizes() == targets.sizes()", "targets", targets,
                    "weights", weights, base + 2)
    inner = logits.shape[-1] if logits.ndim else 1
    enforce(inner > 0,
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


def _check_modes(op_type, args):
    enforce(not (args.log_D_trick and args.unjoined_lr_loss),
            "log_D_trick_ and unjoined_lr_loss_ cannot be set as True simultaneously. "
            "%s: both arguments are set. Fix: pick one loss mode." % op_type)


def _sce_grad(op_type, ctx, g, logits, targets, weights, args):
    inner, outer = _sce_inputs(op_type, logits, targets, 1, weights)
    _typed(op_type, "dOut", g, 0)
    enforce(g.size == outer,
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
    _check_modes("SigmoidCrossEntropyWithLogits", args)
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
    return [_f32_info(tuple(logits.shape)[:-1])]


SIGMOID_XENT.shape(_row_shape)
W_SIGMOID_XENT.shape(_row_shape)
SIGMOID_XENT_GRAD.shape(lambda args, g, logits, targets: [_f32_info(logits.shape)])
W_SIGMOID_XENT_GRAD.shape(lambda args, g, logits, *rest: [_f32_info(logits.shape)])


@SIGMOID_XENT.gradient
def _(g):
    return [g.op("SigmoidCrossEntropyWithLogitsGradient", [g.GO(0), g.I(0), g.I(1)],
                 [g.GI(0)])]


@W_SIGMOID_XENT.gradient
def _(g):
    return [g.op("WeightedSigmoidCrossEntropyWithLogitsGradient",
                 [g.GO(0), g.I(0), g.I(1), g.I(2)], [g.GI(0)])]


# --- SoftmaxWithLoss ------------------------------------------------------------------

_SWL_ARGS = [Arg("label_prob", "int", 0), Arg("axis", "int", 1), Arg("scale", "float", 1.0),
             Arg("average_by_batch_size", "int", 0), Arg("order", "string", "NCHW")]
SOFTMAX_WITH_LOSS = OpSchema(
    "SoftmaxWithLoss", inputs=(2, 3), outputs=(0, INF), args=_SWL_ARGS,
    output_check=lambda n: n in (2, 3),
    doc="[logits, labels, (weight)] -> [softmax, 0-d average loss]; a third output is "
        "allowed and left unwritten, as in Caffe2.")
SOFTMAX_WITH_LOSS_GRAD = OpSchema(
    "SoftmaxWithLossGradient", inputs=(0, INF), outputs=1,
    args=_SWL_ARGS + [Arg("only_loss", "bool", False)],
    doc="[X, labels, (weight), P, d_avg_loss] -> dX (Caffe2 put no bound on inputs).")


def _swl_setup(op_type, x, args):
    """Constructor checks, then (N, D) around the canonical axis."""
    enforce(args.scale >= 0, "scale_ >= 0. %s: scale must be >= 0, found %r. Fix: pass a "
            "non-negative scale." % (op_type, args.scale))
    enforce(args.order == "NCHW", "Only NCHW order is supported right now. %s: found "
            "order %r. Fix: drop the order argument or pass order='NCHW'."
            % (op_type, args.order))
    _typed(op_type, "X (logits)", x, 0)
    axis = args.axis
    enforce(-x.ndim <= axis < x.ndim,
            "Expected axis_index %s ndims to be true, but got false. %s: axis %d is out "
            "of range for logits of shape %s (valid: [%d, %d)). Fix: pass an axis inside "
            "that range." % ("<" if axis >= 0 else ">= -", op_type, axis, list(x.shape),
                             -x.ndim, x.ndim), input_index=0)
    axis = axis + x.ndim if axis < 0 else axis
    return axis, _prod(x.shape[:axis]), _prod(x.shape[axis:])


def _split_dims(op_type, t, axis, index=1):
    enforce(axis <= t.ndim,
            "Expected (unsigned)k <= dims.size() to be true, but got false. %s: labels "
            "of shape %s have fewer than axis=%d dimensions. Fix: shape labels like the "
            "logits up to the axis." % (op_type, list(t.shape), axis), input_index=index)
    return _prod(t.shape[:axis]), _prod(t.shape[axis:])


def _swl_labels(op_type, t, axis, n, d, prob):
    """Label checks of SoftmaxWithLoss(Gradient); returns labels as (N,) or (N, D)."""
    if prob:
        _typed(op_type, "labels (probabilities)", t, 1)
        enforce(t.ndim >= 2, "T.dim() >= 2. %d vs 2. %s: with label_prob=1 the labels "
                "are probabilities shaped like the logits, found shape %s. Fix: feed "
                "an (N, D) float32 tensor." % (t.ndim, op_type, list(t.shape)),
                input_index=1)
        rows, cols = _split_dims(op_type, t, axis)
        enforce((rows, cols) == (n, d),
                "T.size_to_dim(canonical_axis) == N && T.size_from_dim(canonical_axis) "
                "== D. %s: expected label probabilities of %d rows x %d classes, found "
                "%d x %d (shape %s). Fix: shape them like the logits."
                % (op_type, n, d, rows, cols, list(t.shape)), input_index=1)
        return t.reshape(n, d)
    _typed(op_type, "labels", t, 1, _I32)
    if t.ndim == axis:
        enforce(t.size == n, "T.numel() == N. %d vs %d. %s: expected one label per row "
                "(N=%d), found %d. Fix: feed N int32 labels."
                % (t.size, n, op_type, n, t.size), input_index=1)
    else:
        rows, cols = _split_dims(op_type, t, axis)
        enforce(rows == n and cols == 1,
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
    _typed(op_type, "weight", w, index)
    # Caffe2 read the first N weights; fewer was an out-of-bounds read.
    enforce(w.size >= n, "%s: the weight input needs one value per row (N=%d), found "
            "shape %s. Fix: feed N float32 weights." % (op_type, n, list(w.shape)),
            input_index=index)
    return w.reshape(-1)[:n]


@SOFTMAX_WITH_LOSS.shape
def _(args, x, *rest):
    return [_f32_info(x.shape), _f32_info(())]


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
        losses = -(xp.log(xp.maximum(p, np.float32(_LOG_THRESHOLD))) * t).sum(axis=1)
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
    outs = (p.reshape(x.shape).astype(np.float32), _f32_scalar(xp, loss))
    return outs + (None,) * (ctx.num_outputs - 2)


@SOFTMAX_WITH_LOSS_GRAD.shape
def _(args, x, *rest):
    return [_f32_info(x.shape)]


@SOFTMAX_WITH_LOSS_GRAD.kernel
def softmax_with_loss_gradient(ctx, args, *inputs):
    xp, op_type = ctx.xp, "SoftmaxWithLossGradient"
    enforce(len(inputs) in (4, 5),
            "%s expects [X, labels, (weight), P, d_avg_loss]: 4 or 5 inputs, found %d. "
            "Fix: let the gradient maker of SoftmaxWithLoss build this op."
            % (op_type, len(inputs)))
    x, t, p, dl = inputs[0], inputs[1], inputs[-2], inputs[-1]
    axis, n, d = _swl_setup(op_type, x, args)
    prob = bool(args.label_prob)
    t = _swl_labels(op_type, t, axis, n, d, prob)
    w = _swl_weights(op_type, inputs[2], n) if len(inputs) == 5 else None
    p_index = len(inputs) - 2
    _typed(op_type, "P (softmax)", p, p_index)
    enforce(p.shape == x.shape, "%s: P must be the forward softmax output, shaped like X "
            "%s, found %s. Fix: pass SoftmaxWithLoss's first output."
            % (op_type, list(x.shape), list(p.shape)), input_index=p_index)
    dl = _first_value(op_type, "d_avg_loss", dl, len(inputs) - 1)
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
ACCURACY.shape(lambda args, x, label: [_f32_info(())])


@ACCURACY.kernel
def accuracy(ctx, args, x, label):
    xp, op_type = ctx.xp, "Accuracy"
    _typed(op_type, "predictions", x, 0)
    _typed(op_type, "labels", label, 1, _I32)
    enforce(x.ndim == 2, "X.dim() == 2. %d vs 2. Accuracy: predictions must be (N, D), "
            "found shape %s. Fix: reshape the scores to 2-D." % (x.ndim, list(x.shape)),
            input_index=0)
    n, d = x.shape
    enforce(label.ndim == 1, "label.dim() == 1. %d vs 1. Accuracy: labels must be 1-D, "
            "found shape %s. Fix: flatten them to (N,)." % (label.ndim, list(label.shape)),
            input_index=1)
    enforce(label.shape[0] == n, "label.dim32(0) == N. %d vs %d. Accuracy: expected one "
            "label per row of predictions." % (label.shape[0], n), input_index=1)
    if bool(((label < 0) | (label >= d)).any()):
        raise EnforceError(
            "Accuracy: labels must lie in [0, %d), found values from %s to %s (Caffe2 "
            "read out of bounds). Fix: check the labels." % ((d,) + _minmax(label)),
            input_index=1)
    if n == 0:
        return _f32_scalar(xp, np.nan)  # Caffe2 computed 0 / 0
    target = x[xp.arange(n), label][:, None]
    before = (x > target) | ((x == target) & (xp.arange(d)[None, :] < label[:, None]))
    correct = int((before.sum(axis=1) < args.top_k).sum())
    return _f32_scalar(xp, np.float32(correct) / np.float32(n))
