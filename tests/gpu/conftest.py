"""Real-GPU tests: the whole folder is skipped (one module-level skip) unless CuPy
sees a GPU. Each test starts with no virtual GPUs (so CUDA ops run on CuPy), four
logical GPUs mapped onto the real ones, and fresh executor settings."""

import signal

import pytest

from graphnet import config, core, registry, workspace
from graphnet.executors.cuda import probe, settings

# graphnet.ops is ops/ through setup.cfg's package_dir (the editable install); where
# run.sh fell back to PYTHONPATH, the registry aliases it: before any module imports it
registry.registered_types()


def _gpu_reason():
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed"
    probe.forget()
    return None if probe.load() is not None else probe.why_unavailable()


REASON = _gpu_reason()


def _time_limit(signum, frame):
    raise KeyboardInterrupt("SIGTERM: the step's time limit (tests/gpu/run.sh)")


def pytest_configure(config):
    # run.sh stops a step with SIGTERM at its limit: pytest then still prints its counts
    if REASON is None:
        signal.signal(signal.SIGTERM, _time_limit)


def pytest_collection_modifyitems(config, items):
    if REASON is None:
        return
    skip = pytest.mark.skip(reason="no usable GPU: %s" % REASON)
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Overrides tests/conftest.py's fixture: real GPUs instead of 4 virtual ones."""
    saved = dict(config._settings)
    names = set(core.Net._net_names_used)  # each test's nets keep their own names
    core.Net._net_names_used.clear()
    config.set_virtual_gpu_count(0)
    config.set_strict_devices(False)
    settings.reset()
    settings.set_gpu_map(4)
    workspace.SwitchWorkspace("default", True)
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()
    settings.reset()
    config._settings.clear()
    config._settings.update(saved)
    core.Net._net_names_used.clear()
    core.Net._net_names_used.update(names)
