"""Whether CuPy can drive GPUs in this process, and the logical -> physical map.

Importing this module imports nothing heavy: CuPy is imported on the first
call of `load()`, and only if it is installed (a find_spec look-up first, so
a CPU-only machine never pays for it). Imports settings only.
"""

import importlib
import importlib.util

from graphnet.executors.cuda import settings

__all__ = ["load", "forget", "why_unavailable", "DeviceMap", "device_map"]

_state = {}


def forget():
    """Probe again on the next call (tests; after changing GRAPHNET_CUDA)."""
    _state.clear()


def load():
    """The cupy module when CuPy imports and sees at least one GPU, else None.

    The reason for None is kept for messages (why_unavailable()).
    """
    if "cupy" in _state:
        return _state["cupy"]
    cupy, reason, count = None, None, 0
    if not settings.cuda_enabled():
        reason = "CuPy use is switched off (GRAPHNET_CUDA=0)"
    elif importlib.util.find_spec("cupy") is None:
        reason = ("CuPy is not installed. Fix: pip install cupy-cuda12x (or "
                  "'graphnet[gpu]'), matching the machine's CUDA version")
    else:
        try:
            module = importlib.import_module("cupy")
            count = int(module.cuda.runtime.getDeviceCount())
        except Exception as exc:  # a broken install or no driver: run on numpy
            reason = "CuPy is installed but cannot reach a GPU (%s: %s)" % (
                type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc) else "")
        else:
            if count < 1:
                reason = "CuPy is installed but sees no GPU (getDeviceCount() == 0)"
            else:
                cupy = module
    _state.update(cupy=cupy, reason=reason, physical=count if cupy else 0)
    return cupy


def why_unavailable():
    """One sentence: why CUDA-typed ops do not run on CuPy here (None if they do)."""
    load()
    return _state["reason"]


def physical_count():
    load()
    return _state["physical"]


class DeviceMap(object):
    """Logical GPU d (what nets say: gpu_d) -> physical CUDA device."""

    __slots__ = ("physical", "ids")

    def __init__(self, physical, spec):
        self.physical = physical
        if spec is None:
            self.ids = tuple(range(physical))
        elif spec[0] == "count":
            self.ids = tuple(d % physical for d in range(spec[1]))
        else:
            bad = [p for p in spec[1] if p >= physical]
            if bad:
                raise ValueError(
                    "GPU map %s names physical GPU %d, but this machine has %d (ids 0 to "
                    "%d). Fix: list ids below %d in GRAPHNET_GPU_MAP / "
                    "workspace.SetGpuDeviceMapping." % (list(spec[1]), bad[0], physical,
                                                        physical - 1, physical))
            self.ids = spec[1]

    def __len__(self):
        return len(self.ids)

    def physical_of(self, logical):
        return self.ids[logical]

    def __repr__(self):
        return "DeviceMap(%s)" % ", ".join("gpu_%d->%d" % (d, p)
                                           for d, p in enumerate(self.ids))


def device_map():
    """The current DeviceMap (None without CuPy); rebuilt when the setting changes."""
    if load() is None:
        return None
    spec = settings.gpu_map()
    cached = _state.get("map")
    if cached is None or cached[0] != spec:
        cached = _state["map"] = (spec, DeviceMap(_state["physical"], spec))
    return cached[1]
