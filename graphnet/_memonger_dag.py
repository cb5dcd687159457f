"""Blob recycling over an op DAG: Caffe2's C++ `memonger` passes, in Python.

`compute_blob_recycling_for_dag` is what `memonger.share_grad_blobs` and
`memonger.optimize_inference_for_dag` called (caffe2/core/memonger.cc,
ComputeBlobRecyclingForDag); `optimize_inference_net` is behind
`memonger.optimize_inference_fast`. Both return a new NetDef and leave the
input untouched. The container orders Caffe2's results depended on (the
unordered_map that numbered shared blobs, the heap of free blobs) come from
graphnet._libstdcxx, so the renamed nets match Caffe2's name for name.

Imports the proto module, the registry (schema checks) and _libstdcxx only.
"""

from google.protobuf import text_format

from graphnet import registry
from graphnet._libstdcxx import HashOrder, pop_heap, push_heap
from graphnet.errors import EnforceError
from graphnet.proto import caffe2_pb2

__all__ = ["compute_blob_recycling_for_dag", "optimize_inference_net"]


_NO_TOKENS = frozenset()


def _int32(value):
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _blob_size(name, blob_shapes):
    """Element count as a C++ int (0 for a blob without a shape)."""
    shape = blob_shapes.get(name)
    if shape is None:
        return 0
    size = 1
    for dim in shape:
        size = _int32(size * int(dim))
    return size


