"""graphnet inspect: the summary of real files (the 4-device DLRM model
directory, nets written here, Caffe2-saved goldens) and one-line file errors."""

import os

import numpy as np
import pytest

from graphnet import analysis
from graphnet.proto import caffe2_pb2
from tests.cli.helpers import (caffe2_model_dirs, dlrm_model, golden, mlp_net,
                               one_line_error, rows, run_cli, run_subprocess, write_net)


@pytest.fixture
def dlrm(tmp_path):
    return dlrm_model(tmp_path)


def _section(out, title):
    """The lines of the section that starts with `title` (up to a blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_dlrm_model_directory_with_inputs(capsys, dlrm):
    result = run_cli(capsys, "inspect", dlrm.dir, "--inputs", dlrm.inputs)
    assert result.code == 0 and result.err == ""
    out = result.out
    assert out.splitlines()[0] == (
        "net 'dlrm_4gpu' (%s, binary): 72 ops on 4 devices (gpu_0, gpu_1, gpu_2, gpu_3)"
        % dlrm.predict)
    assert out.splitlines()[1] == "init net 'dlrm_4gpu_init' (%s, binary): 40 ops" % \
        dlrm.init
    table = [r for r in rows("\n".join(_section(out, "ops by type and device")))][1:]
    assert table[0] == ["type", "ops", "gpu_0", "gpu_1", "gpu_2", "gpu_3"]
    by_type = {r[0]: r[1:] for r in table[1:]}
    # per device: 4 FC + 3 Relu + 1 Sigmoid (bottom 2 + top 2 layers), one table,
    # one Split per table homed here, 3 Copies in (one slice of each other table)
    assert by_type["FC"] == ["16", "4", "4", "4", "4"]
    assert by_type["Copy"] == ["12", "3", "3", "3", "3"]
    assert by_type["SparseLengthsSum"] == ["4", "1", "1", "1", "1"]
    assert by_type["total"] == ["72", "18", "18", "18", "18"]
    # params: every weight the example feeds (not dense_in / sls ids / lengths)
    params = {n: s for n, s in dlrm.feeds.items() if "dense_in" not in n and
              not n.endswith(("_i", "_l"))}
    values = sum(int(np.prod(s[0])) for s in params.values())
    nbytes = sum(int(np.prod(s[0])) * s[1].itemsize for s in params.values())
    assert "params: %d, the external inputs init net 'dlrm_4gpu_init' fills; %d " \
           "values, {:,} B".format(nbytes) % (len(params), values) in out
    inputs = {r[0]: r[1:] for r in rows("\n".join(_section(out, "inputs:")))[2:]}
    assert len(inputs) == 12
    assert inputs["gpu_2/dense_in"] == ["float32", "(2,", "4)", "gpu_2", "32", "B"]
    assert inputs["gpu_1/emb:::sls1_l"] == ["int32", "(8,)", "gpu_1", "32", "B"]
    outputs = {r[0]: r[1:] for r in rows("\n".join(_section(out, "outputs:")))[2:]}
    assert outputs == {"gpu_%d/prob_click" % d: ["float32", "(2,", "1)", "gpu_%d" % d,
                                                 "8", "B"] for d in range(4)}
    # butterfly shuffle: every table's (batch / 4, emb_dim) float32 slice goes to
    # each of the 3 other devices: 2 * 2 * 4 = 16 bytes per pair
    comm = _section(out, "communication per run")
    assert comm[0] == "communication per run: 192 B in 12 transfers (copy: 12)"
    assert [line.split(None, 1)[1].replace(" B", "B").split() for line in comm[2:]] == [
        ["-" if s == d else "16B" for d in range(4)] for s in range(4)]
    # estimates agree with graphnet.analysis given the shapes the example fed
    shapes = {n: (s, t) for n, (s, t, _) in dlrm.feeds.items()}
    devices = {n: dev for n, (_, _, dev) in dlrm.feeds.items()}
    netdef = workspace_net(dlrm.predict)
    expected = analysis.device_costs(netdef, shapes, devices)
    estimates = {r[0]: r[1:] for r in rows("\n".join(_section(out, "estimates")))[2:]}
    for device, cost in expected.items():
        assert estimates[str(device)] == [str(cost.ops), "{:,}".format(cost.flops),
                                          "{:,}".format(cost.bytes), "B"]
    assert estimates["all"][:2] == ["72", "{:,}".format(
        sum(c.flops for c in expected.values()))]
    path = analysis.critical_path(netdef)
    assert "critical path: %d of 72 ops" % len(path.ops) in out
    assert "#%d %s" % (path.ops[-1], netdef.op[path.ops[-1]].type) in out


def workspace_net(path):
    netdef = caffe2_pb2.NetDef()
    with open(path, "rb") as f:
        netdef.ParseFromString(f.read())
    return netdef


def test_without_inputs_sizes_are_unknown_and_blobs_lists_params(capsys, dlrm):
    result = run_cli(capsys, "inspect", dlrm.predict, "--init", dlrm.init, "--blobs")
    assert result.code == 0
    out = result.out
    assert "communication per run: ? B in 12 transfers (copy: 12); sizes unknown for " \
           "12 (give --inputs or --shape)" in out
    assert "estimates per run: unknown (no op has the shapes of all its inputs; give " \
           "--init, --inputs or --shape NAME=D0,D1)" in out
    params = {r[0]: r[1:] for r in rows("\n".join(_section(out, "params:")))[2:]}
    assert params["gpu_3/emb:::sls3_w"] == ["float32", "(5,", "2)", "gpu_3", "40", "B"]
    assert params["gpu_0/interaction_tril_indices"] == ["int64", "(10,)", "gpu_0", "80",
                                                        "B"]
    assert len(params) == 40


def test_shape_options_without_init_net(capsys, tmp_path):
    path = write_net(mlp_net(), tmp_path / "mlp.pbtxt")
    result = run_cli(capsys, "inspect", path, "--shape", "x=2,3", "--shape", "w=4,3",
                     "--shape", "b=4")
    assert result.code == 0, result.err
    out = result.out
    assert out.splitlines()[0] == "net 'mlp' (%s, text): 2 ops on 1 device (cpu)" % path
    assert "params: 3, every external input (no init net); 22 values, 88 B" in out
    assert "inputs:" not in out
    # FLOPs: FC 2 * K * (M * N) + M * N = 2 * 3 * 8 + 8, Relu one per element;
    # bytes: FC reads x, w, b and writes y (6 + 12 + 4 + 8 floats), Relu 8 + 8
    estimates = rows("\n".join(_section(out, "estimates")))
    assert estimates[2] == ["cpu", "2", "64", "184", "B"]
    assert estimates[3] == ["all", "2", "64", "184", "B"]
    assert "communication per run: none" in out
    assert "critical path: 2 of 2 ops; 64 of the net's 64 FLOPs" in out
    assert "  #0 FC -> #1 Relu" in out
    partial = run_cli(capsys, "inspect", path, "--shape", "x=2,3")
    assert "sizes known for 1 of 3; give --init, --inputs or --shape NAME=D0,D1" in \
        partial.out
    bad = run_cli(capsys, "inspect", path, "--shape", "x=2,three")
    assert bad.code == 2
    assert "--shape x=2,three" in one_line_error(bad, "inspect")


def test_caffe2_saved_training_net_with_its_init_net(capsys):
    net, init = (golden("dlrm_training_net_4devices.%s.pb" % k) for k in ("net", "init"))
    result = run_cli(capsys, "inspect", net, "--init", init)
    assert result.code == 0, result.err
    netdef, initdef = workspace_net(net), workspace_net(init)
    created = {o for op in initdef.op for o in op.output}
    params = [n for n in netdef.external_input if n in created]
    out = result.out
    assert out.splitlines()[0].startswith("net 'DLRM_2' (%s, binary): %d ops on 5 "
                                          "devices" % (net, len(netdef.op)))
    assert "params: %d, the external inputs init net 'DLRM_init_2' fills" % \
        len(params) in out
    assert "inputs: %d external inputs the init net does not fill:" % (
        len(set(netdef.external_input)) - len(params)) in out
    by_type = {r[0]: r[1:] for r in rows("\n".join(_section(
        out, "ops by type and device")))[2:]}
    assert by_type["NCCLAllreduce"] == ["8", "8", ".", ".", "."]
    kinds = "collective: 32, copy: 24, implicit: 3"
    assert kinds in _section(out, "communication per run")[0]


def test_text_and_binary_goldens_give_the_same_summary(capsys):
    binary = run_cli(capsys, "inspect", golden("model_helper_and_brew.net.pb"),
                     "--init", golden("model_helper_and_brew.init.pb"))
    text = run_cli(capsys, "inspect", golden("model_helper_and_brew.net.pbtxt"),
                   "--init", golden("model_helper_and_brew.init.pbtxt"))
    assert binary.code == text.code == 0
    assert binary.out.split("\n", 2)[2] == text.out.split("\n", 2)[2]
    assert ".net.pbtxt, text)" in text.out.splitlines()[0]


def test_bad_files_give_one_line_errors(capsys, tmp_path):
    data = workspace_net(golden("dlrm_training_net_4devices.net.pb")).SerializeToString()
    truncated = tmp_path / "truncated.pb"
    truncated.write_bytes(data[:len(data) // 2])
    unknown_field = tmp_path / "unknown_field.pbtxt"
    unknown_field.write_text('name: "n"\nop { type: "Relu" input: "x" output: "y" '
                             'colour: 3 }\n')
    unknown_op = tmp_path / "unknown_op.pbtxt"
    unknown_op.write_text('name: "n"\nop { type: "Reluu" input: "x" output: "y" }\n')
    cases = [
        (tmp_path / "missing.pb", "%s: no such file"),
        (truncated, "%s: not a valid binary NetDef (truncated or corrupt)"),
        (unknown_field, '%s:2:42: not a valid text NetDef: Message type '
                        '"caffe2.OperatorDef" has no field named "colour".'),
        (unknown_op, "%s: unknown op type: #0 'Reluu' (did you mean 'Relu'?)"),
    ]
    for path, expected in cases:
        result = run_cli(capsys, "inspect", path)
        assert result.code == 2 and result.out == ""
        assert one_line_error(result, "inspect").startswith(
            "graphnet inspect: " + expected % path)
    empty = tmp_path / "model"
    empty.mkdir()
    result = run_cli(capsys, "inspect", empty)
    assert result.code == 2
    assert "a model directory needs predict_net.pb or predict_net.pbtxt" in \
        one_line_error(result, "inspect")


def test_traceback_only_when_asked(capsys, tmp_path):
    path = tmp_path / "bad.pbtxt"
    path.write_text("name: 'n' op {")
    quiet = run_cli(capsys, "inspect", path)
    loud = run_cli(capsys, "inspect", path, "--traceback")
    assert quiet.code == loud.code == 2
    one_line_error(quiet, "inspect")
    assert "Traceback (most recent call last)" in loud.err
    assert loud.err.strip().splitlines()[-1] == quiet.err.strip()


def test_usage_errors(capsys):
    result = run_cli(capsys, "inspect")
    assert result.code == 2
    assert one_line_error(result, "inspect") == (
        "graphnet inspect: the following arguments are required: FILE "
        "(see `graphnet inspect --help`)")
    helped = run_cli(capsys, "inspect", "--help")
    assert helped.code == 0 and "Summarise a NetDef" in helped.out


def test_subprocess_python_m_graphnet_inspect(capsys, dlrm):
    in_process = run_cli(capsys, "inspect", dlrm.dir, "--inputs", dlrm.inputs)
    result = run_subprocess("inspect", dlrm.dir, "--inputs", dlrm.inputs)
    assert result.code == 0, result.err
    assert result.out == in_process.out


@pytest.mark.parametrize("model", caffe2_model_dirs() or [None],
                         ids=lambda m: os.path.basename(m) if m else "none")
def test_caffe2_exported_model_directory(capsys, model):
    """mobile_exporter's [1, 1] placeholders make inputs, not params; check finds
    no problem with the init net's blobs given."""
    if model is None:
        pytest.skip("no tests/goldens/models")
    predict, init = (workspace_net(os.path.join(model, f)) for f in
                     ("predict_net.pb", "init_net.pb"))
    with np.load(os.path.join(model, "inputs.npz")) as archive:
        inputs = list(archive.files)
    result = run_cli(capsys, "inspect", model)
    assert result.code == 0, result.err
    assert result.out.splitlines()[1].startswith("init net <unnamed> (")
    params = [n for n in predict.external_input if n not in inputs]
    assert "params: %d, the external inputs init net <unnamed> fills;" % len(params) in \
        result.out
    section = _section(result.out, "inputs:")
    assert section[0] == "inputs: %d external input%s the init net does not fill (%d " \
        "with a [1, 1] placeholder):" % (len(inputs), "" if len(inputs) == 1 else "s",
                                         len(inputs))
    assert [r[0] for r in rows("\n".join(section[2:]))] == inputs
    with_inputs = run_cli(capsys, "inspect", model, "--inputs",
                          os.path.join(model, "inputs.npz"))
    ops = len(predict.op)
    assert "estimates per run (shapes known for %d of %d ops):" % (ops, ops) in \
        with_inputs.out
    check = run_cli(capsys, "check", os.path.join(model, "predict_net.pb"),
                    "--blobs-from", os.path.join(model, "init_net.pb"))
    assert check.code == 0
    assert not [line for line in check.out.splitlines() if line.startswith("error")]
    assert len(init.op) == len(params) + len(inputs)
