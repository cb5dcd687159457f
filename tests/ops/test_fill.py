"""Fill family: ConstantFill, GivenTensor*Fill, random fillers, Iter, LearningRate.

Expected values come from numpy/math formulas written here; a few golden values
come from real Caffe2 1.10.2 (marked so).
"""

import math

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from graphnet.gradient_maker import make_gradient
from tests.opcheck import (check_devices, check_op, check_reference, check_shape_inference,
                           gpu, op_def, run_op)

DT = core.DataType
RNG = np.random.default_rng(0)


def full(shape, value, dtype):
    out = np.empty(shape, dtype=dtype)
    out[...] = value
    return out


# --- ConstantFill -------------------------------------------------------------------

CONSTANT_CASES = [
    (DT.FLOAT, 1.5, np.float32), (DT.DOUBLE, -2.25, np.float64), (DT.BOOL, True, np.bool_),
    (DT.INT8, -7, np.int8), (DT.INT16, 300, np.int16), (DT.INT32, -5, np.int32),
    (DT.INT64, 2 ** 40, np.int64), (DT.UINT8, 200, np.uint8), (DT.UINT16, 60000, np.uint16),
    (DT.STRING, "ab", object)]


@pytest.mark.parametrize("code,value,dtype", CONSTANT_CASES)
@pytest.mark.parametrize("shape", [[2, 3], [], [0], [1], [3, 1, 2]])
def test_constant_fill_every_dtype_and_shape(code, value, dtype, shape):
    want = value.encode() if isinstance(value, str) else value
    ref = lambda: [full(shape, want, dtype)]  # noqa: E731
    check_reference("ConstantFill", [], ref, shape=shape, value=value, dtype=code)
    check_shape_inference("ConstantFill", [], shape=shape, value=value, dtype=code)
    if dtype is not object:
        check_devices("ConstantFill", [], shape=shape, value=value, dtype=code)


@pytest.mark.parametrize("kwargs,dtype,value", [
    (dict(value=2.5), np.float32, 2.5),          # stored as f -> FLOAT
    (dict(value=0), np.int64, 0),                # stored as i -> INT64 (spec 3.19)
    (dict(value=True), np.int64, 1),             # bool is stored as i
    ({}, np.float32, 0.0),                       # nothing -> FLOAT zeros
    (dict(dtype=DT.INT32), np.int32, 0),
    (dict(dtype=DT.STRING), object, b""),
    # f holds a float32: 0.1 reaches a DOUBLE fill rounded (as in Caffe2)
    (dict(value=0.1, dtype=DT.DOUBLE), np.float64, float(np.float32(0.1))),
])
def test_constant_fill_dtype_resolution(kwargs, dtype, value):
    check_reference("ConstantFill", [], lambda: [full((2, 2), value, dtype)],
                    shape=[2, 2], **kwargs)
    check_shape_inference("ConstantFill", [], shape=[2, 2], **kwargs)


@pytest.mark.parametrize("in_dtype", [np.float32, np.int32, np.float64, np.bool_])
@pytest.mark.parametrize("in_shape,extra", [((2, 3), []), ((2, 3), [4, 1]), ((0, 3), [2]),
                                            ((), []), ((), [3])])
def test_constant_fill_takes_input_shape_plus_extra_shape(in_dtype, in_shape, extra):
    x = (RNG.standard_normal(in_shape) * 5).astype(in_dtype)
    check_op("ConstantFill", [x], lambda x: [np.full(x.shape + tuple(extra), 3.0,
                                                     np.float32)],
             value=3.0, extra_shape=extra)


def test_constant_fill_scalar_shape_is_ignored_with_an_input():
    # golden from real Caffe2 1.10.2: shape=3 (an `i`, not a list) plus an input
    # is no error; the output takes the input's shape.
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    check_reference("ConstantFill", [x], lambda x: [np.full((2, 3), 1.0, np.float32)],
                    value=1.0, shape=3)


@pytest.mark.parametrize("dims,extra", [([2, 3], []), ([2, 3], [2]), ([4], []),
                                        ([2, 0], [])])
def test_constant_fill_input_as_shape(dims, extra):
    s = np.array(dims, np.int64)
    ref = lambda s: [np.full(tuple(dims) + tuple(extra), 7, np.int64)]  # noqa: E731
    check_reference("ConstantFill", [s], ref, value=7, input_as_shape=1, extra_shape=extra)
    check_devices("ConstantFill", [s], value=7, input_as_shape=1, extra_shape=extra)
    op = op_def("ConstantFill", 1, value=7, input_as_shape=1)
    schema = registry.get("ConstantFill")
    # the shape depends on the input's values: unknown statically
    assert schema.shape_fn(schema.parse_args(op), registry.TensorInfo((2,), np.int64)) \
        == [None]


def test_constant_fill_input_as_shape_from_a_gpu_blob():
    ws = workspace.Workspace()
    ws.FeedBlob("s", np.array([3, 1], np.int64), device_option=gpu(2))
    ws.RunOperatorOnce(core.CreateOperator("ConstantFill", ["s"], ["y"], value=1.5,
                                           input_as_shape=1, device_option=gpu(2)))
    np.testing.assert_array_equal(ws.FetchBlob("y"), np.full((3, 1), 1.5, np.float32))
    assert ws.BlobDevice("y") == Device(1, 2)


@pytest.mark.parametrize("value,kwargs,dtype", [
    (np.array([7.5], np.float32), dict(value=1.0), np.float32),
    (np.array(-4, np.int64), dict(value=1), np.int64),            # a 0-d value blob
    (np.array([[2.5]], np.float64), dict(dtype=DT.DOUBLE), np.float64),
    (np.array([7.0], np.float32), {}, np.float32),
    (np.array([1], np.int32), dict(dtype=DT.INT32), np.int32),
])
def test_constant_fill_value_from_second_input(value, kwargs, dtype):
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    want = value.reshape(-1)[0]
    check_op("ConstantFill", [x, value],
             lambda x, v: [np.full((2, 3), want, dtype)], **kwargs)


def test_constant_fill_in_place():
    x = RNG.standard_normal((3, 2)).astype(np.float32) + 5
    out = run_op("ConstantFill", [x], outputs=["in0"], value=-1.0)[0]
    np.testing.assert_array_equal(out, np.full((3, 2), -1.0, np.float32))
    x8 = np.arange(4, dtype=np.int8)
    out = run_op("ConstantFill", [x8], outputs=["in0"], value=9)[0]
    np.testing.assert_array_equal(out, np.full(4, 9, np.int64))


