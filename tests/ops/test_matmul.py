import re

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, EnforceError, OperatorError, SchemaError
from graphnet.registry import TensorInfo
from tests.opcheck import (check_devices, check_gradient, check_op, check_reference,
                           check_shape_inference, gradient_of, op_def, run_op)

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _fc_ref(axis=1, axis_w=1, transposed=False):
    def ref(x, w, b):
        ca = axis % x.ndim
        m, k = int(np.prod(x.shape[:ca])), int(np.prod(x.shape[ca:]))
        w2 = w.reshape(k, -1) if transposed else w.reshape(-1, k).T
        y = x.reshape(m, k).astype(np.float64) @ w2.astype(np.float64) + b
        return [y.astype(np.float32).reshape(x.shape[:ca] + (w2.shape[1],))]
    return ref


def _mm(a, b, ta, tb):
    a = np.swapaxes(a, -1, -2) if ta and a.ndim > 1 else a
    b = np.swapaxes(b, -1, -2) if tb and b.ndim > 1 else b
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


# --- FC / FCTransposed forward ------------------------------------------------------

@pytest.mark.parametrize("xs, ws, args", [
    ((5, 3), (4, 3), {}),
    ((1, 3), (1, 3), {}),
    ((2, 3, 5), (4, 15), {}),
    ((2, 3, 5), (4, 5), {"axis": 2}),
    ((2, 3, 5), (4, 5), {"axis": -1}),
    ((2, 3, 5), (2, 2, 5), {"axis": 2, "axis_w": 2}),
    ((2, 3, 5), (4, 3, 5), {"axis_w": 1}),
    ((6,), (4, 6), {"axis": 0}),
    ((0, 3), (4, 3), {}),
])
def test_fc_reference(xs, ws, args):
    n = int(np.prod(ws[:args.get("axis_w", 1) % len(ws)]))
    check_op("FC", [rand(*xs), rand(*ws), rand(n)], _fc_ref(args.get("axis", 1)), **args)


def test_fc_float16_compute_flag_is_accepted_on_cpu():
    x, w, b = rand(3, 2), rand(4, 2), rand(4)
    check_op("FC", [x, w, b], _fc_ref(), float16_compute=1)


def test_fc_golden_axis2():
    # golden from real Caffe2 1.10.2
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3) / 5 - 1
    w = np.arange(6, dtype=np.float32).reshape(2, 3) / 3 - 0.4
    b = np.array([0.25, -0.5], np.float32)
    want = np.array([[[0.54333335, -2.6066668], [0.42333335, -0.9266667]],
                     [[0.30333334, 0.75333345], [0.18333337, 2.4333334]]], np.float32)
    y, = run_op("FC", [x, w, b], axis=2)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("xs, ws, args", [
    ((5, 3), (3, 4), {}),
    ((2, 3, 5), (5, 4), {"axis": 2}),
    ((2, 3), (3, 2, 2), {"axis_w": 1}),
    ((0, 3), (3, 4), {}),
])
def test_fc_transposed_reference(xs, ws, args):
    n = int(np.prod(ws[args.get("axis_w", 1):]))
    check_op("FCTransposed", [rand(*xs), rand(*ws), rand(n)],
             _fc_ref(args.get("axis", 1), transposed=True), **args)


def test_fc_float16_on_virtual_gpu():
    x, w, b = rand(3, 4), rand(2, 4), rand(2)
    y, = run_op("FC", [x.astype(np.float16), w.astype(np.float16), b.astype(np.float16)],
                device=1)
    assert y.dtype == np.float16
    want = x.astype(np.float16).astype(np.float64) @ \
        w.astype(np.float16).astype(np.float64).T + b.astype(np.float16)
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=2e-3, atol=2e-3)


# --- FC errors ------------------------------------------------------------------------

def test_fc_dimension_mismatch_message():
    msg = "Dimension mismatch: X: [2, 3], W: [4, 2], b: [4], axis: 1, M: 2, N: 4, K: 3"
    with pytest.raises(OperatorError, match=re.escape(msg) + ".*expected.*12.*found 8"):
        run_op("FC", [rand(2, 3), rand(4, 2), rand(4)])


