"""Scale (Y = scale * X) and Clip (Y = X clamped to [min, max]) with ClipGradient.
Imports numpy, the registry and ops._common only.
"""

import numpy as np

from graphnet.registry import Arg, OpSchema, TensorInfo, declare_graph_safe

from ._fused import vm_helper, vm_kernel
from ._common import (F32, FLOATS, cpp_float, expect_dtype, expect_dtypes, expect_f32_pair,
                      shaped_like)

# --- Scale ----------------------------------------------------------------------------

SCALE = OpSchema("Scale", inputs=1, outputs=1, args=[Arg("scale", "float", 1.0)],
                 allow_inplace={(0, 0)}, doc="Y = scale * X (float32/float64).")


@SCALE.shape
def _(args, x):
    expect_dtypes("Scale", x, FLOATS)
    return [TensorInfo(x.shape, x.dtype)]


@SCALE.kernel
def scale(ctx, args, x):
    factor = ctx.cache.get(x.dtype)  # the scale as x's element type, made once
    if factor is None:
        expect_dtypes("Scale", x, FLOATS)
        factor = ctx.cache[x.dtype] = cpp_float(x, args.scale)
    return x * factor


@SCALE.gradient
def _(g):
    return [g.op("Scale", [g.GO(0)], [g.GI(0)])]  # forward `scale` is appended


# --- Clip -----------------------------------------------------------------------------

_LOWEST = np.float32(np.finfo(np.float32).min)
_HIGHEST = np.float32(np.finfo(np.float32).max)
_CLIP_ARGS = [Arg("min", "float"), Arg("max", "float")]


def _clip_bounds(args):
    low = _LOWEST if args.min is None else np.float32(args.min)
    high = _HIGHEST if args.max is None else np.float32(args.max)
    return low, high


CLIP = OpSchema("Clip", inputs=1, outputs=1, args=_CLIP_ARGS, allow_inplace={(0, 0)},
                doc="Y = min(max(X, min), max), float32; absent bounds are the float "
                    "range (so +-inf clip to +-FLT_MAX, as in Caffe2).")


@CLIP.shape
def _(args, x):
    expect_dtype("Clip", x, F32, 0)
    return [TensorInfo(x.shape, x.dtype)]


@CLIP.kernel
def clip(ctx, args, x):
    expect_dtype("Clip", x, F32, 0)
    xp = ctx.xp
    low, high = _clip_bounds(args)
    y = xp.where(x < low, low, x)  # Eigen cwiseMax: a NaN bound leaves X alone
    return xp.where(high < y, high, y).astype(np.float32)


@CLIP.gradient
def _(g):
    return [g.op("ClipGradient", [g.O(0), g.GO(0)], [g.GI(0)])]


CLIP_GRADIENT = OpSchema("ClipGradient", inputs=2, outputs=1, args=_CLIP_ARGS,
                         allow_inplace={(1, 0)})
CLIP_GRADIENT.shape(shaped_like(1, np.float32))


@CLIP_GRADIENT.kernel
def clip_gradient(ctx, args, y, dy):
    expect_f32_pair("ClipGradient", y, dy)
    low, high = _clip_bounds(args)
    inside = (y > low) & (y < high)  # strict: values sitting on a bound get 0
    return ctx.xp.where(inside, dy, np.float32(0)).astype(np.float32)


# --- fused lowering (graphnet.executors.fused) -----------------------------------------

@vm_helper
def _scaled(x, factor, y):
    for i in range(x.shape[0]):
        y[i] = x[i] * factor


@vm_kernel
def scale_vm(c, p, f4, i4, i8):
    """y = x * s (n, x, y, offset of the float32 scale)."""
    n, x, y = c[p], c[p + 1], c[p + 2]
    _scaled(f4[x:x + n], f4[c[p + 3]], f4[y:y + n])
    return True


@SCALE.lowering
def _lower_scale(f):
    if not (f.all_dtypes(np.float32) and f.same_sizes()):
        return False
    f.emit(scale_vm, f.size(), f.off(0), f.out(0), f.f32_constant(f.args.scale))
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Scale")
