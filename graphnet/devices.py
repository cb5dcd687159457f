"""Device identities: the (device_type, device_id) pair every blob and op carries.

Imports only the generated proto module. CPU ids are normalised to 0 because
Caffe2 treats every CPU option as the same device (core.device_option_equal).
"""

from collections import namedtuple

__all__ = ["Device", "CPU", "CPU_TYPE", "CUDA_TYPE", "HIP_TYPE", "is_gpu_type",
           "device_of", "device_name"]

CPU_TYPE = 0
CUDA_TYPE = 1
HIP_TYPE = 6
_GPU_TYPES = (CUDA_TYPE, HIP_TYPE)


def is_gpu_type(device_type):
    """True for CUDA and HIP (core.IsGPUDeviceType)."""
    return device_type in _GPU_TYPES


class Device(namedtuple("Device", ["type", "id"])):
    """A concrete device: `Device(0, 0)` is the CPU, `Device(1, d)` is GPU d."""

    __slots__ = ()

    @property
    def is_gpu(self):
        return self.type in _GPU_TYPES

    def __str__(self):
        return device_name(self)


CPU = Device(CPU_TYPE, 0)
_INTERNED = {(CPU_TYPE, 0): CPU}


def device_of(option, default=CPU):
    """The Device an OperatorDef/NetDef/FeedBlob DeviceOption designates.

    `option` may be None or a DeviceOption message; an absent option means
    `default`. Non-GPU device types (MKLDNN, IDEEP, ...) run on the CPU.
    """
    if option is None:
        return default
    device_type = option.device_type
    if is_gpu_type(device_type):
        # One object per device, so the executor's per-op device test is an identity
        # check in the common case (equality still decides).
        key = (device_type, option.device_id)
        device = _INTERNED.get(key)
        if device is None:
            device = _INTERNED.setdefault(key, Device(*key))
        return device
    return CPU


def device_name(device):
    """Human-readable name used in messages: 'cpu', 'gpu_3' (hip_3 for HIP)."""
    if device.type == CPU_TYPE:
        return "cpu"
    prefix = "hip" if device.type == HIP_TYPE else "gpu"
    return "%s_%d" % (prefix, device.id)
