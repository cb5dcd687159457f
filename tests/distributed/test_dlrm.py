"""DLRM training placed on MPI ranks follows the 1-process loss curves.

4 ranks x 1 device and 2 ranks x 2 devices (dag executor) against 1 process with
4 emulated GPUs and against 1 device, within 1e-5 relative; the butterfly
all-to-all pass on and off give bit-identical curves; the unmodified example
script runs under mpiexec and says OK.
"""

import os
import sys
import warnings

import numpy as np
import pytest

from tests.distributed import mpirun

sys.path.insert(0, os.path.join(mpirun.ROOT, "examples"))
import dlrm_train  # noqa: E402

from graphnet import workspace  # noqa: E402

ITERS = 12
pytestmark = mpirun.needs_mpi


@pytest.fixture(scope="module")
def one_process():
    """Losses of the same training in this process: 4 emulated GPUs and 1 device."""
    cfg = dlrm_train.Config(batch=16)
    workspace.SetVirtualGpuCount(4)
    data = dlrm_train.make_data(cfg, num_batches=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        four = dlrm_train.train(cfg, 4, data, ITERS, show=False)
    one = dlrm_train.train(cfg, 0, data, ITERS, show=False)
    return np.array(four), np.array(one)


def _rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("ranks,net_type", [(4, "simple"), (2, "dag")])
def test_ranks_follow_one_process(tmp_path, one_process, ranks, net_type):
    out = str(tmp_path / "losses.npz")
    result = mpirun.run(ranks, "dlrm_losses.py", out, "--iters", str(ITERS),
                        "--net-type", net_type)
    assert result.returncode == 0, result
    got = np.load(out)
    four_gpus, one_device = one_process
    on, off = got["alltoall_on"], got["alltoall_off"]
    assert len(on) == ITERS
    assert _rel(on, four_gpus) < 1e-5, (on, four_gpus)
    assert _rel(on, one_device) < 1e-5, (on, one_device)
    assert np.array_equal(on, off), (on, off)  # the all-to-all pass moves the same data
    assert _rel(got["one_device"], one_device) < 1e-6
    assert on[-1] < on[0] / 3  # it learns
    assert int(got["alltoall_on_bytes"]) > 0


def test_unmodified_example_script_on_four_ranks():
    result = mpirun.run(4, os.path.join(mpirun.ROOT, "examples", "dlrm_train.py"),
                        "--iters", "8")
    assert result.returncode == 0, result
    assert result.output.count("max relative difference of the loss curves") == 4, result
    assert result.output.count("(OK)") == 4, result


def test_device_transport_path_follows_one_process(tmp_path, one_process):
    """Float32 arrays take the path CuPy arrays take over NCCL (headers over MPI, bytes
    through the device transport, settled at the end of each run), here with a
    host-side stand-in for NCCL (tests/distributed/host_transport.py)."""
    out = str(tmp_path / "losses.npz")
    result = mpirun.run(2, "dlrm_losses.py", out, "--iters", str(ITERS),
                        "--host-transport")
    assert result.returncode == 0, result
    got = np.load(out)
    four_gpus, one_device = one_process
    on, off = got["alltoall_on"], got["alltoall_off"]
    assert _rel(on, four_gpus) < 1e-5, (on, four_gpus)
    assert np.array_equal(on, off), (on, off)
    assert str(got["transport"]) == "host test transport: "
    counts = {k: int(got["transport_" + k]) for k in ("send", "recv", "exchange",
                                                      "allreduce", "settle")}
    # all-to-alls (pass on), sends and receives (pass off: copies and the gradient
    # seeds), all-reduces of the dense gradients, one settle per run of a placed net
    assert all(v > 0 for v in counts.values()), counts
    assert counts["settle"] >= 2 * ITERS, counts
