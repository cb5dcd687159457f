"""Scale-out with real GPUs (issue 6's NCCL path), as far as one GPU allows.

* a world of one rank: NCCL is negotiated; the all-to-all to itself (one NCCL
  group), the all-reduce and the abort of a stuck receive (scripts/);
* two ranks sharing the one GPU: NCCL refuses a GPU shared by two ranks, so the
  negotiation falls back to host-staged MPI and says why, and DLRM training on
  4 logical GPUs placed on the 2 ranks (CuPy, per-device streams) follows the
  one-process curve of 4 emulated GPUs within 1e-5.
Needs mpi4py and mpiexec (tests/gpu/run.sh carries the mpich wheels).
"""

import os
import sys
import warnings

import numpy as np

from tests.distributed import mpirun

sys.path.insert(0, os.path.join(mpirun.ROOT, "examples"))
import dlrm_train  # noqa: E402

from graphnet import workspace  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = mpirun.needs_mpi
ITERS = 8


def test_nccl_world_of_one_rank():
    result = mpirun.run(1, os.path.join(HERE, "scripts", "nccl_world_of_one.py"),
                        timeout=20)
    print(result.output)
    assert result.returncode == 0, result
    assert "nccl world of one OK" in result.output, result


def test_two_ranks_on_one_gpu_fall_back_to_mpi_and_train_like_one_process(tmp_path):
    cfg = dlrm_train.Config(batch=16)
    workspace.SetVirtualGpuCount(4)
    data = dlrm_train.make_data(cfg, num_batches=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emulated = np.array(dlrm_train.train(cfg, 4, data, ITERS, show=False))
    out = str(tmp_path / "losses.npz")
    result = mpirun.run(2, "dlrm_losses.py", out, "--iters", str(ITERS), "--real-gpus",
                        env={"GRAPHNET_DEVICES_PER_RANK": "2",
                             "GRAPHNET_DIST_TIMEOUT": "25"}, timeout=45)
    assert result.returncode == 0, result
    got = np.load(out)
    transport = str(got["transport"])
    print(transport)
    assert transport.startswith("mpi: ranks 0 and 1 both use GPU"), transport
    on, off = got["alltoall_on"], got["alltoall_off"]
    rel = float(np.max(np.abs(on - emulated) / np.abs(emulated)))
    print("2 ranks x 2 logical GPUs on CuPy vs 4 emulated GPUs: max rel %.2e" % rel)
    assert rel < 1e-5, (on, emulated)
    assert float(np.max(np.abs(off - on) / np.abs(on))) < 1e-6