def test_constant_fill_failure_leaves_the_in_place_blob_untouched():
    ws = workspace.Workspace()
    x = RNG.standard_normal(3).astype(np.float32)
    ws.FeedBlob("x", x)
    ws.FeedBlob("v", np.array([2], np.int32))
    with pytest.raises(OperatorError, match="Tensor type mismatch"):
        ws.RunOperatorOnce(core.CreateOperator("ConstantFill", ["x", "v"], ["x"],
                                               value=1.0))
    np.testing.assert_array_equal(ws.FetchBlob("x"), x)


@pytest.mark.parametrize("inputs,kwargs,error,pattern", [
    (1, dict(shape=[2], value=1.0), ArgumentError,
     "Cannot set the shape argument and pass in an input at the same time"),
    (0, dict(extra_shape=[4, 1], value=1.0), ArgumentError,
     "Cannot set extra_shape when there is no input"),
    (0, dict(input_as_shape=1), ArgumentError,
     "An input must be given if input_as_shape is true"),
    (0, dict(shape=3, value=1.0), ArgumentError,
     r"Fill 'shape' argument was a scalar, list expected .*shape=\[3\]"),
    (0, dict(shape=[2, -1], value=1.0), ArgumentError, "negative dimension"),
    (0, dict(shape=[2], dtype=DT.UNDEFINED), ArgumentError,
     "ConstantFill op cannot have undefined 'dtype' argument"),
    (0, dict(shape=[2], value=1.5, dtype=DT.FLOAT16), ArgumentError,
     "Unexpected 'dtype' argument value: 12"),
    (0, dict(shape=[2], value=1, dtype=DT.BYTE), ArgumentError,
     "Unexpected 'dtype' argument value: 3"),
    (0, dict(shape=[2], value="ab"), ArgumentError,
     "Argument 'value' is of unexpected type"),
    (0, dict(shape=[2], value=1, dtype=DT.FLOAT), ArgumentError,
     "Argument value does not have the right field: expected field f"),
    (0, dict(shape=[2], value=2.5, dtype=DT.INT32), ArgumentError,
     "Argument value does not have the right field: expected field i"),
    (0, dict(shape=[2], value=1, dtype=DT.STRING), ArgumentError,
     "Argument value does not have the right field: expected field s"),
    (0, dict(shape=[2], value=300, dtype=DT.INT8), ArgumentError,
     "Value 300 of argument value cannot be represented correctly.*int8"),
    (0, dict(shape=[2], value=-1, dtype=DT.UINT8), ArgumentError,
     "Value -1 of argument value cannot be represented"),
    (0, dict(shape=[2], dtype="FLOAT"), ArgumentError,
     "Argument dtype does not have the right field: expected field i"),
    (3, {}, SchemaError, r"Input size 3 not in range \[min=0, max=2\]"),
])
def test_constant_fill_argument_errors(inputs, kwargs, error, pattern):
    xs = [np.zeros(2, np.float32)] * inputs
    with pytest.raises(error, match=pattern):
        run_op("ConstantFill", xs, **kwargs)


@pytest.mark.parametrize("inputs,kwargs,pattern,index", [
    ([np.zeros((2, 3), np.float32), np.array([7.0, 8.0], np.float32)], dict(value=1.0),
     "value vector must have 1 element, found 2", 1),
    ([np.zeros((2, 3), np.float32), np.array([], np.float32)], dict(value=1.0),
     "value vector must have 1 element, found 0", 1),
    ([np.zeros((2, 3), np.float32), np.array([7], np.int32)], dict(value=1.0),
     "Tensor type mismatch, caller expects elements to be float, while tensor contains "
     "int", 1),
    ([np.zeros(2, np.float32), np.array([7], np.int64)], dict(value="a", dtype=DT.STRING),
     "constant fill string from tensor is not supported", 1),
    ([np.array([[2, 3]], np.int64)], dict(input_as_shape=1),
     "When input_as_shape is true, the input must be a 1D tensor of data type int64_t", 0),
    ([np.array([2, 3], np.int32)], dict(input_as_shape=1),
     "caller expects elements to be long int, while tensor contains int", 0),
    ([np.array([], np.int64)], dict(input_as_shape=1), r"input.numel\(\) > 0", 0),
    ([np.array([2, -1], np.int64)], dict(input_as_shape=1), "negative size", 0),
])
def test_constant_fill_run_time_errors(inputs, kwargs, pattern, index):
    with pytest.raises(OperatorError, match=pattern) as info:
        run_op("ConstantFill", inputs, **kwargs)
    assert "offending blob: 'in%d'" % index in str(info.value)


def test_constant_fill_in_place_from_second_input_is_refused():
    with pytest.raises(SchemaError, match="Input index 1 and output idx 0"):
        run_op("ConstantFill", [np.zeros(2, np.float32), np.ones(1, np.float32)],
               outputs=["in1"])


def test_constant_fill_string_is_cpu_only():
    out = run_op("ConstantFill", [], shape=[2], value="xy", dtype=DT.STRING)[0]
    assert out.dtype == object and list(out) == [b"xy", b"xy"]
    with pytest.raises(OperatorError, match="STRING tensor cannot live on a GPU"):
        run_op("ConstantFill", [], shape=[2], value="xy", dtype=DT.STRING, device=1)


# --- GivenTensor*Fill ----------------------------------------------------------------

GIVEN_CASES = [
    ("GivenTensorFill", [1.5, -2.0, 3.25, 0.1, 5.0, -6.5], np.float32),
    ("GivenTensorDoubleFill", [1.5, -2.0, 3.25, 0.1, 1e30, -6.5], np.float64),
    ("GivenTensorBoolFill", [1, 0, 1, 1, 0, 0], np.bool_),
    ("GivenTensorIntFill", [1, -2, 3, 2 ** 31 - 1, -2 ** 31, 0], np.int32),
    ("GivenTensorInt64Fill", [2 ** 40, -1, 3, 2 ** 63 - 1, -2 ** 63, 0], np.int64),
    ("GivenTensorInt16Fill", [-300, 32767, -32768, 4, 5, 0], np.int16),
    ("GivenTensorStringFill", ["a", "bc", "", "d\u00e9", "e", "f"], object),
]


def given_expected(values, dtype, shape):
    if dtype is object:
        flat = [v.encode() for v in values]
    elif dtype is np.float64:
        flat = [float(np.float32(v)) for v in values]  # `floats` holds float32s
    else:
        flat = values
    out = np.empty(len(values), dtype=dtype)
    out[:] = flat
    return out.reshape(shape)


