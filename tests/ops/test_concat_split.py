"""Concat and Split (reference, shape inference, devices, gradients, errors).
Expected values are numpy formulas or goldens from real Caffe2 1.10.2.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import check_gradient, check_op, gpu, gradient_of, run_op
from tests.ops.shape_helpers import (DTYPES, check_golden_wiring, check_in_place_refused,
                                     golden_id, rand)


# --- Concat ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_reference_dtypes(dtype):
    a, b, c = rand((2, 3, 4), dtype, 1), rand((2, 1, 4), dtype, 2), rand((2, 2, 4), dtype, 3)
    check_op("Concat", [a, b, c],
             lambda *xs: [np.concatenate(xs, axis=1), np.array([3, 1, 2], np.int32)],
             outputs=2, axis=1)


@pytest.mark.parametrize("axis", [0, 2, -1, -3])
def test_concat_axes(axis):
    xs = [rand((2, 3, 4), seed=s) for s in range(3)]
    ca = axis % 3
    check_op("Concat", xs, lambda *xs: [np.concatenate(xs, axis=ca),
                                        np.array([xs[0].shape[ca]] * 3, np.int32)],
             outputs=2, axis=axis)


def test_concat_default_axis_is_1_and_nhwc_is_3():
    a, b = rand((2, 3, 2, 2), seed=1), rand((2, 1, 2, 2), seed=2)
    check_op("Concat", [a, b], lambda a, b: [np.concatenate([a, b], 1),
                                             np.array([3, 1], np.int32)], outputs=2)
    c, d = rand((2, 2, 2, 3), seed=3), rand((2, 2, 2, 5), seed=4)
    check_op("Concat", [c, d], lambda c, d: [np.concatenate([c, d], 3),
                                             np.array([3, 5], np.int32)],
             outputs=2, order="NHWC")


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -4])
def test_concat_add_axis_stacks(axis):
    xs = [rand((2, 3, 4), seed=s) for s in range(2)]
    check_op("Concat", xs, lambda *xs: [np.stack(xs, axis=axis), np.ones(2, np.int32)],
             outputs=2, axis=axis, add_axis=1)


def test_concat_add_axis_ignored_without_axis():
    # golden from real Caffe2 1.10.2: add_axis=1 alone -> (2, 6, 4), split_info [3, 3]
    x = rand((2, 3, 4))
    out = run_op("Concat", [x, x], 2, add_axis=1)
    assert out[0].shape == (2, 6, 4) and out[1].tolist() == [3, 3]


def test_concat_edge_cases():
    # single input, empty input, 0-d inputs stacked
    x = rand((2, 3))
    check_op("Concat", [x], lambda x: [x.copy(), np.array([3], np.int32)], outputs=2, axis=1)
    e = np.zeros((2, 0, 3), np.float32)
    y = rand((2, 2, 3))
    check_op("Concat", [e, y], lambda e, y: [y.copy(), np.array([0, 2], np.int32)],
             outputs=2, axis=1)
    s, t = np.array(1.5, np.float32), np.array(-2.0, np.float32)
    check_op("Concat", [s, t], lambda s, t: [np.array([1.5, -2.0], np.float32),
                                             np.ones(2, np.int32)],
             outputs=2, axis=0, add_axis=1)


@pytest.mark.parametrize("axis,add_axis", [(0, 0), (1, 0), (2, 0), (1, 1), (3, 1)])
def test_concat_of_many_inputs_under_graph_capture_copies_each_input(axis, add_axis):
    """Under CUDA graph capture, Concat of more than 8 inputs joins by one copy per
    input (CuPy's one-kernel join uploads an address table, which capture refuses)."""
    from types import SimpleNamespace
    from graphnet.executors.cuda import checks
    from graphnet.ops import concat_split
    widths = [3, 1, 0, 2, 4, 1, 2, 5, 1, 2] if not add_axis else [1] * 10
    xs = []
    for k, width in enumerate(widths):
        shape = [2, 3, 4]
        if not add_axis:
            shape[axis] = width
        xs.append(rand(tuple(shape), seed=k))
    want = np.stack(xs, axis=axis) if add_axis else np.concatenate(xs, axis=axis)
    refused = SimpleNamespace(  # a CuPy stand-in whose one-kernel joins must not run
        empty=np.empty, stack=None, concatenate=None)
    with checks.capturing():
        got = concat_split._join(refused, xs, axis, add_axis)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    joined = SimpleNamespace(empty=None, stack=np.stack, concatenate=np.concatenate)
    np.testing.assert_array_equal(concat_split._join(joined, xs, axis, add_axis), want)
    with checks.capturing():  # 8 inputs or fewer: CuPy's copies, capturable as they are
        np.testing.assert_array_equal(concat_split._join(joined, xs[:8], axis, add_axis),
                                      np.stack(xs[:8], axis) if add_axis
                                      else np.concatenate(xs[:8], axis))


def test_concat_split_info_lives_on_cpu():
    ws = workspace.Workspace()
    for i in range(2):
        ws.FeedBlob("x%d" % i, rand((2, 2), seed=i), device_option=gpu(2))
    ws.RunOperatorOnce(core.CreateOperator("Concat", ["x0", "x1"], ["y", "info"],
                                           axis=0, device_option=gpu(2)))
    assert ws.BlobDevice("y") == Device(1, 2)
    assert ws.BlobDevice("info") == CPU
    assert ws.FetchBlob("info").dtype == np.int32


def test_concat_errors():
    x = rand((2, 3, 4))
    with pytest.raises(SchemaError, match=r"Output size 1 not in range \[min=2, max=2\]"):
        run_op("Concat", [x, x], 1, axis=1)
    with pytest.raises(ArgumentError, match="You shouldn't specify both the dim to concat, "
                                            "and the order in the case of 4-D images"):
        run_op("Concat", [x, x], 2, axis=0, order="NCHW")
    with pytest.raises(ArgumentError, match="Unsupported storage order: 'NDHWC'"):
        run_op("Concat", [x, x], 2, order="NDHWC")
    with pytest.raises(ArgumentError, match="axis"):
        run_op("Concat", [x, x], 2, axis=1.0)
    # golden texts from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="All inputs must have the same type, expected: "
                                            "float but got: double for input: 1"):
        run_op("Concat", [x, x.astype(np.float64)], 2, axis=1)
    with pytest.raises(OperatorError, match="expected: float but got: long int for input: 1"):
        run_op("Concat", [x, x.astype(np.int64)], 2, axis=1)
    with pytest.raises(OperatorError, match=r"Expect dimension = 3 got 2 at axis = 1 for "
                                            r"input: 1\. The input tensors can only have "
                                            r"different dimensions when arg 'add_axis' = 0 "
                                            r"and along the axis = 2 <\[2, 3, 4\]> vs "
                                            r"<\[2, 2, 4\]>"):
        run_op("Concat", [x, x[:, :2]], 2, axis=2)
    with pytest.raises(OperatorError, match="Expect dimension = 3 got 2 at axis = 1"):
        run_op("Concat", [x, x[:, :2]], 2, axis=1, add_axis=1)
    with pytest.raises(OperatorError,
                       match="Expect dimension = 2 got 3 at axis = 0 for input: 1"):
        run_op("Concat", [x, x[0]], 2, axis=1)
    with pytest.raises(OperatorError, match="input 1 has rank 2 but input 0 has rank 3"):
        run_op("Concat", [x, x[:, :, 0]], 2, axis=2)
    with pytest.raises(OperatorError, match="input 1 has rank 4 but input 0 has rank 3"):
        run_op("Concat", [x, x.reshape(2, 3, 4, 1)], 2, axis=1)
    with pytest.raises(OperatorError, match="Axis not in input ndim range: axis = 3"):
        run_op("Concat", [x, x], 2, axis=3)
    with pytest.raises(OperatorError, match="Axis not in input ndim range: axis = -5"):
        run_op("Concat", [x, x], 2, axis=-5, add_axis=1)
    with pytest.raises(OperatorError, match="Axis not in input ndim range"):
        run_op("Concat", [x, x], 2, order="NHWC")
    check_in_place_refused("Concat", x, ["a", "a"], ["a", "i"], axis=0)


