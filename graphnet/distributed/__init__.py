"""The same net across processes: logical devices placed on MPI ranks.

`mpiexec -n R python -m graphnet run SCRIPT ...` runs an unmodified script on R
ranks. Every rank builds the whole net; `gpu_d` lives on rank d // devices_per_rank
(placement.py) and each rank runs only the ops placed on its devices, CPU ops on
all. A Copy across ranks becomes a matched MPI send/receive, NCCLAllreduce over
devices of several ranks an MPI all-reduce, DLRM's butterfly shuffle one
all-to-all per shuffle (lowering.py, butterfly.py). Mismatched nets are caught
when created (netcheck.py); a failed or killed rank stops the job with an error
naming it and its op (comm.py, launcher.py).

Module map: placement (devices -> ranks), comm (mpi4py with deadlines),
watchdog (heartbeats), lowering
(the global schedule), butterfly (the all-to-all pass), steps (this rank's
Steps), netcheck, runtime (workspace hooks), status, launcher, errors.

Blobs are numpy arrays and travel over MPI. The NCCL path for CuPy blobs is not
built; where it goes: Placement.local_device_index maps gpu_d to the rank's
physical GPU, and steps.py calls its Comm only through send / recv /
allreduce_sum / alltoallv, so a Comm over NCCL (cupy.cuda.nccl, its unique id
broadcast over MPI; all-to-all as grouped send / receive) serves GPU arrays
with the same schedule, deadlines staying on the MPI control channel.
"""

from graphnet.distributed.errors import (DistributedError, NetMismatchError,
                                         PeerLostError, PeerTimeoutError,
                                         PlacementError, RankFailedError)

__all__ = ["start", "stop", "is_active", "rank", "world_size", "cluster", "stats",
           "reset_stats", "set_alltoall", "mpi_comm", "DistributedError", "RankFailedError",
           "PeerTimeoutError", "PeerLostError", "NetMismatchError", "PlacementError"]

_state = {"cluster": None, "comm": None}


def start(board=None, timeout=None):
    """Initialise MPI, make this process a rank of the job and install the workspace
    hooks (the launcher does this; scripts need not). Returns the Cluster."""
    from graphnet import workspace
    from graphnet.distributed.comm import Comm
    from graphnet.distributed.runtime import Cluster
    if _state["cluster"] is None:
        comm = _state["comm"] or Comm(timeout=timeout)
        _state["comm"] = comm
        _state["cluster"] = Cluster(comm, board)
        workspace._set_distributed(_state["cluster"])
    return _state["cluster"]


def stop():
    """Back to single-process semantics (the launcher calls this at the end)."""
    from graphnet import workspace
    workspace._set_distributed(None)
    _state["cluster"] = None


def cluster():
    """The active Cluster, or None in a single process."""
    return _state["cluster"]


def is_active():
    return _state["cluster"] is not None


def rank():
    """This process's rank (0 in a single process)."""
    c = _state["cluster"]
    return c.rank if c is not None else 0


def world_size():
    c = _state["cluster"]
    return c.size if c is not None else 1


def stats():
    """What this rank sent so far: bytes_sent, messages, allreduce_bytes, collectives."""
    comm = _state["comm"]
    from graphnet.distributed.comm import Stats
    return (comm.stats if comm is not None else Stats()).snapshot()


def set_alltoall(enabled=True):
    """Turn the butterfly all-to-all pass on or off for nets placed from now on
    (default on; GRAPHNET_DIST_ALLTOALL=0 turns it off)."""
    c = _state["cluster"]
    if c is not None:
        c.alltoall = bool(enabled)


def reset_stats():
    if _state["comm"] is not None:
        _state["comm"].stats.reset()


def mpi_comm():
    """The Comm that Caffe2's MPI ops use as their global communicator (MPI is
    initialised on first use, also outside `graphnet run`)."""
    if _state["comm"] is None:
        from graphnet.distributed.comm import Comm
        _state["comm"] = Comm()
    return _state["comm"]
