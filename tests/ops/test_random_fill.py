"""UniformFill, UniformIntFill, GaussianFill, XavierFill, MSRAFill.

Expected values come from numpy/math formulas written here; a few golden values
come from real Caffe2 1.10.2 (marked so).
"""

import math

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import check_devices, check_shape_inference, run_op
from tests.ops.fill_helpers import RNG, check_no_gradient


# --- random fillers ------------------------------------------------------------------

def draw(op_type, inputs=(), seed=7, **kwargs):
    out = run_op(op_type, list(inputs), random_seed=seed, **kwargs)[0]
    return out


def test_uniform_fill_statistics():
    lo, hi = -1.5, 2.5
    y = draw("UniformFill", shape=[200, 100], min=lo, max=hi)
    assert y.dtype == np.float32 and y.shape == (200, 100)
    assert y.min() >= lo and y.max() <= hi
    n, width = y.size, hi - lo
    assert abs(y.mean() - (lo + hi) / 2) < 6 * width / math.sqrt(12 * n)
    assert abs(y.std() - width / math.sqrt(12)) < 0.02
    counts, _ = np.histogram(y, bins=8, range=(lo, hi))
    assert np.all(np.abs(counts - n / 8) < 5 * math.sqrt(n / 8))


def test_uniform_fill_defaults_to_unit_interval():
    y = draw("UniformFill", shape=[5000])
    assert 0.0 <= y.min() and y.max() <= 1.0 and abs(y.mean() - 0.5) < 0.03


def test_uniform_int_fill_is_inclusive():
    y = draw("UniformIntFill", shape=[30000], min=-2, max=3)
    assert y.dtype == np.int32 and y.shape == (30000,)
    values, counts = np.unique(y, return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-2, 4))
    assert np.all(np.abs(counts - 5000) < 5 * math.sqrt(5000))


def test_gaussian_fill_statistics():
    y = draw("GaussianFill", shape=[200, 100], mean=1.5, std=0.5)
    assert y.dtype == np.float32 and y.shape == (200, 100)
    n = y.size
    assert abs(y.mean() - 1.5) < 6 * 0.5 / math.sqrt(n)
    assert abs(y.std() - 0.5) < 6 * 0.5 / math.sqrt(2 * n)
    within = np.mean(np.abs(y - 1.5) < 0.5)
    assert abs(within - 0.6827) < 0.02
    z = draw("GaussianFill", shape=[20000])
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.03


def test_gaussian_fill_zero_std_is_the_mean():
    np.testing.assert_array_equal(draw("GaussianFill", shape=[3], mean=1.25, std=0.0),
                                  np.full(3, 1.25, np.float32))


@pytest.mark.parametrize("shape", [[50, 40, 5], [1000], [300, 2]])
def test_xavier_fill_statistics(shape):
    y = draw("XavierFill", shape=shape)
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    fan_in = y.size // shape[0]
    s = math.sqrt(3.0 / fan_in)
    assert np.abs(y).max() <= s * (1 + 1e-6)
    assert np.abs(y).max() > 0.98 * s
    assert abs(y.std() - s / math.sqrt(3)) < 0.03 * s / math.sqrt(3)


def test_xavier_fill_fan_in_counts_extra_shape():
    x = np.zeros((2000, 3), np.float32)
    y = draw("XavierFill", [x], extra_shape=[4])
    assert y.shape == (2000, 3, 4)
    s = math.sqrt(3.0 / 12)
    assert np.abs(y).max() <= s * (1 + 1e-6) and np.abs(y).max() > 0.98 * s


@pytest.mark.parametrize("shape", [[20, 400, 5], [100, 200]])
def test_msra_fill_statistics(shape):
    y = draw("MSRAFill", shape=shape)
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    fan_out = y.size // shape[1]
    std = math.sqrt(2.0 / fan_out)
    assert abs(y.std() - std) < 0.02 * std
    assert abs(y.mean()) < 6 * std / math.sqrt(y.size)