def test_concat_and_split_argument_conflict_fails_at_net_creation():
    net = core.Net("conflict")
    net.Concat(["a", "b"], ["y", "i"], axis=1, order="NCHW")
    workspace.FeedBlob("a", rand((2, 2)))
    workspace.FeedBlob("b", rand((2, 2)))
    with pytest.raises(ArgumentError, match="dim to concat"):
        workspace.CreateNet(net)
    net = core.Net("conflict2")
    net.Split(["a"], ["p", "q"], axis=1, order="NCHW")
    with pytest.raises(ArgumentError, match="You shouldn't specify both the dim to split"):
        workspace.CreateNet(net)


# --- Split -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_split_equal_dtypes(dtype):
    x = rand((2, 6, 3), dtype)
    check_op("Split", [x], lambda x: np.split(x, 3, axis=1), outputs=3)


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_split_arg_sizes(axis):
    x = rand((4, 3, 5))
    ca = axis % 3
    sizes = {0: [1, 3], 2: [2, 0, 3], -1: [2, 0, 3]}[axis]
    cuts = np.cumsum(sizes)[:-1]
    check_op("Split", [x], lambda x: np.split(x, cuts, axis=ca), outputs=len(sizes),
             axis=axis, split=sizes)


@pytest.mark.parametrize("shape", [(2,), (2, 1)])
def test_split_sizes_input(shape):
    x = rand((2, 3, 4))
    sizes = np.array([1, 3], np.int32).reshape(shape)
    check_op("Split", [x, sizes], lambda x, s: np.split(x, [1], axis=2), outputs=2, axis=2)


