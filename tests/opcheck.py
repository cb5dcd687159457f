"""Test harness for operators: reference, shape-inference and device checks.

    outs = run_op("Relu", [x])                       # CPU
    outs = run_op("Relu", [x], device=2)             # emulated GPU 2
    check_op("Relu", [x], lambda x: [np.maximum(x, 0)])

Expected values always come from a numpy formula written in the test, never
from graphnet's kernels.
"""

import numpy as np

from graphnet import core, registry, workspace
from graphnet.devices import CPU, CUDA_TYPE, Device
from graphnet.proto import caffe2_pb2
from graphnet.registry import TensorInfo

__all__ = ["run_op", "check_op", "check_shape_inference", "check_devices", "check_gradient", "gradient_of",
           "check_reference", "gpu", "cpu", "op_def"]


def cpu():
    return core.DeviceOption(caffe2_pb2.CPU)


def gpu(d):
    return core.DeviceOption(CUDA_TYPE, d)


def _names(inputs, prefix="in"):
    return ["%s%d" % (prefix, i) for i in range(len(inputs))]


def op_def(op_type, n_inputs, outputs=1, device=None, **args):
    """An OperatorDef reading in0..inN-1 and writing out0..outK-1 (or given names)."""
    outs = outputs if isinstance(outputs, (list, tuple)) else _names(range(outputs), "out")
    option = None if device is None else gpu(device)
    return core.CreateOperator(op_type, _names(range(n_inputs)), list(outs),
                               device_option=option, **args)


def feed_inputs(ws, op, inputs, device=None):
    """Feed inputs where the op's schema wants them (CPU-only slots stay on CPU)."""
    schema = registry.get(op.type)
    op_device = CPU if device is None else Device(CUDA_TYPE, device)
    want, _ = schema.devices(schema, op_device, len(inputs), len(op.output),
                             [None] * len(inputs))
    for name, value, where in zip(op.input, inputs, want):
        where = where or op_device
        option = cpu() if not where.is_gpu else gpu(where.id)
        ws.FeedBlob(name, value, device_option=option)


def run_op(op_type, inputs, outputs=1, device=None, ws=None, return_ws=False, **args):
    """Run one op on fresh blobs; returns the list of fetched outputs."""
    ws = ws or workspace.Workspace("opcheck")
    op = op_def(op_type, len(inputs), outputs, device, **args)
    feed_inputs(ws, op, inputs, device)
    before = {n: ws.FetchBlob(n) for n in op.input}
    ws.RunOperatorOnce(op)
    outs = [ws.FetchBlob(n) for n in op.output]
    for name, value in before.items():
        if name not in op.output:
            np.testing.assert_array_equal(ws.FetchBlob(name), value,
                                          err_msg="%s modified input %s" % (op_type, name))
    _check_no_alias(ws, op)
    return (outs, ws) if return_ws else outs


def _check_no_alias(ws, op):
    """Kernels must not hand out an input's memory under another blob name."""
    blobs = ws._blobs
    for o in op.output:
        for i in op.input:
            if i == o:
                continue
            a, b = blobs[o].value, blobs[i].value
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.size:
                assert not np.shares_memory(a, b), \
                    "%s output %s shares memory with input %s" % (op.type, o, i)


def check_reference(op_type, inputs, reference, outputs=1, rtol=1e-5, atol=1e-6,
                    device=None, **args):
    """Outputs equal `reference(*inputs)` (a list of arrays), dtypes included."""
    got = run_op(op_type, inputs, outputs, device=device, **args)
    want = reference(*inputs)
    assert len(got) >= len(want), (len(got), len(want))
    for k, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape, "%s output %d: shape %s, expected %s" % (
            op_type, k, g.shape, w.shape)
        assert g.dtype == w.dtype, "%s output %d: dtype %s, expected %s" % (
            op_type, k, g.dtype, w.dtype)
        if g.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                       err_msg="%s output %d" % (op_type, k))
        else:
            np.testing.assert_array_equal(g, w, err_msg="%s output %d" % (op_type, k))
    return got


def check_shape_inference(op_type, inputs, outputs=1, **args):
    """The schema's shape rule predicts the real outputs' shapes and dtypes."""
    op = op_def(op_type, len(inputs), outputs, **args)
    schema = registry.get(op_type)
    assert schema.shape_fn is not None, "%s has no shape rule" % op_type
    infos = schema.shape_fn(schema.parse_args(op),
                            *[TensorInfo(np.shape(x), np.asarray(x).dtype) for x in inputs])
    got = run_op(op_type, inputs, outputs, **args)
    # Rules may describe every optional output; compare the ones the op produced.
    assert len(infos) >= len(got), (len(infos), len(got))
    for k, (info, value) in enumerate(zip(infos, got)):
        if info is None:
            continue
        assert info.shape == value.shape, "%s output %d: inferred %s, real %s" % (
            op_type, k, info.shape, value.shape)
        assert info.dtype == value.dtype, "%s output %d: inferred %s, real %s" % (
            op_type, k, info.dtype, value.dtype)