def test_fc_bias_mismatch():
    msg = "Dimension mismatch: X: [2, 3], W: [4, 3], b: [5], axis: 1, M: 2, N: 4, K: 3"
    with pytest.raises(OperatorError, match=re.escape(msg) + ".*N = 4.*found 5"):
        run_op("FC", [rand(2, 3), rand(4, 3), rand(5)])


@pytest.mark.parametrize("bias_shape", [(4, 1), (1, 4)])
def test_fc_bias_must_be_1d(bias_shape):
    with pytest.raises(OperatorError, match=r"b.dim\(\) == 1. 2 .*found shape"):
        run_op("FC", [rand(2, 3), rand(4, 3), rand(*bias_shape)])


@pytest.mark.parametrize("args, text", [
    ({"axis": 3}, "axis_index < ndims"), ({"axis": -4}, "axis_index >= -ndims"),
    ({"axis": 2, "axis_w": 5}, "axis_index < ndims.*axis 5 of W")])
def test_fc_axis_out_of_range(args, text):
    with pytest.raises(OperatorError, match=text):
        run_op("FC", [rand(2, 3, 5), rand(4, 5), rand(4)], **args)


def test_fc_1d_input_with_default_axis():
    with pytest.raises(OperatorError, match="axis_index < ndims.*axis 1 of X with shape"):
        run_op("FC", [rand(3), rand(4, 3), rand(4)])


def test_fc_zero_feature_dims_rejected():
    # Caffe2 divided by K (or N) here and died with SIGFPE.
    with pytest.raises(OperatorError, match="K=0, N=4"):
        run_op("FC", [rand(3, 0), rand(4, 0), rand(4)])
    with pytest.raises(OperatorError, match="K=2, N=0"):
        run_op("FC", [rand(3, 2), rand(0, 2), rand(0)])


@pytest.mark.parametrize("dtype, name", [(np.float64, "double"), (np.float16, "c10::Half"),
                                         (np.int32, "int")])
def test_fc_rejects_non_float32_on_cpu(dtype, name):
    x, w, b = rand(2, 3), rand(4, 3), rand(4)
    text = "Tensor type mismatch, caller expects elements to be float, while tensor " \
           "contains %s" % re.escape(name)
    with pytest.raises(OperatorError, match=text + ".*input X"):
        run_op("FC", [x.astype(dtype), w.astype(dtype), b.astype(dtype)])
    with pytest.raises(OperatorError, match=text + ".*input W"):
        run_op("FC", [x, w.astype(dtype), b])
    with pytest.raises(OperatorError, match=text + ".*input b"):
        run_op("FC", [x, w, b.astype(dtype)])


def test_fc_gpu_rejects_double_and_mixed_half():
    x, w, b = rand(2, 3), rand(4, 3), rand(4)
    with pytest.raises(OperatorError, match="Unsupported type of tensor: double"):
        run_op("FC", [x.astype(np.float64), w, b], device=0)
    with pytest.raises(OperatorError, match="expects elements to be c10::Half, while "
                                            "tensor contains float"):
        run_op("FC", [x.astype(np.float16), w, b.astype(np.float16)], device=0)


def test_fc_schema_checks():
    with pytest.raises(SchemaError, match=r"Input size 2 not in range \[min=3, max=3\]"):
        run_op("FC", [rand(2, 3), rand(4, 3)])
    ws = workspace.Workspace()
    for name, value in zip("xwb", (rand(3, 3), rand(3, 3), rand(3))):
        ws.FeedBlob(name, value)
    for out in "xwb":
        with pytest.raises(SchemaError, match="are set to be in-place but this is actually "
                                              "not supported by op FC"):
            ws.RunOperatorOnce(core.CreateOperator("FC", ["x", "w", "b"], [out]))
    with pytest.raises(ArgumentError, match="axis does not have the right field"):
        run_op("FC", [rand(2, 3), rand(4, 3), rand(4)], axis=1.0)


# --- FCGradient --------------------------------------------------------------------

