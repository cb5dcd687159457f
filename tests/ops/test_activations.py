"""Relu, Sigmoid, Tanh, Softmax, Dropout and their gradient ops.

Golden values and error texts marked "golden from real Caffe2 1.10.2" were
printed by torch 1.10.2's caffe2 on the CPU.
"""

import re

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError, EnforceError, OperatorError, SchemaError
from graphnet.gradient_maker import make_gradient
from tests.opcheck import (check_devices, check_gradient, check_op, check_reference,
                           check_shape_inference, gpu, run_op)

RNG = np.random.default_rng(0)


def randn(*shape, away_from_zero=0.0):
    x = RNG.standard_normal(shape).astype(np.float32)
    if away_from_zero:
        x = np.where(np.abs(x) < away_from_zero, np.copysign(away_from_zero + 0.2, x),
                     x).astype(np.float32)
    return x


def np_sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def np_softmax(x, axis=1):
    axis = axis % x.ndim
    rows = x.astype(np.float64).reshape(int(np.prod(x.shape[:axis])),
                                        int(np.prod(x.shape[axis:])))
    if rows.size == 0:
        return x.copy()
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape).astype(np.float32)


ELEMENTWISE = {
    "Relu": lambda x: np.where(x > 0, x, np.float32(0)),
    "Sigmoid": np_sigmoid,
    "Tanh": lambda x: np.tanh(x.astype(np.float64)).astype(np.float32),
}
ELEMENTWISE_GRAD = {
    "ReluGradient": lambda y, dy: np.where(y > 0, dy, np.float32(0)),
    "SigmoidGradient": lambda y, dy: (dy.astype(np.float64) * y * (1.0 - y)).astype(
        np.float32),
    "TanhGradient": lambda y, dy: (dy.astype(np.float64) * (1.0 - y.astype(np.float64) ** 2)
                                   ).astype(np.float32),
}


# --- Relu / Sigmoid / Tanh: forward -----------------------------------------------------

@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2), (1,), (0, 3), ()])
def test_elementwise_reference(op_type, shape):
    x = randn(*shape) * 3
    check_op(op_type, [x], lambda x: [ELEMENTWISE[op_type](x)])


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
def test_elementwise_in_place(op_type):
    ws = workspace.Workspace()
    x = randn(4, 5) * 2
    ws.FeedBlob("x", x)
    ws.RunOperatorOnce(core.CreateOperator(op_type, ["x"], ["x"]))
    np.testing.assert_allclose(ws.FetchBlob("x"), ELEMENTWISE[op_type](x), rtol=1e-6,
                               atol=1e-7)


def test_relu_golden_special_values():
    # golden from real Caffe2 1.10.2: NaN stays NaN, inf stays inf, negatives -> 0
    x = np.array([np.nan, np.inf, -np.inf, -100, 100, 0], np.float32)
    got = run_op("Relu", [x])[0]
    np.testing.assert_array_equal(got, [np.nan, np.inf, 0, 0, 100, 0])


def test_sigmoid_tanh_golden():
    # golden from real Caffe2 1.10.2
    got = run_op("Sigmoid", [np.array([-3, 0, 3, 20], np.float32)])[0]
    np.testing.assert_allclose(got, [0.04742587357759476, 0.5, 0.9525741338729858, 1.0],
                               rtol=1e-6)
    got = run_op("Tanh", [np.array([-3, 0, 0.5, 20], np.float32)])[0]
    np.testing.assert_allclose(got, [-0.9950547218322754, 0.0, 0.46211716532707214, 1.0],
                               rtol=1e-6)


def test_sigmoid_saturates_without_overflow():
    x = np.array([-1000, -100, -np.inf, np.inf, 1000, np.nan], np.float32)
    with np.errstate(over="raise", divide="raise"):
        got = run_op("Sigmoid", [x])[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[:5], [0, 0, 0, 1, 1], atol=1e-30)
    assert np.isnan(got[5])


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype, cpp", [(np.float64, "double"), (np.float16, "c10::Half"),
                                        (np.int32, "int"), (np.int64, "long int"),
                                        (np.bool_, "bool")])
def test_elementwise_rejects_dtype_on_cpu(op_type, dtype, cpp):
    # golden from real Caffe2 1.10.2: "Unsupported type of tensor: <cpp type>"
    x = (randn(2, 3) * 4).astype(dtype)
    with pytest.raises(OperatorError, match="Unsupported type of tensor: %s\\. %s expects "
                       "X as float32, found %s" % (cpp, op_type, np.dtype(dtype).name)):
        run_op(op_type, [x])


