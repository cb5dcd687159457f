"""core.GradientRegistry and core.IR: the backward pass, as caffe2.python.core built it.

The IR replays the forward ops in SSA form (a version per blob write), walks
them backwards asking each op's gradient maker for gradient ops, checks
every gradient op input against the versions the forward op saw (Caffe2's
in-place errors), and accumulates gradients of blobs read more than once
with Sum (dense) or Concat (sparse). Imports gradient_maker, registry,
proto; core is imported lazily (it imports this module's names).
"""

from collections import defaultdict, namedtuple

from graphnet.gradient_maker import GradientSlice, make_gradient
from graphnet.proto import caffe2_pb2

__all__ = ["GradientRegistry", "IR", "GradientSlice", "get_ssa",
           "get_output_producers", "GetIndexFromGradientList"]

OpSSA = namedtuple("OpSSA", ["op", "in_versions", "out_versions"])
GradGenMeta = namedtuple("GradGenMeta", ["grad_op", "idx", "gradient", "device_option"])
SparseGradGenMeta = namedtuple("SparseGradGenMeta", [
    "grad_op_indices", "idx_indices", "grad_op_values", "idx_values", "gradient",
    "device_option"])
# GradGenMeta(*fields) without namedtuple's Python-level __new__ (one per gradient
# op output of a 100k-op backward pass)
_new_tuple = tuple.__new__


def GetIndexFromGradientList(g_list, name):
    """Index of the gradient in g_list that is (or contains) `name`, else None."""
    for i, g in enumerate(g_list):
        if g == name:
            return i
        if type(g) is GradientSlice and (g.indices == name or g.values == name):
            return i
    return None


def _gradient_index(g_list):
    """name -> what GetIndexFromGradientList(g_list, name) returns (its first match),
    built once per op: Concat/Sum gradients of wide nets have hundreds of entries."""
    index = {}
    for i, g in enumerate(g_list):
        if type(g) is str:
            index.setdefault(g, i)
        elif type(g) is GradientSlice:
            index.setdefault(str(g.indices), i)
            index.setdefault(str(g.values), i)
        elif g is not None:
            index.setdefault(str(g), i)
    return index


class GradientRegistry(object):
    """Gradient lookup: the op schema's maker, else a Python-registered function."""

    gradient_registry_ = {}

    @classmethod
    def RegisterGradient(cls, op_type):
        """Decorator: func(op, g_output) -> (ops or op or None, g_input list)."""
        def wrapper(func):
            cls.gradient_registry_[op_type] = func
            return func
        return wrapper

    @classmethod
    def GetGradientForOp(cls, op, g_output, _io=None):
        """(gradient ops, g_input) for one forward OperatorDef (`_io`: the IR's lists
        of its input and output names)."""
        g_output = [g if g is None or type(g) is str else _untyped(g) for g in g_output]
        try:
            gradient_ops, g_input = make_gradient(op, g_output, _io)
        except Exception as exc:
            if op.type in cls.gradient_registry_:
                gradient_ops, g_input = cls.gradient_registry_[op.type](op, g_output)
            else:
                raise Exception("Exception when creating gradient for [{}]:{}.\nOp: \n{}"
                                .format(op.type, exc, str(op))) from exc
        if gradient_ops is None:
            return [], g_input
        if type(gradient_ops) is not list:
            gradient_ops = [gradient_ops]
        return gradient_ops, g_input

    @classmethod
    def GetBackwardPass(cls, operators, ys, ys_generate_gradient=False):
        return IR(operators).GetBackwardPass(ys)


def _untyped(g):
    if g is None:
        return None
    if isinstance(g, GradientSlice):
        return GradientSlice(str(g.indices), str(g.values))
    return str(g)


def _device_option_equal(a, b):
    from graphnet.core import device_option_equal
    return device_option_equal(a, b)


