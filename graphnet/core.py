"""caffe2.python.core: blob references, device options, operator creation, Net.

The Net class lives in graphnet._net and the gradient machinery in
graphnet.gradients; both are re-exported here under their Caffe2 names.
"""

import os
import traceback

from graphnet import registry, scope
from graphnet.devices import is_gpu_type
from graphnet.proto import caffe2_pb2
from graphnet.scope import DeviceScope, NameScope  # noqa: F401  (caffe2 aliases)
from graphnet.utils import MakeArgument

__all__ = [
    "DataType", "BlobReference", "ScopedName", "ScopedBlobReference", "DeviceOption",
    "IsGPUDeviceType", "device_option_equal", "device_equal", "CreateOperator",
    "InferBlobDevices", "InferOpBlobDevices", "InferOpDeviceAsBlobDevices",
    "IsOperator", "IsOperatorWithEngine", "RefreshRegisteredOperators",
    "GlobalInit", "DeviceScope", "NameScope", "Net", "GradientSlice",
    "GradientRegistry", "IR", "get_ssa", "get_output_producers", "StringifyBlobName",
    "StringifyNetName", "GetNetName", "scoped_name",
    "get_name_scope", "InferOpBlobDevicesAsDict", "InjectCrossDeviceCopies",
    "InjectDeviceCopiesAmongNets", "InjectDeviceCopiesAmongNetsWithoutB2D", "RemapEntry",
    "copy_func_between_devices", "update_placeholder_op_output",
]


class DataType(object):
    """TensorProto.DataType values as plain integers (core.DataType.INT64 == 10)."""


for _name, _value in caffe2_pb2.TensorProto.DataType.items():
    setattr(DataType, _name, _value)
del _name, _value

_GLOBAL_INIT_ARGS = []


def GlobalInit(args):
    """Record Caffe2 command-line flags and parse them (workspace.GlobalInit:
    flags Caffe2 1.10 refused are ignored with a warning)."""
    _GLOBAL_INIT_ARGS.extend(args[1:])
    from graphnet import workspace
    return workspace.GlobalInit(args)


def IsOperator(op_type):
    return registry.is_registered(op_type)


def IsOperatorWithEngine(op_type, engine):
    """Engines are implementation preferences; every engine maps to the default kernel."""
    return registry.is_registered(op_type)


def RefreshRegisteredOperators(trigger_lazy=True):
    registry.registered_types()


def IsGPUDeviceType(device_type):
    return is_gpu_type(device_type)


def DeviceOption(device_type, device_id=0, random_seed=None, node_name=None,
                 numa_node_id=None, extra_info=None):
    """A DeviceOption with device_type and device_id always set (so always printed)."""
    option = caffe2_pb2.DeviceOption()
    option.device_type = device_type
    option.device_id = device_id
    if node_name is not None:
        option.node_name = node_name
    if random_seed is not None:
        option.random_seed = random_seed
    if numa_node_id is not None:
        assert device_type == caffe2_pb2.CPU
        option.numa_node_id = numa_node_id
    if extra_info is not None:
        option.extra_info.extend(extra_info)
    return option


def device_option_equal(opt1, opt2, ignore_node_name=True, ignore_random_seed=True):
    """Caffe2's notion of "same device": CPU options are equal whatever their id."""
    if not opt1 or not opt2:
        return opt1 == opt2
    if not ignore_node_name and opt1.node_name != opt2.node_name:
        return False
    if not ignore_random_seed and opt1.random_seed != opt2.random_seed:
        return False
    if not opt1.device_type or not opt2.device_type:
        return not opt1.device_type and not opt2.device_type
    return opt1.device_id == opt2.device_id


def device_equal(src, dst):
    """Compare device_type and device_id only (used by copy injection)."""
    return src.device_type == dst.device_type and src.device_id == dst.device_id