@pytest.mark.parametrize("op_type,values,dtype", GIVEN_CASES)
@pytest.mark.parametrize("shape", [[6], [2, 3], [3, 2, 1]])
def test_given_tensor_fills(op_type, values, dtype, shape):
    ref = lambda: [given_expected(values, dtype, shape)]  # noqa: E731
    check_reference(op_type, [], ref, shape=shape, values=values)
    check_shape_inference(op_type, [], shape=shape, values=values)
    if op_type != "GivenTensorStringFill":
        check_devices(op_type, [], shape=shape, values=values)


@pytest.mark.parametrize("op_type,values,dtype", GIVEN_CASES)
def test_given_tensor_fills_empty_and_scalar(op_type, values, dtype):
    check_reference(op_type, [], lambda: [np.empty((0, 2), dtype)], shape=[0, 2], values=[])
    check_reference(op_type, [], lambda: [given_expected(values[:1], dtype, ())],
                    values=values[:1])


def test_given_tensor_string_fill_is_cpu_only():
    with pytest.raises(SchemaError, match="Cannot create operator of type "
                                          "'GivenTensorStringFill' on the device 'CUDA'"):
        run_op("GivenTensorStringFill", [], shape=[1], values=["a"], device=0)


@pytest.mark.parametrize("dtype,values,expected", [
    (DT.DOUBLE, [0.1, 2.5], np.array([np.float32(0.1), 2.5], np.float64)),
    (DT.INT32, [1, -2], np.array([1, -2], np.int32)),
    (DT.INT64, [2 ** 40, 3], np.array([2 ** 40, 3], np.int64)),
    (DT.INT16, [-5, 7], np.array([-5, 7], np.int16)),
    (DT.BOOL, [1, 0], np.array([True, False])),
    (DT.FLOAT, [1.0, 2.0], np.array([1.0, 2.0], np.float32)),
    ("float", [1.0, 2.0], np.array([1.0, 2.0], np.float32)),   # names, any case
    ("int64", [4, 5], np.array([4, 5], np.int64)),
])
def test_given_tensor_fill_dtype_argument(dtype, values, expected):
    check_op("GivenTensorFill", [], lambda: [expected], shape=[2], values=values,
             dtype=dtype)


def test_given_tensor_fill_string_dtype():
    for dtype in (DT.STRING, "STRING"):
        out = run_op("GivenTensorFill", [], shape=[2], values=["a", "bc"], dtype=dtype)[0]
        assert out.dtype == object and list(out) == [b"a", b"bc"]
    with pytest.raises(OperatorError, match="STRING tensor cannot live on a GPU"):
        run_op("GivenTensorFill", [], shape=[1], values=["a"], dtype=DT.STRING, device=0)


def test_given_tensor_fill_other_ops_ignore_dtype():
    # golden from real Caffe2 1.10.2: only GivenTensorFill reads `dtype`
    check_reference("GivenTensorIntFill", [], lambda: [np.array([1, 2], np.int32)],
                    shape=[2], values=[1, 2], dtype=DT.FLOAT)


def test_given_tensor_fill_shape_from_input():
    x = RNG.standard_normal((2, 1)).astype(np.float32)
    values = list(range(6))
    check_op("GivenTensorIntFill", [x],
             lambda x: [np.arange(6, dtype=np.int32).reshape(2, 1, 3)],
             values=values, extra_shape=[3])
    s = np.array([3, 2], np.int64)
    check_reference("GivenTensorInt64Fill", [s],
                    lambda s: [np.arange(6, dtype=np.int64).reshape(3, 2)],
                    values=values, input_as_shape=1)
    out = run_op("GivenTensorFill", [x], outputs=["in0"], values=[4.0, 5.0])[0]
    np.testing.assert_array_equal(out, np.array([[4.0], [5.0]], np.float32))


def test_given_tensor_byte_string_to_uint8_fill():
    data = b"ab\xff\x00c"
    want = np.array([97, 98, 255, 0, 99], np.uint8)
    check_op("GivenTensorByteStringToUInt8Fill", [], lambda: [want], shape=[5],
             values=[data])
    check_op("GivenTensorByteStringToUInt8Fill", [], lambda: [want.reshape(5, 1)],
             shape=[5, 1], values=[data], dtype=DT.STRING)
    check_reference("GivenTensorByteStringToUInt8Fill", [], lambda: [want[:2]],
                    shape=[2], values=["ab"], dtype="string")


