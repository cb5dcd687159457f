"""Per-op FLOP and memory-traffic estimates from inferred shapes, their totals per
device, and the bytes a run moves between devices.

Estimates, not measurements: a multiply-add counts 2 FLOPs, elementwise ops a few
FLOPs per output element; bytes are what an op reads plus what it writes (for
gathers and sparse updates, only the rows they touch). Imports the registry and
the analysis helpers.
"""

from collections import namedtuple

import numpy as np

from graphnet import registry
from graphnet.errors import GraphnetError
from graphnet.analysis._placement import place
from graphnet.analysis._shapes import known_infos, nbytes, numel, trace

__all__ = ["OpCost", "DeviceCost", "Transfer", "Communication", "op_costs",
           "device_costs", "communication", "PER_ELEMENT_FLOPS",
           "PER_INPUT_ELEMENT_FLOPS", "SPARSE_OPTIMIZERS", "COPY_OPS",
           "COLLECTIVE_OPS"]


class OpCost(namedtuple("OpCost", ["flops", "bytes", "known"])):
    """FLOPs and bytes of one run of an op; known is False when a shape was missing
    (flops are then 0 and bytes count only the blobs of known shape)."""

    __slots__ = ()


class DeviceCost(namedtuple("DeviceCost", ["ops", "flops", "bytes"])):
    """Op count, FLOPs and bytes of the ops that run on one device."""

    __slots__ = ()


# --- formulas: f(op, args, inputs, outputs) -> (flops, bytes or None: in + out) ------

_FORMULAS = {}


def _formula(*op_types):
    def wrap(fn):
        for op_type in op_types:
            _FORMULAS[op_type] = fn
        return fn
    return wrap


def _prod(dims):
    return int(np.prod(dims, dtype=np.int64))


def _tail(shape, axis):
    """Product of the dims from `axis` (negative counts from the end) on."""
    return _prod(shape[axis + len(shape) if axis < 0 else axis:])


# FLOPs per element of output 0: activations, arithmetic, gradients, dense optimizers.
PER_ELEMENT_FLOPS = {
    "Relu": 1, "ReluGradient": 1, "Sigmoid": 4, "SigmoidGradient": 3, "Tanh": 4,
    "TanhGradient": 3, "Exp": 1, "Log": 1, "Sqrt": 1, "Sqr": 1, "Abs": 1, "Negative": 1,
    "AbsGradient": 1, "Pow": 1, "Scale": 1, "Clip": 2, "ClipGradient": 2,
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "AddGradient": 1, "SubGradient": 1,
    "MulGradient": 2, "DivGradient": 3, "SumReduceLike": 1,
    "Softmax": 5, "SoftmaxGradient": 4, "Dropout": 2, "DropoutGrad": 1,
    "AveragedLossGradient": 1, "SquaredL2DistanceGradient": 3, "MakeTwoClass": 1,
    "MakeTwoClassGradient": 1, "CrossEntropyGradient": 2,
    "LabelCrossEntropyGradient": 2, "SigmoidCrossEntropyWithLogitsGradient": 5,
    "WeightedSigmoidCrossEntropyWithLogitsGradient": 6, "SoftmaxWithLossGradient": 2,
    "Adagrad": 5, "Adam": 12, "MomentumSGD": 3, "MomentumSGDUpdate": 4,
}

# Losses and reductions: FLOPs per element of input 0.
PER_INPUT_ELEMENT_FLOPS = {
    "SquaredL2Distance": 3, "AveragedLoss": 1, "CrossEntropy": 3,
    "LabelCrossEntropy": 1, "SigmoidCrossEntropyWithLogits": 5,
    "WeightedSigmoidCrossEntropyWithLogits": 6, "SoftmaxWithLoss": 6, "Accuracy": 1,
}

