"""What a rank is doing now, in memory its supervisor process can read after it died.

A StatusBoard is an anonymous shared mapping made before the supervisor forks the
rank: the rank writes its state (running / done / failed) and a one-line label
("running op #5 (FC) of net 'train' on gpu_1") before every op and transfer; the
supervisor reads it when the rank dies. Without a supervisor it is a plain
buffer. Imports nothing from graphnet.
"""

import mmap
import struct

__all__ = ["StatusBoard", "RUNNING", "DONE", "FAILED"]

RUNNING, DONE, FAILED = 0, 1, 2
_SIZE = 1024
_HEAD = struct.Struct("<BH")


class StatusBoard(object):
    """state byte, label length, label (UTF-8, truncated to fit)."""

    def __init__(self):
        self._map = mmap.mmap(-1, _SIZE)
        self.set_state(RUNNING)
        self.set_label("starting")

    @staticmethod
    def encode(label):
        """Length + UTF-8 of a label, made once so the per-op write is a memory copy."""
        data = label.encode("utf-8", "replace")[:_SIZE - _HEAD.size]
        return struct.pack("<H", len(data)) + data

    def set_label(self, label):
        """Write a label (a str, or bytes from encode)."""
        if isinstance(label, str):
            label = self.encode(label)
        self._map[1:1 + len(label)] = label

    def set_state(self, state):
        self._map[0] = state

    def read(self):
        """(state, label) as the rank last wrote them."""
        state, length = _HEAD.unpack_from(self._map, 0)
        label = self._map[_HEAD.size:_HEAD.size + length].decode("utf-8", "replace")
        return state, label
