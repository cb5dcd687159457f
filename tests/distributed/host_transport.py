"""A device transport for CPU tests: NcclTransport's interface, over MPI.

It carries every float32 array the way NcclTransport carries CuPy arrays: Comm
sends only the array's header (flagged _DEVICE) and hands the bytes to the
transport, which moves them on a communicator of its own, matched by order per
peer as NCCL matches them; sends complete when the run settles. So the header
protocol, the all-to-all split between MPI and device payloads, the all-reduce
hand-off and settle() run on the CPU under mpiexec. It is not NCCL and nothing in
it is asynchronous on a device: the GPU tests cover that.

    from tests.distributed.host_transport import install; install()
"""

import numpy as np

from graphnet.distributed.comm import header_dtype_shape

_TAG = 7


class HostTransport(object):
    name = "host test transport"

    def __init__(self, comm):
        self.comm = comm
        self.wire = comm.data.Dup()
        self.pending = []  # (send request, label, peer, buffer kept alive)
        self.counts = dict.fromkeys(("send", "recv", "exchange", "allreduce", "settle"), 0)

    @staticmethod
    def carries(value):
        return isinstance(value, np.ndarray) and value.dtype == np.float32

    def communicator(self, ranks, label):
        return self.comm.group(ranks)

    def _post(self, value, dst, label):
        buf = np.ascontiguousarray(value)
        self.pending.append((self.wire.Isend(buf, dst, _TAG), label, dst, buf))
        return int(buf.nbytes)

    def _posted_receive(self, header, src):
        dtype, shape = header_dtype_shape(header)
        out = np.empty(shape, dtype)
        return out, self.wire.Irecv(out, src, _TAG)

    def send(self, value, dst, label):
        self.counts["send"] += 1
        return self._post(value, dst, label)

    def recv(self, header, src, label):
        self.counts["recv"] += 1
        out, request = self._posted_receive(header, src)
        self.comm.wait([request], label, [src])
        return out

    def exchange(self, sends, recvs, label, peers):
        self.counts["exchange"] += 1
        sent = sum(self._post(v, dst, label) for dst, v in sends)
        received = [self._posted_receive(h, src) for src, h in recvs]
        if received:
            self.comm.wait([r for _, r in received], label, peers)
        return [out for out, _ in received], sent

    def allreduce_sum(self, array, ranks, label):
        self.counts["allreduce"] += 1
        work = np.array(array, copy=True)
        group = self.comm.group(ranks)
        self.comm.wait([group.Iallreduce(self.comm.MPI.IN_PLACE, work,
                                         op=self.comm.MPI.SUM)], label, ranks)
        return work

    def settle(self, failed=False):
        self.counts["settle"] += 1
        pending, self.pending = self.pending, []
        if pending and not failed:
            self.comm.wait([p[0] for p in pending], "; ".join({p[1] for p in pending}),
                           sorted({p[2] for p in pending}))


def install():
    """Make this job's ranks use HostTransport (every rank, before the first net)."""
    from graphnet import distributed
    cluster = distributed.cluster()
    transport = cluster.comm.device = HostTransport(cluster.comm)
    cluster.transport_reason = ""
    return transport