def check_devices(op_type, inputs, outputs=1, devices=(0, 1, 3), rtol=0, atol=0, **args):
    """Same results on the CPU and on each emulated GPU; outputs live on the op's
    device (or where the schema puts them)."""
    base = run_op(op_type, inputs, outputs, **args)
    schema = registry.get(op_type)
    for d in devices:
        got, ws = run_op(op_type, inputs, outputs, device=d, return_ws=True, **args)
        op = op_def(op_type, len(inputs), outputs, d, **args)
        _, expected = schema.devices(schema, Device(CUDA_TYPE, d), len(inputs),
                                     len(op.output), [None] * len(inputs))
        for k, (g, b) in enumerate(zip(got, base)):
            if g.dtype.kind in "fc" and (rtol or atol):
                np.testing.assert_allclose(g, b, rtol=rtol, atol=atol)
            else:
                np.testing.assert_array_equal(g, b, err_msg="%s on gpu_%d" % (op_type, d))
            where = ws.BlobDevice(op.output[k])
            if expected[k] is not None:
                assert where == expected[k], "%s output %d on %s, expected %s" % (
                    op_type, k, where, expected[k])


def check_op(op_type, inputs, reference, outputs=1, rtol=1e-5, atol=1e-6, **args):
    """The triad minus gradients: reference values, shape inference, devices."""
    got = check_reference(op_type, inputs, reference, outputs, rtol, atol, **args)
    check_shape_inference(op_type, inputs, outputs, **args)
    check_devices(op_type, inputs, outputs, **args)
    return got


def _densify(grad, like):
    """A GradientSlice's (indices, values) as a dense array shaped like `like`."""
    indices, values = grad
    dense = np.zeros(like.shape, dtype=np.float64)
    np.add.at(dense, np.asarray(indices).reshape(-1),
              np.asarray(values, dtype=np.float64).reshape((-1,) + like.shape[1:]))
    return dense


def gradient_of(op_type, inputs, outputs=1, grad_outputs=None, device=None, seed=0,
                **args):
    """Run the op forward, then its gradient ops (from the registered maker) with
    random output gradients dY. Returns (op, forward outs, dYs, {input k: grad})
    where sparse gradients come back as (indices, values) tuples."""
    from graphnet.gradient_maker import GradientSlice, make_gradient
    rng = np.random.default_rng(seed)
    ws = workspace.Workspace("gradcheck")
    op = op_def(op_type, len(inputs), outputs, device, **args)
    feed_inputs(ws, op, inputs, device)
    ws.RunOperatorOnce(op)
    outs = [ws.FetchBlob(n) for n in op.output]
    if grad_outputs is None:
        grad_outputs = [k for k, o in enumerate(outs) if o.dtype.kind == "f"]
    dys, g_output = {}, [None] * len(op.output)
    for k in grad_outputs:
        dys[k] = rng.standard_normal(outs[k].shape).astype(outs[k].dtype)
        g_output[k] = op.output[k] + "_grad"
        where = ws.BlobDevice(op.output[k])
        ws.FeedBlob(g_output[k], dys[k], device_option=gpu(where.id) if where.is_gpu
                    else cpu())
    ops, g_input = make_gradient(op, g_output)
    ws.RunOperatorsOnce(ops)
    grads = {}
    for k, gi in enumerate(g_input):
        if isinstance(gi, GradientSlice):
            grads[k] = (ws.FetchBlob(gi.indices), ws.FetchBlob(gi.values))
        elif gi is not None:
            grads[k] = ws.FetchBlob(gi)
    return op, outs, dys, grads, ops


def check_gradient(op_type, inputs, wrt, outputs=1, grad_outputs=None, stepsize=1e-2,
                   threshold=5e-3, device=None, **args):
    """Finite-difference check of the gradient of sum_k <Y_k, dY_k> w.r.t. each
    input index in `wrt`, computed by the op's own gradient ops.

    Central differences in the op's dtype, compared as
    |numeric - analytic| <= threshold * max(1, |analytic|).
    """
    op, outs, dys, grads, _ = gradient_of(op_type, inputs, outputs, grad_outputs,
                                          device, **args)
    ws = workspace.Workspace("fd")

    def loss(values):
        feed_inputs(ws, op, values, device)
        ws.RunOperatorOnce(op)
        return sum(float(np.sum(ws.FetchBlob(op.output[k]).astype(np.float64) * dy))
                   for k, dy in dys.items())

    for i in wrt:
        assert i in grads, "%s produced no gradient for input %d" % (op_type, i)
        analytic = grads[i]
        if isinstance(analytic, tuple):
            analytic = _densify(analytic, np.asarray(inputs[i]))
        numeric = np.zeros(np.shape(inputs[i]), dtype=np.float64)
        for j in np.ndindex(*numeric.shape):
            values = [np.array(x, copy=True) for x in inputs]
            values[i][j] += stepsize
            plus = loss(values)
            values[i][j] -= 2 * stepsize
            minus = loss(values)
            numeric[j] = (plus - minus) / (2 * stepsize)
        analytic = np.asarray(analytic, dtype=np.float64).reshape(numeric.shape)
        bad = np.abs(numeric - analytic) > threshold * np.maximum(1.0, np.abs(analytic))
        assert not bad.any(), "%s d/d input %d: numeric %s vs analytic %s" % (
            op_type, i, numeric[bad][:5], analytic[bad][:5])
    return grads
