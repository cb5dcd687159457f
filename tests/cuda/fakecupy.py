"""A minimal CuPy stand-in backed by numpy and tests/cuda/hostgrid.py, so the ops'
Python launchers (the code that prepares arguments and calls ops._cuda.launch /
CudaSource.function with xp = cupy) run on the CPU against the real CUDA C kernels.

    cp = fakecupy.FakeCupy()
    fakecupy.install(monkeypatch, cp)   # ops._cuda.cupy_module() -> cp, fresh caches
    x = cp.asarray(np.arange(6, dtype=np.float32))
    ...                                  # call a launcher with xp=cp
    cp.launches                          # [Launch(name, grid, block, args), ...]

What it emulates, and how strictly:
* FakeArray, an ndarray subclass: `.data.ptr` is the buffer's address (numpy's
  memoryview `.data` is shadowed), `.get()` a plain numpy copy, `.device.id == 0`.
  Arrays made by the module (empty, zeros, full, asarray, copies, ufunc and
  reduction results, astype) live in fresh buffers aligned to 256 bytes, as CuPy's
  memory pool allocates, so float4 paths are taken exactly when they would be on a
  GPU; views keep their offsets (a misaligned view stays misaligned). `empty` is
  filled with 0xFF bytes (NaN floats, -1 integers): a launcher that reads what it
  never wrote shows it. Reductions and scalar indexing give 0-d arrays, as CuPy's.
* Mixing host and device arrays fails as on CuPy: a plain numpy array (ndim > 0)
  passed to a module function other than asarray/array, to a ufunc with a device
  array, or to a kernel, raises TypeError.
* The module has only the functions listed in _FUNCTIONS (numpy's, results wrapped):
  a launcher calling anything else fails with AttributeError naming it, rather than
  getting semantics guessed here. argsort is stable by default; FakeCupy(ties=
  "reverse") orders equal keys last-position-first (CuPy documents no stability), to
  show a launcher does not depend on it.
* RawModule(code=..., options=...) compiles `code` with hostgrid (named after the
  ops._cuda.SOURCES entry holding that code, so compilations are shared with the
  other host tests); its kernels check their arguments strictly (hostgrid's types,
  plus: array arguments must be device arrays) and record each launch in `launches`.
  `schedule` (None, "reverse", an int seed, "threads") orders the threads of the
  kernels that do not synchronize (hostgrid.HostKernel.__call__).

Executor runs (streams, events, pools, stream capture, graphs: what graphnet's CUDA
runner needs) use tests/cuda/fakecuda.py instead, built on this module's pieces.

Not emulated: streams, events, memory pools, multiple devices (cuda.Device() is
device 0, whatever id it is given), implicit host conversion (numpy functions called
directly on a FakeArray work, where CuPy would raise or dispatch), and take() of an
out-of-range index (numpy's IndexError here; ops/gather.py relies on CuPy not raising
under deferred checks, which is not reproduced: tests use valid indices there).
"""

import collections
import functools

import numpy as np

from graphnet.ops import _cuda

from . import hostgrid

__all__ = ["FakeArray", "FakeCupy", "Launch", "install", "ALIGN"]

ALIGN = 256  # CuPy's memory pool hands out 256-byte aligned blocks
POISON = 0xFF


class _Pointer(object):
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class _Device(object):
    """cupy.cuda.Device: always device 0 here; usable as a context manager."""

    def __init__(self, device=None):
        self.id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Stream(object):
    """cupy.cuda.Stream: the one (null) stream here."""
    ptr = 0


class _Cuda(object):
    Device = _Device

    @staticmethod
    def get_current_stream():
        return _Stream()


