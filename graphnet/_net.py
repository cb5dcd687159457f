"""core.Net: a NetDef under construction, with Caffe2's naming rules.

Ops are created by attribute (`net.FC(...)`); unknown attributes raise with
"Did you mean". Imported by graphnet.core, whose helpers it uses.
"""

import copy
import sys
import threading

import numpy as np

from graphnet import registry
from graphnet.proto import caffe2_pb2
from graphnet.utils import gc_paused

__all__ = ["Net", "operator_tracebacks"]

# net name -> {op index: [(file, line, function), ...]} recorded at op creation,
# printed when that op fails (workspace reports it, as Caffe2 did).
operator_tracebacks = {}
_names_lock = threading.Lock()


def _extract_stacktrace(limit=16):
    """Cheap stack capture: (filename, lineno, name) of the caller's frames, as a
    tuple: the collector stops tracking a tuple of strings and ints, where a list
    per op would be walked by every full collection of a large net's build."""
    frame = sys._getframe(2)
    stack = []
    while frame is not None and len(stack) < limit:
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return tuple(stack)


# CreateOperator's own parameters among the keywords of net.<Op>(...); the rest are
# operator arguments.
_CREATE_OPERATOR_PARAMS = ("name", "control_input", "device_option", "arg", "engine",
                           "debug_info")
_CORE = []


def _core():
    """graphnet.core (which imports this module), once."""
    if not _CORE:
        from graphnet import core
        _CORE.append(core)
    return _CORE[0]


