"""Every rank must place the same net: compare a hash of the placed net at creation.

Round 1 gathers (hash, op count, placement) from every rank; only if they differ,
round 2 gathers per-op digests to find the first differing op and round 3 that
op's text on every rank, so the error shows what differs. Imports hashlib,
pickle and the registry's short_text.
"""

import hashlib
import pickle

from graphnet.distributed.errors import NetMismatchError
from graphnet.registry import short_text

__all__ = ["net_digest", "check_same_net"]


def net_digest(netdef, placement):
    h = hashlib.sha256(netdef.SerializeToString(deterministic=True))
    h.update(repr(placement.key()).encode())
    return h.hexdigest()


def check_same_net(comm, netdef, placement, how):
    """Raise NetMismatchError on every rank unless all ranks placed the same net."""
    label = "the net check of %s('%s') (every rank compares the placed net)" % (
        how, netdef.name)
    mine = {"hash": net_digest(netdef, placement), "ops": len(netdef.op),
            "name": netdef.name, "placement": placement.describe()}
    everyone = [pickle.loads(b) for b in
                comm.allgather_bytes(pickle.dumps(mine, protocol=4), label)]
    if all(e["hash"] == everyone[0]["hash"] for e in everyone):
        return
    digests = b"".join(hashlib.sha256(op.SerializeToString(deterministic=True))
                       .digest()[:8] for op in netdef.op)
    per_rank = [[d[i:i + 8] for i in range(0, len(d), 8)]
                for d in comm.allgather_bytes(digests, label)]
    first = _first_difference(per_rank)
    if first is None:
        text = b""
    elif first < len(netdef.op):
        text = short_text(netdef.op[first]).encode()
    else:
        text = ("(no op #%d: this net has %d ops)" % (first, len(netdef.op))).encode()
    texts = [t.decode() for t in comm.allgather_bytes(text, label)]
    lines = ["%s('%s'): the ranks built different nets (a hash of the placed net is "
             "compared when it is created):" % (how, netdef.name)]
    for r, e in enumerate(everyone):
        lines.append("  rank %d: net '%s', %d ops, %s, hash %s" % (
            r, e["name"], e["ops"], e["placement"], e["hash"][:12]))
    if first is None:
        lines.append("  the ops are the same; the net's name, arguments or placement "
                     "differ.")
    else:
        lines.append("  first difference at op #%d:" % first)
        for r, t in enumerate(texts):
            lines.append("    rank %d: %s" % (r, t))
    lines.append("Fix: every rank must build the same net (same script, arguments and "
                 "GRAPHNET_VIRTUAL_GPUS / GRAPHNET_DEVICES_PER_RANK); do not branch on the "
                 "rank when building nets that run on GPU devices.")
    raise NetMismatchError("\n".join(lines))


def _first_difference(per_rank):
    longest = max(len(ops) for ops in per_rank)
    for i in range(longest):
        column = {ops[i] if i < len(ops) else None for ops in per_rank}
        if len(column) > 1:
            return i
    return None
