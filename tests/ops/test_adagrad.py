"""Adagrad, SparseAdagrad, RowWiseSparseAdagrad: reference loops, Caffe2 goldens,
in-place rules, dtype reinterpretation of in-place state, and every input check.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import check_op, check_shape_inference, run_op
from tests.ops.optimizer_helpers import (F32, F64, RNG, _a, _as_f32_bytes, _assert_outputs,
                                         _inplace, _rand, check_defaults_match_caffe2,
                                         check_schema_matches_caffe2)


# --- independent references (straightforward per-index loops) ---------------------------

def ref_adagrad(p, m, g, lr, epsilon=1e-5, decay=1.0, weight_decay=0.0, outputs=2):
    w, h, gg = (np.asarray(x, F64).reshape(-1) for x in (p, m, g))
    gg = gg + weight_decay * w
    nh = decay * h + gg * gg
    elr = float(np.reshape(lr, -1)[0]) / (np.sqrt(nh) + epsilon)
    outs = [(w + elr * gg).reshape(p.shape), nh.reshape(m.shape), elr.reshape(g.shape),
            (elr * gg).reshape(g.shape)]
    return [o.astype(F32) for o in outs[:outputs]]


def ref_sparse_adagrad(p, m, idx, g, lr, epsilon=1e-5, weight_decay=0.0):
    n = idx.size
    block = g.size // n
    P, M = p.astype(F64).reshape(-1, block), m.astype(F64).reshape(-1, block)
    G = g.astype(F64).reshape(n, block)
    for i, r in enumerate(idx.reshape(-1)):
        gi = G[i] + weight_decay * P[r]
        M[r] += gi * gi
        P[r] += float(lr.reshape(-1)[0]) * gi / (np.sqrt(M[r]) + epsilon)
    return [P.reshape(p.shape).astype(F32), M.reshape(m.shape).astype(F32)]


def ref_rowwise_adagrad(p, m, idx, g, lr, counter=None, epsilon=1e-5, weight_decay=0.0,
                        counter_halflife=-1):
    n = idx.size
    block = g.size // n
    P, M = p.astype(F64).reshape(-1, block), m.astype(F64).reshape(-1).copy()
    G = g.astype(F64).reshape(n, block)
    for i, r in enumerate(idx.reshape(-1)):
        freq = 1.0
        if counter_halflife > 0 and counter[r] > 0:
            freq = counter_halflife / counter[r]
        gi = G[i] + weight_decay * freq * P[r]
        M[r] += np.mean(gi * gi)
        P[r] += gi * float(lr.reshape(-1)[0]) / (np.sqrt(M[r]) + epsilon)
    return [P.reshape(p.shape).astype(F32), M.astype(F32)]


# --- schemas: counts, in-place rules, defaults (golden from real Caffe2 1.10.2) -------------

# op: (inputs, outputs, enforced in-place pairs, allowed-only pairs)
CAFFE2_SCHEMAS = {
    "Adagrad": ((4, 4), (2, 4), set(), {(0, 0), (1, 1)}),
    "SparseAdagrad": ((5, 5), (2, 2), {(0, 0), (1, 1)}, set()),
    "RowWiseSparseAdagrad": ((5, 6), (2, 2), {(0, 0), (1, 1)}, set()),
}


@pytest.mark.parametrize("op_type", sorted(CAFFE2_SCHEMAS))
def test_schema_matches_caffe2(op_type):
    check_schema_matches_caffe2(op_type, CAFFE2_SCHEMAS[op_type])


def test_argument_defaults_match_caffe2():
    check_defaults_match_caffe2({"Adagrad": {"epsilon": 1e-5, "decay": 1.0, "weight_decay": 0.0},
                                 "SparseAdagrad": {"epsilon": 1e-5, "weight_decay": 0.0},
                                 "RowWiseSparseAdagrad": {"epsilon": 1e-5, "weight_decay": 0.0,
                                                          "counter_halflife": -1}})


def test_inplace_rules_reject_like_caffe2():
    with pytest.raises(SchemaError, match="Input index 1 \\(in1\\) and output idx 1 "
                                          "\\(moment_out\\) are not in-place but should be"):
        run_op("SparseAdagrad", [_rand(3, 2), _rand(3, 2), np.array([0]), _rand(1, 2),
                                 _a(-1)], outputs=["in0", "moment_out"])
    with pytest.raises(SchemaError, match="Input index 0 and output idx 1 \\(in0\\) are "
                                          "set to be in-place but this is actually not"):
        run_op("Adagrad", [_rand(2), _rand(2), _rand(2), _a(-1)], outputs=["p", "in0"])
    with pytest.raises(SchemaError, match="Output size 5 not in range"):
        run_op("Adagrad", [_rand(2), _rand(2), _rand(2), _a(-1)], outputs=5)


# --- Adagrad ---------------------------------------------------------------------------

@pytest.mark.parametrize("outputs", [2, 3, 4])
@pytest.mark.parametrize("args", [{}, {"epsilon": 1e-3, "decay": 0.9, "weight_decay": 0.1}])
def test_adagrad_reference(outputs, args):
    p, m, g = _rand(4, 3), _rand(4, 3, positive=True), _rand(4, 3)
    lr = np.array(-0.05, F32)  # DLRM's 0-d negative lr
    check_op("Adagrad", [p, m, g, lr], lambda *x: ref_adagrad(*x, outputs=outputs, **args),
             outputs=outputs, **args)


def test_adagrad_in_place_and_shapes_follow_their_inputs():
    p, m, g, lr = _rand(6), _rand(2, 3, positive=True), _rand(3, 2), _a(0.1, 7.0)
    got = check_op("Adagrad", [p, m, g, lr], lambda *x: ref_adagrad(*x, outputs=4),
                   outputs=_inplace(0, 1, "elr", "upd"))
    assert [x.shape for x in got] == [(6,), (2, 3), (3, 2), (3, 2)]  # lr[0] only is read


def test_adagrad_golden():
    # golden from real Caffe2 1.10.2
    got = run_op("Adagrad", [_a([0.5, -1.2], [0.3, 2.0]), _a([0.1, 0.4], [1.0, 0.0]),
                             _a([0.2, -0.7], [1.5, -0.3]), _a(-0.1)],
                 outputs=_inplace(0, 1, "e", "u"), epsilon=1e-4, decay=0.9,
                 weight_decay=0.05)
    _assert_outputs(got, [
        _a([0.440015972, -1.12151992], [0.215250418, 2.09995008]),
        _a([0.140625, 0.937600017], [3.19522476, 0.0400000066]),
        _a([-0.266595602, -0.103263386], [-0.0559403263, -0.499750078]),
        _a([-0.0599840134, 0.0784801692], [-0.0847495943, 0.099950023])], rtol=1e-6)


def test_adagrad_ignores_dlrm_underscore_args():
    p, m, g, lr = _rand(5), _rand(5, positive=True), _rand(5), _a(-0.1)
    got = run_op("Adagrad", [p, m, g, lr], outputs=2, epsilon=1e-10, decay_=0.0,
                 weight_decay_=0.0)
    _assert_outputs(got, ref_adagrad(p, m, g, lr, epsilon=1e-10), rtol=1e-6)


def test_adagrad_in_place_int64_moment_is_reinterpreted():
    p, g, lr = _rand(3, 2), _rand(3, 2), _a(-0.1)
    zeros = np.zeros((3, 2), np.int64)
    got = run_op("Adagrad", [p, zeros, g, lr], outputs=_inplace(0, 1))
    _assert_outputs(got, ref_adagrad(p, np.zeros((3, 2)), g, lr), rtol=1e-6)
    with pytest.raises(OperatorError, match="caller expects elements to be float, while "
                                            "tensor contains long int.*moment.*same blob"):
        run_op("Adagrad", [p, zeros, g, lr], outputs=2)


def test_adagrad_empty():
    e = np.zeros((0, 3), F32)
    got = run_op("Adagrad", [e, e, e, _a(-1)], outputs=_inplace(0, 1))
    assert [x.shape for x in got] == [(0, 3), (0, 3)]


@pytest.mark.parametrize("inputs, outputs, match", [
    ([_rand(6), _rand(6), _rand(4), _a(1)], 2,
     "Input\\(GRAD\\).numel\\(\\) == Input\\(MOMENT_1\\).numel\\(\\). 4 vs 6.*PARAM size: 6"),
    ([_rand(4), _rand(6), _rand(6), _a(1)], 2,
     "Input\\(GRAD\\).numel\\(\\) == Input\\(PARAM\\).numel\\(\\). 6 vs 4"),
    ([_rand(2), _rand(2), _rand(2).astype(F64), _a(1)], 2,
     "caller expects elements to be float, while tensor contains double.*grad"),
    ([_rand(2), _rand(2), _rand(2), np.array([1.0])], 2,
     "contains double.*lr as float32"),
    ([_rand(2), _rand(2), _rand(2), np.zeros(0, F32)], 2, "reads lr\\[0\\].*empty"),
    ([_rand(2), _rand(2).astype(np.float16), _rand(2), _a(1)], ["in0", "in1"],
     "contains c10::Half.*moment.*4\\+-byte"),
])
def test_adagrad_errors(inputs, outputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op("Adagrad", inputs, outputs=outputs)


def test_adagrad_argument_field_checked():
    with pytest.raises(ArgumentError, match="Argument epsilon does not have the right "
                                            "field: expected field f"):
        run_op("Adagrad", [_rand(2), _rand(2), _rand(2), _a(1)], outputs=2, epsilon=1)


# --- SparseAdagrad --------------------------------------------------------------------

@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("block", [1, 3])
@pytest.mark.parametrize("args", [{}, {"epsilon": 1e-3, "weight_decay": 0.2}])
def test_sparse_adagrad_reference_with_duplicates(index_dtype, block, args):
    p, m = _rand(6, block), _rand(6, block, positive=True)
    idx = np.array([4, 1, 4, 0, 4, 5, 1], index_dtype)
    g = _rand(idx.size, block)
    check_op("SparseAdagrad", [p, m, idx, g, _a(-0.3)],
             lambda *x: ref_sparse_adagrad(*x, **args), outputs=_inplace(0, 1), **args)


def test_sparse_adagrad_many_duplicates_and_nd_indices():
    p, m = _rand(4, 2, 3), _rand(24, positive=True)  # moment only needs param's numel
    idx = RNG.integers(0, 4, size=(5, 8)).astype(np.int64)
    g = _rand(5, 8, 2, 3)
    check_op("SparseAdagrad", [p, m, idx, g, _a([-0.01])], ref_sparse_adagrad,
             outputs=_inplace(0, 1), rtol=1e-5, atol=1e-6)


def test_sparse_adagrad_golden():
    # golden from real Caffe2 1.10.2 (index 2 appears twice: sequential updates)
    got = run_op("SparseAdagrad", [
        _a([0.5, -1.0], [0.25, 0.75], [-0.5, 1.5], [2.0, 0.1]),
        _a([0.1, 0.2], [0.3, 0.0], [1.0, 0.5], [0.0, 0.0]), np.array([2, 0, 2]),
        _a([0.3, -0.2], [1.0, 0.5], [-0.4, 0.8]), _a(-0.5)], outputs=_inplace(0, 1),
        weight_decay=0.1)
    _assert_outputs(got, [
        _a([0.021245569, -1.33332777], [0.25, 0.75], [-0.41672045, 1.13400662],
           [2, 0.100000001]),
        _a([1.20249987, 0.360000014], [0.300000012, 0], [1.27606106, 1.41171312],
           [0, 0])], rtol=1e-6)


def test_sparse_adagrad_int64_moment_bytes_golden():
    # golden from real Caffe2 1.10.2: int64 1065353216 = bytes of float32 1.0 then 0.0
    moment = np.full((2, 2), 1065353216, np.int64)
    got = run_op("SparseAdagrad", [_a([0.5, -1.0], [0.25, 0.75]), moment,
                                   np.array([1], np.int32), _a([0.5, -2.0]), _a(-1.0)],
                 outputs=_inplace(0, 1))
    _assert_outputs(got, [_a([0.5, -1], [-0.197209597, 1.74999499]),
                          _a([1, 0], [1.25, 4])], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64])
def test_sparse_adagrad_reinterprets_in_place_state(dtype):
    p, idx, g, lr = _rand(5, 2), np.array([3, 0, 3]), _rand(3, 2), _a(-0.1)
    held = _rand(20, positive=True)  # the bytes the state tensors hold
    moment = held.view(dtype)[:10].reshape(5, 2)
    got = run_op("SparseAdagrad", [p, moment, idx, g, lr], outputs=_inplace(0, 1))
    _assert_outputs(got, ref_sparse_adagrad(p, held[:10].reshape(5, 2), idx, g, lr),
                    rtol=1e-5, atol=1e-6)
    param = _rand(20).view(dtype)[:10].reshape(5, 2)  # Caffe2 wrote param the same way
    got = run_op("SparseAdagrad", [param, held[:10].reshape(5, 2), idx, g, lr],
                 outputs=_inplace(0, 1))
    _assert_outputs(got, ref_sparse_adagrad(_as_f32_bytes(param), held[:10].reshape(5, 2),
                                            idx, g, lr), rtol=1e-5, atol=1e-6)


def test_sparse_adagrad_dlrm_int64_zero_moment_equals_float_zeros():
    p, idx, g, lr = _rand(7, 4), np.array([6, 2, 6, 0], np.int64), _rand(4, 4), _a(-0.1)
    got = run_op("SparseAdagrad", [p, np.full((7, 4), 0), idx, g, lr],
                 outputs=_inplace(0, 1), epsilon=1e-10, decay_=0.0, weight_decay_=0.0)
    _assert_outputs(got, ref_sparse_adagrad(p, np.zeros((7, 4)), idx, g, lr,
                                            epsilon=1e-10), rtol=1e-5)


def test_sparse_adagrad_empty_indices_leave_param():
    p, m = _rand(3, 2), _rand(3, 2, positive=True)
    got = run_op("SparseAdagrad", [p, m, np.zeros(0, np.int64), np.zeros((0, 2), F32),
                                   _a(-1)], outputs=_inplace(0, 1))
    _assert_outputs(got, [p, m])
    check_shape_inference("SparseAdagrad", [p, m, np.array([1]), _rand(1, 2), _a(-1)],
                          outputs=_inplace(0, 1))


def test_sparse_adagrad_decay_must_be_one():
    ins = [_rand(3, 2), _rand(3, 2), np.array([1]), _rand(1, 2), _a(-1)]
    run_op("SparseAdagrad", ins, outputs=_inplace(0, 1), decay=1.0)
    with pytest.raises(ArgumentError, match="Decay is not supported for "
                                            "SparseSimdAdagradOp.*found 0.5"):
        run_op("SparseAdagrad", ins, outputs=_inplace(0, 1), decay=0.5)
    net = core.Net("sparse_adagrad_decay")
    net.SparseAdagrad(["p", "m", "i", "g", "lr"], ["p", "m"], decay=0.9)
    ws = workspace.Workspace()
    for name, value in zip(["p", "m", "i", "g", "lr"], ins):
        ws.FeedBlob(name, value)
    with pytest.raises(ArgumentError, match="Decay is not supported"):
        ws.CreateNet(net)


@pytest.mark.parametrize("indices", [[0, 1, 5], [0, 1, -1]])
def test_sparse_adagrad_out_of_bounds_leaves_blobs_untouched(indices):
    ws = workspace.Workspace()
    p, m = _rand(5, 2), _rand(5, 2, positive=True)
    for name, value in zip(["p", "m", "i", "g", "lr"],
                           [p, m, np.array(indices), _rand(3, 2), _a(-1)]):
        ws.FeedBlob(name, value)
    op = core.CreateOperator("SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"])
    with pytest.raises(OperatorError, match="p, out of bound,  idx:%d for input i:2 and "
                       "block_size:2 max size:10.*\\[0, 5\\)" % indices[-1]):
        ws.RunOperatorOnce(op)
    np.testing.assert_array_equal(ws.FetchBlob("p"), p)  # Caffe2 had updated rows 0, 1
    np.testing.assert_array_equal(ws.FetchBlob("m"), m)


@pytest.mark.parametrize("inputs, match", [
    ([_rand(5, 2), _rand(4, 2), np.array([0]), _rand(1, 2), _a(1)],
     "Input\\(PARAM\\).numel\\(\\) == Input\\(MOMENT_1\\).numel\\(\\). 10 vs 8"),
    ([_rand(5, 2), _rand(5, 2), np.array([0]), _rand(1, 2), _a(1, 2)],
     "Input\\(LR\\).numel\\(\\) == 1. 2 vs 1"),
    ([_rand(5, 2), _rand(5, 2), np.array([0, 1]), _rand(1, 4), _a(1)],
     "size_from_dim\\(1\\) == .* 2 vs 4"),
    ([_rand(5, 2), _rand(5, 2), np.array([0, 1, 2]), _rand(4, 2), _a(1)],
     "Incorrect gradient size:8 size of indexes:3"),
    ([_rand(5, 2), _rand(5, 2), np.array([0.0], F32), _rand(1, 2), _a(1)],
     "Unsupported type of tensor: float.*int32 or int64 indices"),
    ([_rand(5, 2), _rand(5, 2), np.array([0]), _rand(1, 2).astype(F64), _a(1)],
     "contains double.*grad as float32"),
    ([_rand(5, 2), _rand(5, 2).astype(np.int16), np.array([0]), _rand(1, 2), _a(1)],
     "contains short.*moment"),
])
def test_sparse_adagrad_errors(inputs, match):
    with pytest.raises(OperatorError, match=match):
        run_op("SparseAdagrad", inputs, outputs=_inplace(0, 1))


# --- RowWiseSparseAdagrad -------------------------------------------------------------------

@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize("args", [{}, {"epsilon": 1e-4, "weight_decay": 0.3}])
def test_rowwise_sparse_adagrad_reference(index_dtype, block, args):
    p, m = _rand(6, block), _rand(6, positive=True)
    idx = np.array([2, 5, 2, 0, 2], index_dtype)
    g = _rand(idx.size, block)
    check_op("RowWiseSparseAdagrad", [p, m, idx, g, _a(-0.2)],
             lambda *x: ref_rowwise_adagrad(*x, **args), outputs=_inplace(0, 1),
             rtol=1e-5, atol=1e-6, **args)


@pytest.mark.parametrize("halflife", [0, 2])
def test_rowwise_sparse_adagrad_counter(halflife):
    p, m = _rand(5, 3), _rand(5, positive=True)
    idx, g = np.array([1, 3, 1, 0]), _rand(4, 3)
    counter = np.array([0.0, 2.0, 0.5, 4.0, 1.0])
    check_op("RowWiseSparseAdagrad", [p, m, idx, g, _a(-0.1), counter],
             lambda *x: ref_rowwise_adagrad(*x, weight_decay=0.3,
                                            counter_halflife=halflife),
             outputs=_inplace(0, 1), weight_decay=0.3, counter_halflife=halflife)


def test_rowwise_sparse_adagrad_golden():
    # golden from real Caffe2 1.10.2 (duplicate row 1; counter scales weight decay)
    got = run_op("RowWiseSparseAdagrad", [
        _a([0.5, -1.0, 0.2], [0.25, 0.75, -0.3], [-0.5, 1.5, 1.0]), _a(0.1, 0.2, 0.0),
        np.array([1, 1, 0]), _a([0.3, -0.2, 0.1], [1.0, 0.5, -0.5], [-0.4, 0.8, 0.2]),
        _a(-0.2), np.array([0.0, 4.0, 1.0])], outputs=_inplace(0, 1), weight_decay=0.5,
        counter_halflife=2)
    _assert_outputs(got, [
        _a([0.573299885, -1.14659977, 0.0534002483], [-0.11744976, 0.606875241,
                                                        -0.185867339], [-0.5, 1.5, 1]),
        _a(0.167500004, 0.86413908, 0)], rtol=1e-6)


def test_rowwise_sparse_adagrad_dlrm_int64_moment():
    p, idx, g = _rand(6, 2), np.array([5, 1, 5]), _rand(3, 2)
    got = run_op("RowWiseSparseAdagrad", [p, np.full(6, 0), idx, g, _a(-0.1)],
                 outputs=_inplace(0, 1), epsilon=1e-10, decay=0.5)  # decay: not an arg
    _assert_outputs(got, ref_rowwise_adagrad(p, np.zeros(6), idx, g, _a(-0.1),
                                             epsilon=1e-10), rtol=1e-5)


@pytest.mark.parametrize("inputs, args, match", [
    ([_rand(5, 3), _rand(4), np.array([0]), _rand(1, 3), _a(1)], {},
     "sizes\\(\\)\\[0\\] == Input\\(MOMENT_1\\).numel\\(\\). 5 vs 4"),
    ([_rand(5, 3), _rand(5), np.array([0, 1, 2]), _rand(4, 3), _a(1)], {},
     "numel\\(\\) / block_size == Input\\(MOMENT_1\\).numel\\(\\). 3 vs 5"),
    ([_rand(5, 3), _rand(5), np.array([0]), _rand(1, 3), _a(1)], {"counter_halflife": 2},
     "counter_halflife=2 reads input 5 \\(counter\\)"),
    ([_rand(5, 3), _rand(5), np.array([0]), _rand(1, 3), _a(1), np.ones(5, F32)],
     {"counter_halflife": 2}, "caller expects elements to be double.*counter"),
    ([_rand(5, 3), _rand(5), np.array([0]), _rand(1, 3), _a(1), np.ones(2)],
     {"counter_halflife": 2}, "at least 5 counter entries, found 2"),
    ([_rand(5, 3), _rand(5), np.array([0, 5]), _rand(2, 3), _a(1)], {},
     "out of bound,  idx:5 for input i:1 and block size:3 max size:15"),
    ([np.array(1.0, F32), _rand(1), np.array([0]), _rand(1), _a(1)], {},
     "at least 1-D, found a 0-d"),
])
def test_rowwise_sparse_adagrad_errors(inputs, args, match):
    with pytest.raises(OperatorError, match=match):
        run_op("RowWiseSparseAdagrad", inputs, outputs=_inplace(0, 1), **args)


def test_rowwise_sparse_adagrad_halflife_is_an_int():
    with pytest.raises(ArgumentError, match="counter_halflife does not have the right "
                                            "field: expected field i"):
        run_op("RowWiseSparseAdagrad", [_rand(2, 1), _rand(2), np.array([0]), _rand(1, 1),
                                        _a(1), np.ones(2)], outputs=_inplace(0, 1),
               counter_halflife=2.0)
