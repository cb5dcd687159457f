"""Shared fixtures: a fresh workspace and 4 emulated GPUs for every test."""

import pytest

from graphnet import config, workspace


@pytest.fixture(autouse=True)
def _fresh_state():
    saved = dict(config._settings)
    config.set_virtual_gpu_count(4)
    config.set_strict_devices(False)
    workspace.SwitchWorkspace("default", True)
    workspace.ResetWorkspace()
    yield
    workspace.ResetWorkspace()
    config._settings.clear()
    config._settings.update(saved)