def _fc_grad_ref(axis=1, transposed=False):
    def ref(x, w, dy):
        ca = axis % x.ndim
        m, k = int(np.prod(x.shape[:ca])), int(np.prod(x.shape[ca:]))
        x2, dy2 = x.reshape(m, k).astype(np.float64), dy.reshape(m, -1).astype(np.float64)
        w_nk = w.reshape(k, -1).T if transposed else w.reshape(-1, k)
        dw = (x2.T @ dy2) if transposed else (dy2.T @ x2)
        return [dw.reshape(w.shape).astype(np.float32), dy2.sum(0).astype(np.float32),
                (dy2 @ w_nk).reshape(x.shape).astype(np.float32)]
    return ref


@pytest.mark.parametrize("op_type, xs, ws, dys, args", [
    ("FCGradient", (5, 3), (4, 3), (5, 4), {}),
    ("FCGradient", (2, 3, 5), (4, 5), (2, 3, 4), {"axis": 2}),
    ("FCGradient", (2, 3, 5), (2, 2, 5), (2, 3, 4), {"axis": 2, "axis_w": 2}),
    ("FCTransposedGradient", (5, 3), (3, 4), (5, 4), {}),
    ("FCTransposedGradient", (2, 3), (3, 2, 2), (2, 4), {}),
])
def test_fc_gradient_reference(op_type, xs, ws, dys, args):
    transposed = op_type.startswith("FCTransposed")
    ins = [rand(*xs), rand(*ws), rand(*dys)]
    ref = _fc_grad_ref(args.get("axis", 1), transposed)
    check_op(op_type, ins, ref, outputs=3, rtol=1e-5, atol=1e-5, **args)
    check_reference(op_type, ins, lambda *v: ref(*v)[:2], outputs=2, rtol=1e-5, atol=1e-5,
                    **args)
    check_devices(op_type, ins, outputs=2, **args)


def test_fc_gradient_two_outputs_shape_rule():
    ins = [rand(4, 3), rand(2, 3), rand(4, 2)]
    schema = registry.get("FCGradient")
    infos = schema.shape_fn(schema.parse_args(op_def("FCGradient", 3, 2)),
                            *[TensorInfo.of(x) for x in ins])
    got = run_op("FCGradient", ins, outputs=2)
    assert [(i.shape, i.dtype) for i in infos[:2]] == [(g.shape, g.dtype) for g in got]


@pytest.mark.parametrize("outputs", [2, 3])
def test_fc_gradient_empty_x_gives_zeros(outputs):
    want = [np.zeros((4, 3), np.float32), np.zeros(4, np.float32),
            np.zeros((0, 3), np.float32)][:outputs]
    check_reference("FCGradient", [rand(0, 3), rand(4, 3), rand(0, 4)],
                    lambda *v: want, outputs=outputs)
    check_devices("FCGradient", [rand(0, 3), rand(4, 3), rand(0, 4)], outputs=outputs)


def test_fc_gradient_errors():
    msg = "Dimension mismatch: X: [2, 3], W: [4, 2], dY: [2, 4], axis: 1, M: 2, N: 4, K: 3"
    with pytest.raises(OperatorError, match=re.escape(msg)):
        run_op("FCGradient", [rand(2, 3), rand(4, 2), rand(2, 4)], outputs=3)
    with pytest.raises(OperatorError,
                       match="expected dY to hold M\\*N = 8 elements, found 10"):
        run_op("FCGradient", [rand(2, 3), rand(4, 3), rand(2, 5)], outputs=3)
    with pytest.raises(OperatorError, match="contains double"):
        run_op("FCGradient", [rand(2, 3, dtype=np.float64), rand(4, 3, dtype=np.float64),
                              rand(2, 4, dtype=np.float64)], outputs=3)
    for n in (1, 4):
        with pytest.raises(SchemaError,
                           match=r"Output size %d not in range \[min=2, max=3\]" % n):
            run_op("FCGradient", [rand(2, 3), rand(4, 3), rand(2, 4)], outputs=n)


