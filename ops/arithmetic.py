"""Add, Sub, Mul, Div (numpy-style or legacy `broadcast=1` broadcasting), their
gradient ops, and SumReduceLike (a broadcast's reverse).
Imports numpy, the registry and ops._common only.
"""

import operator

from graphnet.registry import Arg, OpSchema, TensorInfo, enforce, get as registry_get

from ._fused import vm_helper, vm_kernel
from ._common import (BCAST_ARGS, FLOATS, NUMERIC, broadcast_shape, dims_text,
                      expect_dtype, expect_dtypes, legacy_dims, reduce_to,
                      resolve_axis)


def _binary_arg_check(op):
    return lambda args: resolve_axis(op, args, bool(args.broadcast))


def _plan(op, args, a_shape, b_shape):
    """(A view dims, B view dims, output shape) of a binary op."""
    legacy = bool(args.broadcast)
    axis = resolve_axis(op, args, legacy)
    if legacy:
        a_dims, b_dims = legacy_dims(op, tuple(a_shape), tuple(b_shape), axis)
        return a_dims, b_dims, tuple(a_shape)
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    return a_shape, b_shape, broadcast_shape(op, a_shape, b_shape)


def _divide(a, b):
    """C++ division: true division for floats, truncation toward zero for ints (array
    operators only, so numpy and CuPy arrays alike)."""
    if a.dtype.kind == "f":
        return a / b
    enforce(not bool((b == 0).any()), "Integer division by zero in Div (Caffe2 crashed "
                                      "with SIGFPE). Fix: keep integer divisors nonzero.")
    q = a // b
    fix = ((a % b) != 0) & ((a < 0) != (b < 0))
    return (q + fix.astype(q.dtype)).astype(a.dtype)


# --- Add / Sub / Mul / Div ------------------------------------------------------------

# The array operators themselves (any backend), called directly by the kernels.
_BINARY = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": _divide}


def _binary_checks(op, args, a, b):
    expect_dtypes(op, a, NUMERIC, 0)
    expect_dtype(op, b, a.dtype, 1)
    return _plan(op, args, a.shape, b.shape)


def _binary_shape(op):
    def shape(args, a, b):
        return [TensorInfo(_binary_checks(op, args, a, b)[2], a.dtype)]
    return shape


def _binary_kernel(op, fn):
    def kernel(ctx, args, a, b):
        # The checks and the broadcast plan depend on shapes and dtypes only: once
        # they passed for a signature, later runs with it reuse the plan (one tuple
        # comparison; dtypes compare by identity first).
        cache = ctx.cache
        signature = (a.shape, b.shape, a.dtype, b.dtype)
        if cache.get("signature") != signature:
            cache["plan"] = _checked_plan(ctx, op, args, a, b)
            cache["signature"] = signature
        a_dims, b_dims, out, same = cache["plan"]
        if same:  # no legacy reshaping: numpy broadcasts as Caffe2 did
            return fn(a, b)
        return fn(a.reshape(a_dims), b.reshape(b_dims)).reshape(out)
    return kernel


def _checked_plan(ctx, op, args, a, b):
    """Caffe2's checks of a binary op; (A dims, B dims, output shape, no reshape)."""
    a_dims, b_dims, out = _binary_checks(op, args, a, b)
    if args.broadcast:
        if ctx.inplace(1, 0):
            enforce(False,
                    "In-place is allowed only with the first tensor when legacy-"
                    "broadcasting. %s: output %s is input 1. Fix: write to input 0 or a "
                    "new blob." % (op, ctx.output_names[0]))
    for k, x in ((0, a), (1, b)):
        if not (not ctx.inplace(k, 0) or tuple(x.shape) == out):
            enforce(False,
                    "C_dims == %s_dims. %s vs %s. %s in place on input %d needs the "
                    "broadcast output shape %s to equal that input's shape %s. Fix: "
                    "write to a new blob." % ("AB"[k], dims_text(out), dims_text(x.shape),
                                              op, k, dims_text(out), dims_text(x.shape)),
                    input_index=k)
    same = (a_dims == tuple(a.shape) and b_dims == tuple(b.shape)
            and broadcast_shape(op, a_dims, b_dims) == out)
    return a_dims, b_dims, out, same


