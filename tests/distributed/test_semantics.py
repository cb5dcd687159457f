"""Feeds, fetches, copies, CPU ops, random fills and all-reduce on 2 ranks x 2 devices
(scripts/semantics.py asserts on every rank)."""

from tests.distributed import mpirun

pytestmark = mpirun.needs_mpi


def test_placement_semantics_on_two_ranks_with_two_devices_each():
    result = mpirun.run(2, "semantics.py", env={"GRAPHNET_DEVICES_PER_RANK": "2"})
    assert result.returncode == 0, result
    assert "semantics OK on rank 0" in result.output, result
    assert "semantics OK on rank 1" in result.output, result
