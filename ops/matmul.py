"""Matrix-multiply family: FC, FCTransposed, BatchMatMul, MatMul and their gradients
(FCGradient, FCTransposedGradient; BatchMatMul and MatMul differentiate into
themselves). Imports numpy, graphnet.registry and ops._common only; kernels use
`ctx.xp`.

Dtypes follow Caffe2 1.10: float32 everywhere on the CPU; on GPUs the FC family and
BatchMatMul also take float16 (computed in float32, as Caffe2's half path did), MatMul
stays float32.
"""

import numpy as np

from graphnet.registry import Arg, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._common import (canonical_axis, checked, dims_text, numel, type_mismatch,
                      unsupported_type)
from ._cuda_checks import capturing
from ._fused import vm_helper, vm_kernel


_F32, _F32_F16 = (np.dtype(np.float32),), (np.dtype(np.float32), np.dtype(np.float16))


def _check_float(ctx, op_type, arrays, names, half_on_gpu, dispatch):
    """Input 0 picks the type (float32, or float16 on a GPU where Caffe2 had a half
    kernel); every other float input must hold that same type. Returns the dtype."""
    allowed = _F32_F16 if half_on_gpu and ctx.device.is_gpu else _F32
    lead = arrays[0].dtype
    if lead not in allowed:
        allowed = [d.name for d in allowed]
        head = unsupported_type(lead) if dispatch else type_mismatch(np.float32, lead)
        enforce(False, "%s (%s input %s: expected %s, found %s. Fix: feed %s data or "
                "Cast(to=FLOAT) first.)" % (head, op_type, names[0], " or ".join(allowed),
                                             lead.name, allowed[0]), input_index=0)
    for k, array in enumerate(arrays[1:], 1):
        if array.dtype != lead:
            enforce(False,
                    "%s (%s input %s: expected %s like input %s, found %s. Fix: give every "
                    "operand the same float dtype.)" % (
                        type_mismatch(lead, array.dtype), op_type, names[k], lead.name,
                        names[0], np.dtype(array.dtype).name), input_index=k)
    return lead


def _axis(axis, shape, op_type, what, input_index):
    """canonical_axis with the operand named in the message."""
    ndim = len(shape)
    if -ndim <= axis < ndim:
        return axis + ndim if axis < 0 else axis
    return canonical_axis(axis, ndim, "(%s: axis %d of %s with shape %s: expected -%d <= "
                          "axis < %d. Fix: pass an axis inside the rank.)"
                          % (op_type, axis, what, list(shape), ndim, ndim), input_index)


# --- FC / FCTransposed ----------------------------------------------------------

def _fc_geometry(op_type, args, x, w, third, transposed, gradient=False):
    """(canonical axis, M, K, N) with Caffe2's checks; `third` is b or dY's shape."""
    if not gradient:
        if len(third) != 1:
            enforce(False, "b.dim() == 1. %d (%s: expected a 1-D bias of N "
                    "elements, found shape %s. Fix: reshape b to (N,).)"
                    % (len(third), op_type, list(third)), input_index=2)
    axis = _axis(args.axis, x, op_type, "X", 0)
    m, k = numel(x[:axis]), numel(x[axis:])
    axis_w = _axis(args.axis_w, w, op_type, "W", 1)
    n = numel(w[axis_w:]) if transposed else numel(w[:axis_w])
    valid = k * n == numel(w) and (numel(third) == m * n if gradient
                                   else k > 0 and n > 0 and third[0] == n)
    if valid:
        return axis, m, k, n  # the common case: no message to build
    text = "Dimension mismatch: X: %s, W: %s, %s: %s, axis: %d, M: %d, N: %d, K: %d" % (
        dims_text(x), dims_text(w), "dY" if gradient else "b", dims_text(third), args.axis,
        m, n, k)
    w_shape = "(K, N) = (%d, %d)" % (k, n) if transposed else "(N, K) = (%d, %d)" % (n, k)
    if not gradient:
        # Caffe2 computes X.numel() / K and W.numel() / N: zero crashed the process.
        if not (k > 0 and n > 0):
            enforce(False, "%s (%s: expected K = X.size_from_dim(axis) > 0 "
                    "and N > 0, found K=%d, N=%d. Fix: give X and W non-empty feature "
                    "dimensions.)" % (text, op_type, k, n), input_index=0 if k == 0 else 1)
    if k * n != numel(w):
        enforce(False, "%s (%s: expected W to hold K*N = %d elements as %s, "
                "found %d. Fix: make W's size match X.size_from_dim(axis) = %d or change "
                "axis/axis_w.)" % (text, op_type, k * n, w_shape, numel(w), k), input_index=1)
    if gradient:
        if numel(third) != m * n:
            enforce(False, "%s (%s: expected dY to hold M*N = %d elements, "
                    "found %d. Fix: pass the gradient of the forward output.)"
                    % (text, op_type, m * n, numel(third)), input_index=2)
    else:
        if third[0] != n:
            enforce(False, "%s (%s: expected b to have N = %d elements, found %d. "
                    "Fix: give b one entry per output unit.)" % (text, op_type, n, third[0]),
                    input_index=2)
    return axis, m, k, n


