"""Helpers shared across op families: Caffe2's dtype names and check texts, sizes and
axes, typed argument reads, broadcasting, float32 reinterpretation, sparse rounds.
Imports numpy, graphnet.registry and graphnet.errors only.
"""

import math

import numpy as np

from graphnet import config
from graphnet.errors import ArgumentError, enforce
from graphnet.registry import Arg, TensorInfo

from ._cuda_checks import index_stats

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)
INDEX_TYPES = (I32, I64)
FLOATS = (F32, F64)
NUMERIC = FLOATS + INDEX_TYPES

# --- dtypes as Caffe2 named them ---------------------------------------------------

# numpy dtype -> the C++ type name Caffe2 1.10's TypeMeta printed in its messages
_CPP_NAMES = {
    "float32": "float", "float64": "double", "float16": "c10::Half", "int32": "int",
    "int64": "long int", "int16": "short int", "uint16": "short unsigned int",
    "int8": "signed char", "uint8": "unsigned char", "bool": "bool",
    "object": "std::basic_string<char>",
}


def cpp_name(dtype):
    name = np.dtype(dtype).name
    return _CPP_NAMES.get(name, name)


def type_mismatch(expected, found):
    """Caffe2's text when Tensor::data<T>() meets another element type."""
    return ("Tensor type mismatch, caller expects elements to be %s, while tensor "
            "contains %s." % (cpp_name(expected), cpp_name(found)))


def unsupported_type(found):
    """Caffe2's text when DispatchHelper finds no kernel for the dtype."""
    return "Unsupported type of tensor: %s" % cpp_name(found)


def check_type(x, expected, index, detail):
    """Input `index` must hold exactly `expected`; `detail` follows Caffe2's text.
    (Messages are built only on failure: these checks run on every op call.)"""
    if x.dtype != expected:
        enforce(False, "%s %s" % (type_mismatch(expected, x.dtype), detail),
                input_index=index)


def check_dispatch(x, allowed, index, detail):
    """Input `index` must hold one of the `allowed` dtypes (DispatchHelper)."""
    if x.dtype not in allowed:
        enforce(False, "%s. %s" % (unsupported_type(x.dtype), detail), input_index=index)


def dtype_names(dtypes):
    return "/".join(np.dtype(d).name for d in dtypes)


def expect_dtype(op, x, want, k):
    """Tensor::data<T>(): input k of `op` must hold exactly `want`."""
    if x.dtype != want:
        want = np.dtype(want)
        if x.dtype != want:
            check_type(x, want, k, "%s input %d: expected %s, found %s. Fix: cast it to %s."
                       % (op, k, want.name, x.dtype.name, want.name))


def expect_dtypes(op, x, allowed, k=0):
    """DispatchHelper: input k's dtype selects the kernel of `op`."""
    if x.dtype not in allowed:
        names = dtype_names(allowed)
        if x.dtype not in allowed:
            check_dispatch(x, allowed, k, "%s input %d: expected %s, found %s. Fix: cast it "
                           "(Cast op or astype) to one of %s." % (op, k, names, x.dtype.name,
                                                                 names))


def cpp_float(x, value):
    """A scalar Caffe2 held as C++ float, converted to x's element type."""
    return x.dtype.type(np.float32(value))


def infos(*arrays):
    """The TensorInfo of each array, for running a shape rule's checks in a kernel."""
    return tuple(TensorInfo.of(x) for x in arrays)


def shaped_like(k, dtype=None):
    """A shape rule: one output shaped like input k, of its dtype or `dtype`."""
    def rule(args, *inputs):
        return [TensorInfo(inputs[k].shape, inputs[k].dtype if dtype is None else dtype)]
    return rule


def checked(ctx, signature, check):
    """check()'s result, running check() only when `signature` differs from the last
    call's. The signature holds what Caffe2's checks read (shapes, dtypes, static
    sizes); a net run again on same-shaped batches then pays for them once, and a
    changed input is checked afresh before the kernel touches it."""
    seen = ctx.cache.get("checked")
    if seen is not None and seen[0] == signature:
        return seen[1]
    plan = check()
    ctx.cache["checked"] = (signature, plan)
    return plan


# --- sizes and axes ----------------------------------------------------------------

def numel(shape):
    return math.prod(shape)  # exact Python ints; np.prod costs ~4 us per call


def size_to_dim(shape, k):
    """Product of the dims before k (Caffe2's size_to_dim)."""
    return numel(tuple(shape)[:k])


def size_from_dim(shape, k):
    """Product of the dims from k on (Caffe2's size_from_dim)."""
    return numel(tuple(shape)[k:])


