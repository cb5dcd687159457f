"""Adam, SparseAdam (and RAdam), RowWiseSparseAdam: reference loops, Caffe2 goldens,
in-place rules, dtype reinterpretation of in-place state, and every input check.
"""

import numpy as np
import pytest

from graphnet.errors import OperatorError
from tests.opcheck import check_op, run_op
from tests.ops.optimizer_helpers import (F32, F64, _a, _assert_outputs, _inplace, _rand,
                                         check_defaults_match_caffe2,
                                         check_schema_matches_caffe2)


# --- independent references (straightforward per-index loops) ---------------------------

def _correction(t, beta1, beta2):
    return np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)


def ref_adam(p, m1, m2, g, lr, it, beta1=0.9, beta2=0.999, epsilon=1e-5, outputs=3):
    w, a, b, gg = (np.asarray(x, F64) for x in (p, m1, m2, g))
    corr = _correction(int(it.reshape(-1)[0]) + 1, beta1, beta2)
    a = a * beta1 + gg.reshape(a.shape) * (1 - beta1)
    b = b * beta2 + (gg * gg).reshape(b.shape) * (1 - beta2)
    ng = corr * a / (np.sqrt(b) + epsilon)
    outs = [w + float(lr.reshape(-1)[0]) * ng.reshape(w.shape), a, b, ng.reshape(g.shape)]
    return [o.astype(F32) for o in outs[:outputs]]


def ref_sparse_adam(p, m1, m2, idx, g, lr, it, beta1=0.9, beta2=0.999, epsilon=1e-5,
                    outputs=3, rowwise=False):
    block = p.size // p.shape[0]
    n = g.size // block
    P, A = p.astype(F64).reshape(-1, block), m1.astype(F64).reshape(-1, block)
    B = m2.astype(F64).reshape(-1, 1 if rowwise else block)
    G = g.astype(F64).reshape(n, block)
    out = np.zeros_like(G)
    corr = _correction(int(it.reshape(-1)[0]) + 1, beta1, beta2)
    for i, r in enumerate(idx.reshape(-1)[:n]):
        A[r] = A[r] * beta1 + G[i] * (1 - beta1)
        sq = np.mean(G[i] ** 2) if rowwise else G[i] ** 2
        B[r] = B[r] * beta2 + sq * (1 - beta2)
        out[i] = corr * A[r] / (np.sqrt(B[r]) + epsilon)
        P[r] += float(lr.reshape(-1)[0]) * out[i]
    outs = [P.reshape(p.shape), A.reshape(m1.shape), B.reshape(m2.shape),
            out.reshape(g.shape)]
    return [o.astype(F32) for o in outs[:outputs]]


# --- schemas: counts, in-place rules, defaults (golden from real Caffe2 1.10.2) -------------

# op: (inputs, outputs, enforced in-place pairs, allowed-only pairs)
CAFFE2_SCHEMAS = {
    "Adam": ((6, 6), (3, 4), set(), {(0, 0), (1, 1), (2, 2)}),
    "SparseAdam": ((7, 7), (3, 4), {(0, 0), (1, 1), (2, 2)}, set()),
    "RowWiseSparseAdam": ((7, 7), (3, 4), {(0, 0), (1, 1), (2, 2)}, set()),
}


@pytest.mark.parametrize("op_type", sorted(CAFFE2_SCHEMAS))
def test_schema_matches_caffe2(op_type):
    check_schema_matches_caffe2(op_type, CAFFE2_SCHEMAS[op_type])


def test_argument_defaults_match_caffe2():
    check_defaults_match_caffe2({"Adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-5},
                                 "SparseAdam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-5,
                                                "enableRAdam": False}})


# --- Adam family ---------------------------------------------------------------------------

@pytest.mark.parametrize("outputs", [3, 4])
@pytest.mark.parametrize("t, args", [(0, {}), (9, {"beta1": 0.8, "beta2": 0.99,
                                                    "epsilon": 1e-3})])
def test_adam_reference(outputs, t, args):
    p, m1, m2, g = _rand(3, 4), _rand(3, 4), _rand(3, 4, positive=True), _rand(3, 4)
    it = np.array([t], np.int64)
    check_op("Adam", [p, m1, m2, g, _a(-0.01), it],
             lambda *x: ref_adam(*x, outputs=outputs, **args), outputs=outputs, **args)


def test_adam_golden_in_place():
    # golden from real Caffe2 1.10.2
    got = run_op("Adam", [_a([0.5, -1.2], [0.3, 2.0]), _a([0.1, 0.4], [-1.0, 0.0]),
                          _a([0.1, 0.4], [1.0, 0.0]), _a([0.2, -0.7], [1.5, -0.3]),
                          _a(-0.01), np.array([2], np.int64)], outputs=_inplace(0, 1, 2, "g"))
    _assert_outputs(got, [
        _a([0.499297112, -1.20092618], [0.301514119, 2.00638151]),
        _a([0.109999999, 0.289999962], [-0.74999994, -0.0300000086]),
        _a([0.099940002, 0.400089979], [1.00125003, 8.99988445e-05]),
        _a([0.0702878907, 0.0926154703], [-0.151410818, -0.638140976])], rtol=1e-6)