# Sparse optimizers: (FLOPs per gradient element, input index of the gradient, of
# the indices, number of parameter-shaped tensors whose touched rows are read and
# written).
SPARSE_OPTIMIZERS = {
    "SparseAdagrad": (5, 3, 2, 2), "RowWiseSparseAdagrad": (3, 3, 2, 1),
    "SparseAdam": (12, 4, 3, 3), "RowWiseSparseAdam": (10, 4, 3, 2),
    "SparseMomentumSGDUpdate": (4, 0, 4, 2),
}


@_formula("FC", "FCTransposed")
def _fc(op, args, ins, outs):
    k = _tail(ins[0].shape, args.axis)
    return 2 * k * numel(outs[0]) + numel(outs[0]), None


@_formula("FCGradient", "FCTransposedGradient")
def _fc_gradient(op, args, ins, outs):
    k, m = _tail(ins[0].shape, args.axis), numel(ins[2])
    return 2 * k * m * (2 if len(outs) == 3 else 1) + m, None


@_formula("BatchMatMul")
def _batch_matmul(op, args, ins, outs):
    a = ins[0].shape
    k = a[-2] if args.trans_a and len(a) >= 2 else a[-1]
    return 2 * k * numel(outs[0]), None


@_formula("MatMul")
def _matmul(op, args, ins, outs):
    a = ins[0].shape
    axis = args.axis_a + len(a) if args.axis_a < 0 else args.axis_a
    k = _prod(a[:axis]) if args.trans_a else _prod(a[axis:])
    return 2 * k * numel(outs[0]), None


@_formula("SparseLengthsSum", "SparseLengthsMean", "SparseLengthsWeightedSum")
def _sparse_lengths(op, args, ins, outs):
    data, indices = ins[0], ins[-2]
    gathered = numel(indices) * _prod(data.shape[1:])
    flops = gathered * (2 if "Weighted" in op.type else 1)
    if "Mean" in op.type:
        flops += numel(outs[0])
    moved = gathered * data.dtype.itemsize + sum(nbytes(i) for i in ins[1:])
    return flops, moved + nbytes(outs[0])


@_formula("SparseLengthsSumGradient", "SparseLengthsMeanGradient",
          "SparseLengthsWeightedSumGradient", "SparseLengthsIndicesInGradientSumGradient",
          "SparseLengthsIndicesInGradientMeanGradient",
          "SparseLengthsIndicesInGradientWeightedSumGradient")
def _sparse_lengths_gradient(op, args, ins, outs):
    return numel(outs[0]) * (2 if "Weighted" in op.type else 1), None


@_formula("Gather", "BatchGather")
def _gather(op, args, ins, outs):
    return 0, 2 * nbytes(outs[0]) + nbytes(ins[1])


@_formula("Sum", "Max", "Min", "WeightedSum")
def _combine_inputs(op, args, ins, outs):
    return (len(ins) - 1) * numel(outs[0]), None


@_formula("Mean")
def _mean(op, args, ins, outs):
    return len(ins) * numel(outs[0]), None


@_formula("ScatterWeightedSum")
def _scatter_weighted_sum(op, args, ins, outs):
    slices = ins[3::2]
    rows = numel(slices[0])
    moved = 2 * rows * ins[0].dtype.itemsize + sum(map(nbytes, slices)) + nbytes(ins[2])
    return rows * (1 + 2 * len(slices)), moved


@_formula("NCCLAllreduce", "NCCLReduce", "NCCLReduceScatter")
def _collective_sum(op, args, ins, outs):
    return (len(ins) - 1) * numel(ins[0]), None


@_formula("NCCLAllGather")
def _all_gather(op, args, ins, outs):
    return 0, None


def _per_element(flops):
    return lambda op, args, ins, outs: (flops * numel(outs[0]), None)


def _per_input_element(flops):
    return lambda op, args, ins, outs: (flops * numel(ins[0]), None)


