"""Gather family: Gather, BatchGather(+Gradient), SparseToDense, Unique,
UnsortedSegmentSum/Mean(+Gradient). Expected values come from numpy formulas
written here (or golden values printed by real Caffe2 1.10.2)."""

import numpy as np
import pytest

from graphnet import registry
from graphnet.devices import CPU
from graphnet.errors import ArgumentError, GraphnetError, OperatorError, SchemaError
from graphnet.executors.backends import NUMPY
from graphnet.gradient_maker import (GradientNotImplementedError, GradientSlice,
                                     make_gradient)
from graphnet.registry import KernelContext
from tests.opcheck import (check_devices, check_gradient, check_op, check_reference,
                           check_shape_inference, op_def, run_op)

RNG = np.random.default_rng(1234)
IDX_TYPES = [np.int32, np.int64]


def data(shape, dtype=np.float32):
    x = RNG.standard_normal(shape) * 4
    if np.dtype(dtype) == np.bool_:
        return x > 0
    return x.astype(dtype)


def ints(values, dtype=np.int32):
    return np.array(values, dtype=dtype)


def wrapped(idx, n):
    return np.where(idx < 0, idx + n, idx)


def gather_ref(d, idx, axis):
    """out[..., i..., ...] = d[..., idx[i...], ...] by explicit fancy indexing."""
    lead = (slice(None),) * axis
    return d[lead + (np.asarray(idx),)]


def scatter_rows_ref(rows, values, nrows):
    out = np.zeros((nrows,) + values.shape[1:], values.dtype)
    for j, r in enumerate(rows):
        out[r] += values[j]
    return out


def grad_wiring(op_type, n_inputs, **args):
    op = op_def(op_type, n_inputs, **args)
    return make_gradient(op, ["out0_grad"])


def arg_pairs(op):
    return [(a.name, a.i) for a in op.arg]


# --- Gather ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32,
                                   np.int64, np.bool_])
@pytest.mark.parametrize("itype", IDX_TYPES)
def test_gather_axis0_wraps_negative_indices(dtype, itype):
    d = data((5, 3), dtype)
    idx = ints([[4, -1], [0, -5], [2, 2]], itype)
    check_op("Gather", [d, idx], lambda d, i: [d[wrapped(i, 5)]])


@pytest.mark.parametrize("itype", IDX_TYPES)
@pytest.mark.parametrize("axis", [1, 2, -1, -2])
def test_gather_inner_axes(itype, axis):
    d = data((2, 3, 4))
    n = d.shape[axis]
    idx = ints([[n - 1, 0, 1], [1, 1, 0]], itype)
    check_op("Gather", [d, idx], lambda d, i: [gather_ref(d, i, axis % 3)], axis=axis)


def test_gather_wrap_only_on_axis_zero_unless_asked():
    d = data((3, 4))
    check_op("Gather", [d, ints([-1, 0])], lambda d, i: [d[:, [3, 0]]], axis=1,
             wrap_indices=True)
    check_op("Gather", [d, ints([-1, 0])], lambda d, i: [d[:, [3, 0]]], axis=-1,
             wrap_indices=True)
    with pytest.raises(OperatorError, match=r"out of DATA bounds, id=-1 axis_dim=4"):
        run_op("Gather", [d, ints([-1])], axis=1)
    with pytest.raises(OperatorError, match=r"out of DATA bounds, id=-1 axis_dim=3"):
        run_op("Gather", [d, ints([-1])], wrap_indices=False)


def test_gather_string_and_scalar_indices():
    names = np.array([b"a", b"bc", b"d"], dtype=object)
    check_op("Gather", [names, ints([2, 0, 2])], lambda d, i: [names[[2, 0, 2]]])
    d = data((3, 2))
    check_op("Gather", [d, np.array(1, np.int64)], lambda d, i: [d[1].copy()])


