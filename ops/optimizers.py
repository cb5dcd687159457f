"""Optimizer family: Caffe2's parameter-update ops (Adagrad, SparseAdagrad,
RowWiseSparseAdagrad, MomentumSGD, MomentumSGDUpdate, SparseMomentumSGDUpdate, Adam,
SparseAdam, RowWiseSparseAdam). All are SHOULD_NOT_DO_GRADIENT.

Sparse updates reproduce Caffe2's sequential loop exactly: positions are processed
in rounds of distinct rows (round k holds every row's k-th occurrence), so a repeated
index is updated again from the already-updated state, while each round stays one
vectorized step. Every check runs before the first write, so a failing op leaves its
blobs as they were (Caffe2 could fail half-way). Imports numpy and the registry only.
"""

import numpy as np

from graphnet.errors import ArgumentError
from graphnet.registry import Arg, EnforceError, OpSchema, TensorInfo, enforce

_F32, _F64, _I64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)
_INDEX_TYPES = (np.dtype(np.int32), _I64)
# C++ element type names, as Caffe2's "Tensor type mismatch" messages print them.
_CTYPE = {"float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
          "int16": "short", "int32": "int", "int64": "long int", "uint8": "unsigned char",
          "uint16": "unsigned short", "object": "std::string", "float16": "c10::Half"}


def _ctype(dtype):
    return _CTYPE.get(np.dtype(dtype).name, np.dtype(dtype).name)


def _numel(shape):
    return int(np.prod(shape, dtype=np.int64))


def _size_from_dim(shape, k):
    return _numel(shape[k:])


# --- dtype checks ------------------------------------------------------------------

def _mismatch(op, what, found, expected, index, extra=""):
    raise EnforceError(
        "Tensor type mismatch, caller expects elements to be %s, while tensor contains "
        "%s. %s expects %s as %s, found %s.%s Fix: feed it as %s."
        % (_ctype(expected), _ctype(found), op, what, np.dtype(expected).name,
           np.dtype(found).name, extra, np.dtype(expected).name), input_index=index)


def _require(info, expected, op, what, index):
    if info.dtype != np.dtype(expected):
        _mismatch(op, what, info.dtype, expected, index)


def _reinterpretable(dtype):
    return dtype.kind in "iuf" and dtype.itemsize >= 4


def _check_updatable(info, op, what, index):
    """Shape-rule side of _as_float32: which dtypes could ever be updated."""
    if info.dtype != _F32 and not _reinterpretable(info.dtype):
        _mismatch(op, what, info.dtype, _F32, index, " (an in-place output reinterprets "
                  "only 4+-byte numeric buffers, as Caffe2 did)")


def _as_float32(xp, x, op, what, index, inplace):
    """The float32 buffer Caffe2 updated for input `x`.

    When the output is the same blob, Caffe2 took `mutable_data<float>()` of it first:
    a tensor of another dtype with elements of 4 or more bytes kept its buffer, whose
    first numel*4 bytes became the float32 data (DLRM's int64 zero moments become
    float32 zeros). Anything else is Caffe2's type-mismatch error.
    """
    if x.dtype == _F32:
        return x
    if inplace and _reinterpretable(x.dtype):
        flat = xp.ascontiguousarray(x).reshape(-1)
        return flat.view(np.uint8)[:flat.size * 4].view(_F32).reshape(x.shape)
    why = (" (an in-place output reinterprets only 4+-byte numeric buffers)" if inplace
           else " (reinterpreting happens only when the output is the same blob)")
    _mismatch(op, what, x.dtype, _F32, index, why)


def _check_index_type(info, op, index):
    enforce(info.dtype in _INDEX_TYPES,
            "Unsupported type of tensor: %s. %s expects int32 or int64 indices, found %s. "
            "Fix: cast them with astype(np.int64)." % (_ctype(info.dtype), op,
                                                      info.dtype.name), input_index=index)


def _check_lr(info, op, index, exact=True):
    """lr: a float32 tensor; Caffe2 read lr[0] (enforcing one element where noted)."""
    _require(info, _F32, op, "lr", index)
    if exact:
        enforce(_numel(info.shape) == 1,
                "Input(LR).numel() == 1. %d vs 1. %s expects a 1-element lr, found shape "
                "%s. Fix: feed lr as np.array([value], np.float32)."
                % (_numel(info.shape), op, list(info.shape)), input_index=index)
    else:
        enforce(_numel(info.shape) >= 1,
                "%s reads lr[0]: expected a 1-element lr, found an empty tensor of shape "
                "%s. Fix: feed lr as np.array([value], np.float32)."
                % (op, list(info.shape)), input_index=index)


def _lr_value(lr):
    return np.float32(float(lr.reshape(-1)[0]))


def _check_iter(info, op, index):
    _require(info, _I64, op, "iter", index)
    enforce(_numel(info.shape) >= 1,
            "%s reads iter[0]: expected a 1-element int64 counter, found an empty tensor. "
            "Fix: create it with brew.iter / Iter." % op, input_index=index)


