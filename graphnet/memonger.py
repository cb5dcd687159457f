"""caffe2.python.memonger: reuse blob buffers to cut a net's memory.

share_grad_blobs (training nets) and optimize_inference_for_dag (inference
nets) rename blobs whose live ranges do not overlap to shared buffers
`<namescope>__m<k>_shared`; release_blobs_when_used inserts `Free` ops after
last uses; the rest estimates and verifies. The DAG pass Caffe2 ran in C++
lives in graphnet._memonger_dag. Imports core, workspace (blob sizes only) and
the proto module.
"""

import collections
import copy
import logging
import time

from graphnet import core
from graphnet._memonger_dag import compute_blob_recycling_for_dag, optimize_inference_net
from graphnet.proto import caffe2_pb2

__all__ = ["share_grad_blobs", "optimize_inference_for_dag", "optimize_inference_fast",
           "estimate_memory_usage", "release_blobs_when_used", "verify_inplace_blobs",
           "verify_graph_equality", "Statistics", "blob_nbytes", "compute_statistics",
           "collect_blob_sizes", "LiveRange"]

log = logging.getLogger("memonger")
log.setLevel(logging.INFO)
LiveRange = collections.namedtuple("LiveRange", ["defined", "used", "size"])
Statistics = collections.namedtuple("Statistics", ["baseline_nbytes", "optimized_nbytes"])


def share_grad_blobs(net, losses, param_grads, namescope, dont_share_blobs=None,
                     share_activations=False, blob_shapes=None):
    """Let gradient blobs passed between layers share buffers (Torch's
    shareGradInput). Returns the optimized NetDef (assign it to `net._net`).

    Candidates are blobs ending in `_grad` under `namescope` (or `_<namescope>`,
    the auto-split gradients) that are not in `param_grads`; with
    share_activations, also activations feeding FCs-like ops (an output `b` of an
    op that reads `b_w`), except the last two.
    """
    if namescope != "" and not namescope.endswith("/"):
        namescope += "/"

    def is_grad_blob(b):
        name = str(b)
        return (name.endswith("_grad")
                and (name.startswith(namescope) or name.startswith("_" + namescope))
                and name not in param_grads)

    def is_grad_op(op):
        return any(is_grad_blob(b) for b in list(op.input) + list(op.output))

    log.warning("NOTE: Executing memonger to optimize gradient memory")
    proto = net.Proto()
    netproto = copy.deepcopy(proto)
    external_output = set(proto.external_output)
    activations = []
    for op in proto.op:
        for b in op.output:
            if b + "_w" in op.input and b not in external_output:
                activations.append(b)
    # The last activations are usually read from outside the net: keep them.
    activations = set(activations[:-2])

    grad_op_indices = [i for i, op in enumerate(netproto.op) if is_grad_op(op)]
    shared_blobs = set()
    for op in proto.op:
        for b in list(op.input) + list(op.output):
            if is_grad_blob(b) or (share_activations and b in activations):
                shared_blobs.add(b)
    start_time = time.time()
    optim = compute_blob_recycling_for_dag(
        netproto, [str(s) for s in losses], grad_op_indices, shared_blobs, namescope,
        set() if dont_share_blobs is None else {str(b) for b in dont_share_blobs},
        {} if blob_shapes is None else blob_shapes)
    log.info("Memonger memory optimization took {} secs".format(time.time() - start_time))
    _check_optimized(proto, optim)
    return optim


