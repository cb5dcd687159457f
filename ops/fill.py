"""Fill family: ConstantFill, the GivenTensor*Fill ops, the random fillers
(UniformFill, UniformIntFill, GaussianFill, XavierFill, MSRAFill), Iter and
LearningRate. None of them has a gradient (Caffe2's NO_GRADIENT).

The fillers share Caffe2's FillerOp rules: the output shape comes from the
`shape` argument (no input), or from input 0's shape (or, with
`input_as_shape`, from its int64 values) followed by `extra_shape`. Caffe2
checked those rules and every argument in the op's constructor, so they run
here when the op is created (`parse_args`), not when it runs.

Imports numpy, graphnet.registry and graphnet.errors only.
"""

import logging

import numpy as np

from graphnet.errors import ArgumentError, enforce
from graphnet.registry import Arg, OpSchema, TensorInfo

log = logging.getLogger("graphnet")

# TensorProto.DataType codes (graphnet.proto mirrors caffe2.proto).
UNDEFINED, FLOAT, INT32, BYTE, STRING, BOOL, UINT8, INT8, UINT16, INT16, INT64 = range(11)
FLOAT16, DOUBLE = 12, 13
_TYPE_NAMES = {"UNDEFINED": 0, "FLOAT": 1, "INT32": 2, "BYTE": 3, "STRING": 4, "BOOL": 5,
               "UINT8": 6, "INT8": 7, "UINT16": 8, "INT16": 9, "INT64": 10, "FLOAT16": 12,
               "DOUBLE": 13, "ZERO_COLLISION_HASH": 14, "REBATCHING_BUFFER": 15}
_NUMPY = {FLOAT: np.float32, DOUBLE: np.float64, BOOL: np.bool_, INT8: np.int8,
          INT16: np.int16, INT32: np.int32, INT64: np.int64, UINT8: np.uint8,
          UINT16: np.uint16, STRING: object}
# C++ element type names, as Caffe2's "Tensor type mismatch" messages print them.
_CTYPE = {"float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
          "int16": "short", "int32": "int", "int64": "long int", "uint8": "unsigned char",
          "uint16": "unsigned short", "object": "std::string", "float16": "c10::Half"}


def _ctype(dtype):
    name = np.dtype(dtype).name
    return _CTYPE.get(name, name)


def _type_mismatch(x, dtype, what, index):
    enforce(x.dtype == np.dtype(dtype),
            "Tensor type mismatch, caller expects elements to be %s, while tensor contains "
            "%s. (%s: expected %s, found %s.) Fix: feed it as %s." % (
                _ctype(dtype), _ctype(x.dtype), what, np.dtype(dtype).name, x.dtype.name,
                np.dtype(dtype).name), input_index=index)


# --- Caffe2's typed argument getters --------------------------------------------------

class _TypedArgs(object):
    """Read arguments of one OperatorDef the way Caffe2's GetSingleArgument<T> and
    GetRepeatedArgument<T> did: the stored field must match the C++ type, integers
    must fit it. `prefix` serves the composite LR policy's `sub_policy_<i>_` args."""

    _HINT = {"f": "a Python float, e.g. %s=1.0", "i": "a Python int, e.g. %s=1",
             "s": "a str, e.g. %s='fixed'", "ints": "a list of ints, e.g. %s=[1, 2]"}

    def __init__(self, op, prefix=""):
        self.op, self.prefix = op, prefix

    def prefixed(self, prefix):
        return _TypedArgs(self.op, prefix)

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
        return _fits(value, dtype, full)

    def bool(self, name, default):
        return bool(self._single(name, "i", default)[0])

    def string(self, name, default):
        value = self._single(name, "s", default)[0]
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value

    def ints(self, name, dtype=np.int32):
        arg = self.raw(self.prefix + name)
        values = list(arg.ints) if arg is not None else []
        return [_fits(v, dtype, self.prefix + name) for v in values]


def _fits(value, dtype, name):
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


def _cast_data_type(op, args, name="dtype"):
    """caffe2::cast::GetCastDataType: a DataType int, or its name as a string."""
    if args.field(name) == "s":
        text = getattr(args, name).upper()
        if text not in _TYPE_NAMES:
            raise ArgumentError("Unknown 'to' argument: %s (expected one of %s). Fix: "
                                "pass a TensorProto.DataType value, e.g. dtype=core."
                                "DataType.FLOAT." % (text, ", ".join(sorted(_TYPE_NAMES))))
        return _TYPE_NAMES[text]
    return _TypedArgs(op).int(name, FLOAT, np.int32)


