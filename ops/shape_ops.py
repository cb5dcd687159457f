"""Flatten, FlattenToVec, ResizeLike, Reshape, Transpose, ExpandDims, Squeeze: data
rearranged without arithmetic; their gradients are ops of this module. Imports numpy,
the registry, graphnet.devices, graphnet.errors and ops._common only.
"""

import logging

import numpy as np

from graphnet.devices import CPU
from graphnet.errors import ArgumentError
from graphnet.registry import Arg, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._fused import copy_vm
from ._common import INDEX_TYPES, NUMERIC, check_dispatch, host_array, numel

log = logging.getLogger("graphnet")

# --- Flatten, FlattenToVec, ResizeLike -----------------------------------------

FLATTEN = OpSchema("Flatten", inputs=1, outputs=1, args=[Arg("axis", "int", 1)],
                   doc="Copy X as a 2-D (size_to_dim(axis), size_from_dim(axis)) tensor.")


@FLATTEN.shape
def _flatten_shape(args, x):
    rank, axis = len(x.shape), args.axis
    if not (0 <= axis <= rank):
        enforce(False,
                "The rank of the tensor must be >= axis. Found rank %d, axis %d (shape %s). "
                "Fix: pass 0 <= axis <= %d." % (rank, axis, list(x.shape), rank),
                input_index=0)
    return [TensorInfo((numel(x.shape[:axis]), numel(x.shape[axis:])), x.dtype)]


@FLATTEN.kernel
def flatten(ctx, args, x):
    shape = _flatten_shape(args, TensorInfo.of(x))[0].shape
    return x.reshape(shape).copy()


FLATTEN_TO_VEC = OpSchema("FlattenToVec", inputs=1, outputs=1,
                          doc="Copy X as a 1-D tensor of X.size elements.")


@FLATTEN_TO_VEC.shape
def _flatten_to_vec_shape(args, x):
    enforce(len(x.shape) >= 1,
            "The rank of the tensor must be >= 1. Found a 0-d tensor. Fix: use Reshape "
            "(shape=[1]) for scalars.", input_index=0)
    return [TensorInfo((numel(x.shape),), x.dtype)]


@FLATTEN_TO_VEC.kernel
def flatten_to_vec(ctx, args, x):
    _flatten_to_vec_shape(args, TensorInfo.of(x))
    return x.reshape(-1).copy()


RESIZE_LIKE = OpSchema("ResizeLike", inputs=2, outputs=1, should_not_do_gradient=True,
                       doc="Input 0's data with input 1's shape (Flatten's gradient).")


@RESIZE_LIKE.shape
def _resize_like_shape(args, x, like):
    if numel(x.shape) != numel(like.shape):
        enforce(False,
                "input0.numel() == input1.numel(). %d vs %d: ResizeLike needs equal sizes, "
                "found shapes %s and %s. Fix: pass a tensor with as many elements as input 0."
                % (numel(x.shape), numel(like.shape), list(x.shape), list(like.shape)),
                input_index=1)
    return [TensorInfo(like.shape, x.dtype)]


@RESIZE_LIKE.kernel
def resize_like(ctx, args, x, like):
    _resize_like_shape(args, TensorInfo.of(x), TensorInfo.of(like))
    return x.reshape(like.shape).copy()


def _resize_like_gradient(g):
    return [g.op("ResizeLike", [g.GO(0), g.I(0)], [g.GI(0)])]


FLATTEN.gradient(_resize_like_gradient)
FLATTEN_TO_VEC.gradient(_resize_like_gradient)


# --- Reshape -------------------------------------------------------------------

def _reshape_devices(schema, op_device, n_in, n_out, input_devices):
    """new_shape is read wherever it lives (Caffe2 copied it to the host); old_shape
    is always written on the CPU."""
    return [op_device, None][:n_in], [op_device, CPU][:n_out]


RESHAPE = OpSchema(
    "Reshape", inputs=(1, 2), outputs=2, args=[Arg("shape", "ints", [])],
    declared_devices="op_device",
    allow_inplace={(0, 0)}, devices=_reshape_devices,
    doc="Reshape X to `shape` (or input 1): 0 copies a dim, one -1 is inferred. "
        "Output 1 (old_shape, CPU) holds X's shape for the gradient.")


