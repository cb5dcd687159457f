"""SquaredL2Distance, AveragedLoss, MakeTwoClass, LabelCrossEntropy, CrossEntropy and
their gradient ops, plus the checks the other loss modules share (float32, int32
labels). Imports numpy, the registry and ops._common only.
"""

import numpy as np

from graphnet.registry import EnforceError, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._fused import vm_kernel
from ._common import F32, I32, check_type, numel

# Caffe2 ran these ops on float32 only (labels int32), CPU and CUDA alike; other
# dtypes fail with its "Tensor type mismatch" text. Where Caffe2 read out of bounds
# (labels out of range, a short label) we raise instead.
LOG_THRESHOLD = 1e-20  # Caffe2's kLOG_THRESHOLD: log() never sees less than this


def expect_loss_type(op_type, what, x, index, expected=F32):
    """Caffe2's fixed-type read (`X.data<float>()`)."""
    if x.dtype != expected:
        check_type(x, expected, index, "%s expects %s (input %d) as %s, found %s. Fix: cast "
                   "it, e.g. x.astype(np.%s)." % (op_type, what, index, expected.name,
                                                  x.dtype.name, expected.name))


def expect_shape_like(op_type, cond, a_name, a, b_name, b, index):
    if a.shape != b.shape:
        enforce(False,
                "%s. %s: %s and %s must have identical shapes: expected %s, found %s. Fix: "
                "feed %s shaped like %s." % (cond, op_type, a_name, b_name, list(a.shape),
                                             list(b.shape), b_name, a_name),
                input_index=index)


def f32_scalar(xp, value):
    return xp.asarray(value, dtype=np.float32).reshape(())


def first_value(op_type, what, x, index):
    """Caffe2 read element 0 of a gradient scalar (a DCHECK guarded its size)."""
    expect_loss_type(op_type, what, x, index)
    if x.size != 1:
        enforce(False,
                "%s: %s must hold exactly one value (the loss gradient), found shape %s. "
                "Fix: feed a scalar or a 1-element tensor." % (op_type, what, list(x.shape)),
                input_index=index)
    return x.reshape(())


def f32_info(shape):
    return TensorInfo(shape, F32)


# --- SquaredL2Distance ------------------------------------------------------------

SQUARED_L2 = OpSchema("SquaredL2Distance", inputs=2, outputs=1,
                      doc="Z[i] = 0.5 * ||X_i - Y_i||^2 over each row (N = X.shape[0]).")
SQUARED_L2_GRAD = OpSchema("SquaredL2DistanceGradient", inputs=3, outputs=2,
                           doc="dX = (X - Y) * dZ[i] per row, dY = -dX.")


