"""Shape family: ops that rearrange data without arithmetic (Concat, Split,
Flatten, FlattenToVec, ResizeLike, Reshape, Transpose, ExpandDims, Squeeze).

Their gradients are ops of this same family (Concat <-> Split, Reshape,
Transpose, ExpandDims <-> Squeeze, ResizeLike). Imports numpy and the registry.
"""

import logging

import numpy as np

from graphnet.devices import CPU
from graphnet.errors import ArgumentError
from graphnet.registry import INF, Arg, OpSchema, TensorInfo, enforce

log = logging.getLogger("graphnet")

# numpy dtype -> the name Caffe2's TypeMeta printed in messages
_TYPE_NAMES = {
    "float32": "float", "float64": "double", "float16": "c10::Half", "int32": "int",
    "int64": "long int", "int16": "short int", "uint16": "short unsigned int",
    "int8": "signed char", "uint8": "unsigned char", "bool": "bool",
    "object": "std::basic_string<char>",
}
_ORDER_DIM = {"NCHW": 1, "NHWC": 3}


def _type_name(dtype):
    return _TYPE_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)


def _numel(shape):
    return int(np.prod(shape, dtype=np.int64))


def _host(ctx, value):
    """A CPU-side numpy view of a small control tensor (split sizes, new shape)."""
    return value if isinstance(value, np.ndarray) else np.asarray(ctx.backend.to_host(value))


class _Schema(OpSchema):
    """An OpSchema that also runs the checks Caffe2 made in the op's constructor,
    so they fail when the op is created (CreateNet, RunOperatorOnce) as there, and
    records the output count for shape rules (Caffe2's saw the whole OperatorDef)."""

    def __init__(self, type, creation_check=None, **kwargs):
        self.creation_check = creation_check
        super().__init__(type, **kwargs)

    def parse_args(self, op):
        args = super().parse_args(op)
        args._num_outputs = len(op.output)
        if self.creation_check is not None:
            self.creation_check(self, args)
        return args


# --- Concat / Split: the axis rule they share ----------------------------------

def _check_axis_args(verb):
    def check(schema, args):
        if args.has("axis") and args.has("order"):
            raise ArgumentError(
                "You shouldn't specify both the dim to %s, and the order in the case of "
                "4-D images. Found axis=%d and order=%r on %s. Fix: pass only axis "
                "(order only picks axis 1 for NCHW, 3 for NHWC)."
                % (verb, args.axis, args.order, schema.type))
        if not args.has("axis") and args.order not in _ORDER_DIM:
            raise ArgumentError(
                "Unsupported storage order: %r for %s, expected 'NCHW' or 'NHWC'. Fix: "
                "pass order='NCHW'/'NHWC' or an explicit axis." % (args.order, schema.type))
    return check


def _axis_of(args):
    """(axis, add_axis) as Caffe2 resolved them: `axis` (and `add_axis`) when axis
    is given, else the axis the storage order names with add_axis forced to 0."""
    if args.has("axis"):
        return args.axis, args.add_axis
    return _ORDER_DIM[args.order], 0


def _canonical_axis(axis, ndim, what):
    enforce(-ndim <= axis < ndim,
            "Axis not in input ndim range: axis = %d for %s of rank %d, expected "
            "%d <= axis < %d. Fix: pick an axis the input has." % (axis, what, ndim,
                                                                   -ndim, ndim),
            input_index=0)
    return axis + ndim if axis < 0 else axis


_AXIS_ARGS = [Arg("axis", "int", -1), Arg("add_axis", "int", 0),
              Arg("order", "string", "NCHW")]

CONCAT = _Schema(
    "Concat", inputs=(1, INF), outputs=2, args=_AXIS_ARGS, cpu_outputs={1},
    creation_check=_check_axis_args("concat"),
    doc="Concatenate (or, with add_axis, stack) inputs along `axis`; output 1 "
        "(split_info, int32, CPU) holds each input's extent along it.")