@pytest.mark.parametrize("inputs, match", [
    ([_rand(3), _rand(3), _rand(3), _rand(3), _a(1), np.array([1], np.int32)],
     "caller expects elements to be long int, while tensor contains int.*iter"),
    ([_rand(3), _rand(3), _rand(3), _rand(3), _a(1), np.zeros(0, np.int64)],
     "reads iter\\[0\\]"),
    ([_rand(3), _rand(3), _rand(2), _rand(3), _a(1), np.array([1])],
     "Input\\(GRAD\\).numel\\(\\) == Input\\(MOMENT_2\\).numel\\(\\). 3 vs 2"),
    ([_rand(3), _rand(3), _rand(3), _rand(3), _a(1, 1), np.array([1])],
     "Input\\(LR\\).numel\\(\\) == 1"),
])
def test_adam_errors(inputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op("Adam", inputs, outputs=3)


@pytest.mark.parametrize("outputs", [3, 4])
@pytest.mark.parametrize("block", [1, 3])
@pytest.mark.parametrize("rowwise", [False, True])
def test_sparse_adam_reference(outputs, block, rowwise):
    op_type = "RowWiseSparseAdam" if rowwise else "SparseAdam"
    p, m1 = _rand(5, block), _rand(5, block)
    m2 = _rand(5, positive=True) if rowwise else _rand(5, block, positive=True)
    idx = np.array([4, 1, 4, 4], np.int32 if block == 1 else np.int64)
    g, it = _rand(4, block), np.array([6], np.int64)
    names = _inplace(0, 1, 2, "g")[:outputs]
    check_op(op_type, [p, m1, m2, idx, g, _a(-0.02), it],
             lambda *x: ref_sparse_adam(*x, outputs=outputs, rowwise=rowwise, beta2=0.99),
             outputs=names, beta2=0.99)


def test_sparse_adam_goldens():
    # goldens from real Caffe2 1.10.2
    got = run_op("SparseAdam", [_a(0.5, -1.2, 0.3), _a(0.1, 0.4, -1.0), _a(0.1, 0.4, 1.0),
                                np.array([0, 2, 0]), _a(0.2, -0.7, 1.5), _a(-0.1),
                                np.array([0], np.int64)], outputs=_inplace(0, 1, 2))
    _assert_outputs(got, [_a(0.464354277, -1.20000005, 0.330681413),
                          _a(0.249000043, 0.400000006, -0.969999969),
                          _a(0.102090031, 0.400000006, 0.999490023)], rtol=1e-6)
    state = [_a([0.5, -1.2], [0.3, 2.0]), _a([0.1, 0.4], [-1.0, 0.0]),
             _a([0.1, 0.4], [1.0, 0.0])]
    got = run_op("SparseAdam", state + [np.array([1, 1], np.int32),
                                        _a([0.2, -0.7], [1.5, -0.3]), _a(-0.01),
                                        np.array([5], np.int64)],
                 outputs=_inplace(0, 1, 2, "g"), beta1=0.8)
    _assert_outputs(got, [
        _a([0.5, -1.20000005], [0.301120102, 2.01411653]),
        _a([0.100000001, 0.400000006], [-0.307999998, -0.171999991]),
        _a([0.100000001, 0.400000006], [1.00029099, 0.000579502492]),
        _a([-0.0797216371, -0.662819147], [-0.0322880372, -0.748822331])], rtol=1e-6)
    got = run_op("SparseAdam", state + [np.array([0, 0]), _a([0.2, -0.7], [1.5, -0.3]),
                                        _a(-0.01), np.array([20], np.int64)],
                 outputs=_inplace(0, 1, 2), enableRAdam=1)
    _assert_outputs(got, [_a([0.499840051, -1.20011699], [0.300000012, 2]),
                          _a([0.249000043, 0.230999947], [-1, 0]),
                          _a([0.102090031, 0.399779886], [1, 0])], rtol=1e-6)


def test_rowwise_sparse_adam_golden():
    # golden from real Caffe2 1.10.2
    got = run_op("RowWiseSparseAdam", [
        _a([0.5, -1.2], [0.3, 2.0], [1.0, 1.0]), _a([0.1, 0.4], [-1.0, 0.0], [0.5, 0.5]),
        _a(0.1, 0.4, 1.0), np.array([2, 2]), _a([0.2, -0.7], [1.5, -0.3]), _a(-0.01),
        np.array([7], np.int64)], outputs=_inplace(0, 1, 2, "g"))
    _assert_outputs(got, [
        _a([0.5, -1.20000005], [0.300000012, 2], [0.998364389, 0.998914838]),
        _a([0.100000001, 0.400000006], [-1, 0], [0.573000014, 0.311999947]),
        _a(0.100000001, 0.400000006, 0.999435723),
        _a([0.0737083629, 0.0595939904], [0.0898537934, 0.0489256158])], rtol=1e-6)


@pytest.mark.parametrize("op_type, inputs, match", [
    ("SparseAdam", [_rand(3, 2), np.zeros((3, 2), np.int64), _rand(3, 2), np.array([0]),
                    _rand(1, 2), _a(1), np.array([0])],
     "contains long int.*moment_1"),
    ("SparseAdam", [_rand(3, 2), _rand(3, 2), _rand(3, 2), np.array([0, 3]),
                    _rand(2, 2), _a(1), np.array([0])],
     "in0, out of bound,  idx:3 for input i:1"),
    ("SparseAdam", [_rand(3, 2), _rand(3, 2), _rand(3, 2), np.array([0]),
                    _rand(2, 2), _a(1), np.array([0])], "expected at least 2 indices"),
    ("RowWiseSparseAdam", [_rand(3, 2), _rand(3, 2), _rand(3, 2), np.array([0]),
                           _rand(1, 2), _a(1), np.array([0])],
     "sizes\\(\\)\\[0\\] == Input\\(MOMENT_2\\).numel\\(\\). 3 vs 6"),
    ("SparseAdam", [_rand(3, 2), _rand(3, 2), _rand(3, 2), np.array([0]),
                    _rand(1, 2), _a(1), np.array([0], np.int32)], "contains int.*iter"),
])
def test_sparse_adam_errors(op_type, inputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op(op_type, inputs, outputs=_inplace(0, 1, 2))
