"""Loss family: reference values from formulas written here, golden values from
real Caffe2 1.10.2, finite-difference gradients, gradient wiring, devices, errors."""

import re

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from graphnet.gradient_maker import GradientNotImplementedError, make_gradient
from graphnet.gradients import GradientRegistry
from tests.opcheck import (check_devices, check_gradient, check_op, check_reference,
                           check_shape_inference, gradient_of, run_op)

RNG = np.random.default_rng(7)
F32 = np.float32


def probs(*shape, low=0.1, high=0.9):
    return RNG.uniform(low, high, shape).astype(F32)


def logits(*shape, scale=2.0):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def labels(n, d, dtype=np.int32):
    return RNG.integers(0, d, n).astype(dtype)


def rows(x):
    """(N, D) view the way the cross-entropy ops flatten X."""
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    return x.reshape(1, x.size)


def raises(match, fn, *args, error=OperatorError, **kwargs):
    """fn(*args) raises `error` whose text holds `match` (a string or a tuple of them)."""
    parts = (match,) if isinstance(match, str) else match
    with pytest.raises(error, match=re.escape(parts[0])) as info:
        fn(*args, **kwargs)
    for part in parts[1:]:
        assert part in str(info.value), (part, str(info.value))


def softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# --- SquaredL2Distance ------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (5,), (2, 3, 2), (0, 3), (3, 0)])
def test_squared_l2_distance_reference(shape):
    x, y = logits(*shape), logits(*shape)
    n = shape[0]

    def ref(x, y):
        diff = (x.astype(np.float64) - y).reshape(n, -1) if n else np.zeros((0, 1))
        return [(0.5 * (diff ** 2).sum(axis=1)).astype(F32)]
    check_op("SquaredL2Distance", [x, y], ref)


def test_squared_l2_distance_scalar_inputs_give_one_row():
    got = check_reference("SquaredL2Distance", [np.array(2.0, F32), np.array(-1.0, F32)],
                          lambda x, y: [np.array([4.5], F32)])
    assert got[0].shape == (1,)


@pytest.mark.parametrize("shape", [(3, 4), (4,), (2, 2, 3), ()])
def test_squared_l2_distance_gradient(shape):
    x, y = logits(*shape), logits(*shape)
    check_gradient("SquaredL2Distance", [x, y], wrt=[0, 1])
    _, _, dys, grads, _ = gradient_of("SquaredL2Distance", [x, y])
    n = shape[0] if shape else 1
    want = ((x - y).reshape(n, -1) * dys[0].reshape(n, 1)).reshape(shape)
    np.testing.assert_allclose(grads[0], want, rtol=1e-6)
    np.testing.assert_allclose(grads[1], -want, rtol=1e-6)  # the target gets a gradient
    assert grads[1].dtype == F32 and grads[1].shape == shape


def test_squared_l2_distance_errors():
    x = logits(3, 4)
    raises("X.dim32(i) == Y.dim32(i). SquaredL2Distance: X and Y must have identical "
           "shapes: expected [3, 4], found [3, 5]", run_op, "SquaredL2Distance",
           [x, logits(3, 5)])
    raises("X.dim() == Y.dim(). 2 vs 1", run_op, "SquaredL2Distance", [x, logits(12)])
    raises("Tensor type mismatch, caller expects elements to be float, while tensor "
           "contains double. SquaredL2Distance expects Y (input 1) as float32",
           run_op, "SquaredL2Distance", [x, x.astype(np.float64)])
    raises(("dDistance must be 1-D of length N=3", "found shape [4]"), run_op,
           "SquaredL2DistanceGradient", [x, x, logits(4)], outputs=2)
    raises("found shape [3, 1]", run_op, "SquaredL2DistanceGradient",
           [x, x, logits(3, 1)], outputs=2)


# --- AveragedLoss -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (7,), (), (0, 4), (1000,)])
def test_averaged_loss_reference(shape):
    x = logits(*shape)
    want = np.array(x.astype(np.float64).mean() if x.size else 0.0, F32)
    got = check_op("AveragedLoss", [x], lambda x: [want])
    assert got[0].shape == ()  # a 0-d loss, as FetchBlob returned it


@pytest.mark.parametrize("shape", [(3, 4), (5,), ()])
def test_averaged_loss_gradient(shape):
    x = logits(*shape)
    check_gradient("AveragedLoss", [x], wrt=[0])
    _, _, dys, grads, _ = gradient_of("AveragedLoss", [x])
    np.testing.assert_allclose(grads[0], np.full(shape, dys[0] / max(x.size, 1)),
                               rtol=1e-6)


def test_averaged_loss_gradient_op_and_errors():
    x = logits(2, 3)
    check_op("AveragedLossGradient", [x, np.array([1.2], F32)],
             lambda x, d: [np.full((2, 3), 0.2, F32)])
    got = run_op("AveragedLossGradient", [np.zeros((0, 4), F32), np.array(2.0, F32)])
    assert got[0].shape == (0, 4)
    raises("dLoss must hold exactly one value", run_op, "AveragedLossGradient",
           [x, np.ones(2, F32)])
    raises("Tensor type mismatch, caller expects elements to be float, while tensor "
           "contains int.", run_op, "AveragedLoss", [np.ones(3, np.int32)])


# --- MakeTwoClass ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 1), (5,), (), (0,), (2, 2, 3)])
def test_make_two_class_reference(shape):
    x = probs(*shape)
    check_op("MakeTwoClass", [x],
             lambda x: [np.concatenate([1 - x[..., None], x[..., None]], axis=-1)])