def _check_eq(a, b, text, op, detail, fix, index):
    enforce(a == b, "%s. %d vs %d. %s: %s. Fix: %s." % (text, a, b, op, detail, fix),
            input_index=index)


def _check_param_dims(info, op):
    enforce(len(info.shape) >= 1,
            "%s needs a param with a leading row dimension: expected at least 1-D, found a "
            "0-d tensor. Fix: reshape param to (rows, ...)." % op, input_index=0)


def _check_block(param, grad, indices, op, grad_index):
    _check_eq(_size_from_dim(param.shape, 1), _size_from_dim(grad.shape, len(indices.shape)),
              "Input(PARAM).size_from_dim(1) == Input(GRAD).size_from_dim(Input(INDICES)"
              ".dim())", op, "param rows of shape %s need grad shaped indices.shape %s + "
              "the same, found grad %s" % (list(param.shape[1:]), list(indices.shape),
                                          list(grad.shape)),
              "give one grad slice per index", grad_index)


# --- shared numerics -------------------------------------------------------------------

def _fma(xp, a, x, y):
    """float32 fma(a, x, y) with one rounding (Caffe2's std::fma / FMA kernels)."""
    if a == 0.0:
        return y
    exact = np.float64(np.float32(a)) * x.astype(_F64) + y.astype(_F64)
    return exact.astype(_F32)


def _mutable(xp, x):
    """A contiguous, writable array whose flat views write into what we return."""
    x = xp.ascontiguousarray(x)
    if not getattr(x.flags, "writeable", True):
        x = x.copy()
    return x


def _rounds(xp, idx):
    """Positions of `idx` split into rounds of distinct rows, in Caffe2's loop order.

    Round k holds the k-th occurrence of every row; rows within a round are distinct,
    so one vectorized step per round equals the sequential loop.
    """
    n = int(idx.size)
    if n == 0:
        return []
    order = xp.lexsort(xp.stack([xp.arange(n), idx]))  # by row, then position
    ranked = idx[order]
    rank_sorted = xp.arange(n) - xp.searchsorted(ranked, ranked, side="left")
    depth = int(rank_sorted.max()) + 1
    if depth == 1:
        return [xp.arange(n)]
    rank = xp.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    return [xp.nonzero(rank == r)[0] for r in range(depth)]


def _check_bounds(xp, ctx, idx, rows, block, numel, op, label="block size"):
    bad = (idx < 0) | (idx >= rows)
    if bool(bad.any()):
        i = int(xp.argmax(bad))
        value = int(idx[i])
        raise EnforceError(
            "%s, out of bound,  idx:%d for input i:%d and %s:%d max size:%d. %s: expected "
            "indices in [0, %d) (rows of %d elements), found %d. Fix: remap or clip the "
            "indices." % (ctx.input_names[_PARAM_SLOT.get(op, 0)], value, i, label, block,
                          numel, op, rows,
                          block, value), input_index=_INDICES_SLOT[op])


_PARAM_SLOT = {"SparseMomentumSGDUpdate": 3}
_INDICES_SLOT = {"SparseAdagrad": 2, "RowWiseSparseAdagrad": 2,
                 "SparseMomentumSGDUpdate": 4, "SparseAdam": 3, "RowWiseSparseAdam": 3}


# --- Adagrad ---------------------------------------------------------------------------

ADAGRAD = OpSchema(
    "Adagrad", inputs=4, outputs=(2, 4), allow_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True,
    args=[Arg("epsilon", "float", 1e-5), Arg("decay", "float", 1.0),
          Arg("weight_decay", "float", 0.0)],
    doc="Dense Adagrad: inputs param, moment, grad, lr (this order, not the doc's); "
        "g' = g + weight_decay*w, h' = decay*h + g'^2, w' = w + lr*g'/(sqrt(h')+epsilon); "
        "optional outputs effective_lr and update.")


@ADAGRAD.shape
def _adagrad_shape(args, param, moment, grad, lr):
    op = "Adagrad"
    _check_updatable(param, op, "param", 0)
    _check_updatable(moment, op, "moment", 1)
    _require(grad, _F32, op, "grad", 2)
    _check_lr(lr, op, 3, exact=False)
    n_grad = _numel(grad.shape)
    _check_eq(n_grad, _numel(moment.shape), "Input(GRAD).numel() == Input(MOMENT_1).numel()",
              op, "PARAM size: %d, GRAD size: %d, MOMENT_1 size: %d, LR size: %d"
              % (_numel(param.shape), n_grad, _numel(moment.shape), _numel(lr.shape)),
              "give moment as many elements as grad", 1)
    _check_eq(n_grad, _numel(param.shape), "Input(GRAD).numel() == Input(PARAM).numel()",
              op, "grad has %d elements, param %d" % (n_grad, _numel(param.shape)),
              "feed the gradient of this param", 2)
    return [TensorInfo(param.shape, _F32), TensorInfo(moment.shape, _F32),
            TensorInfo(grad.shape, _F32), TensorInfo(grad.shape, _F32)]