def optimize_inference_for_dag(net, input_blobs, namescope=""):
    """Share buffers between the activations of an inference-only net, walking its
    DAG from `input_blobs`. Returns the optimized NetDef."""
    proto = net.Proto()
    netproto = copy.deepcopy(proto)
    external_input = set(proto.external_input)
    external_output = set(proto.external_output)

    def is_activation_blob(b):
        return b not in external_input and b not in external_output

    activation_blobs = set()
    seen_as_output = set()
    for op in proto.op:
        for b in op.input:
            if is_activation_blob(b):
                activation_blobs.add(b)
                if b not in seen_as_output:
                    raise AssertionError("{} not in external input".format(b))
        for b in op.output:
            if is_activation_blob(b):
                activation_blobs.add(b)
        seen_as_output = seen_as_output.union(set(op.output))
        assert not op.is_gradient_op, \
            "You can only pass inference-only nets to optimize_inference_for_dag"
    start_time = time.time()
    optim = compute_blob_recycling_for_dag(
        netproto, [str(s) for s in input_blobs], list(range(len(proto.op))),
        activation_blobs, namescope, set(), {})
    log.info("Memonger memory optimization took {} secs".format(time.time() - start_time))
    _check_optimized(proto, optim)
    return optim


def optimize_inference_fast(net, static_blobs):
    """Linear-order buffer reuse for an inference NetDef; `static_blobs` keep
    their own buffers. Returns a new NetDef."""
    optim = caffe2_pb2.NetDef()
    optim.CopyFrom(optimize_inference_net(net, [str(s) for s in static_blobs]))
    return optim


def _check_optimized(original, optim):
    assert verify_graph_equality(original, optim), \
        "Memonger graph is not equal to original."
    assert verify_inplace_blobs(original, optim), \
        "Inplace assignments differ in memonger net."


_SIZEOFS = {
    caffe2_pb2.TensorProto.DOUBLE: 8, caffe2_pb2.TensorProto.FLOAT: 4,
    caffe2_pb2.TensorProto.FLOAT16: 2, caffe2_pb2.TensorProto.INT32: 4,
    caffe2_pb2.TensorProto.INT8: 1, caffe2_pb2.TensorProto.UINT8: 1,
    caffe2_pb2.TensorProto.UINT16: 2, caffe2_pb2.TensorProto.INT16: 2,
    caffe2_pb2.TensorProto.BOOL: 1, caffe2_pb2.TensorProto.INT64: 8,
}


def estimate_memory_usage(protos, shapes, types, devicescope):
    """(total, high-water, bytes allocated by op type) for the ops of `protos` on
    `devicescope`, running them in order on one thread; `Free`/`Alias` release.

    An estimate: blob sizes are the final `shapes` ({name: dims}) and `types`
    ({name: TensorProto.DataType}); operators' internal buffers are not counted.
    The protos are filtered in place, as Caffe2 did.
    """
    import numpy as np

    def split_net(proto):
        ops = [op for op in proto.op
               if op.device_option == devicescope or op.type in {"Free", "Alias"}]
        del proto.op[:]
        proto.op.extend(ops)
        return proto

    def num_bytes(blob):
        if blob not in shapes or blob not in types:
            log.warning("Unknown blob encountered: {}".format(blob))
            return 0
        return _SIZEOFS[types[blob]] * np.prod(shapes[blob])

    protos = [split_net(proto) for proto in protos]
    allocs_by_ops = collections.defaultdict(lambda: 0)
    current_allocated = max_allocated = total_allocated = 0
    allocated = set()
    for proto in protos:
        for op in proto.op:
            if op.type == "Free" or op.type == "Alias":
                for o in op.output:
                    if o in allocated:
                        current_allocated -= num_bytes(o)
                        allocated.remove(o)
            else:
                for output in op.output:
                    if output not in allocated:
                        nbytes = num_bytes(output)
                        total_allocated += nbytes
                        current_allocated += nbytes
                        max_allocated = max(max_allocated, current_allocated)
                        allocated.add(output)
                        allocs_by_ops[op.type] += nbytes
    return (total_allocated, max_allocated, allocs_by_ops)


