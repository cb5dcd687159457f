"""The IR: caffe2.proto-compatible messages, text format and binary round-trips."""

import copy
import os

import numpy as np
from google.protobuf import text_format

from graphnet import core
from graphnet.proto import caffe2_pb2

GOLDENS = os.path.join(os.path.dirname(__file__), "goldens", "data")

# Field numbers that must match caffe2.proto exactly (spec §1).
FIELD_NUMBERS = {
    "TensorProto": {"dims": 1, "data_type": 2, "float_data": 3, "int32_data": 4,
                    "byte_data": 5, "string_data": 6, "name": 7, "device_detail": 8,
                    "double_data": 9, "int64_data": 10, "segment": 11, "raw_data": 13,
                    "data_format": 15},
    "Argument": {"name": 1, "f": 2, "i": 3, "s": 4, "floats": 5, "ints": 6,
                 "strings": 7, "n": 8, "nets": 9, "t": 10, "tensors": 11, "qtensors": 12},
    "DeviceOption": {"device_type": 1, "device_id": 2, "random_seed": 3, "node_name": 4,
                     "numa_node_id": 5, "extra_info": 6},
    "OperatorDef": {"input": 1, "output": 2, "name": 3, "type": 4, "arg": 5,
                    "device_option": 6, "engine": 7, "control_input": 8,
                    "is_gradient_op": 9, "debug_info": 10, "domain": 11, "op_version": 12},
    "NetDef": {"name": 1, "op": 2, "type": 3, "num_workers": 4, "device_option": 5,
               "arg": 6, "external_input": 7, "external_output": 8, "partition_info": 9},
    "QTensorProto": {"dims": 1, "precision": 2, "scale": 3, "bias": 4, "is_signed": 5,
                     "data": 6, "name": 7, "data_type": 8, "scales": 9, "biases": 10,
                     "axis": 11, "is_multiparam": 12},
    "BlobProto": {"name": 1, "type": 2, "tensor": 3, "content": 4, "qtensor": 5,
                  "content_num_chunks": 6, "content_chunk_id": 7},
    "PartitionInfo": {"name": 1, "device_id": 2, "extra_info": 3, "backend_options": 4},
}


def test_field_numbers_match_caffe2_proto():
    for message, fields in FIELD_NUMBERS.items():
        descriptor = getattr(caffe2_pb2, message).DESCRIPTOR
        for name, number in fields.items():
            assert descriptor.fields_by_name[name].number == number, (message, name)


def test_enums_and_legacy_aliases():
    dt = caffe2_pb2.TensorProto
    assert (dt.FLOAT, dt.INT32, dt.INT64, dt.FLOAT16, dt.DOUBLE, dt.REBATCHING_BUFFER) == \
        (1, 2, 10, 12, 13, 15)
    assert (caffe2_pb2.CPU, caffe2_pb2.CUDA, caffe2_pb2.HIP) == (0, 1, 6)
    assert core.DataType.INT64 == 10 and core.DataType.FLOAT == 1


def test_printed_text_layout_and_presence():
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        net = core.Net("printed")
        net.Copy("x", "y")
    net.Proto().type = "dag"
    text = str(net.Proto())
    assert text == ('name: "printed"\nop {\n  input: "x"\n  output: "y"\n  name: ""\n'
                    '  type: "Copy"\n  device_option {\n    device_type: 0\n'
                    '    device_id: 0\n  }\n}\ntype: "dag"\nexternal_input: "x"\n')
    op = core.CreateOperator("Copy", "a", "b", engine="CUDNN")
    op.is_gradient_op = True
    lines = str(op).splitlines()
    assert lines[-2:] == ['engine: "CUDNN"', "is_gradient_op: true"]


def test_binary_and_text_roundtrip_and_message_behaviour():
    net = core.Net("round")
    net.Scale(net.Copy("x", "y"), "z", scale=0.25)
    proto = net.Proto()
    arg = proto.arg.add()
    arg.name = "input_shape_info"
    tensor = arg.tensors.add()
    tensor.dims.extend([16, 13])
    tensor.name = "x"
    data = proto.SerializeToString()
    assert caffe2_pb2.NetDef.FromString(data) == proto
    assert text_format.Parse(str(proto), caffe2_pb2.NetDef()) == proto
    clone = copy.deepcopy(proto)
    assert clone == proto and clone is not proto
    clone.op[0].output[0] = "changed"
    assert proto.op[0].output[0] == "y"


def test_parses_netdefs_serialized_by_real_caffe2():
    with open(os.path.join(GOLDENS, "model_helper_and_brew.net.pb"), "rb") as f:
        proto = caffe2_pb2.NetDef.FromString(f.read())
    assert proto.name == "mh" and proto.op[0].type == "FC"
    with open(os.path.join(GOLDENS, "model_helper_and_brew.net.pbtxt")) as f:
        assert text_format.Parse(f.read(), caffe2_pb2.NetDef()) == proto
    net = core.Net(proto)
    assert net.Name() == "mh_1" or net.Name().startswith("mh")


def test_float_args_are_single_precision():
    op = core.CreateOperator("Scale", "a", "b", scale=0.01)
    assert op.arg[0].f == np.float32(0.01)
    assert op.arg[0].f != 0.01
