"""Array backends: which array module runs a device, and how data moves.

The CPU and virtual GPUs run on numpy. CUDA-typed ops run on real GPUs through
CuPy (graphnet.executors.cuda) when CuPy imports and sees at least one GPU,
unless virtual GPUs were asked for (GRAPHNET_VIRTUAL_GPUS=N or
workspace.SetVirtualGpuCount(N), N > 0): those always mean numpy emulation.
CuPy is imported only here, on first need, and only if installed. Imports
numpy, config, devices and the cuda package's probe/settings.
"""

import numpy as np

from graphnet import config
from graphnet.devices import CPU, device_name
from graphnet.errors import GraphnetError
from graphnet.executors.cuda import probe

__all__ = ["NumpyBackend", "NUMPY", "backend_for", "num_gpu_devices", "to_numpy",
           "cuda_backend", "gpu_backend_name"]


class NumpyBackend(object):
    """numpy for the CPU and for emulated GPUs (blobs tagged gpu_d live on device d)."""

    name = "numpy"
    xp = np

    def copy_to(self, value, device):
        """A fresh array holding `value`, placed on `device` (a CuPy value, read
        by a CPU op of a net that also runs on real GPUs, comes to the host)."""
        return np.array(to_numpy(value), copy=True)

    def copy_like(self, value, like):
        """A fresh array holding `value`, placed where array `like` lives."""
        return np.array(to_numpy(value), copy=True)

    def read_from(self, value, src, dst):
        """Make `value` (on src) readable by an op on dst. numpy memory is shared by
        every emulated device, so nothing moves; the executor still reports it.
        A CuPy value (a real GPU's blob read by a CPU op) comes to the host."""
        return to_numpy(value)

    def to_host(self, value):
        return to_numpy(value)

    def from_host(self, array, device, into=None):
        return array


NUMPY = NumpyBackend()


_cuda = {}


def cuda_backend():
    """The CupyBackend when GPU ops run on CuPy in this process, else None.

    Virtual GPUs (a count > 0) win; otherwise CuPy is probed once (import and
    device count) and the backend follows the current logical -> physical map.
    """
    if config.virtual_gpu_count() > 0 or probe.load() is None:
        return None
    from graphnet.executors.cuda.runtime import runtime
    rt = runtime()
    backend = _cuda.get("backend")
    if backend is None or backend.rt is not rt:
        from graphnet.executors.cuda.backend import CupyBackend
        backend = _cuda["backend"] = CupyBackend(rt)
    return backend


def gpu_backend_name():
    """'cupy' or 'numpy': what runs CUDA-typed ops right now."""
    return "numpy" if cuda_backend() is None else "cupy"


def num_gpu_devices():
    """GPUs the executor can run ops on: the emulated count when virtual GPUs are
    asked for, else the logical GPUs mapped onto the real ones (0 without CuPy)."""
    virtual = config.virtual_gpu_count()
    if virtual > 0:
        return virtual
    if probe.load() is None:
        return 0
    return len(probe.device_map())


def backend_for(device):
    """The backend that runs ops placed on `device`; clear error if none can."""
    if device == CPU or not device.is_gpu:
        return NUMPY
    count = num_gpu_devices()
    if device.id < 0 or device.id >= count:
        if config.virtual_gpu_count() > 0 or probe.load() is None:
            why = probe.why_unavailable()
            raise GraphnetError(
                "Cannot run on device %s: this process has %d GPU%s (virtual GPUs are "
                "numpy-backed%s). Fix: set GRAPHNET_VIRTUAL_GPUS=%d (or call "
                "workspace.SetVirtualGpuCount(%d)) before building the workspace, or "
                "place the op on an existing device." % (
                    device_name(device), count, "" if count == 1 else "s",
                    "; real GPUs unused: " + why if why and count == 0 else "",
                    device.id + 1, device.id + 1))
        mapping = probe.device_map()
        raise GraphnetError(
            "Cannot run on device %s: %d logical GPU%s map onto this machine's %d real "
            "GPU%s (%r). Fix: map more logical GPUs (GRAPHNET_GPU_MAP=%d or "
            "workspace.SetGpuDeviceMapping(%d)), or place the op on an existing device."
            % (device_name(device), count, "" if count == 1 else "s",
               mapping.physical, "" if mapping.physical == 1 else "s",
               mapping, device.id + 1, device.id + 1))
    return cuda_backend() or NUMPY


def to_numpy(value):
    """Host numpy view of a blob value from any backend (CuPy: through pinned
    memory on the value's device, after the copies FeedBlob left running)."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("cupy"):
        backend = cuda_backend() if config.virtual_gpu_count() == 0 else None
        if backend is None:
            return value.get()
        from graphnet.executors.cuda.copies import to_host
        # the caller's stream (inside a run: the op's, after its waits); a copy of
        # another GPU's memory may run on it, where that GPU's own current stream
        # would not be ordered after the value's writer
        return to_host(backend.rt, value, backend.xp.cuda.get_current_stream())
    return value