def test_split_add_axis_removes_axis_and_order():
    x = rand((2, 3, 4))
    check_op("Split", [x], lambda x: [x[:, i] for i in range(3)], outputs=3,
             axis=1, add_axis=1)
    check_op("Split", [x], lambda x: [x[0], x[1]], outputs=2, axis=0, add_axis=1)
    # add_axis without axis is ignored (axis from order NCHW = 1), golden from Caffe2
    got = run_op("Split", [x], 3, add_axis=1)
    assert [g.shape for g in got] == [(2, 1, 4)] * 3
    y = rand((2, 2, 2, 6))
    check_op("Split", [y], lambda y: np.split(y, 2, axis=3), outputs=2, order="NHWC")


@pytest.mark.parametrize("device", [None, gpu(1)])
def test_split_outputs_are_separate_tensors(device):
    """Equal parts come from one copy of X (one kernel on a GPU) as views of one
    buffer: an op writing one output in place changes neither X nor the others."""
    x = rand((3, 8, 5))
    ws = workspace.Workspace("split_views")
    net = core.Net("split_views")
    with core.DeviceScope(device or core.DeviceOption(0)):
        ws.FeedBlob("x", x)
        net.Split(["x"], ["p0", "p1", "p2", "p3"], axis=1)
        net.Scale(["p1"], ["p1"], scale=-3.0)
        net.Relu(["p2"], ["p2"])
    ws.RunNetOnce(net)
    parts = np.split(x, 4, axis=1)
    np.testing.assert_array_equal(ws.FetchBlob("x"), x)
    np.testing.assert_array_equal(ws.FetchBlob("p0"), parts[0])
    np.testing.assert_array_equal(ws.FetchBlob("p1"), parts[1] * np.float32(-3.0))
    np.testing.assert_array_equal(ws.FetchBlob("p2"), np.maximum(parts[2], 0))
    np.testing.assert_array_equal(ws.FetchBlob("p3"), parts[3])
    assert all(ws.FetchBlob(p).flags.c_contiguous for p in ("p0", "p1", "p2", "p3"))


def test_split_empty_input():
    x = np.zeros((0, 4), np.float32)
    check_op("Split", [x], lambda x: [x[:0].copy(), x[:0].copy()], outputs=2, axis=0)