def test_make_two_class_does_not_check_range():
    # golden from real Caffe2 1.10.2: the [0, 1] check only existed in debug builds
    got = run_op("MakeTwoClass", [np.array([1.5, -2.0], F32)])
    np.testing.assert_array_equal(got[0], np.array([[-0.5, 1.5], [3.0, -2.0]], F32))


@pytest.mark.parametrize("shape", [(4, 1), (3,), ()])
def test_make_two_class_gradient(shape):
    x = probs(*shape, low=0.05, high=0.95)
    check_gradient("MakeTwoClass", [x], wrt=[0])
    _, _, dys, grads, _ = gradient_of("MakeTwoClass", [x])
    np.testing.assert_allclose(grads[0], dys[0][..., 1] - dys[0][..., 0])


def test_make_two_class_gradient_errors():
    raises("shape.back() == 2. MakeTwoClassGradient: dY must end in a dimension of 2",
           run_op, "MakeTwoClassGradient", [logits(3, 3)])
    raises("found shape []", run_op, "MakeTwoClassGradient", [np.array(1.0, F32)])
    check_op("MakeTwoClassGradient", [np.array([1.0, 3.5], F32)],
             lambda d: [np.array(2.5, F32)])


# --- LabelCrossEntropy ----------------------------------------------------------------

def _label_xent(x, label):
    x2 = rows(x)
    picked = x2[np.arange(x2.shape[0]), np.asarray(label).reshape(-1)]
    return [(-np.log(np.maximum(picked, 1e-20))).astype(F32)]


@pytest.mark.parametrize("x_shape,label_shape", [
    ((4, 3), (4,)), ((4, 3), (4, 1)), ((5,), (1,)), ((3, 2, 2), (3,)), ((3, 1, 2), (3, 1)),
    ((0, 4), (0,))])
def test_label_cross_entropy_reference(x_shape, label_shape):
    x = probs(*x_shape)
    d = rows(x).shape[1] if x.size else 4
    label = labels(int(np.prod(label_shape)), d).reshape(label_shape)
    check_op("LabelCrossEntropy", [x, label], _label_xent)


def test_label_cross_entropy_golden_and_clamp():
    # the example of the Caffe2 docs; golden from real Caffe2 1.10.2
    x = np.array([[.01, .05, .02, .02, .9], [.03, .1, .42, .05, .4]], F32)
    got = run_op("LabelCrossEntropy", [x, np.array([4, 2], np.int32)])
    np.testing.assert_allclose(got[0], [0.10536055, 0.8675006], rtol=1e-6)
    got = run_op("LabelCrossEntropy", [np.zeros((2, 2), F32), np.array([0, 1], np.int32)])
    np.testing.assert_allclose(got[0], [46.0517, 46.0517], rtol=1e-5)  # -log(1e-20)


@pytest.mark.parametrize("x_shape,label_shape", [((4, 3), (4,)), ((3, 1, 2), (3, 1)),
                                                 ((5,), (1,))])
def test_label_cross_entropy_gradient(x_shape, label_shape):
    x = probs(*x_shape)
    label = labels(label_shape[0], rows(x).shape[1]).reshape(label_shape)
    check_gradient("LabelCrossEntropy", [x, label], wrt=[0], stepsize=1e-3)
    _, _, dys, grads, _ = gradient_of("LabelCrossEntropy", [x, label])
    assert set(grads) == {0}  # no gradient for the labels
    want = np.zeros_like(rows(x))
    idx = (np.arange(want.shape[0]), label.reshape(-1))
    want[idx] = -dys[0] / rows(x)[idx]
    np.testing.assert_allclose(grads[0], want.reshape(x_shape), rtol=1e-5)


def test_label_cross_entropy_gradient_clamps_zero_probability():
    got = run_op("LabelCrossEntropyGradient", [np.zeros((1, 2), F32),
                                               np.array([1], np.int32),
                                               np.array([1e-10], F32)])
    np.testing.assert_allclose(got[0], [[0.0, -1e10]], rtol=1e-5)


def test_label_cross_entropy_errors():
    x = probs(3, 4)
    msg = "Label seems to be outside of supported range. Supported labels are in range [0,4)"
    raises(msg, run_op, "LabelCrossEntropy", [x, np.array([0, 4, 1], np.int32)])
    raises(msg, run_op, "LabelCrossEntropy", [x, np.array([0, -1, 1], np.int32)])
    raises(msg, run_op, "LabelCrossEntropyGradient",
           [x, np.array([0, 4, 1], np.int32), probs(3)])
    raises("Tensor type mismatch, caller expects elements to be int, while tensor contains "
           "long int. LabelCrossEntropy expects label (input 1) as int32, found int64",
           run_op, "LabelCrossEntropy", [x, np.array([0, 1, 2], np.int64)])
    raises("label.dim32(0) == N. 2 vs 3", run_op, "LabelCrossEntropy",
           [x, np.array([0, 1], np.int32)])
    raises("(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == 1)", run_op,
           "LabelCrossEntropy", [x, np.zeros((3, 2), np.int32)])
    raises("dY must be 1-D of length N=3, found shape [3, 1]", run_op,
           "LabelCrossEntropyGradient", [x, np.zeros(3, np.int32), probs(3, 1)])
    raises("dY must be 1-D of length N=3, found shape [2]", run_op,
           "LabelCrossEntropyGradient", [x, np.zeros(3, np.int32), probs(2)])