def test_fc_gradient_float16_on_virtual_gpu():
    x, w, dy = rand(3, 4), rand(2, 4), rand(3, 2)
    h = [a.astype(np.float16) for a in (x, w, dy)]
    got = run_op("FCGradient", h, outputs=3, device=3)
    want = _fc_grad_ref()(*[a.astype(np.float32) for a in h])
    for g, w_ in zip(got, want):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype(np.float32), w_, rtol=5e-3, atol=5e-3)


# --- FC gradients --------------------------------------------------------------------

@pytest.mark.parametrize("op_type, xs, ws, args", [
    ("FC", (3, 4), (2, 4), {}),
    ("FC", (2, 2, 3), (2, 3), {"axis": 2}),
    ("FC", (2, 2, 3), (2, 1, 3), {"axis": 2, "axis_w": 2}),
    ("FC", (2, 2, 3), (2, 6), {}),
    ("FCTransposed", (3, 4), (4, 2), {}),
    ("FCTransposed", (2, 2, 3), (3, 2), {"axis": -1}),
])
def test_fc_gradient_check(op_type, xs, ws, args):
    n = int(np.prod(ws[args.get("axis_w", 1):] if op_type == "FCTransposed"
                    else ws[:args.get("axis_w", 1)]))
    check_gradient(op_type, [rand(*xs), rand(*ws), rand(n)], wrt=[0, 1, 2], **args)


@pytest.mark.parametrize("op_type", ["FC", "FCTransposed"])
def test_fc_gradient_wiring_matches_caffe2(op_type):
    # wiring from real Caffe2 1.10.2 GetGradientForOp
    x, w, b = rand(2, 2, 3), rand(2, 3), rand(2)
    ws = (3, 2) if op_type == "FCTransposed" else (2, 3)
    op, _, _, grads, ops = gradient_of(op_type, [x, rand(*ws), b], axis=2)
    assert [o.type for o in ops] == [op_type + "Gradient"]
    assert list(ops[0].input) == ["in0", "in1", "out0_grad"]
    assert list(ops[0].output) == ["in1_grad", "in2_grad", "in0_grad"]
    assert [(a.name, a.i) for a in ops[0].arg] == [("axis", 2)]
    assert ops[0].is_gradient_op
    assert sorted(grads) == [0, 1, 2]


# --- BatchMatMul ----------------------------------------------------------------------

@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_batch_matmul_reference(ta, tb, batch):
    m, k, n = 3, 4, 2
    a = rand(*(batch + ((k, m) if ta else (m, k))))
    b = rand(*(batch + ((n, k) if tb else (k, n))))
    check_op("BatchMatMul", [a, b],
             lambda a, b: [_mm(a, b, ta, tb).astype(np.float32)], trans_a=ta, trans_b=tb)


@pytest.mark.parametrize("sa, sb, args, want_shape", [
    ((2, 3, 4), (4, 5), {"broadcast": 1}, (2, 3, 5)),
    ((4, 5), (2, 5, 3), {"broadcast": 1}, (2, 4, 3)),
    ((2, 1, 3, 4), (3, 4, 5), {"broadcast": 1}, (2, 3, 3, 5)),
    ((1, 3, 4), (4, 5), {}, (1, 3, 5)),
    ((1, 3, 4), (2, 5, 4), {"broadcast": 1, "trans_b": 1}, (2, 3, 5)),
])
def test_batch_matmul_broadcast(sa, sb, args, want_shape):
    got = check_op("BatchMatMul", [rand(*sa), rand(*sb)],
                   lambda a, b: [_mm(a, b, 0, args.get("trans_b", 0)).astype(np.float32)],
                   **args)
    assert got[0].shape == want_shape


