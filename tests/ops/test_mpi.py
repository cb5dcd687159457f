"""Caffe2's MPI ops (ops/mpi.py): schemas and construction checks in this process;
the ops themselves on 2 and 3 MPI ranks (tests/distributed/scripts/mpi_ops.py,
which checks Broadcast, Reduce, Allgather, Allreduce and Send/Receive against
numpy on every rank), with graphnet's placement on and in Caffe2's one-process-
per-GPU model (GRAPHNET_DIST=0)."""

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.errors import ArgumentError, SchemaError
from tests.distributed import mpirun

MPI_OPS = ["MPICreateCommonWorld", "MPIBroadcast", "MPIReduce", "MPIAllgather",
           "MPIAllreduce", "MPISendTensor", "MPIReceiveTensor"]


def _create(op_type, inputs, outputs, **kw):
    net = core.Net("mpi_schema")
    net.Proto().op.extend([core.CreateOperator(op_type, inputs, outputs, **kw)])
    for name in inputs:
        workspace.FeedBlob(name, np.zeros(2, np.int32))
    return workspace.CreateNet(net, overwrite=True)


@pytest.mark.parametrize("op_type", MPI_OPS)
def test_registered_per_rank_and_without_gradient(op_type):
    schema = registry.get(op_type)
    assert schema.every_rank  # never placed on one rank: each process runs its own
    assert schema.should_not_do_gradient
    assert schema.gradient_maker is None


def test_send_needs_raw_buffer_and_a_destination():
    with pytest.raises(ArgumentError, match="non-raw-buffer transfer not supported yet"):
        _create("MPISendTensor", ["comm", "X"], [], dst=1, tag=0)
    with pytest.raises(ArgumentError, match="explicitly specify the to rank"):
        _create("MPISendTensor", ["comm", "X"], [], tag=0, raw_buffer=True)
    with pytest.raises(ArgumentError, match="explicitly specify the tag"):
        _create("MPISendTensor", ["comm", "X"], [], dst=1, raw_buffer=True)
    assert _create("MPISendTensor", ["comm", "X", "dst", "tag"], [], raw_buffer=True)
    with pytest.raises(SchemaError, match="Input size 3 not in allowed input sizes"):
        _create("MPISendTensor", ["comm", "X", "dst"], [], dst=1, tag=0, raw_buffer=True)


def test_receive_is_in_place_with_three_outputs():
    with pytest.raises(ArgumentError, match="non-raw-buffer transfer not supported yet"):
        _create("MPIReceiveTensor", ["comm", "X"], ["X", "src", "tag"])
    with pytest.raises(SchemaError, match="should be as required by op MPIReceiveTensor"):
        _create("MPIReceiveTensor", ["comm", "X"], ["Y", "src", "tag"], raw_buffer=True)
    assert _create("MPIReceiveTensor", ["comm", "X", "src", "tag"], ["X", "src", "tag"],
                   raw_buffer=True)


def test_broadcast_is_in_place_and_allreduce_may_be():
    with pytest.raises(SchemaError, match="should be as required by op MPIBroadcast"):
        _create("MPIBroadcast", ["comm", "X"], ["Y"])
    assert _create("MPIAllreduce", ["comm", "X"], ["X"])
    assert _create("MPIAllreduce", ["comm", "X"], ["Y"])


def test_shapes_are_inferred():
    shapes, _ = workspace.InferShapesAndTypes(
        [_net("MPIAllreduce", ["comm", "X"], ["Y"]),
         _net("MPIReceiveTensor", ["comm", "Z"], ["Z", "src", "tag"], raw_buffer=True)],
        blob_dimensions={"comm": [1], "X": [3, 2], "Z": [4]})
    assert shapes["Y"] == [3, 2] and shapes["Z"] == [4] and shapes["src"] == []


def _net(op_type, inputs, outputs, **kw):
    net = core.Net(op_type)
    net.Proto().op.extend([core.CreateOperator(op_type, inputs, outputs, **kw)])
    return net


@mpirun.needs_mpi
@pytest.mark.parametrize("ranks,env", [(2, {}), (3, {"GRAPHNET_DIST": "0"})])
def test_ops_on_ranks(ranks, env):
    result = mpirun.run(ranks, "mpi_ops.py", env=env)
    assert result.returncode == 0, result
    for r in range(ranks):
        assert "MPI ops OK on rank %d of %d" % (r, ranks) in result.output, result
