"""Elementwise family: Add/Sub/Mul/Div (numpy-style or legacy `broadcast=1`
broadcasting), Sum, Mean, Max, Min, Scale, Clip, WeightedSum, ScatterWeightedSum,
the unary math ops (Negative, Abs, Exp, Log, Sqrt, Sqr, Pow), SumReduceLike, and
the gradient ops their makers emit (AddGradient ... WeightedSumGradient).

Dtypes are those Caffe2 1.10 accepted on the CPU; scalar factors Caffe2 held as
C++ `float` (scale, weights, 1/n) are rounded to float32 before use, as there.
Imports numpy, graphnet.errors and the registry only.
"""

import functools

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import INF, Arg, OpSchema, TensorInfo, enforce

F32 = (np.dtype(np.float32),)
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
NUMERIC = FLOATS + (np.dtype(np.int32), np.dtype(np.int64))
INDEX = (np.dtype(np.int32), np.dtype(np.int64))

# Caffe2 (1.10) did NOT reject axis/axis_str without broadcast=1 in Add/Sub/Mul/Div
# (the check sat in a dead branch); the spec (§3.37) makes it an error, so do we.
REJECT_AXIS_WITHOUT_BROADCAST = True

_CPP = {"float32": "float", "float64": "double", "int32": "int", "int64": "long int",
        "bool": "bool", "float16": "c10::Half", "int8": "signed char",
        "uint8": "unsigned char", "int16": "short int", "uint16": "unsigned short"}


_FAMILY = []


def _schema(*args, **kwargs):
    schema = OpSchema(*args, **kwargs)
    _FAMILY.append(schema)
    return schema


def _cpp(dtype):
    name = np.dtype(dtype).name
    return _CPP.get(name, name)


def _dims(shape):
    return "[%s]" % ", ".join(str(int(d)) for d in shape)


def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _names(dtypes):
    return "/".join(np.dtype(d).name for d in dtypes)


def _dispatch(op, x, allowed, k=0):
    """Caffe2's DispatchHelper: input k's dtype selects the kernel."""
    enforce(x.dtype in allowed,
            "Unsupported type of tensor: %s. %s input %d: expected %s, found %s. Fix: "
            "cast it (Cast op or astype) to one of %s." % (
                _cpp(x.dtype), op, k, _names(allowed), x.dtype.name, _names(allowed)),
            input_index=k)


def _same(op, x, want, k):
    """Tensor::data<T>(): input k must hold exactly T."""
    want = np.dtype(want)
    enforce(x.dtype == want,
            "Tensor type mismatch, caller expects elements to be %s, while tensor "
            "contains %s. %s input %d: expected %s, found %s. Fix: cast it to %s." % (
                _cpp(want), _cpp(x.dtype), op, k, want.name, x.dtype.name, want.name),
            input_index=k)


def _one_element(op, w, k, pair):
    """Weight w_pair (input k) is a single float."""
    n = _prod(w.shape)
    enforce(n == 1,
            "weight%d.numel() == 1. %d vs 1. %s input %d (weight w_%d) must hold exactly "
            "1 element, found %d (shape %s). Fix: feed a 1-element float32 tensor." % (
                pair, n, op, k, pair, n, _dims(w.shape)), input_index=k)


def _same_shapes(op, xs):
    """Sum/Mean/Max/Min: every input has input 0's shape (no broadcasting)."""
    out = tuple(xs[0].shape)
    for i, x in enumerate(xs[1:], 1):
        enforce(tuple(x.shape) == out,
                "Check failed: output->sizes() == Input(i).sizes().Description: Input "
                "#%d, input dimension:%s should match output dimension: %s. %s does not "
                "broadcast: expected shape %s, found %s. Fix: give every input the same "
                "shape (Reshape/Expand first)." % (i, _dims(x.shape), _dims(out), op,
                                                  _dims(out), _dims(x.shape)),
                input_index=i)
    return out


def _typed(x, value):
    """A scalar Caffe2 held as C++ float, converted to x's element type."""
    return x.dtype.type(np.float32(value))


# --- broadcasting ---------------------------------------------------------------------

def _arg_enforce(condition, message):
    if not condition:
        raise ArgumentError(message)


def _resolve_axis(op, args, legacy, strict=None):
    """The axis of legacy broadcasting from `axis`/`axis_str`/`order` (-1: suffix).

    Caffe2 made these checks in the op's constructor, so they run as arg_check
    (at CreateNet / RunOperatorOnce) and raise ArgumentError.
    """
    if not legacy:
        strict = REJECT_AXIS_WITHOUT_BROADCAST if strict is None else strict
        _arg_enforce(
            not strict or (args.axis == -1 and not args.axis_str),
            "Do not specify axis or axis_str if broadcast is not enabled. %s: found "
            "axis=%d axis_str=%r with broadcast=0. Fix: drop axis/axis_str (numpy-style "
            "broadcasting needs none) or set broadcast=1." % (op, args.axis, args.axis_str))
        return -1
    if args.axis != -1:
        _arg_enforce(not args.axis_str,
                     "Args axis and axis_str cannot be used simultaneously. %s: found "
                     "axis=%d and axis_str=%r. Fix: pass only one." % (op, args.axis,
                                                                       args.axis_str))
        return args.axis
    if args.axis_str:
        _arg_enforce(len(args.axis_str) == 1,
                     "Unsupported axis string%s. %s: expected one letter of order %r. "
                     "Fix: e.g. axis_str='C'." % (args.axis_str, op, args.order))
        pos = args.order.find(args.axis_str)
        _arg_enforce(pos >= 0, "Unrecognizable axis string %s from order string %s. %s: "
                               "Fix: use a letter of %r." % (args.axis_str, args.order, op,
                                                            args.order))
        return pos
    return -1


