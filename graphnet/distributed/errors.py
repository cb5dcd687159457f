"""Errors raised when ranks disagree or a rank is lost. Imports graphnet.errors only.

All are GraphnetError (a RuntimeError), so `except RuntimeError` keeps working.
"""

from graphnet.errors import GraphnetError

__all__ = ["DistributedError", "RankFailedError", "PeerTimeoutError", "PeerLostError",
           "NetMismatchError", "PlacementError"]


class DistributedError(GraphnetError):
    """Something went wrong between the processes of one job."""


class RankFailedError(DistributedError):
    """Another rank failed; `failed_rank` and `failed_where` name it and its op."""

    def __init__(self, message, failed_rank=None, failed_where=None):
        super().__init__(message)
        self.failed_rank = failed_rank
        self.failed_where = failed_where


class PeerTimeoutError(DistributedError):
    """No progress from the ranks this one waited for within the deadline."""

    def __init__(self, message, peers=()):
        super().__init__(message)
        self.peers = tuple(peers)


class PeerLostError(DistributedError):
    """A rank this one waited for stopped sending heartbeats: its process is gone."""

    def __init__(self, message, peer=None, last_report=None):
        super().__init__(message)
        self.peer = peer
        self.last_report = last_report


class NetMismatchError(DistributedError):
    """The ranks created different nets (or the same net under different placements)."""


class PlacementError(DistributedError):
    """A net names a device no rank owns, or an op cannot be split across ranks."""
