"""Activation family: Relu, Sigmoid, Tanh, Softmax, Dropout and their gradient
ops (ReluGradient, SigmoidGradient, TanhGradient, SoftmaxGradient, DropoutGrad).

Caffe2 ran all of them on float32 only (CPU); on CUDA Relu/ReluGradient also
took float16. Gradient ops read the forward *output* Y, never X. Imports numpy,
the registry, ops._common and ops._cuda (kernel sources: nothing compiled or
imported until a GPU runs them).
"""

import numpy as np

from graphnet.registry import Arg, ArgumentError, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._fused import vm_helper, vm_kernel
from ._common import check_dispatch, check_type, checked, size_from_dim, size_to_dim

_F32 = (np.dtype(np.float32),)
_F32_F16 = (np.dtype(np.float32), np.dtype(np.float16))


def _dtypes(ctx, gpu_half=False):
    return _F32_F16 if gpu_half and ctx.device.is_gpu else _F32


def _check_dispatch(op_type, what, x, allowed, index):
    """The dtype check of Caffe2's dispatching ops ('Unsupported type of tensor')."""
    if x.dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        check_dispatch(x, allowed, index, "%s expects %s as %s, found %s. Fix: cast it first, "
                       "e.g. x.astype(np.float32)." % (op_type, what, names, x.dtype.name))


def _check_typed(op_type, what, x, expected, index):
    """The dtype check of Caffe2's fixed-type ops ('Tensor type mismatch')."""
    expected = np.dtype(expected)
    if x.dtype != expected:
        check_type(x, expected, index, "%s expects %s as %s, found %s. Fix: cast it to %s."
                   % (op_type, what, expected.name, x.dtype.name, expected.name))


def _check_same_shape(op_type, y, dy):
    if dy.shape != y.shape:
        enforce(False,
                "%s: Y and dY must have the same shape: expected dY of shape %s (Y's), "
                "found %s. Fix: feed the gradient of the forward op's output Y."
                % (op_type, tuple(y.shape), tuple(dy.shape)), input_index=1)


def _identical(args, x, *rest):
    return [TensorInfo(x.shape, x.dtype)]


# --- elementwise activations ---------------------------------------------------

def _elementwise(op_type, forward, backward, gpu_half=False, doc="", cuda=None):
    """Schema pair for an elementwise activation and its [Y, dY] -> dX gradient.
    `cuda`: (forward kernel name or None, backward kernel name or None) of _CUDA, which
    compute float32 in one launch what the numpy formulas compute in several CuPy
    calls, rounding each operation the same way."""
    fused_fwd, fused_bwd = cuda or (None, None)
    fwd = OpSchema(op_type, inputs=1, outputs=1, allow_inplace={(0, 0)}, doc=doc)
    grad = OpSchema(op_type + "Gradient", inputs=2, outputs=1, allow_inplace={(1, 0)},
                    doc="dX of %s from its output Y and dY." % op_type)
    fwd.shape(_identical)
    grad.shape(_identical)

    @fwd.kernel
    def run_forward(ctx, args, x):
        if x.dtype is not _F32[0]:
            _check_dispatch(op_type, "X", x, _dtypes(ctx, gpu_half), 0)
        elif fused_fwd and ctx.xp is not np:
            return _launch_fused(ctx.xp, fused_fwd, x)
        return forward(ctx.xp, x)

    @grad.kernel
    def run_backward(ctx, args, y, dy):
        checked(ctx, (y.shape, dy.shape, y.dtype, dy.dtype), lambda: backward_checks(
            ctx, y, dy))
        if fused_bwd and ctx.xp is not np and y.dtype == _F32[0]:
            return _launch_fused(ctx.xp, fused_bwd, y, dy)
        return backward(ctx.xp, y, dy)

    def backward_checks(ctx, y, dy):
        _check_dispatch(op_type + "Gradient", "Y", y, _dtypes(ctx, gpu_half), 0)
        _check_typed(op_type + "Gradient", "dY", dy, y.dtype, 1)
        _check_same_shape(op_type + "Gradient", y, dy)

    @fwd.gradient
    def make_gradient(g):
        return [g.op(op_type + "Gradient", [g.O(0), g.GO(0)], [g.GI(0)])]

    run_forward.__name__ = op_type.lower()
    run_backward.__name__ = op_type.lower() + "_gradient"
    return fwd, grad


def relu(xp, x):
    return xp.maximum(x, 0)  # NaN stays NaN, as in Caffe2; 0 takes x's float type