def test_relu_accepts_float16_on_gpu_only():
    x = (randn(3, 5) * 3).astype(np.float16)
    got = run_op("Relu", [x], device=1)[0]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.where(x > 0, x, np.float16(0)))
    y = got
    dy = randn(3, 5).astype(np.float16)
    dx = run_op("ReluGradient", [y, dy], device=2)[0]
    np.testing.assert_array_equal(dx, np.where(y > 0, dy, np.float16(0)))
    with pytest.raises(OperatorError, match="Unsupported type of tensor: c10::Half"):
        run_op("Relu", [x])
    for op_type in ("Sigmoid", "Tanh"):  # CUDA kernels were float-only
        with pytest.raises(OperatorError, match="expects X as float32, found float16"):
            run_op(op_type, [x], device=1)


def test_failing_in_place_op_leaves_blob_untouched():
    ws = workspace.Workspace()
    x = randn(3, 3).astype(np.float64)
    ws.FeedBlob("x", x)
    with pytest.raises(OperatorError, match="offending blob: 'x' \\(input 0\\)"):
        ws.RunOperatorOnce(core.CreateOperator("Relu", ["x"], ["x"]))
    np.testing.assert_array_equal(ws.FetchBlob("x"), x)
    assert ws.FetchBlob("x").dtype == np.float64


# --- Relu / Sigmoid / Tanh: gradients -------------------------------------------------------

@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE_GRAD))
@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 3), (0, 2)])
def test_elementwise_gradient_op_reference(op_type, shape):
    forward = ELEMENTWISE[op_type[:-len("Gradient")]]
    y = forward(randn(*shape, away_from_zero=0.1) * 2)
    dy = randn(*shape)
    check_op(op_type, [y, dy], lambda y, dy: [ELEMENTWISE_GRAD[op_type](y, dy)])


def test_relu_gradient_golden_zero_output():
    # golden from real Caffe2 1.10.2: dX = 0 wherever Y == 0
    y = np.array([0, 0.0, 1], np.float32)
    dy = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(run_op("ReluGradient", [y, dy])[0], [0, 0, 3])


@pytest.mark.parametrize("poison", [None, np.nan, np.inf])
def test_relu_gradient_large_arrays_select(poison):
    """Large arrays take a multiply path; it must equal the select, +0.0 included,
    and non-finite dY must still give 0 wherever Y <= 0."""
    rng = np.random.default_rng(5)
    y = np.maximum(rng.standard_normal((300, 100)), 0).astype(np.float32)
    dy = rng.standard_normal((300, 100)).astype(np.float32)
    if poison is not None:
        dy[0, :10] = poison
        y[0, :5] = 0  # poison where Y == 0 (must give 0) and where Y > 0 (kept)
        y[0, 5:10] = 1
    got = run_op("ReluGradient", [y, dy])[0]
    want = np.where(y > 0, dy, np.float32(0))
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(got[y <= 0]).any()  # +0.0, as Caffe2's select gives


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE))
def test_elementwise_finite_difference_gradient(op_type):
    x = randn(3, 4, away_from_zero=0.1)  # keep Relu away from its kink
    check_gradient(op_type, [x], wrt=[0])


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE_GRAD) + ["SoftmaxGradient"])
def test_gradient_op_in_place_rules(op_type):
    # golden from real Caffe2 1.10.2: dY (input 1) may become dX; Y (input 0) may not
    # (SoftmaxGradient allows neither).
    y = np_sigmoid(randn(2, 3))
    dy = randn(2, 3)
    ws = workspace.Workspace()
    ws.FeedBlob("y", y)
    ws.FeedBlob("dy", dy)
    with pytest.raises(SchemaError, match="Input index 0 and output idx 0 \\(y\\) are set "
                       "to be in-place but this is actually not supported by op %s"
                       % op_type):
        ws.RunOperatorOnce(core.CreateOperator(op_type, ["y", "dy"], ["y"]))
    op = core.CreateOperator(op_type, ["y", "dy"], ["dy"])
    if op_type == "SoftmaxGradient":
        with pytest.raises(SchemaError, match="Input index 1 and output idx 0"):
            ws.RunOperatorOnce(op)
        return
    ws.RunOperatorOnce(op)
    want = ELEMENTWISE_GRAD[op_type](y, dy)
    np.testing.assert_allclose(ws.FetchBlob("dy"), want, rtol=1e-6)


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE_GRAD) + ["SoftmaxGradient"])
def test_gradient_op_checks_inputs(op_type):
    y = np_sigmoid(randn(2, 3, 4))
    with pytest.raises(OperatorError, match="Y and dY must have the same shape: expected "
                       "dY of shape \\(2, 3, 4\\) \\(Y's\\), found \\(1, 3, 4\\)"):
        run_op(op_type, [y, randn(1, 3, 4)])
    # golden from real Caffe2 1.10.2: a dY of another dtype is a type mismatch
    with pytest.raises(OperatorError, match="Tensor type mismatch, caller expects elements "
                       "to be float, while tensor contains double"):
        run_op(op_type, [y, randn(2, 3, 4).astype(np.float64)])
    first = "Unsupported type of tensor: double" if op_type != "SoftmaxGradient" else \
        "caller expects elements to be float, while tensor contains double"
    with pytest.raises(OperatorError, match=first):
        run_op(op_type, [y.astype(np.float64), randn(2, 3, 4).astype(np.float64)])