def _reshape_target(in_shape, requested):
    """Caffe2's shape resolution: 0 copies the input dim (non-empty inputs only)
    and a single -1 takes the remaining size."""
    total, new = numel(in_shape), [int(d) for d in requested]
    if total != 0:
        for i in range(min(len(new), len(in_shape))):
            if new[i] == 0:
                new[i] = in_shape[i]
    if not (all(d >= -1 for d in new)):
        enforce(False,
                "Argument `shape` has an invalid dimension: %s (only -1 may be negative). "
                "Fix: use -1 for the one inferred dimension." % new)
    unknown = [i for i, d in enumerate(new) if d == -1]
    if not (len(unknown) <= 1):
        enforce(False,
                "Argument `shape` has more than one missing dimension: %s. Fix: leave at "
                "most one -1." % new)
    size = numel([d for d in new if d != -1])
    if size == 0 and total != 0:
        enforce(False,
                "Can not reshape a non-zero size (%d) tensor to zero size (shape %s). Fix: "
                "use 0 only to copy an input dim." % (total, new))
    if unknown:
        if total != 0:
            if total % size != 0:
                enforce(False,
                        "Argument `shape` does not agree with the input data. (%d vs %d): %s "
                        "has no integer fill for -1 from input shape %s. Fix: pick dims "
                        "dividing %d." % (total, size, new, list(in_shape), total))
            new[unknown[0]] = total // size
        else:
            new[unknown[0]] = 0
    else:
        # Caffe2 skipped this check for empty inputs and returned garbage memory.
        if total != size:
            enforce(False,
                    "Argument `shape` does not agree with the input data. (%d != %d): input "
                    "shape %s, requested %s. Fix: keep the number of elements." % (
                        total, size, list(in_shape), new))
    return tuple(new)


def _requested_shape(args, shape_input_info):
    """Checks on where the new shape comes from; returns old_shape's dtype."""
    if shape_input_info is None:
        enforce(args.has("shape"), "Argument `shape` is missing. Fix: pass shape=[...] "
                                   "or a new_shape input.")
        return np.int64
    dtype = shape_input_info.dtype
    check_dispatch(shape_input_info, INDEX_TYPES, 1, "The new_shape input must be int32 "
                   "or int64. Fix: cast it.")
    if args.has('shape'):
        enforce(False,
                "New shape is specified by the input blob, do not pass in the argument "
                "`shape`. Fix: drop shape=%s or the new_shape input." % list(args.shape))
    if len(shape_input_info.shape) != 1:
        enforce(False,
                "When input_as_shape is true, the input must be a 1D tensor of data type "
                "int64_t: found shape %s. Fix: feed a 1-D tensor." % list(shape_input_info.shape),
                input_index=1)
    enforce(shape_input_info.shape[0] > 0,
            "shape.numel() > 0: the new_shape input is empty. Fix: give at least one dim.",
            input_index=1)
    return dtype


@RESHAPE.shape
def _reshape_shape(args, x, *new_shape):
    dtype = _requested_shape(args, new_shape[0] if new_shape else None)
    old = TensorInfo((len(x.shape),), dtype)
    if new_shape:
        return [None, old]  # the shape is data, unknown statically
    return [TensorInfo(_reshape_target(x.shape, args.shape), x.dtype), old]


@RESHAPE.kernel
def reshape(ctx, args, x, *new_shape):
    dtype = _requested_shape(args, TensorInfo.of(new_shape[0]) if new_shape else None)
    requested = host_array(ctx, new_shape[0]).tolist() if new_shape else args.shape
    y = x.reshape(_reshape_target(x.shape, requested))
    return (y if ctx.inplace(0, 0) else y.copy()), np.asarray(x.shape, dtype=dtype)


@RESHAPE.gradient(copy_args=False)
def _reshape_gradient(g):
    return [g.op("Reshape", [g.GO(0), g.O(1)], [g.GI(0), "_" + g.GI(0) + "_dims"])]


# --- Transpose -----------------------------------------------------------------

def _check_permutation(args):
    if sorted(args.axes) != list(range(len(args.axes))):
        raise ArgumentError(
            "Axes should be a permutation of 0 to ndim. Found axes=%s. Fix: list each "
            "of 0..%d once." % (list(args.axes), len(args.axes) - 1))


TRANSPOSE = OpSchema(
    "Transpose", inputs=1, outputs=1, args=[Arg("axes", "ints", [])],
    arg_check=_check_permutation,
    doc="Permute X's dims by `axes` (default: reversed). float, double, int32, int64.")


@TRANSPOSE.shape
def _transpose_shape(args, x):
    check_dispatch(x, NUMERIC, 0, "Transpose takes float, double, int or long int. Fix: "
                   "cast the input.")
    axes = args.axes or list(range(len(x.shape)))[::-1]
    if len(axes) != len(x.shape):
        enforce(False,
                "ndim == axes_.size(). %d vs %d: axes %s for an input of shape %s. Fix: give "
                "one axis per input dim." % (len(x.shape), len(axes), list(axes),
                                             list(x.shape)), input_index=0)
    return [TensorInfo(tuple(x.shape[a] for a in axes), x.dtype)]