def relu_gradient(xp, y, dy):
    zero = dy.dtype.type(0)
    if xp is np and dy.size >= 16384 and np.isfinite(dy.sum()):
        # dY * (Y > 0) is 5x faster than numpy's where() with a scalar on large arrays;
        # it equals the select for finite dY once -0.0 is turned into +0.0 (the "+= 0").
        out = dy * (y > 0)
        out += zero
        return out
    return xp.where(y > 0, dy, zero)  # select, so NaN dY at Y<=0 gives 0


def sigmoid(xp, x):
    # Caffe2's formula, 1 / (1 + exp(-X)); exp overflowing to inf gives exactly 0
    # (numpy's overflow warning is off while kernels run).
    return 1 / (1 + xp.exp(-x))


def sigmoid_gradient(xp, y, dy):
    return dy * y * (1 - y)


def tanh(xp, x):
    return xp.tanh(x)


def tanh_gradient(xp, y, dy):
    return dy * (1 - y * y)


# CUDA (float32): one launch per op instead of the formulas' CuPy calls (ReluGradient
# 2, Sigmoid 4, SigmoidGradient 3), each operation rounded as CuPy rounds it there:
# the same select, expf and IEEE additions, products and division, no fused
# multiply-add.
from ._cuda import CudaSource, launch  # noqa: E402

_CUDA = CudaSource("activations", r"""
extern "C" __global__ void relu_gradient_f32(const float* y, const float* dy, i64 n,
                                             float* dx) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;  /* select: NaN dY at Y <= 0 gives 0 */
}
extern "C" __global__ void sigmoid_f32(const float* x, i64 n, float* y) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x[i])));
}
extern "C" __global__ void sigmoid_gradient_f32(const float* y, const float* dy, i64 n,
                                                float* dx) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = __fmul_rn(__fmul_rn(dy[i], y[i]), __fsub_rn(1.0f, y[i]));
}
""")


def _launch_fused(xp, name, *inputs):
    """_CUDA's kernel `name` over float32 inputs of one shape: a new output."""
    flat = [xp.ascontiguousarray(a).reshape(-1) for a in inputs]
    out = xp.empty(inputs[0].shape, np.float32)
    n = flat[0].shape[0]
    launch(_CUDA.function(name), n, tuple(flat) + (np.int64(n), out))
    return out


RELU, RELU_GRADIENT = _elementwise(
    "Relu", relu, relu_gradient, gpu_half=True, cuda=(None, "relu_gradient_f32"),
    doc="Y = max(X, 0); float32 (CUDA also float16). In-place allowed.")
SIGMOID, SIGMOID_GRADIENT = _elementwise(
    "Sigmoid", sigmoid, sigmoid_gradient, cuda=("sigmoid_f32", "sigmoid_gradient_f32"),
    doc="Y = 1 / (1 + exp(-X)); float32.")
TANH, TANH_GRADIENT = _elementwise("Tanh", tanh, tanh_gradient, doc="Y = tanh(X); float32.")


# --- Softmax ---------------------------------------------------------------------

SOFTMAX = OpSchema(
    "Softmax", inputs=1, outputs=1, args=[Arg("axis", "int", 1)],
    doc="Row-wise softmax of X viewed as (size_to_dim(axis), size_from_dim(axis)).")
SOFTMAX_GRADIENT = OpSchema(
    "SoftmaxGradient", inputs=2, outputs=1, args=[Arg("axis", "int", 1)],
    doc="dX = Y * (dY - rowsum(Y * dY)) on the same 2-D view as Softmax.")
SOFTMAX.shape(_identical)
SOFTMAX_GRADIENT.shape(_identical)


def _rows(op_type, x, axis):
    """(N, D) of Caffe2's 2-D view, after canonical_axis_index's checks."""
    ndim = x.ndim
    if not (-ndim <= axis < ndim):
        enforce(False,
                "%s: axis out of range (Caffe2: 'Expected axis_index %s to be true'): "
                "expected -%d <= axis < %d for an input of shape %s, found axis=%d. Fix: "
                "pass an axis inside the input's dims (axis=1 needs at least 2 dims)."
                % (op_type, "< ndims" if axis >= ndim else ">= -ndims", ndim, ndim,
                   tuple(x.shape), axis), input_index=0)
    axis = axis + ndim if axis < 0 else axis
    return size_to_dim(x.shape, axis), size_from_dim(x.shape, axis)


@SOFTMAX.kernel
def softmax(ctx, args, x):
    _check_typed("Softmax", "X", x, np.float32, 0)
    n, d = _rows("Softmax", x, args.axis)
    xp = ctx.xp
    if n == 0 or d == 0:
        return xp.zeros(x.shape, dtype=np.float32)
    rows = x.reshape(n, d)
    e = xp.exp(rows - rows.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)


