"""MomentumSGD, MomentumSGDUpdate, SparseMomentumSGDUpdate: reference loops, Caffe2
goldens, in-place rules, dtype reinterpretation of in-place state, every input check.
"""

import numpy as np
import pytest

from graphnet.errors import ArgumentError, OperatorError
from tests.opcheck import check_op, run_op
from tests.ops.optimizer_helpers import (F32, F64, _a, _assert_outputs, _inplace, _rand,
                                         check_defaults_match_caffe2,
                                         check_schema_matches_caffe2)


# --- independent references (straightforward per-index loops) ---------------------------

def ref_momentum(g, m, lr, momentum=0.0, nesterov=False):
    g, m, lr = np.asarray(g, F64), np.asarray(m, F64), float(np.reshape(lr, -1)[0])
    if not nesterov:
        adjusted = lr * g + momentum * m
        return adjusted, adjusted
    new = momentum * m + lr * g
    return (1 + momentum) * new - momentum * m, new


def ref_sparse_momentum(g, m, lr, p, idx, momentum=0.0, nesterov=False):
    block = p.size // p.shape[0]
    n = g.size // block
    P, M = p.astype(F64).reshape(-1, block), m.astype(F64).reshape(-1, block)
    G = g.astype(F64).reshape(n, block)
    out = np.zeros_like(G)
    for i, r in enumerate(idx.reshape(-1)[:n]):
        out[i], M[r] = ref_momentum(G[i], M[r], lr, momentum, nesterov)
        P[r] -= out[i]
    return [out.reshape(g.shape).astype(F32), M.reshape(m.shape).astype(F32),
            P.reshape(p.shape).astype(F32)]


# --- schemas: counts, in-place rules, defaults (golden from real Caffe2 1.10.2) -------------

# op: (inputs, outputs, enforced in-place pairs, allowed-only pairs)
CAFFE2_SCHEMAS = {
    "MomentumSGD": ((3, 3), (2, 2), set(), {(0, 0), (1, 1)}),
    "MomentumSGDUpdate": ((4, 4), (3, 3), set(), {(0, 0), (1, 1), (3, 2)}),
    "SparseMomentumSGDUpdate": ((5, 5), (3, 3), {(1, 1), (3, 2)}, {(0, 0)}),
}


@pytest.mark.parametrize("op_type", sorted(CAFFE2_SCHEMAS))
def test_schema_matches_caffe2(op_type):
    check_schema_matches_caffe2(op_type, CAFFE2_SCHEMAS[op_type])


def test_argument_defaults_match_caffe2():
    check_defaults_match_caffe2({"MomentumSGDUpdate": {"momentum": 0.0, "nesterov": False}})


# --- MomentumSGD family ---------------------------------------------------------------

@pytest.mark.parametrize("args", [{}, {"momentum": 0.9}, {"momentum": 0.8, "nesterov": 1}])
def test_momentum_sgd_reference(args):
    g, m, lr = _rand(3, 4), _rand(3, 4), _a(0.1)
    check_op("MomentumSGD", [g, m, lr], lambda g, m, lr: [
        x.astype(F32) for x in ref_momentum(g, m, lr, **args)], outputs=2, **args)
    check_op("MomentumSGD", [g, m, lr.reshape(())], lambda g, m, lr: [
        x.astype(F32) for x in ref_momentum(g, m, lr, **args)], outputs=_inplace(0, 1),
        **args)


def test_momentum_sgd_golden():
    # golden from real Caffe2 1.10.2
    got = run_op("MomentumSGD", [_a([0.2, -0.7], [1.5, -0.3]), _a([0.1, 0.4], [-1.0, 0.0]),
                                 _a(0.1)], outputs=2, momentum=0.9)
    want = _a([0.109999999, 0.289999992], [-0.75, -0.0300000012])
    _assert_outputs(got, [want, want])


@pytest.mark.parametrize("args", [{"momentum": 0.9}, {"momentum": 0.7, "nesterov": 1}])
def test_momentum_sgd_update_reference(args):
    g, m, p, lr = _rand(2, 5), _rand(2, 5), _rand(2, 5), _a(0.05)

    def ref(g, m, lr, p):
        ng, nm = ref_momentum(g, m, lr, **args)
        return [ng.astype(F32), nm.astype(F32), (p - ng).astype(F32)]
    check_op("MomentumSGDUpdate", [g, m, lr, p], ref, outputs=_inplace("g", "m", 3), **args)
    check_op("MomentumSGDUpdate", [g, m, lr, p], ref, outputs=_inplace(0, 1, 3), **args)


