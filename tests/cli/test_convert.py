"""graphnet convert: binary <-> text NetDef, on the real-Caffe2-saved goldens
(byte-identical round trips) and nets written here."""

import glob
import os

import pytest
from google.protobuf import text_format

from graphnet.proto import caffe2_pb2
from tests.cli.helpers import (GOLDENS, mlp_net, one_line_error, run_cli, run_subprocess,
                               write_net)

GOLDEN_PB = sorted(glob.glob(os.path.join(GOLDENS, "*.pb")))


def _binary(path):
    netdef = caffe2_pb2.NetDef()
    with open(path, "rb") as f:
        netdef.ParseFromString(f.read())
    return netdef


@pytest.mark.parametrize("path", GOLDEN_PB, ids=os.path.basename)
def test_caffe2_goldens_round_trip_byte_for_byte(capsys, tmp_path, path):
    text, back = tmp_path / "net.pbtxt", tmp_path / "net.pb"
    netdef = _binary(path)
    result = run_cli(capsys, "convert", path, "-o", text)
    assert result.code == 0, result.err
    ops = "%d op%s" % (len(netdef.op), "" if len(netdef.op) == 1 else "s")
    assert result.out == "%s -> %s (text, {:,} bytes): net '%s', %s\n".format(
        os.path.getsize(text)) % (path, text, netdef.name, ops)
    assert text.read_text() == text_format.MessageToString(netdef)
    assert run_cli(capsys, "convert", text, "-o", back).code == 0
    with open(path, "rb") as f:
        assert back.read_bytes() == f.read()


@pytest.mark.parametrize("path", [p for p in GOLDEN_PB if os.path.exists(p + "txt")],
                         ids=os.path.basename)
def test_caffe2_printed_text_converts_to_the_saved_binary(capsys, tmp_path, path):
    """Caffe2's own text (protobuf 3.20 C++ formatting: `f: 1.0`) parses as text."""
    out = tmp_path / "from_text.pb"
    result = run_cli(capsys, "convert", path + "txt", "-o", out)
    assert result.code == 0, result.err
    assert _binary(out) == _binary(path)


def test_direction_from_to_option_and_extension(capsys, tmp_path):
    source = write_net(mlp_net(), tmp_path / "mlp.pb")
    odd = tmp_path / "mlp.out"
    assert run_cli(capsys, "convert", source, "-o", odd, "--to", "text").code == 0
    assert odd.read_text().startswith('name: "mlp"\nop {\n  input: "x"')
    prototxt = tmp_path / "mlp.prototxt"
    assert run_cli(capsys, "convert", odd, "-o", prototxt).code == 0
    assert prototxt.read_text() == odd.read_text()
    result = run_cli(capsys, "convert", source, "-o", tmp_path / "mlp.bin2")
    assert result.code == 2
    assert one_line_error(result, "convert") == (
        "graphnet convert: %s: cannot tell the output format from the extension; name "
        "it .pb or .pbtxt, or give --to text|binary" % (tmp_path / "mlp.bin2"))


def test_any_op_type_converts(capsys, tmp_path):
    source = tmp_path / "custom.pbtxt"
    source.write_text('name: "custom"\nop { type: "MyCustomOp" input: "a" output: "b" }\n')
    result = run_cli(capsys, "convert", source, "-o", tmp_path / "custom.pb")
    assert result.code == 0
    assert _binary(tmp_path / "custom.pb").op[0].type == "MyCustomOp"


def test_bad_input_and_unwritable_output(capsys, tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x0a\xff\xff\xff\x0f\x01")
    result = run_cli(capsys, "convert", garbage, "-o", tmp_path / "x.pbtxt")
    assert result.code == 2
    assert "not a valid binary NetDef (truncated or corrupt)" in one_line_error(
        result, "convert")
    not_netdef = tmp_path / "tensor.pb"
    tensor = caffe2_pb2.TensorProto(dims=[2], data_type=1, float_data=[1.0, 2.0])
    not_netdef.write_bytes(tensor.SerializeToString())
    result = run_cli(capsys, "convert", not_netdef, "-o", tmp_path / "x.pbtxt")
    assert result.code == 2
    assert "not a NetDef: the binary data has field numbers" in one_line_error(
        result, "convert")
    result = run_cli(capsys, "convert", write_net(mlp_net(), tmp_path / "m.pb"), "-o",
                     tmp_path / "no_dir" / "m.pbtxt")
    assert result.code == 2
    assert one_line_error(result, "convert").startswith(
        "graphnet convert: %s: cannot write:" % (tmp_path / "no_dir" / "m.pbtxt"))


def test_subprocess_python_m_graphnet_convert(tmp_path):
    path = os.path.join(GOLDENS, "dlrm_training_net_4devices.net.pb")
    out = tmp_path / "dlrm.pbtxt"
    result = run_subprocess("convert", path, "-o", out)
    assert result.code == 0, result.err
    assert "(text, " in result.out and "net 'DLRM_2', 236 ops" in result.out
    parsed = text_format.Parse(out.read_text(), caffe2_pb2.NetDef())
    assert parsed == _binary(path)
