"""A blob: one named value in a workspace and the device it lives on.

Imports numpy and devices only.
"""

import numpy as np

from graphnet.devices import CPU, device_name

__all__ = ["Blob", "describe"]


class Blob(object):
    """Holder of an array (or a bytes/str value, or nothing yet) and its device.

    Nets keep references to Blob objects, so feeding a new value into an
    existing blob between runs is seen by every net that uses it.
    """

    __slots__ = ("value", "device")

    def __init__(self, value=None, device=CPU):
        self.value = value
        self.device = device

    @property
    def empty(self):
        return self.value is None

    def __repr__(self):
        return "Blob(%s on %s)" % (describe(self.value), device_name(self.device))


def describe(value):
    """Short text of a value for messages: 'float32[4, 3]', 'bytes', 'nothing'."""
    if value is None:
        return "nothing (uninitialized)"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return "%s%s" % (np.dtype(dtype).name, list(shape))
    return type(value).__name__
