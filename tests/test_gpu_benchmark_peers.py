"""The PyTorch rows of benchmarks/gpu_sls_bandwidth.py compute what graphnet's ops
compute, so its bandwidths compare the same work: run here on the CPU (the benchmark
runs them on a GPU), against SparseLengthsSum and its gradient on numpy and against
a Python loop written here."""

import os
import sys

import numpy as np
import pytest

from graphnet import core, workspace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_sls_bandwidth  # noqa: E402


def test_pytorch_embedding_bag_row_is_the_sls_forward_and_backward():
    pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    rows, dim = 50, 8
    lengths = np.array([3, 0, 5, 1, 7, 2], np.int32)  # an empty bag too
    n = int(lengths.sum())
    table = rng.standard_normal((rows, dim)).astype(np.float32)
    idx = rng.integers(0, rows, n).astype(np.int64)
    idx[:2] = idx[2]  # duplicates within a bag
    dy = rng.standard_normal((lengths.size, dim)).astype(np.float32)
    step = gpu_sls_bandwidth.torch_sls(table, idx, lengths, dy, "cpu")
    pooled, values = (t.numpy() for t in step())

    ends = np.cumsum(lengths)
    starts = ends - lengths
    want_pooled = np.array([table[idx[s:e]].astype(np.float64).sum(axis=0)
                            for s, e in zip(starts, ends)])
    want_values = np.concatenate([np.tile(dy[m], (k, 1)) for m, k in enumerate(lengths)])
    np.testing.assert_allclose(pooled, want_pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(values, want_values)

    workspace.ResetWorkspace()
    for name, value in (("table", table), ("idx", idx), ("len", lengths), ("dy", dy)):
        workspace.FeedBlob(name, value)
    net = core.Net("sls_peer")
    net.SparseLengthsSum(["table", "idx", "len"], "out")
    net.SparseLengthsIndicesInGradientSumGradient(["dy", "len", "idx"], "grad_values")
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("out"), pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(workspace.FetchBlob("grad_values"), values)