@pytest.mark.parametrize("itype", IDX_TYPES)
def test_gather_match_outer(itype):
    d = data((2, 3, 4, 2))
    idx1 = ints([[2, 0, 0, 1], [1, 1, 2, 0]], itype)  # axis 1: one index row per batch

    def ref1(d, i):
        return [np.stack([d[b][i[b]] for b in range(2)])]
    check_op("Gather", [d, idx1], ref1, axis=1, match_outer=True)
    idx2 = ints([[[3, 0], [1, 1], [2, 2]], [[0, 0], [3, 1], [1, 3]]], itype)

    def ref2(d, i):
        return [np.stack([np.stack([d[a, b][i[a, b]] for b in range(3)])
                          for a in range(2)])]
    check_op("Gather", [d, idx2], ref2, axis=2, match_outer=True)


def test_gather_empty_cases_follow_caffe2():
    # DATA.shape[axis] == 0: output keeps DATA's shape, indices are never read.
    check_op("Gather", [np.zeros((0, 3), np.float32), ints([1, 2])],
             lambda d, i: [np.zeros((0, 3), np.float32)])
    # empty output: out-of-range indices are not checked (golden from Caffe2 1.10.2)
    check_op("Gather", [np.zeros((3, 0), np.float32), ints([5])],
             lambda d, i: [np.zeros((1, 0), np.float32)])
    check_op("Gather", [data((3, 4)), np.zeros((0,), np.int64)],
             lambda d, i: [np.zeros((0, 4), np.float32)])
    check_op("Gather", [data((3, 4)), np.zeros((2, 0), np.int32)],
             lambda d, i: [np.zeros((3, 2, 0), np.float32)], axis=1)


def test_gather_errors():
    d = data((3, 4))
    with pytest.raises(OperatorError, match=r"out of DATA bounds, id=3 axis_dim=3.*"
                                            r"expected indices in \[0, 3\)"):
        run_op("Gather", [d, ints([0, 3])])
    with pytest.raises(OperatorError, match=r"id=-1 axis_dim=3"):  # -4 wraps to -1
        run_op("Gather", [d, ints([-4])])
    with pytest.raises(OperatorError, match=r"Unsupported type of tensor: float.*int32 or "
                                            r"int64 INDICES, found float32"):
        run_op("Gather", [d, np.array([1.0], np.float32)])
    with pytest.raises(OperatorError, match=r"found int16"):
        run_op("Gather", [d, np.array([1], np.int16)])
    with pytest.raises(OperatorError, match=r"DATA should be at least \[axis\+1\]-D"):
        run_op("Gather", [d, ints([1])], axis=2)
    with pytest.raises(OperatorError, match=r"Axis should be non-negative"):
        run_op("Gather", [d, ints([1])], axis=-3)
    with pytest.raises(OperatorError, match=r"DATA should be at least \[axis\+1\]-D.*"
                                            r"found shape \[\]"):
        run_op("Gather", [np.array(3.0, np.float32), ints([0])])
    with pytest.raises(OperatorError, match=r"Axis should be at least 1"):
        run_op("Gather", [d, ints([[0], [1], [2]])], match_outer=True)
    with pytest.raises(OperatorError, match=r"same outer dims as DATA.*\[3\], found \[2, 2\]"):
        run_op("Gather", [d, ints([[0, 1], [2, 3]])], axis=1, match_outer=True)
    with pytest.raises(OperatorError, match=r"id=9 axis_dim=4"):  # rows past the first
        run_op("Gather", [d, ints([[0, 1], [2, 3], [1, 9]])], axis=1, match_outer=True)
    with pytest.raises(ArgumentError, match=r"Argument axis does not have the right field"):
        run_op("Gather", [d, ints([1])], axis=1.0)
    with pytest.raises(ArgumentError, match=r"wrap_indices does not have the right field"):
        run_op("Gather", [d, ints([1])], wrap_indices=1.0)
    with pytest.raises(SchemaError, match=r"Input size 1 not in range"):
        run_op("Gather", [d])