def _product(xp, a, b):
    """numpy's matmul of a and b. On a GPU, float products of 2-D operands or of one
    batch axis go to cuBLAS directly (graphnet.executors.cuda.blas): CuPy refuses to
    call cuBLAS while a CUDA graph is captured, and its matmul costs more host time;
    eager products fall back to CuPy's matmul when the setting or the binding's check
    says so. Other products under capture raise CuPy's refusal, and the segment runs
    eagerly (graphs.report says why)."""
    if xp is not np:
        from graphnet.executors.cuda import blas
        if blas.direct(xp, a, b):
            return blas.matmul(xp, a, b)
    return xp.matmul(a, b)


def _column_sums(ctx, xp, dy):
    """FC's bias gradient, the column sums of dY (M x N): on a GPU dY^T times a vector
    of M ones through cuBLAS, as Caffe2 computed it (its bias_multiplier_), one call
    where CuPy's reduction costs more host time; the ones are kept with the op (made
    afresh while a graph is captured: the capture only records their fill)."""
    if xp is np:
        return np.add.reduce(dy, axis=0)
    from graphnet.executors.cuda import blas
    if not blas.direct(xp, dy, dy):
        return dy.sum(axis=0)
    captured = capturing()
    key = ("ones", dy.shape[0], dy.dtype, dy.device.id)
    ones = None if captured else ctx.cache.get(key)
    if ones is None:
        ones = xp.ones((dy.shape[0], 1), dy.dtype)
        if not captured:
            ctx.cache[key] = ones
    return blas.matmul(xp, dy.T, ones).reshape(dy.shape[1])


def _fc_schema(op_type, transposed):
    schema = OpSchema(op_type, inputs=3, outputs=1, args=_FC_ARGS,
                      doc="Y = X2d @ %s + b with X2d = X.reshape(M, K) split at `axis`."
                          % ("W2d (W is (K, N))" if transposed else "W2d.T (W is (N, K))"))

    @schema.shape
    def _(args, x, w, b):
        axis, _, _, n = _fc_geometry(op_type, args, x.shape, w.shape, b.shape, transposed)
        return [TensorInfo(x.shape[:axis] + (n,), x.dtype)]

    def fc_checks(ctx, args, x, w, b):
        return (_check_float(ctx, op_type, (x, w, b), "XWb", True, ctx.device.is_gpu),
                ) + _fc_geometry(op_type, args, x.shape, w.shape, b.shape, transposed)

    @schema.kernel
    def fc(ctx, args, x, w, b):
        dtype, axis, m, k, n = checked(
            ctx, (x.shape, w.shape, b.shape, x.dtype, w.dtype, b.dtype),
            lambda: fc_checks(ctx, args, x, w, b))
        if dtype is _F32[0]:  # float32 (the common case): no casts, no extra views
            if x.shape == (m, k) and w.shape == ((k, n) if transposed else (n, k)):
                y = _product(ctx.xp, x, w if transposed else w.T)
            else:
                y = _fc_product(ctx.xp, x, w, m, k, n, transposed)
            y += b  # in place: one pass less than y = xw + b
            return y if y.shape == x.shape[:axis] + (n,) else y.reshape(x.shape[:axis] + (n,))
        y = _fc_product(ctx.xp, x, w, m, k, n, transposed)
        y += b.astype(np.float32, copy=False)
        return y.astype(dtype, copy=False).reshape(x.shape[:axis] + (n,))

    return schema


