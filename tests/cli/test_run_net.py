"""graphnet run-net: a Caffe2 model directory or NetDef files run on emulated
GPUs; outputs printed and saved; the 4-device DLRM forward model gives the
example's own outputs."""

import os

import numpy as np
import pytest

from graphnet import config, core, workspace
from tests.cli.helpers import (caffe2_model_dirs, dlrm_model, mlp_init, mlp_net,
                               one_line_error, rows, run_cli, run_subprocess, write_net)


def _values(array):
    flat = array.ravel()
    return "[%s%s]" % (", ".join("%.6g" % v for v in flat[:6]),
                       ", ..." if flat.size > 6 else "")


def test_dlrm_model_directory_matches_the_example(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    saved = tmp_path / "out.npz"
    config.set_virtual_gpu_count(0)  # run-net emulates the GPUs the nets use
    result = run_cli(capsys, "run-net", dlrm.dir, "--inputs", dlrm.inputs, "--save",
                     saved)
    assert result.code == 0, result.err
    assert config.virtual_gpu_count() == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("ran net 'dlrm_4gpu' (%s, binary): 72 ops, 1 run, "
                               % dlrm.predict)
    assert lines[1:5] == ["gpu_%d/prob_click  float32 (2, 1) on gpu_%d: %s" % (
        d, d, _values(dlrm.outputs["gpu_%d/prob_click" % d])) for d in range(4)]
    assert lines[5] == "saved 4 outputs to %s" % saved
    with np.load(saved) as archive:
        assert sorted(archive.files) == sorted(dlrm.outputs)
        for name, expected in dlrm.outputs.items():
            np.testing.assert_array_equal(archive[name], expected)


def test_files_in_order_npy_inputs_outputs_and_iters(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    specs = []
    with np.load(dlrm.inputs) as archive:
        for k, name in enumerate(archive.files):
            path = tmp_path / ("input%d.npy" % k)
            np.save(path, archive[name])
            specs.append("%s=%s" % (name, path))
    result = run_cli(capsys, "run-net", dlrm.init, dlrm.predict, "--input", *specs,
                     "--output", "gpu_1/prob_click", "gpu_2/interaction", "--iters", "3")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "): 72 ops, 3 runs, " in lines[0] and lines[0].endswith(" ms per run")
    assert lines[1] == "gpu_1/prob_click  float32 (2, 1) on gpu_1: %s" % _values(
        dlrm.outputs["gpu_1/prob_click"])
    # gpu_2's slice of the batch (2 rows): the bottom MLP's 2 outputs and the 10
    # pairwise dot products of the 5 features
    assert rows(lines[2])[0][:6] == ["gpu_2/interaction", "float32", "(2,", "12)", "on",
                                     "gpu_2:"]
    assert len(lines) == 3
    same = run_cli(capsys, "run-net", dlrm.predict, "--init", dlrm.init, "--input", *specs)
    assert same.code == 0 and same.out.splitlines()[1:] == [
        "gpu_%d/prob_click  float32 (2, 1) on gpu_%d: %s" % (
            d, d, _values(dlrm.outputs["gpu_%d/prob_click" % d])) for d in range(4)]


def test_missing_inputs_and_bad_inputs(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    result = run_cli(capsys, "run-net", dlrm.dir)
    assert result.code == 2 and result.out == ""
    assert one_line_error(result, "run-net") == (
        "graphnet run-net: %s: no value for 12 external inputs: gpu_0/emb:::sls0_i, "
        "gpu_0/emb:::sls0_l, gpu_1/emb:::sls1_i, gpu_1/emb:::sls1_l, gpu_2/emb:::sls2_i, "
        "gpu_2/emb:::sls2_l, ...; give --input NAME=FILE.npy or --inputs FILE.npz"
        % dlrm.predict)
    net = write_net(mlp_net(), tmp_path / "mlp.pb")
    result = run_cli(capsys, "run-net", net, "--input", "x")
    assert result.code == 2
    assert one_line_error(result, "run-net") == \
        "graphnet run-net: --input x: expected NAME=FILE.npy"
    result = run_cli(capsys, "run-net", net, "--input", "x=%s" % (tmp_path / "no.npy"))
    assert result.code == 2
    assert one_line_error(result, "run-net") == \
        "graphnet run-net: %s: no such file (--input x)" % (tmp_path / "no.npy")
    result = run_cli(capsys, "run-net", net, "--iters", "0")
    assert result.code == 2 and "--iters must be at least 1" in result.err


def test_failing_op_is_one_line_and_exit_1(capsys, tmp_path):
    net = write_net(mlp_net(), tmp_path / "predict_net.pb")
    write_net(mlp_init((4, 5)), tmp_path / "init_net.pb")
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    result = run_cli(capsys, "run-net", tmp_path, "--input", "x=%s" % (tmp_path / "x.npy"))
    assert result.code == 1 and result.out == ""
    line = one_line_error(result, "run-net")
    assert line.startswith("graphnet run-net: %s: net 'mlp' failed: [enforce fail] "
                           "Dimension mismatch" % net)
    assert "Error from operator #0 (FC) in net 'mlp' on device cpu" in line
    assert "offending blob: 'w' (input 1) holding float32[4, 5] on cpu" in line


def test_devices_strictness_and_default_outputs(capsys, tmp_path):
    net = core.Net("split")
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 2)):
        net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")  # on the CPU, reading gpu_2's y
    netdef = net.Proto()
    netdef.name = "split"  # as core.Net numbers a repeated name
    path = write_net(netdef, tmp_path / "split.pbtxt")
    init = write_net(mlp_init((4, 3), core.DeviceOption(workspace.GpuDeviceType, 2)),
                     tmp_path / "init.pbtxt")
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    args = ["run-net", init, path, "--input", "x=%s" % (tmp_path / "x.npy")]
    result = run_cli(capsys, *args)
    assert result.code == 0, result.err
    assert result.err.startswith(
        "graphnet run-net: warning: net 'split': op #1 (Relu) reads blob 'y' (input 0) "
        "living on gpu_2 but expects it on cpu")
    assert len(result.err.splitlines()) == 1
    lines = result.out.splitlines()
    assert lines[0].startswith("ran net 'split' (")
    # no external outputs: the blobs no op reads; x @ w.T + b with w = 0.5, b = 0.25
    assert lines[1] == \
        "z  float32 (2, 4) on cpu: [1.75, 1.75, 1.75, 1.75, 6.25, 6.25, ...]"
    assert len(lines) == 2
    strict = run_cli(capsys, *(args + ["--strict-devices"]))
    assert strict.code == 1
    assert "failed: Net 'split' has 1 cross-device read (strict device mode): op #1 " \
           "(Relu) reads blob 'y'" in one_line_error(strict, "run-net")
    assert not config.strict_devices()


def test_unknown_op_and_bad_file(capsys, tmp_path):
    path = tmp_path / "custom.pbtxt"
    path.write_text('name: "c"\nop { type: "Sigmoidd" input: "a" output: "b" }\n'
                    'external_input: "a"\n')
    result = run_cli(capsys, "run-net", path)
    assert result.code == 2
    assert one_line_error(result, "run-net") == (
        "graphnet run-net: %s: unknown op type: #0 'Sigmoidd' (did you mean 'Sigmoid'?); "
        "register the ops or run `graphnet check %s` for every problem" % (path, path))


def test_subprocess_python_m_graphnet_run_net(capsys, tmp_path):
    dlrm = dlrm_model(tmp_path)
    result = run_subprocess("run-net", dlrm.dir, "--inputs", dlrm.inputs)
    assert result.code == 0, result.err
    assert result.out.splitlines()[1:] == [
        "gpu_%d/prob_click  float32 (2, 1) on gpu_%d: %s" % (
            d, d, _values(dlrm.outputs["gpu_%d/prob_click" % d])) for d in range(4)]


@pytest.mark.parametrize("model", caffe2_model_dirs() or [None],
                         ids=lambda m: os.path.basename(m) if m else "none")
def test_caffe2_exported_model_directory(capsys, tmp_path, model):
    """mobile_exporter's directories: an unnamed init net with a [1, 1] placeholder
    per input; run-net still asks for the inputs and gives Caffe2's outputs."""
    if model is None:
        pytest.skip("no tests/goldens/models")
    inputs, saved = os.path.join(model, "inputs.npz"), tmp_path / "out.npz"
    result = run_cli(capsys, "run-net", model, "--inputs", inputs, "--save", saved)
    assert result.code == 0, result.err
    with np.load(os.path.join(model, "outputs.npz")) as want, np.load(saved) as got:
        assert sorted(got.files) == sorted(want.files)
        for name in want.files:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
            assert "%s  %s %s on cpu: " % (name, want[name].dtype,
                                           tuple(want[name].shape)) in result.out
    with np.load(inputs) as archive:
        names = list(archive.files)
    missing = run_cli(capsys, "run-net", model)
    assert missing.code == 2
    assert "no value for %d external input" % len(names) in one_line_error(missing,
                                                                           "run-net")