def _bad_dtype(op_type, code, allowed):
    if code == UNDEFINED:
        return ArgumentError("%s op cannot have undefined 'dtype' argument. Fix: pass "
                             "one of %s." % (op_type, allowed))
    return ArgumentError("Unexpected 'dtype' argument value: %d (%s supports %s). Fix: "
                         "pass one of those." % (code, op_type, allowed))


def _names(codes):
    inverse = {v: k for k, v in _TYPE_NAMES.items()}
    return ", ".join(inverse[c] for c in codes)


# --- schemas that run Caffe2's constructor checks at creation ------------------------

class _SetupSchema(OpSchema):
    """An OpSchema whose `setup(args, op)` does the work of the Caffe2 op's
    constructor (typed reads, dtype resolution, argument checks) when the op is
    created; its results ride along on the parsed args."""

    def __init__(self, type, setup=None, **kw):
        self.setup = setup
        super().__init__(type, **kw)

    def parse_args(self, op):
        args = super().parse_args(op)
        if self.setup is not None:
            self.setup(args, op)
        return args


def _shape_input_anywhere(schema, op_device, n_in, n_out, input_devices):
    """Input 0 lends only its shape (or a few int64s read on the host), so it may
    live on any device, as in Caffe2; other inputs and the output are on the op's."""
    wanted = [None] + [op_device] * (n_in - 1) if n_in else []
    return wanted, [op_device] * n_out


class _FillSchema(_SetupSchema):
    """Caffe2's FillerOp: shared shape arguments and their constructor checks."""

    def __init__(self, type, out_dtype=np.float32, args=(), inputs=(0, 1), **kw):
        self.out_dtype = out_dtype
        args = list(args) + [Arg("extra_shape", "ints", []),
                             Arg("input_as_shape", "bool", False)]
        kw.setdefault("devices", _shape_input_anywhere)
        super().__init__(type, inputs=inputs, outputs=1, args=args,
                         allow_inplace={(0, 0)}, no_gradient=True, **kw)
        self.shape(_filler_shape)

    def parse_args(self, op):
        args = OpSchema.parse_args(self, op)
        args.out_dtype = self.out_dtype
        args.shape = _shape_argument(op, args)
        if self.setup is not None:
            self.setup(args, op)
        return args


def _shape_argument(op, args):
    """FillerOp's constructor: `shape` (a list) without inputs, never with one."""
    arg = _TypedArgs(op).raw("shape")
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


def _out_shape(ctx, args, inputs):
    """The output shape at run time (FillerOp::RunOnDevice)."""
    if not inputs:
        return tuple(args.shape)
    x = inputs[0]
    enforce(hasattr(x, "shape"), "%s: input 0 must be a tensor, found %s. Fix: feed a "
            "numpy array." % (ctx.op.type, type(x).__name__), input_index=0)
    if not args.input_as_shape:
        return tuple(x.shape) + tuple(args.extra_shape)
    enforce(x.ndim == 1, "When input_as_shape is true, the input must be a 1D tensor of "
            "data type int64_t (expected 1 dimension, found shape %s). Fix: feed the "
            "shape as np.array([d0, d1, ...], np.int64)." % (tuple(x.shape),),
            input_index=0)
    enforce(x.size > 0, "input.numel() > 0: with input_as_shape the shape tensor must "
            "hold at least one dimension, found an empty one. Fix: feed e.g. "
            "np.array([3], np.int64).", input_index=0)
    _type_mismatch(x, np.int64, "input_as_shape input", 0)
    dims = [int(d) for d in np.asarray(ctx.backend.to_host(x))]
    enforce(all(d >= 0 for d in dims), "%s: input_as_shape holds a negative size, "
            "expected sizes >= 0, found %s. Fix: feed non-negative sizes."
            % (ctx.op.type, dims), input_index=0)
    return tuple(dims) + tuple(args.extra_shape)


def _no_strings_on_gpu(ctx, dtype):
    enforce(dtype != object or not ctx.device.is_gpu,
            "%s: a STRING tensor cannot live on a GPU, found device %s. Fix: run this "
            "fill on the CPU." % (ctx.op.type, ctx.device))


