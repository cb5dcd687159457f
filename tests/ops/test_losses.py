"""SquaredL2Distance, AveragedLoss, MakeTwoClass, LabelCrossEntropy, CrossEntropy:
reference values from formulas written here, golden values from real Caffe2
1.10.2, finite-difference gradients, gradient wiring, devices, errors.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from tests.opcheck import check_gradient, check_op, check_reference, gradient_of, run_op
from tests.ops.loss_helpers import (F32, check_counts_and_no_inplace, check_gradient_op,
                                    check_loss_wiring, labels, logits, probs, raises, rows,
                                    soft_labels, wiring_ids)


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


def _xent(x, label):
    x2 = rows(x)
    t = np.asarray(label, np.float64).reshape(x2.shape)
    return [(-(t * np.log(np.maximum(x2, 1e-20))).sum(axis=1)).astype(F32)]


@pytest.mark.parametrize("x_shape", [(3, 4), (2, 1, 3), (0, 3)])
def test_cross_entropy_reference(x_shape):
    x = probs(*x_shape)
    check_op("CrossEntropy", [x, soft_labels(x_shape[0], int(np.prod(x_shape[1:])))], _xent)


def test_cross_entropy_golden_and_1d_label_with_one_class():
    x = np.array([[.01, .05, .02, .02, .9], [.03, .1, .42, .05, .4]], F32)
    onehot = np.eye(5, dtype=F32)[[4, 2]]
    got = run_op("CrossEntropy", [x, onehot])  # golden from real Caffe2 1.10.2
    np.testing.assert_allclose(got[0], [0.10536055, 0.8675006], rtol=1e-6)
    check_reference("CrossEntropy", [probs(3, 1), np.ones(3, F32)], _xent)


def test_cross_entropy_gradient():
    x, t = probs(3, 4), soft_labels(3, 4)
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
           [x, soft_labels(2, 3), probs(3)])


# --- gradient wiring, schemas, devices ---------------------------------------------------

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
]


@pytest.mark.parametrize("fwd,ins,outs,g_out,args,want,g_in", WIRING, ids=wiring_ids(WIRING))
def test_gradient_wiring_matches_caffe2(fwd, ins, outs, g_out, args, want, g_in):
    check_loss_wiring(fwd, ins, outs, g_out, args, want, g_in)


@pytest.mark.parametrize("op_type,n_in,n_out", [
    ("SquaredL2Distance", 2, 1), ("SquaredL2DistanceGradient", 3, 2),
    ("AveragedLoss", 1, 1), ("AveragedLossGradient", 2, 1), ("MakeTwoClass", 1, 1),
    ("MakeTwoClassGradient", 1, 1), ("LabelCrossEntropy", 2, 1),
    ("LabelCrossEntropyGradient", 3, 1), ("CrossEntropy", 2, 1),
    ("CrossEntropyGradient", 3, 1)])
def test_schema_counts_and_no_inplace(op_type, n_in, n_out):
    check_counts_and_no_inplace(op_type, n_in, n_out)


@pytest.mark.parametrize("op_type,make,outputs", [
    ("SquaredL2DistanceGradient", lambda: [logits(3, 2), logits(3, 2), logits(3)], 2),
    ("AveragedLossGradient", lambda: [logits(3, 2), np.array(1.5, F32)], 1),
    ("MakeTwoClassGradient", lambda: [logits(3, 2)], 1),
    ("LabelCrossEntropyGradient", lambda: [probs(3, 4), labels(3, 4), logits(3)], 1),
    ("CrossEntropyGradient", lambda: [probs(3, 4), soft_labels(3, 4), logits(3)], 1),
])
def test_gradient_ops_shapes_and_devices(op_type, make, outputs):
    check_gradient_op(op_type, make, outputs)