@ADAGRAD.kernel
def adagrad(ctx, args, param, moment, grad, lr):
    xp, op = ctx.xp, "Adagrad"
    _adagrad_shape(args, *(TensorInfo.of(x) for x in (param, moment, grad, lr)))
    w = _as_float32(xp, param, op, "param", 0, ctx.inplace(0, 0)).reshape(-1)
    h = _as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1)).reshape(-1)
    rate, eps = _lr_value(lr), np.float32(args.epsilon)
    with np.errstate(all="ignore"):
        g = _fma(xp, args.weight_decay, w, grad.reshape(-1))
        nh = np.float32(args.decay) * h + g * g
        denom = xp.sqrt(nh) + eps
        if ctx.num_outputs == 2:
            return (w + rate * g / denom).reshape(param.shape), nh.reshape(moment.shape)
        effective_lr = rate / denom
        update = effective_lr * g
        outs = [(w + update).reshape(param.shape), nh.reshape(moment.shape),
                effective_lr.reshape(grad.shape), update.reshape(grad.shape)]
    return tuple(outs[:ctx.num_outputs])


# --- SparseAdagrad / RowWiseSparseAdagrad --------------------------------------------------

def _sparse_adagrad_decay(args):
    if args.decay != 1.0:
        raise ArgumentError(
            "decay == 1.0. %g vs 1. Decay is not supported for SparseSimdAdagradOp: "
            "SparseAdagrad expects decay 1.0 (or no decay argument), found %g. Fix: drop "
            "decay, or use dense Adagrad for a decaying moment." % (args.decay, args.decay))


SPARSE_ADAGRAD = OpSchema(
    "SparseAdagrad", inputs=5, outputs=2, enforce_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True, arg_check=_sparse_adagrad_decay,
    args=[Arg("epsilon", "float", 1e-5), Arg("weight_decay", "float", 0.0),
          Arg("decay", "float", 1.0)],
    doc="Adagrad on the rows param[indices[i]], in index order (a repeated index is "
        "updated twice); inputs param, moment, indices, grad, lr; in place.")


def _sparse_adagrad_common(op, param, moment, indices, grad, lr):
    _check_updatable(param, op, "param", 0)
    _check_updatable(moment, op, "moment", 1)
    _check_index_type(indices, op, 2)
    _require(grad, _F32, op, "grad", 3)
    _check_lr(lr, op, 4)
    _check_block(param, grad, indices, op, 3)


@SPARSE_ADAGRAD.shape
def _sparse_adagrad_shape(args, param, moment, indices, grad, lr):
    op = "SparseAdagrad"
    _check_eq(_numel(param.shape), _numel(moment.shape),
              "Input(PARAM).numel() == Input(MOMENT_1).numel()", op,
              "Input Param size: %d Input Moment size: %d"
              % (_numel(param.shape), _numel(moment.shape)),
              "give moment the shape of param", 1)
    _sparse_adagrad_common(op, param, moment, indices, grad, lr)
    return [TensorInfo(param.shape, _F32), TensorInfo(moment.shape, _F32)]


def _sparse_geometry(xp, ctx, op, indices, grad, param_numel, label="block size"):
    """(flat indices, block, rows), checked: Caffe2's block = grad.numel / n."""
    n = int(indices.size)
    block = int(grad.size) // n
    enforce(int(grad.size) % n == 0,
            "Input(GRAD).numel() %% n == 0. Incorrect gradient size:%d size of indexes:%d. "
            "%s: expected a multiple of %d grad elements, found %d. Fix: give one grad "
            "slice per index." % (grad.size, n, op, n, grad.size), input_index=3)
    idx = indices.reshape(-1).astype(np.int64)
    rows = param_numel // block if block else 0
    if block:
        _check_bounds(xp, ctx, idx, rows, block, param_numel, op, label)
    return idx, block, rows


@SPARSE_ADAGRAD.kernel
def sparse_adagrad(ctx, args, param, moment, indices, grad, lr):
    xp, op = ctx.xp, "SparseAdagrad"
    _sparse_adagrad_shape(args, *(TensorInfo.of(x) for x in
                                  (param, moment, indices, grad, lr)))
    w = _mutable(xp, _as_float32(xp, param, op, "param", 0, True))
    h = _mutable(xp, _as_float32(xp, moment, op, "moment", 1, True))
    if indices.size == 0:
        return w, h
    idx, block, rows = _sparse_geometry(xp, ctx, op, indices, grad, w.size, "block_size")
    if block == 0:
        return w, h
    rate, eps = _lr_value(lr), np.float32(args.epsilon)
    W = w.reshape(-1)[:rows * block].reshape(rows, block)
    H = h.reshape(-1)[:rows * block].reshape(rows, block)
    G = grad.reshape(-1, block)
    with np.errstate(all="ignore"):
        for pos in _rounds(xp, idx):
            r = idx[pos]
            wr = W[r]
            g = _fma(xp, args.weight_decay, wr, G[pos])
            hr = H[r] + g * g
            H[r] = hr
            W[r] = wr + rate * g / (xp.sqrt(hr) + eps)
    return w, h