@pytest.mark.parametrize("op_type", sorted(ELEMENTWISE) + ["Softmax", "Dropout"])
def test_input_and_output_counts(op_type):
    x = randn(2, 2)
    args = {"is_test": 1} if op_type == "Dropout" else {}
    with pytest.raises(SchemaError, match="Input size 2 not in range \\[min=1, max=1\\] "
                       "for op %s" % op_type):
        run_op(op_type, [x, x], **args)
    n_out = 3 if op_type == "Dropout" else 2
    with pytest.raises(SchemaError, match="Output size %d not in range" % n_out):
        run_op(op_type, [x], outputs=n_out, **args)


# --- Softmax -------------------------------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((3, 5), None), ((2, 3, 4), None), ((2, 3, 4), 2),
                                         ((2, 3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), -3),
                                         ((5,), 0), ((5,), -1), ((1, 1), None),
                                         ((0, 3), None), ((3, 0), None), ((0,), 0)])
def test_softmax_reference(shape, axis):
    x = randn(*shape) * 3
    args = {} if axis is None else {"axis": axis}
    check_op("Softmax", [x], lambda x: [np_softmax(x, 1 if axis is None else axis)],
             **args)


def test_softmax_golden_and_stability():
    # golden from real Caffe2 1.10.2 (the second row would overflow a naive exp)
    x = np.array([[1, 2, 3], [1000, 0, -1000]], np.float32)
    with np.errstate(over="raise"):
        got = run_op("Softmax", [x])[0]
    np.testing.assert_allclose(got, [[0.09003057330846786, 0.2447284758090973,
                                      0.6652409434318542], [1.0, 0.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("shape, axis, caffe2_text", [
    ((5,), None, "< ndims"), ((2, 3, 4), 3, "< ndims"), ((2, 3, 4), -4, ">= -ndims"),
    ((), 0, "< ndims"), ((), -1, ">= -ndims")])
def test_softmax_axis_out_of_range(shape, axis, caffe2_text):
    # golden from real Caffe2 1.10.2: 'Expected axis_index < ndims to be true' (or >= -ndims)
    args = {} if axis is None else {"axis": axis}
    x = np.ones(shape, np.float32)
    with pytest.raises(OperatorError, match="axis out of range \\(Caffe2: 'Expected "
                       "axis_index %s to be true'\\): expected -%d <= axis < %d for an input "
                       "of shape %s, found axis=%d" % (caffe2_text, len(shape), len(shape),
                                                      re_escape(shape),
                                                      1 if axis is None else axis)):
        run_op("Softmax", [x], **args)
    with pytest.raises(OperatorError, match="SoftmaxGradient: axis out of range"):
        run_op("SoftmaxGradient", [x, x], **args)


def re_escape(shape):
    return re.escape(str(tuple(shape)))


@pytest.mark.parametrize("dtype, cpp", [(np.float64, "double"), (np.float16, "c10::Half"),
                                        (np.int32, "int"), (np.int64, "long int")])
def test_softmax_rejects_dtype(dtype, cpp):
    # golden from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="Tensor type mismatch, caller expects elements "
                       "to be float, while tensor contains %s\\." % cpp):
        run_op("Softmax", [np.ones((2, 3), dtype)])


def test_softmax_axis_must_be_int_and_no_in_place():
    with pytest.raises(ArgumentError, match="Argument axis does not have the right field: "
                       "expected field i"):
        run_op("Softmax", [randn(2, 3)], axis=1.0)
    ws = workspace.Workspace()
    ws.FeedBlob("x", randn(2, 3))
    with pytest.raises(SchemaError, match="not supported by op Softmax"):
        ws.RunOperatorOnce(core.CreateOperator("Softmax", ["x"], ["x"]))


@pytest.mark.parametrize("shape, axis", [((3, 4), 1), ((2, 3, 2), 2), ((2, 3, 2), 1),
                                         ((0, 3), 1)])
def test_softmax_gradient_op_reference(shape, axis):
    y = np_softmax(randn(*shape), axis)
    dy = randn(*shape)

    def reference(y, dy):
        n, d = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
        y2, dy2 = y.astype(np.float64).reshape(n, d), dy.astype(np.float64).reshape(n, d)
        dx = y2 * dy2 - y2 * (y2 * dy2).sum(axis=1, keepdims=True)
        return [dx.reshape(shape).astype(np.float32)]
    check_op("SoftmaxGradient", [y, dy], reference, axis=axis)


def test_softmax_gradient_golden():
    # golden from real Caffe2 1.10.2
    y = np.array([[0.2, 0.3, 0.5]], np.float32)
    dy = np.array([[1., -2., 0.5]], np.float32)
    np.testing.assert_allclose(run_op("SoftmaxGradient", [y, dy])[0],
                               [[0.23000001907348633, -0.5550000071525574,
                                 0.32500001788139343]], rtol=1e-6)


@pytest.mark.parametrize("shape, axis", [((3, 4), 1), ((2, 3, 2), 2), ((2, 3, 2), 0)])
def test_softmax_finite_difference_gradient(shape, axis):
    check_gradient("Softmax", [randn(*shape)], wrt=[0], axis=axis)


# --- gradient wiring --------------------------------------------------------------------

# golden from real Caffe2 1.10.2: core.GradientRegistry.GetGradientForOp(op, [o + "_grad"])
WIRING = [
    (("Relu", ["X"], ["Y"], {}), "ReluGradient", ["Y", "Y_grad"], {}),
    (("Sigmoid", ["X"], ["Y"], {}), "SigmoidGradient", ["Y", "Y_grad"], {}),
    (("Tanh", ["X"], ["Y"], {}), "TanhGradient", ["Y", "Y_grad"], {}),
    (("Softmax", ["X"], ["Y"], {}), "SoftmaxGradient", ["Y", "Y_grad"], {}),
    (("Softmax", ["X"], ["Y"], {"axis": 2}), "SoftmaxGradient", ["Y", "Y_grad"],
     {"axis": 2}),
    (("Dropout", ["X"], ["Y", "mask"], {"is_test": 0, "ratio": 0.3}), "DropoutGrad",
     ["Y_grad", "mask"], {"is_test": 0, "ratio": np.float32(0.3)}),
    (("Dropout", ["X"], ["Y", "mask"], {"is_test": 1}), "DropoutGrad", ["Y_grad"],
     {"is_test": 1}),
    (("Dropout", ["X"], ["Y"], {"is_test": 1}), "DropoutGrad", ["Y_grad"], {"is_test": 1}),
]


@pytest.mark.parametrize("forward, grad_type, grad_inputs, grad_args", WIRING)
def test_gradient_maker_matches_caffe2(forward, grad_type, grad_inputs, grad_args):
    op_type, ins, outs, args = forward
    op = core.CreateOperator(op_type, ins, outs, **args)
    g_output = [o + "_grad" if k == 0 else None for k, o in enumerate(outs)]
    ops, g_input = make_gradient(op, g_output)
    assert g_input == ["X_grad"]
    assert len(ops) == 1
    grad = ops[0]
    assert grad.type == grad_type
    assert list(grad.input) == grad_inputs
    assert list(grad.output) == ["X_grad"]
    assert grad.is_gradient_op and grad.name == ""
    got_args = {}
    for a in grad.arg:
        got_args[a.name] = a.i if a.HasField("i") else np.float32(a.f)
    assert got_args == grad_args


def test_gradient_maker_keeps_in_place_names_and_device():
    op = core.CreateOperator("Relu", ["X"], ["X"], engine="CUDNN", device_option=gpu(3))
    ops, g_input = make_gradient(op, ["X_grad"])
    assert list(ops[0].input) == ["X", "X_grad"] and list(ops[0].output) == ["X_grad"]
    assert ops[0].engine == "CUDNN" and ops[0].device_option.device_id == 3
    op = core.CreateOperator("Dropout", ["X"], ["X", "mask"], is_test=0)
    ops, _ = make_gradient(op, ["X_grad", None])
    assert list(ops[0].input) == ["X_grad", "mask"] and list(ops[0].output) == ["X_grad"]


def test_dropout_gradient_maker_errors():
    # golden from real Caffe2 1.10.2: both fail in the maker
    with pytest.raises(ArgumentError, match="Argument 'is_test' is required for Operator "
                       "'Dropout'"):
        make_gradient(core.CreateOperator("Dropout", ["X"], ["Y", "m"]), ["Y_grad", None])
    with pytest.raises(EnforceError, match="reads the mask \\(output 1\\), but the op has 1 "
                       "output"):
        make_gradient(core.CreateOperator("Dropout", ["X"], ["Y"], is_test=0), ["Y_grad"])


# --- Dropout ------------------------------------------------------------------------------

def run_dropout(x, outputs=("Y", "mask"), ws=None, **args):
    ws = ws or workspace.Workspace()
    ws.FeedBlob("X", x)
    ws.RunOperatorOnce(core.CreateOperator("Dropout", ["X"], list(outputs), **args))
    return [ws.FetchBlob(o) for o in outputs]


@pytest.mark.parametrize("shape", [(4, 5), (0, 3), (1,)])
def test_dropout_test_mode_is_exact_copy(shape):
    x = randn(*shape)
    check_op("Dropout", [x], lambda x: [x.copy()], is_test=1, ratio=0.7)
    y, mask = run_dropout(x, is_test=2, ratio=0.3)  # any nonzero is_test is test mode
    np.testing.assert_array_equal(y, x)
    # golden from real Caffe2 1.10.2: the mask output is not written in test mode
    assert mask == b"mask, a C++ native class of type nullptr (uninitialized)."


def test_dropout_test_mode_in_place():
    ws = workspace.Workspace()
    x = randn(3, 4)
    y, = run_dropout(x, outputs=["X"], ws=ws, is_test=1)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.9])