def test_dlrm_bce_path_backward():
    """MakeTwoClass -> LabelCrossEntropy -> AveragedLoss, as DLRM's BCE loss."""
    net = core.Net("bce")
    two = net.MakeTwoClass(["prob"], ["prob_2c"])
    xent = net.LabelCrossEntropy([two, "target"], ["sd"])
    net.AveragedLoss([xent], ["loss"])
    net.AddExternalInput("loss_grad")
    grad_map = net.AddGradientOperators({"loss": "loss_grad"})
    types = [op.type for op in net.Proto().op]
    assert types[3:] == ["AveragedLossGradient", "LabelCrossEntropyGradient",
                         "MakeTwoClassGradient"]
    assert str(grad_map["prob"]) == "prob_grad" and "target" not in grad_map
    p = probs(4, 1)
    t = np.array([[1], [0], [1], [1]], np.int32)
    workspace.FeedBlob("prob", p)
    workspace.FeedBlob("target", t)
    workspace.FeedBlob("loss_grad", np.array(1.0, F32))
    workspace.RunNetOnce(net)
    chosen = np.where(t == 1, p, 1 - p).astype(np.float64)
    np.testing.assert_allclose(workspace.FetchBlob("loss"), -np.log(chosen).mean(), rtol=1e-6)
    # d/dp of -mean(log(chosen)): -1/(N p) for t=1, +1/(N (1-p)) for t=0
    want = np.where(t == 1, -1 / (4 * p), 1 / (4 * (1 - p)))
    np.testing.assert_allclose(workspace.FetchBlob("prob_grad"), want, rtol=1e-5)


def test_mse_path_gives_the_target_a_gradient():
    net = core.Net("mse")
    net.SquaredL2Distance(["pred", "target"], ["sd"])
    net.AveragedLoss(["sd"], ["loss"])
    net.AddExternalInput("loss_grad")
    grad_map = net.AddGradientOperators({"loss": "loss_grad"})
    assert str(grad_map["target"]) == "target_grad"
    x, y = logits(5, 1), logits(5, 1)
    workspace.FeedBlob("pred", x)
    workspace.FeedBlob("target", y)
    workspace.FeedBlob("loss_grad", np.array(1.0, F32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("pred_grad"), (x - y) / 5, rtol=1e-6)
    np.testing.assert_allclose(workspace.FetchBlob("target_grad"), (y - x) / 5, rtol=1e-6)


# --- CrossEntropy (soft labels) ---------------------------------------------------------

def _soft(n, d):
    t = RNG.uniform(0.0, 1.0, (n, d))
    return (t / t.sum(axis=1, keepdims=True)).astype(F32)


def _xent(x, label):
    x2 = rows(x)
    t = np.asarray(label, np.float64).reshape(x2.shape)
    return [(-(t * np.log(np.maximum(x2, 1e-20))).sum(axis=1)).astype(F32)]


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 1, 3), (0, 3)])
def test_cross_entropy_reference(x_shape):
    x = probs(*x_shape)
    check_op("CrossEntropy", [x, _soft(x_shape[0], int(np.prod(x_shape[1:])))], _xent)


def test_cross_entropy_golden_and_1d_label_with_one_class():
    x = np.array([[.01, .05, .02, .02, .9], [.03, .1, .42, .05, .4]], F32)
    onehot = np.eye(5, dtype=F32)[[4, 2]]
    got = run_op("CrossEntropy", [x, onehot])  # golden from real Caffe2 1.10.2
    np.testing.assert_allclose(got[0], [0.10536055, 0.8675006], rtol=1e-6)
    check_reference("CrossEntropy", [probs(3, 1), np.ones(3, F32)], _xent)


def test_cross_entropy_gradient():
    x, t = probs(3, 4), _soft(3, 4)
    check_gradient("CrossEntropy", [x, t], wrt=[0], stepsize=1e-3)
    _, _, dys, grads, _ = gradient_of("CrossEntropy", [x, t])
    assert set(grads) == {0}
    np.testing.assert_allclose(grads[0], -t / x * dys[0][:, None], rtol=1e-5)


def test_cross_entropy_errors():
    x = probs(2, 3)
    raises("Soft label seems incorrect: label value should be a probability between 0 and "
           "1.0. You may be using the wrong cross entropy operator; use LabelCrossEntropy "
           "if the labels are integers whose values are at most the number of classes, 3.",
           run_op, "CrossEntropy", [x, np.full((2, 3), 2.0, F32)])
    raises("Soft label seems incorrect", run_op, "CrossEntropy", [x, -np.ones((2, 3), F32)])
    raises("(label.dim() == 1) || (label.dim() == 2 && label.dim32(1) == D)", run_op,
           "CrossEntropy", [x, np.ones((2, 2), F32) / 2])
    raises("label.dim32(0) == N. 3 vs 2", run_op, "CrossEntropy",
           [x, np.ones((3, 3), F32) / 3])
    raises("a 1-D label holds 2 values but X needs N*D = 6", run_op, "CrossEntropy",
           [x, np.array([0, 1], F32)])
    raises("caller expects elements to be float, while tensor contains int.", run_op,
           "CrossEntropy", [x, np.ones((2, 3), np.int32)])
    raises("dY must be 1-D of length N=2, found shape [3]", run_op, "CrossEntropyGradient",
           [x, _soft(2, 3), probs(3)])


# --- SigmoidCrossEntropyWithLogits ------------------------------------------------------

