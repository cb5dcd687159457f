"""Executors: compile a NetDef into a Plan, then run it with one of the schedulers.

`simple` runs ops in proto order; `async_scheduling` (and dag, async_dag,
prof_dag, which map to it) runs independent ops on a thread pool. Both use
the same loop body (run.run_step), so they compute the same results.
"""

from graphnet.executors.dag import run_dag
from graphnet.executors.plan import (CrossDeviceRead, CrossDeviceReadWarning, Plan,
                                     compile_net)
from graphnet.executors.run import run_simple

__all__ = ["compile_net", "run_plan", "Plan", "CrossDeviceRead",
           "CrossDeviceReadWarning"]

_SCHEDULERS = {"simple": run_simple, "async_scheduling": run_dag, "parallel": run_dag}


def run_plan(plan):
    """Run a compiled plan once with the scheduler its net type names (a plan placed
    on several ranks brings its own runner: graphnet.distributed)."""
    (getattr(plan, "runner", None) or _SCHEDULERS[plan.net_type])(plan)