def _aligned(shape, dtype, fill=None):
    """A FakeArray of `shape` in a fresh buffer aligned to ALIGN bytes."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    skip = (-raw.ctypes.data) % ALIGN
    raw = raw[skip:skip + nbytes]
    if fill is not None:
        raw[...] = fill
    return raw.view(dtype).reshape(shape).view(FakeArray)


def _device_copy(x, dtype=None):
    """An aligned, C-contiguous FakeArray holding `x` (any array or scalar)."""
    src = np.asarray(_host(x) if isinstance(x, np.ndarray) else x, dtype=dtype)
    out = _aligned(src.shape, src.dtype)
    out.view(np.ndarray)[...] = src
    return out


def _host(x):
    """A FakeArray as a plain ndarray view (the same memory); anything else as is."""
    return x.view(np.ndarray) if isinstance(x, FakeArray) else x


def _reject_host(x, what):
    if isinstance(x, np.ndarray) and not isinstance(x, FakeArray) and x.ndim > 0:
        raise TypeError("%s: found a host numpy array of shape %s where CuPy needs a "
                        "device array (cupy raises TypeError: Unsupported type "
                        "numpy.ndarray). Fix: cp.asarray(x) first." % (what, x.shape))


def _unwrap(value, what):
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, what) for v in value)
    _reject_host(value, what)
    return _host(value)


def _wrap(value):
    """numpy results as device values: arrays copied into aligned buffers, numpy
    scalars as 0-d arrays (CuPy returns 0-d arrays); tuples element by element."""
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return _device_copy(value)
    return value


class FakeArray(np.ndarray):
    """A device array: numpy memory, CuPy's attributes."""

    @property
    def data(self):
        return _Pointer(self.ctypes.data)

    @property
    def device(self):
        return _Device(0)

    def get(self, stream=None, out=None):
        """A host copy (plain numpy, C-contiguous)."""
        if out is not None:
            out[...] = self.view(np.ndarray)
            return out
        return np.array(self.view(np.ndarray), copy=True, order="C")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = "cupy.%s.%s" % (ufunc.__name__, method)
        args = [_unwrap(x, where) for x in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o, where) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        if method == "at":
            return None
        return _wrap(result)

    def __getitem__(self, key):
        if isinstance(key, np.ndarray):
            _reject_host(key, "cupy.ndarray.__getitem__")
        elif isinstance(key, tuple):
            for k in key:
                if isinstance(k, np.ndarray):
                    _reject_host(k, "cupy.ndarray.__getitem__")
        result = super().__getitem__(key)
        if isinstance(result, np.ndarray) and not isinstance(result, FakeArray):
            return result.view(FakeArray)
        if not isinstance(result, np.ndarray):
            return _device_copy(result)  # a scalar element: a 0-d array, as in CuPy
        if result.base is None or not np.may_share_memory(result, self):
            return _device_copy(result)  # fancy indexing made a copy: a fresh buffer
        return result

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return _device_copy(self.view(np.ndarray).astype(dtype, casting=casting))

    def copy(self, order="C"):
        return _device_copy(self)


Launch = collections.namedtuple("Launch", ["name", "grid", "block", "args"])


class FakeKernel(object):
    """A hostgrid kernel called as CuPy's RawKernel, recording its launches."""

    def __init__(self, owner, kernel):
        self.owner, self.kernel, self.name = owner, kernel, kernel.name

    def __call__(self, grid, block, args, shared_mem=0):
        args = tuple(args)
        for k, a in enumerate(args):
            _reject_host(a, "%s argument %d" % (self.name, k))
            if isinstance(a, np.ndarray) and a.ndim == 0 and not isinstance(a, FakeArray):
                raise TypeError("%s argument %d: a 0-d numpy array (CuPy needs a numpy "
                                "scalar or a device array)" % (self.name, k))
        self.owner.launches.append(Launch(self.name, tuple(grid), tuple(block), args))
        schedule = None if self.kernel.sync else self.owner.schedule
        # hostgrid takes the arrays as ndarrays (it reads .ctypes.data and the flags)
        self.kernel(grid, block, args, schedule=schedule)


class FakeModule(object):
    """cupy.RawModule: get_function(name) -> a FakeKernel."""

    def __init__(self, owner, host_module, options):
        self.owner, self.host_module, self.options = owner, host_module, options

    def get_function(self, name):
        return FakeKernel(self.owner, self.host_module.get_function(name))


def raw_module(owner, module_class, code, options, name_expressions, unsupported):
    """cupy.RawModule(code=..., options=...) of a stand-in: `code` compiled by hostgrid
    once (named after its ops._cuda.SOURCES entry, so compilations are shared with the
    other host tests), module_class(owner, host_module, options) cached in
    owner.modules. Shared by FakeCupy and tests/cuda/fakecuda.py's FakeCuda."""
    if code is None or unsupported or name_expressions is not None:
        raise TypeError("%s.RawModule takes code= and options= only, found %s" % (
            type(owner).__name__, sorted(set(unsupported) | (
                {"name_expressions"} if name_expressions else set()))))
    module = owner.modules.get(code)
    if module is None:
        host = hostgrid.compile(code, name=_source_name(code))
        module = owner.modules[code] = module_class(owner, host, tuple(options))
    return module