def _fc_product(xp, x, w, m, k, n, transposed):
    """X2d @ W2d (as float32) for FC's geometry."""
    x2 = x.reshape(m, k).astype(np.float32, copy=False)
    w2 = w.reshape(k, n) if transposed else w.reshape(n, k).T
    return _product(xp, x2, w2.astype(np.float32, copy=False))


def _fc_gradient_schema(op_type, transposed):
    schema = OpSchema(op_type, inputs=3, outputs=(2, 3), args=_FC_ARGS,
                      doc="Inputs X, W, dY; outputs dW, db and optionally dX.")

    @schema.shape
    def _(args, x, w, dy):
        _, _, _, n = _fc_geometry(op_type, args, x.shape, w.shape, dy.shape, transposed,
                                  gradient=True)
        # The rule cannot see the output count; a 2-output op ignores the third.
        return [TensorInfo(w.shape, x.dtype), TensorInfo((n,), x.dtype), x]

    def fc_gradient_checks(ctx, args, x, w, dy):
        return (_check_float(ctx, op_type, (x, w, dy), ("X", "W", "dY"), True,
                             ctx.device.is_gpu),) + _fc_geometry(
            op_type, args, x.shape, w.shape, dy.shape, transposed, gradient=True)

    @schema.kernel
    def fc_gradient(ctx, args, x, w, dy):
        xp = ctx.xp
        dtype, _, m, k, n = checked(
            ctx, (x.shape, w.shape, dy.shape, x.dtype, w.dtype, dy.dtype),
            lambda: fc_gradient_checks(ctx, args, x, w, dy))
        if x.size == 0:
            outs = (xp.zeros(w.shape, dtype), xp.zeros((n,), dtype),
                    xp.zeros(x.shape, dtype))
            return outs[:ctx.num_outputs]
        f32 = dtype is _F32[0]  # no casts needed (astype(copy=False) still costs a call)
        x2 = x.reshape(m, k) if f32 else x.reshape(m, k).astype(np.float32)
        dy2 = dy.reshape(m, n) if f32 else dy.reshape(m, n).astype(np.float32)
        w2 = w.reshape(k, n).T if transposed else w.reshape(n, k)  # always (N, K)
        dw = _product(xp, x2.T, dy2) if transposed else _product(xp, dy2.T, x2)
        db = _column_sums(ctx, xp, dy2)
        if f32:
            outs = [dw if dw.shape == w.shape else dw.reshape(w.shape), db]
        else:
            outs = [dw.astype(dtype).reshape(w.shape), db.astype(dtype)]
        if ctx.num_outputs == 3:
            dx = _product(xp, dy2, w2 if f32 else w2.astype(np.float32))
            outs.append(dx.reshape(x.shape) if f32 else dx.astype(dtype).reshape(x.shape))
        return tuple(outs)

    return schema


_FC_ARGS = [Arg("axis", "int", 1), Arg("axis_w", "int", 1),
            Arg("float16_compute", "bool", False)]

FC = _fc_schema("FC", transposed=False)
FC_TRANSPOSED = _fc_schema("FCTransposed", transposed=True)
FC_GRADIENT = _fc_gradient_schema("FCGradient", transposed=False)
FC_TRANSPOSED_GRADIENT = _fc_gradient_schema("FCTransposedGradient", transposed=True)


