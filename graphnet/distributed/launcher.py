"""`mpiexec -n R python -m graphnet run SCRIPT ...`: one rank of a job, supervised.

When the environment says an MPI launcher started this process with R > 1 ranks
(PMI_SIZE from MPICH's hydra, OMPI_COMM_WORLD_SIZE from Open MPI, PMIX_SIZE),
`graphnet run` forks: the child is the rank (it initialises MPI, installs the
Cluster hooks and runs the unmodified script); the parent only supervises it.
Because the parent keeps the launcher's connection open, a rank that dies (killed,
os._exit) does not take the job down silently: the parent reports which rank died,
how, and the op it was running (read from the StatusBoard), then exits non-zero
and the launcher ends the other ranks. A rank whose script raises tells the other
ranks (they stop with an error naming it and its op), waits briefly for them to
report, and calls MPI_Abort, which ends the job; MPI_Finalize is never reached
with ranks missing.

If the launcher misses the supervisor's exit (MPICH's hydra now and then does),
the survivors' heartbeat watchdog (watchdog.py) names the silent rank.

GRAPHNET_DIST=0 runs every rank as an independent single process;
GRAPHNET_DIST_SUPERVISOR=0 skips the fork (then a killed rank is reported by the
MPI launcher alone); GRAPHNET_DIST_GRACE (s, default 3) bounds how long a failing
rank waits for the others. Imports os, signal and the distributed package.
"""

import os
import signal
import sys
import traceback

__all__ = ["world_size_from_env", "under_mpi", "run_rank"]

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


def world_size_from_env():
    """How many ranks the MPI launcher started (1 when not launched by one)."""
    for var in _SIZE_VARS:
        raw = os.environ.get(var, "").strip()
        if raw.isdigit():
            return int(raw)
    return 1


def under_mpi():
    """True when this process is one of several ranks and distribution is on."""
    return (os.environ.get("GRAPHNET_DIST", "1").strip() != "0"
            and world_size_from_env() > 1)


def _grace():
    try:
        return float(os.environ.get("GRAPHNET_DIST_GRACE", "3"))
    except ValueError:
        return 3.0


def run_rank(argv, run_script):
    """Run `run_script(argv)` as one rank; returns the process exit status."""
    from graphnet.distributed.status import StatusBoard
    board = StatusBoard()
    supervised = (os.environ.get("GRAPHNET_DIST_SUPERVISOR", "1").strip() != "0"
                  and hasattr(os, "fork"))
    if supervised:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid != 0:
            return _supervise(pid, board)
        _die_with_parent(parent)
    code, clean = 1, False
    try:
        code, clean = _rank(argv, run_script, board)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if not clean:
            _abort(code)  # never MPI_Finalize with ranks missing: it would hang
        if supervised:
            _exit_with_atexit(code)
    return code


def _abort(code):
    """End the whole job from this rank (MPI_Abort: the launcher kills every rank)."""
    try:
        from mpi4py import MPI
        if MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.COMM_WORLD.Abort(code)
    finally:
        os._exit(code)


def _exit_with_atexit(code):
    """End the forked rank through the C library's exit: MPICH tells its launcher
    the rank finalized from a C atexit handler (os._exit would skip it and the
    launcher would take the rank for crashed); Python's own teardown is skipped."""
    try:
        import ctypes
        ctypes.CDLL(None).exit(code)
    except (OSError, AttributeError):
        sys.exit(code)


def _die_with_parent(parent):
    """If the supervisor is killed (the launcher ending the job), the rank goes too."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def _supervise(pid, board):
    from graphnet.distributed.status import DONE, FAILED

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    state, label = board.read()
    if state == DONE:
        return code
    if state == FAILED:
        return code or 1
    rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "?"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        how = "was killed by signal %d (%s)" % (-code, name)
    else:
        how = "exited with status %d before its script finished" % code
    sys.stderr.write("graphnet.distributed: rank %s (pid %d) %s, while %s. The job "
                     "stops: the MPI launcher ends the other ranks.\n"
                     % (rank, pid, how, label))
    sys.stderr.flush()
    return 128 - code if code < 0 else (code or 1)


def _rank(argv, run_script, board):
    from graphnet import distributed
    from graphnet.distributed.errors import DistributedError
    from graphnet.distributed.runtime import root_cause
    from graphnet.distributed.status import DONE, FAILED
    cluster = distributed.start(board)
    comm = cluster.comm
    try:
        code = run_script(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write("%s\n" % exc.code)
    except BaseException as exc:
        board.set_state(FAILED)
        cause = root_cause(exc)
        if isinstance(cause, DistributedError) and comm.failure is not None:
            sys.stderr.write("[graphnet rank %d] %s: %s\n" % (
                comm.rank, type(cause).__name__, cause))
            sys.stderr.flush()
            comm.acknowledge()
        else:
            sys.stderr.write("[graphnet rank %d] the script failed:\n" % comm.rank)
            traceback.print_exc()
            sys.stderr.flush()
            cluster.report_failure(exc)
            comm.await_acks(_grace())
        return 1, False
    try:
        board.set_label("at the end of the script, waiting for the other ranks")
        comm.barrier("the end of the script (every rank waits for all to finish)")
    except DistributedError as exc:
        board.set_state(FAILED)
        sys.stderr.write("[graphnet rank %d] %s: %s\n" % (comm.rank, type(exc).__name__,
                                                         exc))
        sys.stderr.flush()
        comm.acknowledge()
        return 1, False
    board.set_state(DONE)
    comm.stop_watchdog()
    distributed.stop()
    sys.stdout.flush()
    from mpi4py import MPI
    MPI.Finalize()
    return code or 0, True