def dims_text(shape):
    """A shape the way Caffe2 printed dims: [2, 3]."""
    return "[%s]" % ", ".join(str(int(d)) for d in shape)


def expect_same_shapes(op, xs):
    """Every input has input 0's shape (no broadcasting); returns that shape."""
    out = tuple(xs[0].shape)
    for i, x in enumerate(xs[1:], 1):
        if tuple(x.shape) != out:
            enforce(False,
                    "Check failed: output->sizes() == Input(i).sizes().Description: Input "
                    "#%d, input dimension:%s should match output dimension: %s. %s does not "
                    "broadcast: expected shape %s, found %s. Fix: give every input the same "
                    "shape (Reshape/Expand first)." % (i, dims_text(x.shape), dims_text(out),
                                                       op, dims_text(out), dims_text(x.shape)),
                    input_index=i)
    return out


def expect_f32_pair(op, a, b):
    """Inputs 0 and 1 (a forward tensor and its gradient) are float32 of one shape."""
    expect_dtype(op, a, F32, 0)
    expect_dtype(op, b, F32, 1)
    expect_same_shapes(op, (a, b))


def canonical_axis(axis, ndim, detail, index=None):
    """Caffe2's canonical_axis_index_: -ndim <= axis < ndim, negatives from the end."""
    if not (axis >= -ndim):
        enforce(False, "Expected axis_index >= -ndims to be true, but got false. "
                + detail, input_index=index)
    if not (axis < ndim):
        enforce(False, "Expected axis_index < ndims to be true, but got false. "
                + detail, input_index=index)
    return axis + ndim if axis < 0 else axis


# --- typed argument reads ----------------------------------------------------------

class TypedArgs(object):
    """Read arguments of one OperatorDef the way Caffe2's GetSingleArgument<T> and
    GetRepeatedArgument<T> did: the stored field must match the C++ type, integers
    must fit it. `prefix` serves composite arguments such as `sub_policy_<i>_`."""

    _HINT = {"f": "a Python float, e.g. %s=1.0", "i": "a Python int, e.g. %s=1",
             "s": "a str, e.g. %s='fixed'", "ints": "a list of ints, e.g. %s=[1, 2]"}

    def __init__(self, op, prefix=""):
        self.op, self.prefix = op, prefix

    def prefixed(self, prefix):
        return TypedArgs(self.op, prefix)

    def raw(self, name):
        for arg in self.op.arg:
            if arg.name == name:
                return arg
        return None

    def _single(self, name, field, default):
        name = self.prefix + name
        arg = self.raw(name)
        if arg is None:
            return default, name
        if not arg.HasField(field):
            raise ArgumentError(
                "Argument %s does not have the right field: expected field %s (op %s). "
                "Fix: pass %s." % (name, field, self.op.type, self._HINT[field] % name))
        return getattr(arg, field), name

    def float(self, name, default):
        return self._single(name, "f", default)[0]

    def int(self, name, default, dtype=np.int64):
        value, full = self._single(name, "i", default)
        return fits(value, dtype, full)

    def bool(self, name, default):
        return bool(self._single(name, "i", default)[0])

    def string(self, name, default):
        value = self._single(name, "s", default)[0]
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value

    def ints(self, name, dtype=np.int32):
        arg = self.raw(self.prefix + name)
        values = list(arg.ints) if arg is not None else []
        return [fits(v, dtype, self.prefix + name) for v in values]


def fits(value, dtype, name):
    """Caffe2's lossless-conversion check for integer arguments (bool: none)."""
    if value is None or np.dtype(dtype) == np.bool_:
        return value
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise ArgumentError(
            "Value %d of argument %s cannot be represented correctly in a target type "
            "(expected a %s in [%d, %d], found %d). Fix: pass a smaller value."
            % (value, name, np.dtype(dtype).name, info.min, info.max, value))
    return value


# --- broadcasting (Add/Sub/Mul/Div, Pow, SumReduceLike) ----------------------------

BCAST_ARGS = [Arg("broadcast", "bool", False), Arg("axis", "int", -1),
              Arg("axis_str", "string", ""), Arg("order", "string", "NCHW")]

# Caffe2 (1.10) did NOT reject axis/axis_str without broadcast=1 in Add/Sub/Mul/Div
# (the check sat in a dead branch); the spec (§3.37) makes it an error, so do we.
REJECT_AXIS_WITHOUT_BROADCAST = True


def _arg_enforce(condition, message):
    if not condition:
        raise ArgumentError(message)


def resolve_axis(op, args, legacy, strict=None):
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