class _DagRecycler(object):
    """State of one ComputeBlobRecyclingForDag run (one instance per call)."""

    def __init__(self, net, shareable, dont_share, blob_shapes):
        size = len(net.op)
        self.net = net
        self.shareable = shareable
        self.dont_share = dont_share
        self.blob_shapes = blob_shapes
        self.op_inputs = [0] * size
        self.op_visited_count = [0] * size
        self.op_token_deposit = [set() for _ in range(size)]
        self.op_visited = [False] * size
        self.tokens_counter = 1
        self.blob_to_ops = {}
        self.blob_input_count = {}
        self.share_counts = {}
        self.blob_sizes = {}
        self.req_tokens = {}
        self.optim_op_outputs = set()
        self.mapping = {}
        self.mapping_order = HashOrder()   # the iteration order of Caffe2's mapping_
        self.blob_device = {}
        self.processed_output_blobs = set()

    def mapped(self, name):
        return self.mapping.get(name, name)

    def _require(self, blob, tokens):
        self.req_tokens.setdefault(blob, set()).update(tokens)

    def _device_of(self, blob):
        option = self.blob_device.get(blob)
        return (0, 0) if option is None else (option.device_type, option.device_id)

    # --- setup ------------------------------------------------------------------
    def index(self, heads, op_indices):
        heads_set = set(heads)
        for index in op_indices:
            for name in self.net.op[index].output:
                if name in self.shareable and name not in self.dont_share:
                    self.optim_op_outputs.add(name)
        blob_seen = {}
        for index in op_indices:
            op = self.net.op[index]
            for name in op.input:
                if name in self.shareable or name in heads_set:
                    if name in self.optim_op_outputs:
                        if name not in blob_seen:
                            raise EnforceError("Input %s was not output by an op before"
                                               % name)
                        self.op_inputs[index] += blob_seen[name]
                    else:
                        self.share_counts[name] = 1
                    self.blob_to_ops.setdefault(name, []).append(index)
            for name in op.output:
                blob_seen[name] = blob_seen.get(name, 0) + 1
                device = caffe2_pb2.DeviceOption()
                device.CopyFrom(op.device_option)
                if op.type == "CopyGPUToCPU":
                    # its outputs live on the CPU although the op runs on a GPU
                    device.device_type = 0
                    device.device_id = 0
                self.blob_device[name] = device

    # --- the DFS ------------------------------------------------------------------
    def run(self, heads):
        for head in heads:
            for index in list(self.blob_to_ops.get(head, ())):
                # Start from root ops only: heads are not in execution order.
                if not self.op_visited[index] and not self.op_inputs[index]:
                    tokens = {self.tokens_counter}
                    self.tokens_counter += 1
                    self._drive(self._process_op(index, [], tokens))

    @staticmethod
    def _drive(root):
        """Run the recursive process_op without Python recursion: a frame yields
        (generator of the child call) and resumes once the child finished."""
        stack = [root]
        while stack:
            try:
                child = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            stack.append(child)

    def _process_op(self, index, free_blobs, tokens):
        tokens.update(self.op_token_deposit[index])
        self.op_token_deposit[index] = set()
        if self.op_visited[index]:
            raise EnforceError("memonger: op %d visited twice" % index)
        self.op_visited[index] = True
        op = self.net.op[index]

        for name in list(op.input) + list(op.output):
            actual = self.mapped(name)
            self._require(actual, tokens)
            if actual != name:
                self._require(name, tokens)

        new_free, new_free_set = [], set()
        for name in op.input:
            if name in self.shareable:
                count = self.blob_input_count.get(name, 0) + 1
                self.blob_input_count[name] = count
                if count == len(self.blob_to_ops.get(name, ())):
                    actual = self.mapped(name)
                    if actual not in self.dont_share:
                        new_free.append((-self.share_counts.get(actual, 0), actual))
                        new_free_set.add(actual)

        for name in op.output:
            if (name in self.shareable and name not in self.processed_output_blobs
                    and name not in new_free_set):
                freed = self._free_blob(name, tokens, free_blobs, self._device_of(name))
                if freed:
                    self._require(freed, tokens)
                    self.share_counts[freed] = self.share_counts.get(freed, 0) + 1
                    self.mapping[name] = freed
                    self.mapping_order.add(name)
                self.processed_output_blobs.add(name)

        already_free = {blob for _, blob in free_blobs}
        for entry in new_free:
            if entry[1] not in already_free:
                free_blobs.append(entry)
                if self.blob_shapes and entry[1] not in self.blob_sizes:
                    self.blob_sizes[entry[1]] = _blob_size(entry[1], self.blob_shapes)
                push_heap(free_blobs)

        num_branches = sum(len(self.blob_to_ops.get(o, ())) for o in op.output)
        for name in op.output:
            for consumer in list(self.blob_to_ops.get(name, ())):
                self.op_visited_count[consumer] += 1
                if self.op_visited_count[consumer] == self.op_inputs[consumer]:
                    new_tokens = set(tokens)
                    if num_branches > 1:
                        new_tokens.add(self.tokens_counter)
                        self.tokens_counter += 1
                    yield self._process_op(consumer, free_blobs, new_tokens)
                elif not self.op_visited[consumer]:
                    self.op_token_deposit[consumer].update(tokens)

    def _can_use(self, blob, tokens, device):
        if self._device_of(blob) != device:
            return False
        return self.req_tokens.get(blob, _NO_TOKENS) <= tokens

    def _free_blob(self, name, tokens, free_blobs, device):
        """The free blob `name` will live in ('' if none fits)."""
        if not self.blob_shapes:
            # Best-shared first (the heap orders by -share count, then name).
            skipped, found = [], ""
            while free_blobs:
                pop_heap(free_blobs)
                candidate = free_blobs.pop()
                if self._can_use(candidate[1], tokens, device):
                    found = candidate[1]
                    break
                skipped.append(candidate)
            for candidate in skipped:
                free_blobs.append(candidate)
                push_heap(free_blobs)
            return found
        # With shapes: the largest free blob not much bigger than needed.
        size = _blob_size(name, self.blob_shapes)
        best_size, best = -1, -1
        for i, (_, candidate) in enumerate(free_blobs):
            if self._can_use(candidate, tokens, device):
                candidate_size = self.blob_sizes.setdefault(candidate, 0)
                if candidate_size >= best_size and (best_size < size
                                                    or best_size >= candidate_size):
                    best_size, best = candidate_size, i
        if best == -1:
            return ""
        found = free_blobs[best][1]
        del free_blobs[best]
        return found

    # --- naming and rewriting -----------------------------------------------------
    def assign_names(self, namescope):
        """Shared buffers produced by the optimized ops become
        `<namescope>__m<k>_shared`, numbered in Caffe2's map order."""
        renamed, name_idx = {}, 0
        for key in self.mapping_order:
            root = self.mapping[key]
            if root in self.optim_op_outputs:
                if root not in renamed:
                    renamed[root] = "%s__m%d_shared" % (namescope, name_idx)
                    name_idx += 1
            else:
                renamed.setdefault(root, root)
        for root, new in renamed.items():
            self.mapping.setdefault(root, new)
        for key in list(self.mapping):
            target = renamed.get(self.mapping[key])
            if target is not None and target != self.mapping[key]:
                self.mapping[key] = target

    def apply(self, net):
        optimized = caffe2_pb2.NetDef()
        optimized.CopyFrom(net)
        for op in optimized.op:
            self._rename_op(op)
        return optimized

    def _rename_op(self, op):
        if op.type.startswith("RecurrentNetwork"):
            self._rename_step_nets(op)
        if op.type == "AsyncIf":
            self._rename_branch_nets(op)
        op.input[:] = [self.mapped(b) for b in op.input]
        op.output[:] = [self.mapped(b) for b in op.output]

    def _rename_branch_nets(self, op):
        for arg in op.arg:
            if arg.name in ("then_net", "else_net"):
                arg.n.SetInParent()
                for inner in arg.n.op:
                    self._rename_op(inner)
                arg.n.external_input[:] = [self.mapped(b) for b in arg.n.external_input]
                arg.n.external_output[:] = [self.mapped(b) for b in arg.n.external_output]

    def _rename_step_nets(self, op):
        for arg in op.arg:
            if arg.name not in ("step_net", "backward_step_net"):
                continue
            if arg.HasField("n"):
                if arg.HasField("s"):
                    raise EnforceError("Invalid definition for %s. Only one of NetDef "
                                       "and string should be present" % arg.name)
                for inner in arg.n.op:
                    self._rename_op(inner)
            else:
                step = text_format.Parse(arg.s.decode("utf-8"), caffe2_pb2.NetDef())
                for inner in step.op:
                    self._rename_op(inner)
                arg.s = text_format.MessageToString(step).encode("utf-8")
        for blob in list(op.input) + list(op.output):
            new = self.mapped(blob)
            if new != blob:
                extra = op.arg.add()
                extra.name = blob + ".rename"
                extra.s = new.encode("utf-8")