ROWWISE_SPARSE_ADAGRAD = OpSchema(
    "RowWiseSparseAdagrad", inputs=(5, 6), outputs=2, enforce_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True,
    args=[Arg("epsilon", "float", 1e-5), Arg("weight_decay", "float", 0.0),
          Arg("counter_halflife", "int", -1)],
    doc="SparseAdagrad with one moment per row (the mean of the squared row gradient); "
        "optional float64 counter input scales weight_decay by counter_halflife/count.")


@ROWWISE_SPARSE_ADAGRAD.shape
def _rowwise_sparse_adagrad_shape(args, param, moment, indices, grad, lr, counter=None):
    op = "RowWiseSparseAdagrad"
    _check_param_dims(param, op)
    _check_eq(param.shape[0], _numel(moment.shape),
              "Input(PARAM).sizes()[0] == Input(MOMENT_1).numel()", op,
              "one moment per param row: param %s, moment %s"
              % (list(param.shape), list(moment.shape)),
              "feed moment of shape (param.shape[0],)", 1)
    _sparse_adagrad_common(op, param, moment, indices, grad, lr)
    if args.counter_halflife != -1:
        enforce(counter is not None,
                "%s with counter_halflife=%d reads input 5 (counter), found only 5 inputs. "
                "Fix: pass the float64 row counter, or leave counter_halflife at -1."
                % (op, args.counter_halflife))
        _require(counter, _F64, op, "counter", 5)
    return [TensorInfo(param.shape, _F32), TensorInfo(moment.shape, _F32)]


@ROWWISE_SPARSE_ADAGRAD.kernel
def rowwise_sparse_adagrad(ctx, args, param, moment, indices, grad, lr, counter=None):
    xp, op = ctx.xp, "RowWiseSparseAdagrad"
    infos = [TensorInfo.of(x) for x in (param, moment, indices, grad, lr)]
    _rowwise_sparse_adagrad_shape(args, *infos,
                                  counter=None if counter is None else TensorInfo.of(counter))
    w = _mutable(xp, _as_float32(xp, param, op, "param", 0, True))
    h = _mutable(xp, _as_float32(xp, moment, op, "moment", 1, True))
    if indices.size == 0:
        return w, h
    n = int(indices.size)
    block = int(grad.size) // n
    if block:
        _check_eq(w.size // block, h.size, "Input(PARAM).numel() / block_size == "
                  "Input(MOMENT_1).numel()", op, "Input Param size: %d Block size: %d Input "
                  "Moment size: %d" % (w.size, block, h.size),
                  "give one grad row of param.shape[1:] per index", 3)
    idx, block, rows = _sparse_geometry(xp, ctx, op, indices, grad, w.size)
    if block == 0:
        return w, h
    use_counter = args.counter_halflife > 0
    if use_counter:
        enforce(counter.size >= rows,
                "%s reads counter[idx] for every row: expected at least %d counter entries, "
                "found %d. Fix: feed the row counter of this table." % (op, rows,
                                                                        counter.size),
                input_index=5)
    rate, eps = _lr_value(lr), np.float32(args.epsilon)
    wd = np.float32(args.weight_decay)
    W = w.reshape(-1)[:rows * block].reshape(rows, block)
    H = h.reshape(-1)
    G = grad.reshape(-1, block)
    with np.errstate(all="ignore"):
        for pos in _rounds(xp, idx):
            r = idx[pos]
            wr, g = W[r], G[pos]
            if wd != 0:
                if use_counter:
                    count = counter.reshape(-1)[r]
                    freq = xp.where(count > 0, args.counter_halflife / count, 1.0)
                    scale = (wd * freq.astype(_F32)).astype(_F64)[:, None]
                    g = (scale * wr.astype(_F64) + g.astype(_F64)).astype(_F32)
                else:
                    g = _fma(xp, wd, wr, g)
            hr = H[r] + (g * g).sum(axis=1, dtype=_F32) / np.float32(block)
            H[r] = hr
            step = rate / (xp.sqrt(hr) + eps)
            W[r] = wr + g * step[:, None]
    return w, h


# --- MomentumSGD family ----------------------------------------------------------------

_MOMENTUM_ARGS = [Arg("momentum", "float", 0.0), Arg("nesterov", "bool", False)]


def _momentum_step(args, rate, g, m):
    """(new grad, new moment) of Caffe2's momentum_sgd_update, in float32."""
    mu = np.float32(args.momentum)
    if not args.nesterov:
        adjusted = rate * g + mu * m
        return adjusted, adjusted.copy()
    m_new = mu * m + rate * g
    return (np.float32(1) + mu) * m_new - mu * m, m_new


def _momentum_shape(op, grad, moment, lr):
    _check_updatable(grad, op, "grad", 0)
    _check_updatable(moment, op, "moment", 1)
    _check_lr(lr, op, 2)
    _check_eq(_numel(grad.shape), _numel(moment.shape),
              "Input(GRAD).numel() == Input(MOMENTUM).numel()", op,
              "grad %s, moment %s" % (list(grad.shape), list(moment.shape)),
              "give moment as many elements as grad", 1)


