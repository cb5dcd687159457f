"""Static shape and dtype inference over NetDefs from the ops' shape rules.

Behind workspace.InferShapesAndTypes. Imports the registry, utils and devices.
"""

import numpy as np

from graphnet import registry
from graphnet.errors import GraphnetError
from graphnet.registry import TensorInfo
from graphnet.utils import NumpyDtypeOf, TensorProtoDataType

__all__ = ["infer", "infer_shapes_and_types"]


def infer(netdefs, known):
    """Run every op's shape rule in order from `known` (name -> TensorInfo).

    Returns name -> TensorInfo for every blob whose shape could be found; ops
    without a rule, or with an input of unknown shape, leave outputs unknown.
    Errors from a rule name the op and net.
    """
    infos = dict(known)
    for net in netdefs:
        for index, op in enumerate(net.op):
            schema = registry.lookup(op.type)
            if schema is None or schema.shape_fn is None:
                continue
            inputs = [infos.get(name) for name in op.input]
            if any(info is None for info in inputs):
                continue
            try:
                outputs = schema.shape_fn(schema.parse_args(op), *inputs)
            except Exception as exc:
                raise GraphnetError("shape inference failed at op #%d (%s) of net '%s': "
                                    "%s" % (index, op.type, net.name, exc)) from exc
            for name, info in zip(op.output, outputs):  # rules may describe more
                if info is not None:
                    infos[name] = info
    return infos


def infer_shapes_and_types(netdefs, blob_dimensions=None, blob_types=None,
                           workspace_blobs=None):
    """Caffe2's InferShapesAndTypes: ({blob: [dims]}, {blob: TensorProto.DataType})."""
    known = {}
    if blob_dimensions is None:
        for name, blob in (workspace_blobs or {}).items():
            value = blob.value
            if value is not None and hasattr(value, "shape") and hasattr(value, "dtype"):
                known[name] = TensorInfo(value.shape, value.dtype)
    else:
        blob_types = blob_types or {}
        for name, dims in blob_dimensions.items():
            dtype = NumpyDtypeOf(blob_types[name]) if name in blob_types else np.float32
            known[name] = TensorInfo(dims, dtype)
    infos = infer(netdefs, known)
    shapes = {name: list(info.shape) for name, info in infos.items()}
    types = {}
    for name, info in infos.items():
        try:
            types[name] = TensorProtoDataType(info.dtype)
        except ValueError:
            types[name] = 0
    return shapes, types
