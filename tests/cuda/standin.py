"""The CuPy stand-in (tests/cuda/fakecuda.py) installed for a test: shared by the
tests/cuda modules that run graphnet's CUDA executor on it (through the fixtures
`fake` and `fakes` of conftest.py), with tests/gpu/test_gpu_graphs.py,
test_gpu_runtime.py and test_gpu_index_checks.py loaded under other module names so
that their test functions run on it too."""

import importlib.util
import os
import sys

from graphnet import config, core, workspace
from graphnet.executors.cuda import settings

from . import fakecuda

HERE = os.path.dirname(os.path.abspath(__file__))
_MISSING = object()
CPU = core.DeviceOption(0)


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


def plan_of(net):
    return workspace._ws()._nets[net.Name()]


def _gpu_tests(name):
    """tests/gpu/<name>.py as a module of its own, imported with a stand-in as CuPy."""
    spec = importlib.util.spec_from_file_location(
        "tests.cuda._fakecuda_" + name, os.path.join(HERE, "..", "gpu", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("cupy", _MISSING)
    sys.modules["cupy"] = fakecuda.FakeCuda()
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is _MISSING:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved
    return module


GPU_GRAPHS = _gpu_tests("test_gpu_graphs")
GPU_RUNTIME = _gpu_tests("test_gpu_runtime")
GPU_INDEX_CHECKS = _gpu_tests("test_gpu_index_checks")


def installed(monkeypatch, **options):
    """A stand-in installed as CuPy, with tests/gpu/conftest.py's state: no virtual
    GPUs, fresh settings, 4 logical GPUs mapped onto the stand-in's physical ones,
    and (unlike tests/gpu) net names starting afresh, since the GPU tests run their
    nets by name. Ends asserting that the stand-in found no race and no freed
    memory used by a graph."""
    fake = fakecuda.FakeCuda(**options)
    for name in ("GRAPHNET_CUDA", "GRAPHNET_GPU_MAP", "GRAPHNET_CUDA_DETERMINISTIC",
                 "GRAPHNET_CUDA_CHECKS", "GRAPHNET_CUDA_STAGED_COPIES",
                 "GRAPHNET_CUDA_GRAPHS"):
        monkeypatch.delenv(name, raising=False)
    for module in (GPU_GRAPHS, GPU_RUNTIME, GPU_INDEX_CHECKS):
        monkeypatch.setattr(module, "cp", fake)
    names = set(core.Net._net_names_used)
    with fakecuda.installed(monkeypatch, fake):
        settings.reset()
        settings.set_gpu_map(4)
        config.set_virtual_gpu_count(0)
        config.set_strict_devices(False)
        core.Net._net_names_used.clear()
        workspace.SwitchWorkspace("default", True)
        workspace.ResetWorkspace()
        try:
            yield fake
        finally:
            workspace.ResetWorkspace()
            settings.reset()
            core.Net._net_names_used.clear()
            core.Net._net_names_used.update(names)
    assert not fake.problems, "\n\n".join(fake.problems)