MOMENTUM_SGD = OpSchema(
    "MomentumSGD", inputs=3, outputs=2, allow_inplace={(0, 0), (1, 1)},
    should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="(grad, moment, lr) -> (adjusted grad, new moment); no parameter update.")


@MOMENTUM_SGD.shape
def _momentum_sgd_shape(args, grad, moment, lr):
    _momentum_shape("MomentumSGD", grad, moment, lr)
    return [TensorInfo(grad.shape, _F32), TensorInfo(moment.shape, _F32)]


@MOMENTUM_SGD.kernel
def momentum_sgd(ctx, args, grad, moment, lr):
    xp, op = ctx.xp, "MomentumSGD"
    _momentum_sgd_shape(args, TensorInfo.of(grad), TensorInfo.of(moment), TensorInfo.of(lr))
    g = _as_float32(xp, grad, op, "grad", 0, ctx.inplace(0, 0))
    m = _as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1))
    with np.errstate(all="ignore"):
        ng, nm = _momentum_step(args, _lr_value(lr), g.reshape(-1), m.reshape(-1))
    return ng.reshape(grad.shape), nm.reshape(moment.shape)


MOMENTUM_SGD_UPDATE = OpSchema(
    "MomentumSGDUpdate", inputs=4, outputs=3, allow_inplace={(0, 0), (1, 1), (3, 2)},
    should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="(grad, moment, lr, param) -> (adjusted grad, new moment, param - adjusted "
        "grad); the param output must be the param input.")


@MOMENTUM_SGD_UPDATE.shape
def _momentum_sgd_update_shape(args, grad, moment, lr, param):
    op = "MomentumSGDUpdate"
    _momentum_shape(op, grad, moment, lr)
    _check_updatable(param, op, "param", 3)
    _check_eq(_numel(param.shape), _numel(grad.shape), "Input(PARAM).numel() == "
              "Input(GRAD).numel()", op, "param %s, grad %s" % (list(param.shape),
                                                                 list(grad.shape)),
              "feed the gradient of this param", 3)
    return [TensorInfo(grad.shape, _F32), TensorInfo(moment.shape, _F32),
            TensorInfo(param.shape, _F32)]


@MOMENTUM_SGD_UPDATE.kernel
def momentum_sgd_update(ctx, args, grad, moment, lr, param):
    xp, op = ctx.xp, "MomentumSGDUpdate"
    _momentum_sgd_update_shape(args, *(TensorInfo.of(x) for x in (grad, moment, lr, param)))
    # Caffe2 subtracted from the output buffer without sizing it: only in place works.
    enforce(ctx.inplace(3, 2),
            "%s updates param in place: expected output 2 to be input 3 ('%s'), found "
            "'%s'. Fix: name the param blob as output 2." % (op, ctx.input_names[3],
                                                             ctx.output_names[2]),
            input_index=3)
    g = _as_float32(xp, grad, op, "grad", 0, ctx.inplace(0, 0))
    m = _as_float32(xp, moment, op, "moment", 1, ctx.inplace(1, 1))
    w = _as_float32(xp, param, op, "param", 3, True)
    with np.errstate(all="ignore"):
        ng, nm = _momentum_step(args, _lr_value(lr), g.reshape(-1), m.reshape(-1))
        nw = w.reshape(-1) - ng
    return ng.reshape(grad.shape), nm.reshape(moment.shape), nw.reshape(param.shape)


SPARSE_MOMENTUM_SGD_UPDATE = OpSchema(
    "SparseMomentumSGDUpdate", inputs=5, outputs=3, allow_inplace={(0, 0)},
    enforce_inplace={(1, 1), (3, 2)}, should_not_do_gradient=True, args=_MOMENTUM_ARGS,
    doc="MomentumSGDUpdate on the rows param[indices[i]], in index order; inputs grad, "
        "moment, lr, param, indices; moment and param in place.")


def _sparse_rows(op, param, grad, indices):
    """(block, n): Caffe2's row size param.numel/param.size(0) and grad row count."""
    _check_param_dims(param, op)
    block = _size_from_dim(param.shape, 1)
    n = _numel(grad.shape) // block if block else 0
    enforce(_numel(indices.shape) >= n,
            "%s reads one index per grad row: expected at least %d indices (grad %s, rows "
            "of %d), found %d. Fix: give one index per grad row."
            % (op, n, list(grad.shape), block, _numel(indices.shape)),
            input_index=_INDICES_SLOT[op])
    return block, n