def _source_name(code):
    for name, source in _cuda.SOURCES.items():
        if source.code == code:
            return name
    return None


# numpy functions the launchers call (CuPy's semantics are numpy's for these calls);
# results become device arrays
_FUNCTIONS = ("arange", "argmax", "bincount", "clip", "concatenate", "cumsum", "einsum",
              "maximum", "minimum", "searchsorted", "take", "where")


class FakeCupy(object):
    """The module stand-in. `launches` records every kernel launch; `schedule` orders
    the threads of non-synchronizing kernels; `ties` ("stable" or "reverse") orders
    equal keys in argsort."""

    ndarray = FakeArray
    cuda = _Cuda()

    def __init__(self, schedule=None, ties="stable"):
        if ties not in ("stable", "reverse"):
            raise ValueError("ties must be 'stable' or 'reverse', found %r" % ties)
        self.schedule, self.ties = schedule, ties
        self.launches = []
        self.modules = {}

    # --- kernels ----------------------------------------------------------------------
    def RawModule(self, code=None, options=(), name_expressions=None, **unsupported):
        return raw_module(self, FakeModule, code, options, name_expressions, unsupported)

    def kernel_names(self):
        return [launch.name for launch in self.launches]

    # --- allocation -----------------------------------------------------------------
    def empty(self, shape, dtype=np.float64, order="C"):
        return _aligned(shape, dtype, fill=POISON)

    def zeros(self, shape, dtype=np.float64, order="C"):
        return _aligned(shape, dtype, fill=0)

    def ones(self, shape, dtype=np.float64, order="C"):
        return self.full(shape, 1, dtype)

    def full(self, shape, fill_value, dtype=None, order="C"):
        if dtype is None:
            dtype = np.asarray(fill_value).dtype
        out = _aligned(shape, dtype)
        out.view(np.ndarray)[...] = fill_value
        return out

    def empty_like(self, a, dtype=None):
        return self.empty(a.shape, a.dtype if dtype is None else dtype)

    def zeros_like(self, a, dtype=None):
        return self.zeros(a.shape, a.dtype if dtype is None else dtype)

    def asarray(self, a, dtype=None, order=None):
        """A device array of `a`: itself when it already is one (of that dtype), else
        a copy (host data is uploaded)."""
        if isinstance(a, FakeArray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return _device_copy(a, dtype)

    def array(self, a, dtype=None, copy=True, order="K"):
        if not copy:
            return self.asarray(a, dtype)
        return _device_copy(a, dtype)

    def ascontiguousarray(self, a, dtype=None):
        """`a` itself when C-contiguous and of `dtype`, else a contiguous copy (CuPy's
        rule: launchers rely on it to update arrays in place)."""
        _reject_host(a, "cupy.ascontiguousarray")
        if not isinstance(a, FakeArray):
            raise TypeError("cupy.ascontiguousarray: expected a device array, found %s"
                            % type(a).__name__)
        if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return _device_copy(a, dtype)

    def argsort(self, a, axis=-1):
        _reject_host(a, "cupy.argsort")
        host = _host(a)
        if self.ties == "stable":
            return _wrap(np.argsort(host, axis=axis, kind="stable"))
        if host.ndim != 1:
            raise TypeError("fakecupy.argsort(ties='reverse') sorts 1-D arrays only")
        position = np.arange(host.shape[0])
        return _wrap(np.lexsort((-position, host)).astype(np.int64))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)  # (the import system probes __spec__ etc.)
        if name not in _FUNCTIONS:
            raise AttributeError(
                "fakecupy has no cupy.%s: the launcher calls a CuPy API this stand-in "
                "does not emulate. Add it to _FUNCTIONS only if CuPy's semantics are "
                "numpy's." % name)
        target = getattr(np, name)

        @functools.wraps(target)
        def call(*args, **kwargs):
            where = "cupy." + name
            args = [_unwrap(a, where) for a in args]
            kwargs = {k: _unwrap(v, where) for k, v in kwargs.items()}
            return _wrap(target(*args, **kwargs))
        return call


def install(monkeypatch, fake):
    """ops._cuda.cupy_module() returns `fake`, and every CudaSource starts with an
    empty module and kernel cache (restored by monkeypatch: nothing leaks between
    tests)."""
    monkeypatch.setattr(_cuda, "cupy_module", lambda: fake)
    for source in _cuda.SOURCES.values():
        monkeypatch.setattr(source, "_modules", {})
        monkeypatch.setattr(source, "_functions", {})
    return fake