@SOFTMAX_GRADIENT.kernel
def softmax_gradient(ctx, args, y, dy):
    _check_typed("SoftmaxGradient", "Y", y, np.float32, 0)
    _check_typed("SoftmaxGradient", "dY", dy, np.float32, 1)
    _check_same_shape("SoftmaxGradient", y, dy)
    n, d = _rows("SoftmaxGradient", y, args.axis)
    if n == 0 or d == 0:
        return ctx.xp.zeros(y.shape, dtype=np.float32)
    y2, dy2 = y.reshape(n, d), dy.reshape(n, d)
    return (y2 * (dy2 - (y2 * dy2).sum(axis=1, keepdims=True))).reshape(y.shape)


@SOFTMAX.gradient
def _softmax_gradient(g):
    return [g.op("SoftmaxGradient", [g.O(0), g.GO(0)], [g.GI(0)])]


# --- Dropout -----------------------------------------------------------------------

def _check_ratio(op_type):
    """Caffe2 checked Dropout's ratio in the op's constructor, i.e. when the op is
    created (CreateNet / RunOperatorOnce), before any input is read."""
    def check(args):
        ratio = args.ratio
        if not 0.0 <= ratio < 1.0:
            raise ArgumentError(
                "%s: ratio must be in [0, 1) (Caffe2: 'ratio_ %s'): found ratio=%r. "
                "Fix: pass the probability of dropping a value, e.g. ratio=0.5."
                % (op_type, ">= 0" if ratio < 0 else "< 1", ratio))
    return check


DROPOUT = OpSchema(
    "Dropout", inputs=1, outputs=(1, 2), allow_inplace={(0, 0)},
    args=[Arg("ratio", "float", 0.5), Arg("is_test", "int", 0, required=True)],
    arg_check=_check_ratio("Dropout"),
    doc="Training: mask ~ bernoulli(1 - ratio), Y = X * mask / (1 - ratio); test "
        "(is_test != 0): Y = X and the mask output is left unwritten.")
DROPOUT_GRAD = OpSchema(
    "DropoutGrad", inputs=(1, 2), outputs=1, allow_inplace={(0, 0)},
    args=[Arg("ratio", "float", 0.5), Arg("is_test", "int", 0)],
    arg_check=_check_ratio("DropoutGrad"),
    doc="Training: dX = dY * mask / (1 - ratio) from [dY, mask]; test: dX = dY.")


def _scale(ratio):
    # Caffe2: float scale = 1. / (1. - ratio_), the subtraction done in double.
    return np.float32(1.0 / (1.0 - float(ratio)))


@DROPOUT.shape
def _dropout_shape(args, x):
    infos = [TensorInfo(x.shape, x.dtype)]
    if not args.is_test:
        infos.append(TensorInfo(x.shape, np.bool_))
    return infos


@DROPOUT.kernel
def dropout(ctx, args, x):
    _check_typed("Dropout", "X", x, np.float32, 0)
    if args.is_test:
        y = x if ctx.inplace(0, 0) else x.copy()
        return (y, None) if ctx.num_outputs == 2 else y
    if ctx.num_outputs != 2:
        enforce(False,
                "Dropout in training mode (is_test=0) writes the mask as output 1: "
                "expected 2 outputs (Y, mask), found %d. Fix: add a mask output, or set "
                "is_test=1 for inference." % ctx.num_outputs)
    keep = ctx.rng.random(x.shape) < 1.0 - float(args.ratio)
    mask = ctx.backend.from_host(keep, ctx.device)
    return x * _scale(args.ratio) * mask, mask


@DROPOUT_GRAD.shape
def _dropout_grad_shape(args, dy, *mask):
    return [TensorInfo(dy.shape, dy.dtype)]


@DROPOUT_GRAD.kernel
def dropout_grad(ctx, args, dy, *mask):
    _check_typed("DropoutGrad", "dY", dy, np.float32, 0)
    if args.is_test:
        return dy if ctx.inplace(0, 0) else dy.copy()
    if len(mask) != 1:
        enforce(False,
                "DropoutGrad in training mode (is_test=0) needs the forward mask: expected "
                "inputs [dY, mask], found %d input. Fix: pass Dropout's mask output as "
                "input 1, or set is_test=1." % (1 + len(mask)))
    mask = mask[0]
    _check_typed("DropoutGrad", "mask", mask, np.bool_, 1)
    if mask.size != dy.size:
        enforce(False,
                "dY.numel() == mask.numel(). %d vs %d. DropoutGrad expects a mask with as "
                "many elements as dY %s, found shape %s. Fix: pass the mask Dropout wrote "
                "for this dY." % (dy.size, mask.size, tuple(dy.shape), tuple(mask.shape)),
                input_index=1)
    return dy * mask.reshape(dy.shape) * _scale(args.ratio)


