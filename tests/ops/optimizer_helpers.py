"""Helpers the optimizer tests share (test_adagrad, test_momentum_sgd, test_adam):
seeded inputs, Caffe2's in-place float32 reinterpretation written independently,
in-place output names, the output comparison, and the schema checks against real
Caffe2 1.10.2.
"""

import numpy as np
import pytest

from graphnet import core, registry
from graphnet.gradient_maker import make_gradient

__all__ = ["F32", "F64", "RNG", "_rand", "_a", "_as_f32_bytes", "_inplace",
           "_assert_outputs", "check_schema_matches_caffe2", "check_defaults_match_caffe2"]

F32, F64 = np.float32, np.float64
RNG = np.random.default_rng(7)


def _rand(*shape, positive=False):
    x = RNG.standard_normal(shape)
    return (np.abs(x) + 0.05 if positive else x).astype(F32)


def _a(*rows):
    return np.array(rows, F32)


def _as_f32_bytes(x):
    """The first numel*4 bytes of x as float32 (Caffe2's in-place reinterpretation)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    return flat.view(np.uint8)[:flat.size * 4].view(F32).reshape(x.shape)


def _inplace(*pairs):
    """Output names for in-place slots: ints name inputs, strings stay."""
    return ["in%d" % x if isinstance(x, int) else x for x in pairs]


def _assert_outputs(got, want, rtol=0, atol=0):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w, F32)
        assert g.dtype == F32 and g.shape == w.shape, (g.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check_schema_matches_caffe2(op_type, schema):
    """schema: (inputs, outputs, enforced in-place pairs, allowed-only pairs)."""
    (lo_in, hi_in), (lo_out, hi_out), enforced, allowed = schema
    s = registry.get(op_type)
    assert (s.min_inputs, s.max_inputs, s.min_outputs, s.max_outputs) == (
        lo_in, hi_in, lo_out, hi_out)
    for i in range(hi_in):
        for o in range(hi_out):
            assert bool(s.enforces_inplace(i, o)) == ((i, o) in enforced), (i, o)
            assert bool(s.allows_inplace(i, o) or s.enforces_inplace(i, o)) == (
                (i, o) in enforced | allowed), (i, o)
    assert s.should_not_do_gradient
    op = core.CreateOperator(op_type, ["x%d" % i for i in range(lo_in)],
                             ["y%d" % o for o in range(lo_out)])
    with pytest.raises(Exception, match="One should not call gradient for operator %s"
                       % op_type):
        make_gradient(op, ["y0_grad"] + [None] * (lo_out - 1))


def check_defaults_match_caffe2(want):
    """want: {op type: {argument: Caffe2's default}}."""
    for op_type, defaults in want.items():
        args = registry.get(op_type).args
        assert {k: args[k].default for k in defaults} == defaults, op_type