class IR(object):
    """SSA bookkeeping of a forward pass, and the backward pass built from it."""

    IS_AUTO_GEN_SUM_OPS_TAG = "is_auto_gen_sum_ops"
    ONLY_KEEP_IS_AUTO_GEN_SUM_OPS_TAG = "only_keep_is_auto_gen_sum_ops_tag"
    AUTOGEN_GRAD_SUFFIX = "_autogen_grad"

    def __init__(self, operators):
        self.ssa = []
        # (name, version) -> indices of the ops reading that version; the last entry of
        # an input's list is the latest reader (ys count as a reader past the end)
        self.input_usages = {}
        self.frontier = defaultdict(int)
        self.gradient_frontier = {}
        # (name, version) -> [GradGenMeta or SparseGradGenMeta]
        self.gradient_generators = defaultdict(list)
        self._io = []  # per ssa entry: (input names, output names) as lists
        for op in operators:
            self.Play(op)
        self.SanityCheck(operators)

    def SanityCheck(self, operators):
        read = None
        for op in operators:
            if op.type != "StopGradient":
                continue
            if read is None:
                read = {name for name, _ in self.input_usages}
            if op.output[0] not in read:
                raise ValueError(
                    "StopGradient's output '{}' is orphan.\nYou typically want to "
                    "specify same input and output for\nStopGradient. Op:\n\n{}".format(
                        op.output[0], str(op)))

    def Play(self, op):
        """Record op's input versions and bump its outputs' versions."""
        inputs, outputs = op.input[:], op.output[:]  # lists, faster than list()
        frontier, usages, index = self.frontier, self.input_usages, len(self.ssa)
        in_versions = {}
        for s in inputs:
            version = in_versions[s] = frontier[s]
            key = (s, version)
            users = usages.get(key)
            if users is None:
                usages[key] = [index]
            else:
                users.append(index)
        out_versions = {}
        for s in outputs:
            if s in frontier:
                frontier[s] += 1
            out_versions[s] = frontier[s]
        self.ssa.append(OpSSA(op, in_versions, out_versions))
        self._io.append((inputs, outputs))

    def _version_history(self, name, outputs):
        """[(op, version)] of each read (outputs=False) or write of `name`, in order:
        Play's bookkeeping replayed (only error messages need it)."""
        frontier, history = defaultdict(int), []
        for op, _, _ in self.ssa:
            for s in op.input:
                version = frontier[s]
                if not outputs and s == name:
                    history.append((op, version))
            for s in op.output:
                if s in frontier:
                    frontier[s] += 1
                if outputs and s == name:
                    history.append((op, frontier[s]))
                else:
                    frontier[s]
        return history

    # --- checks -----------------------------------------------------------------------
    def _history(self, name, outputs, what, hint):
        lines = ["DEBUG HELP:", hint, "== Version history of blob [{}]".format(name)]
        for op, version in self._version_history(name, outputs):
            lines.append("Version ({}) {} <-- {}".format(what, version, op))
        return "\n".join(lines) + "\n"

    def CheckGradientOperatorInput(self, grad_op_input, g_output, fwd_op_idx,
                                   locally_generated_blobs, output_index=None):
        forward_op, in_versions, out_versions = self.ssa[fwd_op_idx]
        if output_index is None:
            original_index = GetIndexFromGradientList(g_output, grad_op_input)
        else:
            original_index = output_index.get(str(grad_op_input))
        if original_index is not None:
            original_name = forward_op.output[original_index]
            if out_versions[original_name] != self.gradient_frontier[original_name]:
                raise RuntimeError(
                    'Gradient name "%s" is expected to correspond to version %d of "%s",'
                    ' but currently we have version %d.\n\n' % (
                        grad_op_input, out_versions[original_name], original_name,
                        self.gradient_frontier[original_name])
                    + self._history(original_name, True, "out",
                                    "Maybe you use same output blob twice for different "
                                    "ops?"))
        elif grad_op_input in out_versions:
            if self.frontier[grad_op_input] != out_versions[grad_op_input]:
                raise RuntimeError(
                    'Gradient operator needs output "%s" at version %d, but currently we '
                    'have version %d.\n\n' % (grad_op_input, out_versions[grad_op_input],
                                             self.frontier[grad_op_input])
                    + self._history(grad_op_input, True, "out",
                                    "Maybe you use same output blob twice for different "
                                    "ops?"))
        elif grad_op_input in in_versions:
            if self.frontier[grad_op_input] != in_versions[grad_op_input]:
                raise RuntimeError(
                    'Gradient operator needs input "%s" at version %d, but currently we '
                    'have version %d.\n\n' % (grad_op_input, in_versions[grad_op_input],
                                             self.frontier[grad_op_input])
                    + self._history(grad_op_input, False, "in",
                                    "Maybe the blob was overwritten by another op?"))
        elif grad_op_input not in locally_generated_blobs:
            raise RuntimeError(
                'Blob name "%s" not in the scope of operator: %s\nand is not generated '
                'by any of the local gradient operators.' % (grad_op_input,
                                                              str(forward_op)))

    # --- generators ----------------------------------------------------------------------
    def AppendSparseGenerators(self, sparse_generators):
        """Merge the indices and values halves of each sparse gradient
        (sparse_generators: {(name, version): [SparseGradGenMeta]})."""
        for key, generators in sparse_generators.items():
            if len(generators) == 1:
                generator = generators[0]
            else:
                assert len(generators) == 2
                op1_i, idx1_i, op1_v, idx1_v, g1, dev1 = generators[0]
                op2_i, idx2_i, op2_v, idx2_v, g2, dev2 = generators[1]
                assert g1 == g2
                assert dev1 == dev2, \
                    "Unequal devices for sparse generators: {} and {}".format(dev1, dev2)
                generator = SparseGradGenMeta(op1_i or op2_i, idx1_i + idx2_i,
                                              op1_v or op2_v, idx1_v + idx2_v, g1, dev1)
            self.gradient_generators[key].append(generator)

    def BuildGradientGenerators(self, fwd_op_idx, gradient_ops, g_output, g_input):
        """Check the gradient ops' inputs; record who generates each input gradient."""
        forward_op, in_versions, out_versions = self.ssa[fwd_op_idx]
        fwd_inputs, fwd_outputs = self._io[fwd_op_idx]
        frontier, gradient_frontier = self.frontier, self.gradient_frontier
        generators = self.gradient_generators
        locally_generated_blobs = set()
        sparse_generators = None
        output_index, input_index_of = _gradient_index(g_output), _gradient_index(g_input)
        for grad_op in gradient_ops:
            for s in grad_op.input:
                # CheckGradientOperatorInput's tests, inline; it reports a failure
                original_index = output_index.get(s)
                if original_index is not None:
                    original_name = fwd_outputs[original_index]
                    ok = out_versions[original_name] == gradient_frontier[original_name]
                elif s in out_versions:
                    ok = frontier[s] == out_versions[s]
                elif s in in_versions:
                    ok = frontier[s] == in_versions[s]
                else:
                    ok = s in locally_generated_blobs
                if not ok:
                    self.CheckGradientOperatorInput(s, g_output, fwd_op_idx,
                                                    locally_generated_blobs, output_index)
            grad_outputs = grad_op.output[:]
            locally_generated_blobs.update(grad_outputs)
            device_option = None
            for i, output in enumerate(grad_outputs):
                input_index = input_index_of.get(output)
                if input_index is None:
                    continue
                input_name = fwd_inputs[input_index]
                key = (input_name, in_versions[input_name])
                g = g_input[input_index]
                if device_option is None:
                    device_option = grad_op.device_option
                if type(g) is GradientSlice:
                    if g.indices == output:
                        m = SparseGradGenMeta(grad_op, i, None, 0, g, device_option)
                    else:
                        assert g.values == output
                        m = SparseGradGenMeta(None, 0, grad_op, i, g, device_option)
                    if sparse_generators is None:
                        sparse_generators = defaultdict(list)
                    sparse_generators[key].append(m)
                else:
                    generators[key].append(
                        _new_tuple(GradGenMeta, (grad_op, i, g, device_option)))
        if sparse_generators is not None:
            self.AppendSparseGenerators(sparse_generators)
        # Gradients passed straight through (Sum, Gather axis 0) have no producer op.
        for input_index, g in enumerate(g_input):
            if g is None:
                continue
            input_name = fwd_inputs[input_index]
            input_version = in_versions[input_name]
            if not g:
                pass
            elif type(g) is GradientSlice:
                if str(g.indices) not in locally_generated_blobs and \
                        str(g.values) not in locally_generated_blobs:
                    generators[input_name, input_version].append(
                        SparseGradGenMeta(None, 0, None, 0, g, forward_op.device_option))
            elif str(g) not in locally_generated_blobs:
                generators[input_name, input_version].append(
                    GradGenMeta(None, 0, g, forward_op.device_option))
            gradient_frontier[input_name] = input_version

    # --- accumulation ------------------------------------------------------------------------
    def _GetSumOpOutputName(self, generators, input_name):
        def remove_suffix(s, suffix):
            return s[:-len(suffix)] if s.endswith(suffix) else s
        for g in generators:
            if type(g) is GradGenMeta:
                if g.grad_op:
                    return g.grad_op.output[g.idx]
            else:
                op_i, idx_i, op_v, idx_v, _, _ = g
                if op_i:
                    return remove_suffix(op_i.output[idx_i], "_indices")
                if op_v:
                    return remove_suffix(op_v.output[idx_v], "_values")
        return input_name + "_grad"

    def _SetSumOpsDeviceOption(self, sum_ops, generators):
        tag = "{}:1".format(IR.IS_AUTO_GEN_SUM_OPS_TAG)
        only_keep = any(extra == "{}:1".format(IR.ONLY_KEEP_IS_AUTO_GEN_SUM_OPS_TAG)
                        for generator in generators
                        for extra in generator.device_option.extra_info)
        if only_keep:
            for op in sum_ops:
                op.device_option.extra_info.extend([tag])
            return
        for op in sum_ops:
            op.device_option.CopyFrom(generators[0].device_option)
            op.device_option.extra_info.extend([tag])

    @staticmethod
    def _DisambiguateGradOpOutput(grad_op, idx, cnt):
        grad_op.output[idx] = "_" + grad_op.output[idx] + "_autosplit_{}".format(cnt)
        return grad_op.output[idx], cnt + 1

    @staticmethod
    def _CheckSumOpsConflict(out_base_name, g):
        if str(out_base_name) == str(g):
            raise RuntimeError("The gradient output of empty gradient op can not be the "
                               "same as the normal name of the current input gradient.")

    def _MakeDenseSumOps(self, generators, out_base_name):
        from graphnet.core import BlobReference, CreateOperator
        sum_op_input, cnt, first = [], 0, True
        for grad_op, idx, g, _ in generators:
            assert type(g) is not GradientSlice
            if grad_op:
                if first:
                    first = False
                    out = grad_op.output[idx]
                else:
                    out, cnt = self._DisambiguateGradOpOutput(grad_op, idx, cnt)
                sum_op_input.append(out)
            else:
                self._CheckSumOpsConflict(out_base_name, g)
                sum_op_input.append(str(g))
        if out_base_name in sum_op_input:
            idx = sum_op_input.index(out_base_name)  # Sum is in-place on input 0 only
            sum_op_input[0], sum_op_input[idx] = sum_op_input[idx], sum_op_input[0]
        sum_ops = [CreateOperator("Sum", [BlobReference(x) for x in sum_op_input],
                                  BlobReference(out_base_name))]
        return sum_ops, out_base_name

    def _MakeSparseSumOps(self, generators, out_base_name):
        from graphnet.core import BlobReference, CreateOperator
        indices_in, values_in, cnt_i, cnt_v = [], [], 0, 0
        for op_i, idx_i, op_v, idx_v, g, _ in generators:
            if op_i:
                out, cnt_i = self._DisambiguateGradOpOutput(op_i, idx_i, cnt_i)
                indices_in.append(out)
            else:
                self._CheckSumOpsConflict(out_base_name, g.indices)
                indices_in.append(g.indices)
            if op_v:
                out, cnt_v = self._DisambiguateGradOpOutput(op_v, idx_v, cnt_v)
                values_in.append(out)
            else:
                self._CheckSumOpsConflict(out_base_name, g.values)
                values_in.append(g.values)
        names = [out_base_name + s for s in ("_indices_concat", "_indices_concat_split",
                                             "_values_concat", "_values_concat_split")]
        sum_ops = [
            CreateOperator("Concat", [BlobReference(x) for x in indices_in],
                           [BlobReference(x) for x in names[:2]], axis=0),
            CreateOperator("Concat", [BlobReference(x) for x in values_in],
                           [BlobReference(x) for x in names[2:]], axis=0),
        ]
        return sum_ops, GradientSlice(indices=names[0], values=names[2])

    def _MakeSumOps(self, input_name, input_version):
        generators = self.gradient_generators[input_name, input_version]
        out_base_name = self._GetSumOpOutputName(generators, input_name)
        if type(generators[0]) is GradGenMeta:
            sum_ops, g = self._MakeDenseSumOps(generators, out_base_name)
        else:
            sum_ops, g = self._MakeSparseSumOps(generators, out_base_name)
        self._SetSumOpsDeviceOption(sum_ops, generators)
        return sum_ops, g

    def _VerifyGradientGenerators(self, generators):
        if len({type(g) for g in generators}) > 1:
            raise RuntimeError("Automatic aggregation of a mix of sparse and dense "
                               "gradients is not supported yet")
        if len(generators) < 2:
            return False
        options = [g.device_option for g in generators if g.device_option]
        if len(options) >= 2 and not all(_device_option_equal(d, options[0])
                                         for d in options[1:]):
            raise RuntimeError("Unexpected behavior: not all grad ops have the same "
                               "device option.")
        return True

    def DoGradientAccumulation(self, fwd_op_idx):
        """Sum/Concat the gradients of inputs whose version several ops read,
        once the first reader (the last in backward order) has been processed."""
        in_versions = self.ssa[fwd_op_idx].in_versions
        usages = self.input_usages
        additional_sum_ops, grad_map = [], {}
        for input_name in dict.fromkeys(self._io[fwd_op_idx][0]):
            input_version = in_versions[input_name]
            usage = usages[input_name, input_version]
            if len(usage) <= 1 or fwd_op_idx != usage[0]:
                continue
            generators = self.gradient_generators[input_name, input_version]
            try:
                if not self._VerifyGradientGenerators(generators):
                    continue
            except RuntimeError as err:
                raise RuntimeError("Gradients for param ''{}'' failed to verify: {}"
                                   .format(input_name, err))
            sum_ops, g = self._MakeSumOps(input_name, input_version)
            additional_sum_ops.extend(sum_ops)
            grad_map[input_name] = g
        return additional_sum_ops, grad_map

    # --- the backward pass -----------------------------------------------------------------
    def _GetInitGradients(self, ys):
        from graphnet.core import CreateOperator
        input_to_grad, gradient_ops = {}, []
        for y, g in ys.items():
            autograd_op = None
            if g is None:
                # Created in the *current* device scope, as Caffe2 did (spec §4.5).
                autograd_op = CreateOperator("ConstantFill", [y],
                                             [str(y) + IR.AUTOGEN_GRAD_SUFFIX], value=1.0)
                gradient_ops.append(autograd_op)
                g = autograd_op.output[0]
            input_to_grad[str(y)] = (GradientSlice(str(g[0]), str(g[1]))
                                     if isinstance(g, GradientSlice) else str(g))
            if autograd_op is not None:
                self.gradient_generators[str(y), self.frontier[str(y)]].append(
                    GradGenMeta(autograd_op, 0, str(g), autograd_op.device_option))
        return input_to_grad, gradient_ops

    def _GenerateGradientsForForwardOp(self, forward_op_idx, input_to_grad):
        new_input_to_grad, gradient_ops = {}, []
        forward_op = self.ssa[forward_op_idx].op
        inputs, outputs = self._io[forward_op_idx]
        g_output = [input_to_grad.get(name, None) for name in outputs]
        if g_output.count(None) < len(g_output) or forward_op.type == "ZeroGradient":
            gradient_ops, g_input = GradientRegistry.GetGradientForOp(
                forward_op, g_output, (inputs, outputs))
            self.BuildGradientGenerators(forward_op_idx, gradient_ops, g_output, g_input)
            for name, grad in zip(inputs, g_input):
                # Never overwrite a known gradient with None, unless the input is
                # also an output of this op (its version changed).
                if grad is not None or name not in input_to_grad or name in outputs:
                    new_input_to_grad[name] = grad
        return new_input_to_grad, gradient_ops

    def GetBackwardPass(self, ys):
        """(gradient ops, {BlobReference(input): gradient}) for the blobs `ys`
        (a list: seeds of ones; a dict: given gradients, None meaning ones)."""
        from graphnet.core import BlobReference
        if isinstance(ys, list):
            ys = {y: None for y in ys}
        elif not isinstance(ys, dict):
            raise TypeError("ys should either be a list or a dict.")
        for y in ys:
            self.gradient_frontier[y] = self.frontier[y]
            self.input_usages.setdefault((str(y), self.frontier[str(y)]), []).append(
                len(self.ssa))
        all_input_to_grad, all_gradient_ops = self._GetInitGradients(ys)
        for forward_op_idx in reversed(range(len(self.ssa))):
            input_to_grad, gradient_ops = self._GenerateGradientsForForwardOp(
                forward_op_idx, all_input_to_grad)
            all_input_to_grad.update(input_to_grad)
            all_gradient_ops += gradient_ops
            additional_sum_ops, grad_map = self.DoGradientAccumulation(forward_op_idx)
            all_input_to_grad.update(grad_map)
            all_gradient_ops += additional_sum_ops
        result = {}
        for key, val in all_input_to_grad.items():
            if val is None:
                continue
            if isinstance(val, (bytes, str)):
                result[BlobReference(key)] = BlobReference(val)
            else:
                result[BlobReference(key)] = GradientSlice(BlobReference(val[0]),
                                                           BlobReference(val[1]))
        return all_gradient_ops, result


def get_ssa(net, blob_versions=None):
    """(ssa, blob_versions): per op the (name, version) of its inputs and outputs."""
    proto = net.Proto() if hasattr(net, "Proto") else net
    assert isinstance(proto, caffe2_pb2.NetDef)
    blob_versions = {} if blob_versions is None else blob_versions
    for i in proto.external_input:
        if i not in blob_versions:
            blob_versions[str(i)] = 0
    ssa = []
    for op in proto.op:
        if not proto.external_input:
            for i in op.input:
                if i not in blob_versions:
                    blob_versions[i] = 0
        inputs = [(str(i), blob_versions.get(str(i), 0)) for i in op.input]
        for o in op.output:
            blob_versions[str(o)] = blob_versions.get(str(o), 0) + 1
        outputs = [(str(o), blob_versions[str(o)]) for o in op.output]
        ssa.append((inputs, outputs))
    return ssa, blob_versions


def get_output_producers(ssa):
    """{(blob, version): index of the op that produced it}."""
    producers = {}
    for i, (_, outputs) in enumerate(ssa):
        for o in outputs:
            producers[o] = i
    return producers
