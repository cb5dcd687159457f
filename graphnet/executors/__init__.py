"""Executors: compile a NetDef into a Plan, then run it with one of the schedulers.

`simple` runs ops in proto order; `async_scheduling` (and dag, async_dag,
prof_dag, which map to it) runs independent ops on a thread pool. Both use
the same loop body (run.run_step), so they compute the same results. A plan
with ops on real GPUs (CuPy) runs with graphnet.executors.cuda's runner under
either net type: ops are enqueued in net order on per-device streams. A CPU net
run often with the same input shapes is compiled into one numba function
(graphnet.executors.fused).
"""

from graphnet import config
from graphnet.executors.backends import _cuda as _cuda_state  # non-empty once CuPy runs ops
from graphnet.executors.dag import run_dag
from graphnet.executors.plan import (CrossDeviceRead, CrossDeviceReadWarning, Plan,
                                     compile_net)
from graphnet.executors.fused import maybe_run_fused
from graphnet.executors.run import run_simple

__all__ = ["compile_net", "run_plan", "Plan", "CrossDeviceRead",
           "CrossDeviceReadWarning"]

_SCHEDULERS = {"simple": run_simple, "async_scheduling": run_dag, "parallel": run_dag}


def run_plan(plan):
    """Run a compiled plan once with the scheduler its net type names (a plan placed
    on several ranks brings its own runner: graphnet.distributed; a plan with ops
    on real GPUs gets the CUDA runner, decided once per plan)."""
    runner = getattr(plan, "runner", None)
    if runner is None and _cuda_state and not getattr(plan, "_gpu_checked", False):
        runner = _gpu_runner(plan)
    if runner is None and config.fuse_after():  # hot CPU nets run as one compiled call
        return maybe_run_fused(plan, _SCHEDULERS[plan.net_type])
    (runner or _SCHEDULERS[plan.net_type])(plan)


def _gpu_runner(plan):
    """plan.runner := the CUDA runner when a step runs on CuPy (checked once)."""
    plan._gpu_checked = True
    if any(step.backend.name == "cupy" for step in plan.steps):
        from graphnet.executors.cuda.runner import run_cuda_plan
        plan.runner = run_cuda_plan
    return plan.runner
