"""Concat and Split, each the other's gradient; the axis comes from `axis` or the
storage `order`. Imports numpy, the registry, graphnet.errors and ops._common only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import Arg, INF, OpSchema, TensorInfo, declare_graph_safe, enforce

from ._common import I32, check_type, checked, cpp_name, host_array, numel
from ._cuda_checks import capturing
from ._fused import block_copy_vm, ints_equal_vm

_ORDER_DIM = {"NCHW": 1, "NHWC": 3}


def _check_axis_args(op_type, verb):
    """Caffe2's constructor checks of the axis / order arguments."""
    def check(args):
        if args.has("axis") and args.has("order"):
            raise ArgumentError(
                "You shouldn't specify both the dim to %s, and the order in the case of "
                "4-D images. Found axis=%d and order=%r on %s. Fix: pass only axis "
                "(order only picks axis 1 for NCHW, 3 for NHWC)."
                % (verb, args.axis, args.order, op_type))
        if not args.has("axis") and args.order not in _ORDER_DIM:
            raise ArgumentError(
                "Unsupported storage order: %r for %s, expected 'NCHW' or 'NHWC'. Fix: "
                "pass order='NCHW'/'NHWC' or an explicit axis." % (args.order, op_type))
    return check


def _axis_of(args):
    """(axis, add_axis) as Caffe2 resolved them: `axis` (and `add_axis`) when axis
    is given, else the axis the storage order names with add_axis forced to 0."""
    if args.has("axis"):
        return args.axis, args.add_axis
    return _ORDER_DIM[args.order], 0


def _canonical_axis(axis, ndim, what):
    if not (-ndim <= axis < ndim):
        enforce(False,
                "Axis not in input ndim range: axis = %d for %s of rank %d, expected "
                "%d <= axis < %d. Fix: pick an axis the input has." % (axis, what, ndim,
                                                                       -ndim, ndim),
                input_index=0)
    return axis + ndim if axis < 0 else axis


_AXIS_ARGS = [Arg("axis", "int", -1), Arg("add_axis", "int", 0),
              Arg("order", "string", "NCHW")]