def release_blobs_when_used(netproto, dont_free_blobs, selector_fun=None):
    """A copy of `netproto` with a `Free` op after the last use of each blob the net
    produced and reads again, except external outputs, `dont_free_blobs`, blobs
    read by `Alias` ops, and names `selector_fun` rejects.

    Meant for caching allocators: `model.net._net = release_blobs_when_used(...)`.
    """
    input_blobs, can_release, alias_blobs = set(), set(), set()
    netproto = copy.deepcopy(netproto)
    for op in netproto.op:
        if op.type == "Alias":
            alias_blobs.add(op.input[0])
            continue
        for inp in op.input:
            input_blobs.add(inp)
        for outp in op.output:
            if outp not in input_blobs:
                if selector_fun is None or selector_fun(outp):
                    can_release.add(outp)
    can_release = can_release - set(netproto.external_output)
    can_release = can_release.intersection(input_blobs)
    can_release = can_release - dont_free_blobs
    can_release = can_release - alias_blobs

    ops = list(netproto.op)
    for j in reversed(range(0, len(netproto.op))):
        op = netproto.op[j]
        for inp in op.input:
            if inp in can_release:
                can_release.remove(inp)
                ops.insert(j + 1, core.CreateOperator("Free", [inp], [inp]))
    del netproto.op[:]
    netproto.op.extend(ops)
    return netproto


def verify_inplace_blobs(net_a, net_b):
    """True when both nets' ops have the same types and in-place (input, output)
    pairs: memonger must not create an in-place use the original lacked."""
    def get_inplaces(op):
        out = list(op.output)
        return [[j, out.index(inp)] for j, inp in enumerate(op.input) if inp in out]

    for op_a, op_b in zip(net_a.op, net_b.op):
        if op_a.type != op_b.type:
            return False
        if get_inplaces(op_a) != get_inplaces(op_b):
            return False
    return True


def verify_graph_equality(net_a, net_b):
    """True when both nets run the same ops (type, device, engine) wired the same
    way: every op reads from the same producer ops in both. Prints the first
    differences when they are not."""
    def parent_list(ops):
        parents = [[] for _ in ops]
        edge_owner = {}
        for i, op in enumerate(ops):
            for blob in op.input:
                parent_id = edge_owner.get(blob)
                if parent_id is not None:
                    parents[i].append(parent_id)
            for blob in op.output:
                edge_owner[blob] = i
        return parents

    if len(net_a.op) != len(net_b.op):
        return False
    for op_a, op_b in zip(net_a.op, net_b.op):
        if (op_a.type != op_b.type or op_a.device_option != op_b.device_option
                or op_a.engine != op_b.engine):
            return False
    parents_a, parents_b = parent_list(net_a.op), parent_list(net_b.op)
    if parents_a != parents_b:
        for j, (a, b) in enumerate(zip(parents_a, parents_b)):
            if a != b:
                print("Difference {} vs {} \n {}".format(j, net_a.op[j], net_b.op[j]))
                print("Parents: {} vs {}".format(a, b))
    return parents_a == parents_b


def blob_nbytes(blob):
    """Bytes the blob holds in the current workspace (0, with a warning, if none)."""
    from graphnet import workspace
    sz = 0
    try:
        sz = workspace.FetchBlob(blob).nbytes
    except Exception:
        log.warning("Error when fetching blob {}".format(blob))
    return sz


def compute_statistics(assignments):
    """Statistics(baseline_nbytes, optimized_nbytes) of buffer `assignments`
    (lists of (blob, LiveRange)), sized from the current workspace."""
    blob_bytes = {blob: blob_nbytes(blob) for assignment in assignments
                  for (blob, _) in assignment}
    baseline_nbytes = sum(blob_bytes.values())
    optimized_nbytes = sum(max(blob_bytes[blob] for (blob, _) in assignment)
                           for assignment in assignments)
    return Statistics(baseline_nbytes=baseline_nbytes, optimized_nbytes=optimized_nbytes)


def collect_blob_sizes(net):
    """{blob: bytes in the current workspace} for every blob `net` (a NetDef) uses."""
    blobs = {}
    for op in net.op:
        for blob in list(op.input) + list(op.output):
            blobs[blob] = blob_nbytes(blob)
    return blobs