@SPARSE_MOMENTUM_SGD_UPDATE.shape
def _sparse_momentum_shape(args, grad, moment, lr, param, indices):
    op = "SparseMomentumSGDUpdate"
    _check_lr(lr, op, 2)
    _check_eq(_numel(param.shape), _numel(moment.shape), "Input(PARAM).numel() == "
              "Input(MOMENTUM).numel()", op, "param %s, moment %s"
              % (list(param.shape), list(moment.shape)), "give moment the shape of param",
              1)
    _check_block(param, grad, indices, op, 0)
    _check_index_type(indices, op, 4)
    _require(grad, _F32, op, "grad", 0)
    _require(moment, _F32, op, "moment", 1)
    _check_updatable(param, op, "param", 3)
    _sparse_rows(op, param, grad, indices)
    return [TensorInfo(grad.shape, _F32), TensorInfo(moment.shape, _F32),
            TensorInfo(param.shape, _F32)]


@SPARSE_MOMENTUM_SGD_UPDATE.kernel
def sparse_momentum_sgd_update(ctx, args, grad, moment, lr, param, indices):
    xp, op = ctx.xp, "SparseMomentumSGDUpdate"
    _sparse_momentum_shape(args, *(TensorInfo.of(x) for x in
                                   (grad, moment, lr, param, indices)))
    w = _mutable(xp, _as_float32(xp, param, op, "param", 3, True))
    m = _mutable(xp, moment)
    block, n = _sparse_rows(op, param, grad, indices)
    out = xp.array(grad, dtype=_F32, copy=True)
    if n == 0:
        return out, m, w
    rows = param.shape[0]
    idx = indices.reshape(-1)[:n].astype(np.int64)
    _check_bounds(xp, ctx, idx, rows, block, w.size, op)
    W, M = w.reshape(rows, block), m.reshape(rows, block)
    G, O = grad.reshape(n, block), out.reshape(n, block)
    rate = _lr_value(lr)
    with np.errstate(all="ignore"):
        for pos in _rounds(xp, idx):
            r = idx[pos]
            ng, nm = _momentum_step(args, rate, G[pos], M[r])
            M[r] = nm
            O[pos] = ng
            W[r] = W[r] - ng
    return out, m, w


# --- Adam family -------------------------------------------------------------------------

_ADAM_ARGS = [Arg("beta1", "float", 0.9), Arg("beta2", "float", 0.999),
              Arg("epsilon", "float", 1e-5)]


class _AdamScalars(object):
    """Caffe2's per-step scalars: float32 betas, powers and corrections in double
    (std::pow(float, int64) promotes), t = iter + 1."""

    def __init__(self, args, iteration):
        self.b1, self.b2 = np.float32(args.beta1), np.float32(args.beta2)
        self.eps = np.float32(args.epsilon)
        self.one_b1, self.one_b2 = np.float32(1) - self.b1, np.float32(1) - self.b2
        self.t = t = int(iteration.reshape(-1)[0]) + 1
        with np.errstate(all="ignore"):
            p1 = np.float64(self.b1) ** np.float64(t)
            p2 = np.float64(self.b2) ** np.float64(t)
            self.b1_correction = np.float64(1.0) / (np.float64(1.0) - p1)
            self.correction = np.sqrt(np.float64(1.0) - p2) / (np.float64(1.0) - p1)
            # RAdam (SparseAdam enableRAdam): rho_inf and r_correction are float.
            self.rho_inf = np.float32(2) / self.one_b2 - np.float32(1)
            self.rho_t = (np.float64(self.rho_inf) - np.float64(np.float32(2) * np.float32(t))
                          * p2 / (np.float64(1.0) - p2))
            self.r_correction = np.sqrt(self.rho_inf / ((self.rho_inf - np.float32(4)) *
                                                        (self.rho_inf - np.float32(2))))

    def moments(self, g, m1, m2):
        return m1 * self.b1 + g * self.one_b1, m2 * self.b2 + g * g * self.one_b2


def _adam_shape(op, param, m1, m2, grad, lr, it, dense):
    """Dtypes: dense Adam may reinterpret in-place state; the sparse ones read every
    state tensor as float before writing, so only float32 passes there."""
    for k, (info, what) in enumerate(((param, "param"), (m1, "moment_1"),
                                      (m2, "moment_2"))):
        if dense:
            _check_updatable(info, op, what, k)
        else:
            _require(info, _F32, op, what, k)
    _require(grad, _F32, op, "grad", 3 if dense else 4)
    _check_lr(lr, op, 4 if dense else 5)
    _check_iter(it, op, 5 if dense else 6)


ADAM = OpSchema(
    "Adam", inputs=6, outputs=(3, 4), allow_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={5}, should_not_do_gradient=True, args=_ADAM_ARGS,
    doc="Dense Adam: inputs param, moment_1, moment_2, grad, lr, iter (int64, CPU); "
        "t = iter + 1; optional output effective grad.")


@ADAM.shape
def _adam_dense_shape(args, param, m1, m2, grad, lr, it):
    op = "Adam"
    _adam_shape(op, param, m1, m2, grad, lr, it, True)
    n = _numel(grad.shape)
    for k, info, what in ((0, param, "PARAM"), (1, m1, "MOMENT_1"), (2, m2, "MOMENT_2")):
        _check_eq(n, _numel(info.shape), "Input(GRAD).numel() == Input(%s).numel()" % what,
                  op, "grad %s, %s %s" % (list(grad.shape), what.lower(), list(info.shape)),
                  "give %s as many elements as grad" % what.lower(), k)
    return [TensorInfo(param.shape, _F32), TensorInfo(m1.shape, _F32),
            TensorInfo(m2.shape, _F32), TensorInfo(grad.shape, _F32)]