def test_split_sizes_input_stays_on_cpu_for_gpu_op():
    ws = workspace.Workspace()
    x = rand((2, 5))
    ws.FeedBlob("x", x, device_option=gpu(1))
    ws.FeedBlob("s", np.array([2, 3], np.int32))
    ws.RunOperatorOnce(core.CreateOperator("Split", ["x", "s"], ["a", "b"], axis=1,
                                           device_option=gpu(1)))
    assert ws.BlobDevice("a") == Device(1, 1)
    np.testing.assert_array_equal(ws.FetchBlob("b"), x[:, 2:])


def test_split_errors():
    x = rand((2, 3, 4))
    # golden texts from real Caffe2 1.10.2
    with pytest.raises(OperatorError, match="If you did not specify split explicitly, the "
                                            "number of input channels:3 should be divisible "
                                            "by the output size:2"):
        run_op("Split", [x], 2)
    with pytest.raises(OperatorError, match="The number of splits specified should be equal "
                                            "to the number of outputs"):
        run_op("Split", [x], 2, axis=2, split=[1, 2, 1])
    with pytest.raises(OperatorError,
                       match="Sum of split dimensions do not match: should be 4"):
        run_op("Split", [x], 2, axis=2, split=[1, 2])
    with pytest.raises(OperatorError,
                       match="Sum of split dimensions do not match: should be 3"):
        run_op("Split", [x], 2, axis=1, add_axis=1, split=[1, 2])
    with pytest.raises(OperatorError, match="If you set split with an input blob, do not "
                                            "pass in split in the argument"):
        run_op("Split", [x, np.array([1, 3], np.int32)], 2, axis=2, split=[1, 3])
    with pytest.raises(OperatorError, match="caller expects elements to be int, while tensor "
                                            "contains long int"):
        run_op("Split", [x, np.array([1, 3], np.int64)], 2, axis=2)
    with pytest.raises(OperatorError,
                       match=r"split_tensor.numel\(\) == OutputSize\(\). 3 vs 2"):
        run_op("Split", [x, np.array([1, 2, 1], np.int32)], 2, axis=2)
    with pytest.raises(OperatorError, match="Split sizes must be non-negative"):
        run_op("Split", [x], 2, axis=2, split=[5, -1])
    with pytest.raises(OperatorError, match="Axis not in input ndim range: axis = 3"):
        run_op("Split", [x], 2, axis=3)
    with pytest.raises(OperatorError, match="Axis not in input ndim range: axis = -4"):
        run_op("Split", [x], 2, axis=-4)
    # a float list is read as an empty int list, as in Caffe2 (golden from real
    # Caffe2 1.10.2: split=[1.0, 3.0] gives two equal (2, 3, 2) pieces)
    assert [p.shape for p in run_op("Split", [x], 2, axis=2, split=[1.0, 3.0])] == \
        [(2, 3, 2)] * 2
    check_in_place_refused("Split", x, ["a"], ["a", "b"], axis=0)


# --- gradients: wiring (goldens from real Caffe2 1.10.2 GetGradientForOp) ----------

