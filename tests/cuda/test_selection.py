"""Backend selection, the logical -> physical map and settings, on a machine where
CuPy is absent or sees no GPU (CI): every path that needs no GPU."""

import importlib.util

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.devices import CUDA_TYPE, Device
from graphnet.errors import GraphnetError
from graphnet.executors import backends
from graphnet.executors.cuda import probe, settings
from graphnet.executors.cuda.probe import DeviceMap


@pytest.fixture(autouse=True)
def _fresh_cuda_state(monkeypatch):
    for name in ("GRAPHNET_CUDA", "GRAPHNET_GPU_MAP", "GRAPHNET_CUDA_DETERMINISTIC",
                 "GRAPHNET_CUDA_CHECKS", "GRAPHNET_CUDA_STAGED_COPIES"):
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    probe.forget()
    yield
    settings.reset()
    probe.forget()


class _FakeProbe(object):
    """probe.load / device_map as on a machine with `physical` GPUs."""

    def __init__(self, monkeypatch, physical):
        monkeypatch.setattr(probe, "load", lambda: object())
        monkeypatch.setattr(probe, "device_map",
                            lambda: DeviceMap(physical, settings.gpu_map()))


def test_parse_gpu_map_forms():
    assert settings.parse_gpu_map(None) is None
    assert settings.parse_gpu_map("") is None
    assert settings.parse_gpu_map("8") == ("count", 8)
    assert settings.parse_gpu_map(4) == ("count", 4)
    assert settings.parse_gpu_map("0,0,1,1") == ("list", (0, 0, 1, 1))
    assert settings.parse_gpu_map("3,") == ("list", (3,))
    assert settings.parse_gpu_map([2, 0]) == ("list", (2, 0))


@pytest.mark.parametrize("bad, match", [
    ("two", "comma-separated list"), (0, "must be >= 1"), ([], "empty list"),
    ([0, -1], "whole numbers >= 0"), (True, "a count or a list")])
def test_parse_gpu_map_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        settings.parse_gpu_map(bad)


def test_device_map_default_modulo_and_list():
    assert DeviceMap(2, None).ids == (0, 1)
    assert DeviceMap(3, ("count", 8)).ids == (0, 1, 2, 0, 1, 2, 0, 1)
    assert DeviceMap(1, ("count", 4)).physical_of(3) == 0
    assert DeviceMap(4, ("list", (3, 3, 0))).physical_of(1) == 3
    with pytest.raises(ValueError, match="names physical GPU 2, but this machine has 2"):
        DeviceMap(2, ("list", (0, 2)))


def test_env_settings_are_read(monkeypatch):
    monkeypatch.setenv("GRAPHNET_GPU_MAP", "0,0")
    monkeypatch.setenv("GRAPHNET_CUDA_DETERMINISTIC", "1")
    monkeypatch.setenv("GRAPHNET_CUDA_CHECKS", "deferred")
    monkeypatch.setenv("GRAPHNET_CUDA_STAGED_COPIES", "yes")
    assert settings.gpu_map() == ("list", (0, 0))
    assert settings.deterministic() and settings.staged_copies()
    assert settings.checks_mode() == "deferred"
    settings.reset()
    monkeypatch.setenv("GRAPHNET_CUDA_CHECKS", "later")
    with pytest.raises(ValueError, match="sync/deferred"):
        settings.checks_mode()
    monkeypatch.setenv("GRAPHNET_CUDA_DETERMINISTIC", "maybe")
    with pytest.raises(ValueError, match="GRAPHNET_CUDA_DETERMINISTIC must be 0 or 1"):
        settings.deterministic()


def test_cuda_switched_off_is_reported(monkeypatch):
    monkeypatch.setenv("GRAPHNET_CUDA", "0")
    assert probe.load() is None
    assert "GRAPHNET_CUDA=0" in probe.why_unavailable()


def test_without_usable_cupy_gpu_ops_need_virtual_gpus():
    config.set_virtual_gpu_count(0)
    assert probe.load() is None  # CI: CuPy absent, or present without a GPU
    why = probe.why_unavailable()
    if importlib.util.find_spec("cupy") is None:
        assert "CuPy is not installed" in why and "pip install cupy" in why
    else:
        assert "CuPy is installed but" in why
    assert workspace.NumGpuDevices() == 0
    with pytest.raises(GraphnetError, match="this process has 0 GPUs.*real GPUs unused: "
                                            "CuPy") as info:
        backends.backend_for(Device(CUDA_TYPE, 0))
    assert "GRAPHNET_VIRTUAL_GPUS=1" in str(info.value)
    with pytest.raises(GraphnetError, match="FeedBlob"):
        workspace.FeedBlob("x", np.ones(2, np.float32), core.DeviceOption(CUDA_TYPE, 0))


def test_virtual_gpus_win_over_real_ones(monkeypatch):
    _FakeProbe(monkeypatch, physical=2)
    config.set_virtual_gpu_count(3)
    assert workspace.NumGpuDevices() == 3
    assert backends.backend_for(Device(CUDA_TYPE, 2)) is backends.NUMPY
    assert backends.gpu_backend_name() == "numpy"


def test_real_gpus_count_logical_devices(monkeypatch):
    _FakeProbe(monkeypatch, physical=2)
    config.set_virtual_gpu_count(0)
    assert workspace.NumGpuDevices() == 2
    workspace.SetGpuDeviceMapping(8)
    assert workspace.NumGpuDevices() == 8 and workspace.has_gpu_support
    workspace.SetGpuDeviceMapping([1, 1, 0])
    assert workspace.NumGpuDevices() == 3
    with pytest.raises(GraphnetError, match="3 logical GPUs map onto this machine's 2 "
                                            "real GPUs.*GRAPHNET_GPU_MAP=4"):
        backends.backend_for(Device(CUDA_TYPE, 3))
    workspace.SetGpuDeviceMapping(None)
    assert workspace.NumGpuDevices() == 2


def test_cpu_nets_never_probe_for_a_gpu_runner():
    """Plans of numpy-only runs are not scanned for GPU steps (nothing slows down)."""
    from graphnet.executors import _cuda_state
    assert not _cuda_state  # no CupyBackend was ever built in this process
    net = core.Net("cpu_only")
    net.ConstantFill([], "y", shape=[2], value=1.0)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), np.ones(2, np.float32))


def test_numpy_backend_brings_device_values_home():
    class FakeDeviceArray(object):
        __module__ = "cupy._core.core"

        def get(self):
            return np.arange(3)
    value = FakeDeviceArray()
    np.testing.assert_array_equal(backends.NUMPY.read_from(value, None, None), np.arange(3))
    np.testing.assert_array_equal(backends.NUMPY.copy_to(value, None), np.arange(3))