def _fc_gradient_maker(g):
    """One <Type>Gradient op: [X, W, dY] -> [dW, db, dX] (note the order)."""
    return [g.op(g.def_.type + "Gradient", [g.I(0), g.I(1), g.GO(0)],
                 [g.GI(1), g.GI(2), g.GI(0)])]


FC.gradient(_fc_gradient_maker)
FC_TRANSPOSED.gradient(_fc_gradient_maker)


# --- BatchMatMul -----------------------------------------------------------------

def _bmm_shape(args, a, b):
    """Output shape of BatchMatMul with Caffe2's checks (1-D operands as numpy)."""
    ta, tb = args.trans_a, args.trans_b
    if not (len(a) >= 1 and len(b) >= 1):
        enforce(False, "BatchMatMul needs operands of rank >= 1, found "
                "A %s and B %s. Fix: reshape scalars to (1,)." % (list(a), list(b)),
                input_index=0 if len(a) == 0 else 1)

    def need(expr, got, what, want, index):
        if got != want:
            enforce(False, "%s == %s. %d vs %d (BatchMatMul: expected %s = %d, found "
                    "%d. Fix: make the contracted dimensions of A %s and B %s agree, or set "
                    "trans_a/trans_b.)" % (expr, what, got, want, expr, want, got, list(a),
                                           list(b)), input_index=index)

    if len(a) == 1 and len(b) == 1:
        need("A.numel()", a[0], "B.numel()", b[0], 1)
        return (1,)
    if len(a) == 1:
        k = a[0]
        if tb:
            need("B_dims[B_ndim - 1]", b[-1], "N", k, 1)
            return tuple(b[:-1])
        need("B_dims[B_ndim - 2]", b[-2], "N", k, 1)
        return tuple(b[:-2]) + (b[-1],)
    if len(b) == 1:
        k = b[0]
        # Caffe2 returned A.shape[:-1] here even with trans_a (wrong unless square);
        # we keep numpy's (..., M).
        need("A_dims[A_ndim - %d]" % (2 if ta else 1), a[-2] if ta else a[-1], "N", k, 0)
        return tuple(a[:-2]) + ((a[-1],) if ta else (a[-2],))
    m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    need("B_dims[B_ndim - %d]" % (1 if tb else 2), b[-1] if tb else b[-2], "K", k, 1)
    n = b[-2] if tb else b[-1]
    nd = max(len(a), len(b)) - 2
    ab = (1,) * (nd - len(a) + 2) + tuple(a[:-2])
    bb = (1,) * (nd - len(b) + 2) + tuple(b[:-2])
    for da, db in zip(ab, bb):
        if not (da == db or da <= 1 or db <= 1):
            enforce(False,
                    "A_broadcast_dims[i] == B_broadcast_dims[i] || A_broadcast_dims[i] <= 1 || "
                    "B_broadcast_dims[i] <= 1. (BatchMatMul: batch dims %s of A and %s of B "
                    "cannot broadcast (%d vs %d). Fix: make the leading dims equal or 1.)"
                    % (list(a[:-2]), list(b[:-2]), da, db))
    if not (ab == bb or args.broadcast):
        enforce(False,
                "broadcast_. (BatchMatMul: batch dims of A %s and B %s differ, which needs "
                "broadcast=1; found broadcast=0. Fix: pass broadcast=1 (no gradient then) or "
                "give both operands the same batch dims.)" % (list(a), list(b)))
    batch = tuple(0 if 0 in (da, db) else max(da, db) for da, db in zip(ab, bb))
    return batch + (m, n)


BATCH_MATMUL = OpSchema(
    "BatchMatMul", inputs=2, outputs=1,
    args=[Arg("trans_a", "bool", False), Arg("trans_b", "bool", False),
          Arg("broadcast", "bool", False)],
    doc="numpy.matmul over the last two dims (each optionally transposed); batch dims "
        "must be identical unless broadcast=1.")


