"""SparseLengthsSum / WeightedSum / Mean and their gradient ops."""

import re

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from graphnet.gradient_maker import GradientSlice, make_gradient
from graphnet.registry import KernelContext
from graphnet.executors.backends import NUMPY
from graphnet.devices import CPU
from tests.opcheck import (check_devices, check_gradient, check_op,
                           check_shape_inference, gradient_of, run_op)

RNG = np.random.default_rng(0)
F32, F16 = np.float32, np.float16


# --- independent reference formulas (plain loops over segments) -------------------

def ref_forward(data, indices, lengths, weights=None, mean=False):
    out = np.zeros((len(lengths),) + data.shape[1:], np.float64)
    pos = 0
    for m, n in enumerate(lengths):
        for j in range(pos, pos + n):
            w = 1.0 if weights is None else float(weights[j])
            out[m] += w * data[indices[j]].astype(np.float64)
        if mean and n:
            out[m] /= n
        pos += n
    return out.astype(np.float32)


def ref_values(dy, lengths, weights=None, mean=False):
    """One row per INDICES entry: (weight or 1/len) * dY[segment]."""
    rows = []
    pos = 0
    for m, n in enumerate(lengths):
        for j in range(pos, pos + n):
            scale = 1.0 / n if mean else (1.0 if weights is None else float(weights[j]))
            rows.append(scale * dy[m].astype(np.float64))
        pos += n
    return np.array(rows, np.float64).reshape((sum(lengths),) + dy.shape[1:]).astype(F32)


def ref_weights_grad(dy, lengths, data, indices):
    out, pos = np.zeros(len(indices), np.float64), 0
    for m, n in enumerate(lengths):
        for j in range(pos, pos + n):
            out[j] = np.sum(dy[m].astype(np.float64) * data[indices[j]])
        pos += n
    return out.astype(F32)


def make_case(n_rows=6, block=(3,), lengths=(2, 0, 3, 1, 2, 0, 1), dtype=F32,
              index_dtype=np.int32):
    """DATA away from zero, indices with duplicates, empty segments, and several
    segments of one length."""
    shape = (n_rows,) + block
    data = RNG.uniform(0.5, 2.0, shape) * RNG.choice([-1, 1], shape)
    lengths = np.array(lengths, np.int32)
    indices = RNG.integers(0, n_rows, int(lengths.sum())).astype(index_dtype)
    if len(indices) > 2:
        indices[1] = indices[0]  # duplicate index
    weights = RNG.uniform(0.5, 1.5, len(indices)).astype(F32)
    return data.astype(dtype), weights, indices, lengths


def _msg(text):
    return re.escape(text)


# --- forward: reference, shape inference, devices -----------------------------------

@pytest.mark.parametrize("dtype", [F32, F16])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("block", [(), (3,), (2, 3)])
def test_sum_and_mean_reference(dtype, index_dtype, block):
    data, _, indices, lengths = make_case(block=block, dtype=dtype, index_dtype=index_dtype)
    check_op("SparseLengthsSum", [data, indices, lengths],
             lambda d, i, l: [ref_forward(d, i, l)])
    check_op("SparseLengthsMean", [data, indices, lengths],
             lambda d, i, l: [ref_forward(d, i, l, mean=True)])


@pytest.mark.parametrize("dtype", [F32, F16])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("grad_on_weights", [0, 1])
def test_weighted_sum_reference(dtype, index_dtype, grad_on_weights):
    data, weights, indices, lengths = make_case(block=(2, 2), dtype=dtype,
                                                index_dtype=index_dtype)
    check_op("SparseLengthsWeightedSum", [data, weights, indices, lengths],
             lambda d, w, i, l: [ref_forward(d, i, l, weights=w)],
             grad_on_weights=grad_on_weights)


