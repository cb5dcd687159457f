"""Legacy scripts: caffe2 imports resolve to graphnet; `python -m graphnet run`."""

import os
import subprocess
import sys
import textwrap

import pytest

from graphnet import compat

LEGACY = textwrap.dedent("""
    import sys
    import numpy as np
    from caffe2.proto import caffe2_pb2
    from caffe2.python import brew, core, dyndep, model_helper, net_drawer, workspace
    from caffe2.python.modeling.initializers import Initializer
    dyndep.InitOpsLibrary("//caffe2/caffe2/contrib/nccl:nccl_ops")
    workspace.GlobalInit(["caffe2", "--caffe2_log_level=0"])
    workspace.FeedBlob("x", np.array([[-1.0, 2.0]], dtype=np.float32))
    net = core.Net("legacy")
    net.Relu("x", "y")
    workspace.RunNetOnce(net)
    print("argv", sys.argv[1:])
    print("y", workspace.FetchBlob("y").tolist())
    print("gpu", workspace.GpuDeviceType, caffe2_pb2.CPU)
""")


def test_install_maps_caffe2_modules():
    compat.install()
    try:
        from caffe2.python import core as c2core  # noqa: F401
        import caffe2.proto.caffe2_pb2 as pb
        from graphnet import core
        from graphnet.proto import caffe2_pb2
        assert c2core is core and pb is caffe2_pb2
        with pytest.raises(ImportError, match="graphnet has no equivalent of module "
                                              "'caffe2.python.nonexistent_mod'"):
            import caffe2.python.nonexistent_mod  # noqa: F401
    finally:
        compat.uninstall()
    assert compat.target_of("caffe2.python.modeling.initializers") == \
        "graphnet.initializers"


def _run(args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "graphnet"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_graphnet_run_script(tmp_path):
    script = tmp_path / "legacy_script.py"
    script.write_text(LEGACY)
    result = _run(["run", str(script), "--flag", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Ignoring //caffe2/caffe2/contrib/nccl:nccl_ops as it is not a valid file." \
        in result.stdout
    assert "argv ['--flag', '1']" in result.stdout
    assert "y [[0.0, 2.0]]" in result.stdout
    assert "gpu 1 0" in result.stdout


def test_python_m_graphnet_run_module(tmp_path):
    (tmp_path / "legacy_mod.py").write_text(LEGACY)
    env_path = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "graphnet", "run", "-m", "legacy_mod",
                             "a"], cwd=env_path, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=env_path))
    assert result.returncode == 0, result.stderr
    assert "argv ['a']" in result.stdout


def test_run_usage_errors(tmp_path):
    result = _run([], tmp_path)
    assert result.returncode == 2
    result = _run(["run"], tmp_path)
    assert result.returncode == 2 and "usage: graphnet run SCRIPT" in result.stdout
