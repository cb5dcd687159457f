"""The fast CPU embedding kernels compute what the plain numpy ones compute.

Three implementations of SparseLengths{Sum,WeightedSum,Mean} and of
ScatterWeightedSum run on the numpy backend: the compiled loops (numba, the
[fast] extra), the numpy fast path (whole-row gathers, reduceat, update
rounds) and the plain formulation (GRAPHNET_FAST_KERNELS=0: take + reduceat,
ufunc.at). Each is checked against a Python loop written here, and DLRM
training gives the same losses with fast and plain kernels.
"""

import os
import sys

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.ops import _common, sparse_lengths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import dlrm_caffe2_model as dlrm  # noqa: E402


@pytest.fixture(params=["compiled", "numpy", "plain"])
def kernels(request, monkeypatch):
    """Select one implementation for the duration of a test."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    if request.param == "numpy":  # no compiled loops: the numpy fast path
        monkeypatch.setattr(sparse_lengths, "_COMPILED", {"pool": None})
        monkeypatch.setattr(_common, "_COMPILED", {"scatter_add": None})
    if request.param == "plain":
        config.set_fast_kernels(False)
    yield request.param
    config.set_fast_kernels(True)


def run(op_type, inputs, outputs=("out",), **kwargs):
    workspace.ResetWorkspace()
    names = ["in%d" % i for i in range(len(inputs))]
    for name, value in zip(names, inputs):
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator(op_type, names, list(outputs), **kwargs))
    return workspace.FetchBlob(outputs[0])


def segments(rng, n_rows, n_segments, max_len, index_dtype):
    lengths = rng.integers(0, max_len + 1, n_segments).astype(np.int32)
    lengths[::7] = 0  # empty segments give zero rows
    indices = rng.integers(0, n_rows, int(lengths.sum())).astype(index_dtype)
    return indices, lengths


def loop_pool(data, indices, lengths, weights=None, mean=False):
    """Segment m: DATA rows summed one by one in float32, in index order."""
    out = np.zeros((len(lengths),) + data.shape[1:], np.float32)
    j = 0
    for m, length in enumerate(lengths):
        acc = np.zeros(data.shape[1:], np.float32)
        for _ in range(length):
            row = data[indices[j]].astype(np.float32)
            acc = acc + (row if weights is None else np.float32(weights[j]) * row)
            j += 1
        if mean and length:
            acc = acc * np.float32(1.0 / length)
        out[m] = acc
    return out


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(300, 16), (40, 3, 2), (5000, 1)])
def test_sparse_lengths_sum_and_weighted(kernels, index_dtype, shape):
    rng = np.random.default_rng(len(shape) + shape[0])
    data = rng.standard_normal(shape).astype(np.float32)
    indices, lengths = segments(rng, shape[0], 90, 60, index_dtype)  # many repeats
    weights = rng.uniform(-2, 2, len(indices)).astype(np.float32)
    got = run("SparseLengthsSum", [data, indices, lengths])
    np.testing.assert_allclose(got, loop_pool(data, indices, lengths), rtol=2e-6,
                               atol=2e-6)
    got = run("SparseLengthsWeightedSum", [data, weights, indices, lengths])
    np.testing.assert_allclose(got, loop_pool(data, indices, lengths, weights),
                               rtol=2e-6, atol=2e-6)
    got = run("SparseLengthsMean", [data, indices, lengths])
    np.testing.assert_allclose(got, loop_pool(data, indices, lengths, mean=True),
                               rtol=2e-6, atol=2e-6)


def test_sparse_lengths_sum_float16_table(kernels):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((200, 8)).astype(np.float16)
    indices, lengths = segments(rng, 200, 30, 20, np.int64)
    got = run("SparseLengthsSum", [data, indices, lengths])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, loop_pool(data, indices, lengths), rtol=1e-5,
                               atol=1e-5)


def loop_scatter(x0, w0, idx, pairs):
    """Caffe2's loops: scale the row of every index (once per occurrence), then add
    each pair over all indices in order, pair after pair (real Caffe2 1.10.2 gave
    [[110.25, 110.5]] for X_0 [[1, 2]], w_0 0.5, INDICES [0, 0], X_1 [[10], [100]])."""
    out = x0.copy()
    if w0 != 1:
        for row in idx:
            out[row] = out[row] * np.float32(w0)
    for x, w in pairs:
        for i, row in enumerate(idx):
            out[row] = out[row] + np.float32(w) * x[i]
    return out


@pytest.mark.parametrize("n_rows,n_idx", [(1000, 900), (50, 400), (3, 40)])
def test_scatter_weighted_sum_with_repeated_rows(kernels, n_rows, n_idx):
    rng = np.random.default_rng(n_rows)
    x0 = rng.standard_normal((n_rows, 6)).astype(np.float32)
    idx = rng.integers(0, n_rows, n_idx).astype(np.int64)
    x1 = rng.standard_normal((n_idx, 6)).astype(np.float32)
    w0, w1 = np.ones(1, np.float32), np.array([-0.37], np.float32)
    workspace.ResetWorkspace()
    for name, value in (("x0", x0), ("w0", w0), ("idx", idx), ("x1", x1), ("w1", w1)):
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator(
        "ScatterWeightedSum", ["x0", "w0", "idx", "x1", "w1"], ["x0"]))
    got = workspace.FetchBlob("x0")
    # one pair, w0 == 1: every implementation adds in Caffe2's order, bit for bit
    np.testing.assert_array_equal(got, loop_scatter(x0, 1, idx, [(x1, w1[0])]))
    assert len(np.unique(idx)) < n_idx  # the case exercised repeated rows


def test_scatter_weighted_sum_two_pairs_and_scaling(kernels):
    rng = np.random.default_rng(11)
    x0 = rng.standard_normal((30, 4)).astype(np.float32)
    idx = rng.integers(0, 30, 80).astype(np.int32)
    x1, x2 = (rng.standard_normal((80, 4)).astype(np.float32) for _ in range(2))
    for w0 in (1.0, 0.5):
        workspace.ResetWorkspace()
        feeds = (("x0", x0), ("w0", np.array([w0], np.float32)), ("idx", idx),
                 ("x1", x1), ("w1", np.array([0.25], np.float32)), ("x2", x2),
                 ("w2", np.array([-1.5], np.float32)))
        for name, value in feeds:
            workspace.FeedBlob(name, value)
        workspace.RunOperatorOnce(core.CreateOperator(
            "ScatterWeightedSum", [n for n, _ in feeds], ["x0"]))
        want = loop_scatter(x0, w0, idx, [(x1, 0.25), (x2, -1.5)])
        np.testing.assert_array_equal(workspace.FetchBlob("x0"), want)


def test_scatter_weighted_sum_adds_pair_after_pair(kernels):
    """Real Caffe2 1.10.2 gives 1 here (pair after pair); index-major order gives 0."""
    workspace.ResetWorkspace()
    feeds = (("x0", np.zeros((1, 1), np.float32)), ("w0", np.ones(1, np.float32)),
             ("idx", np.array([0, 0], np.int64)),
             ("x1", np.array([[1e8], [-1e8]], np.float32)), ("w1", np.ones(1, np.float32)),
             ("x2", np.array([[1.0], [0.0]], np.float32)), ("w2", np.ones(1, np.float32)))
    for name, value in feeds:
        workspace.FeedBlob(name, value)
    workspace.RunOperatorOnce(core.CreateOperator(
        "ScatterWeightedSum", [n for n, _ in feeds], ["x0"]))
    assert workspace.FetchBlob("x0").tolist() == [[1.0]]


def train_losses(iters=15):
    from graphnet import compat
    compat.install()
    losses, _, _ = dlrm.train_losses(workspace, iters)
    return losses, workspace.FetchBlob("emb_1")


def test_dlrm_training_same_losses_with_fast_and_plain_kernels():
    fast, fast_table = train_losses()
    config.set_fast_kernels(False)
    try:
        plain, plain_table = train_losses()
    finally:
        config.set_fast_kernels(True)
    assert fast[-3:].sum() < fast[:3].sum()  # the loss on the 3 cycled batches falls
    np.testing.assert_allclose(fast, plain, rtol=1e-5)
    np.testing.assert_allclose(fast_table, plain_table, rtol=1e-5, atol=1e-6)