def test_golden_values_from_caffe2():
    # golden from real Caffe2 1.10.2
    data = np.arange(12, dtype=F32).reshape(4, 3)
    indices, lengths = np.array([0, 1, 3, 3], np.int32), np.array([1, 0, 3], np.int32)
    weights = np.array([1, 2, 3, 4], F32)
    np.testing.assert_array_equal(run_op("SparseLengthsSum", [data, indices, lengths])[0],
                                  [[0, 1, 2], [0, 0, 0], [21, 24, 27]])
    np.testing.assert_array_equal(run_op("SparseLengthsMean", [data, indices, lengths])[0],
                                  [[0, 1, 2], [0, 0, 0], [7, 8, 9]])
    np.testing.assert_array_equal(
        run_op("SparseLengthsWeightedSum", [data, weights, indices, lengths])[0],
        [[0, 1, 2], [0, 0, 0], [69, 78, 87]])


def test_float16_accumulates_in_float32():
    # golden from real Caffe2 1.10.2: 65504 + 65504 overflows float16, not float32
    out = run_op("SparseLengthsSum", [np.float16([[65504.], [65504.]]), np.int64([0, 1]),
                                      np.int32([2])])[0]
    assert out.dtype == F32 and out[0, 0] == 131008.0


@pytest.mark.parametrize("op_type", ["SparseLengthsSum", "SparseLengthsMean",
                                     "SparseLengthsWeightedSum"])
@pytest.mark.parametrize("length", [1, 3])
def test_equal_lengths(op_type, length):
    """DLRM's one-hot and fixed multi-hot bags: every segment the same length."""
    data, weights, indices, lengths = make_case(lengths=(length,) * 5, block=(2, 3))
    weighted = op_type.endswith("WeightedSum")
    ins = [data, weights, indices, lengths] if weighted else [data, indices, lengths]
    want = (data[indices].reshape(5, length, 2, 3).astype(np.float64)
            * (weights.reshape(5, length, 1, 1) if weighted else 1.0))
    want = want.mean(axis=1) if op_type.endswith("Mean") else want.sum(axis=1)
    check_op(op_type, ins, lambda *a: [want.astype(F32)])


@pytest.mark.parametrize("op_type", ["SparseLengthsSum", "SparseLengthsMean"])
def test_empty_segments_and_empty_indices(op_type):
    data, _, indices, lengths = make_case(lengths=(0, 3, 0, 0, 2))
    check_op(op_type, [data, indices, lengths],
             lambda d, i, l: [ref_forward(d, i, l, mean=op_type.endswith("Mean"))])
    empty = np.zeros(0, np.int64)
    check_op(op_type, [data, empty, np.zeros(3, np.int32)],
             lambda d, i, l: [np.zeros((3, 3), F32)])
    check_op(op_type, [data, empty, np.zeros(0, np.int32)],
             lambda d, i, l: [np.zeros((0, 3), F32)])


def test_empty_indices_skip_every_other_check():
    # golden from real Caffe2 1.10.2: with no indices the output is zeros shaped by
    # len(LENGTHS), and LENGTHS' dtype/values and WEIGHTS are never read
    data = RNG.standard_normal((4, 3)).astype(F32)
    out = run_op("SparseLengthsSum", [data, np.zeros(0, np.int32), np.int64([1, 2])])[0]
    np.testing.assert_array_equal(out, np.zeros((2, 3), F32))
    out = run_op("SparseLengthsWeightedSum", [data, np.ones(4, F32),
                                              np.zeros((0, 2), np.int32),
                                              np.int32([[1, 2]])])[0]
    np.testing.assert_array_equal(out, np.zeros((1, 3), F32))


def test_zero_width_rows():
    data, _, indices, lengths = make_case(block=(3, 0))
    check_op("SparseLengthsSum", [data, indices, lengths],
             lambda d, i, l: [np.zeros((len(l), 3, 0), F32)])


@pytest.mark.parametrize("op_type,weighted,mean", [
    ("SparseLengthsSum", False, False), ("SparseLengthsMean", False, True),
    ("SparseLengthsWeightedSum", True, False)])
def test_generic_kernel_matches_reference(op_type, weighted, mean):
    """The array-module-generic kernel (CuPy's path) agrees with the formula too."""
    data, weights, indices, lengths = make_case(block=(2,), dtype=F16,
                                                lengths=(2, 0, 3, 1, 0))
    op = core.CreateOperator(op_type, ["a"] * (4 if weighted else 3), ["y"])
    ctx = KernelContext(NUMPY, CPU, op)
    kernel = registry.get(op_type).kernels["generic"]
    ins = [data, weights, indices, lengths] if weighted else [data, indices, lengths]
    got = kernel(ctx, None, *ins)
    want = ref_forward(data, indices, lengths, weights if weighted else None, mean)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.dtype == F32