def test_gather_family_rejects_in_place():
    with pytest.raises(SchemaError, match=r"are set to be in-place but this is actually "
                                          r"not supported by op Gather"):
        run_op("Gather", [data((3, 2)), ints([0])], outputs=["in0"])
    for op_type, inputs in [("BatchGather", [data((2, 2)), ints([0])]),
                            ("SparseToDense", [ints([0]), data((1, 2))]),
                            ("Unique", [ints([1, 1])]),
                            ("UnsortedSegmentSum", [data((2, 2)), ints([0, 0])]),
                            ("UnsortedSegmentSumGradient", [data((1, 2)), ints([0, 0])]),
                            ("BatchGatherGradient", [data((2, 2)), ints([0]),
                                                     data((2, 1))])]:
        with pytest.raises(SchemaError, match="not supported by op " + op_type):
            run_op(op_type, inputs, outputs=["in0"])


def test_gather_gradient_axis0_is_the_sparse_slice():
    ops, g_input = grad_wiring("Gather", 2)
    assert ops == [] and g_input == [GradientSlice("in1", "out0_grad"), None]
    # dense check: duplicate and negative indices densified by the harness
    check_gradient("Gather", [data((4, 3)), ints([[1, -1], [1, 0]])], wrt=[0])


def test_gather_dense_gradient_is_sparse_to_dense():
    ops, g_input = grad_wiring("Gather", 2, dense_gradient=True)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("SparseToDense", ["in1", "out0_grad", "in0"], ["in0_grad"])]
    assert arg_pairs(ops[0]) == [("dense_gradient", 1)] and ops[0].is_gradient_op
    assert g_input == ["in0_grad", None]
    check_gradient("Gather", [data((4, 3)), ints([2, 0, 2], np.int64)], wrt=[0],
                   dense_gradient=True)


def test_gather_inner_axis_gradient_is_batch_gather_gradient():
    ops, g_input = grad_wiring("Gather", 2, axis=-1, match_outer=True)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("BatchGatherGradient", ["in0", "in1", "out0_grad"], ["in0_grad"])]
    # explicit axis first, then the copied forward args (as Caffe2 1.10.2 printed)
    assert arg_pairs(ops[0]) == [("axis", -1), ("axis", -1), ("match_outer", 1)]
    assert g_input == ["in0_grad", None]
    check_gradient("Gather", [data((2, 3, 2)), ints([2, 2, 0])], wrt=[0], axis=1)
    check_gradient("Gather", [data((2, 4)), ints([[3, 3], [0, 1]])], wrt=[0], axis=-1,
                   match_outer=True)


def test_gather_gradient_maker_errors():
    with pytest.raises(GraphnetError, match=r"axis > 0 must use dense_gradient"):
        grad_wiring("Gather", 2, axis=1, dense_gradient=False)
    with pytest.raises(ArgumentError, match=r"dense_gradient does not have the right field"):
        grad_wiring("Gather", 2, dense_gradient=1.0)
    with pytest.raises(GraphnetError, match=r"is sparse"):
        make_gradient(op_def("Gather", 2), [GradientSlice("gi", "gv")])


# --- BatchGather -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.float16])
@pytest.mark.parametrize("itype", IDX_TYPES)
def test_batch_gather_reference(dtype, itype):
    d = data((3, 5, 2), dtype)
    idx = ints([[4, 0], [4, 4]], itype)
    check_op("BatchGather", [d, idx], lambda d, i: [d[:, i]])


def test_batch_gather_match_outer_and_ignored_axis():
    d = data((3, 4))
    idx = ints([[0, 1], [2, 3], [1, 1]], np.int64)
    check_op("BatchGather", [d, idx],
             lambda d, i: [np.stack([d[b][i[b]] for b in range(3)])], match_outer=True)
    # BatchGather has no axis argument: Caffe2 ignores it and gathers along 1
    check_op("BatchGather", [d, ints([1])], lambda d, i: [d[:, [1]]], axis=0)


def test_batch_gather_errors():
    with pytest.raises(OperatorError, match=r"id=-1 axis_dim=4"):  # no wrapping
        run_op("BatchGather", [data((3, 4)), ints([-1])])
    with pytest.raises(OperatorError, match=r"id=4 axis_dim=4"):
        run_op("BatchGather", [data((3, 4)), ints([0, 4])])
    with pytest.raises(OperatorError, match=r"at least \[axis\+1\]-D.*found shape \[4\]"):
        run_op("BatchGather", [data((4,)), ints([1])])