def legacy_dims(op, a_shape, b_shape, axis):
    """Legacy broadcast of B onto A at `axis`: views (pre, n, post) and (n, 1)."""
    if numel(b_shape) == 1:
        return (numel(a_shape),), (1,)
    na, nb = len(a_shape), len(b_shape)
    if not (na >= nb):
        enforce(False,
                "A.dim() >= B.dim(). %d vs %d. If you are doing broadcasting, input1 should "
                "have a smaller or equal number of dimensions. %s: A %s, B %s. Fix: swap the "
                "inputs or use broadcast=0 (numpy-style)." % (na, nb, op, dims_text(a_shape),
                                                              dims_text(b_shape)),
                input_index=1)
    if axis == -1:
        axis = na - nb
    if not (0 <= axis <= na - nb):
        enforce(False,
                "Broadcast axis should be in the range of[0, A.ndim() - B.ndim()], but axis = "
                "%d. %s: A %s, B %s allow 0..%d. Fix: pass a valid axis." % (
                    axis, op, dims_text(a_shape), dims_text(b_shape), na - nb))
    start, end = 0, nb - 1
    while start < nb and b_shape[start] == 1:
        start += 1
    while end >= start and b_shape[end] == 1:
        end -= 1
    for i in range(start, end + 1):
        if a_shape[i + axis] != b_shape[i]:
            enforce(False,
                    "A.size(i + axis) == B.size(i). %d vs %d. Broadcast dimension mismatch. "
                    "%s: B %s placed at axis %d of A %s. Fix: pick the axis where B's dims "
                    "match A's." % (a_shape[i + axis], b_shape[i], op, dims_text(b_shape), axis,
                                    dims_text(a_shape)), input_index=1)
    pre = numel(a_shape[:axis + start])
    n = numel(b_shape[start:end + 1])
    post = numel(a_shape[axis + end + 1:])
    return (pre, n, post), (n, 1)


def broadcast_shape(op, a_shape, b_shape):
    """Numpy-style multidirectional broadcast (Caffe2's message on a mismatch)."""
    out = []
    for k in range(1, max(len(a_shape), len(b_shape)) + 1):
        x = a_shape[-k] if k <= len(a_shape) else None
        y = b_shape[-k] if k <= len(b_shape) else None
        if x is None or y is None:
            out.append(x if y is None else y)
            continue
        if not (x == y or x == 1 or y == 1):
            enforce(False,
                    "A_dim == B_dim || A_dim == 1 || B_dim == 1. A_dim: %d,B_dim: %d. %s "
                    "cannot broadcast A %s with B %s. Fix: make the trailing dims equal or "
                    "1." % (x, y, op, dims_text(a_shape), dims_text(b_shape)))
        out.append(0 if x == 0 or y == 0 else max(x, y))
    return tuple(reversed(out))


def reduce_to(xp, g, dims):
    """Sum g (broadcast shape) down to `dims`, as the gradient of a broadcast."""
    lead = g.ndim - len(dims)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(dims) if d == 1 and g.shape[lead + i] != 1)
    if not axes:
        return xp.array(g, copy=True).reshape(dims)
    return g.sum(axis=axes, dtype=g.dtype).reshape(dims)


# --- numerics ----------------------------------------------------------------------

def host_array(ctx, value):
    """A CPU-side numpy view of a small control tensor (split sizes, a new shape)."""
    return value if isinstance(value, np.ndarray) else np.asarray(ctx.backend.to_host(value))


def reinterpretable(dtype):
    """Whether Caffe2's mutable_data<float>() could keep this dtype's buffer."""
    return dtype.kind in "iuf" and dtype.itemsize >= 4


def reinterpret_float32(xp, x):
    """The first x.size * 4 bytes of x's buffer read as float32, shaped like x."""
    flat = xp.ascontiguousarray(x).reshape(-1)
    return flat.view(np.uint8)[:flat.size * 4].view(F32).reshape(x.shape)


# --- rows of tables (numpy): the embedding ops' memory traffic --------------------------

def _row_view(table):
    """table as a vector of whole rows (one numpy void item each), or None.

    numpy moves a void item with one memcpy, so gathering or scattering rows this
    way costs half (gather) to a third (scatter) of take/fancy indexing on (N, D)
    floats, whose inner loop copies element by element (measured in
    benchmarks/embedding_kernels.py)."""
    if table.ndim < 1 or not table.flags.c_contiguous or table.size == 0:
        return None
    flat = table.reshape(table.shape[0], -1)
    return flat.view(np.dtype((np.void, flat.itemsize * flat.shape[1]))).reshape(-1)