def test_batch_matmul_broadcast_golden():
    # golden from real Caffe2 1.10.2
    a = np.arange(6, dtype=np.float32).reshape(2, 1, 3) / 4 - 0.5
    b = np.arange(6, dtype=np.float32).reshape(3, 2) / 8 - 0.7
    y, = run_op("BatchMatMul", [a, b], broadcast=1)
    want = [[[0.46249998, 0.36874998]], [[-0.54999995, -0.36249995]]]
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("sa, sb, args, want_shape", [
    ((3,), (3,), {}, (1,)),
    ((3,), (2, 3, 4), {}, (2, 4)),
    ((3,), (2, 4, 3), {"trans_b": 1}, (2, 4)),
    ((3,), (3, 4), {}, (4,)),
    ((2, 3, 4), (4,), {}, (2, 3)),
    ((3, 3), (3,), {"trans_a": 1}, (3,)),
    ((2, 4, 3), (4,), {"trans_a": 1}, (2, 3)),   # Caffe2 gave a wrong (2, 4) here
])
def test_batch_matmul_vectors_as_numpy(sa, sb, args, want_shape):
    def ref(a, b):
        y = _mm(a, b, args.get("trans_a", 0), args.get("trans_b", 0))
        return [np.atleast_1d(y).astype(np.float32)]
    got = check_op("BatchMatMul", [rand(*sa), rand(*sb)], ref, **args)
    assert got[0].shape == want_shape


@pytest.mark.parametrize("sa, sb, args, want_shape", [
    ((0, 3, 4), (0, 4, 5), {}, (0, 3, 5)),
    ((2, 3, 0), (2, 0, 5), {}, (2, 3, 5)),
    ((0, 3, 4), (2, 4, 5), {"broadcast": 1}, (0, 3, 5)),
])
def test_batch_matmul_empty(sa, sb, args, want_shape):
    got = check_op("BatchMatMul", [rand(*sa), rand(*sb)],
                   lambda a, b: [np.zeros(want_shape, np.float32)], **args)
    assert got[0].shape == want_shape


def test_batch_matmul_float16_on_virtual_gpu():
    a, b = rand(2, 3, 4).astype(np.float16), rand(2, 4, 2).astype(np.float16)
    y, = run_op("BatchMatMul", [a, b], device=3)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), _mm(a, b, 0, 0), rtol=3e-3, atol=3e-3)


@pytest.mark.parametrize("sa, sb, args, text", [
    ((2, 3), (2, 4), {}, r"B_dims\[B_ndim - 2\] == K. 2 vs 3"),
    ((2, 3), (4, 2), {"trans_b": 1}, r"B_dims\[B_ndim - 1\] == K. 2 vs 3"),
    ((3,), (4,), {}, r"A.numel\(\) == B.numel\(\). 3 vs 4"),
    ((3,), (3, 4, 5), {}, r"B_dims\[B_ndim - 2\] == N. 4 vs 3"),
    ((2, 3, 4), (5,), {}, r"A_dims\[A_ndim - 1\] == N. 4 vs 5"),
    ((2, 3, 4), (3, 4, 5), {}, r"A_broadcast_dims\[i\] == B_broadcast_dims\[i\].*2 vs 3"),
    ((2, 2, 3, 4), (3, 4, 5), {"broadcast": 1}, "cannot broadcast"),
    ((2, 3, 4), (4, 5), {}, "broadcast_.*needs broadcast=1"),
    ((0, 3, 4), (1, 4, 5), {}, "broadcast_."),
])
def test_batch_matmul_shape_errors(sa, sb, args, text):
    with pytest.raises(OperatorError, match=text):
        run_op("BatchMatMul", [rand(*sa), rand(*sb)], **args)
    schema = registry.get("BatchMatMul")
    with pytest.raises(EnforceError, match=text):
        schema.shape_fn(schema.parse_args(op_def("BatchMatMul", 2, **args)),
                        TensorInfo(sa), TensorInfo(sb))


@pytest.mark.parametrize("dtype, name", [(np.float64, "double"), (np.float16, "c10::Half"),
                                         (np.int32, "int")])
def test_batch_matmul_dtypes_on_cpu(dtype, name):
    a, b = rand(2, 3), rand(3, 4)
    with pytest.raises(OperatorError, match="Unsupported type of tensor: %s.*input A"
                       % re.escape(name)):
        run_op("BatchMatMul", [a.astype(dtype), b.astype(dtype)])
    with pytest.raises(OperatorError, match="caller expects elements to be float, while "
                       "tensor contains %s.*input B" % re.escape(name)):
        run_op("BatchMatMul", [a, b.astype(dtype)])


