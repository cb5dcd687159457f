"""Settings of the CuPy executor, read from the environment at first use and
settable from Python (workspace.SetGpuDeviceMapping). Imports nothing.

GRAPHNET_CUDA=0             never use CuPy, even on a machine with GPUs (numpy only)
GRAPHNET_GPU_MAP=N          N logical GPUs; logical d runs on physical d % P
GRAPHNET_GPU_MAP=0,0,1,1    logical d runs on the d-th listed physical GPU
GRAPHNET_CUDA_DETERMINISTIC=1   scatter kernels sort by row and add in index order
                                instead of atomics (bit-reproducible, slower)
GRAPHNET_CUDA_CHECKS=sync|deferred   index bounds: checked before the kernel runs
                                (Caffe2's message, blobs untouched on failure; on
                                the host's copy of indices fed from the host, else
                                one small device->host read per op), or by the
                                kernels themselves and reported at the end of the run
GRAPHNET_CUDA_GRAPHS=1          one-GPU nets capture their graph-safe ops as CUDA graphs
                                on their second run and replay them after
                                (graphnet.executors.cuda.graphs; checks deferred there)
GRAPHNET_CUDA_STAGED_COPIES=1   copies between GPUs go through pinned host memory even
                                where peer access works (diagnosis; tests on 1 GPU)
GRAPHNET_CUDA_DIRECT_BLAS=0     eager matrix products through CuPy's matmul instead of
                                cuBLAS called directly (graphnet.executors.cuda.blas;
                                CUDA graph captures use cuBLAS directly either way)
"""

import os

__all__ = ["cuda_enabled", "gpu_map", "set_gpu_map", "parse_gpu_map", "deterministic",
           "set_deterministic", "checks_mode", "set_checks_mode", "staged_copies",
           "set_staged_copies", "cuda_graphs", "set_cuda_graphs", "direct_blas",
           "set_direct_blas", "reset"]

_settings = {}


def _env_flag(name, default):
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError("%s must be 0 or 1, found %r" % (name, raw))


def reset():
    """Forget every setting (the next read goes back to the environment)."""
    _settings.clear()


def cuda_enabled():
    """False when GRAPHNET_CUDA=0 asks for numpy only."""
    if "enabled" not in _settings:
        _settings["enabled"] = _env_flag("GRAPHNET_CUDA", True)
    return _settings["enabled"]


def parse_gpu_map(spec):
    """A mapping spec -> ("count", N) or ("list", (p0, p1, ...)) or None (default).

    Accepts an int N >= 1, a list/tuple of physical ids, or their text forms
    "4" and "0,0,1,1" (GRAPHNET_GPU_MAP). None or "" means one logical GPU per
    physical GPU.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, str):
        text = spec.strip()
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                "GPU map %r: expected a count (\"8\") or a comma-separated list of "
                "physical GPU ids (\"0,0,1,1\"). Fix: set GRAPHNET_GPU_MAP to one of "
                "those." % spec)
        spec = values[0] if len(values) == 1 and "," not in text else values
    if isinstance(spec, bool):
        raise ValueError("GPU map: expected a count or a list of ids, found %r" % spec)
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError("GPU map: the logical GPU count must be >= 1, found %d. Fix: "
                             "pass a positive count." % spec)
        return ("count", spec)
    ids = tuple(spec)
    if not ids:
        raise ValueError("GPU map: an empty list maps no logical GPU. Fix: list at least "
                         "one physical id, e.g. [0].")
    for i in ids:
        if isinstance(i, bool) or int(i) != i or i < 0:
            raise ValueError("GPU map: physical ids must be whole numbers >= 0, found %r "
                             "in %r." % (i, list(ids)))
    return ("list", tuple(int(i) for i in ids))


def gpu_map():
    """The parsed logical -> physical mapping spec (None: one per physical GPU)."""
    if "map" not in _settings:
        _settings["map"] = parse_gpu_map(os.environ.get("GRAPHNET_GPU_MAP"))
    return _settings["map"]


def set_gpu_map(spec):
    _settings["map"] = parse_gpu_map(spec)


def _flag(key, env):
    """A boolean setting: set from Python, else read once from `env` (default off)."""
    if key not in _settings:
        _settings[key] = _env_flag(env, False)
    return _settings[key]


def deterministic():
    return _flag("deterministic", "GRAPHNET_CUDA_DETERMINISTIC")


def set_deterministic(on=True):
    _settings["deterministic"] = bool(on)


_CHECK_MODES = ("sync", "deferred")


def checks_mode():
    if "checks" not in _settings:
        mode = os.environ.get("GRAPHNET_CUDA_CHECKS", "").strip().lower() or "sync"
        set_checks_mode(mode)
    return _settings["checks"]


def set_checks_mode(mode):
    if mode not in _CHECK_MODES:
        raise ValueError("GRAPHNET_CUDA_CHECKS must be one of %s, found %r"
                         % ("/".join(_CHECK_MODES), mode))
    _settings["checks"] = mode


def staged_copies():
    return _flag("staged", "GRAPHNET_CUDA_STAGED_COPIES")


def set_staged_copies(on=True):
    _settings["staged"] = bool(on)


def cuda_graphs():
    return _flag("graphs", "GRAPHNET_CUDA_GRAPHS")


def set_cuda_graphs(on=True):
    _settings["graphs"] = bool(on)


def direct_blas():
    """Eager matrix products through cuBLAS called directly (default on)."""
    if "direct_blas" not in _settings:
        _settings["direct_blas"] = _env_flag("GRAPHNET_CUDA_DIRECT_BLAS", True)
    return _settings["direct_blas"]


def set_direct_blas(on=True):
    _settings["direct_blas"] = bool(on)