CONCAT = OpSchema(
    "Concat", inputs=(1, INF), outputs=2, args=_AXIS_ARGS, cpu_outputs={1},
    arg_check=_check_axis_args("Concat", "concat"),
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
        if info.dtype != first.dtype:
            enforce(False,
                    "All inputs must have the same type, expected: %s but got: %s for "
                    "input: %d. Fix: cast input %d to %s before Concat."
                    % (cpp_name(first.dtype), cpp_name(info.dtype), j, j, first.dtype),
                    input_index=j)
    where = "The input tensors can only have different dimensions when arg 'add_axis' = " \
            "0 and along the axis = %d" % ca
    for i, dim in enumerate(first.shape):
        if i == ca and not add_axis:
            continue
        for j, info in enumerate(infos[1:], 1):
            if not (len(info.shape) > i):
                enforce(False,
                        "Concat input %d has rank %d but input 0 has rank %d. %s <%s> vs <%s>. "
                        "Fix: give every input the same rank." % (
                            j, len(info.shape), rank, where, list(first.shape),
                            list(info.shape)), input_index=j)
            if dim != info.shape[i]:
                enforce(False,
                        "Expect dimension = %d got %d at axis = %d for input: %d. %s <%s> vs "
                        "<%s>. Fix: make input %d match input 0 there." % (
                            dim, info.shape[i], i, j, where, list(first.shape),
                            list(info.shape), j), input_index=j)
    for j, info in enumerate(infos[1:], 1):
        if len(info.shape) != rank:
            enforce(False,
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
    ca, add_axis, _, sizes = checked(
        ctx, tuple((x.shape, x.dtype) for x in xs),
        lambda: _concat_plan(args, [TensorInfo.of(x) for x in xs]))
    return _join(ctx.xp, xs, ca, add_axis), np.array(sizes, dtype=np.int32)


def _join(xp, xs, axis, add_axis):
    """stack / concatenate, except under CUDA graph capture with more than 8 inputs:
    CuPy then joins them in one kernel that reads a table of their addresses, copied
    from a pinned host buffer that CuPy recycles once the copy is done, so a replay
    would read whatever the buffer holds by then; one copy per input into its slice
    of the output uploads nothing."""
    if len(xs) <= 8 or xp is np or not capturing():
        return xp.stack(xs, axis=axis) if add_axis else xp.concatenate(xs, axis=axis)
    return join_by_copies(xp, xs, axis, add_axis)


def join_by_copies(xp, xs, axis, add_axis):
    """xs (one dtype, shapes equal but along `axis`) joined by slice assignments."""
    if add_axis:
        xs = [x.reshape(x.shape[:axis] + (1,) + x.shape[axis:]) for x in xs]
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    out = xp.empty(tuple(shape), dtype=xs[0].dtype)
    index, start = [slice(None)] * len(shape), 0
    for x in xs:
        width = x.shape[axis]
        if width and x.size:
            index[axis] = slice(start, start + width)
            out[tuple(index)] = x
        start += width
    return out


SPLIT = OpSchema(
    "Split", inputs=(1, 2), outputs=(1, INF), cpu_inputs={1},
    args=_AXIS_ARGS + [Arg("split", "ints", [])],
    arg_check=_check_axis_args("Split", "split"),
    doc="Split input 0 along `axis` into the outputs; sizes from input 1 (int32, CPU), "
        "else the `split` argument, else equal parts. add_axis removes the axis.")


def _split_plan(args, shape, n_out, sizes=None):
    """(canonical axis, add_axis, output shapes) after Caffe2's checks; `sizes` are
    the values of the split input when there is one."""
    axis, add_axis = _axis_of(args)
    ca = _canonical_axis(axis, len(shape), "Split input 0")
    channels = shape[ca]
    if sizes is not None:
        if args.split:
            enforce(False,
                    "If you set split with an input blob, do not pass in split in the "
                    "argument. Found split=%s and a split input. Fix: drop one of them."
                    % list(args.split))
        if len(sizes) != n_out:
            enforce(False,
                    "split_tensor.numel() == OutputSize(). %d vs %d: the split input has %d "
                    "sizes for %d outputs. Fix: give one size per output."
                    % (len(sizes), n_out, len(sizes), n_out), input_index=1)
    elif not args.split:
        if channels % n_out != 0:
            enforce(False,
                    "If you did not specify split explicitly, the number of input "
                    "channels:%d should be divisible by the output size:%d. Fix: pass "
                    "split=[...] or a split input." % (channels, n_out), input_index=0)
        sizes = [channels // n_out] * n_out
    else:
        if len(args.split) != n_out:
            enforce(False,
                    "The number of splits specified should be equal to the number of "
                    "outputs: found %d sizes %s for %d outputs. Fix: give one size per "
                    "output." % (len(args.split), list(args.split), n_out))
        sizes = list(args.split)
    sizes = [int(s) for s in sizes]
    if add_axis:
        if n_out != channels:
            enforce(False,
                    "Sum of split dimensions do not match: should be %d (with add_axis "
                    "every output takes one slice), found %d outputs. Fix: use %d outputs."
                    % (channels, n_out, channels), input_index=0)
        rest = tuple(shape[:ca]) + tuple(shape[ca + 1:])
        return ca, add_axis, [rest] * n_out
    if not (all(s >= 0 for s in sizes)):
        enforce(False,
                "Split sizes must be non-negative, found %s. Fix: pass sizes >= 0." % sizes)
    if sum(sizes) != channels:
        enforce(False,
                "Sum of split dimensions do not match: should be %d, found %d (sizes %s). "
                "Fix: make the sizes add up to the axis length %d."
                % (channels, sum(sizes), sizes, channels), input_index=0)
    return ca, add_axis, [tuple(shape[:ca]) + (s,) + tuple(shape[ca + 1:]) for s in sizes]


def _check_split_sizes_input(info):
    check_type(info, I32, 1, "Fix: feed the split sizes as int32.")


@SPLIT.shape
def _split_shape(args, x, *split):
    n_out = args._num_outputs
    if split:
        _check_split_sizes_input(split[0])
        if numel(split[0].shape) != n_out:
            enforce(False,
                    "split_tensor.numel() == OutputSize(). %d vs %d. Fix: give one size "
                    "per output." % (numel(split[0].shape), n_out), input_index=1)
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
        _check_split_sizes_input(split_input[0])  # (reads only .dtype)
        sizes = tuple(host_array(ctx, split_input[0]).reshape(-1).tolist())
    pieces, grouped = checked(ctx, (x.shape, sizes),
                              lambda: _split_pieces(args, x.shape, ctx.num_outputs, sizes))
    if grouped is not None:
        # one copy for every output: X's pieces laid out one after another, each
        # output a view of its own part (on a GPU one kernel, not one per output)
        parts = x.reshape(grouped).transpose(1, 0, 2).copy()
        return tuple(parts[k].reshape(shape) for k, (_, shape) in enumerate(pieces))
    return tuple(x[index].reshape(shape).copy() for index, shape in pieces)


def _split_pieces(args, shape, n_out, sizes):
    """(index into X, output shape) per output, after _split_plan's checks; and when
    the outputs are equal parts, the shape (before, outputs, part) that views X with
    output k at [:, k, :], else None."""
    ca, add_axis, shapes = _split_plan(args, shape, n_out,
                                       None if sizes is None else list(sizes))
    pieces, start = [], 0
    for out_shape in shapes:
        step = 1 if add_axis else out_shape[ca]
        pieces.append(((slice(None),) * ca + (slice(start, start + step),), out_shape))
        start += step
    widths = {1 if add_axis else out_shape[ca] for out_shape in shapes}
    grouped = None
    if len(widths) == 1 and n_out > 1:
        grouped = (numel(shape[:ca]), n_out, widths.pop() * numel(shape[ca + 1:]))
    return pieces, grouped


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


# --- fused lowering (graphnet.executors.fused): column blocks of a 2-D view ------------

def _blocks(f, shape, pieces):
    """(canonical axis, add_axis, outer, width, [(offset, inner)]) of `pieces` (shapes)
    stacked along the op's axis into `shape`; None when the 2-D view does not hold."""
    axis, add_axis = _axis_of(f.args)
    ca = _canonical_axis(axis, len(shape), "%s's concatenated tensor" % f.step.op_type)
    outer = numel(shape[:ca])
    inners = [numel(p) // outer if outer else 0 for p in pieces]
    offsets = [sum(inners[:k]) for k in range(len(inners))]
    if not (f.distinct() and outer > 0 and sum(inners) * outer == numel(shape)):
        return None
    return ca, add_axis, outer, sum(inners), list(zip(offsets, inners))


@CONCAT.lowering
def _lower_concat(f):
    plan = _blocks(f, f.out_info[0].shape, [i.shape for i in f.in_info])
    if plan is None or not (f.all_dtypes(np.float32, np.int32)
                            and f.out_info[0].dtype == np.float32):
        return False
    _, _, outer, width, blocks = plan
    for k, (offset, inner) in enumerate(blocks):
        f.emit(block_copy_vm, f.off(k), f.out(0), outer, width, offset, inner, 1)
    return len(f.out_info) == 1 or f.write_recorded(1)


@SPLIT.lowering
def _lower_split(f):
    plan = _blocks(f, f.in_info[0].shape, [o.shape for o in f.out_info])
    if plan is None or f.in_info[0].dtype != np.float32:
        return False
    ca, add_axis, outer, width, blocks = plan
    if len(f.in_info) == 2:  # the sizes input must still say what the code was built for
        sizes = [1 if add_axis else o.shape[ca] for o in f.out_info]
        kind, offset = f.index(1)
        if numel(f.in_info[1].shape) != len(sizes) or f.in_info[1].dtype != np.int32:
            return False
        f.emit(ints_equal_vm, kind, offset, len(sizes), *sizes)
    for k, (offset, inner) in enumerate(blocks):
        f.emit(block_copy_vm, f.out(k), f.off(0), outer, width, offset, inner, 0)
    return True


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("Concat", "Split")  # (Split's CPU sizes: compared before each replay)
