"""The `dag` / `async_scheduling` executor: independent ops on a thread pool.

An op waits for the last writer of each input and control input
(read-after-write), the previous writer of each output (write-after-write)
and every reader of an output's previous version (write-after-read), so any
schedule it picks computes what `simple` computes. numpy releases the GIL in
its heavy loops, which is where the threads pay off.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphnet.executors.run import runners

__all__ = ["dependencies", "run_dag"]


def dependencies(steps):
    """parents[i]: sorted indexes of the ops op i must wait for."""
    last_writer, readers = {}, {}
    parents = []
    for step in steps:
        deps = set()
        for name in list(step.in_names) + list(step.op.control_input):
            if name in last_writer:
                deps.add(last_writer[name])
        for name in step.out_names:
            if name in last_writer:
                deps.add(last_writer[name])
            deps.update(readers.get(name, ()))
        deps.discard(step.index)
        parents.append(sorted(deps))
        for name in step.in_names:
            readers.setdefault(name, set()).add(step.index)
        for name in step.out_names:
            last_writer[name] = step.index
            readers[name] = set()
    return parents


_pools = {}
_pools_lock = threading.Lock()


def _pool(workers):
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="graphnet-dag")
        return pool


def run_dag(plan):
    """Run the plan's ops as their dependencies allow; re-raise the first failure
    (by op index) after running ops have finished; no new op starts after it."""
    steps = plan.steps
    if not steps:
        return
    if plan.dependencies is None:
        plan.dependencies = dependencies(steps)
    parents = plan.dependencies
    cached = getattr(plan, "_children", None)
    if cached is None or cached[0] is not parents:  # (distributed re-lowering swaps them)
        children = [[] for _ in steps]
        for i, ps in enumerate(parents):
            for p in ps:
                children[p].append(i)
        plan._children = cached = (parents, children)
    children = cached[1]
    waiting = [len(p) for p in parents]
    run_steps = runners(plan)
    workers = plan.num_workers or min(8, os.cpu_count() or 1)
    pool = _pool(workers)
    lock = threading.Lock()
    done = threading.Event()
    state = {"remaining": len(steps), "running": 0, "errors": []}

    def finish():
        if state["running"] == 0 and (state["errors"] or state["remaining"] == 0):
            done.set()

    def launch(index):
        state["running"] += 1
        pool.submit(work, index)

    def work(index):
        # Run `index`, then keep going on this thread with one newly ready child:
        # chains of ops (most of a net) then cost no hand-off between threads; the
        # other ready children go to the pool.
        with np.errstate(all="ignore"):
            _work(index)

    def _work(index):
        while index is not None:
            error = None
            try:
                run_steps[index]()
            except BaseException as exc:  # reported to the caller below
                error = exc
            with lock:
                state["remaining"] -= 1
                follow = None
                if error is not None:
                    state["errors"].append((index, error))
                elif not state["errors"]:
                    for child in children[index]:
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            if follow is None:
                                follow = child
                            else:
                                launch(child)
                if follow is None:
                    state["running"] -= 1
                    finish()
                index = follow

    with lock:
        ready = [i for i in range(len(steps)) if waiting[i] == 0]
        for i in ready[1:]:
            launch(i)
        state["running"] += 1
    work(ready[0])  # the calling thread takes a share instead of only waiting
    done.wait()
    if state["errors"]:
        raise min(state["errors"], key=lambda e: e[0])[1]