def test_batch_matmul_schema_and_args():
    with pytest.raises(SchemaError, match=r"Input size 3 not in range \[min=2, max=2\]"):
        run_op("BatchMatMul", [rand(2, 2)] * 3)
    with pytest.raises(ArgumentError, match="trans_a does not have the right field"):
        run_op("BatchMatMul", [rand(2, 3), rand(3, 4)], trans_a=1.0)
    with pytest.raises(OperatorError, match="rank >= 1"):
        run_op("BatchMatMul", [np.float32(2.0).reshape(()), rand(3)])


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_batch_matmul_gradient_check(ta, tb, batch):
    m, k, n = 2, 3, 2
    a = rand(*(batch + ((k, m) if ta else (m, k))))
    b = rand(*(batch + ((n, k) if tb else (k, n))))
    check_gradient("BatchMatMul", [a, b], wrt=[0, 1], trans_a=ta, trans_b=tb)


# wiring from real Caffe2 1.10.2 GetGradientForOp (A=in0, B=in1, G=out0_grad)
_BMM_TABLE = {
    (0, 0): [(["out0_grad", "in1"], [("trans_b", 1)]),
             (["in0", "out0_grad"], [("trans_a", 1)])],
    (0, 1): [(["out0_grad", "in1"], []), (["out0_grad", "in0"], [("trans_a", 1)])],
    (1, 0): [(["in1", "out0_grad"], [("trans_b", 1)]), (["in0", "out0_grad"], [])],
    (1, 1): [(["in1", "out0_grad"], [("trans_a", 1), ("trans_b", 1)]),
             (["out0_grad", "in0"], [("trans_a", 1), ("trans_b", 1)])],
}


@pytest.mark.parametrize("ta, tb", sorted(_BMM_TABLE))
def test_batch_matmul_gradient_wiring(ta, tb):
    a = rand(*((3, 2) if ta else (2, 3)))
    b = rand(*((2, 3) if tb else (3, 2)))
    _, _, _, grads, ops = gradient_of("BatchMatMul", [a, b], trans_a=ta, trans_b=tb,
                                      broadcast=0)
    assert [o.type for o in ops] == ["BatchMatMul"] * 2
    assert [list(o.output) for o in ops] == [["in0_grad"], ["in1_grad"]]
    for o, (inputs, args) in zip(ops, _BMM_TABLE[(ta, tb)]):
        assert list(o.input) == inputs
        assert [(x.name, x.i) for x in o.arg] == args  # forward args are not copied
        assert o.is_gradient_op


def test_batch_matmul_gradient_refuses_broadcast():
    from graphnet.gradient_maker import make_gradient
    op = op_def("BatchMatMul", 2, broadcast=1)
    with pytest.raises(EnforceError, match=re.escape(
            "Gradient is currently not supported with broadcast=1 for BatchMatMul.")):
        make_gradient(op, ["out0_grad"])


def test_batch_matmul_same_blob_gradient_names():
    from graphnet.gradient_maker import make_gradient
    op = core.CreateOperator("BatchMatMul", ["T", "T"], ["Z"], trans_b=1)
    ops, g_input = make_gradient(op, ["Z_grad"])
    assert [(list(o.input), list(o.output)) for o in ops] == [
        (["Z_grad", "T"], ["T_grad"]), (["Z_grad", "T"], ["T_grad"])]
    assert g_input == ["T_grad", "T_grad"]


# --- MatMul ---------------------------------------------------------------------------

def _matmul_ref(axis_a=1, axis_b=1, ta=0, tb=0):
    def ref(a, b, like=None):
        def flat(x, axis):
            axis = axis % x.ndim
            return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
        a2, b2 = flat(a, axis_a), flat(b, axis_b)
        y = _mm(a2, b2, ta, tb).astype(np.float32)
        return [y if like is None else y.reshape(like.shape)]
    return ref