def _place(ctx, array):
    return ctx.backend.from_host(array, ctx.device)


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
    typed = _TypedArgs(op)
    if code == STRING:
        arg = typed.raw("value")
        if arg is not None and not arg.HasField("s"):
            typed.string("value", "")  # raises: expected field s
        args.fill_value = arg.s if arg is not None else b""
    elif code in (FLOAT, DOUBLE):
        args.fill_value = typed.float("value", 0.0)
    else:
        args.fill_value = typed.int("value", 0, _NUMPY[code])


CONSTANT_FILL = _FillSchema(
    "ConstantFill", inputs=(0, 2), setup=_constant_fill_setup,
    args=[Arg("value", "scalar"), Arg("dtype", "int")],
    doc="Fill the output with `value` (or with input 1's single element).")


@CONSTANT_FILL.kernel
def constant_fill(ctx, args, *inputs):
    shape = _out_shape(ctx, args, inputs[:1])
    dtype = args.out_dtype
    if dtype == object:
        enforce(len(inputs) < 2, "constant fill string from tensor is not supported "
                "(expected no value input with dtype STRING, found %d inputs). Fix: pass "
                "the string as the `value` argument." % len(inputs), input_index=1)
        _no_strings_on_gpu(ctx, dtype)
        return _place(ctx, np.full(shape, args.fill_value, dtype=object))
    if len(inputs) == 2:
        value = inputs[1]
        enforce(value.size == 1, "value vector must have 1 element, found %d (shape %s). "
                "Fix: feed a one-element tensor." % (value.size, tuple(value.shape)),
                input_index=1)
        _type_mismatch(value, dtype, "ConstantFill value input", 1)
        out = ctx.xp.empty(shape, dtype=dtype)
        out[...] = value.reshape(-1)[0]
        return out
    return ctx.xp.full(shape, args.fill_value, dtype=dtype)


# --- GivenTensor*Fill ---------------------------------------------------------------

_GIVEN_TYPES = (FLOAT, DOUBLE, BOOL, INT16, INT32, INT64, STRING)
# element type -> (field of `values`, its Arg kind)
_VALUES_FIELD = {FLOAT: "floats", DOUBLE: "floats", BOOL: "ints", INT16: "ints",
                 INT32: "ints", INT64: "ints", STRING: "strings"}


def _values_array(op, code):
    """GetRepeatedArgument<T>("values") as a numpy array of the element type."""
    arg = _TypedArgs(op).raw("values")
    if arg is None:
        raise ArgumentError("Argument 'values' is required for Operator '%s'." % op.type)
    field = _VALUES_FIELD[code]
    values = list(getattr(arg, field))
    others = [f for f in ("floats", "ints", "strings") if f != field and len(getattr(arg, f))]
    if not values and (others or any(arg.HasField(f) for f in ("f", "i", "s"))):
        raise ArgumentError(
            "Argument values does not have the right field: expected field %s for a %s "
            "fill (op %s), found %s. Fix: pass values as a list of %s." % (
                field, np.dtype(_NUMPY[code]).name, op.type, others or "a scalar",
                {"floats": "floats", "ints": "ints", "strings": "strings"}[field]))
    dtype = np.dtype(_NUMPY[code])
    if field == "ints":
        values = [_fits(int(v), dtype, "values") for v in values]
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
        raise _bad_given_dtype(op.type, code, _names(_GIVEN_TYPES))
    _given_setup(code)(args, op)


def _bad_given_dtype(op_type, code, allowed):
    if code == UNDEFINED:
        return ArgumentError("Cannot have undefined 'dtype' argument (op %s). Fix: pass "
                             "one of %s." % (op_type, allowed))
    return ArgumentError("Unexpected 'dtype' argument value: %d (op %s supports %s). "
                         "Fix: pass one of those." % (code, op_type, allowed))


def _byte_string_setup(args, op):
    if args.has("dtype"):
        code = _cast_data_type(op, args)
        if code != STRING:
            raise _bad_given_dtype(op.type, code, "STRING")
    strings = _values_array(op, STRING)
    if strings.size != 1:
        raise ArgumentError(
            "GivenTensorByteStringToUInt8Fill: expected size: 1 given size: %d (`values` "
            "must hold exactly one byte string). Fix: pass values=[b'...']." % strings.size)
    args.out_dtype = np.dtype(np.uint8)
    args.fill_values = np.frombuffer(strings[0], dtype=np.uint8).copy()