def test_momentum_sgd_update_golden():
    # golden from real Caffe2 1.10.2
    got = run_op("MomentumSGDUpdate", [_a([0.2, -0.7], [1.5, -0.3]),
                                       _a([0.1, 0.4], [-1.0, 0.0]), _a(0.1),
                                       _a([0.5, -1.2], [0.3, 2.0])],
                 outputs=_inplace(0, 1, 3), momentum=0.9, nesterov=1)
    _assert_outputs(got, [_a([0.118999995, 0.191000015], [-0.524999976, -0.057]),
                          _a([0.109999999, 0.289999992], [-0.75, -0.0300000012]),
                          _a([0.381000012, -1.39100003], [0.824999988, 2.05699992])],
                    rtol=1e-6)


def test_momentum_sgd_update_param_int64_in_place_is_reinterpreted():
    g, m = _rand(3, 2), _rand(3, 2)
    got = run_op("MomentumSGDUpdate", [g, m, _a(0.1), np.zeros((3, 2), np.int64)],
                 outputs=_inplace(0, 1, 3), momentum=0.9)
    ng = ref_momentum(g, m, _a(0.1), momentum=0.9)[0]
    _assert_outputs([got[2]], [-ng], rtol=1e-6)


@pytest.mark.parametrize("op_type, inputs, outputs, match", [
    ("MomentumSGD", [_rand(3), _rand(3), _a(1, 2)], 2, "Input\\(LR\\).numel\\(\\) == 1"),
    ("MomentumSGD", [_rand(3), _rand(2), _a(1)], 2,
     "Input\\(GRAD\\).numel\\(\\) == Input\\(MOMENTUM\\).numel\\(\\). 3 vs 2"),
    ("MomentumSGD", [_rand(3).astype(F64), _rand(3), _a(1)], 2, "contains double.*grad"),
    ("MomentumSGDUpdate", [_rand(3), _rand(3), _a(1), _rand(3)], ["g", "m", "p"],
     "updates param in place: expected output 2 to be input 3 \\('in3'\\), found 'p'"),
    ("MomentumSGDUpdate", [_rand(3), _rand(3), _a(1), _rand(2)], ["g", "m", "in3"],
     "Input\\(PARAM\\).numel\\(\\) == Input\\(GRAD\\).numel\\(\\). 2 vs 3"),
])
def test_momentum_errors(op_type, inputs, outputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op(op_type, inputs, outputs=outputs)


def test_momentum_argument_fields():
    with pytest.raises(ArgumentError, match="momentum does not have the right field"):
        run_op("MomentumSGD", [_rand(3), _rand(3), _a(1)], outputs=2, momentum=1)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("args", [{"momentum": 0.9}, {"momentum": 0.5, "nesterov": 1}])
@pytest.mark.parametrize("block", [1, 3])
def test_sparse_momentum_sgd_update_reference(index_dtype, args, block):
    g, m, p = _rand(5, block), _rand(4, block), _rand(4, block)
    idx = np.array([2, 0, 2, 2, 3], index_dtype)
    check_op("SparseMomentumSGDUpdate", [g, m, _a(0.1), p, idx],
             lambda *x: ref_sparse_momentum(*x, **args), outputs=_inplace("g", 1, 3),
             **args)


def test_sparse_momentum_sgd_update_golden():
    # golden from real Caffe2 1.10.2 (row 1 twice)
    got = run_op("SparseMomentumSGDUpdate", [
        _a([0.2, -0.7], [1.5, -0.3], [0.4, 0.4]), _a([0.1, 0.4], [-1.0, 0.0], [0.5, 0.5]),
        _a(0.1), _a([0.5, -1.2], [0.3, 2.0], [1.0, 1.0]), np.array([1, 1, 2])],
        outputs=_inplace(0, 1, 3), momentum=0.5)
    _assert_outputs(got, [
        _a([-0.479999989, -0.0700000003], [-0.0899999887, -0.0649999976],
           [0.289999992, 0.289999992]),
        _a([0.100000001, 0.400000006], [-0.0899999887, -0.0649999976],
           [0.289999992, 0.289999992]),
        _a([0.5, -1.20000005], [0.869999945, 2.13499999], [0.710000038, 0.710000038])],
        rtol=1e-6)


@pytest.mark.parametrize("inputs, match", [
    ([_rand(2, 2), _rand(4, 2), _a(1), _rand(4, 2), np.array([0, 4])],
     "in3, out of bound,  idx:4 for input i:1 and block size:2"),
    ([_rand(2, 2), _rand(4, 2), _a(1), _rand(4, 2), np.array([0])],
     "expected at least 2 indices"),
    ([_rand(2, 2), _rand(4, 2).astype(F64), _a(1), _rand(4, 2), np.array([0, 1])],
     "contains double.*moment"),
    ([_rand(2, 2), _rand(3, 2), _a(1), _rand(4, 2), np.array([0, 1])],
     "Input\\(PARAM\\).numel\\(\\) == Input\\(MOMENTUM\\).numel\\(\\). 8 vs 6"),
])
def test_sparse_momentum_errors(inputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op("SparseMomentumSGDUpdate", inputs, outputs=_inplace("g", 1, 3))
