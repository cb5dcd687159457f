"""A failing, killed or stuck rank ends the job in bounded time with an error naming
the rank and the op; ranks that built different nets fail at CreateNet."""

import pytest

from tests.distributed import mpirun

pytestmark = mpirun.needs_mpi
BOUND = 30  # seconds


@pytest.mark.parametrize("mode,how,transport", [
    ("raise", "ValueError: injected failure on rank 1", "mpi"),
    ("raise", "ValueError: injected failure on rank 1", "device"),
    ("exit", "rank 1 (pid", "mpi"),
    ("kill", "was killed by signal 9 (SIGKILL)", "mpi"),
])
def test_a_failed_rank_stops_the_job_naming_rank_and_op(mode, how, transport):
    # the launcher ends the job when the dead rank's supervisor exits; if it does not
    # (hydra misses it now and then), the heartbeats do within GRAPHNET_DIST_LIVENESS.
    # transport "device": the all-reduce goes through the device-transport path
    # (tests/distributed/host_transport.py), as on GPUs over NCCL
    result = mpirun.run(2, "fault.py", mode, "1", "3", timeout=BOUND + 30,
                        env={"GRAPHNET_DIST_LIVENESS": "5", "GRAPHNET_TEST_HOST_TRANSPORT":
                             "1" if transport == "device" else "0"})
    assert result.returncode != 0, result
    assert result.seconds < BOUND, result
    assert how in result.output, result
    assert "op #1 (FaultOnRank) of net 'fault'" in result.output, result
    if mode == "raise":  # the survivor says where it was when it heard
        assert "rank 0] RankFailedError: rank 1 failed in op #1 (FaultOnRank)" in \
            result.output, result
        assert "rank 0 stopped while waiting in op #2 (NCCLAllreduce)" in result.output
    if mode == "exit":
        assert "exited with status 3 before its script finished, while running op #1 " \
               "(FaultOnRank) of net 'fault' on gpu_1" in result.output, result
    assert "all runs done" not in result.output


def test_a_stuck_rank_is_named_after_the_deadline():
    result = mpirun.run(2, "fault.py", "hang", "1", "2", timeout=BOUND + 30,
                        env={"GRAPHNET_DIST_TIMEOUT": "2", "GRAPHNET_DIST_GRACE": "0.5"})
    assert result.returncode != 0, result
    assert result.seconds < BOUND, result
    assert "PeerTimeoutError: rank 0 made no progress for 2 s in op #2 (NCCLAllreduce)" \
        in result.output, result
    assert "waiting for rank 1" in result.output, result


def test_a_silent_rank_is_named_with_its_last_op_by_the_heartbeats():
    """A rank that stops answering (as a dead one does, whatever the launcher does)
    is found by the ranks waiting for it, with the op it last reported."""
    result = mpirun.run(2, "fault.py", "silent", "1", "2", timeout=BOUND + 30,
                        env={"GRAPHNET_DIST_LIVENESS": "3", "GRAPHNET_DIST_GRACE": "0.5"})
    assert result.returncode != 0, result
    assert result.seconds < BOUND, result
    assert "PeerLostError: rank 1 stopped responding: no heartbeat for" in result.output
    assert "its last report" in result.output and \
        "running op #1 (FaultOnRank) of net 'fault' on gpu_1" in result.output, result
    assert "rank 0 stopped while waiting in op #2 (NCCLAllreduce)" in result.output


def test_mismatched_nets_fail_at_create_net():
    result = mpirun.run(2, "mismatch.py", timeout=BOUND + 30)
    assert result.returncode != 0, result
    assert result.seconds < BOUND, result
    out = result.output
    assert "NetMismatchError: CreateNet('mismatched'): the ranks built different nets" \
        in out, result
    assert "rank 0: net 'mismatched', 2 ops" in out and "rank 1: net 'mismatched', 3 ops" \
        in out, result
    assert "first difference at op #2:" in out, result
    assert "rank 0: (no op #2: this net has 2 ops)" in out, result
    assert "not reached" not in out
