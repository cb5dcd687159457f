"""Optimizer ops: reference loops, Caffe2 goldens, in-place rules, dtype
reinterpretation of in-place state, and every input check."""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from graphnet.gradient_maker import make_gradient
from tests.opcheck import check_op, check_shape_inference, run_op

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


def _inplace(*pairs):
    """Output names for in-place slots: ints name inputs, strings stay."""
    return ["in%d" % x if isinstance(x, int) else x for x in pairs]


def _assert_outputs(got, want, rtol=0, atol=0):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w, F32)
        assert g.dtype == F32 and g.shape == w.shape, (g.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# --- schemas: counts, in-place rules, defaults (golden from real Caffe2 1.10.2) -------------

# op: (inputs, outputs, enforced in-place pairs, allowed-only pairs)
CAFFE2_SCHEMAS = {
    "Adagrad": ((4, 4), (2, 4), set(), {(0, 0), (1, 1)}),
    "SparseAdagrad": ((5, 5), (2, 2), {(0, 0), (1, 1)}, set()),
    "RowWiseSparseAdagrad": ((5, 6), (2, 2), {(0, 0), (1, 1)}, set()),
    "MomentumSGD": ((3, 3), (2, 2), set(), {(0, 0), (1, 1)}),
    "MomentumSGDUpdate": ((4, 4), (3, 3), set(), {(0, 0), (1, 1), (3, 2)}),
    "SparseMomentumSGDUpdate": ((5, 5), (3, 3), {(1, 1), (3, 2)}, {(0, 0)}),
    "Adam": ((6, 6), (3, 4), set(), {(0, 0), (1, 1), (2, 2)}),
    "SparseAdam": ((7, 7), (3, 4), {(0, 0), (1, 1), (2, 2)}, set()),
    "RowWiseSparseAdam": ((7, 7), (3, 4), {(0, 0), (1, 1), (2, 2)}, set()),
}


@pytest.mark.parametrize("op_type", sorted(CAFFE2_SCHEMAS))
def test_schema_matches_caffe2(op_type):
    (lo_in, hi_in), (lo_out, hi_out), enforced, allowed = CAFFE2_SCHEMAS[op_type]
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


def test_argument_defaults_match_caffe2():
    want = {"Adagrad": {"epsilon": 1e-5, "decay": 1.0, "weight_decay": 0.0},
            "SparseAdagrad": {"epsilon": 1e-5, "weight_decay": 0.0},
            "RowWiseSparseAdagrad": {"epsilon": 1e-5, "weight_decay": 0.0,
                                     "counter_halflife": -1},
            "MomentumSGDUpdate": {"momentum": 0.0, "nesterov": False},
            "Adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-5},
            "SparseAdam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-5,
                           "enableRAdam": False}}
    for op_type, defaults in want.items():
        args = registry.get(op_type).args
        assert {k: args[k].default for k in defaults} == defaults, op_type


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
