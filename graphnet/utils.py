"""caffe2.python.utils: argument encoding and TensorProto <-> numpy conversion.

Imports numpy, protobuf and the proto module only.
"""

import collections.abc
import contextlib
import gc

import numpy as np
from google.protobuf.message import Message

from graphnet.proto import caffe2_pb2

__all__ = ["MakeArgument", "ArgsToDict", "NumpyArrayToCaffe2Tensor",
           "Caffe2TensorToNumpyArray", "TensorProtoDataType", "NumpyDtypeOf",
           "CaffeBlobToNumpyArray", "TryReadProtoWithClass", "GetContentFromProto",
           "GetContentFromProtoString", "ConvertProtoToBinary",
           "raiseIfNotEqual", "EnumClassKeyVals"]

_DT = caffe2_pb2.TensorProto

# DataType <-> numpy, as the Python feeder and fetcher map them.
_DTYPE_OF = {
    _DT.FLOAT: np.float32, _DT.INT32: np.int32, _DT.BYTE: np.uint8,
    _DT.STRING: np.object_, _DT.BOOL: np.bool_, _DT.UINT8: np.uint8,
    _DT.INT8: np.int8, _DT.UINT16: np.uint16, _DT.INT16: np.int16,
    _DT.INT64: np.int64, _DT.FLOAT16: np.float16, _DT.DOUBLE: np.float64,
}
_TYPE_OF = {
    np.dtype(np.float32): _DT.FLOAT, np.dtype(np.int32): _DT.INT32,
    np.dtype(np.object_): _DT.STRING, np.dtype(np.bool_): _DT.BOOL,
    np.dtype(np.uint8): _DT.UINT8, np.dtype(np.int8): _DT.INT8,
    np.dtype(np.uint16): _DT.UINT16, np.dtype(np.int16): _DT.INT16,
    np.dtype(np.int64): _DT.INT64, np.dtype(np.float16): _DT.FLOAT16,
    np.dtype(np.float64): _DT.DOUBLE,
}


def NumpyDtypeOf(data_type):
    """numpy dtype for a TensorProto.DataType value (ValueError if none)."""
    try:
        return np.dtype(_DTYPE_OF[data_type])
    except KeyError:
        raise ValueError("TensorProto data type %r has no numpy equivalent" % data_type)


