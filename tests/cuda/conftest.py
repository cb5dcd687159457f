"""Fixtures of the tests that run graphnet's CUDA executor on the CuPy stand-in."""

import pytest

from graphnet.ops import _cuda

from . import hostgrid
from .standin import installed


@pytest.fixture(scope="session")
def compiled_kernels():
    """Every kernel source compiled once, in parallel (RawModule then finds them)."""
    hostgrid.compile_many(_cuda.SOURCES.values())


@pytest.fixture
def fake(monkeypatch, compiled_kernels):
    """One stand-in GPU."""
    yield from installed(monkeypatch)


@pytest.fixture(params=[{}, {"devices": 2}, {"devices": 2, "peer": False}],
                ids=["1gpu", "2gpus", "2gpus_no_peer"])
def fakes(monkeypatch, request, compiled_kernels):
    """One stand-in GPU, then two with peer access, then two without."""
    yield from installed(monkeypatch, **request.param)