def _binary_gradient_kernel(op, kind):
    def kernel(ctx, args, *ins):
        xp = ctx.xp
        if len(ins) == 3 and kind == "Div":  # legacy DivGradient([B, C, dC])
            b, c, dc = ins
            a = c
            expect_dtypes(op, c, NUMERIC, 1)
            expect_dtype(op, b, c.dtype, 0)
            expect_dtype(op, dc, c.dtype, 2)
        else:
            dc, a, b = ins[:3]
            c = ins[3] if len(ins) > 3 else None
            expect_dtypes(op, a, NUMERIC, 1)
            expect_dtype(op, b, a.dtype, 2)
            expect_dtype(op, dc, a.dtype, 0)
            if c is not None:
                expect_dtype(op, c, a.dtype, 3)
        a_dims, b_dims, out = _plan(op, args, a.shape, b.shape)
        k_dc = 2 if len(ins) == 3 and kind == "Div" else 0
        if tuple(dc.shape) != out:
            enforce(False,
                    "%s: the output gradient dC has shape %s, expected the forward output "
                    "shape %s. Fix: feed the gradient of the forward output." % (
                        op, dims_text(dc.shape), dims_text(out)), input_index=k_dc)
        full = broadcast_shape(op, a_dims, b_dims)
        g = dc.reshape(full)
        av, bv = a.reshape(a_dims), b.reshape(b_dims)
        if kind == "Add":
            da, db = reduce_to(xp, g, a_dims), reduce_to(xp, g, b_dims)
        elif kind == "Sub":
            da, db = reduce_to(xp, g, a_dims), -reduce_to(xp, g, b_dims)
        elif kind == "Mul":
            da, db = reduce_to(xp, g * bv, a_dims), reduce_to(xp, g * av, b_dims)
        else:
            cv = c.reshape(full)
            da = reduce_to(xp, _divide(g, bv), a_dims)
            db = reduce_to(xp, _divide(-g * cv, bv), b_dims)
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
    _fwd = OpSchema(_name, inputs=2, outputs=1, args=BCAST_ARGS,
                    allow_inplace={(0, 0), (1, 0)}, arg_check=_binary_arg_check(_name),
                    doc="C = A %s B elementwise; numpy-style broadcasting, or legacy "
                        "broadcast=1 of B onto A at axis." % _name)
    _fwd.shape(_binary_shape(_name))
    _fwd.kernel(_binary_kernel(_name, _fn))
    _fwd.gradient(_binary_maker(_name + "Gradient", _name == "Div"))
    _grad = OpSchema(_name + "Gradient", inputs=(3, 4) if _name == "Div" else 3,
                     outputs=2, args=BCAST_ARGS,
                     arg_check=_binary_arg_check(_name + "Gradient"),
                     allow_inplace={(0, 0)} if _name == "Div" else {(0, 0), (0, 1)})
    _grad.shape(_div_gradient_shape if _name == "Div" else _binary_gradient_shape)
    _grad.kernel(_binary_gradient_kernel(_name + "Gradient", _name))


# --- SumReduceLike --------------------------------------------------------------------

SUM_REDUCE_LIKE = OpSchema(
    "SumReduceLike", inputs=2, outputs=1,
    args=[Arg("axis", "int", -1), Arg("axis_str", "string", ""),
          Arg("order", "string", "NCHW")],
    arg_check=lambda args: resolve_axis("SumReduceLike", args, legacy=True),
    doc="Sum A down to B's shape (the reverse of legacy broadcasting B onto A).")


def _sum_reduce_like_checks(args, a, b):
    op = "SumReduceLike"
    expect_dtypes(op, a, FLOATS, 0)
    axis = resolve_axis(op, args, legacy=True)
    if tuple(a.shape) == tuple(b.shape):
        return None
    return legacy_dims(op, tuple(a.shape), tuple(b.shape), axis)


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
    return reduce_to(ctx.xp, a.reshape(a_dims), b_dims).reshape(b.shape)


# --- fused lowering (graphnet.executors.fused): float32, same shapes, no broadcast ------

_OPCODES = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}


@vm_helper
def _binary(a, b, out, code):
    if code == 0:
        for i in range(a.shape[0]):
            out[i] = a[i] + b[i]
    elif code == 1:
        for i in range(a.shape[0]):
            out[i] = a[i] - b[i]
    elif code == 2:
        for i in range(a.shape[0]):
            out[i] = a[i] * b[i]
    else:
        for i in range(a.shape[0]):
            out[i] = a[i] / b[i]


@vm_kernel
def binary_vm(c, p, f4, i4, i8):
    """c = a (op) b elementwise (n, a, b, out, opcode: add, sub, mul, div)."""
    n, a, b, out = c[p], c[p + 1], c[p + 2], c[p + 3]
    _binary(f4[a:a + n], f4[b:b + n], f4[out:out + n], c[p + 4])
    return True


def _lower_binary(f):
    if not (f.all_dtypes("float32") and f.in_info[0].shape == f.in_info[1].shape
            == f.out_info[0].shape):
        return False
    f.emit(binary_vm, f.size(), f.off(0), f.off(1), f.out(0), _OPCODES[f.step.op_type])
    return True


for _name in _BINARY:
    registry_get(_name).lowering(_lower_binary)
