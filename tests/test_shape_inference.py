"""workspace.InferShapesAndTypes over whole nets, checked against real runs."""

import os
import sys

import numpy as np

from graphnet import core, workspace
from graphnet.proto import caffe2_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
import dlrm_parallel_forward as dlrm  # noqa: E402


def _run_dlrm(ndevices):
    cfg = dlrm.Config(batch=8)
    model = dlrm.ParallelDLRM(cfg, ndevices, device_option=core.DeviceOption(0)
                              if ndevices == 1 else None)
    net = model.build()
    model.feed(dlrm.make_weights(cfg), *dlrm.make_batch(cfg))
    fed = {name: (workspace.FetchBlob(name), workspace.BlobDevice(name))
           for name in workspace.Blobs()}
    workspace.RunNetOnce(net)
    return net, fed


def test_infer_from_workspace_matches_run_on_dlrm():
    net, fed = _run_dlrm(4)
    workspace.ResetWorkspace()
    for name, (value, device) in fed.items():
        workspace.FeedBlob(name, value, core.DeviceOption(device.type, device.id))
    shapes, types = workspace.InferShapesAndTypes([net])
    workspace.RunNetOnce(net)
    produced = {o for op in net.Proto().op for o in op.output}
    assert produced <= set(shapes), sorted(produced - set(shapes))
    for name in produced:
        value = workspace.FetchBlob(name)
        assert shapes[name] == list(value.shape), name
        assert types[name] == {np.dtype(np.float32): caffe2_pb2.TensorProto.FLOAT,
                               np.dtype(np.int32): caffe2_pb2.TensorProto.INT32,
                               np.dtype(np.int64): caffe2_pb2.TensorProto.INT64}[
            value.dtype], name


def test_infer_from_blob_dimensions_and_types():
    net = core.Net("infer")
    fc = net.FC(["x", "w", "b"], "fc")
    r = net.Relu(fc, "r")
    cat, info = net.Concat([r, r], ["cat", "cat_info"], axis=1)
    net.Flatten(net.BatchMatMul([cat, cat], "bmm", trans_b=1), "flat")
    net.SparseLengthsSum(["table", "idx", "len"], "pooled")
    shapes, types = workspace.InferShapesAndTypes(
        [net], blob_dimensions={"x": [5, 3], "w": [4, 3], "b": [4], "table": [10, 6],
                                "idx": [7], "len": [5]},
        blob_types={"idx": caffe2_pb2.TensorProto.INT64,
                    "len": caffe2_pb2.TensorProto.INT32})
    assert shapes["fc"] == [5, 4] and shapes["r"] == [5, 4]
    assert shapes["cat"] == [5, 8] and shapes["cat_info"] == [2]
    assert types["cat_info"] == caffe2_pb2.TensorProto.INT32
    assert shapes["bmm"] == [5, 5] and shapes["flat"] == [5, 5]
    assert shapes["pooled"] == [5, 6] and types["pooled"] == caffe2_pb2.TensorProto.FLOAT
