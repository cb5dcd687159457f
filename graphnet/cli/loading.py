"""Reading and writing what the commands take: NetDef files in binary or text
format (told apart by their bytes), Caffe2 model directories (init_net.pb +
predict_net.pb), the blobs an init net creates, `--shape` and `--input` values.

Every failure is a CliError whose one line names the file and the problem.
Imports numpy, protobuf, the proto module, the registry and the analysis helpers.
"""

import os
from collections import namedtuple

import numpy as np
from google.protobuf import message, text_format, unknown_fields

from graphnet import registry
from graphnet.analysis._placement import place
from graphnet.analysis._shapes import trace
from graphnet.cli import CliError
from graphnet.proto import caffe2_pb2

__all__ = ["NetFile", "BlobInfo", "read_netdef", "write_netdef", "format_for_path",
           "model_files", "require_known_ops", "init_blobs", "placeholders", "parse_shapes",
           "read_arrays", "known_blobs", "TEXT_EXTENSIONS", "BINARY_EXTENSIONS"]

TEXT_EXTENSIONS = (".pbtxt", ".prototxt", ".txt", ".pb.txt")
BINARY_EXTENSIONS = (".pb", ".bin", ".netdef")
# Caffe2 model directories (the model zoo's layout); text variants are accepted too.
INIT_NAMES = ("init_net.pb", "init_net.pbtxt")
PREDICT_NAMES = ("predict_net.pb", "predict_net.pbtxt")


class NetFile(namedtuple("NetFile", ["netdef", "path", "format"])):
    """A NetDef read from `path`; format is "binary" or "text"."""

    __slots__ = ()

    def describe(self):
        return "net %s (%s, %s)" % ("'%s'" % self.netdef.name if self.netdef.name
                                    else "<unnamed>", self.path, self.format)


class BlobInfo(namedtuple("BlobInfo", ["shape", "dtype", "device"])):
    """What is known of a blob before the run; any field may be None."""

    __slots__ = ()


def _looks_like_text(data):
    """Text format is printable UTF-8; the binary format has length and tag
    bytes below 0x20 near its start (a NetDef begins with 0x0a len or 0x12 len)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 0x20 and c not in "\t\n\r" or c == "\x7f" for c in text)


def _unknown_field_numbers(msg):
    return sorted({field.field_number for field in unknown_fields.UnknownFieldSet(msg)})


def read_netdef(path):
    """The NetFile at `path`, in whichever format its bytes are."""
    if not os.path.exists(path):
        raise CliError("%s: no such file" % path)
    if os.path.isdir(path):
        raise CliError("%s: is a directory; give a NetDef file (e.g. %s)" % (
            path, os.path.join(path, PREDICT_NAMES[0])))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CliError("%s: cannot read: %s" % (path, exc.strerror or exc))
    if not data.strip():
        raise CliError("%s: empty file, not a NetDef" % path)
    netdef = caffe2_pb2.NetDef()
    if _looks_like_text(data):
        try:
            text_format.Parse(data.decode("utf-8"), netdef)
        except text_format.ParseError as exc:
            where = "%s:%s:%s" % (path, exc.GetLine(), exc.GetColumn()) \
                if exc.GetLine() is not None else path
            detail = str(exc).split(" : ", 1)[-1]
            raise CliError("%s: not a valid text NetDef: %s" % (where, detail))
        return NetFile(netdef, path, "text")
    try:
        netdef.ParseFromString(data)
    except message.DecodeError as exc:
        raise CliError("%s: not a valid binary NetDef (truncated or corrupt): %s"
                       % (path, exc))
    unknown = _unknown_field_numbers(netdef)
    if unknown:
        raise CliError("%s: not a NetDef: the binary data has field numbers %s, which "
                       "caffe2.NetDef does not define" % (
                           path, ", ".join(map(str, unknown))))
    return NetFile(netdef, path, "binary")


def format_for_path(path, default=None):
    """"text" or "binary" from the extension of `path` (else `default`)."""
    lower = path.lower()
    if lower.endswith(TEXT_EXTENSIONS):
        return "text"
    if lower.endswith(BINARY_EXTENSIONS):
        return "binary"
    return default


def write_netdef(netdef, path, fmt):
    """Write `netdef` to `path` as "text" (protobuf text format) or "binary"."""
    data = text_format.MessageToString(netdef).encode("utf-8") if fmt == "text" \
        else netdef.SerializeToString()
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise CliError("%s: cannot write: %s" % (path, exc.strerror or exc))
    return len(data)


def _first_existing(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def model_files(path):
    """(init path or None, predict path) of a model directory or a NetDef file."""
    if not os.path.isdir(path):
        return None, path
    predict = _first_existing(path, PREDICT_NAMES)
    if predict is None:
        raise CliError("%s: a model directory needs %s (found: %s)" % (
            path, " or ".join(PREDICT_NAMES), ", ".join(sorted(os.listdir(path))) or
            "nothing"))
    return _first_existing(path, INIT_NAMES), predict


def require_known_ops(net_file):
    """Raise unless every op type of the net is registered."""
    unknown = [(i, op.type) for i, op in enumerate(net_file.netdef.op)
               if registry.lookup(op.type) is None]
    if not unknown:
        return
    parts = []
    for index, op_type in unknown[:4]:
        close = registry.suggestions(op_type, n=1)
        parts.append("#%d '%s'%s" % (index, op_type,
                                     " (did you mean '%s'?)" % close[0] if close else ""))
    more = ", and %d more" % (len(unknown) - 4) if len(unknown) > 4 else ""
    raise CliError("%s: unknown op type%s: %s%s; register the ops or run `graphnet check "
                   "%s` for every problem" % (
                       net_file.path, "" if len(unknown) == 1 else "s", ", ".join(parts),
                       more, net_file.path))


def _is_placeholder(op):
    args = {arg.name: arg for arg in op.arg}
    return (op.type == "GivenTensorFill" and len(op.output) == 1 and not op.input and
            "shape" in args and list(args["shape"].ints) == [1, 1] and
            "values" in args and list(args["values"].floats) == [0.0])


def placeholders(netdef):
    """Blobs an init net fills only to make them exist: Caffe2's mobile_exporter
    writes a GivenTensorFill of shape [1, 1] holding 0.0 for each input of the
    predict net (its Predictor then feeds the real input). They are inputs, not
    params, and their shape says nothing."""
    return {op.output[0] for op in netdef.op if _is_placeholder(op)}


def init_blobs(netdef):
    """name -> BlobInfo of every blob an init net writes: shapes from the fill ops'
    `shape`/`values` (their shape rules; none for placeholders), devices from the
    ops' device options."""
    placement, traced = place(netdef), trace(netdef)
    skip = placeholders(netdef)
    blobs = {}
    for op, shapes, where in zip(netdef.op, traced, placement.ops):
        for name, info, device in zip(op.output, shapes.outputs, where.outputs):
            if info is None or name in skip:
                blobs[name] = BlobInfo(None, None, device)
            else:
                blobs[name] = BlobInfo(tuple(info.shape), np.dtype(info.dtype), device)
    return blobs