def test_dropout_training_output_matches_mask(ratio):
    x = randn(50, 40)
    y, mask = run_dropout(x, is_test=0, ratio=ratio, random_seed=7)
    assert mask.dtype == np.bool_ and mask.shape == x.shape
    assert y.dtype == np.float32 and y.shape == x.shape
    assert 0 < mask.sum() < mask.size
    # Caffe2 multiplies by float(1 / (1 - ratio)), ratio being the proto's float32;
    # golden from real Caffe2 1.10.2: for ratio=0.3 this, not X / (1 - ratio), is exact.
    scale = np.float32(1.0 / (1.0 - np.float64(np.float32(ratio))))
    np.testing.assert_array_equal(y, x * scale * mask)
    if ratio == 0.5:
        np.testing.assert_array_equal(y, x * mask / np.float32(1 - ratio))


def test_dropout_keeps_about_one_minus_ratio():
    x = np.ones((400, 500), np.float32)
    for ratio in (0.2, 0.5, 0.75):
        _, mask = run_dropout(x, is_test=0, ratio=ratio)
        # 200k Bernoulli draws: std of the kept fraction < 0.0012
        assert abs(mask.mean() - (1 - ratio)) < 0.01, (ratio, mask.mean())


def test_dropout_seed_reproducible():
    x = randn(64, 64)
    a = run_dropout(x, is_test=0, random_seed=5)
    b = run_dropout(x, is_test=0, random_seed=5)
    c = run_dropout(x, is_test=0, random_seed=6)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_dropout_ratio_zero_keeps_everything():
    x = randn(20, 30)
    y, mask = run_dropout(x, is_test=0, ratio=0.0)
    assert mask.all()
    np.testing.assert_array_equal(y, x)


