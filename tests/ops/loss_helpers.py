"""Helpers the loss tests share (test_losses, test_sigmoid_cross_entropy,
test_softmax_loss): seeded inputs, the error assertion, and the table-driven
checks of gradient wiring (against real Caffe2 1.10.2), schemas and devices.
"""

import re

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import OperatorError, SchemaError
from graphnet.gradients import GradientRegistry
from tests.opcheck import check_devices, check_shape_inference

RNG = np.random.default_rng(7)
F32 = np.float32


def probs(*shape, low=0.1, high=0.9):
    return RNG.uniform(low, high, shape).astype(F32)


def logits(*shape, scale=2.0):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def labels(n, d, dtype=np.int32):
    return RNG.integers(0, d, n).astype(dtype)


def soft_labels(n, d):
    t = RNG.uniform(0.0, 1.0, (n, d))
    return (t / t.sum(axis=1, keepdims=True)).astype(F32)


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


def wiring_ids(table):
    return [w[0] + str(len(w[1])) for w in table]


def check_loss_wiring(fwd, ins, outs, g_out, args, want, g_in):
    """(forward type, inputs, outputs, output grads, args) -> the gradient op real
    Caffe2 1.10.2's GetGradientForOp built: (type, inputs, outputs) and g_input."""
    op = core.CreateOperator(fwd, ins, outs, device_option=core.DeviceOption(1, 3), **args)
    ops, g_input = GradientRegistry.GetGradientForOp(op, g_out)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [want]
    assert [None if g is None else str(g) for g in g_input] == g_in
    grad = ops[0]
    assert grad.is_gradient_op and grad.name == ""
    assert (grad.device_option.device_type, grad.device_option.device_id) == (1, 3)
    assert [a.name for a in grad.arg] == list(args)  # forward args copied


def check_counts_and_no_inplace(op_type, n_in, n_out):
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


def check_gradient_op(op_type, make, outputs):
    inputs = make()
    check_shape_inference(op_type, inputs, outputs)
    check_devices(op_type, inputs, outputs)
