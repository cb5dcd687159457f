"""Sum, Mean, Max, Min across inputs of one shape (no broadcasting) and MeanGradient,
MaxGradient, MinGradient. Imports numpy, the registry and ops._common only.
"""

import numpy as np

from graphnet.registry import INF, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._fused import vm_helper, vm_kernel
from ._common import (F32, FLOATS, NUMERIC, cpp_float, cpp_name, expect_dtype,
                      expect_dtypes, expect_same_shapes)


def _any_input_device(schema, op_device, n_in, n_out, input_devices):
    """Sum accumulates gradients from several devices: inputs may live anywhere."""
    return [None] * n_in, [op_device] * n_out


def _sum_checks(op, xs, allowed=NUMERIC):
    expect_dtypes(op, xs[0], allowed, 0)
    out = expect_same_shapes(op, xs)
    for k, x in enumerate(xs[1:], 1):
        expect_dtype(op, x, xs[0].dtype, k)
    return out


# --- Sum ------------------------------------------------------------------------------

SUM = OpSchema("Sum", inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
               devices=_any_input_device,
               doc="Y = X_0 + X_1 + ...; all shapes identical; inputs may cross devices.")


@SUM.shape
def _(args, *xs):
    return [TensorInfo(_sum_checks("Sum", xs), xs[0].dtype)]


@SUM.kernel
def sum_(ctx, args, *xs):
    _sum_checks("Sum", xs)
    xp = ctx.xp
    # inputs on other devices: xp.asarray moves them to the op's device (CuPy)
    if len(xs) == 1:
        return xp.array(xs[0], copy=True)
    # one call, not a copy and an add (asarray: numpy gives a scalar for 0-d inputs)
    out = xp.asarray(xp.add(xp.asarray(xs[0]), xp.asarray(xs[1])))
    for x in xs[2:]:
        out += xp.asarray(x)
    return out


@SUM.gradient
def _(g):
    for k in range(len(g.def_.input)):
        g.SetDense(k, g.GO(0))
    return []


# --- Mean -----------------------------------------------------------------------------

MEAN = OpSchema("Mean", inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
                doc="Y = (X_0 + ... + X_{n-1}) * (1/n); float32/float64; same shapes.")


def _mean_checks(xs):
    if xs[0].dtype not in FLOATS:
        enforce(False,
                "Mean operator only supports 32-bit float or 64-bit double, but input was of "
                "type %s. Fix: cast input 0 to float32 or float64." % cpp_name(xs[0].dtype),
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
    return out * cpp_float(out, 1.0 / len(xs))


@MEAN.gradient
def _(g):
    return [g.op("MeanGradient", [g.GO(0)], [g.GI(k) for k in range(len(g.def_.input))])]


MEAN_GRADIENT = OpSchema("MeanGradient", inputs=1, outputs=(1, INF),
                         allow_inplace={(0, 0)})


@MEAN_GRADIENT.shape
def _(args, dy):
    _mean_checks([dy])
    return [TensorInfo(dy.shape, dy.dtype)] * args._num_outputs


@MEAN_GRADIENT.kernel
def mean_gradient(ctx, args, dy):
    _mean_checks([dy])
    dx = dy * cpp_float(dy, 1.0 / ctx.num_outputs)
    return tuple(ctx.xp.array(dx, copy=True) for _ in range(ctx.num_outputs))


# --- Max / Min ------------------------------------------------------------------------

def _select(op, pick):
    schema = OpSchema(op, inputs=(1, INF), outputs=1, allow_inplace={(0, 0)},
                      doc="Elementwise %s of the inputs (float32, same shapes)." % op)

    def checks(xs):
        expect_dtype(op, xs[0], F32, 0)
        return _sum_checks(op, xs, (F32,))

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

    grad = OpSchema(op + "Gradient", inputs=(3, INF), outputs=(1, INF))

    @grad.shape
    def _(args, y, dy, *xs):
        return [TensorInfo(x.shape, np.float32) for x in xs]

    @grad.kernel
    def select_gradient(ctx, args, y, dy, *xs):
        name = op + "Gradient"
        if not (ctx.num_outputs <= len(xs)):
            enforce(False,
                    "%s: %d outputs but only %d forward inputs X_i. Fix: one output per X_i."
                    % (name, ctx.num_outputs, len(xs)))
        for k, v in enumerate((y, dy) + xs):
            expect_dtype(name, v, F32, k)
        expect_same_shapes(name, (y, dy) + xs[:ctx.num_outputs])
        return tuple((x == y).astype(np.float32) * dy for x in xs[:ctx.num_outputs])
    return schema


# Eigen's cwiseMax/cwiseMin keep the running value unless the new one wins strictly,
# so a NaN already in the running value stays and a NaN arriving later is dropped.
MAX = _select("Max", lambda xp, y, x: xp.where(y < x, x, y))
MIN = _select("Min", lambda xp, y, x: xp.where(x < y, x, y))


# --- fused lowering (graphnet.executors.fused) -----------------------------------------

@vm_helper
def _add(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + b[i]


@vm_kernel
def sum_vm(c, p, f4, i4, i8):
    """y = ((x0 + x1) + x2) ..., numpy's order (n, y, count, x offsets)."""
    n, y, count = c[p], c[p + 1], c[p + 2]
    if count == 2:  # gradient accumulation: one vectorized pass
        a, b = c[p + 3], c[p + 4]
        _add(f4[a:a + n], f4[b:b + n], f4[y:y + n])
        return True
    for i in range(n):
        total = f4[c[p + 3] + i]
        for k in range(1, count):
            total = total + f4[c[p + 3 + k] + i]
        f4[y + i] = total
    return True


@SUM.lowering
def _lower_sum(f):
    if not (f.all_dtypes(np.float32) and f.same_sizes()):
        return False
    f.emit(sum_vm, f.size(), f.out(0), len(f.in_info),
           *[f.off(k) for k in range(len(f.in_info))])
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Sum")