@pytest.mark.parametrize("sa, sb, args", [
    ((2, 3), (3, 4), {}),
    ((2, 3), (4, 3), {"trans_b": 1}),
    ((3, 2), (3, 4), {"trans_a": 1}),
    ((3, 2), (4, 3), {"trans_a": 1, "trans_b": 1}),
    ((3, 2), (4, 3), {"trans_a": 2, "trans_b": 1}),   # any nonzero int transposes
    ((2, 3, 4), (12, 5), {}),
    ((2, 3, 4), (4, 5), {"axis_a": 2}),
    ((2, 3, 4), (4, 5), {"axis_a": -1}),
    ((2, 3, 4), (2, 2, 5), {"axis_a": 2, "axis_b": 2}),
    ((2, 3), (6, 4), {"axis_a": 0}),
    ((0, 3), (3, 4), {}),
    ((2, 0), (0, 4), {}),
])
def test_matmul_reference(sa, sb, args):
    ref = _matmul_ref(args.get("axis_a", 1), args.get("axis_b", 1),
                      args.get("trans_a", 0), args.get("trans_b", 0))
    check_op("MatMul", [rand(*sa), rand(*sb)], ref, **args)


def test_matmul_golden():
    # golden from real Caffe2 1.10.2
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5
    b = np.arange(12, dtype=np.float32).reshape(3, 4) / 8 - 0.7
    y, = run_op("MatMul", [a, b])
    np.testing.assert_allclose(y, [[0.39999998, 0.30624998, 0.21249999, 0.11874999],
                                   [-0.04999997, 0.13750003, 0.32500005, 0.51250005]],
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("like", [np.zeros((4, 2), np.float32),
                                  np.zeros((2, 2, 2), np.int32)])
def test_matmul_third_input_gives_shape(like):
    check_op("MatMul", [rand(2, 3), rand(3, 4), like], _matmul_ref())


def test_matmul_third_input_wrong_size():
    with pytest.raises(OperatorError,
                       match="expected it to hold 8 elements.*found shape \\[4, 3\\]"):
        run_op("MatMul", [rand(2, 3), rand(3, 4), rand(4, 3)])


@pytest.mark.parametrize("sa, sb, args, text", [
    ((2, 3), (4, 3), {}, "Dimension mismatch: A: 2 3, B: 4 3"),
    ((3, 2), (4, 3), {"trans_a": 1, "trans_b": 1, "axis_a": 0},
     "Dimension mismatch: trans\\(A\\): 6 1, trans\\(B\\): 3 4"),
    ((3,), (3, 4), {}, "axis_index < ndims.*axis 1 of A"),
    ((2, 3, 4), (2, 2, 5), {"axis_a": 2, "axis_b": 3}, "axis_index < ndims.*axis 3 of B"),
])
def test_matmul_shape_errors(sa, sb, args, text):
    with pytest.raises(OperatorError, match=text):
        run_op("MatMul", [rand(*sa), rand(*sb)], **args)


@pytest.mark.parametrize("device", [None, 1])
@pytest.mark.parametrize("dtype, name", [(np.float64, "double"), (np.float16, "c10::Half"),
                                         (np.int64, "long")])
def test_matmul_is_float32_only(device, dtype, name):
    text = "caller expects elements to be float, while tensor contains %s" % re.escape(name)
    with pytest.raises(OperatorError, match=text + ".*input A"):
        run_op("MatMul", [rand(2, 3, dtype=dtype), rand(3, 4, dtype=dtype)], device=device)
    with pytest.raises(OperatorError, match=text + ".*input B"):
        run_op("MatMul", [rand(2, 3), rand(3, 4, dtype=dtype)], device=device)


def test_matmul_schema_checks():
    with pytest.raises(SchemaError, match=r"Input size 4 not in range \[min=2, max=3\]"):
        run_op("MatMul", [rand(2, 2)] * 4)
    with pytest.raises(SchemaError, match=r"Input size 1 not in range"):
        run_op("MatMul", [rand(2, 2)])
    with pytest.raises(ArgumentError, match="trans_b does not have the right field"):
        run_op("MatMul", [rand(2, 3), rand(3, 4)], trans_b=0.5)


@pytest.mark.parametrize("sa, sb, args", [
    ((2, 3), (3, 4), {}),
    ((2, 3), (4, 3), {"trans_b": 1}),
    ((3, 2), (3, 4), {"trans_a": 1}),
    ((3, 2), (4, 3), {"trans_a": 1, "trans_b": 1}),
    ((2, 3), (6, 2), {"axis_a": 0}),
])
def test_matmul_gradient_check(sa, sb, args):
    check_gradient("MatMul", [rand(*sa), rand(*sb)], wrt=[0, 1], **args)


# wiring from real Caffe2 1.10.2 GetGradientForOp (axis args pass through a C++ bool)
_MM_TABLE = {
    (0, 0): [(["out0_grad", "in1", "in0"], [("trans_b", 1), ("axis_b", "b")]),
             (["in0", "out0_grad", "in1"], [("trans_a", 1), ("axis_a", "a")])],
    (0, 1): [(["out0_grad", "in1", "in0"], [("axis_b", "b")]),
             (["out0_grad", "in0", "in1"], [("trans_a", 1), ("axis_b", "a")])],
    (1, 0): [(["in1", "out0_grad", "in0"], [("trans_b", 1), ("axis_a", "b")]),
             (["in0", "out0_grad", "in1"], [("axis_a", "a")])],
    (1, 1): [(["in1", "out0_grad", "in0"],
              [("trans_a", 1), ("trans_b", 1), ("axis_a", "b")]),
             (["out0_grad", "in0", "in1"],
              [("trans_a", 1), ("trans_b", 1), ("axis_b", "a")])],
}


@pytest.mark.parametrize("ta, tb", sorted(_MM_TABLE))
@pytest.mark.parametrize("axes, passed", [({}, (1, 1)),
                                          ({"axis_a": 0, "axis_b": -1}, (0, 1)),
                                          ({"axis_a": 2, "axis_b": 1}, (1, 1))])
def test_matmul_gradient_wiring(ta, tb, axes, passed):
    from graphnet.gradient_maker import make_gradient
    op = op_def("MatMul", 2, trans_a=ta, trans_b=tb, **axes)
    ops, g_input = make_gradient(op, ["out0_grad"])
    assert g_input == ["in0_grad", "in1_grad"]
    assert [o.type for o in ops] == ["MatMul"] * 2
    assert [list(o.output) for o in ops] == [["in0_grad"], ["in1_grad"]]
    value = {"a": passed[0], "b": passed[1]}
    for o, (inputs, args) in zip(ops, _MM_TABLE[(ta, tb)]):
        assert list(o.input) == inputs
        assert [(x.name, x.i) for x in o.arg] == [(n, value.get(v, v)) for n, v in args]


def test_matmul_gradient_with_axis_a_2_fails_like_caffe2():
    # Caffe2 passes axis_a=1 on to the dB op, which then cannot multiply (golden text
    # from real Caffe2 1.10.2); dA still comes out right.
    a, b = rand(2, 3, 4), rand(4, 5)
    with pytest.raises(OperatorError, match=re.escape("Dimension mismatch: trans(A): 12 2, "
                                                      "B: 6 5")):
        gradient_of("MatMul", [a, b], axis_a=2)


def test_shape_rules_feed_static_inference():
    from graphnet.shape_inference import infer
    net = core.Net("n")
    net.FC(["x", "w", "b"], "y", axis=2)
    net.BatchMatMul(["y", "y"], "z", trans_b=1)
    net.MatMul(["x", "m"], "p", axis_a=2)
    infos = infer([net.Proto()], {"x": TensorInfo((2, 3, 5)), "w": TensorInfo((4, 5)),
                                  "b": TensorInfo((4,)), "m": TensorInfo((5, 6))})
    assert infos["y"].shape == (2, 3, 4)
    assert infos["z"].shape == (2, 3, 3)
    assert infos["p"].shape == (6, 6)


def test_check_shape_inference_for_every_forward_op():
    check_shape_inference("FC", [rand(2, 3), rand(4, 3), rand(4)])
    check_shape_inference("FCTransposed", [rand(2, 3), rand(3, 4), rand(4)])
    check_shape_inference("BatchMatMul", [rand(2, 3, 4), rand(4, 5)], broadcast=1)
    check_shape_inference("MatMul", [rand(2, 3), rand(3, 4), rand(2, 2, 2)])
