"""NCCL as the transport between ranks, on the one GPU a lent machine has.

    mpiexec -n 1 python -m graphnet run nccl_world_of_one.py

A world of one rank: the negotiation picks NCCL; the all-to-all sends arrays of
three dtypes to this rank itself in one NCCL group; an NCCL all-reduce over the
world of one; a receive nobody sends is stopped at the deadline (the NCCL
communicators aborted, the GPU free again). Prints one line per check, OK last.
"""

import time

import cupy as cp
import numpy as np
from cupy.cuda import nccl as cupy_nccl

from graphnet import distributed, workspace
from graphnet.distributed import comm as wire, nccl
from graphnet.distributed.errors import DistributedError
from graphnet.distributed.placement import Placement

workspace.SetGpuDeviceMapping(2)
comm = (distributed.cluster() or distributed.start()).comm  # -n 1: not started by the launcher
transport, reason = nccl.negotiate(comm, Placement(0, 1, 2), 2)
assert transport is not None, reason
comm.device = transport
print("negotiated NCCL %d on GPU %d" % (cupy_nccl.get_version(), transport.home))

rng = np.random.default_rng(0)
values = [cp.asarray(rng.standard_normal((3, 4)).astype(np.float32)),
          cp.asarray(rng.integers(-9, 9, 5)),
          cp.asarray(rng.standard_normal(11).astype(np.float16))[::2]]
distributed.reset_stats()
got = comm.alltoallv({0: values}, {0: 3}, (0,), "the test's all-to-all")[0]
transport.settle()
for sent, back in zip(values, got):
    assert isinstance(back, cp.ndarray) and back.dtype == sent.dtype, (back, sent)
    np.testing.assert_array_equal(cp.asnumpy(back), cp.asnumpy(sent))
stats = distributed.stats()
assert stats["bytes_sent"] == sum(int(v.nbytes) for v in values), stats
print("all-to-all to itself over NCCL: 3 arrays, %d bytes" % stats["bytes_sent"])

x = cp.asarray(rng.standard_normal(1000).astype(np.float32))
total = comm.allreduce_sum(x.copy(), (0,), "the test's all-reduce")
transport.settle()
np.testing.assert_array_equal(cp.asnumpy(total), cp.asnumpy(x))
print("all-reduce over the world of one: equal")

comm.timeout = 3.0
header = wire.encode(cp.zeros(4, cp.float32), device=True)[0]
start = time.monotonic()
try:
    transport.recv(header, 0, "a receive nobody sends")
    transport.settle()
except DistributedError as exc:
    outcome = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0])
except Exception as exc:  # NCCL refused the lone receive outright
    outcome = "refused at once: %s" % exc
else:
    raise AssertionError("a receive nobody sends completed")
seconds = time.monotonic() - start
assert seconds < 20, seconds
print("stuck receive stopped after %.1f s (%s); broken=%r" % (seconds, outcome,
                                                              transport.broken))
deadline = time.monotonic() + 10
while not transport.stream.done and time.monotonic() < deadline:
    time.sleep(0.01)
assert transport.stream.done, "the NCCL stream is still busy after the abort"
assert float(cp.arange(4).sum()) == 6.0
print("nccl world of one OK")