def _sparse_optimizer(flops, grad, indices, tensors):
    def formula(op, args, ins, outs):
        g = ins[grad]
        return flops * numel(g), (2 * tensors + 1) * nbytes(g) + nbytes(ins[indices])
    return formula


for _type, _flops in PER_ELEMENT_FLOPS.items():
    _FORMULAS[_type] = _per_element(_flops)
for _type, _flops in PER_INPUT_ELEMENT_FLOPS.items():
    _FORMULAS[_type] = _per_input_element(_flops)
for _type, _spec in SPARSE_OPTIMIZERS.items():
    _FORMULAS[_type] = _sparse_optimizer(*_spec)


# --- per op and per device -------------------------------------------------------------

def _op_cost(op, shapes):
    """OpCost of one op from its OpShapes; other op types move in + out, 0 FLOPs."""
    infos = [i for i in list(shapes.inputs) + list(shapes.outputs) if i is not None]
    default_bytes = sum(nbytes(i) for i in infos)
    if len(infos) < len(op.input) + len(op.output):
        return OpCost(0, default_bytes, False)
    formula, schema = _FORMULAS.get(op.type), registry.lookup(op.type)
    if formula is None or schema is None:
        return OpCost(0, default_bytes, True)
    try:
        flops, moved = formula(op, schema.parse_args(op), shapes.inputs, shapes.outputs)
    except (IndexError, GraphnetError):
        return OpCost(0, default_bytes, False)
    return OpCost(int(flops), default_bytes if moved is None else int(moved), True)


def op_costs(netdef, shapes=None):
    """One OpCost per op of `netdef`, from the shapes inferred from `shapes`
    (name -> TensorInfo / (shape, dtype) / shape)."""
    traced = trace(netdef, known_infos(shapes))
    return [_op_cost(op, s) for op, s in zip(netdef.op, traced)]


def device_costs(netdef, shapes=None, blob_devices=None):
    """Device -> DeviceCost(ops, flops, bytes) over the ops that run there."""
    placement = place(netdef, blob_devices)
    totals = {}
    for where, c in zip(placement.ops, op_costs(netdef, shapes)):
        ops, flops, moved = totals.get(where.device, (0, 0, 0))
        totals[where.device] = DeviceCost(ops + 1, flops + c.flops, moved + c.bytes)
    return totals


# --- communication ---------------------------------------------------------------------

# Ops whose job is to move input 0 to the device of output 0.
COPY_OPS = frozenset(["Copy", "CopyOnDeviceLike", "CopyCPUToGPU", "CopyGPUToCPU",
                      "CopyFromCPUInput", "EnsureCPUOutput"])
COLLECTIVE_OPS = frozenset(["NCCLAllreduce", "NCCLBroadcast", "NCCLReduce",
                            "NCCLAllGather", "NCCLReduceScatter"])


class Transfer(namedtuple("Transfer", ["op_index", "op_type", "blob", "src", "dst",
                                       "bytes", "kind"])):
    """Bytes one op sends from device src to device dst per run (None: unknown shape).

    kind: "copy" (a Copy-family op), "collective" (one link of an NCCL op) or
    "implicit" (a cross-device read graphnet serves with a transfer).
    """

    __slots__ = ()


class Communication(object):
    """Every Transfer of a run, and their sums: by_pair[(src, dst)], by_kind[kind],
    total; `unknown` lists the transfers whose size could not be inferred."""

    def __init__(self, transfers):
        self.transfers = transfers
        self.unknown = [t for t in transfers if t.bytes is None]
        self.by_pair, self.by_kind = {}, {}
        for t in transfers:
            if t.bytes is not None:
                pair = (t.src, t.dst)
                self.by_pair[pair] = self.by_pair.get(pair, 0) + t.bytes
                self.by_kind[t.kind] = self.by_kind.get(t.kind, 0) + t.bytes
        self.total = sum(self.by_kind.values())

    def __repr__(self):
        pairs = ", ".join("%s->%s: %s" % (s, d, b) for (s, d), b in sorted(
            self.by_pair.items()))
        return "Communication(total=%s, %s)" % (self.total, pairs)