@TRANSPOSE.kernel
def transpose(ctx, args, x):
    _transpose_shape(args, TensorInfo.of(x))
    axes = args.axes or list(range(x.ndim))[::-1]
    return ctx.xp.transpose(x, axes).copy()


@TRANSPOSE.gradient(copy_args=False)
def _transpose_gradient(g):
    """Forward args copied by the maker itself, `axes` inverted in place."""
    op = g.op("Transpose", [g.GO(0)], [g.GI(0)])
    op.arg.extend(g.def_.arg)
    for arg in op.arg:
        if arg.name == "axes":
            old = list(arg.ints)
            for i, a in enumerate(old):
                arg.ints[a] = i
    return [op]


# --- ExpandDims / Squeeze ------------------------------------------------------

def _dims(args):
    return sorted(set(args.dims))


def _check_dims(op_type):
    """Caffe2's constructor checks of `dims` (ExpandDims, Squeeze)."""
    def check(args):
        if not args.dims:
            raise ArgumentError("Parameter `dims` must be provided. Fix: pass dims=[...] "
                                "to %s." % op_type)
        if len(set(args.dims)) < len(args.dims):
            log.warning("Parameter `dims` has repeated dimensions: %s.", list(args.dims))
        if min(args.dims) < 0:
            raise ArgumentError("Dimension ids must be non-negative. Found dims=%s. Fix: "
                                "count dims from 0." % list(args.dims))
    return check


_DIMS_ARGS = [Arg("dims", "ints", [])]
EXPAND_DIMS = OpSchema("ExpandDims", inputs=1, outputs=1, args=_DIMS_ARGS,
                       allow_inplace={(0, 0)}, arg_check=_check_dims("ExpandDims"),
                       doc="Insert size-1 dims at the (sorted, unique) `dims`.")
SQUEEZE = OpSchema("Squeeze", inputs=1, outputs=1, args=_DIMS_ARGS,
                   allow_inplace={(0, 0)}, arg_check=_check_dims("Squeeze"),
                   doc="Remove the size-1 dims listed in `dims`.")


@EXPAND_DIMS.shape
def _expand_dims_shape(args, x):
    dims, shape = _dims(args), list(x.shape)
    if not (len(shape) + len(dims) >= dims[-1] + 1):
        enforce(False,
                "Input needs at least %d dimensions given `dims`. Found shape %s, dims %s. "
                "Fix: use dims below %d." % (1 + dims[-1] - len(dims), shape, dims,
                                             len(shape) + len(dims)), input_index=0)
    for d in dims:
        shape.insert(d, 1)
    return [TensorInfo(shape, x.dtype)]


@SQUEEZE.shape
def _squeeze_shape(args, x):
    dims, shape = _dims(args), list(x.shape)
    if not (len(shape) > dims[-1]):
        enforce(False,
                "Input needs at least %d dimensions. Found shape %s, dims %s. Fix: squeeze "
                "dims the input has." % (dims[-1] + 1, shape, dims), input_index=0)
    for d in dims:
        if shape[d] != 1:
            enforce(False,
                    "Dimension %d of input must be 1 instead of %d. Found shape %s. Fix: "
                    "squeeze only size-1 dims." % (d, shape[d], shape), input_index=0)
    return [TensorInfo([n for i, n in enumerate(shape) if i not in dims], x.dtype)]


def _reshaping_kernel(shape_rule):
    def kernel(ctx, args, x):
        y = x.reshape(shape_rule(args, TensorInfo.of(x))[0].shape)
        return y if ctx.inplace(0, 0) else y.copy()
    return kernel


EXPAND_DIMS.kernel(_reshaping_kernel(_expand_dims_shape))
SQUEEZE.kernel(_reshaping_kernel(_squeeze_shape))


@EXPAND_DIMS.gradient
def _expand_dims_gradient(g):
    return [g.op("Squeeze", [g.GO(0)], [g.GI(0)])]


@SQUEEZE.gradient
def _squeeze_gradient(g):
    return [g.op("ExpandDims", [g.GO(0)], [g.GI(0)])]


# --- fused lowering (graphnet.executors.fused): copies of the flat data -----------------

def _lower_flat_copy(f):
    kind, offset = f.index(0)
    if not (f.distinct() and f.same_sizes([0])):
        return False
    f.emit(copy_vm, kind, offset, f.out(0), f.size())
    return True


FLATTEN.lowering(_lower_flat_copy)
FLATTEN_TO_VEC.lowering(_lower_flat_copy)
RESIZE_LIKE.lowering(_lower_flat_copy)


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Flatten", "ResizeLike")
