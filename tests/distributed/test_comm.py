"""Pieces that need no MPI: the wire format of arrays, the status board a supervisor
reads after its rank died, and how the launcher recognises an MPI launch."""

import numpy as np
import pytest

from graphnet.distributed import comm, launcher, nccl, status
from graphnet.distributed.errors import DistributedError
from graphnet.distributed.placement import Placement


@pytest.mark.parametrize("value", [
    np.array(1.5, np.float32),                       # 0-d stays 0-d
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.arange(6, dtype=np.float16)[::2],             # not contiguous
    np.array([True, False]),
    np.zeros((0, 3), np.float32),
    np.array(["a", "bc"], dtype=object),             # pickled
    b"raw bytes",
])
def test_arrays_survive_the_wire_format(value):
    header, payload = comm.encode(value)
    assert header.dtype == np.int64 and header.shape == (12,)
    assert payload.dtype == np.uint8 and payload.size == header[3]
    back = comm.decode(header, payload.copy())
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        assert np.array_equal(back, value)
    else:
        assert back == value


def test_nccl_carries_only_gpu_arrays_and_their_header_says_so():
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert not nccl.NcclTransport.carries(value)  # host arrays keep the MPI path
    header, payload = comm.encode(value, device=True)  # what a carried array sends
    assert header[0] == comm._DEVICE and payload.size == 0
    assert comm.header_dtype_shape(header) == (np.dtype(np.float32), (2, 3))


class _OneRank(object):
    """The one collective negotiate() makes, for a world of one process."""
    rank, size = 0, 1

    def allgather_bytes(self, data, label):
        return [bytes(data)]


@pytest.mark.parametrize("env, why", [
    ("1", "rank 0: its GPU ops run on numpy ("),
    ("", "rank 0: its GPU ops run on numpy ("),
    ("0", "rank 0: GRAPHNET_DIST_NCCL=0"),
])
def test_without_cupy_gpu_arrays_are_staged_over_mpi_and_the_reason_is_given(
        monkeypatch, env, why):
    monkeypatch.setenv("GRAPHNET_DIST_NCCL", env)
    transport, reason = nccl.negotiate(_OneRank(), Placement(0, 1, 2), 2)
    assert transport is None and reason.startswith(why), reason


def test_a_bad_nccl_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("GRAPHNET_DIST_NCCL", "maybe")
    with pytest.raises(DistributedError, match="GRAPHNET_DIST_NCCL must be 0 or 1, "
                                               "found 'maybe'"):
        nccl.nccl_requested()


def test_status_board_keeps_the_last_label_and_state():
    board = status.StatusBoard()
    assert board.read() == (status.RUNNING, "starting")
    label = board.encode("running op #5 (FC) of net 'train' on gpu_1")
    board.set_label(label)
    board.set_state(status.FAILED)
    assert board.read() == (status.FAILED, "running op #5 (FC) of net 'train' on gpu_1")
    board.set_label("x" * 5000)  # truncated to fit
    assert board.read()[1] == "x" * 1021


@pytest.mark.parametrize("env,size,active", [
    ({}, 1, False),
    ({"PMI_SIZE": "4"}, 4, True),                  # MPICH's hydra
    ({"OMPI_COMM_WORLD_SIZE": "2"}, 2, True),      # Open MPI
    ({"PMI_SIZE": "1"}, 1, False),                 # mpiexec -n 1: one process
    ({"PMI_SIZE": "4", "GRAPHNET_DIST": "0"}, 4, False),
])
def test_launcher_recognises_an_mpi_launch(monkeypatch, env, size, active):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "GRAPHNET_DIST"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert launcher.world_size_from_env() == size
    assert launcher.under_mpi() == active