RANDOM_OPS = [("UniformFill", dict(min=-1.0, max=1.0)), ("UniformIntFill", dict(min=0, max=9)),
              ("GaussianFill", dict(mean=0.5, std=2.0)), ("XavierFill", {}),
              ("MSRAFill", {})]


@pytest.mark.parametrize("op_type,kwargs", RANDOM_OPS)
def test_random_fillers_seed_reproduces(op_type, kwargs):
    a = draw(op_type, shape=[4, 6], seed=11, **kwargs)
    b = draw(op_type, shape=[4, 6], seed=11, **kwargs)
    c = draw(op_type, shape=[4, 6], seed=12, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    check_devices(op_type, [], shape=[4, 6], random_seed=11, **kwargs)
    check_shape_inference(op_type, [], shape=[4, 6], random_seed=11, **kwargs)


@pytest.mark.parametrize("op_type,kwargs", RANDOM_OPS)
def test_random_fillers_shape_sources(op_type, kwargs):
    x = RNG.standard_normal((3, 2)).astype(np.int32)
    y = draw(op_type, [x], extra_shape=[4], **kwargs)
    assert y.shape == (3, 2, 4)
    assert y.dtype == (np.int32 if op_type == "UniformIntFill" else np.float32)
    check_shape_inference(op_type, [x], extra_shape=[4], random_seed=3, **kwargs)
    check_devices(op_type, [x], extra_shape=[4], random_seed=3, **kwargs)
    y = draw(op_type, [np.array([2, 5], np.int64)], input_as_shape=1, **kwargs)
    assert y.shape == (2, 5)
    y = draw(op_type, [x], outputs=["in0"], **kwargs)  # in place
    assert y.shape == (3, 2)


def test_seeded_filler_in_a_net_advances_between_runs():
    ws = workspace.Workspace()
    net = core.Net("init")
    net.UniformFill([], "w", shape=[8], min=0.0, max=1.0, random_seed=5)
    ws.CreateNet(net)
    ws.RunNet(net)
    first = ws.FetchBlob("w")
    ws.RunNet(net)
    assert not np.array_equal(first, ws.FetchBlob("w"))
    ws.RunNetOnce(net)  # a fresh op: the seed starts over
    np.testing.assert_array_equal(first, ws.FetchBlob("w"))


def test_uniform_fill_min_max_from_inputs():
    x = np.zeros((4000, 2), np.float32)
    lo, hi = np.array([1.0], np.float32), np.array(3.0, np.float32)
    y = draw("UniformFill", [x, lo, hi])
    assert y.shape == (4000, 2) and y.min() >= 1.0 and y.max() <= 3.0
    assert abs(y.mean() - 2.0) < 0.05
    # equal bounds: a constant
    np.testing.assert_array_equal(draw("UniformFill", [x, hi, hi]),
                                  np.full((4000, 2), 3.0, np.float32))
    # min > max empties the first dimension (golden from real Caffe2 1.10.2)
    out = draw("UniformFill", [x, hi, lo])
    assert out.shape == (0, 2) and out.dtype == np.float32
    s = np.array([2, 3], np.int64)
    assert draw("UniformFill", [s, hi, lo], input_as_shape=1).shape == (0, 3)
    ints = draw("UniformIntFill", [x, np.array([4], np.int32), np.array([6], np.int32)])
    assert ints.dtype == np.int32 and set(np.unique(ints)) == {4, 5, 6}
    check_devices("UniformFill", [x[:3], lo, hi], random_seed=2)
    check_shape_inference("UniformFill", [x[:3], lo, hi], random_seed=2)


@pytest.mark.parametrize("op_type,inputs,kwargs,error,pattern", [
    ("UniformFill", 0, dict(shape=[2], min=1, max=2), ArgumentError,
     "Argument min does not have the right field: expected field f"),
    ("UniformIntFill", 0, dict(shape=[2], min=1.0, max=3.0), ArgumentError,
     "Argument min does not have the right field: expected field i"),
    ("UniformFill", 0, dict(shape=[2], min=2.0, max=2.0), ArgumentError,
     "Max value should be bigger than min value"),
    ("UniformIntFill", 0, dict(shape=[2], min=3, max=2), ArgumentError,
     "3 vs 2. Max value should be bigger than min value"),
    ("UniformIntFill", 0, dict(shape=[2], min=2, max=2 ** 40), ArgumentError,
     "Value 1099511627776 of argument max cannot be represented"),
    ("UniformFill", 3, dict(min=1.0), ArgumentError,
     "Cannot set both min arg and min input blob"),
    ("UniformFill", 3, dict(max=1.0), ArgumentError,
     "Cannot set both max arg and max input blob"),
    ("UniformFill", 2, {}, SchemaError, "Input size 2 not in allowed input sizes"),
    ("GaussianFill", 2, {}, SchemaError, r"Input size 2 not in range \[min=0, max=1\]"),
    ("GaussianFill", 0, dict(shape=[2], mean=1, std=2.0), ArgumentError,
     "Argument mean does not have the right field: expected field f"),
    ("XavierFill", 0, dict(shape=3), ArgumentError, "list expected"),
    ("MSRAFill", 0, dict(extra_shape=[2]), ArgumentError,
     "Cannot set extra_shape when there is no input"),
])
def test_random_filler_argument_errors(op_type, inputs, kwargs, error, pattern):
    xs = [np.ones(1, np.float32)] * inputs
    with pytest.raises(error, match=pattern):
        run_op(op_type, xs, **kwargs)


@pytest.mark.parametrize("op_type,inputs,kwargs,pattern", [
    ("UniformFill", [np.zeros(2, np.float32), np.ones(2, np.float32),
                     np.ones(1, np.float32)], {}, "min blob must be scalar, found 2"),
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.float32),
                     np.ones(3, np.float32)], {}, "max blob must be scalar, found 3"),
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.int32),
                     np.ones(1, np.float32)], {},
     "caller expects elements to be float, while tensor contains int"),
    ("UniformIntFill", [np.zeros(2, np.float32), np.ones(1, np.int64),
                        np.ones(1, np.int64)], {},
     "caller expects elements to be int, while tensor contains long int"),
    ("UniformFill", [np.zeros((), np.float32), np.full(1, 3.0, np.float32),
                     np.ones(1, np.float32)], {}, "output is 0-d"),
    ("GaussianFill", [], dict(shape=[3], std=-1.0), "stdv_in must be positive: -1"),
    ("XavierFill", [], {}, "at least 1 dimension"),
    ("MSRAFill", [], dict(shape=[3]), r"at least 2 dimensions, found shape \(3,\)"),
])
def test_random_filler_run_time_errors(op_type, inputs, kwargs, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op(op_type, inputs, **kwargs)


@pytest.mark.parametrize("op_type", ["XavierFill", "MSRAFill", "GaussianFill",
                                     "UniformFill"])
@pytest.mark.parametrize("shape", [[0, 3], [3, 0]])
def test_random_fillers_empty_outputs(op_type, shape):
    y = draw(op_type, shape=shape)
    assert y.shape == tuple(shape) and y.dtype == np.float32


# --- gradients --------------------------------------------------------------------------

NO_GRADIENT_OPS = [
    ("UniformFill", 3, {}), ("UniformIntFill", 0, dict(shape=[2])),
    ("GaussianFill", 1, {}), ("XavierFill", 0, dict(shape=[2])),
    ("MSRAFill", 0, dict(shape=[2, 2])),
]


@pytest.mark.parametrize("op_type,n_in,kwargs", NO_GRADIENT_OPS)
def test_fill_family_has_no_gradient(op_type, n_in, kwargs):
    check_no_gradient(op_type, n_in, kwargs)