@BATCH_MATMUL.shape
def _(args, a, b):
    return [TensorInfo(_bmm_shape(args, a.shape, b.shape), a.dtype)]


@BATCH_MATMUL.kernel
def batch_matmul(ctx, args, a, b):
    xp = ctx.xp
    dtype, shape = checked(ctx, (a.shape, b.shape, a.dtype, b.dtype), lambda: (
        _check_float(ctx, "BatchMatMul", (a, b), "AB", True, True),
        _bmm_shape(args, a.shape, b.shape)))
    if numel(shape) == 0:
        return xp.zeros(shape, dtype)
    a32, b32 = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    if args.trans_a and a.ndim >= 2:
        a32 = xp.swapaxes(a32, -1, -2)
    if args.trans_b and b.ndim >= 2:
        b32 = xp.swapaxes(b32, -1, -2)
    y = _product(xp, a32, b32)
    return y.astype(dtype, copy=False).reshape(shape)


@BATCH_MATMUL.gradient(copy_args=False)
def _batch_matmul_gradient(g):
    if g.arg('broadcast', 0):
        enforce(False,
                "Gradient is currently not supported with broadcast=1 for BatchMatMul. "
                "(op %s -> %s. Fix: build the forward op without broadcast, e.g. tile the "
                "smaller operand to the full batch first.)" % (list(g.def_.input),
                                                               list(g.def_.output)))
    return _matmul_gradient_ops(g, "BatchMatMul", bool(g.arg("trans_a", 0)),
                                bool(g.arg("trans_b", 0)), None, None)


def _matmul_gradient_ops(g, op_type, ta, tb, axis_a, axis_b):
    """The 4-row table of Caffe2's GetBatchMatMulGradient / GetMatMulGradient.

    For MatMul the forward B (or A) rides along as a third input so the result is
    reshaped like it, and one axis argument is passed on (axis_* None: none).
    """
    GO, A, B = g.GO(0), g.I(0), g.I(1)
    mm = op_type == "MatMul"

    def op(inputs, like, output, **args):
        args = {k: v for k, v in args.items() if v is not None}
        return g.op(op_type, inputs + ([like] if mm else []), [output], **args)

    one = 1
    if ta and tb:    # dA = B'G', dB = G'A'
        return [op([B, GO], A, g.GI(0), trans_a=one, trans_b=one, axis_a=axis_b),
                op([GO, A], B, g.GI(1), trans_a=one, trans_b=one, axis_b=axis_a)]
    if ta:           # dA = BG', dB = AG
        return [op([B, GO], A, g.GI(0), trans_b=one, axis_a=axis_b),
                op([A, GO], B, g.GI(1), axis_a=axis_a)]
    if tb:           # dA = GB, dB = G'A
        return [op([GO, B], A, g.GI(0), axis_b=axis_b),
                op([GO, A], B, g.GI(1), trans_a=one, axis_b=axis_a)]
    # dA = GB', dB = A'G
    return [op([GO, B], A, g.GI(0), trans_b=one, axis_b=axis_b),
            op([A, GO], B, g.GI(1), trans_a=one, axis_a=axis_a)]


# --- MatMul ------------------------------------------------------------------------

def _matmul_geometry(args, a, b):
    """(A 2-D dims, B 2-D dims, Y shape) with Caffe2's checks."""
    ca = _axis(args.axis_a, a, "MatMul", "A", 0)
    cb = _axis(args.axis_b, b, "MatMul", "B", 1)
    a2, b2 = (numel(a[:ca]), numel(a[ca:])), (numel(b[:cb]), numel(b[cb:]))
    ta, tb = bool(args.trans_a), bool(args.trans_b)
    am, ak = a2[::-1] if ta else a2
    bk, bn = b2[::-1] if tb else b2
    if ak != bk:
        enforce(False, "Dimension mismatch: %s%d %d%s%d %d (MatMul: expected A's columns "
                "to equal B's rows, found %d vs %d after axis_a=%d, axis_b=%d and "
                "transposition. Fix: change trans_a/trans_b or the axes.)"
                % ("trans(A): " if ta else "A: ", am, ak, ", trans(B): " if tb else ", B: ",
                   bk, bn, ak, bk, args.axis_a, args.axis_b), input_index=1)
    return a2, b2, (am, bn)


