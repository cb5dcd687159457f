"""graphnet check: every finding of graphnet.analysis.validate, one line each,
exit 1 on errors; --strict-devices, --blobs-from; real files only."""

import pytest

from graphnet import analysis, core, workspace
from graphnet.cli.check import format_finding
from graphnet.cli.loading import read_netdef
from tests.cli.helpers import (dlrm_model, golden, mlp_init, mlp_net, one_line_error,
                               run_cli, run_subprocess, write_net)

BROKEN = """name: "broken"
op { type: "Relu" input: "x" output: "y" }
op { type: "FC" input: "y" input: "w" input: "b" output: "z" }
op { type: "ConstantFill" output: "w" arg { name: "shape" ints: 4 ints: 3 } }
op { type: "Reluu" input: "z" output: "q" }
external_input: "x"
external_input: "b"
external_output: "out"
"""


def test_every_finding_with_its_fix_and_exit_1(capsys, tmp_path):
    path = tmp_path / "broken.pbtxt"
    path.write_text(BROKEN)
    result = run_cli(capsys, "check", path)
    assert result.code == 1 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == (
        "error   [undefined_input] op #1 (FC): input 'w' is not an external input, not a "
        "given blob and not produced by an earlier op; it is produced by op #2 "
        "(ConstantFill), which runs later. Fix: move op #2 before op #1.")
    assert lines[1].startswith("warning [unused_output] op #2 (ConstantFill): output 'w' "
                               "is never read")
    assert lines[2].startswith("error   [unknown_op] op #3 (Reluu): operator type "
                               "'Reluu' is not registered. Did you mean: Relu? Fix:")
    assert lines[3].startswith("warning [unused_output] op #3 (Reluu): output 'q'")
    assert lines[4].startswith("error   [external_output_missing] 'out' is declared as "
                               "an external output of net 'broken' but no op produces "
                               "it. Fix: produce it or remove it from external_output.")
    assert lines[5] == "net 'broken' (%s, text): 4 ops, 3 errors, 2 warnings" % path
    assert len(lines) == 6
    assert all("Fix:" in line for line in lines[:-1])


def test_blob_is_named_when_the_message_does_not(capsys, tmp_path):
    finding = analysis.Finding("warning", "cross_device_read", 3, "Relu", "gpu_0/y",
                               "op #3 (Relu) reads it from gpu_0. Fix: copy it.")
    assert format_finding(finding) == ("warning [cross_device_read] blob 'gpu_0/y': "
                                       "op #3 (Relu) reads it from gpu_0. Fix: copy it.")


def test_clean_net_exits_0(capsys, tmp_path):
    path = write_net(mlp_net(), tmp_path / "mlp.pb")
    result = run_cli(capsys, "check", path)
    assert result.code == 0
    assert result.out == "net 'mlp' (%s, binary): 2 ops, no problems found\n" % path


def test_strict_devices_turns_cross_device_reads_into_errors(capsys, tmp_path):
    net = core.Net("split_devices")
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 1)):
        net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")  # on the CPU, reading gpu_1's y
    netdef = net.Proto()
    netdef.external_output.append("z")
    path = write_net(netdef, tmp_path / "split.pb")
    relaxed = run_cli(capsys, "check", path)
    assert relaxed.code == 0
    assert relaxed.out.splitlines()[0].startswith(
        "warning [cross_device_read] op #1 (Relu) reads blob 'y' (input 0) living on "
        "gpu_1 but expects it on cpu; fix: add a Copy of 'y' to cpu")
    assert relaxed.out.splitlines()[-1].endswith("2 ops, 0 errors, 1 warning")
    strict = run_cli(capsys, "check", path, "--strict-devices")
    assert strict.code == 1
    assert strict.out.splitlines()[0].startswith("error   [cross_device_read] op #1")
    assert strict.out.splitlines()[-1].endswith("2 ops, 1 error, 0 warnings")


def test_blobs_from_init_net_seed_shapes_and_devices(capsys, tmp_path):
    net = mlp_net()
    del net.external_input[:]
    net.external_input.append("x")
    path = write_net(net, tmp_path / "predict_net.pb")
    good = write_net(mlp_init((4, 3)), tmp_path / "init_good.pb")
    bad = write_net(mlp_init((4, 5)), tmp_path / "init_bad.pbtxt")
    alone = run_cli(capsys, "check", path)
    assert alone.code == 1
    assert [line.split("]")[0] for line in alone.out.splitlines()[:-1]] == [
        "error   [undefined_input", "error   [undefined_input"]
    assert "input 'w' is not an external input" in alone.out
    fixed = run_cli(capsys, "check", path, "--blobs-from", good, "--shape", "x=2,3")
    assert fixed.code == 0 and fixed.out.endswith("no problems found\n")
    wrong = run_cli(capsys, "check", path, "--blobs-from", bad, "--shape", "x=2,3")
    assert wrong.code == 1
    assert wrong.out.startswith(
        "error   [shape] op #0 (FC): shape inference fails with the inferred input "
        "shapes [[2, 3], [4, 5], [4]]:")


def test_dlrm_forward_4_devices(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    for extra in ([], ["--strict-devices"]):
        result = run_cli(capsys, "check", dlrm.predict, "--blobs-from", dlrm.init, *extra)
        assert result.code == 0, result.out
        lines = result.out.splitlines()
        # Concat's split-info outputs nobody reads; the copies make every read local
        assert len(lines) == 9 and all(
            line.startswith("warning [unused_output] op #") and "_info" in line
            for line in lines[:8])
        assert lines[8] == "net 'dlrm_4gpu' (%s, binary): 72 ops, 0 errors, 8 warnings" \
            % dlrm.predict


@pytest.mark.parametrize("name", ["dlrm_training_net_4devices", "model_helper_and_brew"])
def test_caffe2_saved_nets_print_what_validate_finds(capsys, name):
    net, init = golden(name + ".net.pb"), golden(name + ".init.pb")
    result = run_cli(capsys, "check", net, "--blobs-from", init)
    from graphnet.cli.loading import init_blobs
    blobs = {n: tuple(b) for n, b in init_blobs(read_netdef(init).netdef).items()}
    findings = analysis.validate(read_netdef(net).netdef, blobs=blobs)
    assert result.out.splitlines()[:-1] == [format_finding(f) for f in findings]
    errors = sum(f.severity == "error" for f in findings)
    assert result.code == (1 if errors else 0)
    assert result.out.splitlines()[-1].endswith(", %d errors, %d warnings" % (
        errors, len(findings) - errors))


def test_file_errors(capsys, tmp_path):
    truncated = tmp_path / "t.pb"
    truncated.write_bytes(read_netdef(golden("gradients_mlp.net.pb")).netdef
                          .SerializeToString()[:-7])
    result = run_cli(capsys, "check", truncated)
    assert result.code == 2
    assert one_line_error(result, "check").startswith(
        "graphnet check: %s: not a valid binary NetDef" % truncated)
    result = run_cli(capsys, "check", golden("scopes.net.pb"), "--blobs-from",
                     tmp_path / "nope.pb")
    assert result.code == 2
    assert one_line_error(result, "check") == "graphnet check: %s: no such file" % (
        tmp_path / "nope.pb")


def test_subprocess_python_m_graphnet_check(capsys, tmp_path):
    path = tmp_path / "broken.pbtxt"
    path.write_text(BROKEN)
    result = run_subprocess("check", path)
    assert result.code == 1
    assert result.out == run_cli(capsys, "check", path).out
