"""Flatten, FlattenToVec, ResizeLike, Reshape, Transpose, ExpandDims, Squeeze
(reference, shape inference, devices, gradients, errors). Expected values are
numpy formulas or goldens from real Caffe2 1.10.2.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import (check_gradient, check_op, check_shape_inference, gpu,
                           gradient_of, run_op)
from tests.ops.shape_helpers import (DTYPES, check_golden_wiring, check_in_place_refused,
                                     golden_id, rand)


# --- Flatten, FlattenToVec, ResizeLike ---------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_flatten_reference(dtype, axis):
    x = rand((2, 3, 4), dtype)
    check_op("Flatten", [x], lambda x: [x.reshape(int(np.prod(x.shape[:axis])), -1)],
             axis=axis)


def test_flatten_default_axis_and_edges():
    x = rand((2, 3, 4))
    check_op("Flatten", [x], lambda x: [x.reshape(2, 12)])
    check_op("Flatten", [np.array(2.5, np.float32)],
             lambda s: [np.array([[2.5]], np.float32)], axis=0)
    e = np.zeros((0, 3, 2), np.float32)
    check_op("Flatten", [e], lambda e: [np.zeros((0, 6), np.float32)])


def test_flatten_errors():
    x = rand((2, 3, 4))
    with pytest.raises(OperatorError, match="The rank of the tensor must be >= axis. Found "
                                            "rank 3, axis 4"):
        run_op("Flatten", [x], axis=4)
    with pytest.raises(OperatorError, match="rank 3, axis -1"):
        run_op("Flatten", [x], axis=-1)
    with pytest.raises(OperatorError, match="rank 0, axis 1"):
        run_op("Flatten", [np.array(1.0, np.float32)])
    check_in_place_refused("Flatten", x, ["a"], ["a"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_to_vec(dtype):
    x = rand((2, 3, 4), dtype)
    check_op("FlattenToVec", [x], lambda x: [x.ravel()])
    with pytest.raises(OperatorError, match="The rank of the tensor must be >= 1"):
        run_op("FlattenToVec", [np.array(1, dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_resize_like(dtype):
    x, like = rand((2, 3, 4), dtype), np.zeros((4, 6), np.int64)
    check_op("ResizeLike", [x, like], lambda x, like: [x.reshape(4, 6)])


def test_resize_like_errors_and_no_gradient():
    x = rand((2, 3, 4))
    with pytest.raises(OperatorError, match=r"input0.numel\(\) == input1.numel\(\). 24 vs 20"):
        run_op("ResizeLike", [x, np.zeros((4, 5), np.float32)])
    with pytest.raises(Exception, match="One should not call gradient for operator "
                                        "ResizeLike"):
        core.GradientRegistry.GetGradientForOp(
            core.CreateOperator("ResizeLike", ["x", "z"], ["y"]), ["y_grad"])


# --- Reshape ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_reshape_shape_arg(dtype):
    x = rand((2, 3, 4), dtype)
    check_op("Reshape", [x], lambda x: [x.reshape(4, 6), np.array([2, 3, 4], np.int64)],
             outputs=2, shape=[4, -1])


@pytest.mark.parametrize("shape, expected", [
    ([0, -1], (2, 12)), ([0, 0, 0, 1], (2, 3, 4, 1)), ([0, -1, 0], (2, 3, 4)),
    ([0, 0, 2, 2], (2, 3, 2, 2)), ([-1], (24,)), ([24], (24,))])
def test_reshape_zero_copies_and_minus_one(shape, expected):
    x = rand((2, 3, 4))
    check_op("Reshape", [x], lambda x: [x.reshape(expected), np.array([2, 3, 4], np.int64)],
             outputs=2, shape=shape)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_reshape_new_shape_input(index_dtype):
    # golden from real Caffe2 1.10.2: old_shape takes the new_shape input's dtype
    x = rand((2, 3, 4))
    ns = np.array([4, -1], index_dtype)
    check_op("Reshape", [x, ns], lambda x, ns: [x.reshape(4, 6),
                                                np.array([2, 3, 4], index_dtype)], outputs=2)


@pytest.mark.parametrize("in_shape, shape, expected", [
    # goldens from real Caffe2 1.10.2 (0 is not copied for empty inputs)
    ((0, 3), [-1, 6], (0, 6)), ((0, 3), [0, -1], (0, 0)), ((0, 3), [5, -1], (5, 0)),
    ((), [], ()), ((), [1, -1], (1, 1))])
def test_reshape_empty_and_scalar(in_shape, shape, expected):
    x = np.full(in_shape, 3.0, np.float32)
    check_op("Reshape", [x], lambda x: [np.full(expected, 3.0, np.float32),
                                        np.array(in_shape, np.int64)], outputs=2, shape=shape)


def test_reshape_in_place_and_old_shape_on_cpu():
    ws = workspace.Workspace()
    x = rand((2, 6))
    ws.FeedBlob("x", x, device_option=gpu(3))
    ws.RunOperatorOnce(core.CreateOperator("Reshape", ["x"], ["x", "old"], shape=[3, 4],
                                           device_option=gpu(3)))
    np.testing.assert_array_equal(ws.FetchBlob("x"), x.reshape(3, 4))
    assert ws.BlobDevice("x") == Device(1, 3) and ws.BlobDevice("old") == CPU
    # a failing in-place Reshape leaves the blob untouched
    with pytest.raises(OperatorError, match="does not agree"):
        ws.RunOperatorOnce(core.CreateOperator("Reshape", ["x"], ["x", "old"], shape=[5, -1],
                                               device_option=gpu(3)))
    np.testing.assert_array_equal(ws.FetchBlob("x"), x.reshape(3, 4))


def test_reshape_new_shape_may_live_on_gpu():
    ws = workspace.Workspace()
    x = rand((2, 6))
    ws.FeedBlob("x", x, device_option=gpu(1))
    ws.FeedBlob("ns", np.array([6, 2], np.int64), device_option=gpu(1))
    ws.RunOperatorOnce(core.CreateOperator("Reshape", ["x", "ns"], ["y", "old"],
                                           device_option=gpu(1)))
    np.testing.assert_array_equal(ws.FetchBlob("y"), x.reshape(6, 2))


def test_reshape_errors():
    x = rand((2, 3, 4))
    i64 = np.int64
    # golden texts from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="Argument `shape` is missing"):
        run_op("Reshape", [x], 2)
    with pytest.raises(OperatorError, match="New shape is specified by the input blob, do "
                                            "not pass in the argument `shape`"):
        run_op("Reshape", [x, np.array([4, -1], i64)], 2, shape=[4, -1])
    with pytest.raises(OperatorError, match="Argument `shape` has more than one missing "
                                            "dimension"):
        run_op("Reshape", [x], 2, shape=[-1, -1])
    with pytest.raises(OperatorError, match=r"Argument `shape` does not agree with the input "
                                            r"data. \(24 vs 5\)"):
        run_op("Reshape", [x], 2, shape=[5, -1])
    with pytest.raises(OperatorError,
                       match=r"does not agree with the input data. \(24 != 25\)"):
        run_op("Reshape", [x], 2, shape=[5, 5])
    with pytest.raises(OperatorError, match=r"\(24 != 72\)"):
        run_op("Reshape", [x], 2, shape=[24, 0])
    with pytest.raises(OperatorError, match=r"Can not reshape a non-zero size \(24\) tensor "
                                            r"to zero size"):
        run_op("Reshape", [x], 2, shape=[0, 0, 0, 0])
    with pytest.raises(OperatorError, match="Unsupported type of tensor: float"):
        run_op("Reshape", [x, np.array([4.0, -1.0], np.float32)], 2)
    with pytest.raises(OperatorError, match="the input must be a 1D tensor"):
        run_op("Reshape", [x, np.array([[4, 6]], i64)], 2)
    with pytest.raises(OperatorError, match="new_shape input is empty"):
        run_op("Reshape", [x, np.array([], i64)], 2)
    with pytest.raises(OperatorError, match="invalid dimension"):
        run_op("Reshape", [x], 2, shape=[-2, -12])
    with pytest.raises(OperatorError, match=r"\(0 != 15\)"):  # Caffe2 returned garbage
        run_op("Reshape", [np.zeros((0, 3), np.float32)], 2, shape=[5, 3])
    with pytest.raises(SchemaError, match=r"Output size 1 not in range \[min=2, max=2\]"):
        run_op("Reshape", [x], 1, shape=[4, 6])
    with pytest.raises(SchemaError, match="Input index 0 and output idx 1"):
        ws = workspace.Workspace()
        ws.FeedBlob("a", x)
        ws.RunOperatorOnce(core.CreateOperator("Reshape", ["a"], ["y", "a"], shape=[4, 6]))


# --- Transpose -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("axes", [None, [1, 2, 0], [0, 2, 1], [0, 1, 2]])
def test_transpose_reference(dtype, axes):
    x = rand((2, 3, 4), dtype)
    kwargs = {} if axes is None else {"axes": axes}
    check_op("Transpose", [x], lambda x: [np.transpose(x, axes)], **kwargs)


def test_transpose_edges():
    check_op("Transpose", [np.array(2.0, np.float32)], lambda s: [s.copy()])
    check_op("Transpose", [np.zeros((0, 3), np.float32)], lambda e: [e.T.copy()])
    check_op("Transpose", [rand((5,))], lambda v: [v.copy()])


def test_transpose_errors():
    x = rand((2, 3, 4))
    with pytest.raises(ArgumentError, match=r"Axes should be a permutation of 0 to ndim. "
                                            r"Found axes=\[1, 2, 2\]"):
        run_op("Transpose", [x], axes=[1, 2, 2])
    with pytest.raises(OperatorError, match=r"ndim == axes_.size\(\). 3 vs 2"):
        run_op("Transpose", [x], axes=[1, 0])
    for dtype, name in [(np.bool_, "bool"), (np.float16, "c10::Half"),
                        (np.uint8, "unsigned char")]:
        with pytest.raises(OperatorError, match="Unsupported type of tensor: %s" % name):
            run_op("Transpose", [x.astype(dtype)])
    check_in_place_refused("Transpose", x, ["a"], ["a"])


# --- ExpandDims / Squeeze --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_expand_dims_and_squeeze(dtype):
    x = rand((2, 3, 4), dtype)
    check_op("ExpandDims", [x], lambda x: [x.reshape(1, 2, 3, 4, 1)], dims=[0, 4])
    check_op("ExpandDims", [x], lambda x: [x.reshape(1, 2, 3, 1, 4)], dims=[3, 0, 3])
    y = x.reshape(1, 2, 1, 3, 4)
    check_op("Squeeze", [y], lambda y: [y.reshape(2, 3, 4)], dims=[2, 0, 2])
    check_op("ExpandDims", [np.array(1, dtype)], lambda s: [s.reshape(1)], dims=[0])
    check_op("Squeeze", [np.ones(1, dtype)], lambda v: [v.reshape(())], dims=[0])


def test_expand_dims_and_squeeze_in_place():
    ws = workspace.Workspace()
    x = rand((2, 3))
    ws.FeedBlob("x", x)
    ws.RunOperatorOnce(core.CreateOperator("ExpandDims", ["x"], ["x"], dims=[1]))
    assert ws.FetchBlob("x").shape == (2, 1, 3)
    ws.RunOperatorOnce(core.CreateOperator("Squeeze", ["x"], ["x"], dims=[1]))
    np.testing.assert_array_equal(ws.FetchBlob("x"), x)


def test_expand_dims_and_squeeze_errors():
    x = rand((2, 3, 4))
    for op_type in ("ExpandDims", "Squeeze"):
        with pytest.raises(ArgumentError, match="Parameter `dims` must be provided"):
            run_op(op_type, [x])
        with pytest.raises(ArgumentError, match="Dimension ids must be non-negative"):
            run_op(op_type, [x], dims=[-1])
    # golden texts from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="Input needs at least 4 dimensions given `dims`"):
        run_op("ExpandDims", [x], dims=[0, 5])
    y = x.reshape(1, 2, 1, 3, 4)
    with pytest.raises(OperatorError, match="Dimension 1 of input must be 1 instead of 2"):
        run_op("Squeeze", [y], dims=[1])
    with pytest.raises(OperatorError, match="Input needs at least 6 dimensions"):
        run_op("Squeeze", [y], dims=[5])


# --- shape inference where the data decides ---------------------------------------

def test_shape_inference_with_data_dependent_shapes():
    x = rand((2, 3, 4))
    check_shape_inference("Split", [x, np.array([1, 3], np.int32)], 2, axis=2)
    check_shape_inference("Split", [x, np.array([1, 1], np.int32)], 2, axis=0, add_axis=1)
    check_shape_inference("Reshape", [x, np.array([6, 4], np.int32)], 2)


# --- gradients: wiring (goldens from real Caffe2 1.10.2 GetGradientForOp) ----------

GOLDEN_WIRING = [
    ('Flatten', ['x'], ['y'], {'axis': 2}, ['y_g'],
     ['input: "y_g"\ninput: "x"\noutput: "x_grad"\nname: ""\ntype: "ResizeLike"\narg {\n  name: "axis"\n  i: 2\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('FlattenToVec', ['x'], ['y'], {}, ['y_g'],
     ['input: "y_g"\ninput: "x"\noutput: "x_grad"\nname: ""\ntype: "ResizeLike"\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Reshape', ['x'], ['y', 'os'], {'shape': [2, -1]}, ['y_g', None],
     ['input: "y_g"\ninput: "os"\noutput: "x_grad"\noutput: "_x_grad_dims"\nname: ""\ntype: "Reshape"\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Reshape', ['x', 'ns'], ['y', 'os'], {}, ['y_g', None],
     ['input: "y_g"\ninput: "os"\noutput: "x_grad"\noutput: "_x_grad_dims"\nname: ""\ntype: "Reshape"\nis_gradient_op: true\n'], ['x_grad', None]),  # noqa: E501
    ('Transpose', ['x'], ['y'], {'foo': 3, 'axes': [1, 2, 0]}, ['y_g'],
     ['input: "y_g"\noutput: "x_grad"\nname: ""\ntype: "Transpose"\narg {\n  name: "foo"\n  i: 3\n}\narg {\n  name: "axes"\n  ints: 2\n  ints: 0\n  ints: 1\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Transpose', ['x'], ['y'], {}, ['y_g'],
     ['input: "y_g"\noutput: "x_grad"\nname: ""\ntype: "Transpose"\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('ExpandDims', ['x'], ['y'], {'dims': [0, 2]}, ['y_g'],
     ['input: "y_g"\noutput: "x_grad"\nname: ""\ntype: "Squeeze"\narg {\n  name: "dims"\n  ints: 0\n  ints: 2\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Squeeze', ['x'], ['y'], {'dims': [0, 2]}, ['y_g'],
     ['input: "y_g"\noutput: "x_grad"\nname: ""\ntype: "ExpandDims"\narg {\n  name: "dims"\n  ints: 0\n  ints: 2\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
]


@pytest.mark.parametrize("case", GOLDEN_WIRING, ids=golden_id)
def test_gradient_wiring_matches_caffe2(case):
    check_golden_wiring(case)


# --- gradients: finite differences --------------------------------------------------

def test_flatten_gradients():
    x = rand((2, 3, 2))
    check_gradient("Flatten", [x], wrt=[0], axis=2)
    check_gradient("Flatten", [x], wrt=[0])
    check_gradient("FlattenToVec", [x], wrt=[0])


def test_reshape_gradient():
    x = rand((2, 3, 2))
    check_gradient("Reshape", [x], wrt=[0], outputs=2, shape=[3, -1])
    check_gradient("Reshape", [x, np.array([0, 6], np.int32)], wrt=[0], outputs=2)
    _, _, dys, grads, _ = gradient_of("Reshape", [x], 2, shape=[-1])
    np.testing.assert_array_equal(grads[0], dys[0].reshape(2, 3, 2))


@pytest.mark.parametrize("axes", [None, [1, 2, 0], [2, 0, 1]])
def test_transpose_gradient(axes):
    x = rand((2, 3, 4))
    kwargs = {} if axes is None else {"axes": axes}
    check_gradient("Transpose", [x], wrt=[0], **kwargs)


def test_expand_dims_and_squeeze_gradients():
    check_gradient("ExpandDims", [rand((2, 3))], wrt=[0], dims=[0, 3])
    check_gradient("Squeeze", [rand((1, 2, 1, 3))], wrt=[0], dims=[0, 2])