def test_shape_inference_of_forward_ops():
    data, weights, indices, lengths = make_case(block=(2, 3), dtype=F16)
    check_shape_inference("SparseLengthsSum", [data, indices, lengths])
    check_shape_inference("SparseLengthsMean", [data, indices.astype(np.int64), lengths])
    check_shape_inference("SparseLengthsWeightedSum", [data, weights, indices, lengths])
    net = core.Net("sls_shapes")
    net.SparseLengthsSum(["d", "i", "l"], "y")
    net.SparseLengthsIndicesInGradientSumGradient(["dy", "l", "i"], "v")
    shapes, types = workspace.InferShapesAndTypes(
        [net], {"d": [10, 4], "i": [7], "l": [5], "dy": [5, 4]})
    assert shapes["y"] == [5, 4] and shapes["v"] == [7, 4]


# --- gradient makers: Caffe2's wiring -------------------------------------------------

def test_gradient_maker_wiring_matches_caffe2():
    # expected wiring printed by real Caffe2 1.10.2 GradientRegistry.GetGradientForOp
    cases = [
        (core.CreateOperator("SparseLengthsSum", ["D", "I", "L"], ["Y"]),
         "SparseLengthsIndicesInGradientSumGradient", ["Y_grad", "L", "I"],
         ["D_grad_values"], [GradientSlice("I", "D_grad_values"), None, None]),
        (core.CreateOperator("SparseLengthsMean", ["D", "I", "L"], ["Y"]),
         "SparseLengthsIndicesInGradientMeanGradient", ["Y_grad", "L", "I"],
         ["D_grad_values"], [GradientSlice("I", "D_grad_values"), None, None]),
        (core.CreateOperator("SparseLengthsWeightedSum", ["D", "W", "I", "L"], ["Y"]),
         "SparseLengthsIndicesInGradientWeightedSumGradient", ["W", "Y_grad", "L", "I"],
         ["D_grad_values"], [GradientSlice("I", "D_grad_values"), None, None, None]),
        (core.CreateOperator("SparseLengthsWeightedSum", ["D", "W", "I", "L"], ["Y"],
                             grad_on_weights=1),
         "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
         ["W", "Y_grad", "L", "D", "I"], ["D_grad_values", "W_grad"],
         [GradientSlice("I", "D_grad_values"), "W_grad", None, None]),
    ]
    for op, grad_type, inputs, outputs, g_input in cases:
        ops, got = make_gradient(op, ["Y_grad"])
        assert [o.type for o in ops] == [grad_type]
        assert list(ops[0].input) == inputs and list(ops[0].output) == outputs
        assert ops[0].is_gradient_op
        assert list(got) == g_input
        assert [(a.name, a.i) for a in ops[0].arg] == [(a.name, a.i) for a in op.arg]


def test_gradient_maker_copies_forward_args():
    # golden from real Caffe2 1.10.2: an unknown forward arg is appended too
    op = core.CreateOperator("SparseLengthsSum", ["D", "I", "L"], ["Y"], foo=3)
    ops, _ = make_gradient(op, ["Y_grad"])
    assert [(a.name, a.i) for a in ops[0].arg] == [("foo", 3)]


def test_net_backward_names_indices_blob_as_gradient_indices():
    net = core.Net("sls_backward")
    net.SparseLengthsSum(["emb", "ids", "lens"], "pooled")
    grad_map = net.AddGradientOperators(["pooled"])
    assert tuple(grad_map["emb"]) == ("ids", "emb_grad_values")
    assert net.Proto().op[-1].type == "SparseLengthsIndicesInGradientSumGradient"


# --- gradients: finite differences ----------------------------------------------------

