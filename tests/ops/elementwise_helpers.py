"""Helpers the elementwise op tests share (test_arithmetic, test_reduce_inputs,
test_unary_math, test_scale_clip, test_weighted_sum): seeded inputs, the error
assertion, and the check of a gradient maker's wiring against real Caffe2's.
"""

import numpy as np
import pytest

from graphnet import core
from graphnet.errors import OperatorError
from graphnet.gradient_maker import make_gradient
from tests.opcheck import run_op

RNG = np.random.default_rng(0)
F32, F64, I32, I64 = np.float32, np.float64, np.int32, np.int64


def rand(shape, dtype=F32, low=-5.0, high=5.0):
    x = RNG.uniform(low, high, shape)
    if np.dtype(dtype).kind == "i":
        x = np.round(x)
    return x.astype(dtype)


def away(shape, dtype=F32, lo=0.5, hi=2.0):
    """Values with |x| in [lo, hi] and random sign (away from 0 and from kinks)."""
    mag = RNG.uniform(lo, hi, shape)
    return (mag * RNG.choice([-1.0, 1.0], shape)).astype(dtype)


def op_error(op_type, inputs, match, outputs=1, **args):
    with pytest.raises(OperatorError, match=match):
        run_op(op_type, inputs, outputs, **args)


# --- gradient wiring: golden from real Caffe2 1.10.2 (GetGradientForOp) ---------------

def _arg_value(a):
    for field in ("f", "i", "s"):
        if a.HasField(field):
            value = getattr(a, field)
            return round(value, 9) if field == "f" else (
                value.decode() if field == "s" else value)
    return None


def wiring_id(case):
    return "%s%d%s" % (case[0], len(case[1]), "".join(sorted(case[3])))


def check_gradient_wiring(case):
    """case: (op type, inputs, outputs, args, [(type, ins, outs, args)], grad inputs)."""
    op_type, ins, outs, args, want_ops, want_gi = case
    op = core.CreateOperator(op_type, ins, outs, **args)
    ops, g_input = make_gradient(op, [o + "_grad" for o in outs])
    got = [(o.type, list(o.input), list(o.output),
            [(a.name, _arg_value(a)) for a in o.arg]) for o in ops]
    assert got == [tuple(w) for w in want_ops]
    assert list(g_input) == want_gi
    assert all(o.is_gradient_op for o in ops)