def _binary_arg_check(op):
    return lambda args: _resolve_axis(op, args, bool(args.broadcast))


def _legacy_dims(op, a_shape, b_shape, axis):
    """Legacy broadcast of B onto A at `axis`: views (pre, n, post) and (n, 1)."""
    if _prod(b_shape) == 1:
        return (_prod(a_shape),), (1,)
    na, nb = len(a_shape), len(b_shape)
    enforce(na >= nb,
            "A.dim() >= B.dim(). %d vs %d. If you are doing broadcasting, input1 should "
            "have a smaller or equal number of dimensions. %s: A %s, B %s. Fix: swap the "
            "inputs or use broadcast=0 (numpy-style)." % (na, nb, op, _dims(a_shape),
                                                          _dims(b_shape)), input_index=1)
    if axis == -1:
        axis = na - nb
    enforce(0 <= axis <= na - nb,
            "Broadcast axis should be in the range of[0, A.ndim() - B.ndim()], but axis = "
            "%d. %s: A %s, B %s allow 0..%d. Fix: pass a valid axis." % (
                axis, op, _dims(a_shape), _dims(b_shape), na - nb))
    start, end = 0, nb - 1
    while start < nb and b_shape[start] == 1:
        start += 1
    while end >= start and b_shape[end] == 1:
        end -= 1
    for i in range(start, end + 1):
        enforce(a_shape[i + axis] == b_shape[i],
                "A.size(i + axis) == B.size(i). %d vs %d. Broadcast dimension mismatch. "
                "%s: B %s placed at axis %d of A %s. Fix: pick the axis where B's dims "
                "match A's." % (a_shape[i + axis], b_shape[i], op, _dims(b_shape), axis,
                                _dims(a_shape)), input_index=1)
    pre = _prod(a_shape[:axis + start])
    n = _prod(b_shape[start:end + 1])
    post = _prod(a_shape[axis + end + 1:])
    return (pre, n, post), (n, 1)


def _broadcast_shape(op, a_shape, b_shape):
    """Numpy-style multidirectional broadcast (Caffe2's message on a mismatch)."""
    out = []
    for k in range(1, max(len(a_shape), len(b_shape)) + 1):
        x = a_shape[-k] if k <= len(a_shape) else None
        y = b_shape[-k] if k <= len(b_shape) else None
        if x is None or y is None:
            out.append(x if y is None else y)
            continue
        enforce(x == y or x == 1 or y == 1,
                "A_dim == B_dim || A_dim == 1 || B_dim == 1. A_dim: %d,B_dim: %d. %s "
                "cannot broadcast A %s with B %s. Fix: make the trailing dims equal or "
                "1." % (x, y, op, _dims(a_shape), _dims(b_shape)))
        out.append(0 if x == 0 or y == 0 else max(x, y))
    return tuple(reversed(out))


def _plan(op, args, a_shape, b_shape):
    """(A view dims, B view dims, output shape) of a binary op."""
    legacy = bool(args.broadcast)
    axis = _resolve_axis(op, args, legacy)
    if legacy:
        a_dims, b_dims = _legacy_dims(op, tuple(a_shape), tuple(b_shape), axis)
        return a_dims, b_dims, tuple(a_shape)
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    return a_shape, b_shape, _broadcast_shape(op, a_shape, b_shape)


def _reduce_to(xp, g, dims):
    """Sum g (broadcast shape) down to `dims`, as the gradient of a broadcast."""
    lead = g.ndim - len(dims)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(dims) if d == 1 and g.shape[lead + i] != 1)
    if not axes:
        return xp.array(g, copy=True).reshape(dims)
    return g.sum(axis=axes, dtype=g.dtype).reshape(dims)