def gather_rows(table, idx):
    """table[idx] along axis 0 (a fresh array), for valid int indices."""
    rows = _row_view(table)
    if rows is None:
        return np.take(table, idx, axis=0)
    return rows.take(idx).view(table.dtype).reshape((len(idx),) + table.shape[1:])


def scatter_rows(table, idx, values):
    """table[idx] = values along axis 0 (distinct indices; table C-contiguous)."""
    rows = _row_view(table)
    if rows is None:
        table[idx] = values
        return
    values = np.ascontiguousarray(values, dtype=table.dtype)
    rows[idx] = values.view(rows.dtype).reshape(len(idx))


_NUMBA = []


def numba_jit(function):
    """`function` compiled by numba (nogil: the dag executor's threads overlap it)
    when the [fast] extra is installed, else None. Compiled on first call, cached
    on disk."""
    if not _NUMBA:
        try:
            import numba
        except ImportError:
            numba = None
        _NUMBA.append(numba)
    if _NUMBA[0] is None:
        return None
    try:
        return _NUMBA[0].njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache location: compile in each process
        return _NUMBA[0].njit(nogil=True)(function)


PREFETCH_AHEAD = 16  # rows: far enough to hide DRAM latency, near enough to stay cached
_PREFETCH = []


def numba_prefetch():
    """A numba intrinsic prefetch(table, row, col) that asks the CPU to fetch the cache
    line of table[row, col] (llvm.prefetch). Embedding loops are bound by DRAM latency
    on random rows; fetching rows 16 lookups ahead made SparseLengthsSum 1.5-1.7x
    faster here. None without numba."""
    if not _PREFETCH:
        _PREFETCH.append(_make_prefetch())
    return _PREFETCH[0]


