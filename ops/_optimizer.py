"""Checks and state buffers shared by the update ops of adagrad.py, momentum_sgd.py
and adam.py, in Caffe2's wording. Imports numpy, the registry and ops._common only.
"""

import numpy as np

from graphnet.registry import EnforceError, enforce

from ._common import (F32, INDEX_TYPES, check_dispatch, numel, reinterpret_float32,
                      reinterpretable, size_from_dim, type_mismatch)

# Sparse updates reproduce Caffe2's sequential loop exactly: positions run in rounds of
# distinct rows (round k holds every row's k-th occurrence, see occurrence_rounds), so
# a repeated index is updated again from the already-updated state while each round
# stays one vectorized step. Every check runs before the first write, so a failing op
# leaves its blobs as they were (Caffe2 could fail half-way).


def mismatch(op, what, found, expected, index, extra=""):
    raise EnforceError(
        "%s %s expects %s as %s, found %s.%s Fix: feed it as %s."
        % (type_mismatch(expected, found), op, what, np.dtype(expected).name,
           np.dtype(found).name, extra, np.dtype(expected).name), input_index=index)


def require(info, expected, op, what, index):
    if info.dtype != np.dtype(expected):
        mismatch(op, what, info.dtype, expected, index)


def check_updatable(info, op, what, index):
    """Shape-rule side of as_float32: which dtypes could ever be updated."""
    if info.dtype != F32 and not reinterpretable(info.dtype):
        mismatch(op, what, info.dtype, F32, index, " (an in-place output reinterprets "
                 "only 4+-byte numeric buffers, as Caffe2 did)")


def as_float32(xp, x, op, what, index, inplace):
    """The float32 buffer Caffe2 updated for input `x`.

    When the output is the same blob, Caffe2 took `mutable_data<float>()` of it first:
    a tensor of another dtype with elements of 4 or more bytes kept its buffer, whose
    first numel*4 bytes became the float32 data (DLRM's int64 zero moments become
    float32 zeros). Anything else is Caffe2's type-mismatch error.
    """
    if x.dtype == F32:
        return x
    if inplace and reinterpretable(x.dtype):
        return reinterpret_float32(xp, x)
    why = (" (an in-place output reinterprets only 4+-byte numeric buffers)" if inplace
           else " (reinterpreting happens only when the output is the same blob)")
    mismatch(op, what, x.dtype, F32, index, why)


def mutable(xp, x):
    """A contiguous, writable array whose flat views write into what we return."""
    x = xp.ascontiguousarray(x)
    if not getattr(x.flags, "writeable", True):
        x = x.copy()
    return x


def check_index_type(info, op, index):
    if info.dtype not in INDEX_TYPES:
        check_dispatch(info, INDEX_TYPES, index, "%s expects int32 or int64 indices, found %s. "
                       "Fix: cast them with astype(np.int64)." % (op, info.dtype.name))


def check_lr(info, op, index, exact=True):
    """lr: a float32 tensor; Caffe2 read lr[0] (enforcing one element where noted)."""
    require(info, F32, op, "lr", index)
    if exact:
        if numel(info.shape) != 1:
            enforce(False,
                    "Input(LR).numel() == 1. %d vs 1. %s expects a 1-element lr, found shape "
                    "%s. Fix: feed lr as np.array([value], np.float32)."
                    % (numel(info.shape), op, list(info.shape)), input_index=index)
    else:
        if not (numel(info.shape) >= 1):
            enforce(False,
                    "%s reads lr[0]: expected a 1-element lr, found an empty tensor of shape "
                    "%s. Fix: feed lr as np.array([value], np.float32)."
                    % (op, list(info.shape)), input_index=index)


def lr_value(lr):
    return np.float32(float(lr.reshape(-1)[0]))


def check_eq(a, b, text, op, detail, fix, index):
    if a != b:
        enforce(False, "%s. %d vs %d. %s: %s. Fix: %s." % (text, a, b, op, detail, fix),
                input_index=index)


def check_param_dims(info, op):
    if not (len(info.shape) >= 1):
        enforce(False,
                "%s needs a param with a leading row dimension: expected at least 1-D, found a "
                "0-d tensor. Fix: reshape param to (rows, ...)." % op, input_index=0)


def check_block(param, grad, indices, op, grad_index):
    check_eq(size_from_dim(param.shape, 1), size_from_dim(grad.shape, len(indices.shape)),
             "Input(PARAM).size_from_dim(1) == Input(GRAD).size_from_dim(Input(INDICES)"
             ".dim())", op, "param rows of shape %s need grad shaped indices.shape %s + "
             "the same, found grad %s" % (list(param.shape[1:]), list(indices.shape),
                                          list(grad.shape)),
             "give one grad slice per index", grad_index)


def check_bounds(xp, ctx, idx, rows, block, size, op, slots, label="block size"):
    """Every index addresses a row; `slots` are the (param, indices) input slots."""
    bad = (idx < 0) | (idx >= rows)
    if bool(bad.any()):
        i = int(xp.argmax(bad))
        value = int(idx[i])
        raise EnforceError(
            "%s, out of bound,  idx:%d for input i:%d and %s:%d max size:%d. %s: expected "
            "indices in [0, %d) (rows of %d elements), found %d. Fix: remap or clip the "
            "indices." % (ctx.input_names[slots[0]], value, i, label, block, size, op,
                          rows, block, value), input_index=slots[1])


def sparse_rows(op, param, grad, indices, indices_slot):
    """(block, n): Caffe2's row size param.numel/param.size(0) and grad row count."""
    check_param_dims(param, op)
    block = size_from_dim(param.shape, 1)
    n = numel(grad.shape) // block if block else 0
    if not (numel(indices.shape) >= n):
        enforce(False,
                "%s reads one index per grad row: expected at least %d indices (grad %s, rows "
                "of %d), found %d. Fix: give one index per grad row."
                % (op, n, list(grad.shape), block, numel(indices.shape)),
                input_index=indices_slot)
    return block, n