@pytest.mark.parametrize("op_type,kwargs,error,pattern", [
    ("GivenTensorIntFill", dict(shape=[2]), ArgumentError,
     "Argument 'values' is required for Operator 'GivenTensorIntFill'"),
    ("GivenTensorFill", dict(shape=[2]), ArgumentError,
     "Argument 'values' is required for Operator 'GivenTensorFill'"),
    ("GivenTensorFill", dict(shape=[2, 2], values=[1, 2, 3, 4]), ArgumentError,
     "Argument values does not have the right field: expected field floats"),
    ("GivenTensorIntFill", dict(shape=[2], values=[1.5, 2.0]), ArgumentError,
     "expected field ints"),
    ("GivenTensorStringFill", dict(shape=[2], values=[1, 2]), ArgumentError,
     "expected field strings"),
    ("GivenTensorIntFill", dict(shape=[2], values=[1, 2 ** 40]), ArgumentError,
     "Value 1099511627776 of argument values cannot be represented.*int32"),
    ("GivenTensorInt16Fill", dict(shape=[2], values=[1, 40000]), ArgumentError,
     "Value 40000 of argument values cannot be represented.*int16"),
    ("GivenTensorFill", dict(shape=[2], values=[1, 2], dtype=DT.UINT8), ArgumentError,
     "Unexpected 'dtype' argument value: 6"),
    ("GivenTensorFill", dict(shape=[2], values=[1, 2], dtype=DT.UNDEFINED), ArgumentError,
     "Cannot have undefined 'dtype' argument"),
    ("GivenTensorFill", dict(shape=[2], values=[1, 2], dtype="BLAH"), ArgumentError,
     "Unknown 'to' argument: BLAH"),
    ("GivenTensorFill", dict(shape=[2], values=[1.0, 2.0], dtype=1.0), ArgumentError,
     "Argument dtype does not have the right field: expected field i"),
    ("GivenTensorFill", dict(shape=3, values=[1.0, 2.0, 3.0]), ArgumentError,
     "Fill 'shape' argument was a scalar, list expected"),
    ("GivenTensorByteStringToUInt8Fill", dict(shape=[4], values=["ab", "c"]),
     ArgumentError, "expected size: 1 given size: 2"),
    ("GivenTensorByteStringToUInt8Fill", dict(shape=[0], values=[]), ArgumentError,
     "expected size: 1 given size: 0"),
    ("GivenTensorByteStringToUInt8Fill", dict(shape=[2], values=["ab"], dtype=DT.FLOAT),
     ArgumentError, "Unexpected 'dtype' argument value: 1"),
    ("GivenTensorFill", dict(shape=[2, 2], values=[1.0, 2.0, 3.0]), OperatorError,
     r"output->numel\(\) == values_.numel\(\). 4 vs 3"),
    ("GivenTensorFill", dict(values=[1.0, 2.0, 3.0]), OperatorError, "1 vs 3"),
    ("GivenTensorByteStringToUInt8Fill", dict(shape=[4], values=["ab"]), OperatorError,
     "4 vs 2"),
])
def test_given_tensor_fill_errors(op_type, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        run_op(op_type, [], **kwargs)


def test_given_tensor_fill_input_count_and_shape_conflict():
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(SchemaError, match=r"Input size 2 not in range \[min=0, max=1\]"):
        run_op("GivenTensorFill", [x, x], values=[1.0] * 4)
    with pytest.raises(ArgumentError, match="Cannot set the shape argument and pass in"):
        run_op("GivenTensorFill", [x], values=[1.0] * 4, shape=[4])


def test_given_tensor_fill_outputs_are_fresh_arrays():
    ws = workspace.Workspace()
    net = core.Net("given")
    net.GivenTensorFill([], "a", shape=[2], values=[1.0, 2.0])
    ws.CreateNet(net)
    ws.RunNet(net)
    first = ws._blobs["a"].value
    ws.RunNet(net)
    assert ws._blobs["a"].value is not first  # a run never hands out shared storage


# --- random fillers ------------------------------------------------------------------

def draw(op_type, inputs=(), seed=7, **kwargs):
    out = run_op(op_type, list(inputs), random_seed=seed, **kwargs)[0]
    return out


def test_uniform_fill_statistics():
    lo, hi = -1.5, 2.5
    y = draw("UniformFill", shape=[200, 100], min=lo, max=hi)
    assert y.dtype == np.float32 and y.shape == (200, 100)
    assert y.min() >= lo and y.max() <= hi
    n, width = y.size, hi - lo
    assert abs(y.mean() - (lo + hi) / 2) < 6 * width / math.sqrt(12 * n)
    assert abs(y.std() - width / math.sqrt(12)) < 0.02
    counts, _ = np.histogram(y, bins=8, range=(lo, hi))
    assert np.all(np.abs(counts - n / 8) < 5 * math.sqrt(n / 8))


def test_uniform_fill_defaults_to_unit_interval():
    y = draw("UniformFill", shape=[5000])
    assert 0.0 <= y.min() and y.max() <= 1.0 and abs(y.mean() - 0.5) < 0.03


def test_uniform_int_fill_is_inclusive():
    y = draw("UniformIntFill", shape=[30000], min=-2, max=3)
    assert y.dtype == np.int32 and y.shape == (30000,)
    values, counts = np.unique(y, return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-2, 4))
    assert np.all(np.abs(counts - 5000) < 5 * math.sqrt(5000))


def test_gaussian_fill_statistics():
    y = draw("GaussianFill", shape=[200, 100], mean=1.5, std=0.5)
    assert y.dtype == np.float32 and y.shape == (200, 100)
    n = y.size
    assert abs(y.mean() - 1.5) < 6 * 0.5 / math.sqrt(n)
    assert abs(y.std() - 0.5) < 6 * 0.5 / math.sqrt(2 * n)
    within = np.mean(np.abs(y - 1.5) < 0.5)
    assert abs(within - 0.6827) < 0.02
    z = draw("GaussianFill", shape=[20000])
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.03


def test_gaussian_fill_zero_std_is_the_mean():
    np.testing.assert_array_equal(draw("GaussianFill", shape=[3], mean=1.25, std=0.0),
                                  np.full(3, 1.25, np.float32))


@pytest.mark.parametrize("shape", [[50, 40, 5], [1000], [300, 2]])
def test_xavier_fill_statistics(shape):
    y = draw("XavierFill", shape=shape)
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    fan_in = y.size // shape[0]
    s = math.sqrt(3.0 / fan_in)
    assert np.abs(y).max() <= s * (1 + 1e-6)
    assert np.abs(y).max() > 0.98 * s
    assert abs(y.std() - s / math.sqrt(3)) < 0.03 * s / math.sqrt(3)


def test_xavier_fill_fan_in_counts_extra_shape():
    x = np.zeros((2000, 3), np.float32)
    y = draw("XavierFill", [x], extra_shape=[4])
    assert y.shape == (2000, 3, 4)
    s = math.sqrt(3.0 / 12)
    assert np.abs(y).max() <= s * (1 + 1e-6) and np.abs(y).max() > 0.98 * s


@pytest.mark.parametrize("shape", [[20, 400, 5], [100, 200]])
def test_msra_fill_statistics(shape):
    y = draw("MSRAFill", shape=shape)
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    fan_out = y.size // shape[1]
    std = math.sqrt(2.0 / fan_out)
    assert abs(y.std() - std) < 0.02 * std
    assert abs(y.mean()) < 6 * std / math.sqrt(y.size)


RANDOM_OPS = [("UniformFill", dict(min=-1.0, max=1.0)), ("UniformIntFill", dict(min=0, max=9)),
              ("GaussianFill", dict(mean=0.5, std=2.0)), ("XavierFill", {}),
              ("MSRAFill", {})]