def _divide(xp, a, b):
    """C++ division: true division for floats, truncation toward zero for ints."""
    if a.dtype.kind == "f":
        return a / b
    enforce(not bool(xp.any(b == 0)), "Integer division by zero in Div (Caffe2 crashed "
                                      "with SIGFPE). Fix: keep integer divisors nonzero.")
    q = xp.floor_divide(a, b)
    fix = (xp.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return (q + fix.astype(q.dtype)).astype(a.dtype)


# --- Add / Sub / Mul / Div ------------------------------------------------------------

_BCAST_ARGS = [Arg("broadcast", "bool", False), Arg("axis", "int", -1),
               Arg("axis_str", "string", ""), Arg("order", "string", "NCHW")]

_BINARY = {
    "Add": lambda xp, a, b: a + b,
    "Sub": lambda xp, a, b: a - b,
    "Mul": lambda xp, a, b: a * b,
    "Div": _divide,
}


def _binary_checks(op, args, a, b):
    _dispatch(op, a, NUMERIC, 0)
    _same(op, b, a.dtype, 1)
    return _plan(op, args, a.shape, b.shape)


def _binary_shape(op):
    def shape(args, a, b):
        return [TensorInfo(_binary_checks(op, args, a, b)[2], a.dtype)]
    return shape


def _binary_kernel(op, fn):
    def kernel(ctx, args, a, b):
        a_dims, b_dims, out = _binary_checks(op, args, a, b)
        if args.broadcast:
            enforce(not ctx.inplace(1, 0),
                    "In-place is allowed only with the first tensor when legacy-"
                    "broadcasting. %s: output %s is input 1. Fix: write to input 0 or a "
                    "new blob." % (op, ctx.output_names[0]))
        for k, x in ((0, a), (1, b)):
            enforce(not ctx.inplace(k, 0) or tuple(x.shape) == out,
                    "C_dims == %s_dims. %s vs %s. %s in place on input %d needs the "
                    "broadcast output shape %s to equal that input's shape %s. Fix: "
                    "write to a new blob." % ("AB"[k], _dims(out), _dims(x.shape), op, k,
                                              _dims(out), _dims(x.shape)), input_index=k)
        return fn(ctx.xp, a.reshape(a_dims), b.reshape(b_dims)).reshape(out)
    return kernel


def _binary_gradient_kernel(op, kind):
    def kernel(ctx, args, *ins):
        xp = ctx.xp
        if len(ins) == 3 and kind == "Div":  # legacy DivGradient([B, C, dC])
            b, c, dc = ins
            a = c
            _dispatch(op, c, NUMERIC, 1)
            _same(op, b, c.dtype, 0)
            _same(op, dc, c.dtype, 2)
        else:
            dc, a, b = ins[:3]
            c = ins[3] if len(ins) > 3 else None
            _dispatch(op, a, NUMERIC, 1)
            _same(op, b, a.dtype, 2)
            _same(op, dc, a.dtype, 0)
            if c is not None:
                _same(op, c, a.dtype, 3)
        a_dims, b_dims, out = _plan(op, args, a.shape, b.shape)
        k_dc = 2 if len(ins) == 3 and kind == "Div" else 0
        enforce(tuple(dc.shape) == out,
                "%s: the output gradient dC has shape %s, expected the forward output "
                "shape %s. Fix: feed the gradient of the forward output." % (
                    op, _dims(dc.shape), _dims(out)), input_index=k_dc)
        full = _broadcast_shape(op, a_dims, b_dims)
        g = dc.reshape(full)
        av, bv = a.reshape(a_dims), b.reshape(b_dims)
        if kind == "Add":
            da, db = _reduce_to(xp, g, a_dims), _reduce_to(xp, g, b_dims)
        elif kind == "Sub":
            da, db = _reduce_to(xp, g, a_dims), -_reduce_to(xp, g, b_dims)
        elif kind == "Mul":
            da, db = _reduce_to(xp, g * bv, a_dims), _reduce_to(xp, g * av, b_dims)
        else:
            cv = c.reshape(full)
            da = _reduce_to(xp, _divide(xp, g, bv), a_dims)
            db = _reduce_to(xp, _divide(xp, -g * cv, bv), b_dims)
        return da.reshape(a.shape), db.reshape(b.shape)
    return kernel


def _binary_gradient_shape(args, dc, a, b, *c):
    return [TensorInfo(a.shape, a.dtype), TensorInfo(b.shape, a.dtype)]


def _div_gradient_shape(args, *ins):
    if len(ins) == 3:  # legacy [B, C, dC]: C stands in for A
        return [TensorInfo(ins[1].shape, ins[1].dtype), TensorInfo(ins[0].shape,
                                                                   ins[1].dtype)]
    return _binary_gradient_shape(args, *ins)


def _binary_maker(grad_type, with_output):
    def maker(g):
        ins = [g.GO(0), g.I(0), g.I(1)] + ([g.O(0)] if with_output else [])
        return [g.op(grad_type, ins, [g.GI(0), g.GI(1)])]
    return maker


for _name, _fn in _BINARY.items():
    _fwd = _schema(_name, inputs=2, outputs=1, args=_BCAST_ARGS,
                   allow_inplace={(0, 0), (1, 0)}, arg_check=_binary_arg_check(_name),
                   doc="C = A %s B elementwise; numpy-style broadcasting, or legacy "
                       "broadcast=1 of B onto A at axis." % _name)
    _fwd.shape(_binary_shape(_name))
    _fwd.kernel(_binary_kernel(_name, _fn))
    _fwd.gradient(_binary_maker(_name + "Gradient", _name == "Div"))
    _grad = _schema(_name + "Gradient", inputs=(3, 4) if _name == "Div" else 3,
                    outputs=2, args=_BCAST_ARGS,
                    arg_check=_binary_arg_check(_name + "Gradient"),
                    allow_inplace={(0, 0)} if _name == "Div" else {(0, 0), (0, 1)})
    _grad.shape(_div_gradient_shape if _name == "Div" else _binary_gradient_shape)
    _grad.kernel(_binary_gradient_kernel(_name + "Gradient", _name))


# --- Sum / Mean / Max / Min -----------------------------------------------------------

def _any_input_device(schema, op_device, n_in, n_out, input_devices):
    """Sum accumulates gradients from several devices: inputs may live anywhere."""
    return [None] * n_in, [op_device] * n_out


SUM = _schema("Sum", inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
              devices=_any_input_device,
              doc="Y = X_0 + X_1 + ...; all shapes identical; inputs may cross devices.")


def _sum_checks(op, xs, allowed=NUMERIC):
    _dispatch(op, xs[0], allowed, 0)
    out = _same_shapes(op, xs)
    for k, x in enumerate(xs[1:], 1):
        _same(op, x, xs[0].dtype, k)
    return out


@SUM.shape
def _(args, *xs):
    return [TensorInfo(_sum_checks("Sum", xs), xs[0].dtype)]


@SUM.kernel
def sum_(ctx, args, *xs):
    _sum_checks("Sum", xs)
    xp = ctx.xp
    # inputs on other devices: xp.asarray moves them to the op's device (CuPy)
    out = xp.array(xs[0], copy=True)
    for x in xs[1:]:
        out += xp.asarray(x)
    return out


@SUM.gradient
def _(g):
    for k in range(len(g.def_.input)):
        g.SetDense(k, g.GO(0))
    return []


MEAN = _schema("Mean", inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
               doc="Y = (X_0 + ... + X_{n-1}) * (1/n); float32/float64; same shapes.")


def _mean_checks(xs):
    enforce(xs[0].dtype in FLOATS,
            "Mean operator only supports 32-bit float or 64-bit double, but input was of "
            "type %s. Fix: cast input 0 to float32 or float64." % _cpp(xs[0].dtype),
            input_index=0)
    return _sum_checks("Mean", xs, FLOATS)


@MEAN.shape
def _(args, *xs):
    return [TensorInfo(_mean_checks(xs), xs[0].dtype)]


@MEAN.kernel
def mean(ctx, args, *xs):
    _mean_checks(xs)
    out = ctx.xp.array(xs[0], copy=True)
    for x in xs[1:]:
        out += x
    return out * _typed(out, 1.0 / len(xs))


@MEAN.gradient
def _(g):
    return [g.op("MeanGradient", [g.GO(0)], [g.GI(k) for k in range(len(g.def_.input))])]


MEAN_GRADIENT = _schema("MeanGradient", inputs=1, outputs=(1, INF),
                        allow_inplace={(0, 0)})


@MEAN_GRADIENT.shape
def _(args, dy):
    _mean_checks([dy])
    return [TensorInfo(dy.shape, dy.dtype)] * args._num_outputs


@MEAN_GRADIENT.kernel
def mean_gradient(ctx, args, dy):
    _mean_checks([dy])
    dx = dy * _typed(dy, 1.0 / ctx.num_outputs)
    return tuple(ctx.xp.array(dx, copy=True) for _ in range(ctx.num_outputs))


def _select(op, pick):
    schema = _schema(op, inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
                     doc="Elementwise %s of the inputs (float32, same shapes)." % op)

    def checks(xs):
        _same(op, xs[0], np.float32, 0)
        return _sum_checks(op, xs, F32)

    @schema.shape
    def _(args, *xs):
        return [TensorInfo(checks(xs), np.float32)]

    def kernel(ctx, args, *xs):
        checks(xs)
        out = ctx.xp.array(xs[0], copy=True)
        for x in xs[1:]:
            out = pick(ctx.xp, out, x)
        return out
    kernel.__name__ = op.lower()
    schema.kernel(kernel)

    @schema.gradient
    def _(g):
        ins = [g.O(0), g.GO(0)] + list(g.def_.input)
        return [g.op(op + "Gradient", ins, [g.GI(k) for k in range(len(g.def_.input))])]

    grad = _schema(op + "Gradient", inputs=(3, INF), outputs=(1, INF))

    @grad.shape
    def _(args, y, dy, *xs):
        return [TensorInfo(x.shape, np.float32) for x in xs]

    @grad.kernel
    def select_gradient(ctx, args, y, dy, *xs):
        name = op + "Gradient"
        enforce(ctx.num_outputs <= len(xs),
                "%s: %d outputs but only %d forward inputs X_i. Fix: one output per X_i."
                % (name, ctx.num_outputs, len(xs)))
        for k, v in enumerate((y, dy) + xs):
            _same(name, v, np.float32, k)
        _same_shapes(name, (y, dy) + xs[:ctx.num_outputs])
        return tuple((x == y).astype(np.float32) * dy for x in xs[:ctx.num_outputs])
    return schema


# Eigen's cwiseMax/cwiseMin keep the running value unless the new one wins strictly,
# so a NaN already in the running value stays and a NaN arriving later is dropped.
_select("Max", lambda xp, y, x: xp.where(y < x, x, y))
_select("Min", lambda xp, y, x: xp.where(x < y, x, y))


# --- Scale / Clip ---------------------------------------------------------------------

SCALE = _schema("Scale", inputs=1, outputs=1, args=[Arg("scale", "float", 1.0)],
                allow_inplace={(0, 0)}, doc="Y = scale * X (float32/float64).")


@SCALE.shape
def _(args, x):
    _dispatch("Scale", x, FLOATS)
    return [TensorInfo(x.shape, x.dtype)]


@SCALE.kernel
def scale(ctx, args, x):
    _dispatch("Scale", x, FLOATS)
    return x * _typed(x, args.scale)


@SCALE.gradient
def _(g):
    return [g.op("Scale", [g.GO(0)], [g.GI(0)])]  # forward `scale` is appended


_LOWEST = np.float32(np.finfo(np.float32).min)
_HIGHEST = np.float32(np.finfo(np.float32).max)
_CLIP_ARGS = [Arg("min", "float"), Arg("max", "float")]


def _clip_bounds(args):
    low = _LOWEST if args.min is None else np.float32(args.min)
    high = _HIGHEST if args.max is None else np.float32(args.max)
    return low, high


CLIP = _schema("Clip", inputs=1, outputs=1, args=_CLIP_ARGS, allow_inplace={(0, 0)},
               doc="Y = min(max(X, min), max), float32; absent bounds are the float "
                   "range (so +-inf clip to +-FLT_MAX, as in Caffe2).")


@CLIP.shape
def _(args, x):
    _same("Clip", x, np.float32, 0)
    return [TensorInfo(x.shape, x.dtype)]


@CLIP.kernel
def clip(ctx, args, x):
    _same("Clip", x, np.float32, 0)
    xp = ctx.xp
    low, high = _clip_bounds(args)
    y = xp.where(x < low, low, x)  # Eigen cwiseMax: a NaN bound leaves X alone
    return xp.where(high < y, high, y).astype(np.float32)


@CLIP.gradient
def _(g):
    return [g.op("ClipGradient", [g.O(0), g.GO(0)], [g.GI(0)])]


CLIP_GRADIENT = _schema("ClipGradient", inputs=2, outputs=1, args=_CLIP_ARGS,
                        allow_inplace={(1, 0)})


@CLIP_GRADIENT.shape
def _(args, y, dy):
    return [TensorInfo(dy.shape, np.float32)]


@CLIP_GRADIENT.kernel
def clip_gradient(ctx, args, y, dy):
    _same("ClipGradient", y, np.float32, 0)
    _same("ClipGradient", dy, np.float32, 1)
    _same_shapes("ClipGradient", (y, dy))
    low, high = _clip_bounds(args)
    inside = (y > low) & (y < high)  # strict: values sitting on a bound get 0
    return ctx.xp.where(inside, dy, np.float32(0)).astype(np.float32)


# --- unary math -----------------------------------------------------------------------

def _unary(op, fn, dtypes, inplace=True, doc=""):
    schema = _schema(op, inputs=1, outputs=1, allow_inplace={(0, 0)} if inplace else (),
                     doc=doc)

    @schema.shape
    def _(args, x):
        _dispatch(op, x, dtypes)
        return [TensorInfo(x.shape, x.dtype)]

    def kernel(ctx, args, x):
        _dispatch(op, x, dtypes)
        return fn(ctx.xp, x).astype(x.dtype, copy=False)
    kernel.__name__ = op.lower()
    schema.kernel(kernel)
    return schema


NEGATIVE = _unary("Negative", lambda xp, x: -x, NUMERIC, doc="Y = -X.")
ABS = _unary("Abs", lambda xp, x: xp.abs(x), F32, inplace=False, doc="Y = |X|.")
EXP = _unary("Exp", lambda xp, x: xp.exp(x), F32, doc="Y = exp(X).")
LOG = _unary("Log", lambda xp, x: xp.log(x), F32, doc="Y = ln(X).")
SQRT = _unary("Sqrt", lambda xp, x: xp.sqrt(x), FLOATS, doc="Y = sqrt(X).")
SQR = _unary("Sqr", lambda xp, x: x * x, F32, doc="Y = X * X.")

NEGATIVE.gradient(lambda g: [g.op("Negative", [g.GO(0)], [g.GI(0)])])
ABS.gradient(lambda g: [g.op("AbsGradient", [g.I(0), g.GO(0)], [g.GI(0)])])
EXP.gradient(lambda g: [g.op("Mul", [g.O(0), g.GO(0)], [g.GI(0)])])
LOG.gradient(lambda g: [g.op("Div", [g.GO(0), g.I(0)], [g.GI(0)])])


@SQRT.gradient
def _(g):
    return [g.op("Scale", [g.GO(0)], [g.GI(0)], scale=0.5),
            g.op("Div", [g.GI(0), g.O(0)], [g.GI(0)])]


@SQR.gradient
def _(g):
    # Caffe2 scales the incoming output gradient in place, then multiplies.
    return [g.op("Scale", [g.GO(0)], [g.GO(0)], scale=2.0),
            g.op("Mul", [g.GO(0), g.I(0)], [g.GI(0)])]


ABS_GRADIENT = _schema("AbsGradient", inputs=2, outputs=1)


@ABS_GRADIENT.shape
def _(args, x, dy):
    return [TensorInfo(dy.shape, np.float32)]


@ABS_GRADIENT.kernel
def abs_gradient(ctx, args, x, dy):
    _same("AbsGradient", x, np.float32, 0)
    _same("AbsGradient", dy, np.float32, 1)
    _same_shapes("AbsGradient", (x, dy))
    xp = ctx.xp
    return xp.where(x == 0, np.float32(0), xp.where(x > 0, dy, -dy)).astype(np.float32)


# --- Pow ------------------------------------------------------------------------------

def _pow_arg_check(args):
    _arg_enforce(args._num_inputs == 2 or args.has("exponent"),
                 "Only a tensor with an argument or two input tensors are supported as "
                 "input to pow operator. Fix: pass exponent=<float> or a second input.")
    if args._num_inputs == 2:
        return _resolve_axis("Pow", args, bool(args.broadcast), strict=True)
    return -1


POW = _schema("Pow", inputs=(1, 2), outputs=1,
              args=[Arg("exponent", "float")] + _BCAST_ARGS,
              allow_inplace={(0, 0), (1, 0)}, arg_check=_pow_arg_check,
              doc="Y = X ** exponent (arg), or X ** E (second input; legacy broadcast=1 "
                  "of E onto X). float32.")


def _pow_checks(args, x, e=None):
    op = "Pow"
    _dispatch(op, x, F32, 0)
    if e is None:
        return None
    _same(op, e, x.dtype, 1)
    axis = _pow_arg_check(args)
    if not args.broadcast:
        enforce(tuple(x.shape) == tuple(e.shape),
                "A.sizes() == B.sizes(). %s vs %s. Dimension mismatch - did you forget to "
                "set broadcast=1? Fix: set broadcast=1 (legacy, E onto X) or feed equal "
                "shapes." % (_dims(x.shape), _dims(e.shape)), input_index=1)
        return tuple(x.shape), tuple(e.shape)
    return _legacy_dims(op, tuple(x.shape), tuple(e.shape), axis)


@POW.shape
def _(args, x, e=None):
    _pow_checks(args, x, e)
    return [TensorInfo(x.shape, x.dtype)]


@POW.kernel
def pow_(ctx, args, x, e=None):
    plan = _pow_checks(args, x, e)
    xp = ctx.xp
    if e is None:
        return xp.power(x, np.float32(args.exponent)).astype(np.float32)
    enforce(not (args.broadcast and ctx.inplace(1, 0)),
            "In-place is allowed only with the first tensor when broadcasting. Pow: "
            "output %s is the exponent input. Fix: write to input 0 or a new blob."
            % ctx.output_names[0])
    return xp.power(x.reshape(plan[0]), e.reshape(plan[1])).reshape(x.shape)


@POW.gradient(copy_args=False)
def _(g):
    if g.has_arg("exponent"):  # Caffe2 keys on the argument, even with 2 inputs
        exponent = np.float32(g.arg("exponent"))
        if g.I(0) != g.O(0):
            reduced = exponent - np.float32(1)
        else:  # in place: Y ** ((e-1)/e) == X ** (e-1)
            enforce(abs(float(exponent)) > 1e-12,
                    "std::fabs(exponent) > kEps. In-place Pow gradient needs a nonzero "
                    "exponent. Fix: write Pow's output to a new blob.")
            reduced = (exponent - np.float32(1)) / exponent
        return [g.op("Pow", [g.I(0)], [g.GI(0)], exponent=float(np.float32(reduced))),
                g.op("Mul", [g.GI(0), g.GO(0)], [g.GI(0)]),
                g.op("Scale", [g.GI(0)], [g.GI(0)], scale=float(exponent))]
    enforce(g.I(0) != g.O(0) and g.I(1) != g.O(0),
            "Gradient computation cannot be carried out if Pow uses in-place computation: "
            "Pow(%s, %s) -> %s. Fix: write Pow's output to a new blob." % (
                g.I(0), g.I(1), g.O(0)))
    x, e, y, dy = g.I(0), g.I(1), g.O(0), g.GO(0)
    de, dx = g.GI(1), g.GI(0)
    pre = de + "_autogen_pre_red"
    bcast = {}
    if g.has_arg("broadcast"):
        for name, default in (("broadcast", 0), ("axis", -1), ("axis_str", ""),
                              ("order", "NCHW")):
            value = g.arg(name)
            bcast[name] = default if value is None else value
    ops = [g.op("ConstantFill", [e], [de], value=1.0),
           g.op("Sub", [e, de], [de]),
           g.op("Pow", [x, de], [dx], **bcast),
           g.op("Mul", [dx, dy], [dx]),
           g.op("Mul", [dx, e], [dx], **bcast),
           g.op("Log", [x], [pre]),
           g.op("Mul", [pre, y], [pre])]
    if bcast:
        reduce_args = {k: bcast[k] for k in ("axis", "axis_str", "order")}
        ops += [g.op("Mul", [pre, dy], [pre]),
                g.op("SumReduceLike", [pre, e], [de], **reduce_args)]
    else:
        ops.append(g.op("Mul", [pre, dy], [de]))
    return ops


SUM_REDUCE_LIKE = _schema(
    "SumReduceLike", inputs=2, outputs=1,
    args=[Arg("axis", "int", -1), Arg("axis_str", "string", ""),
          Arg("order", "string", "NCHW")],
    arg_check=lambda args: _resolve_axis("SumReduceLike", args, legacy=True),
    doc="Sum A down to B's shape (the reverse of legacy broadcasting B onto A).")


def _sum_reduce_like_checks(args, a, b):
    op = "SumReduceLike"
    _dispatch(op, a, FLOATS, 0)
    axis = _resolve_axis(op, args, legacy=True)
    if tuple(a.shape) == tuple(b.shape):
        return None
    return _legacy_dims(op, tuple(a.shape), tuple(b.shape), axis)


@SUM_REDUCE_LIKE.shape
def _(args, a, b):
    _sum_reduce_like_checks(args, a, b)
    return [TensorInfo(b.shape, a.dtype)]


@SUM_REDUCE_LIKE.kernel
def sum_reduce_like(ctx, args, a, b):
    plan = _sum_reduce_like_checks(args, a, b)
    if plan is None:
        return ctx.xp.array(a, copy=True)
    a_dims, b_dims = plan
    return _reduce_to(ctx.xp, a.reshape(a_dims), b_dims).reshape(b.shape)


# --- WeightedSum / ScatterWeightedSum -------------------------------------------------

WEIGHTED_SUM = _schema(
    "WeightedSum", inputs=(2, INF), outputs=1, input_check=lambda n: n % 2 == 0,
    allow_inplace={(0, 0)},
    doc="Y = sum_i w_i * X_i over inputs X_0, w_0, X_1, w_1, ... (float32; 1-element "
        "float32 weights); in place only on X_0.")


def _weighted_sum_checks(xs):
    op = "WeightedSum"
    _same(op, xs[0], np.float32, 0)
    _same(op, xs[1], np.float32, 1)
    _one_element(op, xs[1], 1, 0)
    if _prod(xs[0].shape) == 0:
        return False  # Caffe2 returns the empty output before looking further
    size = _prod(xs[0].shape)
    for k in range(2, len(xs), 2):
        x, w = xs[k], xs[k + 1]
        _same(op, x, np.float32, k)
        enforce(_prod(x.shape) == size,
                "X%d.numel() == size. %d vs %d. WeightedSum input #%d has %d elements, "
                "expected %d (those of X_0 %s). Fix: feed X_i with X_0's element count."
                % (k // 2, _prod(x.shape), size, k, _prod(x.shape), size,
                   _dims(xs[0].shape)), input_index=k)
        _same(op, w, np.float32, k + 1)
        _one_element(op, w, k + 1, k // 2)
    return True


@WEIGHTED_SUM.shape
def _(args, *xs):
    _weighted_sum_checks(xs)
    return [TensorInfo(xs[0].shape, np.float32)]


@WEIGHTED_SUM.kernel
def weighted_sum(ctx, args, *xs):
    for k in range(2, len(xs), 2):
        enforce(not ctx.inplace(k, 0),
                "Input #%d is the same as output. If you want to do in-place updates, put "
                "the output as input #0." % k, input_index=k)
    if not _weighted_sum_checks(xs):
        return ctx.xp.empty(xs[0].shape, np.float32)
    out = xs[0] * xs[1].reshape(())
    for k in range(2, len(xs), 2):
        out = out + xs[k + 1].reshape(()) * xs[k].reshape(out.shape)
    return out


@WEIGHTED_SUM.gradient
def _(g):
    n = len(g.def_.input)
    ins = [g.GO(0)] + list(g.def_.input)
    outs = [g.GI(i) for i in range(0, n, 2)]
    if g.arg("grad_on_w", 0):
        outs += [g.GI(i + 1) for i in range(0, n, 2)]
    return [g.op("WeightedSumGradient", ins, outs)]


WEIGHTED_SUM_GRADIENT = _schema(
    "WeightedSumGradient", inputs=(3, INF), outputs=(1, INF),
    input_check=lambda n: n % 2 == 1, args=[Arg("grad_on_w", "bool", False)])


def _wsg_count(args, n_in):
    return n_in - 1 if args.grad_on_w else n_in // 2


@WEIGHTED_SUM_GRADIENT.shape
def _(args, dy, *xs):
    pairs = len(xs) // 2
    infos = [TensorInfo(dy.shape, np.float32)] * pairs
    if args.grad_on_w:
        infos += [TensorInfo((1,), np.float32)] * pairs
    return infos


@WEIGHTED_SUM_GRADIENT.kernel
def weighted_sum_gradient(ctx, args, dy, *xs):
    op = "WeightedSumGradient"
    want = _wsg_count(args, len(xs) + 1)
    enforce(ctx.num_outputs == want,
            "OutputSize() == output_size. %d vs %d. %s with grad_on_w=%d and %d inputs "
            "needs %d outputs. Fix: list one X_i gradient per pair%s." % (
                ctx.num_outputs, want, op, int(args.grad_on_w), len(xs) + 1, want,
                " plus one w_i gradient per pair" if args.grad_on_w else ""))
    _same(op, dy, np.float32, 0)
    size = _prod(dy.shape)
    for k in range(0, len(xs), 2):
        _same(op, xs[k + 1], np.float32, k + 2)
        _one_element(op, xs[k + 1], k + 2, k // 2)
        if args.grad_on_w:
            _same(op, xs[k], np.float32, k + 1)
            enforce(_prod(xs[k].shape) == size,
                    "cur_X.numel() == size. %d vs %d. %s: X at input %d must have dY's "
                    "element count. Fix: pass the forward inputs unchanged." % (
                        _prod(xs[k].shape), size, op, k + 1), input_index=k + 1)
    xp = ctx.xp
    dxs = [dy * xs[k + 1].reshape(()) for k in range(0, len(xs), 2)]
    dws = []
    if args.grad_on_w:
        flat = dy.reshape(-1)
        dws = [xp.dot(flat, xs[k].reshape(-1)).astype(np.float32).reshape(1)
               for k in range(0, len(xs), 2)]
    return tuple(dxs + dws)


SCATTER_WEIGHTED_SUM = _schema(
    "ScatterWeightedSum", inputs=(5, INF), outputs=1,
    input_check=lambda n: (n - 3) % 2 == 0,
    enforce_inplace={(0, 0)}, should_not_do_gradient=True,
    doc="X_0[idx] = w_0 * X_0[idx] + sum_k w_k * X_k[i] for inputs X_0, w_0, INDICES, "
        "X_1, w_1, ...; duplicates are scaled and accumulated once per occurrence.")


def _scatter_checks(xs):
    op = "ScatterWeightedSum"
    x0, w0, idx = xs[0], xs[1], xs[2]
    enforce(x0.dtype in FLOATS,
            "Unsupported type of tensor X_0: %s. Expected float32/float64, found %s. Fix: "
            "cast X_0." % (_cpp(x0.dtype), x0.dtype.name), input_index=0)
    _dispatch(op, idx, INDEX, 2)
    if _prod(x0.shape) == 0:
        return None
    enforce(len(x0.shape) > 0, "X0.dim() > 0. X0 has to be at least the vector. Found a "
                               "0-d X_0. Fix: reshape X_0 to (N, ...).", input_index=0)
    _one_element(op, w0, 1, 0)
    _same(op, w0, np.float32, 1)
    n = int(x0.shape[0])
    block = _prod(x0.shape) // n
    k = _prod(idx.shape)
    for j in range(3, len(xs), 2):
        x, w = xs[j], xs[j + 1]
        enforce(_prod(x.shape) == block * k,
                "X.numel() == block_size * K. %d vs %d. %s input %d must hold one row of "
                "%d values per index (%d indices). Fix: feed a (%d, ...) update." % (
                    _prod(x.shape), block * k, op, j, block, k, k), input_index=j)
        _one_element(op, w, j + 1, (j - 1) // 2)
        _same(op, x, x0.dtype, j)
        _same(op, w, np.float32, j + 1)
    return n, block


@SCATTER_WEIGHTED_SUM.shape
def _(args, *xs):
    _scatter_checks(xs)
    return [TensorInfo(xs[0].shape, xs[0].dtype)]


@SCATTER_WEIGHTED_SUM.kernel
def scatter_weighted_sum(ctx, args, *xs):
    sizes = _scatter_checks(xs)
    x0 = xs[0]
    if sizes is None:
        return x0
    n, block = sizes
    host = np.asarray(ctx.backend.to_host(xs[2])).reshape(-1).astype(np.int64)
    bad = np.nonzero((host < 0) | (host >= n))[0]
    if bad.size:
        enforce(False, "Index out of bounds: %d, range 0 to %d. ScatterWeightedSum: "
                       "INDICES[%d] must address a row of X_0 (shape %s); nothing was "
                       "updated. Fix: keep indices in [0, %d)." % (
                           host[bad[0]], n, bad[0], _dims(x0.shape), n), input_index=2)
    xp = ctx.xp
    data = x0.reshape(n, block)
    if isinstance(data, np.ndarray) and not data.flags.writeable:
        data = data.copy()
    # Apply occurrence by occurrence: rank r holds the r-th repeat of each index, so
    # each round touches distinct rows and rounds follow Caffe2's sequential order.
    order = np.argsort(host, kind="stable")
    ranks = np.empty_like(order)
    first = np.searchsorted(host[order], host[order], side="left")
    ranks[order] = np.arange(order.size) - first
    rounds = [np.nonzero(ranks == r)[0] for r in range(int(ranks.max()) + 1)] \
        if order.size else []
    w0 = np.float32(np.asarray(ctx.backend.to_host(xs[1])).reshape(()))
    if w0 != np.float32(1.0):
        for sel in rounds:
            rows = xp.asarray(host[sel])
            data[rows] *= _typed(data, w0)
    for j in range(3, len(xs), 2):
        x = xs[j].reshape(-1, block)
        w = _typed(data, np.asarray(ctx.backend.to_host(xs[j + 1])).reshape(()))
        for sel in rounds:
            rows = xp.asarray(host[sel])
            data[rows] += w * x[xp.asarray(sel)]
    return data.reshape(x0.shape)


def _quiet(fn):
    """Caffe2 produced inf/NaN silently; keep numpy from warning about them."""
    @functools.wraps(fn)
    def run(*args):
        with np.errstate(all="ignore"):
            return fn(*args)
    return run


for _s in _FAMILY:
    _s.kernels = {backend: _quiet(fn) for backend, fn in _s.kernels.items()}
