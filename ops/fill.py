"""Caffe2's FillerOp rules (the output shape, checked at creation) with ConstantFill and
the GivenTensor*Fill ops, no gradient. Imports numpy, graphnet.registry,
graphnet.errors and ops._common only.
"""

import numpy as np

from graphnet.errors import ArgumentError, HostOnlyTypeError, enforce
from graphnet.registry import Arg, OpSchema, TensorInfo, declare_graph_safe

from ._common import TypedArgs, check_type, fits, numel

# TensorProto.DataType codes (graphnet.proto mirrors caffe2.proto).
UNDEFINED, FLOAT, INT32, BYTE, STRING, BOOL, UINT8, INT8, UINT16, INT16, INT64 = range(11)
FLOAT16, DOUBLE = 12, 13
_DATA_TYPES = {"UNDEFINED": 0, "FLOAT": 1, "INT32": 2, "BYTE": 3, "STRING": 4, "BOOL": 5,
               "UINT8": 6, "INT8": 7, "UINT16": 8, "INT16": 9, "INT64": 10, "FLOAT16": 12,
               "DOUBLE": 13, "ZERO_COLLISION_HASH": 14, "REBATCHING_BUFFER": 15}
_NUMPY = {FLOAT: np.float32, DOUBLE: np.float64, BOOL: np.bool_, INT8: np.int8,
          INT16: np.int16, INT32: np.int32, INT64: np.int64, UINT8: np.uint8,
          UINT16: np.uint16, STRING: object}


def expect_fill_type(x, dtype, what, index):
    """A tensor a fill reads (value, min/max, shape, iteration) must hold `dtype`."""
    name = np.dtype(dtype).name
    if x.dtype != dtype:
        check_type(x, dtype, index, "(%s: expected %s, found %s.) Fix: feed it as %s."
                   % (what, name, x.dtype.name, name))


def _cast_data_type(op, args, name="dtype"):
    """caffe2::cast::GetCastDataType: a DataType int, or its name as a string."""
    if args.field(name) == "s":
        text = getattr(args, name).upper()
        if text not in _DATA_TYPES:
            raise ArgumentError("Unknown 'to' argument: %s (expected one of %s). Fix: "
                                "pass a TensorProto.DataType value, e.g. dtype=core."
                                "DataType.FLOAT." % (text, ", ".join(sorted(_DATA_TYPES))))
        return _DATA_TYPES[text]
    return TypedArgs(op).int(name, FLOAT, np.int32)


def _bad_dtype(op_type, code, allowed, given=False):
    """Caffe2's texts for a dtype the op has no kernel for (GivenTensorFill words the
    undefined case, and names the op, a little differently)."""
    if code == UNDEFINED:
        if given:
            return ArgumentError("Cannot have undefined 'dtype' argument (op %s). Fix: "
                                 "pass one of %s." % (op_type, allowed))
        return ArgumentError("%s op cannot have undefined 'dtype' argument. Fix: pass "
                             "one of %s." % (op_type, allowed))
    return ArgumentError("Unexpected 'dtype' argument value: %d (%s%s supports %s). Fix: "
                         "pass one of those." % (code, "op " if given else "", op_type,
                                                 allowed))


def _names(codes):
    inverse = {v: k for k, v in _DATA_TYPES.items()}
    return ", ".join(inverse[c] for c in codes)


# --- FillerOp: the shape rules every filler shares -----------------------------------

def _shape_input_anywhere(schema, op_device, n_in, n_out, input_devices):
    """Input 0 lends only its shape (or a few int64s read on the host), so it may
    live on any device, as in Caffe2; other inputs and the output are on the op's."""
    wanted = [None] + [op_device] * (n_in - 1) if n_in else []
    return wanted, [op_device] * n_out


def filler_schema(type, out_dtype=np.float32, args=(), inputs=(0, 1), setup=None, **kw):
    """Caffe2's FillerOp. The output shape comes from the `shape` argument (no input),
    or from input 0's shape (or, with `input_as_shape`, its int64 values) followed by
    `extra_shape`. Caffe2 checked those rules and every argument in the op's
    constructor, so they run as arg_check when the op is created; `setup(args, op)`
    does the rest of the constructor. Results ride along on the parsed args."""
    def arg_check(parsed):
        parsed.out_dtype = out_dtype
        parsed.shape = _shape_argument(parsed._def, parsed)
        if setup is not None:
            setup(parsed, parsed._def)

    kw.setdefault("devices", _shape_input_anywhere)
    schema = OpSchema(type, inputs=inputs, outputs=1, allow_inplace={(0, 0)},
                      no_gradient=True, arg_check=arg_check,
                      args=list(args) + [Arg("extra_shape", "ints", []),
                                         Arg("input_as_shape", "bool", False)], **kw)
    schema.shape(_filler_shape)
    return schema


