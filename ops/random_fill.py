"""UniformFill, UniformIntFill, GaussianFill, XavierFill, MSRAFill on the FillerOp rules
of fill.py, drawn from the op's seeded `ctx.rng`; no gradient. Imports numpy, the
registry, graphnet.errors, ops._common and ops.fill only.
"""

import numpy as np

from graphnet.errors import ArgumentError, enforce
from graphnet.registry import Arg

from ._common import fits, numel
from .fill import expect_fill_type, filler_schema, out_shape, place

# --- UniformFill / UniformIntFill ---------------------------------------------------


def _uniform_setup(args, op):
    """With 3 inputs min/max come from inputs 1 and 2; else min < max is required."""
    if op.type == "UniformIntFill":
        fits(args.min, np.int32, "min")
        fits(args.max, np.int32, "max")
    if len(op.input) == 3:
        for name in ("min", "max"):
            if args.has(name):
                raise ArgumentError("Cannot set both %s arg and %s input blob (%s reads "
                                    "%s from input '%s'). Fix: drop the `%s` argument."
                                    % (name, name, op.type, name,
                                       op.input[1 if name == "min" else 2], name))
    elif not args.min < args.max:
        raise ArgumentError("min_ < max_. %s vs %s. Max value should be bigger than min "
                            "value. Fix: pass min < max." % (args.min, args.max))


def _uniform_schema(op_type, kind, dtype):
    return filler_schema(
        op_type, out_dtype=np.dtype(dtype), inputs=(0, 3),
        input_check=lambda n: n in (0, 1, 3), setup=_uniform_setup,
        args=[Arg("min", kind, 0 if kind == "int" else 0.0),
              Arg("max", kind, 1 if kind == "int" else 1.0)],
        doc="Uniform samples in [min, max] (0, 1 or 3 inputs: shape, min, max).")


UNIFORM_FILL = _uniform_schema("UniformFill", "float", np.float32)
UNIFORM_INT_FILL = _uniform_schema("UniformIntFill", "int", np.int32)


@UNIFORM_FILL.kernel
def uniform_fill(ctx, args, *inputs):
    return _uniform(ctx, args, inputs, lambda lo, hi, shape: ctx.rng.uniform(lo, hi, shape))


@UNIFORM_INT_FILL.kernel
def uniform_int_fill(ctx, args, *inputs):
    return _uniform(ctx, args, inputs, lambda lo, hi, shape: ctx.rng.integers(
        lo, hi, shape, dtype=np.int64, endpoint=True))


def _uniform(ctx, args, inputs, draw):
    shape = out_shape(ctx, args, inputs[:1])
    dtype = args.out_dtype
    lo, hi = args.min, args.max
    if len(inputs) == 3:
        for k, name in ((1, "min"), (2, "max")):
            if inputs[k].size != 1:
                enforce(False, "1 == Input(%d).numel(). %s blob must be scalar, "
                        "found %d elements. Fix: feed a one-element tensor."
                        % (k, name, inputs[k].size), input_index=k)
            expect_fill_type(inputs[k], dtype, "%s input of %s" % (name, ctx.op.type), k)
        lo, hi = (np.asarray(ctx.backend.to_host(x)).reshape(-1)[0].item()
                  for x in inputs[1:])
        if lo > hi:  # Caffe2 then empties the first dimension
            if not (len(shape) >= 1):
                enforce(False, "%s: min > max empties the output's first "
                        "dimension, but the output is 0-d. Fix: give it a dimension."
                        % ctx.op.type)
            return ctx.xp.empty((0,) + shape[1:], dtype=dtype)
    return place(ctx, np.asarray(draw(lo, hi, shape)).astype(dtype))


# --- GaussianFill -------------------------------------------------------------------

GAUSSIAN_FILL = filler_schema("GaussianFill", args=[Arg("mean", "float", 0.0),
                                                    Arg("std", "float", 1.0)],
                              doc="Normal samples N(mean, std).")


@GAUSSIAN_FILL.kernel
def gaussian_fill(ctx, args, *inputs):
    shape = out_shape(ctx, args, inputs)
    if not (args.std >= 0):
        enforce(False, "stdv_in must be positive: %g (GaussianFill expected std >= "
                "0, found %g). Fix: pass a non-negative std." % (args.std, args.std))
    return place(ctx, ctx.rng.normal(args.mean, args.std, shape).astype(np.float32))


# --- XavierFill / MSRAFill ----------------------------------------------------------

XAVIER_FILL = filler_schema("XavierFill", doc="U(-s, s), s = sqrt(3 / fan_in), "
                                              "fan_in = numel / shape[0].")
MSRA_FILL = filler_schema("MSRAFill", doc="N(0, sqrt(2 / fan_out)), fan_out = numel / "
                                          "shape[1].")


@XAVIER_FILL.kernel
def xavier_fill(ctx, args, *inputs):
    shape = out_shape(ctx, args, inputs)
    enforce(len(shape) >= 1, "XavierFill: fan_in = numel / shape[0] needs an output with "
            "at least 1 dimension, found a 0-d shape. Fix: give `shape` a dimension.")
    size = numel(shape)
    if size == 0:  # nothing to draw (Caffe2 divided by zero here)
        return ctx.xp.empty(shape, dtype=np.float32)
    scale = np.sqrt(np.float32(3) / np.float32(size // shape[0]))
    return place(ctx, ctx.rng.uniform(-scale, scale, shape).astype(np.float32))


@MSRA_FILL.kernel
def msra_fill(ctx, args, *inputs):
    shape = out_shape(ctx, args, inputs)
    if not (len(shape) >= 2):
        enforce(False, "MSRAFill: fan_out = numel / shape[1] needs an output with "
                "at least 2 dimensions, found shape %s. Fix: give `shape` two dimensions."
                % (shape,))
    size = numel(shape)
    if size == 0:
        return ctx.xp.empty(shape, dtype=np.float32)
    scale = np.sqrt(np.float32(2) / np.float32(size // shape[1]))
    return place(ctx, ctx.rng.normal(0.0, scale, shape).astype(np.float32))