def test_batch_gather_gradient_with_duplicates():
    ops, g_input = grad_wiring("BatchGather", 2, match_outer=True)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("BatchGatherGradient", ["in0", "in1", "out0_grad"], ["in0_grad"])]
    assert arg_pairs(ops[0]) == [("match_outer", 1)] and g_input == ["in0_grad", None]
    check_gradient("BatchGather", [data((2, 4, 2)), ints([3, 3, 0, 3], np.int64)], wrt=[0])
    check_gradient("BatchGather", [data((2, 3)), ints([[2, 2], [0, 1]])], wrt=[0],
                   match_outer=True)


# --- BatchGatherGradient -------------------------------------------------------------

def batch_gather_grad_ref(d, idx, g, axis=1, match_outer=False):
    axis %= d.ndim
    outer = int(np.prod(d.shape[:axis]))
    out = np.zeros((outer,) + d.shape[axis:], np.float32)
    g = g.reshape((outer, -1) + d.shape[axis + 1:])
    idx = np.asarray(idx).reshape(outer if match_outer else 1, -1)
    for b in range(outer):
        row = idx[b if match_outer else 0]
        for i, k in enumerate(row):
            out[b, k] += g[b, i]
    return [out.reshape(d.shape)]


@pytest.mark.parametrize("itype", IDX_TYPES)
def test_batch_gather_gradient_reference(itype):
    d = data((3, 4, 2))
    idx = ints([[1, 1], [3, 1]], itype)
    g = data((3, 2, 2, 2))
    check_op("BatchGatherGradient", [d, idx, g], batch_gather_grad_ref)
    idx0 = ints([[2, 0], [2, 2]], itype)
    check_op("BatchGatherGradient", [d, idx0, data((2, 2, 4, 2))],
             lambda d, i, g: batch_gather_grad_ref(d, i, g, 0), axis=0)
    idx2 = ints([1, 1, 0], itype)
    check_op("BatchGatherGradient", [d, idx2, data((3, 4, 3))],
             lambda d, i, g: batch_gather_grad_ref(d, i, g, -1), axis=-1)
    mo = ints([[0, 0], [3, 2], [1, 1]], itype)
    check_op("BatchGatherGradient", [d, mo, data((3, 2, 2))],
             lambda d, i, g: batch_gather_grad_ref(d, i, g, 1, True), match_outer=True)


def test_batch_gather_gradient_golden_and_empty():
    got = run_op("BatchGatherGradient", [np.zeros((3, 4), np.float32), ints([0, 0, 1]),
                                         np.ones((3, 3), np.float32)])[0]
    # golden from real Caffe2 1.10.2
    np.testing.assert_array_equal(got, [[2, 1, 0, 0]] * 3)
    check_op("BatchGatherGradient", [np.zeros((0, 4), np.float32), ints([0]),
                                     np.zeros((0, 1), np.float32)],
             lambda d, i, g: [np.zeros((0, 4), np.float32)])
    check_op("BatchGatherGradient", [data((2, 3)), np.zeros((0,), np.int64),
                                     np.zeros((2, 0), np.float32)],
             lambda d, i, g: [np.zeros((2, 3), np.float32)])


def test_batch_gather_gradient_errors():
    d, g = data((3, 4)), data((3, 1))
    with pytest.raises(OperatorError, match=r"id=-1 axis_dim=4"):  # not wrapped
        run_op("BatchGatherGradient", [d, ints([-1]), g])
    with pytest.raises(OperatorError, match=r"outer dimensions should match.*\[3\], "
                                            r"found \[2, 1\]"):
        run_op("BatchGatherGradient", [d, ints([0]), data((2, 1))])
    with pytest.raises(OperatorError, match=r"expected 6 elements.*found shape \[3, 1\]"):
        run_op("BatchGatherGradient", [d, ints([0, 1]), g])
    with pytest.raises(OperatorError, match=r"not implemented on tensor of type double"):
        run_op("BatchGatherGradient", [d.astype(np.float64), ints([0]),
                                       g.astype(np.float64)])
    with pytest.raises(OperatorError, match=r"caller expects elements to be float, while "
                                            r"tensor contains double"):
        run_op("BatchGatherGradient", [d, ints([0]), g.astype(np.float64)])
    with pytest.raises(OperatorError, match=r"expected at least 2 dims"):
        run_op("BatchGatherGradient", [data((4,)), ints([0]), data((1,))], axis=0)


