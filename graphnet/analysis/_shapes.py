"""Known blob shapes in the forms callers give them, and a per-op shape trace.

`trace` runs each op's shape rule in order, as graphnet.shape_inference.infer
does, but keeps every op's input and output infos (one per blob version) and
records a failing rule instead of raising. Imports numpy and the registry.
"""

from collections import namedtuple

import numpy as np

from graphnet import registry
from graphnet.registry import TensorInfo

__all__ = ["as_info", "known_infos", "nbytes", "numel", "OpShapes", "trace"]


def _is_dtype(value):
    if isinstance(value, (str, type, np.dtype)):
        try:
            np.dtype(value)
            return True
        except TypeError:
            return False
    return False


def as_info(value):
    """A TensorInfo from a TensorInfo, an array, a (shape, dtype) pair or a shape
    (float32)."""
    if isinstance(value, TensorInfo):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return TensorInfo(value.shape, value.dtype)
    value = tuple(value)
    if len(value) >= 2 and isinstance(value[0], (tuple, list)) and _is_dtype(value[1]):
        return TensorInfo(value[0], value[1])
    return TensorInfo(value, np.float32)


def known_infos(shapes):
    """name -> TensorInfo from a mapping of any form `as_info` accepts (or None)."""
    return {name: as_info(value) for name, value in (shapes or {}).items()}


def numel(info):
    return int(np.prod(info.shape, dtype=np.int64))


def nbytes(info):
    return numel(info) * info.dtype.itemsize


class OpShapes(namedtuple("OpShapes", ["inputs", "outputs", "error"])):
    """One op's input and output TensorInfos (None: unknown) and its rule's error."""

    __slots__ = ()


def trace(netdef, known=None):
    """One OpShapes per op of `netdef`, from `known` (name -> TensorInfo).

    A rule runs when the op type is registered, has a rule and every input is
    known; its exception (bad shapes, bad arguments) is kept in `error`. An output
    no rule describes takes its shape from `known` (shapes observed in a run, say)
    or becomes unknown.
    """
    known = known or {}
    infos = dict(known)
    ops = []
    for op in netdef.op:
        inputs = [infos.get(name) for name in op.input]
        outputs, error = [None] * len(op.output), None
        schema = registry.lookup(op.type)
        if schema is not None and schema.shape_fn is not None and \
                all(info is not None for info in inputs):
            try:
                result = list(schema.shape_fn(schema.parse_args(op), *inputs))
                outputs = (result + [None] * len(op.output))[:len(op.output)]
            except Exception as exc:  # the caller reports it
                error = exc
        for o, name in enumerate(op.output):
            if outputs[o] is None and name in known:  # the caller's shape stands
                outputs[o] = known[name]
            if outputs[o] is None:
                infos.pop(name, None)
            else:
                infos[name] = outputs[o]
        ops.append(OpShapes(inputs, list(outputs), error))
    return ops