@pytest.mark.parametrize("op_type,kwargs", RANDOM_OPS)
def test_random_fillers_seed_reproduces(op_type, kwargs):
    a = draw(op_type, shape=[4, 6], seed=11, **kwargs)
    b = draw(op_type, shape=[4, 6], seed=11, **kwargs)
    c = draw(op_type, shape=[4, 6], seed=12, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    check_devices(op_type, [], shape=[4, 6], random_seed=11, **kwargs)
    check_shape_inference(op_type, [], shape=[4, 6], random_seed=11, **kwargs)


@pytest.mark.parametrize("op_type,kwargs", RANDOM_OPS)
def test_random_fillers_shape_sources(op_type, kwargs):
    x = RNG.standard_normal((3, 2)).astype(np.int32)
    y = draw(op_type, [x], extra_shape=[4], **kwargs)
    assert y.shape == (3, 2, 4)
    assert y.dtype == (np.int32 if op_type == "UniformIntFill" else np.float32)
    check_shape_inference(op_type, [x], extra_shape=[4], random_seed=3, **kwargs)
    check_devices(op_type, [x], extra_shape=[4], random_seed=3, **kwargs)
    y = draw(op_type, [np.array([2, 5], np.int64)], input_as_shape=1, **kwargs)
    assert y.shape == (2, 5)
    y = draw(op_type, [x], outputs=["in0"], **kwargs)  # in place
    assert y.shape == (3, 2)


def test_seeded_filler_in_a_net_advances_between_runs():
    ws = workspace.Workspace()
    net = core.Net("init")
    net.UniformFill([], "w", shape=[8], min=0.0, max=1.0, random_seed=5)
    ws.CreateNet(net)
    ws.RunNet(net)
    first = ws.FetchBlob("w")
    ws.RunNet(net)
    assert not np.array_equal(first, ws.FetchBlob("w"))
    ws.RunNetOnce(net)  # a fresh op: the seed starts over
    np.testing.assert_array_equal(first, ws.FetchBlob("w"))


def test_uniform_fill_min_max_from_inputs():
    x = np.zeros((4000, 2), np.float32)
    lo, hi = np.array([1.0], np.float32), np.array(3.0, np.float32)
    y = draw("UniformFill", [x, lo, hi])
    assert y.shape == (4000, 2) and y.min() >= 1.0 and y.max() <= 3.0
    assert abs(y.mean() - 2.0) < 0.05
    # equal bounds: a constant
    np.testing.assert_array_equal(draw("UniformFill", [x, hi, hi]),
                                  np.full((4000, 2), 3.0, np.float32))
    # min > max empties the first dimension (golden from real Caffe2 1.10.2)
    out = draw("UniformFill", [x, hi, lo])
    assert out.shape == (0, 2) and out.dtype == np.float32
    s = np.array([2, 3], np.int64)
    assert draw("UniformFill", [s, hi, lo], input_as_shape=1).shape == (0, 3)
    ints = draw("UniformIntFill", [x, np.array([4], np.int32), np.array([6], np.int32)])
    assert ints.dtype == np.int32 and set(np.unique(ints)) == {4, 5, 6}
    check_devices("UniformFill", [x[:3], lo, hi], random_seed=2)
    check_shape_inference("UniformFill", [x[:3], lo, hi], random_seed=2)


@pytest.mark.parametrize("op_type,inputs,kwargs,error,pattern", [
    ("UniformFill", 0, dict(shape=[2], min=1, max=2), ArgumentError,
     "Argument min does not have the right field: expected field f"),
    ("UniformIntFill", 0, dict(shape=[2], min=1.0, max=3.0), ArgumentError,
     "Argument min does not have the right field: expected field i"),
    ("UniformFill", 0, dict(shape=[2], min=2.0, max=2.0), ArgumentError,
     "Max value should be bigger than min value"),
    ("UniformIntFill", 0, dict(shape=[2], min=3, max=2), ArgumentError,
     "3 vs 2. Max value should be bigger than min value"),
    ("UniformIntFill", 0, dict(shape=[2], min=2, max=2 ** 40), ArgumentError,
     "Value 1099511627776 of argument max cannot be represented"),
    ("UniformFill", 3, dict(min=1.0), ArgumentError,
     "Cannot set both min arg and min input blob"),
    ("UniformFill", 3, dict(max=1.0), ArgumentError,
     "Cannot set both max arg and max input blob"),
    ("UniformFill", 2, {}, SchemaError, "Input size 2 not in allowed input sizes"),
    ("GaussianFill", 2, {}, SchemaError, r"Input size 2 not in range \[min=0, max=1\]"),
    ("GaussianFill", 0, dict(shape=[2], mean=1, std=2.0), ArgumentError,
     "Argument mean does not have the right field: expected field f"),
    ("XavierFill", 0, dict(shape=3), ArgumentError, "list expected"),
    ("MSRAFill", 0, dict(extra_shape=[2]), ArgumentError,
     "Cannot set extra_shape when there is no input"),
])
def test_random_filler_argument_errors(op_type, inputs, kwargs, error, pattern):
    xs = [np.ones(1, np.float32)] * inputs
    with pytest.raises(error, match=pattern):
        run_op(op_type, xs, **kwargs)


@pytest.mark.parametrize("op_type,inputs,kwargs,pattern", [
    ("UniformFill", [np.zeros(2, np.float32), np.ones(2, np.float32),
                     np.ones(1, np.float32)], {}, "min blob must be scalar, found 2"),
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.float32),
                     np.ones(3, np.float32)], {}, "max blob must be scalar, found 3"),
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.int32),
                     np.ones(1, np.float32)], {},
     "caller expects elements to be float, while tensor contains int"),
    ("UniformIntFill", [np.zeros(2, np.float32), np.ones(1, np.int64),
                        np.ones(1, np.int64)], {},
     "caller expects elements to be int, while tensor contains long int"),
    ("UniformFill", [np.zeros((), np.float32), np.full(1, 3.0, np.float32),
                     np.ones(1, np.float32)], {}, "output is 0-d"),
    ("GaussianFill", [], dict(shape=[3], std=-1.0), "stdv_in must be positive: -1"),
    ("XavierFill", [], {}, "at least 1 dimension"),
    ("MSRAFill", [], dict(shape=[3]), r"at least 2 dimensions, found shape \(3,\)"),
])
def test_random_filler_run_time_errors(op_type, inputs, kwargs, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op(op_type, inputs, **kwargs)


@pytest.mark.parametrize("op_type", ["XavierFill", "MSRAFill", "GaussianFill",
                                     "UniformFill"])
@pytest.mark.parametrize("shape", [[0, 3], [3, 0]])
def test_random_fillers_empty_outputs(op_type, shape):
    y = draw(op_type, shape=shape)
    assert y.shape == tuple(shape) and y.dtype == np.float32


# --- Iter ----------------------------------------------------------------------------

@pytest.mark.parametrize("counter", [np.array([5], np.int64), np.array(0, np.int64),
                                     np.array([[41]], np.int64)])
def test_iter_increments_in_place(counter):
    ref = lambda c: [c + 1]  # noqa: E731
    check_reference("Iter", [counter], ref, outputs=["in0"])
    check_shape_inference("Iter", [counter], outputs=["in0"])
    check_devices("Iter", [counter], outputs=["in0"])  # the counter stays on the CPU


def test_iter_counts_runs_and_feeds_learning_rate():
    ws = workspace.Workspace()
    init, net = core.Net("init"), core.Net("train")
    init.ConstantFill([], "it", shape=[1], value=0, dtype=DT.INT64)
    with core.DeviceScope(gpu(1)):
        net.Iter("it", "it")
        net.LearningRate("it", "lr", base_lr=-0.5, policy="step", stepsize=2, gamma=0.5)
    ws.RunNetOnce(init)
    ws.CreateNet(net)
    seen = []
    for _ in range(5):
        ws.RunNet(net)
        seen.append((int(ws.FetchBlob("it")[0]), float(ws.FetchBlob("lr"))))
    # the increment happens before LearningRate reads: the first run sees 1
    assert seen == [(k, -0.5 * 0.5 ** (k // 2)) for k in range(1, 6)]
    assert ws.BlobDevice("it") == CPU and ws.BlobDevice("lr") == Device(1, 1)


def test_iter_zero_input_legacy_form_creates_the_counter():
    ws = workspace.Workspace()
    net = core.Net("legacy")
    net.Iter([], "it")
    ws.CreateNet(net)
    for k in (1, 2, 3):
        ws.RunNet(net)
        out = ws.FetchBlob("it")
        assert out.dtype == np.int64 and out.shape == (1,) and out[0] == k
    # The counter lives in the blob, as in Caffe2: one-off runs and feeds see it.
    ws.RunOperatorOnce(core.CreateOperator("Iter", [], ["it"]))
    assert ws.FetchBlob("it")[0] == 4
    ws.FeedBlob("it", np.array([10], np.int64))
    ws.RunNet(net)
    assert ws.FetchBlob("it")[0] == 11
    check_shape_inference("Iter", [])  # a fresh legacy counter: int64 of shape (1,)


@pytest.mark.parametrize("counter,pattern", [
    (np.array([5, 6], np.int64), "The output of IterOp exists, but not of the right size"),
    (np.array([-1], np.int64), "Previous iteration number is negative"),
    (np.array([2 ** 63 - 1], np.int64), "Overflow will happen!"),
    (np.array([5], np.int32), "counter must be int64, found int32"),
    (np.array([5.0], np.float32), "counter must be int64, found float32"),
])
def test_iter_errors(counter, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op("Iter", [counter], outputs=["in0"])


def test_iter_must_be_in_place():
    with pytest.raises(SchemaError, match=r"Input index 0 \(in0\) and output idx 0 \(out0\) "
                                          "are not in-place but should be"):
        run_op("Iter", [np.array([1], np.int64)])


# --- LearningRate ---------------------------------------------------------------------

def lr_of(it, device=None, **kwargs):
    out = run_op("LearningRate", [np.array([it], np.int64)], device=device, **kwargs)[0]
    assert out.dtype == np.float32 and out.shape == ()
    return float(out)


def _warm_then(start, n_const, n_lin, after):
    def f(it):
        if it < n_const:
            return start
        if it < n_const + n_lin:
            return start + (1 - start) * (it - n_const) / n_lin
        return after(it - n_const - n_lin)
    return f


def _cyclical(base, max_lr, step, decay):
    def f(it):
        cycle = math.floor(1 + it / (2 * step))
        x = abs(it / step - 2 * cycle + 1)
        return 1 + (abs(max_lr) / abs(base) - 1) * max(0.0, 1 - x) * \
            decay ** math.floor(it / (2 * step))
    return f


def _sgdr(lo, hi, period, t_mult, shrink):
    """Cosine annealing with warm restarts (arXiv:1608.03983)."""
    def f(it):
        if t_mult == 1:
            i = math.floor(it / period)
            t_cur, t_i = it - i * period, period
        else:
            i = math.floor(math.log(1 - it / period * (1 - t_mult), t_mult))
            t_i = period * t_mult ** i
            t_cur = it - period * (1 - t_mult ** i) / (1 - t_mult)
        return shrink ** i * (lo + (hi - lo) * (1 + math.cos(math.pi * t_cur / t_i)) / 2)
    return f


BASE = -0.05
POLICY_FORMULAS = [
    ("fixed", {}, lambda it: 1.0),
    ("step", dict(stepsize=4, gamma=0.3), lambda it: 0.3 ** (it // 4)),
    ("exp", dict(gamma=0.95), lambda it: 0.95 ** it),
    ("inv", dict(gamma=0.2, power=0.5), lambda it: (1 + 0.2 * it) ** -0.5),
    ("poly", dict(power=1.5, max_iter=40), lambda it: (1 - it / 40) ** 1.5),
    ("gate", dict(multiplier_1=3.0, multiplier_2=0.25, num_iter=8),
     lambda it: 3.0 if it < 8 else 0.25),
    ("linearWarmup", dict(start_multiplier=0.25, num_iter=10),
     lambda it: 0.25 + 0.75 * it / 10 if it < 10 else 1.0),
    ("constantWarmup", dict(multiplier=0.125, num_iter=5),
     lambda it: 0.125 if it < 5 else 1.0),
    ("pieceWarmup", dict(m1=0.25, n1=3, m2=0.75, n2=9, m3=2.0),
     lambda it: 0.25 if it < 3 else 0.75 if it < 9 else 2.0),
    ("alter", dict(active_first=1, active_period=3, inactive_period=2),
     lambda it: 1.0 if it % 5 < 3 else 0.0),
    ("alter", dict(active_first=0, active_period=3, inactive_period=2),
     lambda it: 0.0 if it % 5 < 2 else 1.0),
    ("hill", dict(num_iter=6, start_multiplier=0.5, gamma=0.25, power=2.0,
                  end_multiplier=0.1),
     lambda it: 0.5 + 0.5 * it / 6 if it < 6 else max(0.1, (1 + 0.25 * (it - 6)) ** -2.0)),
    ("slope", dict(num_iter_1=5, multiplier_1=1.0, num_iter_2=15, multiplier_2=0.5),
     lambda it: 1.0 if it < 5 else max(0.5, 1.0 - 0.5 * (it - 5) / 10)),
    ("cyclical", dict(max_lr=-0.2, stepsize=5, decay=0.75), _cyclical(BASE, -0.2, 5, 0.75)),
    ("cosine", dict(max_lr=0.5, min_lr=0.125, period=6, t_mult=1.0, lr_shrink=0.75),
     _sgdr(0.125, 0.5, 6, 1.0, 0.75)),
    ("cosine", dict(max_lr=0.5, min_lr=0.125, period=3, t_mult=2.0, lr_shrink=0.75),
     _sgdr(0.125, 0.5, 3, 2.0, 0.75)),
    ("constantThenLinearWarmup", dict(start_warmup_multiplier=0.5,
                                      constant_warmup_num_iter=4, linear_warmup_num_iter=8),
     _warm_then(0.5, 4, 8, lambda it: 1.0)),
    ("compositeCyclical", dict(start_warmup_multiplier=0.5, constant_warmup_num_iter=2,
                               linear_warmup_num_iter=4, cyclical_max_lr=-0.15,
                               cyclical_step_size=3, cyclical_decay=0.5),
     _warm_then(0.5, 2, 4, _cyclical(BASE, -0.15, 3, 0.5))),
    ("compositeCosine", dict(start_warmup_multiplier=0.5, constant_warmup_num_iter=2,
                             linear_warmup_num_iter=4, cosine_max_lr=0.75,
                             cosine_min_lr=0.25, cosine_period=5, cosine_t_mult=1.0,
                             cosine_lr_shrink=0.5),
     _warm_then(0.5, 2, 4, _sgdr(0.25, 0.75, 5, 1.0, 0.5))),
    ("composite", dict(sub_policy_num_iters=[3, 4, 5], sub_policy_0_policy="constantWarmup",
                       sub_policy_0_multiplier=0.5, sub_policy_0_num_iter=100,
                       sub_policy_1_policy="exp", sub_policy_1_gamma=0.5,
                       sub_policy_1_lr_scale=2.0, sub_policy_2_policy="fixed",
                       sub_policy_2_lr_scale=0.25),
     # sub-policies start at iteration 1 and read the absolute iteration
     lambda it: 0.5 if it < 4 else 2.0 * 0.5 ** it if it < 8 else 0.25),
]


@pytest.mark.parametrize("policy,kwargs,multiplier", POLICY_FORMULAS,
                         ids=["%s-%d" % (p[0], i) for i, p in enumerate(POLICY_FORMULAS)])
def test_learning_rate_policies_follow_their_formulas(policy, kwargs, multiplier):
    iters = [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 21, 30, 37]
    if policy != "composite":
        iters = [0] + iters
    got = [lr_of(it, base_lr=BASE, policy=policy, **kwargs) for it in iters]
    want = [np.float32(BASE * multiplier(it)) for it in iters]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9, err_msg=policy)


# golden from real Caffe2 1.10.2: LearningRate(base_lr=0.1, policy, **args) at iterations
LR_GOLDEN = [
    ("step", {'stepsize': 3, 'gamma': 0.5},
     {1: 0.100000001, 3: 0.0500000007, 4: 0.0500000007, 7: 0.0250000004, 12: 0.00625000009,
      25: 0.000390625006}),
    ("inv", {'gamma': 0.1, 'power': 0.75},
     {1: 0.0931012481, 3: 0.0821376964, 4: 0.0776969492, 7: 0.0671681389, 12: 0.0553583317,
      25: 0.0390794985}),
    ("poly", {'power': 2.0, 'max_iter': 20},
     {1: 0.0902500004, 3: 0.0722500011, 4: 0.064000003, 7: 0.0422499962, 12: 0.0159999989,
      25: 0.00625000009}),
    ("poly", {'power': 2.0},  # max_iter -1 is read as uint64: multiplier ~1
     {1: 0.100000001, 12: 0.100000001, 25: 0.100000001}),
    ("pieceWarmup", {}, {1: 0.0500000007, 25: 0.0500000007}),
    ("alter", {'active_first': 0, 'active_period': 2, 'inactive_period': 3},
     {1: 0, 3: 0.100000001, 4: 0.100000001, 7: 0, 12: 0, 25: 0}),
    ("alter", {}, {1: 0, 3: 0, 25: 0}),   # -1 periods: C++ modulo semantics
    ("hill", {'num_iter': 4, 'start_multiplier': 0.1, 'gamma': 0.5, 'power': 1.5,
              'end_multiplier': 0.2},
     {1: 0.0324999988, 3: 0.0775000006, 4: 0.100000001, 7: 0.025298221, 12: 0.0200000014}),
    ("slope", {'num_iter_1': 3, 'multiplier_1': 0.2, 'num_iter_2': 9, 'multiplier_2': 0.8},
     {1: 0.0200000014, 3: 0.0800000057, 7: 0.0800000057, 12: 0.110000007, 25: 0.24000001}),
    ("cyclical", {'max_lr': 0.35, 'stepsize': 3, 'decay': 0.9},
     {1: 0.183333352, 3: 0.349999994, 4: 0.266666651, 7: 0.174999982, 12: 0.100000001,
      25: 0.154674947}),
    ("cosine", {'max_lr': 0.5, 'min_lr': 0.1, 'period': 4, 't_mult': 2.0, 'lr_shrink': 0.8},
     {1: 0.0441421382, 3: 0.015857866, 4: 0.0400000028, 7: 0.0301229358, 12: 0.0320000015,
      25: 0.00855718926}),
    ("cosine", {},
     {1: 0.049960535, 7: 0.0480965413, 12: 0.0445793718, 25: 0.0300000012}),
    ("compositeCyclical", {'start_warmup_multiplier': 0.2, 'constant_warmup_num_iter': 2,
                           'linear_warmup_num_iter': 3, 'cyclical_max_lr': 0.3,
                           'cyclical_step_size': 2, 'cyclical_decay': 0.8},
     {1: 0.0200000014, 3: 0.0466666669, 4: 0.0733333379, 7: 0.300000012, 12: 0.179999992,
      25: 0.100000001}),
    ("compositeCosine", {'start_warmup_multiplier': 0.2, 'constant_warmup_num_iter': 2,
                         'linear_warmup_num_iter': 3, 'cosine_max_lr': 0.6,
                         'cosine_min_lr': 0.05, 'cosine_period': 4, 'cosine_t_mult': 1.5,
                         'cosine_lr_shrink': 0.7},
     {1: 0.0200000014, 3: 0.0466666669, 4: 0.0733333379, 7: 0.0325000025, 12: 0.0227500014,
      25: 0.0203257482}),
    ("composite", {'sub_policy_num_iters': [2, 3, 4], 'sub_policy_0_policy': 'fixed',
                   'sub_policy_0_lr_scale': 0.5, 'sub_policy_1_policy': 'step',
                   'sub_policy_1_stepsize': 2, 'sub_policy_1_gamma': 0.5,
                   'sub_policy_2_policy': 'linearWarmup',
                   'sub_policy_2_start_multiplier': 0.1, 'sub_policy_2_num_iter': 8,
                   'sub_policy_2_lr_scale': 3.0},
     {1: 0.0500000007, 3: 0.0500000007, 4: 0.0250000004, 7: 0.266249985, 12: 0.300000012}),
]


@pytest.mark.parametrize("policy,kwargs,golden", LR_GOLDEN,
                         ids=["%s-%d" % (g[0], i) for i, g in enumerate(LR_GOLDEN)])
def test_learning_rate_matches_caffe2_goldens(policy, kwargs, golden):
    for it, want in golden.items():
        assert lr_of(it, base_lr=0.1, policy=policy, **kwargs) == pytest.approx(
            want, rel=1e-6, abs=1e-12), (policy, it)


def test_learning_rate_output_is_a_0d_float_on_the_op_device():
    it = np.array([3], np.int64)
    check_op("LearningRate", [it], lambda it: [np.array(-0.01, np.float32)],
             base_lr=-0.01, policy="fixed")
    check_op("LearningRate", [np.array(7, np.int64)],
             lambda it: [np.array(np.float32(0.1) * np.float32(0.5), np.float32)],
             base_lr=0.1, policy="step", stepsize=5, gamma=0.5)
    # Caffe2 reads the first element of a longer counter
    assert lr_of(0, base_lr=1.0, policy="exp", gamma=0.5) == 1.0
    out = run_op("LearningRate", [np.array([2, 9], np.int64)], base_lr=1.0, policy="exp",
                 gamma=0.5)[0]
    assert float(out) == 0.25


def test_learning_rate_reads_only_its_policy_arguments():
    # golden from real Caffe2 1.10.2: a mistyped argument the policy never reads is fine
    assert lr_of(3, base_lr=0.1, policy="fixed", gamma=1) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(policy="fixed"), "Base learning rate must be set."),
    (dict(base_lr=0.1), "Must specify a learning rate policy."),
    (dict(base_lr=0.1, policy=""), "Must specify a learning rate policy."),
    (dict(base_lr=0.1, policy="nope"), "Unknown learning rate policy: nope"),
    (dict(base_lr=1, policy="fixed"),
     "Argument base_lr does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="step", stepsize=2.0, gamma=0.5),
     "Argument stepsize does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="step", stepsize=2, gamma=1),
     "Argument gamma does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="step", stepsize=2 ** 40, gamma=0.5),
     "Value 1099511627776 of argument stepsize cannot be represented.*int32"),
    (dict(base_lr=0.1, policy="gate", num_iter=1.0),
     "Argument num_iter does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="alter", active_first=1.0),
     "Argument active_first does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="composite"),
     "Must specify at least one sub learning rate policy."),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2, 0],
          sub_policy_0_policy="fixed"),
     "The number of iterations for sub learning rate policy should be positive"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="composite"),
     "Defining composite LR policy as a subpolicy of composite LR policy is not allowed"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2]),
     "Unknown learning rate policy: "),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="step", sub_policy_0_gamma=1),
     "Argument sub_policy_0_gamma does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="fixed", sub_policy_0_lr_scale=2),
     "Argument sub_policy_0_lr_scale does not have the right field: expected field f"),
])
def test_learning_rate_argument_errors(kwargs, pattern):
    with pytest.raises(ArgumentError, match=pattern):
        run_op("LearningRate", [np.array([3], np.int64)], **kwargs)


