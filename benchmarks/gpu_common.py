"""Helpers of the gpu_*.py benchmarks: host timing of calls that end with a device
sync (time.perf_counter) and the summary line
that tests/gpu/run.sh collects ("SUMMARY| what | ours | peer | ratio | target")."""

import time

__all__ = ["time_gpu", "summary"]


def time_gpu(fn, repeat, warmup=2):
    """Median seconds per call of fn (which returns after its GPU work finished)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def summary(what, ours, peer, ratio, target):
    line = "SUMMARY| %-44s | %-22s | %-22s | %7.3f | %s" % (what, ours, peer, ratio, target)
    print(line, flush=True)
    return line
