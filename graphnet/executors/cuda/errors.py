"""CUDA failures as sentences: which device, what happened, what to do.

Imports nothing; the cupy module is passed in.
"""

from graphnet.devices import device_name

__all__ = ["is_cuda_error", "describe_cuda_error"]

# Errors after which CUDA refuses every later call in this process.
_STICKY = ("IllegalAddress", "LaunchFailure", "IllegalInstruction", "MisalignedAddress",
           "HardwareStackError", "InvalidPc", "Assert")


def _cuda_error_types(cp):
    types = [cp.cuda.memory.OutOfMemoryError, cp.cuda.runtime.CUDARuntimeError]
    driver = getattr(cp.cuda, "driver", None)
    if driver is not None and hasattr(driver, "CUDADriverError"):
        types.append(driver.CUDADriverError)
    return tuple(types)


def is_cuda_error(cp, exc):
    return exc is not None and isinstance(exc, _cuda_error_types(cp))


def describe_cuda_error(cp, exc, step, physical):
    """One line saying what the CUDA error means for this op and device."""
    where = "%s (physical GPU %d)" % (device_name(step.device), physical)
    if isinstance(exc, cp.cuda.memory.OutOfMemoryError):
        try:
            with cp.cuda.Device(physical):
                free, total = cp.cuda.runtime.memGetInfo()
            pool = cp.get_default_memory_pool().total_bytes()
            state = "%.1f of %.1f GiB free, CuPy's pool holds %.1f GiB" % (
                free / 2.0 ** 30, total / 2.0 ** 30, pool / 2.0 ** 30)
        except Exception:
            state = "memory state unavailable"
        return ("out of GPU memory on %s (%s). Fix: a smaller batch, fewer logical GPUs "
                "mapped onto this GPU (GRAPHNET_GPU_MAP), or free blobs you no longer "
                "need." % (where, state))
    text = str(exc)
    if any(name in text for name in _STICKY):
        return ("a kernel fault on %s: CUDA keeps this error for the rest of the process "
                "(every later CUDA call fails). Fix: restart the process; run with "
                "CUDA_LAUNCH_BLOCKING=1 (or compute-sanitizer) to find the kernel." % where)
    return "CUDA error on %s: %s" % (where, text)
