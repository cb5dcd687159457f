"""SoftmaxWithLoss and Accuracy: reference values from formulas written here,
golden values from real Caffe2 1.10.2, finite-difference gradients, gradient
wiring, devices, errors.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError, SchemaError
from graphnet.gradient_maker import GradientNotImplementedError, make_gradient
from graphnet.gradients import GradientRegistry
from tests.opcheck import check_gradient, check_op, check_reference, gradient_of, run_op
from tests.ops.loss_helpers import (F32, check_counts_and_no_inplace, check_gradient_op,
                                    check_loss_wiring, labels, logits, probs, raises,
                                    soft_labels, wiring_ids)


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
    x, t = logits(3, 4), soft_labels(3, 4)
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
        inputs[1], args["label_prob"] = soft_labels(3, 4), 1
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
           "(+/- 1e-5)", run_op, "SoftmaxWithLoss", [x, soft_labels(2, 5) * 2], outputs=2,
           label_prob=1)
    raises("Label prob seems incorrect: label prob value must be nonnegative: -0.5",
           run_op, "SoftmaxWithLoss", [x, np.array([[1.5, -0.5, 0, 0, 0]] * 2, F32)],
           outputs=2, label_prob=1)
    raises("T.dim() >= 2. 1 vs 2", run_op, "SoftmaxWithLoss", [x, np.ones(5, F32) / 5],
           outputs=2, label_prob=1)
    raises("scale_ >= 0.", run_op, "SoftmaxWithLoss", [x, t], outputs=2, scale=-1.0,
           error=ArgumentError)
    raises("Only NCHW order is supported right now.", run_op, "SoftmaxWithLoss", [x, t],
           outputs=2, order="NHWC", error=ArgumentError)
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


@pytest.mark.parametrize("op_type,ins,outs", [
    ("SoftmaxWithLoss", ["X", "lab"], ["P", "L"]),
    ("SoftmaxWithLossGradient", ["X", "lab", "P", "L_grad"], ["X_grad"])],
    ids=["forward", "gradient"])
@pytest.mark.parametrize("args,match", [({"scale": -1.0}, "scale_ >= 0."),
                                        ({"order": "NHWC"}, "Only NCHW order is supported")],
                         ids=["scale", "order"])
def test_softmax_with_loss_constructor_checks_fail_at_create_net(op_type, ins, outs, args,
                                                                 match):
    # real Caffe2 1.10.2 checks scale and order in both ops' constructors
    # (softmax_with_loss_op.h), so CreateNet fails before any input is read
    net = core.Net("swl_checks")
    net.Proto().op.extend([core.CreateOperator(op_type, ins, outs, **args)])
    with pytest.raises(ArgumentError, match=match):
        workspace.CreateNet(net)


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

WIRING = [
    ("SoftmaxWithLoss", ["X", "lab"], ["P", "L"], [None, "L_grad"], {"scale": 2.0},
     ("SoftmaxWithLossGradient", ["X", "lab", "P", "L_grad"], ["X_grad"]),
     ["X_grad", None]),
    ("SoftmaxWithLoss", ["X", "lab", "w"], ["P", "L"], ["P_grad", "L_grad"], {},
     ("SoftmaxWithLossGradient", ["X", "lab", "w", "P", "L_grad"], ["X_grad"]),
     ["X_grad", None, None]),
]


@pytest.mark.parametrize("fwd,ins,outs,g_out,args,want,g_in", WIRING, ids=wiring_ids(WIRING))
def test_gradient_wiring_matches_caffe2(fwd, ins, outs, g_out, args, want, g_in):
    check_loss_wiring(fwd, ins, outs, g_out, args, want, g_in)


@pytest.mark.parametrize("op_type,n_in,n_out", [
    ("SoftmaxWithLoss", 2, 2), ("SoftmaxWithLossGradient", 4, 1), ("Accuracy", 2, 1)])
def test_schema_counts_and_no_inplace(op_type, n_in, n_out):
    check_counts_and_no_inplace(op_type, n_in, n_out)


@pytest.mark.parametrize("op_type,make,outputs", [
    ("SoftmaxWithLossGradient", lambda: [logits(3, 4), labels(3, 4), probs(3),
                                         soft_labels(3, 4), np.array(1.0, F32)], 1),
])
def test_gradient_ops_shapes_and_devices(op_type, make, outputs):
    check_gradient_op(op_type, make, outputs)