@pytest.mark.parametrize("it,kwargs,pattern", [
    (np.array([3], np.int32), dict(policy="fixed"),
     "caller expects elements to be long int, while tensor contains int"),
    (np.array([], np.int64), dict(policy="fixed"), "iteration input is empty"),
    (np.array([3], np.int64), dict(policy="step", gamma=0.5), "stepsize is 0"),
    (np.array([3], np.int64), dict(policy="alter", active_period=1, inactive_period=-1),
     "active_period \\+ inactive_period is 0"),
])
def test_learning_rate_run_time_errors(it, kwargs, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op("LearningRate", [it], base_lr=0.1, **kwargs)


def test_learning_rate_schema():
    with pytest.raises(SchemaError, match="are set to be in-place but this is actually not "
                                          "supported by op LearningRate"):
        run_op("LearningRate", [np.array([1], np.int64)], outputs=["in0"], base_lr=0.1,
               policy="fixed")
    with pytest.raises(SchemaError, match=r"Input size 0 not in range \[min=1, max=1\]"):
        run_op("LearningRate", [], base_lr=0.1, policy="fixed")
    assert registry.get("LearningRate").cpu_inputs == {0}
    check_shape_inference("LearningRate", [np.array([3], np.int64)], base_lr=0.1,
                          policy="fixed")


# --- gradients --------------------------------------------------------------------------

NO_GRADIENT_OPS = [
    ("ConstantFill", 0, dict(shape=[2], value=1.0)),
    ("ConstantFill", 2, dict(value=1.0)),
    ("GivenTensorFill", 0, dict(shape=[1], values=[1.0])),
    ("GivenTensorDoubleFill", 0, dict(shape=[1], values=[1.0])),
    ("GivenTensorBoolFill", 0, dict(shape=[1], values=[1])),
    ("GivenTensorIntFill", 0, dict(shape=[1], values=[1])),
    ("GivenTensorInt64Fill", 0, dict(shape=[1], values=[1])),
    ("GivenTensorInt16Fill", 0, dict(shape=[1], values=[1])),
    ("GivenTensorStringFill", 0, dict(shape=[1], values=["a"])),
    ("GivenTensorByteStringToUInt8Fill", 0, dict(shape=[1], values=["a"])),
    ("UniformFill", 3, {}), ("UniformIntFill", 0, dict(shape=[2])),
    ("GaussianFill", 1, {}), ("XavierFill", 0, dict(shape=[2])),
    ("MSRAFill", 0, dict(shape=[2, 2])), ("Iter", 1, {}),
    ("LearningRate", 1, dict(base_lr=0.1, policy="fixed")),
]


@pytest.mark.parametrize("op_type,n_in,kwargs", NO_GRADIENT_OPS)
def test_fill_family_has_no_gradient(op_type, n_in, kwargs):
    # real Caffe2 1.10.2: GetGradientForOp returns ([], [None] * inputs) for all of them
    outputs = ["in0"] if op_type == "Iter" else 1
    op = op_def(op_type, n_in, outputs, **kwargs)
    assert registry.get(op_type).no_gradient
    ops, g_input = make_gradient(op, [op.output[0] + "_grad"])
    assert ops == [] and g_input == [None] * n_in
