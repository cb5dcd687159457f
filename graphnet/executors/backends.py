"""Array backends: which array module runs a device, and how data moves.

The CPU and virtual GPUs run on numpy. A backend for real GPUs (CuPy) is
chosen here when present, and only then imported. Imports numpy, config and
devices.
"""

import numpy as np

from graphnet import config
from graphnet.devices import CPU, device_name
from graphnet.errors import GraphnetError

__all__ = ["NumpyBackend", "NUMPY", "backend_for", "num_gpu_devices", "to_numpy"]


class NumpyBackend(object):
    """numpy for the CPU and for emulated GPUs (blobs tagged gpu_d live on device d)."""

    name = "numpy"
    xp = np

    def copy_to(self, value, device):
        """A fresh array holding `value`, placed on `device`."""
        return np.array(value, copy=True)

    def copy_like(self, value, like):
        """A fresh array holding `value`, placed where array `like` lives."""
        return np.array(value, copy=True)

    def read_from(self, value, src, dst):
        """Make `value` (on src) readable by an op on dst. numpy memory is shared by
        every emulated device, so nothing moves; the executor still reports it."""
        return value

    def to_host(self, value):
        return value

    def from_host(self, array, device):
        return array


NUMPY = NumpyBackend()


def num_gpu_devices():
    """GPUs the executor can run ops on: the emulated count (real GPUs: issue 4)."""
    return config.virtual_gpu_count()


def backend_for(device):
    """The backend that runs ops placed on `device`; clear error if none can."""
    if device == CPU or not device.is_gpu:
        return NUMPY
    count = num_gpu_devices()
    if device.id < 0 or device.id >= count:
        raise GraphnetError(
            "Cannot run on device %s: this process has %d GPU%s (virtual GPUs are "
            "numpy-backed). Fix: set GRAPHNET_VIRTUAL_GPUS=%d (or call "
            "workspace.SetVirtualGpuCount(%d)) before building the workspace, or place "
            "the op on an existing device." % (
                device_name(device), count, "" if count == 1 else "s",
                device.id + 1, device.id + 1))
    return NUMPY


def to_numpy(value):
    """Host numpy view of a blob value from any backend."""
    if isinstance(value, np.ndarray):
        return value
    get = getattr(value, "get", None)
    if get is not None and type(value).__module__.startswith("cupy"):
        return get()
    return value
