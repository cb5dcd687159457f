"""benchmarks/gpu_*.py, the scripts tests/gpu/run.sh runs on a lent GPU, run here on
the CuPy stand-in at small sizes, so that a script error never costs a GPU run: each
prints the summary rows run.sh collects, and the DLRM step's losses equal PyTorch's
(run on the CPU here) in every mode and kind of bags. The stand-in's timings mean
nothing and are not checked."""

import os
import re
import sys

import pytest

from graphnet import compat, config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_copy_bandwidth  # noqa: E402
import gpu_dlrm_step  # noqa: E402
import gpu_launch_costs  # noqa: E402
import gpu_sls_bandwidth  # noqa: E402


def _rows(text):
    """The summary rows printed (run.sh's table): {what: (ours, peer, ratio, target)}."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("SUMMARY|"):
            what, ours, peer, ratio, target = (f.strip() for f in line[8:].split("|"))
            rows[what] = (ours, peer, float(ratio), target)
    return rows


@pytest.fixture
def restore_compat():
    """The DLRM benchmark installs the caffe2 import hook; leave it as it was."""
    was = compat._finder in sys.meta_path
    yield
    if not was:
        compat.uninstall()


def test_dlrm_step_prints_every_mode_with_pytorchs_losses(fake, capsys, monkeypatch,
                                                         restore_compat):
    pytest.importorskip("torch")
    monkeypatch.setattr(gpu_dlrm_step, "TORCH_DEVICE", "cpu")
    gpu_dlrm_step.main(["--config", "medium", "--iters", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert sorted(rows) == sorted(
        "DLRM step (medium, %s, %s bags) vs PyTorch eager" % (mode, bags)
        for mode in ("eager", "deferred", "graphs") for bags in ("random", "fixed"))
    assert all(target == "<= 1.0 (stretch 0.5)" and ratio > 0
               for _, _, ratio, target in rows.values())
    losses = re.findall(r"losses graphnet \[(.*?)\], PyTorch \[(.*?)\]", out)
    assert len(losses) == 6
    for ours, peers in losses:
        ours = [float(v.strip("' ")) for v in ours.split(",")]
        peers = [float(v.strip("' ")) for v in peers.split(",")]
        assert len(ours) == len(peers) == 3
        assert ours == pytest.approx(peers, rel=2e-4, abs=2e-5)
    assert "CUDA graphs: ops #0 (FC) .. #51 (FCGradient): 52 ops, captured 1 time(s)" in out


def test_dlrm_step_profile_prints_host_and_gpu_times(fake, capsys, restore_compat):
    gpu_dlrm_step.main(["--config", "tiny", "--iters", "2", "--warmup", "1",
                        "--profile", "5", "--modes", "graphs", "--bags", "fixed"])
    out = capsys.readouterr().out
    assert re.search(r"host: [0-9.]+ ms per step under cProfile", out)
    assert "GPU time per op type, one step" in out
    assert re.search(r"  SparseLengthsSum +\d+ ops", out)
    assert _rows(out) == {}  # a profile compares nothing


def test_sls_bandwidth_prints_both_modes_and_each_pooling_kernel(fake, capsys):
    gpu_sls_bandwidth.main(["--rows", "500", "--bags", "64", "--bag", "6",
                            "--repeat", "2"])
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == {"SLS fwd+bwd bandwidth vs D2D copy",
                         "SLS fwd+bwd bandwidth vs D2D copy, CUDA graph"}
    assert all(target == ">= 0.60" for _, _, _, target in rows.values())
    for label in ("SparseLengthsSum (4 rows in flight)",
                  "SparseLengthsSum (8 rows in flight)",
                  "SparseLengthsIndicesInGradientSumGradient"):
        assert re.search(re.escape(label) + r" +[0-9.]+ ms on the GPU", out), label
    assert "PyTorch embedding_bag: not run" in out  # (no GPU for torch here)


def test_copy_bandwidth_prints_its_row(fake, capsys):
    gpu_copy_bandwidth.main(["--mib", "1", "--repeat", "2"])
    rows = _rows(capsys.readouterr().out)
    assert len(rows) >= 1
    assert all(what.startswith("Copy between logical GPUs vs cudaMemcpy")
               and target == ">= 0.80" for what, (_, _, _, target) in rows.items())


def test_launch_costs_prints_every_row(fake, capsys):
    config.set_virtual_gpu_count(0)
    gpu_launch_costs.main(["--calls", "5", "--repeat", "2"])
    out = capsys.readouterr().out
    for label in ("matmul (32x64 @ 64x16)", "matmul, cuBLAS direct", "FC (matmul + bias)",
                  "elementwise (relu)", "RawKernel launch", "graphnet op (Relu)"):
        assert re.search(re.escape(label) + r" +[0-9.]+ ", out), label