def TensorProtoDataType(dtype):
    """TensorProto.DataType value for a numpy dtype (ValueError if none)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "US":
        return _DT.STRING
    try:
        return _TYPE_OF[dtype]
    except KeyError:
        raise ValueError("This numpy data type is not supported: %s." % dtype)


def _is_float_like(x):
    return type(x) is float or isinstance(x, np.floating)


def _is_int_like(x):
    return isinstance(x, (int, bool, np.integer, np.bool_)) and not isinstance(x, float)


def MakeArgument(key, value):
    """Encode a Python value as a caffe2 Argument exactly as caffe2.python.utils did."""
    argument = caffe2_pb2.Argument()
    argument.name = key
    iterable = isinstance(value, collections.abc.Iterable)

    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            argument.floats.extend(value.flatten().tolist())
            return argument
        value = value.flatten().tolist()
    elif isinstance(value, np.generic):
        value = value.item()

    if type(value) is float:
        argument.f = value
    elif type(value) in (int, bool):
        argument.i = int(value)
    elif isinstance(value, bytes):
        argument.s = value
    elif isinstance(value, str):
        argument.s = value.encode("utf-8")
    elif isinstance(value, caffe2_pb2.NetDef):
        argument.n.CopyFrom(value)
    elif isinstance(value, Message):
        argument.s = value.SerializeToString()
    elif iterable and all(_is_float_like(v) for v in value):
        argument.floats.extend(float(v) for v in value)
    elif iterable and all(_is_int_like(v) for v in value):
        argument.ints.extend(int(v) for v in value)
    elif iterable and all(isinstance(v, (str, bytes)) for v in value):
        argument.strings.extend(
            v.encode("utf-8") if isinstance(v, str) else v for v in value)
    elif iterable and all(isinstance(v, caffe2_pb2.NetDef) for v in value):
        argument.nets.extend(value)
    elif iterable and all(isinstance(v, Message) for v in value):
        argument.strings.extend(v.SerializeToString() for v in value)
    elif iterable:
        raise ValueError("Unknown iterable argument type: key={} value={}, value "
                         "type={}".format(key, value, type(value)))
    else:
        raise ValueError("Unknown argument type: key={} value={}, value type={}"
                         .format(key, value, type(value)))
    return argument


def ArgsToDict(args):
    """Convert a list of Arguments into a dict name -> Python value."""
    out = {}
    for arg in args:
        for field in ("f", "i", "s", "n", "t"):
            if arg.HasField(field):
                out[arg.name] = getattr(arg, field)
                break
        else:
            for field in ("floats", "ints", "strings", "nets", "tensors"):
                if len(getattr(arg, field)):
                    out[arg.name] = list(getattr(arg, field))
                    break
            else:
                out[arg.name] = []
    return out


def NumpyArrayToCaffe2Tensor(arr, name=None):
    """A TensorProto holding a copy of `arr` (dims, data_type and typed data)."""
    arr = np.asarray(arr)
    tensor = caffe2_pb2.TensorProto()
    tensor.data_type = TensorProtoDataType(arr.dtype)
    tensor.dims.extend(arr.shape)
    if name:
        tensor.name = name
    flat = arr.flatten()
    if tensor.data_type == _DT.FLOAT:
        tensor.float_data.extend(flat.tolist())
    elif tensor.data_type == _DT.DOUBLE:
        tensor.double_data.extend(flat.tolist())
    elif tensor.data_type == _DT.INT64:
        tensor.int64_data.extend(flat.tolist())
    elif tensor.data_type == _DT.FLOAT16:
        tensor.int32_data.extend(flat.view(np.uint16).astype(np.int32).tolist())
    elif tensor.data_type == _DT.STRING:
        tensor.string_data.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat)
    else:
        tensor.int32_data.extend(flat.astype(np.int32).tolist())
    return tensor


def Caffe2TensorToNumpyArray(tensor):
    """numpy array with the dims, dtype and data of a TensorProto."""
    dims = tuple(tensor.dims)
    dt = tensor.data_type
    if tensor.HasField("raw_data") and dt not in (_DT.STRING, _DT.BYTE):
        return np.frombuffer(tensor.raw_data, dtype=NumpyDtypeOf(dt)).reshape(dims).copy()
    if dt == _DT.FLOAT:
        data = np.asarray(tensor.float_data, dtype=np.float32)
    elif dt == _DT.DOUBLE:
        data = np.asarray(tensor.double_data, dtype=np.float64)
    elif dt == _DT.INT64:
        data = np.asarray(tensor.int64_data, dtype=np.int64)
    elif dt == _DT.FLOAT16:
        data = np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16)
    elif dt == _DT.STRING:
        data = np.empty(len(tensor.string_data), dtype=object)
        data[:] = list(tensor.string_data)
    elif dt == _DT.BYTE:
        data = np.frombuffer(tensor.byte_data, dtype=np.uint8)
    elif dt in _DTYPE_OF:
        data = np.asarray(tensor.int32_data, dtype=np.int32).astype(_DTYPE_OF[dt])
    else:
        raise RuntimeError("Tensor data type not supported yet: %s" % dt)
    return data.reshape(dims)


def CaffeBlobToNumpyArray(blob):
    """numpy array of a legacy Caffe BlobProto-like message with `shape` or n/c/h/w."""
    if getattr(blob, "num", 0) != 0:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    return np.asarray(blob.data, dtype=np.float32).reshape(shape)


def TryReadProtoWithClass(cls, s):
    """Parse `s` as binary, else as text format, into a new `cls` message."""
    from google.protobuf import text_format
    obj = cls()
    try:
        text_format.Parse(s, obj)
        return obj
    except (text_format.ParseError, UnicodeDecodeError, TypeError):
        obj.ParseFromString(s)
        return obj


def GetContentFromProto(obj, function_map):
    """Dispatch on the message type: function_map[type](obj)."""
    for cls, fn in function_map.items():
        if type(obj) is cls:
            return fn(obj)


def GetContentFromProtoString(s, function_map):
    for cls, fn in function_map.items():
        try:
            return fn(TryReadProtoWithClass(cls, s))
        except Exception:  # try the next message type, as caffe2.python.utils did
            continue
    return None


def ConvertProtoToBinary(proto_class, filename, out_filename):
    """Read a text-format proto from `filename` and write it in binary form."""
    from google.protobuf import text_format
    proto = proto_class()
    with open(filename, "r") as f:
        text_format.Merge(f.read(), proto)
    with open(out_filename, "wb") as f:
        f.write(proto.SerializeToString())


def raiseIfNotEqual(a, b, msg):
    if a != b:
        raise Exception("{}. {} != {}".format(msg, a, b))


def EnumClassKeyVals(cls):
    """dict of the non-dunder attributes of an enum-like class."""
    return {k: v for k, v in vars(cls).items() if not k.startswith("__")}


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector for a block that allocates many objects
    and no cycles (CreateNet's plan, the backward pass): its full passes over a heap
    that grows with the net make building and creating large nets superlinear."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
