"""(Weighted)SigmoidCrossEntropyWithLogits in every loss mode: reference values
from formulas written here, golden values from real Caffe2 1.10.2,
finite-difference gradients, gradient wiring, devices, errors.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError
from tests.opcheck import check_gradient, check_op, check_reference, gradient_of, run_op
from tests.ops.loss_helpers import (F32, check_counts_and_no_inplace, check_gradient_op,
                                    check_loss_wiring, logits, probs, raises, wiring_ids)


def softplus(x):
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


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
           unjoined_lr_loss=True, error=ArgumentError)
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


def test_sigmoid_cross_entropy_mode_check_fails_at_create_net():
    # real Caffe2 1.10.2: the forward op's constructor (cross_entropy_op.h) refuses both
    # modes, so CreateNet fails before any input is read; the gradient op has no check
    net = core.Net("sce_modes")
    net.Proto().op.extend([core.CreateOperator("SigmoidCrossEntropyWithLogits", ["lg", "t"],
                                               ["L"], log_D_trick=True,
                                               unjoined_lr_loss=True)])
    with pytest.raises(ArgumentError, match="cannot be set as True simultaneously"):
        workspace.CreateNet(net)


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


# --- gradient wiring, schemas, devices ---------------------------------------------------

WIRING = [
    ("SigmoidCrossEntropyWithLogits", ["lg", "t"], ["L"], ["L_grad"], {"log_D_trick": True},
     ("SigmoidCrossEntropyWithLogitsGradient", ["L_grad", "lg", "t"], ["lg_grad"]),
     ["lg_grad", None]),
    ("WeightedSigmoidCrossEntropyWithLogits", ["lg", "t", "w"], ["L"], ["L_grad"], {},
     ("WeightedSigmoidCrossEntropyWithLogitsGradient", ["L_grad", "lg", "t", "w"],
      ["lg_grad"]), ["lg_grad", None, None]),
]


@pytest.mark.parametrize("fwd,ins,outs,g_out,args,want,g_in", WIRING, ids=wiring_ids(WIRING))
def test_gradient_wiring_matches_caffe2(fwd, ins, outs, g_out, args, want, g_in):
    check_loss_wiring(fwd, ins, outs, g_out, args, want, g_in)


@pytest.mark.parametrize("op_type,n_in,n_out", [
    ("SigmoidCrossEntropyWithLogits", 2, 1),
    ("SigmoidCrossEntropyWithLogitsGradient", 3, 1),
    ("WeightedSigmoidCrossEntropyWithLogits", 3, 1),
    ("WeightedSigmoidCrossEntropyWithLogitsGradient", 4, 1)])
def test_schema_counts_and_no_inplace(op_type, n_in, n_out):
    check_counts_and_no_inplace(op_type, n_in, n_out)


@pytest.mark.parametrize("op_type,make,outputs", [
    ("SigmoidCrossEntropyWithLogitsGradient", lambda: [logits(3), logits(3, 4),
                                                       probs(3, 4)], 1),
    ("WeightedSigmoidCrossEntropyWithLogitsGradient",
     lambda: [logits(3), logits(3, 4), probs(3, 4), probs(3, 4)], 1),
])
def test_gradient_ops_shapes_and_devices(op_type, make, outputs):
    check_gradient_op(op_type, make, outputs)
