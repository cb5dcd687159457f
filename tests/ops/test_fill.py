"""FillerOp's shape rules, ConstantFill and the GivenTensor*Fill ops.

Expected values come from numpy/math formulas written here; a few golden values
come from real Caffe2 1.10.2 (marked so).
"""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.devices import Device
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import (check_devices, check_op, check_reference, check_shape_inference,
                           gpu, op_def, run_op)
from tests.ops.fill_helpers import DT, RNG, check_no_gradient, full


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
]


@pytest.mark.parametrize("op_type,n_in,kwargs", NO_GRADIENT_OPS)
def test_fill_family_has_no_gradient(op_type, n_in, kwargs):
    check_no_gradient(op_type, n_in, kwargs)