def test_scatter_kernels_generic_backend_matches_reference():
    """The xp.bincount kernels (the ones CuPy would run) agree with the formulas."""
    def run_generic(op_type, inputs, **args):
        op = op_def(op_type, len(inputs), **args)
        schema = registry.get(op_type)
        ctx = KernelContext(NUMPY, CPU, op)
        return schema.kernels["generic"](ctx, schema.parse_args(op), *inputs)

    d, idx, g = data((3, 4)), ints([1, 1, 3]), data((3, 3))
    np.testing.assert_allclose(run_generic("BatchGatherGradient", [d, idx, g]),
                               batch_gather_grad_ref(d, idx, g)[0], rtol=1e-6)
    rows, vals = ints([2, 0, 2], np.int64), data((3, 2), np.int64)
    out = run_generic("SparseToDense", [rows, vals])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, scatter_rows_ref(rows, vals, 3))
    x, ids = data((4, 2)), ints([1, 1, 0, 1])
    np.testing.assert_allclose(run_generic("UnsortedSegmentMean", [x, ids]),
                               [x[2], x[[0, 1, 3]].mean(0)], rtol=1e-6)


# --- SparseToDense -------------------------------------------------------------------

@pytest.mark.parametrize("vtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("itype", IDX_TYPES)
def test_sparse_to_dense_reference(vtype, itype):
    rows, vals = ints([3, 0, 3, 1], itype), data((4, 2, 2), vtype)
    check_reference("SparseToDense", [rows, vals],
                    lambda r, v: [scatter_rows_ref(r, v, 4)])
    like = data((6, 5), np.float64)  # only its first dim matters, any dtype
    check_op("SparseToDense", [rows, vals, like],
             lambda r, v, _: [scatter_rows_ref(r, v, 6)])
    check_op("SparseToDense", [rows, vals], lambda r, v: [scatter_rows_ref(r, v, 7)],
             output_first_dim=7)
    check_devices("SparseToDense", [rows, vals])


def test_sparse_to_dense_edges():
    # negative output_first_dim means "infer"; 1-D values; empty inputs
    check_reference("SparseToDense", [ints([1, 0]), ints([5, 7], np.int32)],
                    lambda r, v: [ints([7, 5], np.int32)], output_first_dim=-3)
    check_reference("SparseToDense", [ints([]), np.zeros((0, 3), np.float32)],
                    lambda r, v: [np.zeros((0, 3), np.float32)])
    check_op("SparseToDense", [ints([]), np.zeros((0, 3), np.float32), np.zeros(2)],
             lambda r, v, d: [np.zeros((2, 3), np.float32)])
    # first dim 0: indices are never checked (golden from Caffe2 1.10.2)
    check_op("SparseToDense", [ints([1]), data((1, 2)), np.zeros(0)],
             lambda r, v, d: [np.zeros((0, 2), np.float32)])
    check_reference("SparseToDense", [ints([-1]), data((1, 2))],
                    lambda r, v: [np.zeros((0, 2), np.float32)])


def test_sparse_to_dense_errors():
    v = data((3, 2))
    with pytest.raises(OperatorError, match=r"expected indices in \[0, 3\), found "
                                            r"indices\[0\] = -1"):
        run_op("SparseToDense", [ints([-1, 0, 2]), v])
    with pytest.raises(OperatorError, match=r"expected indices in \[0, 2\), found "
                                            r"indices\[2\] = 2"):
        run_op("SparseToDense", [ints([1, 0, 2]), v, np.zeros(2)])
    with pytest.raises(OperatorError, match=r"max\(indices\) \+ 1 is negative: found -4"):
        run_op("SparseToDense", [ints([-5]), v[:1]])
    with pytest.raises(OperatorError, match=r"expected 2 rows of values, found 3"):
        run_op("SparseToDense", [ints([1, 0]), v])
    with pytest.raises(OperatorError, match=r"indices must be a vector.*found shape \[1, 3\]"):
        run_op("SparseToDense", [ints([[1, 0, 2]]), v])
    with pytest.raises(OperatorError, match=r"not implemented on tensor of type double"):
        run_op("SparseToDense", [ints([1, 0, 2]), v.astype(np.float64)])
    with pytest.raises(OperatorError, match=r"type bool"):
        run_op("SparseToDense", [ints([1, 0, 2]), v > 0])
    with pytest.raises(OperatorError, match=r"Unsupported type of tensor: float"):
        run_op("SparseToDense", [np.array([1.0], np.float32), v[:1]])
    with pytest.raises(OperatorError, match=r"values must have at least 1 dim"):
        run_op("SparseToDense", [ints([1]), np.array(2.0, np.float32)])
    with pytest.raises(OperatorError, match=r"output_first_dim excludes"):
        run_op("SparseToDense", [ints([0]), v[:1], np.zeros(5)], output_first_dim=4)
    with pytest.raises(OperatorError, match=r"data_to_infer_dim must have at least 1 dim"):
        run_op("SparseToDense", [ints([0]), v[:1], np.array(3.0)])
    with pytest.raises(ArgumentError, match=r"output_first_dim does not have the right"):
        run_op("SparseToDense", [ints([0]), v[:1]], output_first_dim=2.0)


def test_sparse_to_dense_gradient_is_gather():
    ops, g_input = grad_wiring("SparseToDense", 3)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("Gather", ["out0_grad", "in0"], ["in1_grad"])]
    assert g_input == [None, "in1_grad", None]
    check_gradient("SparseToDense", [ints([2, 0, 2]), data((3, 2)), np.zeros(4)], wrt=[1])