def given_tensor_fill(ctx, args, *inputs):
    shape = _out_shape(ctx, args, inputs)
    values = args.fill_values
    _no_strings_on_gpu(ctx, values.dtype)
    numel = int(np.prod(shape, dtype=np.int64))
    enforce(numel == values.size,
            "output->numel() == values_.numel(). %d vs %d: %s's output shape %s holds %d "
            "elements, `values` holds %d. Fix: make `shape` (or the input's shape) match "
            "the number of values." % (numel, values.size, ctx.op.type, shape, numel,
                                       values.size))
    return _place(ctx, values.reshape(shape).copy())


def _given(op_type, code, setup=None, args=(), device_kinds=("cpu", "gpu")):
    schema = _FillSchema(op_type, out_dtype=np.dtype(_NUMPY.get(code, np.uint8)),
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


# --- random fillers -----------------------------------------------------------------

def _uniform_setup(args, op):
    """With 3 inputs min/max come from inputs 1 and 2; else min < max is required."""
    if op.type == "UniformIntFill":
        _fits(args.min, np.int32, "min")
        _fits(args.max, np.int32, "max")
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
    return _FillSchema(
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
    shape = _out_shape(ctx, args, inputs[:1])
    dtype = args.out_dtype
    lo, hi = args.min, args.max
    if len(inputs) == 3:
        for k, name in ((1, "min"), (2, "max")):
            enforce(inputs[k].size == 1, "1 == Input(%d).numel(). %s blob must be scalar, "
                    "found %d elements. Fix: feed a one-element tensor."
                    % (k, name, inputs[k].size), input_index=k)
            _type_mismatch(inputs[k], dtype, "%s input of %s" % (name, ctx.op.type), k)
        lo, hi = (np.asarray(ctx.backend.to_host(x)).reshape(-1)[0].item()
                  for x in inputs[1:])
        if lo > hi:  # Caffe2 then empties the first dimension
            enforce(len(shape) >= 1, "%s: min > max empties the output's first "
                    "dimension, but the output is 0-d. Fix: give it a dimension."
                    % ctx.op.type)
            return ctx.xp.empty((0,) + shape[1:], dtype=dtype)
    return _place(ctx, np.asarray(draw(lo, hi, shape)).astype(dtype))


GAUSSIAN_FILL = _FillSchema("GaussianFill", args=[Arg("mean", "float", 0.0),
                                                  Arg("std", "float", 1.0)],
                            doc="Normal samples N(mean, std).")


@GAUSSIAN_FILL.kernel
def gaussian_fill(ctx, args, *inputs):
    shape = _out_shape(ctx, args, inputs)
    enforce(args.std >= 0, "stdv_in must be positive: %g (GaussianFill expected std >= "
            "0, found %g). Fix: pass a non-negative std." % (args.std, args.std))
    return _place(ctx, ctx.rng.normal(args.mean, args.std, shape).astype(np.float32))


XAVIER_FILL = _FillSchema("XavierFill", doc="U(-s, s), s = sqrt(3 / fan_in), "
                                            "fan_in = numel / shape[0].")
MSRA_FILL = _FillSchema("MSRAFill", doc="N(0, sqrt(2 / fan_out)), fan_out = numel / "
                                        "shape[1].")


@XAVIER_FILL.kernel
def xavier_fill(ctx, args, *inputs):
    shape = _out_shape(ctx, args, inputs)
    enforce(len(shape) >= 1, "XavierFill: fan_in = numel / shape[0] needs an output with "
            "at least 1 dimension, found a 0-d shape. Fix: give `shape` a dimension.")
    numel = int(np.prod(shape, dtype=np.int64))
    if numel == 0:  # nothing to draw (Caffe2 divided by zero here)
        return ctx.xp.empty(shape, dtype=np.float32)
    scale = np.sqrt(np.float32(3) / np.float32(numel // shape[0]))
    return _place(ctx, ctx.rng.uniform(-scale, scale, shape).astype(np.float32))


@MSRA_FILL.kernel
def msra_fill(ctx, args, *inputs):
    shape = _out_shape(ctx, args, inputs)
    enforce(len(shape) >= 2, "MSRAFill: fan_out = numel / shape[1] needs an output with "
            "at least 2 dimensions, found shape %s. Fix: give `shape` two dimensions."
            % (shape,))
    numel = int(np.prod(shape, dtype=np.int64))
    if numel == 0:
        return ctx.xp.empty(shape, dtype=np.float32)
    scale = np.sqrt(np.float32(2) / np.float32(numel // shape[1]))
    return _place(ctx, ctx.rng.normal(0.0, scale, shape).astype(np.float32))


# --- Iter ---------------------------------------------------------------------------

ITER = OpSchema("Iter", inputs=(0, 1), outputs=1, enforce_inplace={(0, 0)},
                cpu_inputs={0}, cpu_outputs={0}, no_gradient=True,
                doc="Increment the int64 iteration counter (always on the CPU) by one.")


@ITER.shape
def _iter_shape(args, *inputs):
    return [TensorInfo(inputs[0].shape if inputs else (1,), np.int64)]


@ITER.kernel
def iter_op(ctx, args, *inputs):
    if inputs:
        counter = inputs[0]
    else:
        # Legacy form without the in-place input: Caffe2 incremented the output blob,
        # creating a zero counter on the first run.
        counter = ctx.output_value(0)
        if counter is None:
            log.error("You are using an old definition of IterOp that will be deprecated "
                      "soon. More specifically, IterOp now requires an explicit in-place "
                      "input and output.")
            counter = np.zeros(1, dtype=np.int64)
    enforce(counter.size == 1, "The output of IterOp exists, but not of the right size "
            "(expected 1 element, found %d). Fix: initialize it with shape=[1]."
            % counter.size, input_index=0)
    enforce(counter.dtype == np.int64, "Iter: the counter must be int64, found %s (Caffe2 "
            "reinterprets it as garbage). Fix: initialize it with ConstantFill(..., "
            "dtype=core.DataType.INT64) or np.int64." % counter.dtype, input_index=0)
    value = int(np.asarray(counter).reshape(-1)[0])
    enforce(value >= 0, "Previous iteration number is negative (found %d). Fix: start "
            "the counter at 0." % value, input_index=0)
    enforce(value < np.iinfo(np.int64).max, "Overflow will happen! (the counter is at "
            "the int64 maximum %d). Fix: reset it." % value, input_index=0)
    return np.full(counter.shape, value + 1, dtype=np.int64)


# --- LearningRate ---------------------------------------------------------------------

def _cdiv(a, b, what):
    """C++ integer division (truncates toward zero); Caffe2 crashed on b == 0."""
    enforce(b != 0, "LearningRate: %s is 0 and the policy divides by it (Caffe2 crashes "
            "with SIGFPE). Fix: pass a positive %s." % (what, what))
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _fdiv(a, b):
    """IEEE float division (x/0 gives inf or nan, as in C++)."""
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _pow(a, b):
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(a), np.float64(b)))


def _cmax(a, b):
    """std::max: the first argument unless the second is larger (nan keeps `a`)."""
    return b if a < b else a


def _u64(n):
    """uint64_t(n): some functors store counts unsigned, so -1 means 2**64 - 1."""
    return n % 2 ** 64


def _linear_warmup(start, n):
    return lambda it: 1.0 if it >= n else start + _fdiv((1.0 - start) * it, _u64(n))


def _constant_warmup(multiplier, n):
    return lambda it: 1.0 if it >= n else multiplier


def _inv(gamma, power):
    return lambda it: _pow(1.0 + gamma * it, -power)


def _cyclical(base_lr, max_lr, stepsize, decay):
    def cyclical(it):
        k = _cdiv(it, 2 * stepsize, "stepsize")
        x = abs(_fdiv(it, stepsize) - 2 * (k + 1) + 1)
        return 1 + (_fdiv(abs(max_lr), abs(base_lr)) - 1) * _cmax(0.0, 1 - x) * \
            _pow(decay, k)
    return cyclical


def _cosine(min_lr, max_lr, period, t_mult, shrink):
    def cosine(it):
        with np.errstate(all="ignore"):
            it, period_ = np.float64(it), np.float64(period)
            if t_mult != 1.0:
                i = np.floor(np.log(1 - it / period_ * (1.0 - t_mult)) / np.log(t_mult))
                t_i = t_mult ** i * period_
                t_curr = it - (1.0 - t_mult ** i) / (1.0 - t_mult) * period_
            else:
                i = np.floor(it / period_)
                t_i, t_curr = period_, it - period_ * i
            scale = shrink ** i
            low, high = min_lr * scale, max_lr * scale
            return float(low + 0.5 * (high - low) * (1 + np.cos(np.pi * t_curr / t_i)))
    return cosine


def _constant_then_linear(start, n_const, n_linear):
    const, linear = _constant_warmup(start, n_const), _linear_warmup(start, n_linear)
    return lambda it: (const(it) if it < n_const else linear(it - n_const)
                       if it < n_const + n_linear else 1.0)


def _warmup_args(p):
    return (p.float("start_warmup_multiplier", 0.1),
            p.int("constant_warmup_num_iter", 10000000),
            p.int("linear_warmup_num_iter", 10000000))


def _composite(p, base_lr):
    """Sub-policies take turns: the i-th runs for sub_policy_num_iters[i] iterations
    from iteration 1, reading the absolute iteration, scaled by its lr_scale."""
    counts = p.ints("sub_policy_num_iters")
    if not counts:
        raise ArgumentError("Must specify at least one sub learning rate policy (found "
                            "no sub_policy_num_iters). Fix: pass sub_policy_num_iters=[n0, "
                            "...] and sub_policy_<i>_policy for each.")
    items, start = [], 1
    for i, count in enumerate(counts):
        if count <= 0:
            raise ArgumentError("The number of iterations for sub learning rate policy "
                                "should be positive (sub_policy_num_iters[%d] = %d). Fix: "
                                "pass a positive count." % (i, count))
        sub = p.prefixed("sub_policy_%d_" % i)
        name = sub.string("policy", "")
        if name == "composite":
            raise ArgumentError("Defining composite LR policy as a subpolicy of composite "
                                "LR policy is not allowed (sub_policy_%d_policy). Fix: "
                                "list its sub-policies at the top level." % i)
        scale = sub.float("lr_scale", 1.0)
        items.append((start, scale, _lr_policy(name, sub, base_lr)))
        start += count

    def composite(it):
        # Caffe2 looked the iteration up in a map from start iterations; below the
        # first start (iteration 0) its lookup fell on the first sub-policy.
        chosen = items[0]
        for item in items:
            if item[0] <= it:
                chosen = item
        return chosen[2](it) * chosen[1]
    return composite


def _lr_policy(name, p, base_lr):
    """The multiplier function iter -> float of LR policy `name`, reading its
    arguments through `p` with Caffe2's types and defaults."""
    if name == "fixed":
        return lambda it: 1.0
    if name == "step":
        stepsize, gamma = p.int("stepsize", 0, np.int32), p.float("gamma", 0.0)
        return lambda it: _pow(gamma, _cdiv(it, stepsize, "stepsize"))
    if name == "exp":
        gamma = p.float("gamma", 0.0)
        return lambda it: _pow(gamma, it)
    if name == "inv":
        return _inv(p.float("gamma", 0.0), p.float("power", 0.0))
    if name == "poly":
        max_iter, power = p.int("max_iter", -1, np.int32), p.float("power", 0.0)
        return lambda it: _pow(1.0 - _fdiv(it, _u64(max_iter)), power)
    if name == "gate":
        m1, m2 = p.float("multiplier_1", 1.0), p.float("multiplier_2", 1.0)
        n = p.int("num_iter", 0, np.int32)
        return lambda it: m2 if it >= n else m1
    if name == "linearWarmup":
        return _linear_warmup(p.float("start_multiplier", 0.0),
                              p.int("num_iter", 0, np.int32))
    if name == "constantWarmup":
        return _constant_warmup(p.float("multiplier", 0.5), p.int("num_iter", 0, np.int32))
    if name == "pieceWarmup":
        m1, n1 = p.float("m1", 0.5), p.int("n1", 0)
        m2, n2, m3 = p.float("m2", 0.5), p.int("n2", 0), p.float("m3", 0.5)
        return lambda it: m1 if it < n1 else m2 if it < n2 else m3
    if name == "alter":
        first = p.bool("active_first", True)
        active, inactive = p.int("active_period", -1), p.int("inactive_period", -1)

        def alter(it):
            phase = it - (active + inactive) * _cdiv(it, active + inactive,
                                                     "active_period + inactive_period")
            return float((phase < (active if first else inactive)) == first)
        return alter
    if name == "hill":
        n, start = p.int("num_iter", 0), p.float("start_multiplier", 0.0)
        gamma, power = p.float("gamma", 0.0), p.float("power", 0.0)
        end = p.float("end_multiplier", 0.0)
        warm, inv = _linear_warmup(start, n), _inv(gamma, power)
        return lambda it: warm(it) if it < n else _cmax(end, inv(it - n))
    if name == "slope":
        n1, m1 = p.int("num_iter_1", 0), p.float("multiplier_1", 0.0)
        n2, m2 = p.int("num_iter_2", 0), p.float("multiplier_2", 0.0)
        return lambda it: m1 if it < n1 else _cmax(m2, m1 + _fdiv((it - n1) * (m2 - m1),
                                                                   n2 - n1))
    if name == "composite" and not p.prefix:
        return _composite(p, base_lr)
    if name == "cyclical":
        return _cyclical(base_lr, p.float("max_lr", 0.005), p.int("stepsize", 0, np.int32),
                         p.float("decay", 1.0))
    if name == "cosine":
        return _cosine(p.float("min_lr", 0.1), p.float("max_lr", 0.5),
                       p.int("period", 50, np.int32), p.float("t_mult", 1.0),
                       p.float("lr_shrink", 0.99))
    if name == "constantThenLinearWarmup":
        return _constant_then_linear(*_warmup_args(p))
    if name == "compositeCyclical":
        start, n_const, n_linear = _warmup_args(p)
        warm = _constant_then_linear(start, n_const, n_linear)
        cyc = _cyclical(base_lr, p.float("cyclical_max_lr", 0.05),
                        p.int("cyclical_step_size", 1000000, np.int32),
                        p.float("cyclical_decay", 1.0))
        return lambda it: warm(it) if it < n_const + n_linear else \
            cyc(it - n_const - n_linear)
    if name == "compositeCosine":
        start, n_const, n_linear = _warmup_args(p)
        warm = _constant_then_linear(start, n_const, n_linear)
        cos = _cosine(p.float("cosine_min_lr", 0.1), p.float("cosine_max_lr", 0.5),
                      p.int("cosine_period", 50, np.int32), p.float("cosine_t_mult", 1.0),
                      p.float("cosine_lr_shrink", 0.99))
        return lambda it: warm(it) if it < n_const + n_linear else \
            cos(it - n_const - n_linear)
    raise ArgumentError("Unknown learning rate policy: %s. Fix: use one of %s."
                        % (name, ", ".join(LR_POLICIES)))


LR_POLICIES = ("fixed", "step", "exp", "inv", "poly", "gate", "linearWarmup",
               "constantWarmup", "pieceWarmup", "alter", "hill", "slope", "composite",
               "cyclical", "cosine", "constantThenLinearWarmup", "compositeCyclical",
               "compositeCosine")
_FLT_MAX = float(np.finfo(np.float32).max)


def _learning_rate_setup(args, op):
    """LearningRateOp's constructor: base_lr and policy, then the policy's own args
    (only those it reads, with Caffe2's types: an unused mistyped arg is harmless)."""
    if args.base_lr is None or args.base_lr == _FLT_MAX:
        raise ArgumentError("Base learning rate must be set. (LearningRate found no "
                            "base_lr.) Fix: pass base_lr=<float>, e.g. base_lr=-0.01.")
    if not args.policy:
        raise ArgumentError("Must specify a learning rate policy. (LearningRate found "
                            "no policy.) Fix: pass policy='fixed' (or step, exp, ...).")
    args.multiplier = _lr_policy(args.policy, _TypedArgs(op), args.base_lr)


LEARNING_RATE = _SetupSchema(
    "LearningRate", setup=_learning_rate_setup, inputs=1, outputs=1, cpu_inputs={0},
    no_gradient=True, args=[Arg("base_lr", "float"), Arg("policy", "string")],
    doc="lr = base_lr * multiplier(iter) as a 0-d float32 on the op's device; the "
        "int64 iteration input lives on the CPU.")


@LEARNING_RATE.shape
def _learning_rate_shape(args, it):
    return [TensorInfo((), np.float32)]


@LEARNING_RATE.kernel
def learning_rate(ctx, args, it):
    _type_mismatch(it, np.int64, "LearningRate iteration input", 0)
    enforce(it.size >= 1, "LearningRate: the iteration input is empty, expected one "
            "int64 element. Fix: feed the Iter counter (shape [1]).", input_index=0)
    step = int(np.asarray(ctx.backend.to_host(it)).reshape(-1)[0])
    with np.errstate(all="ignore"):  # C++ float arithmetic: overflow gives inf
        lr = np.float32(args.base_lr) * np.float32(args.multiplier(step))
    return _place(ctx, np.array(lr, dtype=np.float32))
