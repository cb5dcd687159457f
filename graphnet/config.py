"""Process-wide settings: virtual GPU count, strict device checking, fast kernels.

Read from the environment at first use (GRAPHNET_VIRTUAL_GPUS=N,
GRAPHNET_STRICT_DEVICES=1, GRAPHNET_FAST_KERNELS=0, GRAPHNET_FUSE_AFTER=N) and settable from Python;
imports nothing.
"""

import os

__all__ = ["virtual_gpu_count", "set_virtual_gpu_count", "strict_devices",
           "set_strict_devices", "fast_kernels", "set_fast_kernels", "fuse_after",
           "set_fuse_after"]

_settings = {}


def _env_int(name, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("%s must be a whole number, found %r" % (name, raw))
    if value < 0:
        raise ValueError("%s must be >= 0, found %d" % (name, value))
    return value


def _setting(key, env, default):
    """The setting `key`: set from Python, else read once from the environment."""
    value = _settings.get(key)
    if value is None:
        value = _settings[key] = _env_int(env, default)
    return value


def virtual_gpu_count():
    """How many numpy-backed GPUs to emulate when no real GPU is used."""
    return _setting("virtual_gpus", "GRAPHNET_VIRTUAL_GPUS", 0)


def set_virtual_gpu_count(n):
    """Emulate `n` GPUs (the programmatic twin of GRAPHNET_VIRTUAL_GPUS)."""
    if int(n) != n or n < 0:
        raise ValueError("virtual GPU count must be a whole number >= 0, found %r" % (n,))
    _settings["virtual_gpus"] = int(n)


def strict_devices():
    """True: an op reading a blob from another device raises instead of warning."""
    return bool(_setting("strict", "GRAPHNET_STRICT_DEVICES", 0))


def set_strict_devices(strict=True):
    _settings["strict"] = bool(strict)


def fast_kernels():
    """True (default): embedding ops use their fast CPU kernels (whole-row gathers,
    CSR segment sums, a compiled scatter loop when the [fast] extra is installed).
    False: the plain numpy formulations (take + add.reduceat, ufunc.at), kept as
    the reference the fast ones are tested against."""
    return bool(_setting("fast", "GRAPHNET_FAST_KERNELS", 1))


def set_fast_kernels(fast=True):
    _settings["fast"] = bool(fast)


def fuse_after():
    """After how many runs with the same input shapes a CPU net becomes a program for
    the compiled loop of graphnet.executors.fused; 0: never. Default 50."""
    return _setting("fuse_after", "GRAPHNET_FUSE_AFTER", 50)


def set_fuse_after(runs):
    """Fuse after `runs` runs (0: never; None: back to GRAPHNET_FUSE_AFTER / 50)."""
    if runs is None:
        _settings.pop("fuse_after", None)
        return
    if int(runs) != runs or runs < 0:
        raise ValueError("fuse_after must be a whole number >= 0, found %r" % (runs,))
    _settings["fuse_after"] = int(runs)
