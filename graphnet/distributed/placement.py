"""Which rank owns which logical device.

`gpu_d` lives on rank `d // devices_per_rank`; the CPU is every rank's own (CPU ops
run everywhere, CPU blobs are replicated). devices_per_rank comes from
GRAPHNET_DEVICES_PER_RANK, else ceil(emulated GPUs / ranks). Imports devices only.
"""

import os

from graphnet.devices import device_name
from graphnet.distributed.errors import PlacementError

__all__ = ["EVERY_RANK", "Placement", "RemoteValue", "devices_per_rank_for"]

EVERY_RANK = None  # holder / executor value meaning "all ranks"


class RemoteValue(object):
    """What a blob holds on the ranks other than its holder: who has the value (and
    its shape and dtype when known, for shape inference)."""

    __slots__ = ("owner", "shape", "dtype")

    def __init__(self, owner, like=None):
        self.owner = owner
        if getattr(like, "shape", None) is not None and hasattr(like, "dtype"):
            self.shape, self.dtype = tuple(like.shape), like.dtype

    def __repr__(self):
        return "<value held by rank %d>" % self.owner


def devices_per_rank_for(num_gpus, world_size):
    """GRAPHNET_DEVICES_PER_RANK if set, else ceil(num_gpus / world_size) (>= 1)."""
    raw = os.environ.get("GRAPHNET_DEVICES_PER_RANK", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise PlacementError("GRAPHNET_DEVICES_PER_RANK must be a whole number >= 1, "
                                 "found %r" % raw)
        return value
    return max(1, -(-int(num_gpus) // int(world_size)))


class Placement(object):
    """Logical devices -> ranks for one world: owner(device), is_local(device)."""

    __slots__ = ("rank", "world_size", "devices_per_rank")

    def __init__(self, rank, world_size, devices_per_rank):
        self.rank, self.world_size = int(rank), int(world_size)
        self.devices_per_rank = int(devices_per_rank)

    def key(self):
        """What must agree across ranks (part of the placed-net hash)."""
        return (self.world_size, self.devices_per_rank)

    def owner(self, device):
        """The rank that runs ops and holds blobs on `device`; EVERY_RANK for the CPU."""
        if not device.is_gpu:
            return EVERY_RANK
        rank = device.id // self.devices_per_rank
        if rank >= self.world_size:
            raise PlacementError(
                "%s has no rank: %d ranks x %d devices per rank hold gpu_0..gpu_%d. Fix: "
                "launch %d ranks (mpiexec -n %d) or set GRAPHNET_DEVICES_PER_RANK=%d."
                % (device_name(device), self.world_size, self.devices_per_rank,
                   self.world_size * self.devices_per_rank - 1,
                   -(-(device.id + 1) // self.devices_per_rank),
                   -(-(device.id + 1) // self.devices_per_rank),
                   -(-(device.id + 1) // self.world_size)))
        return rank

    def is_local(self, device):
        owner = self.owner(device)
        return owner is EVERY_RANK or owner == self.rank

    def local_device_index(self, device):
        """Which of this rank's physical GPUs backs `device` (for a real-GPU backend)."""
        return device.id % self.devices_per_rank

    def describe(self):
        return "%d ranks, %d device%s per rank" % (
            self.world_size, self.devices_per_rank,
            "" if self.devices_per_rank == 1 else "s")