GOLDEN_WIRING = [
    ('Concat', ['a', 'b', 'c'], ['y', 'si'], {'axis': 2, 'add_axis': 1}, ['y_grad', None],
     ['input: "y_grad"\ninput: "si"\noutput: "a_grad"\noutput: "b_grad"\noutput: "c_grad"\nname: ""\ntype: "Split"\narg {\n  name: "axis"\n  i: 2\n}\narg {\n  name: "add_axis"\n  i: 1\n}\nis_gradient_op: true\n'], ['a_grad', 'b_grad', 'c_grad']),  # noqa: E501
    ('Concat', ['a', 'b'], ['y', 'si'], {'order': 'NHWC'}, ['y_grad', None],
     ['input: "y_grad"\ninput: "si"\noutput: "a_grad"\noutput: "b_grad"\nname: ""\ntype: "Split"\narg {\n  name: "order"\n  s: "NHWC"\n}\nis_gradient_op: true\n'], ['a_grad', 'b_grad']),  # noqa: E501
    ('Concat', ['a', 'b'], ['y', 'si'], {'axis': 1}, [None, 'si_grad'],
     [], [None, None]),
    ('Split', ['x'], ['a', 'b', 'c'], {'axis': 0}, ['a_g', None, 'c_g'],
     ['input: "a_g"\ninput: "c_g"\noutput: "x_grad"\noutput: "_x_grad_dims"\nname: ""\ntype: "Concat"\narg {\n  name: "axis"\n  i: 0\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Split', ['x', 's'], ['a', 'b'], {'axis': 0, 'split': [1, 2]}, ['a_g', 'b_g'],
     ['input: "a_g"\ninput: "b_g"\noutput: "x_grad"\noutput: "_x_grad_dims"\nname: ""\ntype: "Concat"\narg {\n  name: "axis"\n  i: 0\n}\narg {\n  name: "split"\n  ints: 1\n  ints: 2\n}\nis_gradient_op: true\n'], ['x_grad', None]),  # noqa: E501
    ('Split', ['x'], ['a', 'b'], {'axis': 1, 'add_axis': 1}, ['a_g', 'b_g'],
     ['input: "a_g"\ninput: "b_g"\noutput: "x_grad"\noutput: "_x_grad_dims"\nname: ""\ntype: "Concat"\narg {\n  name: "axis"\n  i: 1\n}\narg {\n  name: "add_axis"\n  i: 1\n}\nis_gradient_op: true\n'], ['x_grad']),  # noqa: E501
    ('Split', ['x'], ['a', 'b'], {'axis': 0}, [None, None],
     [], [None]),
]


@pytest.mark.parametrize("case", GOLDEN_WIRING, ids=golden_id)
def test_gradient_wiring_matches_caffe2(case):
    check_golden_wiring(case)


def test_gradient_ops_inherit_device_option():
    op = core.CreateOperator("Concat", ["a", "b"], ["y", "si"], axis=0,
                             device_option=gpu(2))
    ops, _ = core.GradientRegistry.GetGradientForOp(op, ["y_grad", None])
    assert ops[0].device_option.device_id == 2 and ops[0].is_gradient_op


# --- gradients: finite differences --------------------------------------------------

def test_concat_gradient():
    xs = [rand((2, 3, 2), seed=1), rand((2, 1, 2), seed=2), rand((2, 2, 2), seed=3)]
    check_gradient("Concat", xs, wrt=[0, 1, 2], outputs=2, axis=1)
    check_gradient("Concat", [xs[0], xs[0][:, :, :1]], wrt=[0, 1], outputs=2, axis=-1)
    check_gradient("Concat", xs[:2], wrt=[0, 1], outputs=2)  # default order NCHW: axis 1


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_concat_add_axis_gradient(axis):
    xs = [rand((2, 3), seed=s) for s in range(3)]
    check_gradient("Concat", xs, wrt=[0, 1, 2], outputs=2, axis=axis, add_axis=1)


def test_split_gradient():
    x = rand((2, 6, 2))
    check_gradient("Split", [x], wrt=[0], outputs=3)
    check_gradient("Split", [x], wrt=[0], outputs=3, axis=1, split=[1, 2, 3])
    check_gradient("Split", [x, np.array([4, 2], np.int32)], wrt=[0], outputs=2, axis=1)
    check_gradient("Split", [x], wrt=[0], outputs=2, axis=0, add_axis=1)
    _, _, dys, grads, ops = gradient_of("Split", [x], 2, axis=2)
    np.testing.assert_array_equal(grads[0], np.concatenate([dys[0], dys[1]], axis=2))


def test_net_backward_through_concat_and_split():
    """AddGradientOperators over Split -> Concat gives the identity gradient."""
    net = core.Net("cs")
    a, b = net.Split(["x"], ["a", "b"], axis=0)
    y, _ = net.Concat([b, a], ["y", "info"], axis=0)
    net.AddGradientOperators({"y": "dy"})
    net.AddExternalInput("dy")
    x, dy = rand((4, 3), seed=5), rand((4, 3), seed=6)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("dy", dy)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.concatenate([x[2:], x[:2]]))
    np.testing.assert_array_equal(workspace.FetchBlob("x_grad"),
                                  np.concatenate([dy[2:], dy[:2]]))