class BlobReference(object):
    """A blob name plus the Net it came from; `b.Relu()` adds ops to that net."""

    def __init__(self, name, net=None):
        if isinstance(name, str):
            self._name = name
        elif isinstance(name, bytes):
            self._name = name.decode("utf-8")
        else:
            self._name = str(name)
        self._from_net = net
        self.meta = {}

    def __hash__(self):
        return hash(self._name)

    def __eq__(self, other):
        if isinstance(other, str):
            return self._name == other
        if isinstance(other, bytes):
            return self._name == other.decode("utf-8")
        if isinstance(other, BlobReference):
            return self._name == other._name
        return False

    def __ne__(self, other):
        return not self.__eq__(other)

    def __str__(self):
        return self._name

    def __repr__(self):
        return 'BlobReference("{}")'.format(self._name)

    def __add__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add BlobReference to a non-string.")
        return BlobReference(self._name + other, self._from_net)

    def __radd__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add a non-string to BlobReference.")
        return BlobReference(other + self._name, self._from_net)

    def Net(self):
        return self._from_net

    def GetNameScope(self):
        return self._name[:self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1]

    def GetUnscopedName(self):
        return self._name[self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1:]

    def _CreateAndAddToNet(self, op_type, inputs=None, *args, **kwargs):
        inputs = [] if inputs is None else inputs
        if isinstance(inputs, (BlobReference, str)):
            inputs = [inputs]
        inputs.insert(0, self)
        return self._from_net.__getattr__(op_type)(inputs, *args, **kwargs)

    def __getattr__(self, op_type):
        if op_type.startswith("__") or op_type.startswith("_"):
            raise AttributeError(op_type)
        if self._from_net is None:
            raise AttributeError(
                "You cannot use a blob reference that does not have a net source to "
                "create operators. Create the operator from an explicit net object.")
        registry.require_method(op_type)
        return lambda *args, **kwargs: self._CreateAndAddToNet(op_type, *args, **kwargs)

    def __dir__(self):
        return sorted(set(dir(type(self)) + list(self.__dict__)
                          + registry.registered_types()))


def ScopedName(name):
    """Prefix `name` with the current name scope."""
    return scope.CurrentNameScope() + name


def ScopedBlobReference(name, *args, **kwargs):
    """A BlobReference whose name has the current name scope prepended."""
    return BlobReference(ScopedName(name), *args, **kwargs)


scoped_name = ScopedName


def get_name_scope():
    return scope.CurrentNameScope()


def _RectifyInputOutput(blobs, net=None):
    """Normalise op inputs/outputs: strings get the name scope, refs are kept."""
    if isinstance(blobs, (bytes, str)):
        if isinstance(blobs, bytes):
            blobs = blobs.decode("utf-8")
        return [ScopedBlobReference(blobs, net=net)]
    if type(blobs) is BlobReference:
        return [blobs]
    if type(blobs) in (list, tuple):
        rectified, prefix = [], None
        for blob in blobs:
            if type(blob) is BlobReference:
                rectified.append(blob)
            elif isinstance(blob, (bytes, str)):
                if isinstance(blob, bytes):
                    blob = blob.decode("utf-8")
                if prefix is None:
                    prefix = scope.CurrentNameScope()  # ScopedBlobReference, once
                rectified.append(BlobReference(prefix + blob, net))
            else:
                raise TypeError("I/O blob #{} of unsupported type: {} of type {}"
                                .format(len(rectified), str(blob), type(blob)))
        return rectified
    raise TypeError("Unknown input/output type: %s of type %s." % (str(blobs), type(blobs)))


def _blob_names(blobs):
    """[str(b) for b in _RectifyInputOutput(blobs)], without a second pass over a
    list that is rectified already (Net hands fill_operator BlobReferences)."""
    if type(blobs) is list:
        names = []
        for blob in blobs:
            if type(blob) is not BlobReference:
                return [str(b) for b in _RectifyInputOutput(blobs)]
            names.append(blob._name)
        return names
    return [str(b) for b in _RectifyInputOutput(blobs)]


