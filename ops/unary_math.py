"""Negative, Abs, Exp, Log, Sqrt, Sqr, Pow (by `exponent`, or by a second tensor with
legacy broadcasting) and AbsGradient. Imports numpy, the registry, graphnet.errors
and ops._common only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import Arg, OpSchema, TensorInfo, enforce

from ._common import (BCAST_ARGS, F32, FLOATS, NUMERIC, dims_text, expect_dtype,
                      expect_dtypes, expect_f32_pair, legacy_dims, resolve_axis,
                      shaped_like)


def _unary(op, fn, dtypes, inplace=True, doc=""):
    schema = OpSchema(op, inputs=1, outputs=1, allow_inplace={(0, 0)} if inplace else (),
                      doc=doc)

    @schema.shape
    def _(args, x):
        expect_dtypes(op, x, dtypes)
        return [TensorInfo(x.shape, x.dtype)]

    def kernel(ctx, args, x):
        expect_dtypes(op, x, dtypes)
        return fn(ctx.xp, x).astype(x.dtype, copy=False)
    kernel.__name__ = op.lower()
    schema.kernel(kernel)
    return schema


NEGATIVE = _unary("Negative", lambda xp, x: -x, NUMERIC, doc="Y = -X.")
ABS = _unary("Abs", lambda xp, x: xp.abs(x), (F32,), inplace=False, doc="Y = |X|.")
EXP = _unary("Exp", lambda xp, x: xp.exp(x), (F32,), doc="Y = exp(X).")
LOG = _unary("Log", lambda xp, x: xp.log(x), (F32,), doc="Y = ln(X).")
SQRT = _unary("Sqrt", lambda xp, x: xp.sqrt(x), FLOATS, doc="Y = sqrt(X).")
SQR = _unary("Sqr", lambda xp, x: x * x, (F32,), doc="Y = X * X.")

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


ABS_GRADIENT = OpSchema("AbsGradient", inputs=2, outputs=1)
ABS_GRADIENT.shape(shaped_like(1, np.float32))


@ABS_GRADIENT.kernel
def abs_gradient(ctx, args, x, dy):
    expect_f32_pair("AbsGradient", x, dy)
    xp = ctx.xp
    return xp.where(x == 0, np.float32(0), xp.where(x > 0, dy, -dy)).astype(np.float32)


# --- Pow ------------------------------------------------------------------------------

def _pow_arg_check(args):
    if not (args._num_inputs == 2 or args.has("exponent")):
        raise ArgumentError(
            "Only a tensor with an argument or two input tensors are supported as input "
            "to pow operator. Fix: pass exponent=<float> or a second input.")
    if args._num_inputs == 2:
        return resolve_axis("Pow", args, bool(args.broadcast), strict=True)
    return -1


POW = OpSchema("Pow", inputs=(1, 2), outputs=1,
               args=[Arg("exponent", "float")] + BCAST_ARGS,
               allow_inplace={(0, 0), (1, 0)}, arg_check=_pow_arg_check,
               doc="Y = X ** exponent (arg), or X ** E (second input; legacy broadcast=1 "
                   "of E onto X). float32.")


def _pow_checks(args, x, e=None):
    op = "Pow"
    expect_dtypes(op, x, (F32,), 0)
    if e is None:
        return None
    expect_dtype(op, e, x.dtype, 1)
    axis = _pow_arg_check(args)
    if not args.broadcast:
        if tuple(x.shape) != tuple(e.shape):
            enforce(False,
                    "A.sizes() == B.sizes(). %s vs %s. Dimension mismatch - did you forget to "
                    "set broadcast=1? Fix: set broadcast=1 (legacy, E onto X) or feed equal "
                    "shapes." % (dims_text(x.shape), dims_text(e.shape)), input_index=1)
        return tuple(x.shape), tuple(e.shape)
    return legacy_dims(op, tuple(x.shape), tuple(e.shape), axis)


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
    if args.broadcast and ctx.inplace(1, 0):
        enforce(False,
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
    if not (g.I(0) != g.O(0) and g.I(1) != g.O(0)):
        enforce(False,
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