def _shape_argument(op, args):
    """FillerOp's constructor: `shape` (a list) without inputs, never with one."""
    arg = TypedArgs(op).raw("shape")
    shape, scalar = [], False
    if arg is not None:
        if arg.HasField("i"):
            scalar = True  # Caffe2 reads no list from it; an error only without input
        elif len(arg.ints):
            shape = [int(d) for d in arg.ints]
        elif len(arg.floats) or len(arg.strings) or arg.HasField("f") or arg.HasField("s"):
            raise ArgumentError("Argument shape does not have the right field: expected "
                                "field ints (op %s). Fix: pass a list of ints, e.g. "
                                "shape=[2, 3]." % op.type)
    if op.input:
        if shape:
            raise ArgumentError(
                "Cannot set the shape argument and pass in an input at the same time "
                "(%s got shape=%s and input '%s'). Fix: drop `shape` (the output takes "
                "input 0's shape) or drop the input." % (op.type, shape, op.input[0]))
    else:
        if args.extra_shape:
            raise ArgumentError(
                "Cannot set extra_shape when there is no input (%s got extra_shape=%s). "
                "Fix: put the whole shape in `shape`, or pass an input."
                % (op.type, list(args.extra_shape)))
        if args.input_as_shape:
            raise ArgumentError(
                "An input must be given if input_as_shape is true (%s has no input). "
                "Fix: pass a 1-D int64 shape tensor as input 0, or use `shape`." % op.type)
        if scalar:
            raise ArgumentError(
                "Fill 'shape' argument was a scalar, list expected (%s got shape=%d). "
                "Fix: pass shape=[%d]." % (op.type, arg.i, arg.i))
    if any(d < 0 for d in shape):
        raise ArgumentError("%s: 'shape' has a negative dimension, expected sizes >= 0, "
                            "found %s. Fix: pass non-negative sizes." % (op.type, shape))
    return shape


def _filler_shape(args, *inputs):
    if not inputs:
        shape = tuple(args.shape)
    elif args.input_as_shape:
        return [None]  # read from the input's values at run time
    else:
        shape = inputs[0].shape + tuple(args.extra_shape)
    return [TensorInfo(shape, args.out_dtype)]


def out_shape(ctx, args, inputs):
    """The output shape at run time (FillerOp::RunOnDevice)."""
    if not inputs:
        return tuple(args.shape)
    x = inputs[0]
    if not (hasattr(x, "shape")):
        enforce(False, "%s: input 0 must be a tensor, found %s. Fix: feed a "
                "numpy array." % (ctx.op.type, type(x).__name__), input_index=0)
    if not args.input_as_shape:
        return tuple(x.shape) + tuple(args.extra_shape)
    if x.ndim != 1:
        enforce(False, "When input_as_shape is true, the input must be a 1D tensor of "
                "data type int64_t (expected 1 dimension, found shape %s). Fix: feed the "
                "shape as np.array([d0, d1, ...], np.int64)." % (tuple(x.shape),),
                input_index=0)
    enforce(x.size > 0, "input.numel() > 0: with input_as_shape the shape tensor must "
            "hold at least one dimension, found an empty one. Fix: feed e.g. "
            "np.array([3], np.int64).", input_index=0)
    expect_fill_type(x, np.int64, "input_as_shape input", 0)
    dims = [int(d) for d in np.asarray(ctx.backend.to_host(x))]
    if not (all(d >= 0 for d in dims)):
        enforce(False, "%s: input_as_shape holds a negative size, "
                "expected sizes >= 0, found %s. Fix: feed non-negative sizes."
                % (ctx.op.type, dims), input_index=0)
    return tuple(dims) + tuple(args.extra_shape)


def place(ctx, array):
    """A host array moved onto the op's device."""
    return ctx.backend.from_host(array, ctx.device)


