"""Cross-device copy injection (core.InjectCrossDeviceCopies and friends).

Replays a net op by op, asks each op where its inputs must live and where its
outputs land (Caffe2's InferOpBlobDevices, from the op schema's `devices`
rule), and inserts Copy / CopyGPUToCPU / CopyCPUToGPU ops named
`<blob>_cpu` / `<blob>_gpu_<id>` wherever a blob is on the wrong device.
Imports core (re-exported from there), registry, devices and the proto module.
"""

from collections import defaultdict

from graphnet import registry
from graphnet.core import DeviceScope, IsGPUDeviceType, Net, device_equal
from graphnet.devices import CPU, CUDA_TYPE, Device
from graphnet.errors import EnforceError
from graphnet.proto import caffe2_pb2

__all__ = ["InferOpBlobDevices", "InferOpBlobDevicesAsDict", "InferOpDeviceAsBlobDevices",
           "InjectCrossDeviceCopies", "InjectDeviceCopiesAmongNets",
           "InjectDeviceCopiesAmongNetsWithoutB2D", "RemapEntry",
           "copy_func_between_devices", "update_placeholder_op_output"]


# --- device inference (Caffe2's C++ InferOpInputOutputDevice) -------------------------

# Stand-in op device used to read a schema's `devices` rule: slots the rule puts on
# this device follow the op's DeviceOption, slots it pins to the CPU get an empty
# DeviceOption (the CPU), any other device is spelled out.
_PROBE = Device(CUDA_TYPE, -1)


def _op_option(op):
    option = caffe2_pb2.DeviceOption()
    if op.HasField("device_option"):
        option.CopyFrom(op.device_option)
    return option


def _from_devices_rule(schema, op):
    wanted, outs = schema.devices(schema, _PROBE, len(op.input), len(op.output),
                                  [None] * len(op.input))

    def option(device):
        if device is None or device == _PROBE:
            return _op_option(op)
        result = caffe2_pb2.DeviceOption()
        if device != CPU:
            result.device_type, result.device_id = device.type, device.id
        return result
    return [option(d) for d in wanted], [option(d) for d in outs]


def _caffe2_default(op):
    """Every input and output on the op's device: Caffe2's rule for ops whose
    schema declared none, even where the kernel keeps a slot on the CPU."""
    return [_op_option(op) for _ in op.input], [_op_option(op) for _ in op.output]


def _gpu_per_input(op):
    """NCCL collectives: input i (and output i) on GPU i, whatever the op says."""
    def per_input():
        options = []
        for i in range(len(op.input)):
            option = caffe2_pb2.DeviceOption()
            option.device_type, option.device_id = CUDA_TYPE, i
            options.append(option)
        return options
    return per_input(), per_input()


def _requires_device_option(op):
    if not op.HasField("device_option"):
        raise EnforceError("%s op should have cuda device option." % op.type)
    return None


# Where Caffe2's schemas declared a placement different from where the kernels
# put the data (the ops' `devices` rules describe the latter, which the executor
# needs), the op schema names Caffe2's rule in `declared_devices`.
_DECLARED_RULES = {
    "op_device": _caffe2_default,
    "gpu_per_input": _gpu_per_input,
    "requires_device_option": _requires_device_option,
}


def InferOpBlobDevices(op):
    """([DeviceOption per input], [DeviceOption per output]) where the op reads and
    writes its blobs, as Caffe2's schema device inference answered."""
    schema = registry.lookup(op.type)
    if schema is None:
        return _caffe2_default(op)
    if schema.declared_devices is not None:
        result = _DECLARED_RULES[schema.declared_devices](op)
        if result is not None:
            return result
    return _from_devices_rule(schema, op)


def InferOpBlobDevicesAsDict(op):
    input_dev_list, output_dev_list = InferOpBlobDevices(op)
    return ({op.input[i]: input_dev_list[i] for i in range(len(op.input))},
            {op.output[i]: output_dev_list[i] for i in range(len(op.output))})


def InferOpDeviceAsBlobDevices(op):
    """Every blob on the op's own device (what placeholder ops are assumed to do)."""
    op_dev = op.device_option if op.device_option else caffe2_pb2.DeviceOption()
    return [op_dev] * len(op.input), [op_dev] * len(op.output)


# --- copy injection ------------------------------------------------------------------

class RemapEntry(object):
    """Key of the blob_remap cache: (blob name, DeviceOption it was copied to)."""

    def __init__(self, blob, device):
        self.blob = blob
        self.device = device

    def __eq__(self, other):
        return self.blob == other.blob and self.device == other.device

    def __hash__(self):
        return hash(self.blob + str(self.device))


def copy_func_between_devices(src, dst):
    """f(net, blob, copy_name) adding the op that moves a blob from `src` to `dst`
    (None when both are the CPU or the same GPU)."""
    is_src_gpu = IsGPUDeviceType(src.device_type)
    is_dst_gpu = IsGPUDeviceType(dst.device_type)
    if src.device_type == caffe2_pb2.CPU and dst.device_type == caffe2_pb2.CPU:
        return None
    if is_src_gpu and is_dst_gpu:
        if src.device_id == dst.device_id:
            return None
        return _scoped_copy("Copy", dst)
    if is_src_gpu and dst.device_type == caffe2_pb2.CPU:
        return _scoped_copy("CopyGPUToCPU", src)
    if src.device_type == caffe2_pb2.CPU and is_dst_gpu:
        return _scoped_copy("CopyCPUToGPU", dst)
    raise ValueError("Non-supported devices: %s and %s" % (src, dst))


