"""workspace.C.benchmark_net: time a created net (Caffe2's NetBase::TEST_Benchmark).

A `simple` net runs `warmup_runs` times, then `main_runs` times whole, then (if
run_individual) `main_runs` more times op by op, printing to stdout as Caffe2's
SimpleNet did; every run executes the ops, so state such as Iter counters and
optimizer updates advances each time. Other net types run whole only and log.
graphnet has no operator cost inference, so the FLOP / memory sections Caffe2
printed for ops with a cost function are absent. Imports executors only.
"""

import logging
import sys
import time

import numpy as np

from graphnet import c10_flags
from graphnet.executors import run_plan
from graphnet.executors.run import run_step

__all__ = ["benchmark_net"]

log = logging.getLogger("graphnet")


def _g(value):
    """C++ ostream's default float output (6 significant digits, like %g)."""
    return "%g" % value


def _per_ms(millis, runs):
    """Caffe2 returned a vector<float>: values carry float32 precision."""
    return float(np.float32(millis / runs if runs else float("nan")))


def _check_warmup(warmup_runs):
    if warmup_runs < 0:
        raise RuntimeError("Number of warm up runs should be non negative, provided "
                           "%d." % warmup_runs)


def _check_main(main_runs):
    if main_runs < 0:
        raise RuntimeError("Number of main runs should be non negative, provided %d."
                           % main_runs)


def benchmark_net(plan, warmup_runs, main_runs, run_individual, out=None):
    """Benchmark a compiled plan. Returns [ms per whole run, ms per op...] for a
    simple net (op times are 0 unless run_individual), [ms per run] otherwise."""
    out = out or sys.stdout
    if plan.net_type != "simple":
        return _benchmark_whole(plan, warmup_runs, main_runs, run_individual)
    write = out.write
    write("Starting benchmark.\nRunning warmup runs.\n")
    _check_warmup(warmup_runs)
    for _ in range(warmup_runs):
        run_plan(plan)
    write("Main runs.\n")
    _check_main(main_runs)
    whole = c10_flags.get_flag("caffe2_simple_net_benchmark_run_whole_net", True)
    millis = 0.0
    if whole:
        start = time.perf_counter()
        for _ in range(main_runs):
            run_plan(plan)
        millis = (time.perf_counter() - start) * 1000.0
        write("Main run finished. Milliseconds per iter: %s. Iters per second: %s\n" % (
            _g(_per_ms(millis, main_runs)),
            _g(1000.0 * main_runs / millis if millis else float("inf"))))
    per_op = [0.0] * len(plan.steps)
    if run_individual:
        per_type = {}
        for _ in range(main_runs):
            for k, step in enumerate(plan.steps):
                start = time.perf_counter()
                run_step(plan, step)
                spent = (time.perf_counter() - start) * 1000.0
                per_op[k] += spent
                per_type[step.op_type] = per_type.get(step.op_type, 0.0) + spent
        _print_profile(plan, per_op, per_type, main_runs, write)
    result = [_per_ms(t, main_runs) for t in per_op]
    if whole:
        result.insert(0, _per_ms(millis, main_runs))
    out.flush()
    return result


def _print_profile(plan, per_op, per_type, main_runs, write):
    counts = {}
    for k, step in enumerate(plan.steps):
        counts[step.op_type] = counts.get(step.op_type, 0) + 1
        op = step.op
        name = op.name or (op.output[0] if op.output else "NO_OUTPUT")
        write("Operator #%d (%s, %s) %s ms/iter\n" % (
            k, name, step.op_type, _g(_per_ms(per_op[k], main_runs))))
    scale = 1.0 / main_runs if main_runs else float("nan")
    rows = sorted(per_type.items(), key=lambda item: -item[1])
    total = sum(value * scale for _, value in rows)
    if total > 0:
        write("Time per operator type:\n")
    for op_type, value in rows:
        percent = 100.0 * value * scale / total if total > 0 else 0.0
        write("%15s ms. %10s%%. %s (%d ops)\n" % (_g(value * scale), _g(percent), op_type,
                                                  counts[op_type]))
    if total > 0:
        write("%15s ms in Total\n" % _g(total))


def _benchmark_whole(plan, warmup_runs, main_runs, run_individual):
    """Caffe2's NetBase::TEST_Benchmark, used by every non-simple net type."""
    log.info("Starting benchmark, running warmup runs")
    _check_warmup(warmup_runs)
    _check_main(main_runs)
    for _ in range(warmup_runs):
        run_plan(plan)
    log.info("Running main runs")
    start = time.perf_counter()
    for _ in range(main_runs):
        run_plan(plan)
    millis = (time.perf_counter() - start) * 1000.0
    log.info("Main runs finished. Milliseconds per iter: %s. Iters per second: %s",
             _g(_per_ms(millis, main_runs)),
             _g(1000.0 * main_runs / millis if millis else float("inf")))
    if run_individual:
        log.info("Net does not support per-op benchmark; to run it, switch to a simple "
                 "net type")
    return [_per_ms(millis, main_runs)]