def _bce_terms(x, t, mode):
    """Per-element loss, written from the textbook definitions."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    if mode == "log_D_trick":  # -(2t - 1) log(sigmoid(x))
        return (2 * t - 1) * softplus(-x)
    if mode == "unjoined_lr_loss":  # -(t x - (1 - t) log(1 + e^x))
        return -(t * x - (1 - t) * softplus(x))
    return softplus(x) - t * x  # binary cross-entropy of sigmoid(x) against t


def _bce_ref(mode):
    def ref(x, t, w=None):
        terms = _bce_terms(x, t, mode) * (1.0 if w is None else w)
        return [np.asarray(terms.mean(axis=-1) if terms.ndim else terms, F32)]
    return ref


MODES = [("default", {}), ("log_D_trick", {"log_D_trick": True}),
         ("unjoined_lr_loss", {"unjoined_lr_loss": True})]


@pytest.mark.parametrize("mode,args", MODES)
@pytest.mark.parametrize("shape", [(3, 4), (5,), (), (2, 2, 3), (0, 3)])
def test_sigmoid_cross_entropy_reference(mode, args, shape):
    check_op("SigmoidCrossEntropyWithLogits", [logits(*shape), probs(*shape, low=0.0)],
             _bce_ref(mode), **args)


def test_sigmoid_cross_entropy_is_stable_for_large_logits():
    x = np.array([[60.0, -60.0, 0.0]], F32)
    t = np.array([[0.0, 1.0, 1.0]], F32)
    check_reference("SigmoidCrossEntropyWithLogits", [x, t],
                    lambda x, t: [np.array([(60 + 60 + np.log(2)) / 3], F32)])


def test_sigmoid_cross_entropy_golden():
    # golden from real Caffe2 1.10.2
    x = np.array([[-2.0, -0.5, 0.3], [1.2, 3.0, -1.0]], F32)
    t = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]], F32)
    golden = {"default": [0.601786732673645, 1.2917104959487915],
              "log_D_trick": [-0.3842836916446686, -0.14731192588806152],
              "unjoined_lr_loss": [0.3013685643672943, 0.7778444886207581]}
    for mode, args in MODES:
        got = run_op("SigmoidCrossEntropyWithLogits", [x, t], **args)
        np.testing.assert_allclose(got[0], golden[mode], rtol=1e-6, err_msg=mode)
    g = np.array([1.0, -2.0], F32)
    got = run_op("SigmoidCrossEntropyWithLogitsGradient", [g, x, t], log_D_trick=True)
    np.testing.assert_allclose(got[0], [[0.29359904, -0.20748645, 0.0],
                                        [0.15431681, -0.03161725, -0.2436862]], rtol=1e-6)
    got = run_op("SigmoidCrossEntropyWithLogitsGradient", [g, x, t], unjoined_lr_loss=True)
    np.testing.assert_allclose(got[0], [[0.03973431, -0.33333334, -0.07092625],
                                        [0.6666667, -0.63504946, 0.03219596]], rtol=1e-6)


@pytest.mark.parametrize("mode,args", MODES)
@pytest.mark.parametrize("shape", [(3, 4), (4,), ()])
def test_sigmoid_cross_entropy_gradient(mode, args, shape):
    x, t = logits(*shape, scale=1.5), probs(*shape, low=0.0, high=1.0)
    check_gradient("SigmoidCrossEntropyWithLogits", [x, t], wrt=[0], **args)
    _, _, _, grads, _ = gradient_of("SigmoidCrossEntropyWithLogits", [x, t], **args)
    assert set(grads) == {0}  # no gradient for the targets


def test_sigmoid_cross_entropy_gradient_accepts_any_shaped_dout():
    x, t = logits(3, 4), probs(3, 4)
    g = logits(3)
    a = run_op("SigmoidCrossEntropyWithLogitsGradient", [g, x, t])
    b = run_op("SigmoidCrossEntropyWithLogitsGradient", [g.reshape(1, 3), x, t])
    np.testing.assert_array_equal(a[0], b[0])
    want = -g[:, None] / 4 * (t - sigmoid(x))
    np.testing.assert_allclose(a[0], want, rtol=1e-5, atol=1e-7)


def test_sigmoid_cross_entropy_errors():
    x, t = logits(2, 3), probs(2, 3)
    raises("log_D_trick_ and unjoined_lr_loss_ cannot be set as True simultaneously",
           run_op, "SigmoidCrossEntropyWithLogits", [x, t], log_D_trick=True,
           unjoined_lr_loss=True)
    raises("logits.sizes() == targets.sizes(). SigmoidCrossEntropyWithLogits: logits and "
           "targets must have identical shapes: expected [2, 3], found [3, 2]", run_op,
           "SigmoidCrossEntropyWithLogits", [x, probs(3, 2)])
    raises("the last dimension of logits is 0", run_op, "SigmoidCrossEntropyWithLogits",
           [logits(2, 0), probs(2, 0)])
    raises("Argument log_D_trick does not have the right field: expected field i", run_op,
           "SigmoidCrossEntropyWithLogits", [x, t], log_D_trick=1.0, error=ArgumentError)
    raises("g.numel() == outer_size. SigmoidCrossEntropyWithLogitsGradient: the output "
           "gradient must hold one value per row of logits (2), found shape [3]", run_op,
           "SigmoidCrossEntropyWithLogitsGradient", [logits(3), x, t])
    raises("caller expects elements to be float, while tensor contains double", run_op,
           "SigmoidCrossEntropyWithLogits", [x.astype(np.float64), t])


def test_weighted_sigmoid_cross_entropy():
    x, t, w = logits(3, 4), probs(3, 4, low=0.0), probs(3, 4, low=0.0, high=2.0)
    check_op("WeightedSigmoidCrossEntropyWithLogits", [x, t, w], _bce_ref("default"))
    # it has no mode arguments: log_D_trick is ignored (as in real Caffe2 1.10.2)
    check_reference("WeightedSigmoidCrossEntropyWithLogits", [x, t, w],
                    _bce_ref("default"), log_D_trick=True, unjoined_lr_loss=True)
    check_op("WeightedSigmoidCrossEntropyWithLogits",
             [np.array(1.0, F32), np.array(0.3, F32), np.array(2.0, F32)],
             _bce_ref("default"))
    check_gradient("WeightedSigmoidCrossEntropyWithLogits", [x, t, w], wrt=[0])
    _, _, dys, grads, _ = gradient_of("WeightedSigmoidCrossEntropyWithLogits", [x, t, w])
    assert set(grads) == {0}
    np.testing.assert_allclose(grads[0], -dys[0][:, None] / 4 * (t - sigmoid(x)) * w,
                               rtol=1e-5, atol=1e-7)
    raises("weights.sizes() == targets.sizes()", run_op,
           "WeightedSigmoidCrossEntropyWithLogits", [x, t, probs(4, 3)])
    raises("g.numel() == outer_size", run_op,
           "WeightedSigmoidCrossEntropyWithLogitsGradient", [logits(4), x, t, w])


# --- SoftmaxWithLoss ------------------------------------------------------------------

def _swl_ref(axis=1, label_prob=0, scale=1.0, average_by_batch_size=0):
    """softmax and -sum_i w_i log p_i(label_i) * scale / sum_i w_i, from scratch."""
    def ref(x, label, w=None):
        ax = axis % max(x.ndim, 1)
        n = int(np.prod(x.shape[:ax]))
        x2 = x.astype(np.float64).reshape(n, int(np.prod(x.shape[ax:])))
        e = np.exp(x2 - x2.max(axis=1, keepdims=True)) if n else x2
        p = e / e.sum(axis=1, keepdims=True) if n else x2
        if label_prob:
            per_row = -(label.reshape(n, -1) * np.log(np.maximum(p, 1e-20))).sum(axis=1)
        else:
            per_row = -np.log(p[np.arange(n), label.reshape(-1)])
        w = np.ones(n) if w is None else w.astype(np.float64)
        total = w.sum()
        denominator = n if average_by_batch_size else total
        loss = (per_row * w).sum() * scale / denominator if total != 0 else 0.0
        return [p.reshape(x.shape).astype(F32), np.array(loss, F32)]
    return ref


@pytest.mark.parametrize("label_shape", [(4,), (4, 1)])
def test_softmax_with_loss_reference(label_shape):
    x = logits(4, 5)
    check_op("SoftmaxWithLoss", [x, labels(4, 5).reshape(label_shape)], _swl_ref(),
             outputs=2)


@pytest.mark.parametrize("args", [{"scale": 3.0}, {"average_by_batch_size": 1},
                                  {"scale": 0.5, "average_by_batch_size": 1}])
def test_softmax_with_loss_weights_and_scale(args):
    x, w = logits(4, 5), probs(4, low=0.1, high=3.0)
    check_op("SoftmaxWithLoss", [x, labels(4, 5), w], _swl_ref(**args), outputs=2, **args)
    check_op("SoftmaxWithLoss", [x, labels(4, 5)], _swl_ref(**args), outputs=2, **args)


def test_softmax_with_loss_zero_weight_sum_gives_zero_loss():
    got = run_op("SoftmaxWithLoss", [logits(2, 3), labels(2, 3), np.zeros(2, F32)],
                 outputs=2)
    assert got[1] == 0.0 and got[1].shape == ()


def test_softmax_with_loss_label_probabilities():
    x, t = logits(3, 4), _soft(3, 4)
    check_op("SoftmaxWithLoss", [x, t], _swl_ref(label_prob=1), outputs=2, label_prob=1)
    check_op("SoftmaxWithLoss", [x, t, probs(3)], _swl_ref(label_prob=1), outputs=2,
             label_prob=1)


@pytest.mark.parametrize("x_shape,label_shape,axis", [
    ((2, 3, 4), (2, 3), 2), ((2, 3, 4), (2, 3), -1), ((2, 3, 4), (2,), 1),
    ((2, 5), (1,), 0), ((5,), (1,), 0), ((0, 5), (0,), 1)])
def test_softmax_with_loss_axis(x_shape, label_shape, axis):
    x = logits(*x_shape)
    ax = axis % len(x_shape)
    d = int(np.prod(x_shape[ax:]))
    label = labels(int(np.prod(label_shape)), d).reshape(label_shape)
    check_op("SoftmaxWithLoss", [x, label], _swl_ref(axis=axis), outputs=2, axis=axis)


def test_softmax_with_loss_golden():
    # the example of the Caffe2 docs and extreme logits; golden from real Caffe2 1.10.2
    x = np.array([[0.1, 0.4, 0.7, 1.5, 0.2]], F32)
    p, loss = run_op("SoftmaxWithLoss", [x, np.array([4], np.int32)], outputs=2, scale=5.0)
    np.testing.assert_allclose(p, [[0.10715417, 0.144643, 0.19524762, 0.4345316,
                                    0.11842369]], rtol=1e-6)
    np.testing.assert_allclose(loss, 10.667433, rtol=1e-6)
    big = np.array([[1000.0, 0.0, -1000.0]], F32)
    _, loss = run_op("SoftmaxWithLoss", [big, np.array([2], np.int32)], outputs=2)
    assert loss == np.float32(2000.0)  # log-softmax in label mode: no clamp
    _, loss = run_op("SoftmaxWithLoss", [big, np.array([[0, 0, 1.0]], F32)], outputs=2,
                     label_prob=1)
    np.testing.assert_allclose(loss, 46.0517, rtol=1e-5)  # -log(1e-20) in prob mode


def test_softmax_with_loss_third_output_is_left_unwritten():
    ws = workspace.Workspace("swl3")
    ws.FeedBlob("x", logits(2, 3))
    ws.FeedBlob("t", labels(2, 3))
    ws.RunOperatorOnce(core.CreateOperator("SoftmaxWithLoss", ["x", "t"],
                                           ["p", "loss", "extra"]))
    assert ws.FetchBlob("loss").shape == ()
    assert isinstance(ws.FetchBlob("extra"), bytes)  # uninitialized, as in Caffe2


@pytest.mark.parametrize("case", ["plain", "weighted", "prob", "prob_weighted", "scaled",
                                  "batch_avg", "axis2"])
def test_softmax_with_loss_gradient(case):
    x = logits(3, 4, scale=1.0)
    inputs, args = [x, labels(3, 4)], {}
    if case in ("weighted", "prob_weighted", "batch_avg"):
        inputs.append(probs(3, low=0.2, high=2.0))
    if case.startswith("prob"):
        inputs[1], args["label_prob"] = _soft(3, 4), 1
    if case == "scaled":
        args["scale"] = 2.5
    if case == "batch_avg":
        args["average_by_batch_size"] = 1
    if case == "axis2":
        x = logits(2, 2, 3, scale=1.0)
        inputs, args = [x, labels(4, 3).reshape(2, 2)], {"axis": 2}
    check_gradient("SoftmaxWithLoss", inputs, wrt=[0], outputs=2, grad_outputs=[1],
                   **args)
    _, outs, dys, grads, _ = gradient_of("SoftmaxWithLoss", inputs, outputs=2,
                                         grad_outputs=[1], **args)
    assert set(grads) == {0}  # no gradient for labels or weights
    # dX = (P - target) * w_i * scale * dL / (sum w, or N with average_by_batch_size)
    p = outs[0].reshape(-1, outs[0].shape[-1]).astype(np.float64)
    n = p.shape[0]
    target = (inputs[1].reshape(p.shape) if args.get("label_prob")
              else np.eye(p.shape[1])[inputs[1].reshape(-1)])
    w = inputs[2].astype(np.float64) if len(inputs) == 3 else np.ones(n)
    denominator = n if args.get("average_by_batch_size") else w.sum()
    want = (p - target) * w[:, None] * args.get("scale", 1.0) * dys[1] / denominator
    np.testing.assert_allclose(grads[0], want.reshape(x.shape), rtol=1e-5, atol=1e-7)


def test_softmax_with_loss_gradient_leaves_negative_weight_sums_unscaled():
    # Caffe2 scaled dX only when the weights summed to > 0; values checked against
    # real Caffe2 1.10.2.
    x = logits(2, 5)
    p = _swl_ref()(x, np.array([4, 1], np.int32))[0]
    w = np.array([1.0, -2.0], F32)
    got = run_op("SoftmaxWithLossGradient",
                 [x, np.array([4, 1], np.int32), w, p, np.array(2.0, F32)])
    want = p.astype(np.float64)
    want[[0, 1], [4, 1]] -= 1
    np.testing.assert_allclose(got[0], want * w[:, None], rtol=1e-6)


def test_softmax_with_loss_errors():
    x = logits(2, 5)
    t = np.array([4, 1], np.int32)
    raises("Label seems incorrect: label value larger than number of classes: 5 vs 5",
           run_op, "SoftmaxWithLoss", [x, np.array([5, 1], np.int32)], outputs=2)
    raises("Label seems incorrect: label value larger than number of classes: -1 vs 5",
           run_op, "SoftmaxWithLoss", [x, np.array([-1, 1], np.int32)], outputs=2)
    raises("T.numel() == N. 3 vs 2", run_op, "SoftmaxWithLoss",
           [x, np.array([1, 2, 3], np.int32)], outputs=2)
    raises("T.size_from_dim(canonical_axis) == 1", run_op, "SoftmaxWithLoss",
           [x, np.zeros((2, 2), np.int32)], outputs=2)
    raises("caller expects elements to be int, while tensor contains long int", run_op,
           "SoftmaxWithLoss", [x, t.astype(np.int64)], outputs=2)
    raises("caller expects elements to be float, while tensor contains double", run_op,
           "SoftmaxWithLoss", [x, t, np.ones(2)], outputs=2)
    raises("the weight input needs one value per row (N=2)", run_op, "SoftmaxWithLoss",
           [x, t, np.ones(1, F32)], outputs=2)
    raises("Label prob seems incorrect: label prob values do not sum to 1.0: 2 vs 1.0 "
           "(+/- 1e-5)", run_op, "SoftmaxWithLoss", [x, _soft(2, 5) * 2], outputs=2,
           label_prob=1)
    raises("Label prob seems incorrect: label prob value must be nonnegative: -0.5",
           run_op, "SoftmaxWithLoss", [x, np.array([[1.5, -0.5, 0, 0, 0]] * 2, F32)],
           outputs=2, label_prob=1)
    raises("T.dim() >= 2. 1 vs 2", run_op, "SoftmaxWithLoss", [x, np.ones(5, F32) / 5],
           outputs=2, label_prob=1)
    raises("scale_ >= 0.", run_op, "SoftmaxWithLoss", [x, t], outputs=2, scale=-1.0)
    raises("Only NCHW order is supported right now.", run_op, "SoftmaxWithLoss", [x, t],
           outputs=2, order="NHWC")
    raises("Expected axis_index < ndims to be true, but got false.", run_op,
           "SoftmaxWithLoss", [x, t], outputs=2, axis=2)
    raises("Expected (unsigned)k <= dims.size() to be true", run_op, "SoftmaxWithLoss",
           [logits(2, 3, 4), labels(6, 4)], outputs=2, axis=2)
    raises("Argument scale does not have the right field: expected field f", run_op,
           "SoftmaxWithLoss", [x, t], outputs=2, scale=5, error=ArgumentError)
    raises("Output size 1 not in allowed output sizes of op SoftmaxWithLoss", run_op,
           "SoftmaxWithLoss", [x, t], outputs=1, error=SchemaError)
    p = _swl_ref()(x, t)[0]
    raises("4 or 5 inputs, found 3", run_op, "SoftmaxWithLossGradient",
           [x, t, np.array(1.0, F32)])
    raises("P must be the forward softmax output", run_op, "SoftmaxWithLossGradient",
           [x, t, p[:, :3], np.array(1.0, F32)])
    raises("label value larger than number of classes: 7 vs 5", run_op,
           "SoftmaxWithLossGradient", [x, np.array([7, 1], np.int32), p,
                                       np.array(1.0, F32)])


def test_softmax_with_loss_gradient_needs_the_loss_gradient():
    op = core.CreateOperator("SoftmaxWithLoss", ["X", "lab"], ["P", "L"])
    with pytest.raises(Exception, match="Gradient of output L is not provided!"):
        GradientRegistry.GetGradientForOp(op, ["P_grad", None])


# --- Accuracy -------------------------------------------------------------------------

def _accuracy(top_k):
    def ref(x, label):
        if not len(x):
            return [np.array(np.nan, F32)]
        # rank of the label when classes are sorted by score, ties to the lower index
        order = np.argsort(-x.astype(np.float64), axis=1, kind="stable")
        rank = np.argmax(order == label[:, None], axis=1)
        return [np.array((rank < top_k).mean(), F32)]
    return ref


@pytest.mark.parametrize("top_k", [1, 2, 3, 0])
def test_accuracy_reference(top_k):
    x = logits(8, 4)
    args = {} if top_k == 1 else {"top_k": top_k}
    check_op("Accuracy", [x, labels(8, 4)], _accuracy(top_k), **args)


def test_accuracy_ties_and_empty():
    x = np.array([[1, 1, 1], [2, 1, 2], [0, 3, 3]], F32)
    label = np.array([1, 2, 2], np.int32)
    check_reference("Accuracy", [x, label], lambda x, t: [np.array(0.0, F32)])
    check_reference("Accuracy", [x, label], lambda x, t: [np.array(1.0, F32)], top_k=2)
    got = run_op("Accuracy", [np.zeros((0, 3), F32), np.zeros(0, np.int32)])
    assert np.isnan(got[0]) and got[0].shape == ()  # golden from real Caffe2 1.10.2: 0/0


def test_accuracy_errors_and_no_gradient():
    x = logits(4, 3)
    raises("X.dim() == 2. 1 vs 2", run_op, "Accuracy", [logits(3), labels(1, 3)])
    raises("label.dim() == 1. 2 vs 1", run_op, "Accuracy", [x, labels(4, 3).reshape(4, 1)])
    raises("label.dim32(0) == N. 3 vs 4", run_op, "Accuracy", [x, labels(3, 3)])
    raises("Accuracy: labels must lie in [0, 3), found values from 0 to 7", run_op,
           "Accuracy", [x, np.array([0, 7, 1, 2], np.int32)])
    raises("caller expects elements to be int, while tensor contains long int", run_op,
           "Accuracy", [x, labels(4, 3, np.int64)])
    op = core.CreateOperator("Accuracy", ["X", "lab"], ["A"])
    with pytest.raises(GradientNotImplementedError,
                       match="One should not call gradient for operator Accuracy."):
        make_gradient(op, ["A_grad"])


# --- gradient wiring, schemas, devices ---------------------------------------------------

# (forward type, inputs, outputs, output grads, args) -> the gradient op real Caffe2
# 1.10.2's GetGradientForOp built: (type, inputs, outputs) and g_input.
WIRING = [
    ("SquaredL2Distance", ["X", "Y"], ["Z"], ["Z_grad"], {},
     ("SquaredL2DistanceGradient", ["X", "Y", "Z_grad"], ["X_grad", "Y_grad"]),
     ["X_grad", "Y_grad"]),
    ("AveragedLoss", ["X"], ["L"], ["L_grad"], {},
     ("AveragedLossGradient", ["X", "L_grad"], ["X_grad"]), ["X_grad"]),
    ("MakeTwoClass", ["X"], ["Y"], ["Y_grad"], {},
     ("MakeTwoClassGradient", ["Y_grad"], ["X_grad"]), ["X_grad"]),
    ("LabelCrossEntropy", ["X", "lab"], ["Y"], ["Y_grad"], {},
     ("LabelCrossEntropyGradient", ["X", "lab", "Y_grad"], ["X_grad"]), ["X_grad", None]),
    ("CrossEntropy", ["X", "lab"], ["Y"], ["Y_grad"], {},
     ("CrossEntropyGradient", ["X", "lab", "Y_grad"], ["X_grad"]), ["X_grad", None]),
    ("SigmoidCrossEntropyWithLogits", ["lg", "t"], ["L"], ["L_grad"], {"log_D_trick": True},
     ("SigmoidCrossEntropyWithLogitsGradient", ["L_grad", "lg", "t"], ["lg_grad"]),
     ["lg_grad", None]),
    ("WeightedSigmoidCrossEntropyWithLogits", ["lg", "t", "w"], ["L"], ["L_grad"], {},
     ("WeightedSigmoidCrossEntropyWithLogitsGradient", ["L_grad", "lg", "t", "w"],
      ["lg_grad"]), ["lg_grad", None, None]),
    ("SoftmaxWithLoss", ["X", "lab"], ["P", "L"], [None, "L_grad"], {"scale": 2.0},
     ("SoftmaxWithLossGradient", ["X", "lab", "P", "L_grad"], ["X_grad"]),
     ["X_grad", None]),
    ("SoftmaxWithLoss", ["X", "lab", "w"], ["P", "L"], ["P_grad", "L_grad"], {},
     ("SoftmaxWithLossGradient", ["X", "lab", "w", "P", "L_grad"], ["X_grad"]),
     ["X_grad", None, None]),
]


@pytest.mark.parametrize("fwd,ins,outs,g_out,args,want,g_in", WIRING,
                         ids=[w[0] + str(len(w[1])) for w in WIRING])
def test_gradient_wiring_matches_caffe2(fwd, ins, outs, g_out, args, want, g_in):
    op = core.CreateOperator(fwd, ins, outs, device_option=core.DeviceOption(1, 3), **args)
    ops, g_input = GradientRegistry.GetGradientForOp(op, g_out)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [want]
    assert [None if g is None else str(g) for g in g_input] == g_in
    grad = ops[0]
    assert grad.is_gradient_op and grad.name == ""
    assert (grad.device_option.device_type, grad.device_option.device_id) == (1, 3)
    assert [a.name for a in grad.arg] == list(args)  # forward args copied


@pytest.mark.parametrize("op_type,n_in,n_out", [
    ("SquaredL2Distance", 2, 1), ("SquaredL2DistanceGradient", 3, 2),
    ("AveragedLoss", 1, 1), ("AveragedLossGradient", 2, 1), ("MakeTwoClass", 1, 1),
    ("MakeTwoClassGradient", 1, 1), ("LabelCrossEntropy", 2, 1),
    ("LabelCrossEntropyGradient", 3, 1), ("CrossEntropy", 2, 1),
    ("CrossEntropyGradient", 3, 1), ("SigmoidCrossEntropyWithLogits", 2, 1),
    ("SigmoidCrossEntropyWithLogitsGradient", 3, 1),
    ("WeightedSigmoidCrossEntropyWithLogits", 3, 1),
    ("WeightedSigmoidCrossEntropyWithLogitsGradient", 4, 1),
    ("SoftmaxWithLoss", 2, 2), ("SoftmaxWithLossGradient", 4, 1), ("Accuracy", 2, 1)])
def test_schema_counts_and_no_inplace(op_type, n_in, n_out):
    ins = ["in%d" % i for i in range(n_in)]
    with pytest.raises(SchemaError, match="are set to be in-place but this is actually "
                                          "not supported by op %s" % op_type):
        workspace.RunOperatorOnce(core.CreateOperator(op_type, ins, [ins[0]] + ins[1:n_out]
                                                      if n_out <= n_in else [ins[0], "o"]))
    if op_type != "SoftmaxWithLossGradient":  # Caffe2 put no bound on its inputs
        most = 3 if op_type == "SoftmaxWithLoss" else n_in  # the weight is optional
        extra = ["extra%d" % k for k in range(most + 1 - n_in)]
        with pytest.raises(SchemaError, match="Input size %d not in range" % (most + 1)):
            workspace.RunOperatorOnce(core.CreateOperator(
                op_type, ins + extra, ["out%d" % k for k in range(n_out)]))


@pytest.mark.parametrize("op_type,make,outputs", [
    ("SquaredL2DistanceGradient", lambda: [logits(3, 2), logits(3, 2), logits(3)], 2),
    ("AveragedLossGradient", lambda: [logits(3, 2), np.array(1.5, F32)], 1),
    ("MakeTwoClassGradient", lambda: [logits(3, 2)], 1),
    ("LabelCrossEntropyGradient", lambda: [probs(3, 4), labels(3, 4), logits(3)], 1),
    ("CrossEntropyGradient", lambda: [probs(3, 4), _soft(3, 4), logits(3)], 1),
    ("SigmoidCrossEntropyWithLogitsGradient", lambda: [logits(3), logits(3, 4),
                                                       probs(3, 4)], 1),
    ("WeightedSigmoidCrossEntropyWithLogitsGradient",
     lambda: [logits(3), logits(3, 4), probs(3, 4), probs(3, 4)], 1),
    ("SoftmaxWithLossGradient", lambda: [logits(3, 4), labels(3, 4), probs(3),
                                         _soft(3, 4), np.array(1.0, F32)], 1)])
def test_gradient_ops_shapes_and_devices(op_type, make, outputs):
    inputs = make()
    check_shape_inference(op_type, inputs, outputs)
    check_devices(op_type, inputs, outputs)