def _scoped_copy(op_type, scope):
    def fun(net, *args, **kw):
        with DeviceScope(scope):
            return getattr(net, op_type)(*args, **kw)
    return fun


def update_placeholder_op_output(op, blob_to_device):
    """Placeholder ops (e.g. Recv) run on the CPU: an output already known on
    another device is renamed `<blob>_cpu` (in `op` itself, as Caffe2 did)."""
    outputs = []
    for output in op.output:
        if (output in blob_to_device
                and blob_to_device[output].device_type != caffe2_pb2.CPU):
            output += "_cpu"
        outputs.append(output)
    del op.output[:]
    op.output.extend(outputs)


def _copy_name(blob, device_option):
    if device_option.device_type == caffe2_pb2.CPU:
        return blob + "_cpu"
    if IsGPUDeviceType(device_option.device_type):
        return blob + "_gpu_" + str(device_option.device_id)
    raise RuntimeError("Unknown device type: {}".format(device_option.device_type))


def InjectCrossDeviceCopies(net, blob_to_device=None, blob_remap=None,
                            placeHolderOps=None):
    """A copy of `net` named `<name>_cross_device` with copies inserted wherever an
    op reads a blob living on another device. Returns (new_net, blob_to_device).

    blob_to_device: {blob: DeviceOption} known so far (updated and returned);
        external inputs not in it are taken to be on the net's device option.
    blob_remap: {RemapEntry(blob, device): name of its copy there}; earlier copies
        are reused, new ones recorded.
    placeHolderOps: op types assumed to keep every blob on the op's device.
    In-place outputs stay in place (on the renamed input); an output already on
    another device and not in-place raises RuntimeError.
    """
    new_net = net.Clone(net._net.name + "_cross_device", keep_schema=True)
    del new_net._net.op[:]
    if blob_to_device is None:
        blob_to_device = {}
    if blob_remap is None:
        blob_remap = {}
    temp_remap = {}
    net_option = net._net.device_option or caffe2_pb2.DeviceOption()

    # Copies made for earlier nets are inputs of this one too.
    all_remaps = defaultdict(list)
    for entry, mapped_blob in blob_remap.items():
        all_remaps[entry.blob].append(mapped_blob)
    mapped_external_inputs = []
    for name in new_net._net.external_input:
        mapped_external_inputs.extend(all_remaps.get(name) or [])
    new_net._net.external_input.extend(mapped_external_inputs)

    for op in net._net.op:
        temp_remap.clear()
        if placeHolderOps is not None and op.type in placeHolderOps:
            input_dev, output_dev = InferOpDeviceAsBlobDevices(op)
        else:
            input_dev, output_dev = InferOpBlobDevices(op)

        for dev, name in zip(input_dev, op.input):
            assert net.BlobIsDefined(name), \
                "input {} should be defined in the net.".format(name)
            if name not in blob_to_device:
                if net.is_external_input(name):
                    blob_to_device[name] = net_option
                else:
                    raise AttributeError(
                        "No device information found for blob {}.".format(name))
            if not device_equal(blob_to_device[name], dev):
                entry = RemapEntry(name, dev)
                if entry in blob_remap and blob_to_device[blob_remap[entry]] == dev:
                    temp_remap[name] = blob_remap[entry]
                else:
                    copy_func = copy_func_between_devices(blob_to_device[name], dev)
                    new_name = _copy_name(name, dev)
                    copy_func(new_net, name, new_name)
                    blob_remap[entry] = new_name
                    temp_remap[name] = new_name
                    blob_to_device[new_name] = dev

        if placeHolderOps is not None and op.type in placeHolderOps:
            update_placeholder_op_output(op, blob_to_device)

        # An output may only change device in place (same blob read and written).
        for dev, output in zip(output_dev, op.output):
            if output in blob_to_device and (
                    output not in op.input
                    and not device_equal(blob_to_device[output], dev)):
                raise RuntimeError(
                    "In-place blob: {} is not supported between operators "
                    "with different device option previous:{} now: {}. "
                    "Failed op:\n {}".format(output, blob_to_device[output], dev, op))
        new_op = caffe2_pb2.OperatorDef()
        new_op.CopyFrom(op)
        new_list = [temp_remap.get(b, b) for b in new_op.input]
        del new_op.input[:]
        new_op.input.extend(new_list)

        # keep in-place blobs in place
        original_inputs = list(op.input)
        for i, out in enumerate(new_op.output):
            if out in original_inputs:
                new_op.output[i] = new_op.input[original_inputs.index(out)]

        blob_to_device.update({o: d for d, o in zip(output_dev, new_op.output)})
        new_net.extend_ops([new_op])

    return new_net, blob_to_device


def InjectDeviceCopiesAmongNets(nets, blob_to_device_init=None):
    """InjectCrossDeviceCopies over `nets` in execution order (e.g. [init, train]),
    threading blob devices and copies from one net to the next.
    Returns (new_nets, blob_to_device)."""
    assert isinstance(nets, list), \
        "nets {} should be a list of nets.".format(str(nets))
    assert all(isinstance(net, Net) for net in nets), \
        "nets {} should be a list of nets.".format(str(nets))
    blob_to_device = blob_to_device_init or {}
    blob_remap = {}
    new_nets = []
    for net in nets:
        new_net, blob_to_device = InjectCrossDeviceCopies(
            net, blob_to_device=blob_to_device, blob_remap=blob_remap)
        new_nets.append(new_net)
    return new_nets, blob_to_device


def InjectDeviceCopiesAmongNetsWithoutB2D(nets, blob_to_device_init=None):
    new_nets, _ = InjectDeviceCopiesAmongNets(nets, blob_to_device_init)
    return new_nets