def test_sparse_to_dense_shape_rule():
    rows, v = ints([1, 1]), data((2, 3))
    check_shape_inference("SparseToDense", [rows, v, np.zeros((4, 1))])
    check_shape_inference("SparseToDense", [rows, v], output_first_dim=5)
    schema = registry.get("SparseToDense")
    op = op_def("SparseToDense", 2)
    assert schema.shape_fn(schema.parse_args(op), registry.TensorInfo((2,), np.int32),
                           registry.TensorInfo((2, 3))) == [None]  # data-dependent


# --- Unique -----------------------------------------------------------------------------

@pytest.mark.parametrize("itype", IDX_TYPES)
def test_unique_reference(itype):
    x = RNG.integers(-5, 6, size=20).astype(itype)

    def ref(x):
        u = np.array(sorted(set(x.tolist())), dtype=itype)
        return [u, np.array([list(u).index(v) for v in x], dtype=np.int32)]
    check_op("Unique", [x], ref, outputs=2)
    check_reference("Unique", [x], lambda x: ref(x)[:1], outputs=1)
    check_devices("Unique", [x], outputs=1)
    check_reference("Unique", [np.zeros(0, itype)],
                    lambda x: [np.zeros(0, itype), np.zeros(0, np.int32)], outputs=2)


def test_unique_golden_and_errors():
    u, r = run_op("Unique", [ints([5, 3, 5, -1, 3])], outputs=2)
    # golden from real Caffe2 1.10.2
    np.testing.assert_array_equal(u, [-1, 3, 5])
    np.testing.assert_array_equal(r, [2, 1, 2, 0, 1])
    with pytest.raises(OperatorError, match=r"Input should be a vector.*found shape \[1, 2\]"):
        run_op("Unique", [ints([[1, 2]])], outputs=2)
    with pytest.raises(OperatorError, match=r"Input should be a vector.*found shape \[\]"):
        run_op("Unique", [np.array(1, np.int32)])
    with pytest.raises(OperatorError, match=r"Unsupported type of tensor: float"):
        run_op("Unique", [np.array([1.0], np.float32)])
    with pytest.raises(SchemaError, match=r"Output size 3 not in range"):
        run_op("Unique", [ints([1])], outputs=3)
    with pytest.raises(GradientNotImplementedError,
                       match=r"One should not call gradient for operator Unique"):
        make_gradient(op_def("Unique", 1, 2), ["out0_grad", None])