def parse_shapes(specs):
    """name -> (shape, dtype) from `--shape` values NAME=D0,D1[:DTYPE] (float32
    unless given; NAME= is a scalar)."""
    shapes = {}
    for spec in specs or ():
        name, sep, dims = spec.rpartition("=")
        dims, _, dtype = dims.partition(":")
        try:
            if not sep or not name:
                raise ValueError("expected NAME=D0,D1")
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
            if any(d < 0 for d in shape):
                raise ValueError("dimensions must be >= 0")
            dtype = np.dtype(dtype or "float32")
        except (ValueError, TypeError) as exc:
            raise CliError("--shape %s: %s (write NAME=D0,D1 or NAME=D0,D1:int64)"
                           % (spec, exc))
        shapes[name] = (shape, dtype)
    return shapes


def _load_array(path, what):
    if not os.path.isfile(path):
        raise CliError("%s: no such file (%s)" % (path, what))
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CliError("%s: not a numpy .npy/.npz file (%s): %s" % (path, what, exc))


def read_arrays(input_specs=(), npz_paths=()):
    """name -> array from `--input NAME=FILE.npy` values and `--inputs FILE.npz`
    files (every array of the archive, by its key); later ones win."""
    arrays = {}
    for path in npz_paths or ():
        archive = _load_array(path, "--inputs")
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CliError("%s: --inputs takes an .npz archive whose keys are blob "
                           "names; use --input NAME=%s for one array" % (path, path))
        with archive:
            arrays.update({key: archive[key] for key in archive.files})
    for spec in input_specs or ():
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise CliError("--input %s: expected NAME=FILE.npy" % spec)
        value = _load_array(path, "--input " + name)
        if isinstance(value, np.lib.npyio.NpzFile):
            with value:
                if len(value.files) != 1:
                    raise CliError("%s: --input %s needs one array, the archive holds %d"
                                   " (%s); use --inputs for a whole archive" % (
                                       path, name, len(value.files),
                                       ", ".join(value.files)))
                value = value[value.files[0]]
        arrays[name] = value
    return arrays
def known_blobs(init, shape_specs=(), npz_paths=()):
    """name -> BlobInfo from an init NetFile, --inputs archives and --shape values
    (later sources win)."""
    known = init_blobs(init.netdef) if init is not None else {}
    for name, value in read_arrays((), npz_paths).items():
        device = known[name].device if name in known else None
        known[name] = BlobInfo(tuple(value.shape), value.dtype, device)
    for name, (shape, dtype) in parse_shapes(shape_specs).items():
        device = known[name].device if name in known else None
        known[name] = BlobInfo(shape, dtype, device)
    return known