def test_dropout_training_in_place_and_empty():
    ws = workspace.Workspace()
    x = randn(6, 7)
    y, mask = run_dropout(x, outputs=["X", "mask"], ws=ws, is_test=0, random_seed=3)
    np.testing.assert_array_equal(y, x * np.float32(2) * mask)
    y, mask = run_dropout(np.ones((0, 3), np.float32), is_test=0)
    assert y.shape == (0, 3) and mask.shape == (0, 3) and mask.dtype == np.bool_


def test_dropout_shape_inference_and_devices():
    x = randn(5, 3)
    check_shape_inference("Dropout", [x], outputs=2, is_test=0, ratio=0.4)
    check_shape_inference("Dropout", [x], outputs=1, is_test=1)
    check_devices("Dropout", [x], outputs=2, is_test=0, random_seed=11)
    check_devices("Dropout", [x], outputs=1, is_test=1)


@pytest.mark.parametrize("ratio, text", [(1.0, "< 1"), (1.5, "< 1"), (-0.1, ">= 0")])
@pytest.mark.parametrize("is_test", [0, 1])
def test_dropout_ratio_out_of_range_fails_at_creation(ratio, text, is_test):
    # golden from real Caffe2 1.10.2: "ratio_ < 1. 1 vs 1" from the op constructor,
    # in test mode too
    with pytest.raises(ArgumentError, match="Dropout: ratio must be in \\[0, 1\\) \\(Caffe2:"
                       " 'ratio_ %s'\\): found ratio=%s" % (text, ratio)):
        run_dropout(randn(2, 2), is_test=is_test, ratio=ratio)
    ws = workspace.Workspace()
    net = core.Net("dropnet")
    net.Dropout(["X"], ["Y", "mask"], is_test=is_test, ratio=ratio)
    ws.FeedBlob("X", randn(2, 2))
    with pytest.raises(ArgumentError, match="ratio must be in"):
        ws.CreateNet(net)


