"""Helpers the fill tests share (test_fill, test_random_fill, test_learning_rate):
DataType codes, seeded inputs, an exact fill, and the no-gradient check.
"""

import numpy as np

from graphnet import core, registry
from graphnet.gradient_maker import make_gradient
from tests.opcheck import op_def

DT = core.DataType
RNG = np.random.default_rng(0)


def full(shape, value, dtype):
    out = np.empty(shape, dtype=dtype)
    out[...] = value
    return out


def check_no_gradient(op_type, n_in, kwargs):
    # real Caffe2 1.10.2: GetGradientForOp returns ([], [None] * inputs) for all of them
    outputs = ["in0"] if op_type == "Iter" else 1
    op = op_def(op_type, n_in, outputs, **kwargs)
    assert registry.get(op_type).no_gradient
    ops, g_input = make_gradient(op, [op.output[0] + "_grad"])
    assert ops == [] and g_input == [None] * n_in