def _concat_plan(args, infos):
    """(canonical axis, add_axis, output shape, split sizes) after Caffe2's checks."""
    axis, add_axis = _axis_of(args)
    first = infos[0]
    rank = len(first.shape)
    ca = _canonical_axis(axis, rank + (1 if add_axis else 0),
                         "Concat input 0%s" % (" (+1 for add_axis)" if add_axis else ""))
    for j, info in enumerate(infos[1:], 1):
        enforce(info.dtype == first.dtype,
                "All inputs must have the same type, expected: %s but got: %s for "
                "input: %d. Fix: cast input %d to %s before Concat."
                % (_type_name(first.dtype), _type_name(info.dtype), j, j, first.dtype),
                input_index=j)
    where = "The input tensors can only have different dimensions when arg 'add_axis' = " \
            "0 and along the axis = %d" % ca
    for i, dim in enumerate(first.shape):
        if i == ca and not add_axis:
            continue
        for j, info in enumerate(infos[1:], 1):
            enforce(len(info.shape) > i,
                    "Concat input %d has rank %d but input 0 has rank %d. %s <%s> vs <%s>. "
                    "Fix: give every input the same rank." % (
                        j, len(info.shape), rank, where, list(first.shape),
                        list(info.shape)), input_index=j)
            enforce(dim == info.shape[i],
                    "Expect dimension = %d got %d at axis = %d for input: %d. %s <%s> vs "
                    "<%s>. Fix: make input %d match input 0 there." % (
                        dim, info.shape[i], i, j, where, list(first.shape),
                        list(info.shape), j), input_index=j)
    for j, info in enumerate(infos[1:], 1):
        enforce(len(info.shape) == rank,
                "Concat input %d has rank %d but input 0 has rank %d. %s <%s> vs <%s>. "
                "Fix: give every input the same rank." % (
                    j, len(info.shape), rank, where, list(first.shape), list(info.shape)),
                input_index=j)
    shape = list(first.shape)
    if add_axis:
        sizes = [1] * len(infos)
        shape.insert(ca, len(infos))
    else:
        sizes = [info.shape[ca] for info in infos]
        shape[ca] = sum(sizes)
    return ca, add_axis, tuple(shape), sizes


@CONCAT.shape
def _concat_shape(args, *infos):
    _, _, shape, sizes = _concat_plan(args, infos)
    return [TensorInfo(shape, infos[0].dtype), TensorInfo((len(sizes),), np.int32)]


@CONCAT.kernel
def concat(ctx, args, *xs):
    ca, add_axis, _, sizes = _concat_plan(args, [TensorInfo.of(x) for x in xs])
    y = ctx.xp.stack(xs, axis=ca) if add_axis else ctx.xp.concatenate(xs, axis=ca)
    return y, np.asarray(sizes, dtype=np.int32)


SPLIT = _Schema(
    "Split", inputs=(1, 2), outputs=(1, INF), cpu_inputs={1},
    args=_AXIS_ARGS + [Arg("split", "ints", [])],
    creation_check=_check_axis_args("split"),
    doc="Split input 0 along `axis` into the outputs; sizes from input 1 (int32, CPU), "
        "else the `split` argument, else equal parts. add_axis removes the axis.")