def test_dropout_argument_errors():
    x = randn(2, 2)
    # golden from real Caffe2 1.10.2
    with pytest.raises(ArgumentError, match="Argument 'is_test' is required for Operator "
                       "'Dropout'"):
        run_dropout(x)
    with pytest.raises(ArgumentError, match="Argument ratio does not have the right field: "
                       "expected field f"):
        run_dropout(x, is_test=0, ratio=1)
    with pytest.raises(ArgumentError, match="Argument is_test does not have the right "
                       "field: expected field i"):
        run_dropout(x, is_test=1.0)


def test_dropout_training_needs_mask_output():
    with pytest.raises(OperatorError, match="expected 2 outputs \\(Y, mask\\), found 1"):
        run_dropout(randn(2, 2), outputs=["Y"], is_test=0)


@pytest.mark.parametrize("dtype, cpp", [(np.float64, "double"), (np.float16, "c10::Half"),
                                        (np.int32, "int"), (np.bool_, "bool")])
@pytest.mark.parametrize("is_test", [0, 1])
def test_dropout_rejects_dtype(dtype, cpp, is_test):
    # golden from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="Tensor type mismatch, caller expects elements "
                       "to be float, while tensor contains %s\\." % cpp):
        run_dropout(np.ones((2, 3), dtype), is_test=is_test)


def test_dropout_in_place_mask_rejected():
    ws = workspace.Workspace()
    ws.FeedBlob("X", randn(2, 2))
    with pytest.raises(SchemaError, match="Input index 0 and output idx 1 \\(X\\)"):
        ws.RunOperatorOnce(core.CreateOperator("Dropout", ["X"], ["Y", "X"], is_test=0))


def test_dropout_finite_difference_gradient():
    x = randn(4, 5)
    grads = check_gradient("Dropout", [x], wrt=[0], outputs=2, is_test=0, ratio=0.4,
                           random_seed=9)
    assert (grads[0] == 0).any() and (grads[0] != 0).any()
    check_gradient("Dropout", [x], wrt=[0], outputs=1, is_test=1)


# --- DropoutGrad -----------------------------------------------------------------------

def test_dropout_grad_reference():
    dy = randn(4, 6)
    mask = RNG.random((4, 6)) < 0.6
    scale = np.float32(1.0 / (1.0 - np.float64(np.float32(0.4))))
    check_op("DropoutGrad", [dy, mask], lambda dy, m: [dy * m * scale], is_test=0,
             ratio=0.4)
    check_op("DropoutGrad", [dy], lambda dy: [dy.copy()], is_test=1)
    # golden from real Caffe2 1.10.2: the mask is ignored in test mode, is_test defaults
    # to 0 (not required on the gradient op), and ratio 0.3 scales by 1/0.7
    check_reference("DropoutGrad", [dy, mask], lambda dy, m: [dy.copy()], is_test=1)
    check_reference("DropoutGrad", [dy, mask], lambda dy, m: [dy * m * np.float32(2)])
    got = run_op("DropoutGrad", [np.array([[1., -2., 0.5]], np.float32),
                                 np.array([[True, False, True]])], is_test=0, ratio=0.3)[0]
    np.testing.assert_allclose(got, [[1.4285714626312256, -0.0, 0.7142857313156128]],
                               rtol=1e-7)


