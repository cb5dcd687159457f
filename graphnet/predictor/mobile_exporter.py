"""caffe2.python.predictor.mobile_exporter: a net and its parameters as the
(init_net, predict_net) pair Caffe2's Predictor and mobile runtimes load.

The init net holds one GivenTensor*Fill per parameter (its current workspace
value) plus a [1, 1] placeholder per data input; the predict net is the net
with external inputs/outputs rewritten. Imports core, utils and the proto module.
"""

import numpy as np

from graphnet import core, utils
from graphnet.proto import caffe2_pb2

__all__ = ["add_tensor", "Export"]

# numpy dtype -> the fill op that recreates it
_FILL_FOR_DTYPE = {
    np.dtype("float32"): "GivenTensorFill",
    np.dtype("int32"): "GivenTensorIntFill",
    np.dtype("int64"): "GivenTensorInt64Fill",
    np.dtype("uint8"): "GivenTensorByteStringToUInt8Fill",
    np.dtype("O"): "GivenTensorStringFill",
}


def add_tensor(net, name, blob):
    """Append to NetDef `net` the fill op that creates blob `name` holding array
    `blob` (uint8 data travels as one byte string; object arrays must hold bytes)."""
    shape, values = blob.shape, blob
    if blob.dtype == np.dtype("uint8"):
        values = [blob.tobytes()]
    if blob.dtype == np.dtype("O"):
        for value in blob:
            assert isinstance(value, bytes)
    op = core.CreateOperator(
        _FILL_FOR_DTYPE[blob.dtype], [], [name],
        arg=[utils.MakeArgument("shape", shape), utils.MakeArgument("values", values)])
    net.op.extend([op])


def Export(workspace, net, params):
    """(init_net, predict_net) for `net` (Net or NetDef) whose parameters `params`
    are read from `workspace` (the module or a Workspace object)."""
    proto = net if isinstance(net, caffe2_pb2.NetDef) else net.Proto()
    predict_net = caffe2_pb2.NetDef()
    predict_net.CopyFrom(proto)
    init_net = caffe2_pb2.NetDef()
    ssa, blob_versions = core.get_ssa(net)
    inputs = []
    for versioned_inputs, _ in ssa:
        inputs += [name for name, _ in versioned_inputs]
    # Data inputs: read before any op writes them, and not parameters.
    input_blobs = [name for name, version in blob_versions.items()
                   if version == 0 and name not in params]
    # Strict outputs: written and never read by another op.
    output_blobs = [name for name, version in blob_versions.items()
                    if version != 0 and name not in inputs]

    for blob_ref in params:
        name = str(blob_ref)
        add_tensor(init_net, name, workspace.FetchBlob(name))
    # Placeholders so the inputs exist; the caller feeds the real data over them.
    for name in input_blobs:
        init_net.op.extend([core.CreateOperator(
            "GivenTensorFill", [], [name],
            arg=[utils.MakeArgument("shape", [1, 1]),
                 utils.MakeArgument("values", [0.0])])])

    del predict_net.external_input[:]
    new_external_inputs = input_blobs
    for external_input in proto.external_input:
        if external_input not in new_external_inputs:
            new_external_inputs.append(external_input)
    predict_net.external_input.extend(new_external_inputs)
    del predict_net.external_output[:]
    predict_net.external_output.extend(output_blobs)
    return init_net, predict_net