@DROPOUT.gradient
def _dropout_gradient(g):
    if not g.has_arg("is_test"):
        raise ArgumentError("(GradientMaker) Argument 'is_test' is required for Operator "
                            "'Dropout'. Fix: pass is_test=0 (training) or is_test=1.")
    if g.arg("is_test", 0):
        return [g.op("DropoutGrad", [g.GO(0)], [g.GI(0)])]
    if len(g.def_.output) != 2:
        enforce(False,
                "Dropout's gradient in training mode (is_test=0) reads the mask (output 1), "
                "but the op has %d output. Fix: give Dropout a mask output."
                % len(g.def_.output))
    return [g.op("DropoutGrad", [g.GO(0), g.O(1)], [g.GI(0)])]


# --- fused lowering (graphnet.executors.fused): float32 elementwise kernels -----------
# Operands: n, the inputs' offsets, the output's offset. The loops run on arena slices
# (helpers), which LLVM vectorizes; indexing the arena itself it would not.

@vm_helper
def _relu(x, y):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v if not (v < 0) else np.float32(0)  # NaN stays NaN


@vm_helper
def _relu_gradient(y, dy, dx):
    for i in range(y.shape[0]):
        dx[i] = dy[i] if y[i] > 0 else np.float32(0)


@vm_helper
def _sigmoid(x, y):
    for i in range(x.shape[0]):
        y[i] = np.float32(1) / (np.float32(1) + np.exp(-x[i]))


@vm_helper
def _sigmoid_gradient(y, dy, dx):
    for i in range(y.shape[0]):
        dx[i] = dy[i] * y[i] * (np.float32(1) - y[i])


@vm_helper
def _tanh(x, y):
    for i in range(x.shape[0]):
        y[i] = np.tanh(x[i])


@vm_helper
def _tanh_gradient(y, dy, dx):
    for i in range(y.shape[0]):
        dx[i] = dy[i] * (np.float32(1) - y[i] * y[i])


@vm_kernel
def relu_vm(c, p, f4, i4, i8):
    n, x, y = c[p], c[p + 1], c[p + 2]
    _relu(f4[x:x + n], f4[y:y + n])
    return True


@vm_kernel
def relu_gradient_vm(c, p, f4, i4, i8):
    n, y, dy, dx = c[p], c[p + 1], c[p + 2], c[p + 3]
    _relu_gradient(f4[y:y + n], f4[dy:dy + n], f4[dx:dx + n])
    return True


@vm_kernel
def sigmoid_vm(c, p, f4, i4, i8):
    n, x, y = c[p], c[p + 1], c[p + 2]
    _sigmoid(f4[x:x + n], f4[y:y + n])
    return True


@vm_kernel
def sigmoid_gradient_vm(c, p, f4, i4, i8):
    n, y, dy, dx = c[p], c[p + 1], c[p + 2], c[p + 3]
    _sigmoid_gradient(f4[y:y + n], f4[dy:dy + n], f4[dx:dx + n])
    return True


@vm_kernel
def tanh_vm(c, p, f4, i4, i8):
    n, x, y = c[p], c[p + 1], c[p + 2]
    _tanh(f4[x:x + n], f4[y:y + n])
    return True


@vm_kernel
def tanh_gradient_vm(c, p, f4, i4, i8):
    n, y, dy, dx = c[p], c[p + 1], c[p + 2], c[p + 3]
    _tanh_gradient(f4[y:y + n], f4[dy:dy + n], f4[dx:dx + n])
    return True


def _lower_elementwise(kernel):
    def lower(f):
        if not (f.all_dtypes(np.float32) and f.same_sizes()):
            return False
        f.emit(kernel, f.size(), *[f.off(k) for k in range(len(f.in_info))], f.out(0))
        return True
    return lower


RELU.lowering(_lower_elementwise(relu_vm))
RELU_GRADIENT.lowering(_lower_elementwise(relu_gradient_vm))
SIGMOID.lowering(_lower_elementwise(sigmoid_vm))
SIGMOID_GRADIENT.lowering(_lower_elementwise(sigmoid_gradient_vm))
TANH.lowering(_lower_elementwise(tanh_vm))
TANH_GRADIENT.lowering(_lower_elementwise(tanh_gradient_vm))


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Relu", "ReluGradient", "Sigmoid", "SigmoidGradient", "Tanh",
                   "TanhGradient")