def _l2_rows(op_type, x, y):
    expect_loss_type(op_type, "X", x, 0)
    expect_loss_type(op_type, "Y", y, 1)
    if x.ndim != y.ndim:
        enforce(False,
                "X.dim() == Y.dim(). %d vs %d. %s: X and Y must have identical shapes, found "
                "%s and %s. Fix: reshape Y like X." % (x.ndim, y.ndim, op_type, list(x.shape),
                                                       list(y.shape)), input_index=1)
    expect_shape_like(op_type, "X.dim32(i) == Y.dim32(i)", "X", x, "Y", y, 1)
    n = x.shape[0] if x.ndim > 0 else 1
    return n, (x.size // n if n > 0 else 0)


@SQUARED_L2.shape
def _(args, x, y):
    return [f32_info((x.shape[0] if len(x.shape) else 1,))]


@SQUARED_L2.kernel
def squared_l2_distance(ctx, args, x, y):
    n, d = _l2_rows("SquaredL2Distance", x, y)
    diff = (x - y).reshape(n, d)
    return (0.5 * (diff * diff).sum(axis=1)).astype(np.float32, copy=False)


@SQUARED_L2_GRAD.shape
def _(args, x, y, dz):
    return [f32_info(x.shape), f32_info(y.shape)]


@SQUARED_L2_GRAD.kernel
def squared_l2_distance_gradient(ctx, args, x, y, dz):
    op_type = "SquaredL2DistanceGradient"
    n, d = _l2_rows(op_type, x, y)
    expect_loss_type(op_type, "dDistance", dz, 2)
    if not (dz.ndim == 1 and dz.shape[0] == n):
        enforce(False,
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
AVERAGED_LOSS.shape(lambda args, x: [f32_info(())])
AVERAGED_LOSS_GRAD.shape(lambda args, x, dl: [f32_info(x.shape)])


@AVERAGED_LOSS.kernel
def averaged_loss(ctx, args, x):
    expect_loss_type("AveragedLoss", "X", x, 0)
    total = x.sum(dtype=np.float32)
    if x.size:  # Caffe2 scaled the sum by the float 1 / numel
        total = total * (np.float32(1.0) / np.float32(x.size))
    return f32_scalar(ctx.xp, total)


@AVERAGED_LOSS_GRAD.kernel
def averaged_loss_gradient(ctx, args, x, dl):
    expect_loss_type("AveragedLossGradient", "X", x, 0)
    dl = first_value("AveragedLossGradient", "dLoss", dl, 1)
    # Caffe2 scaled in double (1.0 / X.size()) and stored the float result; computed
    # where dLoss lives, so a GPU never waits for it to come back to the host, unless
    # the host knows it (the loss gradient's ConstantFill): one fill then
    scale = 1.0 / x.size if x.size else 0.0
    known = _host_known(ctx, dl)
    if known is not None:
        return ctx.xp.full(x.shape, np.float32(np.float64(known) * scale), np.float32)
    value = (dl.astype(np.float64) * scale).astype(np.float32)
    return ctx.xp.broadcast_to(value, x.shape).copy()


def _host_known(ctx, array):
    """The value of a GPU array the host uploaded or filled (graphnet.executors.cuda.
    host_values), else None; None on numpy too (the array is on the host already)."""
    if ctx.xp is np:
        return None
    from graphnet.executors.cuda import host_values
    return host_values.lookup(array)


@AVERAGED_LOSS.gradient
def _(g):
    return [g.op("AveragedLossGradient", [g.I(0), g.GO(0)], [g.GI(0)])]


# --- MakeTwoClass ------------------------------------------------------------------

MAKE_TWO_CLASS = OpSchema("MakeTwoClass", inputs=1, outputs=1,
                          doc="Y[..., 0] = 1 - X, Y[..., 1] = X; Y.shape = X.shape + (2,).")
MAKE_TWO_CLASS_GRAD = OpSchema("MakeTwoClassGradient", inputs=1, outputs=1,
                               doc="dX = dY[..., 1] - dY[..., 0].")
MAKE_TWO_CLASS.shape(lambda args, x: [f32_info(tuple(x.shape) + (2,))])
MAKE_TWO_CLASS_GRAD.shape(lambda args, dy: [f32_info(tuple(dy.shape)[:-1])])


@MAKE_TWO_CLASS.kernel
def make_two_class(ctx, args, x):
    expect_loss_type("MakeTwoClass", "X", x, 0)
    return ctx.xp.stack([1 - x, x], axis=-1).astype(np.float32)


@MAKE_TWO_CLASS_GRAD.kernel
def make_two_class_gradient(ctx, args, dy):
    expect_loss_type("MakeTwoClassGradient", "dY", dy, 0)
    if not (dy.ndim >= 1 and dy.shape[-1] == 2):
        enforce(False,
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
        return x.shape[0], numel(x.shape[1:])
    return 1, (x.shape[0] if x.ndim == 1 else 0)  # a 0-d X gives D = 0 (no label fits)


def _int_labels(op_type, x, label):
    """Checks of LabelCrossEntropy(Gradient): returns (N, D, label as 1-D)."""
    expect_loss_type(op_type, "X", x, 0)
    expect_loss_type(op_type, "label", label, 1, I32)
    n, d = _rows(x)
    if not (label.ndim == 1 or (label.ndim == 2 and label.shape[1] == 1)):
        enforce(False,
                "(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == 1). %s: label "
                "must be 1-D or (N, 1), found shape %s. Fix: one int32 class index per row."
                % (op_type, list(label.shape)), input_index=1)
    if label.shape[0] != n:
        enforce(False,
                "label.dim32(0) == N. %d vs %d. %s: expected one label per row of X (N=%d, X "
                "shape %s), found %d. Fix: feed labels of the same batch size."
                % (label.shape[0], n, op_type, n, list(x.shape), label.shape[0]),
                input_index=1)
    label = label.reshape(-1)
    if bool(((label < 0) | (label >= d)).any()):
        raise EnforceError(
            "Label seems to be outside of supported range. Supported labels are in range "
            "[0,%d). %s: found labels from %s to %s. Fix: labels must index the %d "
            "columns of X." % ((d, op_type) + value_range(label) + (d,)), input_index=1)
    return n, d, label


def value_range(values, kind=int):
    return (kind(values.min()), kind(values.max())) if values.size else (None, None)


def _grad_rows(op_type, dy, n, index=2):
    expect_loss_type(op_type, "dY", dy, index)
    if not (dy.ndim == 1 and dy.shape[0] == n):
        enforce(False,
                "dY.dim() == 1 && dY.dim32(0) == N. %s: dY must be 1-D of length N=%d, found "
                "shape %s. Fix: feed the gradient of the forward output Y (shape (N,))."
                % (op_type, n, list(dy.shape)), input_index=index)


@LABEL_XENT.shape
def _(args, x, label):
    return [f32_info((x.shape[0] if len(x.shape) > 1 else 1,))]


@LABEL_XENT.kernel
def label_cross_entropy(ctx, args, x, label):
    n, d, label = _int_labels("LabelCrossEntropy", x, label)
    picked = x.reshape(n, d)[ctx.xp.arange(n), label]
    return -ctx.xp.log(ctx.xp.maximum(picked, np.float32(LOG_THRESHOLD)))


@LABEL_XENT_GRAD.shape
def _(args, x, label, dy):
    return [f32_info(x.shape)]


@LABEL_XENT_GRAD.kernel
def label_cross_entropy_gradient(ctx, args, x, label, dy):
    xp = ctx.xp
    n, d, label = _int_labels("LabelCrossEntropyGradient", x, label)
    _grad_rows("LabelCrossEntropyGradient", dy, n)
    rows = xp.arange(n)
    x2 = x.reshape(n, d)
    dx = xp.zeros((n, d), dtype=np.float32)
    dx[rows, label] = -dy / xp.maximum(x2[rows, label], np.float32(LOG_THRESHOLD))
    return dx.reshape(x.shape)


def _soft_labels(op_type, x, label):
    expect_loss_type(op_type, "X", x, 0)
    expect_loss_type(op_type, "label", label, 1)
    n, d = _rows(x)
    if not (label.ndim == 1 or (label.ndim == 2 and label.shape[1] == d)):
        enforce(False,
                "(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == D). %s: label "
                "must be (N, D) = (%d, %d) probabilities, found shape %s. Fix: one "
                "probability row per row of X." % (op_type, n, d, list(label.shape)),
                input_index=1)
    if label.shape[0] != n:
        enforce(False,
                "label.dim32(0) == N. %d vs %d. %s: expected %d label rows (X shape %s), "
                "found %d. Fix: feed labels of the same batch size."
                % (label.shape[0], n, op_type, n, list(x.shape), label.shape[0]),
                input_index=1)
    # Caffe2 read N*D values even from a 1-D label; only D == 1 made that valid.
    if label.size != n * d:
        enforce(False,
                "%s: a 1-D label holds %d values but X needs N*D = %d (Caffe2 read past its "
                "end). Fix: feed label shaped (N, D) = (%d, %d)."
                % (op_type, label.size, n * d, n, d), input_index=1)
    return n, d, label.reshape(n, d)


@XENT.shape
def _(args, x, label):
    return [f32_info((x.shape[0] if len(x.shape) > 1 else 1,))]


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
            % ((d,) + value_range(label, float)), input_index=1)
    logs = xp.log(xp.maximum(x.reshape(n, d), np.float32(LOG_THRESHOLD)))
    return -(label * logs).sum(axis=1, dtype=np.float32)


@XENT_GRAD.shape
def _(args, x, label, dy):
    return [f32_info(x.shape)]


@XENT_GRAD.kernel
def cross_entropy_gradient(ctx, args, x, label, dy):
    n, d, label = _soft_labels("CrossEntropyGradient", x, label)
    _grad_rows("CrossEntropyGradient", dy, n)
    dx = label / ctx.xp.maximum(x.reshape(n, d), np.float32(LOG_THRESHOLD))
    return (dx * -dy.reshape(n, 1)).reshape(x.shape)


@LABEL_XENT.gradient
def _(g):
    return [g.op("LabelCrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


@XENT.gradient
def _(g):
    return [g.op("CrossEntropyGradient", [g.I(0), g.I(1), g.GO(0)], [g.GI(0)])]


# --- fused lowering (graphnet.executors.fused): float32 kernels -------------------------

@vm_kernel
def squared_l2_vm(c, p, f4, i4, i8):
    """out[i] = 0.5 * sum_j (x - y)[i, j]^2 (n, d, x, y, out)."""
    n, d, x, y, out = c[p], c[p + 1], c[p + 2], c[p + 3], c[p + 4]
    for i in range(n):
        total = np.float32(0)
        for j in range(d):
            diff = f4[x + i * d + j] - f4[y + i * d + j]
            total += diff * diff
        f4[out + i] = np.float32(0.5) * total
    return True


@vm_kernel
def squared_l2_gradient_vm(c, p, f4, i4, i8):
    """dx = (x - y) * dz[row], dy = -dx (n, d, x, y, dz, dx, dy)."""
    n, d, x, y, dz, dx, dy = c[p], c[p + 1], c[p + 2], c[p + 3], c[p + 4], c[p + 5], \
        c[p + 6]
    for i in range(n):
        g = f4[dz + i]
        for j in range(d):
            value = (f4[x + i * d + j] - f4[y + i * d + j]) * g
            f4[dx + i * d + j] = value
            f4[dy + i * d + j] = -value
    return True


@vm_kernel
def averaged_vm(c, p, f4, i4, i8):
    """out = sum(x) * (1 / size) in float32 (size, x, out)."""
    size, x, out = c[p], c[p + 1], c[p + 2]
    total = np.float32(0)
    for i in range(size):
        total += f4[x + i]
    if size:
        total = total * (np.float32(1.0) / np.float32(size))
    f4[out] = total
    return True


@vm_kernel
def averaged_gradient_vm(c, p, f4, i4, i8):
    """out[:] = float32(dl * (1.0 / size)), scaled in double (size, dl, out)."""
    size, dl, out = c[p], c[p + 1], c[p + 2]
    value = np.float32(np.float64(f4[dl]) * (1.0 / size if size else 0.0))
    for i in range(size):
        f4[out + i] = value
    return True


def _pairs_of_rows(f):
    shape = f.in_info[0].shape
    n = shape[0] if shape else 1
    return n, numel(shape) // n if n else 0


@SQUARED_L2.lowering
def _lower_squared_l2(f):
    if not (f.all_dtypes(np.float32) and f.distinct()
            and numel(f.in_info[1].shape) == numel(f.in_info[0].shape)):
        return False
    f.emit(squared_l2_vm, *_pairs_of_rows(f), f.off(0), f.off(1), f.out(0))
    return True


@SQUARED_L2_GRAD.lowering
def _lower_squared_l2_gradient(f):
    n, d = _pairs_of_rows(f)
    if not (f.all_dtypes(np.float32) and f.distinct() and numel(f.in_info[2].shape) == n
            and numel(f.in_info[1].shape) == n * d):
        return False
    f.emit(squared_l2_gradient_vm, n, d, f.off(0), f.off(1), f.off(2), f.out(0), f.out(1))
    return True


@AVERAGED_LOSS.lowering
def _lower_averaged_loss(f):
    if not (f.all_dtypes(np.float32) and f.distinct()):
        return False
    f.emit(averaged_vm, numel(f.in_info[0].shape), f.off(0), f.out(0))
    return True


@AVERAGED_LOSS_GRAD.lowering
def _lower_averaged_loss_gradient(f):
    if not (f.all_dtypes(np.float32) and f.distinct() and numel(f.in_info[1].shape) == 1):
        return False
    f.emit(averaged_gradient_vm, numel(f.in_info[0].shape), f.off(1), f.out(0))
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("SquaredL2Distance", "SquaredL2DistanceGradient", "AveragedLoss",
                   "AveragedLossGradient")
