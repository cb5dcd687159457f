"""CupyBackend: the array backend of ops placed on real GPUs (xp = cupy).

Kernels see it as `ctx.backend`; it moves data with graphnet.executors.cuda.copies
on the current stream (the op's). Imports copies; cupy comes from the runtime.
"""

import numpy as np

from graphnet.executors.cuda import copies, graphs

__all__ = ["CupyBackend"]


class CupyBackend(object):
    """CuPy for real GPUs: logical GPU d lives on physical runtime.physical_of(d)."""

    name = "cupy"

    def __init__(self, rt):
        self.rt = rt
        self.xp = rt.cp

    def _stream(self):
        return self.xp.cuda.get_current_stream()

    def copy_to(self, value, device):
        """A fresh array holding `value`, placed on `device` (host for the CPU)."""
        if not device.is_gpu:
            return np.array(copies.to_host(self.rt, value, self._stream()), copy=True)
        return copies.to_device(self.rt, value, self.rt.physical_of(device.id),
                                self._stream())

    def copy_like(self, value, like):
        """A fresh array holding `value`, placed where array `like` lives."""
        if isinstance(like, self.xp.ndarray):
            return copies.to_device(self.rt, value, like.device.id, self._stream())
        return np.array(copies.to_host(self.rt, value, self._stream()), copy=True)

    def read_from(self, value, src, dst):
        """`value` (on src) made readable by an op on dst: a real transfer."""
        return self.copy_to(value, dst)

    def to_host(self, value):
        return copies.to_host(self.rt, value, self._stream())

    def from_host(self, array, device, into=None):
        """A device copy of host `array` through a pinned buffer: on the device's own
        stream (FeedBlob), or within a net run on the op's stream, whose event the
        runner records as the writer of the op's outputs. `into` (FeedBlob: the blob's
        current value) is overwritten instead when it is a captured graph's input
        buffer of the same shape and type: the graph then reads the batch where it
        is, with no copy before its replay."""
        if not device.is_gpu:
            return array
        logical = device.id
        physical = self.rt.physical_of(logical)
        if copies.in_run():  # the op's device stays current: the stream is its
            return copies.to_device(self.rt, array, physical, self._stream())
        with self.xp.cuda.Device(physical):
            stream = self.rt.stream(logical)
            if (into is not None and graphs.feeds_in_place(into)
                    and into.shape == array.shape and into.dtype == array.dtype
                    and into.device.id == physical and into.flags.c_contiguous):
                return copies.overwrite(self.rt, np.asarray(array), into, stream)
            return copies.to_device(self.rt, array, physical, stream)
