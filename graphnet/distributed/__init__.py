"""The same net across processes: logical devices placed on MPI ranks.

`mpiexec -n R python -m graphnet run SCRIPT ...` runs an unmodified script on R
ranks. Every rank builds the whole net; `gpu_d` lives on rank d // devices_per_rank
(placement.py) and each rank runs only the ops placed on its devices, CPU ops on
all. A Copy across ranks becomes a matched send/receive, NCCLAllreduce over
devices of several ranks an all-reduce, DLRM's butterfly shuffle one
all-to-all per shuffle (lowering.py, butterfly.py). Mismatched nets are caught
when created (netcheck.py); a failed or killed rank stops the job with an error
naming it and its op (comm.py, launcher.py).

Module map: placement (devices -> ranks), comm (mpi4py with deadlines),
nccl (GPU arrays over NCCL), watchdog (heartbeats), lowering
(the global schedule), butterfly (the all-to-all pass), steps (this rank's
Steps), netcheck, runtime (workspace hooks), status, launcher, errors.

numpy blobs travel over MPI. CuPy blobs (real GPUs) travel over NCCL when every
rank can use it (CuPy with NCCL 2.7+, a GPU of its own): the header over MPI, the
bytes as NCCL send/receive, all-reduces as NCCL all-reduce, the all-to-all as one
NCCL group; deadlines and failure notices stay on the MPI control channel
(nccl.py). Otherwise they are staged through host memory over MPI, and
`transport()` says why.
"""

from graphnet.distributed.errors import (DistributedError, NetMismatchError,
                                         PeerLostError, PeerTimeoutError,
                                         PlacementError, RankFailedError)

__all__ = ["start", "stop", "is_active", "rank", "world_size", "cluster", "stats",
           "transport",
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


def transport():
    """("nccl" or "mpi", why not NCCL): how GPU arrays move between this job's ranks,
    settled when the first net that moves data between ranks is created."""
    c = _state["cluster"]
    if c is None:
        return "mpi", "a single process"
    reason = c.transport_reason
    return c.transport, ("no net has moved data between ranks yet" if reason is None
                         else reason)


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