def CreateOperator(operator_type, inputs, outputs, name="", control_input=None,
                   device_option=None, arg=None, engine=None, debug_info=None, **kwargs):
    """Build an OperatorDef (not added to any net), encoding kwargs as Arguments."""
    operator = caffe2_pb2.OperatorDef()
    fill_operator(operator, operator_type, inputs, outputs, name, control_input,
                  device_option, arg, engine, debug_info, kwargs, frames=2)
    return operator


def _caffe2_debug():
    """os.environ.get("CAFFE2_DEBUG"), read per op as Caffe2 did, at a dict lookup's
    cost (os.environ's Mapping.get costs microseconds per op of a 100k-op net)."""
    data = getattr(os.environ, "_data", None)
    if data is None or not hasattr(os.environ, "encodekey"):
        return os.environ.get("CAFFE2_DEBUG")
    return data.get(_DEBUG_KEY)


_DEBUG_KEY = os.environ.encodekey("CAFFE2_DEBUG") if hasattr(os.environ, "encodekey") \
    else "CAFFE2_DEBUG"


def fill_operator(operator, operator_type, inputs, outputs, name="", control_input=None,
                  device_option=None, arg=None, engine=None, debug_info=None, kwargs=None,
                  frames=1):
    """CreateOperator's work on a given OperatorDef (Net fills the one it appends,
    saving a copy of every op). With CAFFE2_DEBUG the creating stack, minus the
    `frames` innermost (this function, CreateOperator), becomes debug_info."""
    if _caffe2_debug():
        stack = traceback.format_stack()
        operator.debug_info = "".join(stack[:-frames])
    operator.type = operator_type
    operator.name = name
    operator.input.extend(_blob_names(inputs))
    operator.output.extend(_blob_names(outputs))
    if control_input:
        operator.control_input.extend(str(i) for i in _RectifyInputOutput(control_input))
    if device_option is not None:
        operator.device_option.CopyFrom(device_option)
    else:
        current = scope.CurrentDeviceScope()
        if current is not None:
            operator.device_option.CopyFrom(current)
    if engine is not None:
        operator.engine = engine
    if debug_info is not None:
        operator.debug_info = debug_info
    if kwargs and "random_seed" in kwargs:
        operator.device_option.random_seed = kwargs.pop("random_seed")
    if arg is not None:
        operator.arg.extend(arg)
    if kwargs:
        for key, value in kwargs.items():
            if value is not None:
                operator.arg.add().CopyFrom(MakeArgument(key, value))
    return operator


def InferBlobDevices(net):
    """Map each op output name to the DeviceOption of the op producing it."""
    mapping = {}
    for op in net.Proto().op:
        for output in op.output:
            mapping[output] = op.device_option
    return mapping


def StringifyBlobName(name):
    return name if isinstance(name, str) else str(name)


def GetNetName(net):
    """The name of a Net, NetDef or string."""
    if isinstance(net, str):
        return net
    if type(net).__name__ == "Net" or hasattr(net, "Name"):
        return net.Name()
    if isinstance(net, caffe2_pb2.NetDef):
        return net.name
    raise Exception("Not a Net object: {}".format(str(net)))


StringifyNetName = GetNetName


# The Net class lives in its own module (it needs the helpers above).
from graphnet._net import Net  # noqa: E402
from graphnet.gradients import (GradientRegistry, GradientSlice, IR,  # noqa: E402
                                get_output_producers, get_ssa)
from graphnet.cross_device import (InferOpBlobDevices,  # noqa: E402
                                   InferOpBlobDevicesAsDict, InferOpDeviceAsBlobDevices,
                                   InjectCrossDeviceCopies, InjectDeviceCopiesAmongNets,
                                   InjectDeviceCopiesAmongNetsWithoutB2D, RemapEntry,
                                   copy_func_between_devices,
                                   update_placeholder_op_output)