class Net(object):
    """A NetDef being built: ops by attribute, Caffe2's blob and net naming."""

    _net_names_used = set()
    operator_registry_ = {}

    @staticmethod
    def current_prefix():
        return ""

    @staticmethod
    def _get_next_net_name(basename):
        with _names_lock:
            name = basename
            next_idx = 1
            while name in Net._net_names_used:
                name = basename + "_" + str(next_idx)
                next_idx += 1
            Net._net_names_used.add(name)
            return name

    def __init__(self, name_or_proto, inplace_dual_outputs=False):
        self._input_record = None
        self._output_record = None
        self._registered_blob_names = set()
        self._recreate_lookup_tables = False
        self._op_outputs = set()
        self._external_input_map = set()
        self._attr_dict = {}
        if type(name_or_proto) is caffe2_pb2.NetDef:
            self._net = caffe2_pb2.NetDef()
            self._net.CopyFrom(name_or_proto)
            existing_outputs = [list(op.output) for op in self._net.op]
            self._external_input_map.update(self._net.external_input)
            existing_names = set()
            for op in self._net.op:
                existing_names.update(op.input)
            for outs in existing_outputs:
                existing_names.update(outs)
                self._op_outputs.update(outs)
            prefix = self._net.name + "_blob_"
            autogen = []
            for s in existing_names:
                if s.startswith(prefix):
                    try:
                        # Caffe2 parses only the first character after the prefix.
                        autogen.append(int(s[len(prefix)]))
                    except (ValueError, IndexError):
                        pass
            self._next_name_index = max(autogen) + 1 if autogen else 0
            name = self._net.name
        else:
            name = name_or_proto
            self._net = caffe2_pb2.NetDef()
            self._next_name_index = 0
        self._net.name = Net._get_next_net_name(name)
        self._next_blob_name_ids = {}

    # --- identity --------------------------------------------------------------
    def Name(self):
        return self._net.name

    def __str__(self):
        return self.Name()

    def Proto(self):
        self._InvalidateLookupTables()
        return self._net

    def Const(self, array, blob_out=None, dtype=None):
        """Emit a GivenTensor*Fill (or ConstantFill for a bool) holding `array`."""
        if isinstance(array, bool):
            return self.ConstantFill([], blob_out or 1, dtype=caffe2_pb2.TensorProto.BOOL,
                                     value=array)
        if dtype is None:
            array = np.array(array)
        else:
            array = np.array(array, dtype=dtype)

        def do_set(operator):
            return operator([], blob_out or 1, shape=array.shape,
                            values=array.flatten().tolist())
        if array.dtype == np.int32:
            return do_set(self.GivenTensorIntFill)
        if array.dtype == np.int64:
            return do_set(self.GivenTensorInt64Fill)
        if array.dtype == np.str_ or array.dtype.kind in "SUO":
            return do_set(self.GivenTensorStringFill)
        if array.dtype == np.bool_:
            return do_set(self.GivenTensorBoolFill)
        return do_set(self.GivenTensorFill)

    # --- lookup tables ------------------------------------------------------------
    def _InvalidateLookupTables(self):
        self._recreate_lookup_tables = True

    def _RecreateLookupTables(self):
        self._op_outputs = set()
        for op in self._net.op:
            self._op_outputs.update(op.output)
        self._external_input_map = set(self._net.external_input)
        self._recreate_lookup_tables = False

    def BlobIsDefined(self, blob):
        """True if an op of this net produces `blob` or it is an external input."""
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        name = str(blob)
        return name in self._op_outputs or name in self._external_input_map

    def UsesBlob(self, blob):
        blob = str(blob)
        return any(blob in op.input or blob in op.output for op in self._net.op)

    def UsedBlobNames(self):
        names = set()
        for op in self._net.op:
            names.update(op.input)
            names.update(op.output)
        if self._net.external_input:
            names.update(self._net.external_input)
        if self._net.external_output:
            names.update(self._net.external_output)
        return names

    def GetBlobRef(self, blob_name):
        from graphnet.core import BlobReference
        blob_name = str(blob_name)
        if not self.BlobIsDefined(blob_name):
            raise KeyError("Net does not define blob %s" % blob_name)
        return BlobReference(blob_name, self)

    # --- naming ---------------------------------------------------------------------
    def NextScopedBlob(self, prefix="unnamed"):
        from graphnet.core import ScopedName
        return self.NextBlob(ScopedName(prefix))

    def NextBlob(self, prefix="unnamed"):
        """`prefix` if free, else prefix_auto_0, prefix_auto_1, ... (reserved)."""
        from graphnet.core import BlobReference
        output_blob_base = prefix
        output_blob = output_blob_base
        index = 0
        while str(output_blob) in self._registered_blob_names or self.BlobIsDefined(
                output_blob):
            output_blob = output_blob_base + "_auto_" + str(index)
            index += 1
        self._registered_blob_names.add(str(output_blob))
        return BlobReference(str(output_blob), self)

    def NextName(self, prefix=None, output_id=None):
        """Auto-name: '<net>/<prefix>[:id]' made unique with _2, _3, ... (deprecated)."""
        from graphnet.core import ScopedBlobReference
        if prefix:
            output_name_base = self._net.name + "/" + prefix
            output_name = output_name_base
            if output_id is not None:
                output_name += ":" + str(output_id)
            key = output_name
            index = self._next_blob_name_ids.get(key, 2)
            while self.BlobIsDefined(str(ScopedBlobReference(output_name))):
                output_name = output_name_base + "_" + str(index)
                if output_id is not None:
                    output_name += ":" + str(output_id)
                index += 1
                self._next_blob_name_ids[key] = index
        else:
            output_name = self._net.name + "_blob_" + str(self._next_name_index)
            self._next_name_index += 1
        return str(output_name)

    # --- external inputs / outputs -------------------------------------------------
    def AddExternalInput(self, *inputs):
        from graphnet.core import BlobReference
        assert len(inputs) > 0
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        names = set()
        for blob in inputs:
            name = str(blob)
            assert name not in self._external_input_map and name not in names, \
                "Net already contains an input named %s" % name
            names.add(name)
        refs = []
        for blob in inputs:
            name = str(blob)
            self._net.external_input.extend([name])
            self._external_input_map.add(name)
            refs.append(blob if isinstance(blob, BlobReference) else BlobReference(name))
        return refs[0] if len(refs) == 1 else refs

    def AddExternalOutput(self, *outputs):
        from graphnet.core import BlobReference
        for output in outputs:
            assert isinstance(output, BlobReference)
            assert self.BlobIsDefined(output), "{} is not defined".format(output)
        for output in outputs:
            self.Proto().external_output.extend([str(output)])

    def AddScopedExternalInputs(self, *inputs):
        from graphnet.core import ScopedBlobReference
        res = self.AddExternalInput(*[ScopedBlobReference(b) for b in inputs])
        return res if isinstance(res, list) else [res]

    def AddScopedExternalOutputs(self, *outputs):
        from graphnet.core import ScopedBlobReference
        return self.AddExternalOutput(*[ScopedBlobReference(b) for b in outputs])

    AddExternalInputs = AddExternalInput
    AddExternalOutputs = AddExternalOutput

    @property
    def external_inputs(self):
        from graphnet.core import BlobReference
        return [BlobReference(name, self) for name in self._net.external_input]

    @property
    def external_outputs(self):
        from graphnet.core import BlobReference
        return [BlobReference(name, self) for name in self._net.external_output]

    def AddArgument(self, arg_name, arg_value):
        from graphnet.utils import MakeArgument
        self._net.arg.extend([MakeArgument(arg_name, arg_value)])

    def is_external_input(self, blob):
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        return str(blob) in self._external_input_map

    # --- whole-net edits ---------------------------------------------------------------
    def extend_ops(self, new_ops):
        return self._ExtendOps(new_ops)

    def _ExtendOps(self, new_ops):
        self._net.op.extend(new_ops)
        for op in new_ops:
            self._op_outputs.update(op.output)

    def AppendNet(self, net, device_option=None):
        assert isinstance(net, Net)
        for i in net.Proto().external_input:
            if i not in self.Proto().external_input and i not in self._op_outputs:
                self.Proto().external_input.append(i)
        self.Proto().external_output.extend(
            [o for o in net.Proto().external_output
             if o not in self.Proto().external_output])
        ops = net.Proto().op
        if device_option is not None:
            ops = [copy.deepcopy(o) for o in ops]
            for op in ops:
                op.device_option.CopyFrom(device_option)
        self._ExtendOps(ops)
        return self

    def Clone(self, name, blob_remap=None, op_id_mask=None, remap_funcs=None,
              keep_schema=True, update_external_list=False):
        """A renamed copy with blobs remapped and optionally a subset of ops."""
        remap_funcs = remap_funcs or {}
        proto = self._net
        new_proto = caffe2_pb2.NetDef()
        new_proto.CopyFrom(proto)
        new_proto.name = name
        blob_remap = blob_remap or {}
        if op_id_mask is None:
            op_id_mask = list(range(len(proto.op)))

        def remapped(blob):
            blob = str(blob)
            return str(blob_remap.get(blob, blob))

        def remap_list(proto_list):
            new_list = [remapped(b) for b in proto_list]
            del proto_list[:]
            proto_list.extend(new_list)

        def remap_op(op):
            new_op = caffe2_pb2.OperatorDef()
            new_op.CopyFrom(op)
            remap_list(new_op.input)
            remap_list(new_op.output)
            if new_op.type in remap_funcs:
                remap_funcs[new_op.type](new_op, (name + "/") if name else "", blob_remap)
            return new_op

        del new_proto.op[:]
        new_proto.op.extend([remap_op(proto.op[i]) for i in op_id_mask])
        remap_list(new_proto.external_input)
        remap_list(new_proto.external_output)
        new_net = Net(new_proto)
        if update_external_list:
            existing_outputs, used_outputs = [], set()
            del new_net.Proto().external_input[:]
            del new_net.Proto().external_output[:]
            for op in new_net.Proto().op:
                for ib in op.input:
                    if ib not in existing_outputs:
                        new_net.Proto().external_input.extend([ib])
                    else:
                        used_outputs.add(ib)
                for ob in op.output:
                    if ob not in existing_outputs:
                        existing_outputs.append(ob)
            for ob in existing_outputs:
                if ob not in used_outputs:
                    new_net.Proto().external_output.extend([ob])
        return new_net

    def ClonePartial(self, name, inputs, outputs, remap_funcs=None):
        """Keep only the ops needed to compute `outputs` from `inputs`; internal
        blobs are prefixed with `name/`. Returns (new_net, [output refs])."""
        from graphnet.core import BlobReference
        input_names = {str(i): str(i) for i in inputs} if not isinstance(inputs, dict) \
            else {str(k): str(v) for k, v in inputs.items()}
        output_names = [str(o) for o in outputs]
        proto = self._net
        needed, keep = set(output_names), []
        for i in reversed(range(len(proto.op))):
            op = proto.op[i]
            if any(o in needed for o in op.output):
                keep.append(i)
                needed.update(b for b in op.input if b not in input_names)
        keep.reverse()
        produced = set()
        for i in keep:
            produced.update(proto.op[i].output)
        remap = dict(input_names)
        for blob in produced:
            if blob not in remap:
                remap[blob] = name + "/" + blob
        new_net = self.Clone(name, remap, keep, remap_funcs)
        del new_net.Proto().external_input[:]
        new_net.Proto().external_input.extend(sorted(set(input_names.values())))
        del new_net.Proto().external_output[:]
        new_net.Proto().external_output.extend(remap.get(o, o) for o in output_names)
        new_net._InvalidateLookupTables()
        return new_net, [BlobReference(remap.get(o, o), new_net) for o in output_names]

    def RunAllOnGPU(self, gpu_id=0, use_cudnn=False):
        """Set the net-level device option to GPU `gpu_id` (and engine CUDNN)."""
        from graphnet.workspace import GpuDeviceType
        self._net.device_option.CopyFrom(caffe2_pb2.DeviceOption())
        self._net.device_option.device_type = GpuDeviceType
        self._net.device_option.device_id = gpu_id
        if use_cudnn:
            for op in self._net.op:
                op.engine = "CUDNN"

    def RunAllOnMKL(self):
        self._net.device_option.CopyFrom(caffe2_pb2.DeviceOption())
        self._net.device_option.device_type = caffe2_pb2.MKLDNN

    def RunAllOnIDEEP(self):
        self._net.device_option.CopyFrom(caffe2_pb2.DeviceOption())
        self._net.device_option.device_type = caffe2_pb2.IDEEP

    def set_rand_seed(self, seed=100, sequence_seed=True, seed_on_op_def=False):
        """Write device_option.random_seed on every op (seed + i by default)."""
        for i, op in enumerate(self.Proto().op):
            if sequence_seed:
                curr_seed = seed + i
            else:
                curr_seed = seed
            if seed_on_op_def:
                op.arg.extend([_make_arg("random_seed", curr_seed)])
            else:
                op.device_option.random_seed = curr_seed

    def AddGradientOperators(self, ys, skip=0):
        """Append the backward pass of `ys` (list, or dict of given gradients) and
        return the map {input blob: gradient blob or GradientSlice}."""
        from graphnet.gradients import GradientRegistry
        with gc_paused():  # tens of objects per op, no cycles (see gc_paused)
            grad_ops, input_to_grad = GradientRegistry.GetBackwardPass(
                self._net.op[skip:], ys)
            self._ExtendOps(grad_ops)
        return input_to_grad

    def DeduplicateGradientSlices(self, g, aggregator="sum"):
        """Unique(indices) then UnsortedSegmentSum/Mean of the values: a GradientSlice
        without duplicate indices."""
        from graphnet.gradients import GradientSlice
        assert isinstance(g, GradientSlice)
        unique, remapping = self.Unique([g.indices], 2, engine="SparseHash")
        if aggregator.lower() == "sum":
            new_g = self.UnsortedSegmentSum([g.values, remapping], 1)
        elif aggregator.lower() == "mean":
            new_g = self.UnsortedSegmentMean([g.values, remapping], 1)
        else:
            raise ValueError("{} is not supported".format(aggregator))
        return GradientSlice(indices=unique, values=new_g)

    # --- op creation ----------------------------------------------------------------
    def _CreateAndAddToSelf(self, op_type, inputs, outputs=None, **kwargs):
        core = _core()
        BlobReference, _RectifyInputOutput = core.BlobReference, core._RectifyInputOutput
        inputs = _RectifyInputOutput(inputs)
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        defined, external = self._op_outputs, self._external_input_map
        for blob in inputs:
            name = blob._name  # BlobIsDefined, inline
            if name not in defined and name not in external:
                assert blob.Net() != self, \
                    "blob %s claims to come from net %s, which does not define it" % (
                        blob, self.Name())
                self.AddExternalInput(blob)
        if outputs is None:
            outputs = self.NextName(prefix=op_type)
        elif type(outputs) is int:
            outputs = [self.NextName(prefix=op_type, output_id=i) for i in range(outputs)]
        outputs = _RectifyInputOutput(outputs, net=self)
        explicit = {k: kwargs.pop(k) for k in _CREATE_OPERATOR_PARAMS if k in kwargs} \
            if kwargs else {}
        op = self._net.op.add()  # filled in place: extend() would copy the message
        try:
            core.fill_operator(op, op_type, inputs, outputs, kwargs=kwargs, **explicit)
        except BaseException:
            del self._net.op[-1]  # a rejected op leaves the net as it was
            raise
        names = [blob._name for blob in outputs]  # what fill_operator wrote
        self._op_outputs.update(names)
        operator_tracebacks.setdefault(self.Name(), {})[len(self._net.op) - 1] = \
            _extract_stacktrace()
        if not names:
            return None
        if len(names) == 1:
            return BlobReference(names[0], self)
        return tuple(BlobReference(o, self) for o in names)

    def __getattr__(self, op_type):
        if op_type.startswith("__"):
            raise AttributeError(op_type)
        registry.require_method(op_type)
        return lambda *args, **kwargs: self._CreateAndAddToSelf(op_type, *args, **kwargs)

    def __dir__(self):
        return sorted(set(dir(type(self)) + list(self.__dict__)
                          + registry.registered_types()))


def _make_arg(name, value):
    from graphnet.utils import MakeArgument
    return MakeArgument(name, value)