@ADAM.kernel
def adam(ctx, args, param, m1, m2, grad, lr, it):
    xp, op = ctx.xp, "Adam"
    _adam_dense_shape(args, *(TensorInfo.of(x) for x in (param, m1, m2, grad, lr, it)))
    w = _as_float32(xp, param, op, "param", 0, ctx.inplace(0, 0)).reshape(-1)
    a = _as_float32(xp, m1, op, "moment_1", 1, ctx.inplace(1, 1)).reshape(-1)
    b = _as_float32(xp, m2, op, "moment_2", 2, ctx.inplace(2, 2)).reshape(-1)
    s, rate = _AdamScalars(args, it), _lr_value(lr)
    corr = np.float32(s.correction)
    with np.errstate(all="ignore"):
        mi, vi = s.moments(grad.reshape(-1), a, b)
        denom = xp.sqrt(vi) + s.eps
        outs = [None, mi.reshape(m1.shape), vi.reshape(m2.shape)]
        if ctx.num_outputs == 3:
            outs[0] = (w + rate * corr * mi / denom).reshape(param.shape)
        else:
            ng = corr * mi / denom
            outs[0] = (w + rate * ng).reshape(param.shape)
            outs.append(ng.reshape(grad.shape))
    return tuple(outs)


def _sparse_adam_geometry(xp, ctx, op, param, indices, grad):
    block, n = _sparse_rows(op, param, grad, indices)
    idx = indices.reshape(-1)[:n].astype(np.int64)
    if n and block:
        _check_bounds(xp, ctx, idx, param.shape[0], block, param.size, op)
    return idx, block, n


def _f64(x):
    return x.astype(_F64)


def _sparse_adam_step(xp, s, args, rate, w, mi, vi, block, want_grad):
    """(new rows, effective grad rows) of SparseAdam, with Caffe2's float/double mix:
    one-element rows computed inline in double, wider rows in float32 helpers."""
    sqrt_eps = xp.sqrt(vi) + s.eps
    wide = block != 1
    if not args.enableRAdam:
        if wide:
            corr = np.float32(s.correction)
            if not want_grad:
                return w + rate * corr * mi / sqrt_eps, None
            ng = corr * mi / sqrt_eps
            return w + rate * ng, ng
        if not want_grad:
            return (_f64(w) + np.float64(rate) * s.correction * _f64(mi) /
                    _f64(sqrt_eps)).astype(_F32), None
        ng = (s.correction * _f64(mi) / _f64(sqrt_eps)).astype(_F32)
        return w + rate * ng, ng
    rho_t = np.float64(np.float32(s.rho_t)) if wide else s.rho_t
    if rho_t >= 5.0:
        r_t = np.float32(np.sqrt(((rho_t - 4.0) * (rho_t - 2.0)) / rho_t) *
                         np.float64(s.r_correction))
        if wide:
            corr = np.float32(s.correction)
            ng = r_t * corr * mi / sqrt_eps
            if not want_grad:
                return w + rate * r_t * corr * mi / sqrt_eps, None
            return w + rate * ng, ng
        if not want_grad:
            step = np.float64(rate * r_t) * s.correction * _f64(mi) / _f64(sqrt_eps)
            return (_f64(w) + step).astype(_F32), None
        ng = (np.float64(r_t) * s.correction * _f64(mi) / _f64(sqrt_eps)).astype(_F32)
        return w + rate * ng, ng
    if wide:
        b1c = np.float32(s.b1_correction)
        ng = b1c * mi
        return (w + rate * b1c * mi, None) if not want_grad else (w + rate * ng, ng)
    if not want_grad:
        return (_f64(w) + np.float64(rate) * s.b1_correction * _f64(mi)).astype(_F32), None
    ng = (s.b1_correction * _f64(mi)).astype(_F32)
    return w + rate * ng, ng


SPARSE_ADAM = OpSchema(
    "SparseAdam", inputs=7, outputs=(3, 4), enforce_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={6}, should_not_do_gradient=True,
    args=_ADAM_ARGS + [Arg("enableRAdam", "bool", False)],
    doc="Adam on the rows param[indices[i]], in index order; inputs param, moment_1, "
        "moment_2, indices, grad, lr, iter; optional output effective grad.")