def _matmul_out_shape(y, like):
    """With a third input (gradient ops) Y takes that input's shape."""
    if like is None:
        return y
    if numel(like) != numel(y):
        enforce(False, "MatMul: the third input gives Y its shape, so "
                "expected it to hold %d elements like the %dx%d product, found shape %s. Fix: "
                "pass the forward operand this gradient is for."
                % (numel(y), y[0], y[1], list(like)), input_index=2)
    return tuple(like)


MATMUL = OpSchema(
    "MatMul", inputs=(2, 3), outputs=1,
    args=[Arg("axis_a", "int", 1), Arg("axis_b", "int", 1), Arg("trans_a", "int", 0),
          Arg("trans_b", "int", 0)],
    doc="Y = op(A2d) @ op(B2d), operands flattened to 2-D at axis_a/axis_b; an optional "
        "third input gives Y its shape (used by the gradient).")


@MATMUL.shape
def _(args, a, b, like=None):
    _, _, y = _matmul_geometry(args, a.shape, b.shape)
    return [TensorInfo(_matmul_out_shape(y, None if like is None else like.shape),
                       a.dtype)]


@MATMUL.kernel
def matmul(ctx, args, a, b, like=None):
    _check_float(ctx, "MatMul", (a, b), "AB", False, False)
    a2, b2, y = _matmul_geometry(args, a.shape, b.shape)
    shape = _matmul_out_shape(y, None if like is None else like.shape)
    a2, b2 = a.reshape(a2), b.reshape(b2)
    out = (a2.T if args.trans_a else a2) @ (b2.T if args.trans_b else b2)
    return out.reshape(shape)


@MATMUL.gradient(copy_args=False)
def _matmul_gradient(g):
    # Caffe2 held axis_a/axis_b in C++ `bool`s, so any nonzero axis is passed on as 1
    # (right for 2-D operands; for axis >= 2 the dB/dA op fails with a dimension
    # mismatch, as in Caffe2).
    return _matmul_gradient_ops(g, "MatMul", bool(g.arg("trans_a", 0)),
                                bool(g.arg("trans_b", 0)), int(bool(g.arg("axis_a", 1))),
                                int(bool(g.arg("axis_b", 1))))


# --- fused lowering (graphnet.executors.fused): the products through BLAS -----------------
# numba's np.dot calls BLAS (sgemm) on views of the arena, as the interpreter's `@`
# does; the bias and the column sums are loops.

@vm_kernel
def fc_vm(c, p, f4, i4, i8):
    """y = x (m, k) @ w (n, k).T + b (m, k, n, x, w, b, y)."""
    m, k, n, x, w, b, y = c[p], c[p + 1], c[p + 2], c[p + 3], c[p + 4], c[p + 5], c[p + 6]
    out = f4[y:y + m * n].reshape((m, n))
    np.dot(f4[x:x + m * k].reshape((m, k)), f4[w:w + n * k].reshape((n, k)).T, out)
    for i in range(m):
        for j in range(n):
            out[i, j] += f4[b + j]
    return True


@vm_kernel
def fc_gradient_vm(c, p, f4, i4, i8):
    """dw = dy.T @ x, db = column sums of dy, dx = dy @ w when dx >= 0
    (m, k, n, x, w, dy, dw, db, dx)."""
    m, k, n, x, w, dy = c[p], c[p + 1], c[p + 2], c[p + 3], c[p + 4], c[p + 5]
    dw, db, dx = c[p + 6], c[p + 7], c[p + 8]
    grad = f4[dy:dy + m * n].reshape((m, n))
    np.dot(grad.T, f4[x:x + m * k].reshape((m, k)), f4[dw:dw + n * k].reshape((n, k)))
    for j in range(n):
        f4[db + j] = 0
    for i in range(m):
        for j in range(n):
            f4[db + j] += grad[i, j]
    if dx >= 0:
        np.dot(grad, f4[w:w + n * k].reshape((n, k)), f4[dx:dx + m * k].reshape((m, k)))
    return True