def _no_strings_on_gpu(ctx, dtype):
    if dtype == object and ctx.device.is_gpu:
        raise HostOnlyTypeError(
            "%s: a STRING tensor cannot live on a GPU, found device %s. Fix: run this "
            "fill on the CPU." % (ctx.op.type, ctx.device))


# --- ConstantFill -------------------------------------------------------------------

_CONSTANT_TYPES = (FLOAT, DOUBLE, BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, STRING)


def _constant_fill_setup(args, op):
    """dtype: the `dtype` arg; else FLOAT for a float `value`, INT64 for an int one."""
    if args.has("dtype"):
        code = args.dtype
    elif args.has("value"):
        field = args.field("value")
        if field == "s":
            raise ArgumentError(
                "Argument 'value' is of unexpected type (a string without `dtype`). Fix: "
                "pass dtype=core.DataType.STRING for a string fill, or a number.")
        code = FLOAT if field == "f" else INT64
    else:
        code = FLOAT
    if code not in _CONSTANT_TYPES:
        raise _bad_dtype("ConstantFill", code, _names(_CONSTANT_TYPES))
    args.out_dtype = np.dtype(_NUMPY[code])
    typed = TypedArgs(op)
    if code == STRING:
        arg = typed.raw("value")
        if arg is not None and not arg.HasField("s"):
            typed.string("value", "")  # raises: expected field s
        args.fill_value = arg.s if arg is not None else b""
    elif code in (FLOAT, DOUBLE):
        args.fill_value = typed.float("value", 0.0)
    else:
        args.fill_value = typed.int("value", 0, _NUMPY[code])


CONSTANT_FILL = filler_schema(
    "ConstantFill", inputs=(0, 2), setup=_constant_fill_setup,
    args=[Arg("value", "scalar"), Arg("dtype", "int")],
    doc="Fill the output with `value` (or with input 1's single element).")


@CONSTANT_FILL.kernel
def constant_fill(ctx, args, *inputs):
    shape = out_shape(ctx, args, inputs[:1])
    dtype = args.out_dtype
    if dtype == object:
        if not (len(inputs) < 2):
            enforce(False, "constant fill string from tensor is not supported "
                    "(expected no value input with dtype STRING, found %d inputs). Fix: pass "
                    "the string as the `value` argument." % len(inputs), input_index=1)
        _no_strings_on_gpu(ctx, dtype)
        return place(ctx, np.full(shape, args.fill_value, dtype=object))
    if len(inputs) == 2:
        value = inputs[1]
        if value.size != 1:
            enforce(False, "value vector must have 1 element, found %d (shape %s). "
                    "Fix: feed a one-element tensor." % (value.size, tuple(value.shape)),
                    input_index=1)
        expect_fill_type(value, dtype, "ConstantFill value input", 1)
        out = ctx.xp.empty(shape, dtype=dtype)
        out[...] = value.reshape(-1)[0]
        return out
    return ctx.xp.full(shape, args.fill_value, dtype=dtype)


@CONSTANT_FILL.kernel(backend="cupy")
def constant_fill_cuda(ctx, args, *inputs):
    """The generic fill; a small result from the `value` argument is remembered on
    the host (graphnet.executors.cuda.host_values): ops that read it then need no
    device read (ScatterWeightedSum's w_0 == 1 skips its scaling kernels)."""
    from graphnet.executors.cuda import host_values
    out = constant_fill(ctx, args, *inputs)
    if len(inputs) < 2 and out.dtype != object and 0 < out.size <= host_values.MAX_SCALARS:
        host_values.remember(out, np.full(out.shape, args.fill_value, dtype=out.dtype))
    return out


# --- GivenTensor*Fill ---------------------------------------------------------------

_GIVEN_TYPES = (FLOAT, DOUBLE, BOOL, INT16, INT32, INT64, STRING)
# element type -> the field of `values` that holds it
_VALUES_FIELD = {FLOAT: "floats", DOUBLE: "floats", BOOL: "ints", INT16: "ints",
                 INT32: "ints", INT64: "ints", STRING: "strings"}