def _sparse_adam_shape(op, args, param, m1, m2, indices, grad, lr, it, m2_rows):
    n_param = _numel(param.shape)
    _check_eq(n_param, _numel(m1.shape), "Input(PARAM).numel() == Input(MOMENT_1).numel()",
              op, "param %s, moment_1 %s" % (list(param.shape), list(m1.shape)),
              "give moment_1 the shape of param", 1)
    if m2_rows:
        _check_param_dims(param, op)
        _check_eq(param.shape[0], _numel(m2.shape), "Input(PARAM).sizes()[0] == "
                  "Input(MOMENT_2).numel()", op, "one moment_2 per param row: param %s, "
                  "moment_2 %s" % (list(param.shape), list(m2.shape)),
                  "feed moment_2 of shape (param.shape[0],)", 2)
    else:
        _check_eq(n_param, _numel(m2.shape), "Input(PARAM).numel() == Input(MOMENT_2)"
                  ".numel()", op, "param %s, moment_2 %s" % (list(param.shape),
                                                             list(m2.shape)),
                  "give moment_2 the shape of param", 2)
    _check_block(param, grad, indices, op, 4)
    _check_index_type(indices, op, 3)
    _adam_shape(op, param, m1, m2, grad, lr, it, False)
    _sparse_rows(op, param, grad, indices)
    return [TensorInfo(param.shape, _F32), TensorInfo(m1.shape, _F32),
            TensorInfo(m2.shape, _F32), TensorInfo(grad.shape, _F32)]


@SPARSE_ADAM.shape
def _sparse_adam_shape_rule(args, *infos):
    return _sparse_adam_shape("SparseAdam", args, *infos, m2_rows=False)


@SPARSE_ADAM.kernel
def sparse_adam(ctx, args, param, m1, m2, indices, grad, lr, it):
    xp, op = ctx.xp, "SparseAdam"
    _sparse_adam_shape(op, args, *(TensorInfo.of(x) for x in
                                   (param, m1, m2, indices, grad, lr, it)), m2_rows=False)
    w, a, b = (_mutable(xp, x) for x in (param, m1, m2))
    idx, block, n = _sparse_adam_geometry(xp, ctx, op, param, indices, grad)
    want_grad = ctx.num_outputs == 4
    out = xp.zeros(grad.shape, dtype=_F32)
    if n and block:
        s, rate = _AdamScalars(args, it), _lr_value(lr)
        rows = param.shape[0]
        W, A, B = (x.reshape(rows, block) for x in (w, a, b))
        G, O = grad.reshape(n, block), out.reshape(n, block)
        with np.errstate(all="ignore"):
            for pos in _rounds(xp, idx):
                r = idx[pos]
                mi, vi = s.moments(G[pos], A[r], B[r])
                A[r], B[r] = mi, vi
                W[r], ng = _sparse_adam_step(xp, s, args, rate, W[r], mi, vi, block,
                                              want_grad)
                if want_grad:
                    O[pos] = ng
    return (w, a, b, out) if want_grad else (w, a, b)


ROWWISE_SPARSE_ADAM = OpSchema(
    "RowWiseSparseAdam", inputs=7, outputs=(3, 4), enforce_inplace={(0, 0), (1, 1), (2, 2)},
    cpu_inputs={6}, should_not_do_gradient=True, args=_ADAM_ARGS,
    doc="SparseAdam with one second moment per row (the mean squared row gradient).")


@ROWWISE_SPARSE_ADAM.shape
def _rowwise_sparse_adam_shape(args, *infos):
    return _sparse_adam_shape("RowWiseSparseAdam", args, *infos, m2_rows=True)


@ROWWISE_SPARSE_ADAM.kernel
def rowwise_sparse_adam(ctx, args, param, m1, m2, indices, grad, lr, it):
    xp, op = ctx.xp, "RowWiseSparseAdam"
    _sparse_adam_shape(op, args, *(TensorInfo.of(x) for x in
                                   (param, m1, m2, indices, grad, lr, it)), m2_rows=True)
    w, a, b = (_mutable(xp, x) for x in (param, m1, m2))
    idx, block, n = _sparse_adam_geometry(xp, ctx, op, param, indices, grad)
    want_grad = ctx.num_outputs == 4
    out = xp.zeros(grad.shape, dtype=_F32)
    if n and block:
        s, rate = _AdamScalars(args, it), _lr_value(lr)
        rows = param.shape[0]
        W, A, B = w.reshape(rows, block), a.reshape(rows, block), b.reshape(-1)
        G, O = grad.reshape(n, block), out.reshape(n, block)
        with np.errstate(all="ignore"):
            for pos in _rounds(xp, idx):
                r, g = idx[pos], G[pos]
                # Caffe2 summed the squares left to right in float (a cumulative sum).
                mean_sq = xp.cumsum(g * g, axis=1, dtype=_F32)[:, -1] / np.float32(block)
                vi = B[r] * s.b2 + mean_sq * s.one_b2
                mi = A[r] * s.b1 + g * s.one_b1
                A[r], B[r] = mi, vi
                denom = _f64((xp.sqrt(vi) + s.eps)[:, None])
                if want_grad:
                    ng = (s.correction * _f64(mi) / denom).astype(_F32)
                    O[pos] = ng
                    W[r] = W[r] + rate * ng
                else:
                    step = np.float64(rate) * s.correction * _f64(mi) / denom
                    W[r] = (_f64(W[r]) + step).astype(_F32)
    return (w, a, b, out) if want_grad else (w, a, b)