# --- UnsortedSegmentSum / UnsortedSegmentMean -----------------------------------------

def segment_ref(x, ids, k, mean):
    out = np.zeros((k,) + x.shape[1:], np.float64)
    counts = np.zeros(k)
    for j, s in enumerate(ids):
        out[s] += x[j]
        counts[s] += 1
    if mean:
        shape = (k,) + (1,) * (x.ndim - 1)
        out /= np.maximum(counts, 1).reshape(shape)
    return out.astype(np.float32)


@pytest.mark.parametrize("mean", [False, True])
def test_unsorted_segment_reference(mean):
    op_type = "UnsortedSegmentMean" if mean else "UnsortedSegmentSum"
    x, ids = data((6, 2, 3)), ints([3, 0, 3, 3, 1, 0])
    check_reference(op_type, [x, ids], lambda x, i: [segment_ref(x, i, 4, mean)])
    check_devices(op_type, [x, ids], rtol=1e-6)
    check_op(op_type, [x, ids], lambda x, i: [segment_ref(x, i, 6, mean)], num_segments=6)
    check_op(op_type, [data((4,)), ints([1, 1, 0, 2])],
             lambda x, i: [segment_ref(x, i, 3, mean)], num_segments=3)
    check_reference(op_type, [np.zeros((0, 2), np.float32), ints([])],
                    lambda x, i: [np.zeros((0, 2), np.float32)])
    check_op(op_type, [np.zeros((0, 2), np.float32), ints([])],
             lambda x, i: [np.zeros((3, 2), np.float32)], num_segments=3)


def test_unsorted_segment_golden():
    v = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    # golden from real Caffe2 1.10.2
    np.testing.assert_array_equal(run_op("UnsortedSegmentSum", [v, ints([2, 0, 2])])[0],
                                  [[3, 4], [0, 0], [6, 8]])
    np.testing.assert_array_equal(run_op("UnsortedSegmentMean", [v, ints([2, 0, 2])])[0],
                                  [[3, 4], [0, 0], [3, 4]])


@pytest.mark.parametrize("op_type", ["UnsortedSegmentSum", "UnsortedSegmentMean"])
def test_unsorted_segment_errors(op_type):
    v = data((3, 2))
    with pytest.raises(OperatorError, match=r"Segment id out of range: 2, range 0 to 2"):
        run_op(op_type, [v, ints([2, 0, 2])], num_segments=2)
    with pytest.raises(OperatorError, match=r"Segment id out of range: -1, range 0 to 3"):
        run_op(op_type, [v, ints([2, 0, -1])])
    with pytest.raises(OperatorError, match=r"caller expects elements to be int, while "
                                            r"tensor contains long.*found int64"):
        run_op(op_type, [v, ints([2, 0, 2], np.int64)])
    with pytest.raises(OperatorError, match=r"Unsupported input type: double"):
        run_op(op_type, [v.astype(np.float64), ints([2, 0, 2])])
    with pytest.raises(OperatorError, match=r"Unsupported input type: int "):
        run_op(op_type, [v.astype(np.int32), ints([2, 0, 2])])
    with pytest.raises(OperatorError, match=r"DATA must have the same first dimension as "
                                            r"SEGMENT_IDS: expected 3 segment ids, found 2"):
        run_op(op_type, [v, ints([2, 0])])
    with pytest.raises(OperatorError, match=r"SEGMENT_IDS must be a vector"):
        run_op(op_type, [v, ints([[2, 0, 2]])])
    with pytest.raises(OperatorError, match=r"DATA must have at least 1 dim"):
        run_op(op_type, [np.array(1.0, np.float32), ints([0])])
    with pytest.raises(OperatorError, match=r"num_segments must be -1 \(infer\) or >= 0"):
        run_op(op_type, [v, ints([0, 0, 0])], num_segments=-2)
    with pytest.raises(ArgumentError, match=r"num_segments does not have the right field"):
        run_op(op_type, [v, ints([0, 0, 0])], num_segments=2.0)