def _fc_sizes(f, gradient):
    x, w = f.in_info[0].shape, f.in_info[1].shape
    _, m, k, n = _fc_geometry(f.step.op_type, f.args, x, w, f.in_info[2].shape, False,
                              gradient=gradient)
    ok = f.all_dtypes(np.float32) and f.distinct() and m * k * n > 0
    return ok, (m, k, n)


@FC.lowering
def _lower_fc(f):
    ok, sizes = _fc_sizes(f, False)
    if ok:
        f.emit(fc_vm, *sizes, f.off(0), f.off(1), f.off(2), f.out(0))
    return ok


@FC_GRADIENT.lowering
def _lower_fc_gradient(f):
    ok, sizes = _fc_sizes(f, True)
    if ok:
        f.emit(fc_gradient_vm, *sizes, f.off(0), f.off(1), f.off(2), f.out(0), f.out(1),
               f.out(2) if len(f.out_info) == 3 else -1)
    return ok


@vm_helper
def _small_product(f4, a, b, y, m, k, n, ta, tb):
    """y (m, n) = op(a) @ op(b) on the flat arena, rows of y updated as axpys."""
    f4[y:y + m * n] = 0
    for i in range(m):
        row = y + i * n
        for q in range(k):
            left = f4[a + q * m + i] if ta else f4[a + i * k + q]
            if tb:
                for j in range(n):
                    f4[row + j] += left * f4[b + j * k + q]
            else:
                start = b + q * n
                for j in range(n):
                    f4[row + j] += left * f4[start + j]


@vm_kernel
def batch_matmul_vm(c, p, f4, i4, i8):
    """y[s] = op(a[s]) @ op(b[s]) (batch, m, k, n, trans_a, trans_b, a, b, y)."""
    batch, m, k, n, ta, tb = c[p], c[p + 1], c[p + 2], c[p + 3], c[p + 4], c[p + 5]
    a, b, y = c[p + 6], c[p + 7], c[p + 8]
    for s in range(batch):
        a0, b0, y0 = a + s * m * k, b + s * k * n, y + s * m * n
        if m * n * k <= 512:  # loops beat a BLAS call on tiny products
            _small_product(f4, a0, b0, y0, m, k, n, ta, tb)
            continue
        out = f4[y0:y0 + m * n].reshape((m, n))
        left = f4[a0:a0 + m * k]
        right = f4[b0:b0 + k * n]
        if ta and tb:
            np.dot(left.reshape((k, m)).T, right.reshape((n, k)).T, out)
        elif ta:
            np.dot(left.reshape((k, m)).T, right.reshape((k, n)), out)
        elif tb:
            np.dot(left.reshape((m, k)), right.reshape((n, k)).T, out)
        else:
            np.dot(left.reshape((m, k)), right.reshape((k, n)), out)
    return True


@BATCH_MATMUL.lowering
def _lower_batch_matmul(f):
    a, b = f.in_info[0].shape, f.in_info[1].shape
    if not (f.all_dtypes(np.float32) and f.distinct() and len(a) == len(b) >= 2
            and a[:-2] == b[:-2]):
        return False
    ta, tb = bool(f.args.trans_a), bool(f.args.trans_b)
    m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    n = b[-2] if tb else b[-1]
    batch = numel(a[:-2])
    if batch * m * n * k == 0:
        return False
    f.emit(batch_matmul_vm, batch, m, k, n, int(ta), int(tb), f.off(0), f.off(1), f.out(0))
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("FC", "FCGradient", "BatchMatMul")