def _exact(x):
    return int(x) if float(x).is_integer() else x


def _collective_links(op, where, size):
    """(src, dst, bytes, input index) per link of an NCCL op (models: communication)."""
    devices = where.input_devices
    n = len(devices)
    ring = {"NCCLAllGather": n - 1, "NCCLReduceScatter": (n - 1) / n}
    if op.type == "NCCLAllreduce" and len(op.output) == n:
        ring["NCCLAllreduce"] = 2 * (n - 1) / n
    if op.type in ring:  # S per device scaled by the ring's share, to the successor
        share = None if size is None else _exact(ring[op.type] * size)
        return [(devices[i], devices[(i + 1) % n], share, i) for i in range(n)]
    if op.type == "NCCLBroadcast":
        root = registry.get(op.type).parse_args(op).root
        if not 0 <= root < n:
            return []  # the kernel rejects it; validate reports it
        order = [root] + [i for i in range(n) if i != root]
        chain = [devices[i] for i in order]
    else:
        order = [i for i in range(n) if devices[i] != where.device]
        chain = [devices[i] for i in order] + [where.device]
    return [(chain[k], chain[k + 1], size, order[k]) for k in range(len(chain) - 1)]


def communication(netdef, shapes=None, blob_devices=None):
    """The bytes one run of `netdef` moves between devices, as a Communication.

    Counted: every Copy-family op (COPY_OPS) whose source and destination devices
    differ (DLRM's butterfly shuffle); every cross-device read graphnet serves with
    a transfer; every NCCL collective of S bytes per device on n devices, in these
    models:

    * NCCLAllreduce: a ring over the inputs' devices in input order. Reduce-scatter
      then all-gather send 2 * (n - 1) / n * S from each device to its successor,
      2 * (n - 1) * S in all. With one output it is a reduce, as below.
    * NCCLReduceScatter: the same ring, (n - 1) / n * S per link; NCCLAllGather: the
      same ring, (n - 1) * S per link (every input reaches every other device).
    * NCCLBroadcast: a chain from the root's device through the others in input
      order: n - 1 links of S.
    * NCCLReduce: a chain through the inputs' devices ending at the op's device:
      one link of S per input living elsewhere.

    Not counted: inputs an op takes from any device without a transfer (Sum's
    operands, the shape input of a fill, CopyOnDeviceLike's `like`).
    shapes: known blob shapes (the rest is inferred); blob_devices: name -> Device
    of blobs fed before the run (otherwise a blob is assumed to live where its
    first reader expects it).
    """
    placement = place(netdef, blob_devices)
    traced = trace(netdef, known_infos(shapes))
    transfers = []

    def add(index, op, i, src, dst, size, kind):
        if src is not None and dst is not None and src != dst:
            transfers.append(Transfer(index, op.type, op.input[i], src, dst, size, kind))

    for index, (op, where) in enumerate(zip(netdef.op, placement.ops)):
        if not op.input:
            continue
        sizes = [None if info is None else nbytes(info) for info in traced[index].inputs]
        if op.type in COPY_OPS:
            src = where.want[0] if where.want[0] is not None else where.input_devices[0]
            add(index, op, 0, src, where.outputs[0], sizes[0], "copy")
        elif op.type in COLLECTIVE_OPS:
            for src, dst, size, i in _collective_links(op, where, sizes[0]):
                add(index, op, i, src, dst, size, "collective")
    for read in placement.reads:
        info = traced[read.op_index].inputs[read.input_index]
        transfers.append(Transfer(read.op_index, read.op_type, read.blob, read.blob_device,
                                  read.op_device, None if info is None else nbytes(info),
                                  "implicit"))
    transfers.sort(key=lambda t: t.op_index)
    return Communication(transfers)