@pytest.mark.parametrize("mean", [False, True])
def test_unsorted_segment_gradient(mean):
    op_type = "UnsortedSegmentMean" if mean else "UnsortedSegmentSum"
    ops, g_input = grad_wiring(op_type, 2, num_segments=4)
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        (op_type + "Gradient", ["out0_grad", "in1"], ["in0_grad"])]
    assert arg_pairs(ops[0]) == [("num_segments", 4)] and g_input == ["in0_grad", None]
    check_gradient(op_type, [data((5, 2)), ints([2, 0, 2, 2, 3])], wrt=[0])
    check_gradient(op_type, [data((3,)), ints([1, 1, 0])], wrt=[0], num_segments=4)


@pytest.mark.parametrize("mean", [False, True])
def test_unsorted_segment_gradient_ops(mean):
    op_type = ("UnsortedSegmentMean" if mean else "UnsortedSegmentSum") + "Gradient"
    g, ids = data((4, 2)), ints([3, 0, 3, 3, 1])

    def ref(g, ids):
        counts = np.bincount(ids, minlength=len(g)) if mean else np.ones(len(g))
        return [np.stack([g[s] / counts[s] for s in ids]).astype(np.float32)]
    check_op(op_type, [g, ids], ref)
    check_op(op_type, [data((3,)), ints([1, 1, 0])], ref)
    check_op(op_type, [g, ints([])], lambda g, i: [np.zeros((0, 2), np.float32)])
    with pytest.raises(OperatorError, match=r"Segment id out of range: 4, range 0 to 4"):
        run_op(op_type, [g, ints([4])])
    with pytest.raises(OperatorError, match=r"tensor contains long"):
        run_op(op_type, [g, ints([0], np.int64)])
    with pytest.raises(OperatorError, match=r"caller expects elements to be float, while "
                                            r"tensor contains double"):
        run_op(op_type, [g.astype(np.float64), ints([0])])
    with pytest.raises(OperatorError, match=r"SEGMENT_IDS must be a vector"):
        run_op(op_type, [g, ints([[0]])])
    with pytest.raises(GradientNotImplementedError, match=r"Gradient maker for operator"):
        make_gradient(op_def(op_type, 2), ["out0_grad"])


# --- shape rules and devices for the rest ------------------------------------------------

@pytest.mark.parametrize("op_type,inputs,args", [
    ("Gather", [data((3, 4)), ints([[2, 0], [1, -1]])], {}),
    ("Gather", [data((2, 3, 4)), ints([[[3, 0]], [[1, 1]], [[2, 2]]] * 2).reshape(2, 3, 2)],
     {"axis": 2, "match_outer": True}),
    ("Gather", [np.zeros((0, 2), np.float32), ints([1])], {}),
    ("BatchGather", [data((2, 3), np.float64), ints([2, 2, 0], np.int64)], {}),
    ("BatchGatherGradient", [data((2, 3)), ints([2, 2]), data((2, 2))], {}),
    ("UnsortedSegmentSum", [data((3, 2)), ints([1, 0, 1])], {"num_segments": 5}),
    ("UnsortedSegmentMean", [data((3, 2)), ints([1, 0, 1])], {"num_segments": 2}),
    ("UnsortedSegmentSumGradient", [data((2, 2)), ints([1, 0, 1])], {}),
    ("UnsortedSegmentMeanGradient", [data((2, 2)), ints([1, 0, 1])], {}),
])
def test_shape_rules_and_devices(op_type, inputs, args):
    check_shape_inference(op_type, inputs, **args)
    check_devices(op_type, inputs, **args)


def test_unique_shape_rule():
    check_shape_inference("Unique", [ints([4, 1, 4], np.int64)], outputs=2)