def _make_prefetch():
    try:
        import llvmlite.binding
        from llvmlite import ir
        from numba import types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:
        return None
    # LLVM 17+ has only opaque pointers: the intrinsic's name lost its pointee type.
    name = ("llvm.prefetch.p0" if llvmlite.binding.llvm_version_info >= (17,)
            else "llvm.prefetch.p0i8")

    @intrinsic
    def prefetch(typingctx, table, row, col):
        def codegen(context, builder, signature, args):
            table_type = signature.args[0]
            array = context.make_array(table_type)(context, builder, args[0])
            at = [context.cast(builder, v, t, types.intp)
                  for v, t in zip(args[1:], signature.args[1:])]
            pointer = cgutils.get_item_pointer(context, builder, table_type, array, at)
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
                name)
            # (address, write=1 so updates own the line, locality 3, data cache)
            builder.call(function, [builder.bitcast(pointer, byte_pointer),
                                    ir.Constant(i32, 1), ir.Constant(i32, 3),
                                    ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return types.void(table, row, col), codegen
    return prefetch


def _scatter_add_loop(data, idx, x, w):
    """data[idx[i]] += w * x[i] for i in order: Caffe2's axpy loop (ScatterWeightedSum)
    and np.add.at's order (w = 1), compiled; duplicates accumulate in index order."""
    ahead = idx.shape[0] - PREFETCH_AHEAD
    for i in range(idx.shape[0]):
        if i < ahead:
            for j in range(0, data.shape[1], 16):  # the row updated 16 steps later
                prefetch(data, idx[i + PREFETCH_AHEAD], j)
        row = idx[i]
        for j in range(data.shape[1]):
            data[row, j] += w * x[i, j]


_COMPILED = {}
prefetch = None  # numba_prefetch(), bound before the loops are compiled


def compiled_loop(cache, key, function):
    """`function` compiled by numba once (cache[key]), with the module global
    `prefetch` (which the embedding loops call) bound to the intrinsic first; None
    without numba."""
    if key not in cache:
        function.__globals__["prefetch"] = numba_prefetch()
        cache[key] = (None if function.__globals__["prefetch"] is None
                      else numba_jit(function))
    return cache[key]


def compiled_scatter_loop():
    """_scatter_add_loop compiled by numba whatever the kernel settings (fused nets)."""
    return compiled_loop({}, "scatter_add", _scatter_add_loop)


def compiled_scatter_add():
    """_scatter_add_loop compiled by numba, or None (no numba / fast kernels off)."""
    loop = compiled_loop(_COMPILED, "scatter_add", _scatter_add_loop)
    return loop if config.fast_kernels() else None


def _segments_valid(indices, lengths, n_rows):
    """LENGTHS non-negative, summing to len(INDICES), every index in [0, n_rows)."""
    total = 0
    for m in range(lengths.shape[0]):
        if lengths[m] < 0:
            return False
        total += lengths[m]
    if total != indices.shape[0]:
        return False
    for j in range(indices.shape[0]):
        if indices[j] < 0 or indices[j] >= n_rows:
            return False
    return True


def compiled_segments_check():
    """_segments_valid compiled by numba (None without numba): for fused nets."""
    return compiled_loop(_COMPILED, "segments", _segments_valid)


def segments_valid(indices, lengths, n_rows):
    """True when a SparseLengths op's INDICES/LENGTHS pass every check, decided in one
    compiled pass (numpy needs four reductions); False means "run the numpy checks"
    (which raise the precise error), as it always does without numba."""
    loop = compiled_segments_check()
    return (loop is not None and indices.ndim == 1 and lengths.ndim == 1
            and loop(indices, lengths, n_rows))


def _rows_valid(indices, n_rows):
    for j in range(indices.shape[0]):
        if indices[j] < 0 or indices[j] >= n_rows:
            return False
    return True


def rows_valid(indices, n_rows):
    """True when every index of a 1-D array is in [0, n_rows), in one compiled pass;
    False means "check with numpy" (which reports the first bad index)."""
    loop = compiled_loop(_COMPILED, "rows", _rows_valid)
    return loop is not None and indices.ndim == 1 and loop(indices, n_rows)


def device_segments_valid(xp, indices, lengths, n_rows):
    """segments_valid for a GPU: one stats kernel and one transfer, or the host's copy of
    fed inputs (ops/_cuda_checks.py index_stats).
    False means "run the step-by-step checks", which raise the precise error."""
    if indices.ndim != 1 or lengths.ndim != 1 or lengths.size == 0 or indices.size == 0:
        return False
    low, total, first, last, _ = index_stats(xp, indices, lengths)
    return (low >= 0 and total == indices.shape[0] and 0 <= first <= last < n_rows)


def device_rows_valid(xp, indices, n_rows):
    """Every index in [0, n_rows): min and max, in one transfer on a GPU (none for
    indices fed from the host)."""
    if indices.size == 0:
        return True
    if xp is np:
        return int(indices.min()) >= 0 and int(indices.max()) < n_rows
    _, _, first, last, _ = index_stats(xp, indices)
    return 0 <= first <= last < n_rows  # (first <= last: the kernel saw every index)


def lengths_low_total(xp, lengths):
    """(min, sum) of int32 LENGTHS ((0, 0) when empty), one transfer on a GPU (none for
    LENGTHS fed from the host)."""
    if lengths.size == 0:
        return 0, 0
    if xp is np:
        return int(lengths.min()), int(lengths.sum(dtype=np.int64))
    low, total, _, _, _ = index_stats(xp, lengths=lengths)
    return low, total


def segment_sum(rows, lengths, weights=None):
    """out[m] = sum of weights[j] * rows[j] over segment m (LENGTHS[m] consecutive
    rows), each segment summed in row order; rows (n, K) float32, lengths summing to
    n, weights None or (n,) float32. Returns (len(lengths), K) float32."""
    n, width = rows.shape
    counts = lengths.astype(np.int64)
    if weights is not None:
        rows = rows * weights.reshape(n, 1)
    starts = np.cumsum(counts) - counts
    nonempty = counts > 0
    if n and nonempty.all():
        return np.add.reduceat(rows, starts, axis=0)
    out = np.zeros((counts.shape[0], width), F32)
    if n:
        out[nonempty] = np.add.reduceat(rows, starts[nonempty], axis=0)
    return out


def repeated_positions(idx, scratch):
    """Boolean mask of the positions of `idx` whose value occurs more than once.

    `scratch` is an int32/int64 array at least max(idx)+1 long whose contents do not
    matter: writing positions forward and backward leaves each value's last and first
    position, without sorting (a sort of 100k ids costs several times more here)."""
    positions = np.arange(len(idx), dtype=scratch.dtype)
    scratch[idx] = positions
    last = scratch[idx]
    scratch[idx[::-1]] = positions[::-1]
    return scratch[idx] != last


def occurrence_rounds(xp, idx):
    """Positions of `idx` split into rounds of distinct rows, in Caffe2's loop order.

    Round k holds the k-th occurrence of every row; rows within a round are distinct,
    so one vectorized step per round equals Caffe2's sequential loop.
    """
    n = int(idx.size)
    if n == 0:
        return []
    order = xp.lexsort(xp.stack([xp.arange(n), idx]))  # by row, then position
    ranked = idx[order]
    rank_sorted = xp.arange(n) - xp.searchsorted(ranked, ranked, side="left")
    depth = int(rank_sorted.max()) + 1
    if depth == 1:
        return [xp.arange(n)]
    rank = xp.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    return [xp.nonzero(rank == r)[0] for r in range(depth)]
