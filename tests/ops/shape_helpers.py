"""Helpers the shape-op tests share (test_concat_split, test_shape_ops): seeded
values of every dtype, the in-place refusal check, and the check of gradient wiring
against the OperatorDefs real Caffe2 1.10.2's GetGradientForOp printed.
"""

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.errors import SchemaError

DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.bool_, np.uint8]


def rand(shape, dtype=np.float32, seed=0):
    """Seeded values, never all-zero, in the requested dtype."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_) | (np.arange(
            int(np.prod(shape))).reshape(shape) % 3 == 0)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(1, 100, size=shape).astype(dtype)
    return (rng.standard_normal(shape) + 0.5).astype(dtype)


def check_in_place_refused(op_type, x, inputs, outputs, **args):
    """The op, reading blob "a" (holding x), refuses to write "a" in place."""
    ws = workspace.Workspace()
    ws.FeedBlob("a", x)
    with pytest.raises(SchemaError, match="in-place"):
        ws.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **args))


def golden_id(case):
    return "%s-%s" % (case[0], case[3])


def check_golden_wiring(case):
    """case: (op type, inputs, outputs, args, output grads, [str(op)], grad inputs)."""
    op_type, inputs, outputs, args, g_output, want_ops, want_g_input = case
    op = core.CreateOperator(op_type, inputs, outputs, **args)
    ops, g_input = core.GradientRegistry.GetGradientForOp(op, g_output)
    assert [str(o) for o in ops] == want_ops
    assert list(g_input) == want_g_input