def _split_plan(args, shape, n_out, sizes=None):
    """(canonical axis, add_axis, output shapes) after Caffe2's checks; `sizes` are
    the values of the split input when there is one."""
    axis, add_axis = _axis_of(args)
    ca = _canonical_axis(axis, len(shape), "Split input 0")
    channels = shape[ca]
    if sizes is not None:
        enforce(not args.split,
                "If you set split with an input blob, do not pass in split in the "
                "argument. Found split=%s and a split input. Fix: drop one of them."
                % list(args.split))
        enforce(len(sizes) == n_out,
                "split_tensor.numel() == OutputSize(). %d vs %d: the split input has %d "
                "sizes for %d outputs. Fix: give one size per output."
                % (len(sizes), n_out, len(sizes), n_out), input_index=1)
    elif not args.split:
        enforce(channels % n_out == 0,
                "If you did not specify split explicitly, the number of input "
                "channels:%d should be divisible by the output size:%d. Fix: pass "
                "split=[...] or a split input." % (channels, n_out), input_index=0)
        sizes = [channels // n_out] * n_out
    else:
        enforce(len(args.split) == n_out,
                "The number of splits specified should be equal to the number of "
                "outputs: found %d sizes %s for %d outputs. Fix: give one size per "
                "output." % (len(args.split), list(args.split), n_out))
        sizes = list(args.split)
    sizes = [int(s) for s in sizes]
    if add_axis:
        enforce(n_out == channels,
                "Sum of split dimensions do not match: should be %d (with add_axis "
                "every output takes one slice), found %d outputs. Fix: use %d outputs."
                % (channels, n_out, channels), input_index=0)
        rest = tuple(shape[:ca]) + tuple(shape[ca + 1:])
        return ca, add_axis, [rest] * n_out
    enforce(all(s >= 0 for s in sizes),
            "Split sizes must be non-negative, found %s. Fix: pass sizes >= 0." % sizes)
    enforce(sum(sizes) == channels,
            "Sum of split dimensions do not match: should be %d, found %d (sizes %s). "
            "Fix: make the sizes add up to the axis length %d."
            % (channels, sum(sizes), sizes, channels), input_index=0)
    return ca, add_axis, [tuple(shape[:ca]) + (s,) + tuple(shape[ca + 1:]) for s in sizes]


def _check_split_sizes_input(info):
    enforce(info.dtype == np.int32,
            "Tensor type mismatch, caller expects elements to be int, while tensor "
            "contains %s. Fix: feed the split sizes as int32." % _type_name(info.dtype),
            input_index=1)


@SPLIT.shape
def _split_shape(args, x, *split):
    n_out = args._num_outputs
    if split:
        _check_split_sizes_input(split[0])
        enforce(_numel(split[0].shape) == n_out,
                "split_tensor.numel() == OutputSize(). %d vs %d. Fix: give one size "
                "per output." % (_numel(split[0].shape), n_out), input_index=1)
        if not _axis_of(args)[1]:
            return [None] * n_out  # sizes are data, unknown statically
        sizes = [1] * n_out
    else:
        sizes = None
    _, _, shapes = _split_plan(args, x.shape, n_out, sizes)
    return [TensorInfo(s, x.dtype) for s in shapes]


@SPLIT.kernel
def split(ctx, args, x, *split_input):
    sizes = None
    if split_input:
        _check_split_sizes_input(TensorInfo.of(split_input[0]))
        sizes = _host(ctx, split_input[0]).reshape(-1).tolist()
    ca, add_axis, shapes = _split_plan(args, x.shape, ctx.num_outputs, sizes)
    outs, start = [], 0
    for shape in shapes:
        step = 1 if add_axis else shape[ca]
        piece = x[(slice(None),) * ca + (slice(start, start + step),)]
        outs.append(piece.reshape(shape).copy())
        start += step
    return tuple(outs)


@CONCAT.gradient
def _concat_gradient(g):
    """Split the output gradient back along the forward axis (args appended)."""
    if not g.has_GO(0):
        return []
    return [g.op("Split", [g.GO(0), g.O(1)], [g.GI(i) for i in range(len(g.def_.input))])]


@SPLIT.gradient
def _split_gradient(g):
    """Concat the output gradients that exist (as Caffe2 did, skipping the others)."""
    grads = [g.GO(i) for i in range(len(g.def_.output)) if g.has_GO(i)]
    if not grads:
        return []
    return [g.op("Concat", grads, [g.GI(0), "_" + g.GI(0) + "_dims"])]


# --- Flatten, FlattenToVec, ResizeLike -----------------------------------------

FLATTEN = OpSchema("Flatten", inputs=1, outputs=1, args=[Arg("axis", "int", 1)],
                   doc="Copy X as a 2-D (size_to_dim(axis), size_from_dim(axis)) tensor.")


@FLATTEN.shape
def _flatten_shape(args, x):
    rank, axis = len(x.shape), args.axis
    enforce(0 <= axis <= rank,
            "The rank of the tensor must be >= axis. Found rank %d, axis %d (shape %s). "
            "Fix: pass 0 <= axis <= %d." % (rank, axis, list(x.shape), rank),
            input_index=0)
    return [TensorInfo((_numel(x.shape[:axis]), _numel(x.shape[axis:])), x.dtype)]


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
    return [TensorInfo((_numel(x.shape),), x.dtype)]


@FLATTEN_TO_VEC.kernel
def flatten_to_vec(ctx, args, x):
    _flatten_to_vec_shape(args, TensorInfo.of(x))
    return x.reshape(-1).copy()


RESIZE_LIKE = OpSchema("ResizeLike", inputs=2, outputs=1, should_not_do_gradient=True,
                       doc="Input 0's data with input 1's shape (Flatten's gradient).")


@RESIZE_LIKE.shape
def _resize_like_shape(args, x, like):
    enforce(_numel(x.shape) == _numel(like.shape),
            "input0.numel() == input1.numel(). %d vs %d: ResizeLike needs equal sizes, "
            "found shapes %s and %s. Fix: pass a tensor with as many elements as input 0."
            % (_numel(x.shape), _numel(like.shape), list(x.shape), list(like.shape)),
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
    allow_inplace={(0, 0)}, devices=_reshape_devices,
    doc="Reshape X to `shape` (or input 1): 0 copies a dim, one -1 is inferred. "
        "Output 1 (old_shape, CPU) holds X's shape for the gradient.")


def _reshape_target(in_shape, requested):
    """Caffe2's shape resolution: 0 copies the input dim (non-empty inputs only)
    and a single -1 takes the remaining size."""
    total, new = _numel(in_shape), [int(d) for d in requested]
    if total != 0:
        for i in range(min(len(new), len(in_shape))):
            if new[i] == 0:
                new[i] = in_shape[i]
    enforce(all(d >= -1 for d in new),
            "Argument `shape` has an invalid dimension: %s (only -1 may be negative). "
            "Fix: use -1 for the one inferred dimension." % new)
    unknown = [i for i, d in enumerate(new) if d == -1]
    enforce(len(unknown) <= 1,
            "Argument `shape` has more than one missing dimension: %s. Fix: leave at "
            "most one -1." % new)
    size = _numel([d for d in new if d != -1])
    enforce(not (size == 0 and total != 0),
            "Can not reshape a non-zero size (%d) tensor to zero size (shape %s). Fix: "
            "use 0 only to copy an input dim." % (total, new))
    if unknown:
        if total != 0:
            enforce(total % size == 0,
                    "Argument `shape` does not agree with the input data. (%d vs %d): %s "
                    "has no integer fill for -1 from input shape %s. Fix: pick dims "
                    "dividing %d." % (total, size, new, list(in_shape), total))
            new[unknown[0]] = total // size
        else:
            new[unknown[0]] = 0
    else:
        # Caffe2 skipped this check for empty inputs and returned garbage memory.
        enforce(total == size,
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
    enforce(dtype in (np.int32, np.int64),
            "Unsupported type of tensor: %s. The new_shape input must be int32 or int64. "
            "Fix: cast it." % _type_name(dtype), input_index=1)
    enforce(not args.has("shape"),
            "New shape is specified by the input blob, do not pass in the argument "
            "`shape`. Fix: drop shape=%s or the new_shape input." % list(args.shape))
    enforce(len(shape_input_info.shape) == 1,
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
    requested = _host(ctx, new_shape[0]).tolist() if new_shape else args.shape
    y = x.reshape(_reshape_target(x.shape, requested))
    return (y if ctx.inplace(0, 0) else y.copy()), np.asarray(x.shape, dtype=dtype)


@RESHAPE.gradient(copy_args=False)
def _reshape_gradient(g):
    return [g.op("Reshape", [g.GO(0), g.O(1)], [g.GI(0), "_" + g.GI(0) + "_dims"])]


# --- Transpose -----------------------------------------------------------------

def _check_permutation(schema, args):
    if sorted(args.axes) != list(range(len(args.axes))):
        raise ArgumentError(
            "Axes should be a permutation of 0 to ndim. Found axes=%s. Fix: list each "
            "of 0..%d once." % (list(args.axes), len(args.axes) - 1))


TRANSPOSE = _Schema(
    "Transpose", inputs=1, outputs=1, args=[Arg("axes", "ints", [])],
    creation_check=_check_permutation,
    doc="Permute X's dims by `axes` (default: reversed). float, double, int32, int64.")

_TRANSPOSE_TYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))


@TRANSPOSE.shape
def _transpose_shape(args, x):
    enforce(x.dtype in _TRANSPOSE_TYPES,
            "Unsupported type of tensor: %s. Transpose takes float, double, int or long "
            "int. Fix: cast the input." % _type_name(x.dtype), input_index=0)
    axes = args.axes or list(range(len(x.shape)))[::-1]
    enforce(len(axes) == len(x.shape),
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


def _check_dims(schema, args):
    if not args.dims:
        raise ArgumentError("Parameter `dims` must be provided. Fix: pass dims=[...] "
                            "to %s." % schema.type)
    if len(set(args.dims)) < len(args.dims):
        log.warning("Parameter `dims` has repeated dimensions: %s.", list(args.dims))
    if min(args.dims) < 0:
        raise ArgumentError("Dimension ids must be non-negative. Found dims=%s. Fix: "
                            "count dims from 0." % list(args.dims))


_DIMS_ARGS = [Arg("dims", "ints", [])]
EXPAND_DIMS = _Schema("ExpandDims", inputs=1, outputs=1, args=_DIMS_ARGS,
                      allow_inplace={(0, 0)}, creation_check=_check_dims,
                      doc="Insert size-1 dims at the (sorted, unique) `dims`.")
SQUEEZE = _Schema("Squeeze", inputs=1, outputs=1, args=_DIMS_ARGS,
                  allow_inplace={(0, 0)}, creation_check=_check_dims,
                  doc="Remove the size-1 dims listed in `dims`.")


@EXPAND_DIMS.shape
def _expand_dims_shape(args, x):
    dims, shape = _dims(args), list(x.shape)
    enforce(len(shape) + len(dims) >= dims[-1] + 1,
            "Input needs at least %d dimensions given `dims`. Found shape %s, dims %s. "
            "Fix: use dims below %d." % (1 + dims[-1] - len(dims), shape, dims,
                                         len(shape) + len(dims)), input_index=0)
    for d in dims:
        shape.insert(d, 1)
    return [TensorInfo(shape, x.dtype)]


@SQUEEZE.shape
def _squeeze_shape(args, x):
    dims, shape = _dims(args), list(x.shape)
    enforce(len(shape) > dims[-1],
            "Input needs at least %d dimensions. Found shape %s, dims %s. Fix: squeeze "
            "dims the input has." % (dims[-1] + 1, shape, dims), input_index=0)
    for d in dims:
        enforce(shape[d] == 1,
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