@pytest.mark.parametrize("op_type", ["SparseLengthsSum", "SparseLengthsMean"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gradient_wrt_data(op_type, index_dtype):
    data, _, indices, lengths = make_case(n_rows=5, block=(2,), index_dtype=index_dtype)
    grads = check_gradient(op_type, [data, indices, lengths], wrt=[0])
    assert grads[0][0] is not None and grads[0][0].dtype == index_dtype
    np.testing.assert_array_equal(grads[0][0], indices)
    assert set(grads) == {0}


def test_gradient_with_trailing_dims_and_device():
    data, _, indices, lengths = make_case(n_rows=4, block=(2, 2))
    check_gradient("SparseLengthsSum", [data, indices, lengths], wrt=[0], device=1)


@pytest.mark.parametrize("grad_on_weights", [0, 1])
def test_weighted_sum_gradients(grad_on_weights):
    data, weights, indices, lengths = make_case(n_rows=5, block=(2,),
                                                index_dtype=np.int64)
    wrt = [0, 1] if grad_on_weights else [0]
    grads = check_gradient("SparseLengthsWeightedSum", [data, weights, indices, lengths],
                           wrt=wrt, grad_on_weights=grad_on_weights)
    assert (1 in grads) == bool(grad_on_weights)
    np.testing.assert_array_equal(grads[0][0], indices)


def test_gradient_values_against_formula():
    data, weights, indices, lengths = make_case(n_rows=5, block=(3,))
    for op_type, ins, kw in [
            ("SparseLengthsSum", [data, indices, lengths], {}),
            ("SparseLengthsMean", [data, indices, lengths], {"mean": True}),
            ("SparseLengthsWeightedSum", [data, weights, indices, lengths],
             {"weights": weights})]:
        _, _, dys, grads, _ = gradient_of(op_type, ins)
        np.testing.assert_allclose(grads[0][1], ref_values(dys[0], lengths, **kw),
                                   rtol=1e-6)
    _, _, dys, grads, _ = gradient_of("SparseLengthsWeightedSum",
                                      [data, weights, indices, lengths], grad_on_weights=1)
    np.testing.assert_allclose(grads[1], ref_weights_grad(dys[0], lengths, data, indices),
                               rtol=1e-5)


# --- gradient ops on their own ----------------------------------------------------------

DY = np.arange(9, dtype=F32).reshape(3, 3) + 1
GL = np.array([1, 0, 3], np.int32)
GI = np.array([0, 1, 3, 3], np.int32)
GW = np.array([1, 2, 3, 4], F32)
GD = np.arange(12, dtype=F32).reshape(4, 3)


def test_gradient_ops_golden_values():
    # golden from real Caffe2 1.10.2
    summed = [[1, 2, 3], [7, 8, 9], [7, 8, 9], [7, 8, 9]]
    weighted = [[1, 2, 3], [14, 16, 18], [21, 24, 27], [28, 32, 36]]
    meaned = [[1, 2, 3]] + [[7 / 3, 8 / 3, 3]] * 3
    np.testing.assert_array_equal(
        run_op("SparseLengthsIndicesInGradientSumGradient", [DY, GL, GI])[0], summed)
    np.testing.assert_array_equal(run_op("SparseLengthsSumGradient", [DY, GL])[0], summed)
    np.testing.assert_allclose(
        run_op("SparseLengthsIndicesInGradientMeanGradient", [DY, GL, GI])[0], meaned,
        rtol=1e-6)
    np.testing.assert_allclose(run_op("SparseLengthsMeanGradient", [DY, GL])[0], meaned,
                               rtol=1e-6)
    np.testing.assert_array_equal(
        run_op("SparseLengthsIndicesInGradientWeightedSumGradient", [GW, DY, GL, GI])[0],
        weighted)
    np.testing.assert_array_equal(
        run_op("SparseLengthsWeightedSumGradient", [GW, DY, GL])[0], weighted)
    values, wgrad = run_op("SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
                           [GW, DY, GL, GD, GI], outputs=2)
    np.testing.assert_array_equal(values, weighted)
    np.testing.assert_array_equal(wgrad, [8, 98, 242, 242])


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gradient_ops_reference_shapes_devices(index_dtype):
    data, weights, indices, lengths = make_case(n_rows=5, block=(2, 3),
                                                index_dtype=index_dtype)
    dy = RNG.standard_normal((len(lengths), 2, 3)).astype(F32)
    check_op("SparseLengthsIndicesInGradientSumGradient", [dy, lengths, indices],
             lambda g, l, i: [ref_values(g, l)])
    check_op("SparseLengthsIndicesInGradientMeanGradient", [dy, lengths, indices],
             lambda g, l, i: [ref_values(g, l, mean=True)], rtol=1e-6)
    check_op("SparseLengthsIndicesInGradientWeightedSumGradient",
             [weights, dy, lengths, indices],
             lambda w, g, l, i: [ref_values(g, l, weights=w)])
    check_op("SparseLengthsWeightedSumGradient", [weights, dy, lengths],
             lambda w, g, l: [ref_values(g, l, weights=w)])
    check_op("SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
             [weights, dy, lengths, data, indices],
             lambda w, g, l, d, i: [ref_values(g, l, weights=w),
                                    ref_weights_grad(g, l, d, i)], outputs=2, rtol=1e-5)
    for op_type in ("SparseLengthsSumGradient", "SparseLengthsMeanGradient"):
        check_devices(op_type, [dy, lengths])


def test_generic_gradient_kernels_match_reference():
    """The array-module-generic gradient kernels (CuPy's path) agree with the formula."""
    data, weights, indices, lengths = make_case(n_rows=5, block=(2,),
                                                lengths=(2, 0, 3, 1, 0))
    dy = RNG.standard_normal((len(lengths), 2)).astype(F32)

    def generic(op_type, *ins):
        op = core.CreateOperator(op_type, ["a"] * len(ins), ["y", "z"])
        return registry.get(op_type).kernels["generic"](KernelContext(NUMPY, CPU, op),
                                                        None, *ins)
    np.testing.assert_allclose(
        generic("SparseLengthsIndicesInGradientSumGradient", dy, lengths, indices),
        ref_values(dy, lengths), rtol=1e-6)
    np.testing.assert_allclose(
        generic("SparseLengthsIndicesInGradientMeanGradient", dy, lengths, indices),
        ref_values(dy, lengths, mean=True), rtol=1e-6)
    np.testing.assert_allclose(
        generic("SparseLengthsIndicesInGradientWeightedSumGradient", weights, dy, lengths,
                indices), ref_values(dy, lengths, weights=weights), rtol=1e-6)
    values, wgrad = generic(
        "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
        weights, dy, lengths, data, indices)
    np.testing.assert_allclose(values, ref_values(dy, lengths, weights=weights), rtol=1e-6)
    np.testing.assert_allclose(wgrad, ref_weights_grad(dy, lengths, data, indices),
                               rtol=1e-5)


def test_gradient_ops_empty():
    # golden from real Caffe2 1.10.2
    dy = np.ones((2, 2), F32)
    out = run_op("SparseLengthsIndicesInGradientSumGradient",
                 [dy, np.zeros(2, np.int32), np.zeros(0, np.int32)])[0]
    assert out.shape == (0, 2) and out.dtype == F32
    values, wgrad = run_op(
        "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
        [np.ones(0, F32), dy, np.zeros(2, np.int32), np.ones((3, 2), F32),
         np.zeros(0, np.int32)], outputs=2)
    assert values.shape == (0, 2) and wgrad.shape == (0,)


def test_gradient_indices_input_is_not_read_on_cpu():
    # golden from real Caffe2 1.10.2: float INDICES are accepted (CPU ignores them)
    out = run_op("SparseLengthsIndicesInGradientSumGradient", [DY, GL, GI.astype(F32)])[0]
    assert out.shape == (4, 3)


# --- errors: forward ---------------------------------------------------------------

def _fails(op_type, inputs, match, error=OperatorError, outputs=1, **args):
    with pytest.raises(error, match=match):
        run_op(op_type, inputs, outputs=outputs, **args)


DATA = np.arange(12, dtype=F32).reshape(4, 3)
IDX = np.array([0, 1, 3, 3], np.int32)
LEN = np.array([1, 0, 3], np.int32)


@pytest.mark.parametrize("op_type", ["SparseLengthsSum", "SparseLengthsMean"])
def test_forward_dtype_errors(op_type):
    _fails(op_type, [DATA.astype(np.float64), IDX, LEN],
           _msg("Unsupported type of tensor: double") + ".*DATA.*float32/float16")
    _fails(op_type, [DATA.astype(np.int32), IDX, LEN],
           _msg("Unsupported type of tensor: int") + ".*found int32")
    _fails(op_type, [DATA, IDX.astype(F32), LEN],
           _msg("Unsupported type of tensor: float") + ".*INDICES.*int32/int64")
    _fails(op_type, [DATA, IDX, LEN.astype(np.int64)],
           _msg("Tensor type mismatch, caller expects elements to be int, while tensor "
                "contains long int.") + ".*LENGTHS.*int32")
    _fails(op_type, [DATA, IDX, LEN.astype(np.int16)], "contains short int")


def test_forward_shape_errors():
    _fails("SparseLengthsSum", [DATA, IDX.reshape(2, 2), LEN],
           _msg("INDICES must be a vector") + r".*found shape \(2, 2\)")
    _fails("SparseLengthsSum", [DATA, IDX, LEN.reshape(3, 1)],
           _msg("LENGTHS must be a vector") + r".*found shape \(3, 1\)")
    _fails("SparseLengthsSum", [DATA, IDX, np.array(4, np.int32)],
           _msg("LENGTHS must be a vector") + ".*scalar")
    _fails("SparseLengthsSum", [np.array(1.0, F32), IDX, LEN], "DATA must have at least 1")


def test_index_out_of_bounds():
    # exact texts from real Caffe2 1.10.2
    _fails("SparseLengthsSum", [DATA, np.array([0, 1, 4, 3], np.int32), LEN],
           _msg("Index 2 is out of bounds: 4, range 0 to 4, actual batch length is 3"))
    _fails("SparseLengthsMean", [DATA, np.array([0, -1, 2, 3], np.int64), LEN],
           _msg("Index 1 is out of bounds: -1, range 0 to 4, actual batch length is 3"))
    _fails("SparseLengthsSum", [np.zeros((0, 3), F32), IDX, LEN],
           _msg("Index 0 is out of bounds: 0, range 0 to 0, actual batch length is 3"))
    # a bad index reached before the segments overrun INDICES is reported first
    _fails("SparseLengthsSum", [DATA, np.int32([0, 1, 9, 3]), np.int32([1, 0, 5])],
           _msg("Index 2 is out of bounds: 9"))


SUM_TEXT = ("Your input seems to be incorrect: the sum of lengths values should be the "
            "size of the indices tensor, but it appears not.")


def test_lengths_sum_mismatch_and_negative_lengths():
    _fails("SparseLengthsSum", [DATA, IDX, np.int32([1, 0, 2])],
           _msg(SUM_TEXT) + ".*found sum\\(LENGTHS\\) = 3")
    _fails("SparseLengthsSum", [DATA, IDX, np.int32([1, 0, 4])], _msg(SUM_TEXT))
    _fails("SparseLengthsSum", [DATA, IDX, np.zeros(0, np.int32)], _msg(SUM_TEXT))
    # as in Caffe2, negative lengths count as empty segments for the sum check
    _fails("SparseLengthsSum", [DATA, IDX, np.int32([1, -1, 4])], _msg(SUM_TEXT))
    _fails("SparseLengthsSum", [DATA, IDX, np.int32([1, -1, 3])],
           _msg("LENGTHS must be non-negative, found LENGTHS[1] = -1"))


def test_weights_errors():
    _fails("SparseLengthsWeightedSum", [DATA, GW.reshape(2, 2), IDX, LEN],
           _msg("WEIGHT must be a vector"))
    _fails("SparseLengthsWeightedSum", [DATA, GW[:3], IDX, LEN],
           _msg("Weight should have the same length as indices.") + ".*expected 4.*found 3")
    _fails("SparseLengthsWeightedSum", [DATA, GW.astype(F16), IDX, LEN],
           _msg("caller expects elements to be float, while tensor contains c10::Half"))
    # golden order from real Caffe2 1.10.2: LENGTHS' dtype is read before WEIGHTS
    _fails("SparseLengthsWeightedSum", [DATA, GW.reshape(2, 2), IDX, LEN.astype(np.int64)],
           "contains long int")
    _fails("SparseLengthsWeightedSum", [DATA, GW, np.int32([0, 1, 4, 3]), LEN],
           _msg("Index 2 is out of bounds: 4, range 0 to 4"))


def test_schema_and_argument_errors():
    _fails("SparseLengthsSum", [DATA, IDX], "Input size 2 not in range", SchemaError)
    _fails("SparseLengthsWeightedSum", [DATA, IDX, LEN], "Input size 3 not in range",
           SchemaError)
    _fails("SparseLengthsSum", [DATA, IDX, LEN], "Output size 2 not in range",
           SchemaError, outputs=2)
    with pytest.raises(SchemaError, match="are set to be in-place but this is actually "
                                          "not supported by op SparseLengthsSum"):
        workspace.RunOperatorOnce(core.CreateOperator("SparseLengthsSum",
                                                      ["x", "i", "l"], ["x"]))
    _fails("SparseLengthsWeightedSum", [DATA, GW, IDX, LEN], "grad_on_weights",
           ArgumentError, grad_on_weights=1.0)


def test_failing_op_leaves_output_blob_untouched():
    ws = workspace.Workspace("sls_fail")
    before = np.full((2, 2), 7.0, F32)
    for name, value in (("d", DATA), ("i", IDX), ("l", np.int32([1, 0, 2])), ("y", before)):
        ws.FeedBlob(name, value)
    with pytest.raises(OperatorError, match="offending blob: 'l'"):
        ws.RunOperatorOnce(core.CreateOperator("SparseLengthsSum", ["d", "i", "l"], ["y"]))
    np.testing.assert_array_equal(ws.FetchBlob("y"), before)


# --- errors: gradient ops ---------------------------------------------------------------

def test_gradient_op_errors():
    g = "SparseLengthsIndicesInGradientSumGradient"
    _fails(g, [DY.astype(F16), GL, GI], "caller expects elements to be float, while "
                                        "tensor contains c10::Half")
    _fails(g, [DY.astype(np.float64), GL, GI], "tensor contains double")
    _fails(g, [DY, GL.astype(np.int64), GI], "caller expects elements to be int")
    _fails(g, [DY, GL.reshape(3, 1), GI], _msg("LENGTHS must be a vector"))
    _fails(g, [DY[:2], GL, GI], "numSegments == segmentGradsInput.size\\(0\\).*expected "
                                "dY with 3 rows.*found 2")
    _fails(g, [np.array(1.0, F32), GL, GI], "must have a segment dimension")
    _fails(g, [DY, np.int32([1, -1, 3]), GI], "LENGTHS must be non-negative")
    _fails("SparseLengthsIndicesInGradientWeightedSumGradient", [GW[:3], DY, GL, GI],
           _msg("Input 0 must have the same first dim as SEGMENT_IDS") + ".*expected 4")
    _fails("SparseLengthsIndicesInGradientWeightedSumGradient",
           [GW.astype(F16), DY, GL, GI], "contains c10::Half")


def test_with_main_input_gradient_errors():
    g = "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient"
    # golden from real Caffe2 1.10.2: this op reads DATA as float32 only
    _fails(g, [GW, DY, GL, GD.astype(F16), GI], "contains c10::Half", outputs=2)
    _fails(g, [GW, DY, GL, GD, GI.astype(F32)], _msg("Unsupported type of tensor: float"),
           outputs=2)
    _fails(g, [GW, DY, GL, GD, GI], "Output size 1 not in range", SchemaError)
    # checks Caffe2 left to the forward pass (it overran buffers instead)
    _fails(g, [GW[:3], DY, GL, GD, GI], "Weight should have the same length", outputs=2)
    _fails(g, [GW[:3], DY, GL, GD, GI[:3]], _msg(SUM_TEXT), outputs=2)
    _fails(g, [GW, DY, GL, GD[:, :2], GI], "DATA rows must match dY rows", outputs=2)
    _fails(g, [GW, DY, GL, GD, np.int32([0, 1, 3, 4])], _msg("Index 3 is out of bounds: 4"),
           outputs=2)