def _values_array(op, code):
    """GetRepeatedArgument<T>("values") as a numpy array of the element type."""
    arg = TypedArgs(op).raw("values")
    if arg is None:
        raise ArgumentError("Argument 'values' is required for Operator '%s'." % op.type)
    field = _VALUES_FIELD[code]
    values = list(getattr(arg, field))
    others = [f for f in ("floats", "ints", "strings") if f != field and len(getattr(arg, f))]
    if not values and (others or any(arg.HasField(f) for f in ("f", "i", "s"))):
        raise ArgumentError(
            "Argument values does not have the right field: expected field %s for a %s "
            "fill (op %s), found %s. Fix: pass values as a list of %s." % (
                field, np.dtype(_NUMPY[code]).name, op.type, others or "a scalar", field))
    dtype = np.dtype(_NUMPY[code])
    if field == "ints":
        values = [fits(int(v), dtype, "values") for v in values]
    if dtype == object:
        array = np.empty(len(values), dtype=object)
        array[:] = [bytes(v) for v in values]
        return array
    return np.array(values, dtype=dtype)


def _given_setup(code):
    def setup(args, op):
        args.out_dtype = np.dtype(_NUMPY[code])
        args.fill_values = _values_array(op, code)
    return setup


def _given_tensor_fill_setup(args, op):
    """GivenTensorFill alone honours `dtype` (float, double, bool, int16/32/64, string)."""
    code = _cast_data_type(op, args) if args.has("dtype") else FLOAT
    if code not in _GIVEN_TYPES:
        raise _bad_dtype(op.type, code, _names(_GIVEN_TYPES), given=True)
    _given_setup(code)(args, op)


def _byte_string_setup(args, op):
    if args.has("dtype"):
        code = _cast_data_type(op, args)
        if code != STRING:
            raise _bad_dtype(op.type, code, "STRING", given=True)
    strings = _values_array(op, STRING)
    if strings.size != 1:
        raise ArgumentError(
            "GivenTensorByteStringToUInt8Fill: expected size: 1 given size: %d (`values` "
            "must hold exactly one byte string). Fix: pass values=[b'...']." % strings.size)
    args.out_dtype = np.dtype(np.uint8)
    args.fill_values = np.frombuffer(strings[0], dtype=np.uint8).copy()


def given_tensor_fill(ctx, args, *inputs):
    shape = out_shape(ctx, args, inputs)
    values = args.fill_values
    _no_strings_on_gpu(ctx, values.dtype)
    size = numel(shape)
    if size != values.size:
        enforce(False,
                "output->numel() == values_.numel(). %d vs %d: %s's output shape %s holds %d "
                "elements, `values` holds %d. Fix: make `shape` (or the input's shape) match "
                "the number of values." % (size, values.size, ctx.op.type, shape, size,
                                           values.size))
    return place(ctx, values.reshape(shape).copy())


def _given(op_type, code, setup=None, args=(), device_kinds=("cpu", "gpu")):
    schema = filler_schema(op_type, out_dtype=np.dtype(_NUMPY.get(code, np.uint8)),
                           setup=setup or _given_setup(code), args=args,
                           device_kinds=device_kinds,
                           doc="Fill the output with the `values` argument.")
    schema.kernel(given_tensor_fill)
    return schema


GIVEN_TENSOR_FILL = _given("GivenTensorFill", FLOAT, _given_tensor_fill_setup,
                           args=[Arg("dtype", "scalar")])
GIVEN_TENSOR_DOUBLE_FILL = _given("GivenTensorDoubleFill", DOUBLE)
GIVEN_TENSOR_BOOL_FILL = _given("GivenTensorBoolFill", BOOL)
GIVEN_TENSOR_INT_FILL = _given("GivenTensorIntFill", INT32)
GIVEN_TENSOR_INT64_FILL = _given("GivenTensorInt64Fill", INT64)
GIVEN_TENSOR_INT16_FILL = _given("GivenTensorInt16Fill", INT16)
GIVEN_TENSOR_STRING_FILL = _given("GivenTensorStringFill", STRING, device_kinds=("cpu",))
GIVEN_TENSOR_BYTE_STRING_FILL = _given("GivenTensorByteStringToUInt8Fill", UINT8,
                                       _byte_string_setup, args=[Arg("dtype", "scalar")])


# --- fused lowering (graphnet.executors.fused) -----------------------------------------

@CONSTANT_FILL.lowering
def _lower_constant_fill(f):
    """The output depends on shapes and arguments only: its recorded value."""
    return not f.args.input_as_shape and f.distinct() and f.write_recorded(0)


# CUDA graphs may capture these ops' CuPy kernels (audited: no host state, no host
# reads of device data but deferred checks): graphnet.executors.cuda.graphs.
declare_graph_safe("ConstantFill")