def test_dropout_grad_mask_of_other_shape_same_size():
    # golden from real Caffe2 1.10.2: only the element counts must agree
    dy = randn(2, 3, 4)
    mask = RNG.random((6, 4)) < 0.5
    got = run_op("DropoutGrad", [dy, mask], is_test=0)[0]
    np.testing.assert_array_equal(got, dy * mask.reshape(dy.shape) * np.float32(2))


def test_dropout_grad_in_place_and_empty():
    ws = workspace.Workspace()
    dy = randn(3, 3)
    mask = RNG.random((3, 3)) < 0.5
    ws.FeedBlob("dy", dy)
    ws.FeedBlob("m", mask)
    ws.RunOperatorOnce(core.CreateOperator("DropoutGrad", ["dy", "m"], ["dy"], is_test=0))
    np.testing.assert_array_equal(ws.FetchBlob("dy"), dy * mask * np.float32(2))
    with pytest.raises(SchemaError, match="Input index 1 and output idx 0"):
        ws.RunOperatorOnce(core.CreateOperator("DropoutGrad", ["dy", "m"], ["m"],
                                               is_test=0))
    got = run_op("DropoutGrad", [np.ones((0, 2), np.float32), np.ones((0, 2), bool)],
                 is_test=0)[0]
    assert got.shape == (0, 2) and got.dtype == np.float32


def test_dropout_grad_shape_inference_and_devices():
    dy = randn(3, 4)
    mask = RNG.random((3, 4)) < 0.5
    check_shape_inference("DropoutGrad", [dy, mask], is_test=0)
    check_shape_inference("DropoutGrad", [dy], is_test=1)
    check_devices("DropoutGrad", [dy, mask], is_test=0)


def test_dropout_grad_errors():
    dy = randn(2, 3, 4)
    # golden from real Caffe2 1.10.2: "dY.numel() == mask.numel(). 24 vs 6"
    with pytest.raises(OperatorError, match="dY.numel\\(\\) == mask.numel\\(\\). 24 vs 6"):
        run_op("DropoutGrad", [dy, np.ones((2, 3), bool)], is_test=0)
    with pytest.raises(OperatorError, match="Tensor type mismatch, caller expects elements "
                       "to be bool, while tensor contains float\\."):
        run_op("DropoutGrad", [dy, np.ones((2, 3, 4), np.float32)], is_test=0)
    with pytest.raises(OperatorError, match="needs the forward mask: expected inputs "
                       "\\[dY, mask\\], found 1 input"):
        run_op("DropoutGrad", [dy], is_test=0)
    with pytest.raises(OperatorError, match="caller expects elements to be float, while "
                       "tensor contains double"):
        run_op("DropoutGrad", [dy.astype(np.float64)], is_test=1)
    with pytest.raises(ArgumentError, match="DropoutGrad: ratio must be in \\[0, 1\\)"):
        run_op("DropoutGrad", [dy, np.ones((2, 3, 4), bool)], is_test=0, ratio=1.0)
    with pytest.raises(SchemaError, match="Input size 3 not in range \\[min=1, max=2\\]"):
        run_op("DropoutGrad", [dy, dy, dy], is_test=1)


def test_dropout_in_a_net_draws_fresh_masks_each_run():
    """A seeded op keeps one generator across runs of its net (as Caffe2's context
    did): each run draws a new mask, and re-creating the net replays the sequence."""
    def masks():
        ws = workspace.Workspace()
        ws.FeedBlob("X", np.ones((32, 32), np.float32))
        net = core.Net("train")
        net.Dropout(["X"], ["Y", "mask"], is_test=0, random_seed=21)
        ws.CreateNet(net)
        out = []
        for _ in range(2):
            ws.RunNet(net)
            out.append(ws.FetchBlob("mask"))
        return out
    first, second = masks(), masks()
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