def _check_schemas(net):
    """Memonger rewrites the graph: reject invalid ops first (Caffe2's
    run_schema_check; ops graphnet does not know pass, as unknown ones did)."""
    for op in net.op:
        schema = registry.lookup(op.type)
        if schema is not None:
            schema.check(op)


def compute_blob_recycling_for_dag(net, heads, op_indices, shareable_blob_names,
                                   namescope, dont_share_blob_names=(), blob_shapes=None):
    """A copy of `net` whose shareable blobs with disjoint live ranges along the DAG
    (walked from the `heads` blobs over the ops `op_indices`) share buffers.

    Caffe2's memonger_compute_blob_recycling_for_dag; blob_shapes ({name: dims})
    switches from "most shared buffer first" to best fit by size.
    """
    _check_schemas(net)
    recycler = _DagRecycler(net, set(shareable_blob_names), set(dont_share_blob_names),
                            dict(blob_shapes or {}))
    heads = [str(h) for h in heads]
    recycler.index(heads, list(op_indices))
    recycler.run(heads)
    recycler.assign_names(namescope)
    return recycler.apply(net)


def optimize_inference_net(net, static_blobs):
    """Linear-order recycling for inference nets (Caffe2's optimize_inference_net):
    a blob's buffer is reused by the next new output once its last reader ran."""
    if net.type not in ("", "simple"):
        return net
    _check_schemas(net)
    if any(op.type == "RecurrentNetwork" for op in net.op):
        return net
    static_blobs = set(static_blobs)
    all_blobs, ranges = set(), {}
    for i, op in enumerate(net.op):
        for name in op.input:
            if name in ranges:
                ranges[name][1] = i
            all_blobs.add(name)
        for name in op.output:
            all_blobs.add(name)
            if name not in static_blobs and name not in ranges:
                ranges[name] = [i, i]
    free_blobs, renaming, mapping = [], {}, {}
    for i, op in enumerate(net.op):
        new_free = HashOrder()   # an unordered_set: its order decides reuse order
        for name in op.input:
            span = ranges.get(name)
            if span is not None and span[1] == i:
                if name not in mapping:
                    new_free.add(name)
                    mapping[name] = name
                    shared = "__m%d_shared" % len(renaming)
                    if shared in all_blobs:
                        return net   # already memongered
                    renaming[name] = shared
                else:
                    new_free.add(mapping[name])
        for name in op.output:
            if free_blobs:
                span = ranges.get(name)
                if span is not None and span[0] == i:
                    mapping[name] = free_blobs.pop()
        free_blobs.extend(new_free)
    optimized = caffe2_pb2.NetDef()
    optimized.CopyFrom(net)
    for op in optimized.op:
        op.input[:] = [renaming[mapping[b]] if b in mapping else b for b in op.input]
        op.output[:] = [renaming[mapping[b]] if b in mapping else b for b in op.output]
    return optimized
