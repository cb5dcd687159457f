"""Matrix products that a CUDA graph may capture: cuBLAS called without CuPy.

CuPy refuses every cuBLAS call while the current stream captures (its
cublas.setStream raises NotImplementedError, "calling cuBLAS API during stream
capture is currently unsupported", since CuPy 10), yet cuBLAS itself supports
stream capture once the handle has a workspace of its own (cuBLAS documentation,
"CUDA Graphs Support"; PyTorch captures its GEMMs the same way). Under capture,
FC, FCGradient and BatchMatMul therefore multiply through matmul() below:
  * the libcublas that CuPy loaded, called through ctypes on CuPy's handle for the
    current device;
  * before every product: the current stream, host pointer mode, and a workspace
    kept per stream (cublasSetStream resets the workspace, so it is set again);
  * the compute type and algorithm CuPy's own matmul picks: pure float32 unless
    CUPY_TF32=1, tensor-op algorithms from compute capability 8.0.
Eager products take the same path (GRAPHNET_CUDA_DIRECT_BLAS=0: CuPy's matmul):
CuPy's matmul costs tens of microseconds of host time per call (cupy/cupy#5075,
#8191), most of a small net's FC, and replays then compute what eager runs did. A
device's first eager product checks the binding once against numpy on small products
of every layout; should it fail (no libcublas found, a wrong result), a warning says
so and eager products use CuPy's matmul.

Row-major operands are column-major transposes, so C = A @ B is computed as
C^T = B^T A^T: each operand whose last two axes are C-contiguous is passed as is
(op N), one whose transpose is (a swapaxes view, e.g. W.T) with op T, anything else
is first copied contiguous (a kernel, captured like the others).
"""

import ctypes
import os
import threading
import warnings

import numpy as np

from graphnet.executors.cuda import checks, settings

__all__ = ["matmul", "direct", "eager_ok", "binding_ok", "CublasError",
           "WORKSPACE_BYTES"]

WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommended size on Hopper (smaller GPUs need less)

# cublas_api.h / library_types.h constants (stable ABI values)
_OP_N, _OP_T = 0, 1
_POINTER_MODE_HOST = 0  # alpha and beta read from host memory (a capture bakes them in)
_CUDA_R_32F, _CUDA_R_64F = 0, 1
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70
_GEMM_DEFAULT, _GEMM_DEFAULT_TENSOR_OP = -1, 99
_TYPES = {np.dtype(np.float32): (_CUDA_R_32F, ctypes.c_float),
          np.dtype(np.float64): (_CUDA_R_64F, ctypes.c_double)}

_lock = threading.Lock()
# "lib": the ctypes library; ("ws", device, stream ptr): workspace; ("cc", device): compute
# capability; ("ok", device): the binding's check passed; "compute32": float32's type
_state = {}


class CublasError(RuntimeError):
    """A cuBLAS call returned an error status."""


def direct(cp, a, b):
    """True when a @ b goes through matmul(): operands it takes, and either a capture
    in progress (CuPy would refuse) on a device whose binding passed its check (made
    before the capture: graphs calls binding_ok; unchecked or failed, CuPy's matmul
    refuses the capture, which leaves the segment eager), or eager products allowed
    (eager_ok)."""
    if not (a.dtype == b.dtype and a.dtype in _TYPES and 2 <= a.ndim <= 3
            and 2 <= b.ndim <= 3):
        return False
    if checks.is_capturing():
        return _state.get(("ok", cp.cuda.runtime.getDevice())) is True
    return eager_ok(cp)


def eager_ok(cp):
    """True when eager products go through matmul(): the setting allows it and the
    current device's one-time check of the binding passed."""
    return settings.direct_blas() and binding_ok(cp)


def binding_ok(cp):
    """The current device's one-time check of the binding (see _binding_works), made
    on its first call; never under capture (it reads results back)."""
    device = cp.cuda.runtime.getDevice()
    ok = _state.get(("ok", device))
    if ok is None:
        ok = _state[("ok", device)] = _binding_works(cp, device)
    return ok


def _binding_works(cp, device):
    """matmul() against numpy on small products in every layout the ops pass (N and T
    operands, batches, a broadcast batch); False, with a warning, when it fails."""
    rng = np.random.default_rng(0)
    try:
        for shape_a, shape_b, swap_a, swap_b in (
                ((5, 3), (3, 4), False, False), ((5, 3), (3, 4), True, False),
                ((5, 3), (3, 4), False, True), ((5, 3), (3, 4), True, True),
                ((2, 3, 4), (2, 4, 5), False, True), ((2, 3, 4), (4, 5), True, False)):
            a = rng.standard_normal(shape_a).astype(np.float32)
            b = rng.standard_normal(shape_b).astype(np.float32)
            da, db = _laid_out(cp, a, swap_a), _laid_out(cp, b, swap_b)
            got = matmul(cp, da, db).get()
            want = np.matmul(a.astype(np.float64), b.astype(np.float64))
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
                raise CublasError("%s @ %s (transposed: %s, %s) differs from numpy by %.3g"
                                  % (shape_a, shape_b, swap_a, swap_b,
                                     float(np.max(np.abs(got - want)))))
    except Exception as exc:
        warnings.warn("graphnet: cuBLAS called directly failed its check on GPU %d (%s: "
                      "%s); eager matrix products use CuPy's matmul there, and CUDA graphs "
                      "cannot capture them" % (device, type(exc).__name__, exc),
                      RuntimeWarning, stacklevel=3)
        return False
    return True


def _laid_out(cp, host, transposed):
    """A device copy of `host`, as a transposed view of its transpose when asked."""
    if not transposed:
        return cp.asarray(host)
    return cp.asarray(np.ascontiguousarray(np.swapaxes(host, -1, -2))).swapaxes(-1, -2)


def matmul(cp, a, b):
    """a @ b for float32/float64 device arrays of 2 dims, or 3 with one batch axis
    each (equal, or 1 broadcast), on the current device and stream, through cuBLAS
    directly (see the module docstring); a new C-contiguous array."""
    if a.dtype != b.dtype or a.dtype not in _TYPES:
        raise TypeError("cuBLAS matmul takes two float32 or two float64 arrays, "
                        "found %s and %s" % (a.dtype, b.dtype))
    if a.ndim not in (2, 3) or b.ndim not in (2, 3) or a.shape[-1] != b.shape[-2]:
        raise ValueError("cuBLAS matmul: shapes %s and %s do not multiply"
                         % (a.shape, b.shape))
    batch = max(a.shape[0] if a.ndim == 3 else 1, b.shape[0] if b.ndim == 3 else 1)
    for x in (a, b):
        if x.ndim == 3 and x.shape[0] not in (1, batch):
            raise ValueError("cuBLAS matmul: batch sizes %s and %s differ"
                             % (a.shape[0], b.shape[0]))
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    shape = ((batch,) if a.ndim == 3 or b.ndim == 3 else ()) + (m, n)
    c = cp.empty(shape, a.dtype)
    if c.size == 0:
        return c
    if k == 0:
        c.fill(0)
        return c
    a, op_a, ld_a, stride_a = _operand(cp, a)
    b, op_b, ld_b, stride_b = _operand(cp, b)
    cuda_type, scalar = _TYPES[c.dtype]
    one, zero = scalar(1.0), scalar(0.0)
    lib = _library(cp)
    handle = ctypes.c_void_p(cp.cuda.device.get_cublas_handle())
    stream = cp.cuda.get_current_stream()
    device = cp.cuda.runtime.getDevice()
    workspace = _workspace(cp, device, stream)
    _check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)), "cublasSetStream")
    _check(lib.cublasSetPointerMode_v2(handle, _POINTER_MODE_HOST), "cublasSetPointerMode")
    _check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace.data.ptr),
                                     ctypes.c_size_t(workspace.nbytes)),
           "cublasSetWorkspace")
    compute, algo = _compute_type(c.dtype), _algorithm(cp, device)
    # C^T (n x m, ld n) = op_b(B^T) (n x k) . op_a(A^T) (k x m)
    if len(shape) == 2:
        status = lib.cublasGemmEx(
            handle, op_b, op_a, n, m, k, ctypes.byref(one),
            ctypes.c_void_p(b.data.ptr), cuda_type, ld_b,
            ctypes.c_void_p(a.data.ptr), cuda_type, ld_a, ctypes.byref(zero),
            ctypes.c_void_p(c.data.ptr), cuda_type, n, compute, algo)
        _check(status, "cublasGemmEx")
    else:
        status = lib.cublasGemmStridedBatchedEx(
            handle, op_b, op_a, n, m, k, ctypes.byref(one),
            ctypes.c_void_p(b.data.ptr), cuda_type, ld_b, ctypes.c_longlong(stride_b),
            ctypes.c_void_p(a.data.ptr), cuda_type, ld_a, ctypes.c_longlong(stride_a),
            ctypes.byref(zero), ctypes.c_void_p(c.data.ptr), cuda_type, n,
            ctypes.c_longlong(m * n), batch, compute, algo)
        _check(status, "cublasGemmStridedBatchedEx")
    return c


def _operand(cp, x):
    """(array, op, leading dimension, batch stride in elements) of one operand as
    cuBLAS reads it: its last two axes C-contiguous (op N, ld = columns) or their
    transpose so (op T, ld = rows); otherwise a C-contiguous copy. A batch axis of
    size 1 has stride 0 (broadcast)."""
    layout = _layout(x)
    if layout is None:
        x = cp.ascontiguousarray(x)
        layout = _layout(x)
    return (x,) + layout


def _layout(x):
    """(op, ld, batch stride) of x as it lies in memory, or None."""
    item = x.itemsize
    rows, cols = x.shape[-2], x.shape[-1]
    s_row, s_col = x.strides[-2], x.strides[-1]
    batch_stride = 0
    if x.ndim == 3 and x.shape[0] > 1:
        if x.strides[0] % item or x.strides[0] < 0:
            return None  # (reversed or unaligned batches: copied)
        batch_stride = x.strides[0] // item
    if (s_col == item or cols == 1) and (s_row == cols * item or rows == 1):
        return _OP_N, max(cols, 1), batch_stride
    if (s_row == item or rows == 1) and (s_col == rows * item or cols == 1):
        return _OP_T, max(rows, 1), batch_stride
    return None


def _check(status, what):
    if status != 0:
        raise CublasError("%s returned cuBLAS status %d (see cublasStatus_t in "
                          "cublas_api.h)" % (what, status))


def _compute_type(dtype):
    if dtype == np.float64:
        return _COMPUTE_64F
    # as CuPy: float32 products in float32 unless CUPY_TF32=1 asks for TF32 tensor cores
    # (read once, as CuPy reads it when imported)
    compute = _state.get("compute32")
    if compute is None:
        compute = _state["compute32"] = (
            _COMPUTE_32F_FAST_TF32 if os.environ.get("CUPY_TF32", "0") != "0"
            else _COMPUTE_32F)
    return compute


def _algorithm(cp, device):
    cc = _state.get(("cc", device))
    if cc is None:
        cc = _state[("cc", device)] = int(cp.cuda.Device(device).compute_capability)
    return _GEMM_DEFAULT_TENSOR_OP if cc >= 80 else _GEMM_DEFAULT


def _workspace(cp, device, stream):
    """The workspace of `stream`'s products on `device` (the current one), allocated on
    first use and kept (a graph captured with it reads it at every replay). Keyed by
    device too: the default streams have the same handle on every device."""
    key = ("ws", device, stream.ptr)
    workspace = _state.get(key)
    if workspace is None:
        with _lock:
            workspace = _state.get(key)
            if workspace is None:
                workspace = _state[key] = cp.empty((WORKSPACE_BYTES,), np.uint8)
    return workspace


def _library(cp):
    """ctypes handle on the libcublas CuPy loaded (found among the process's mapped
    libraries once CuPy made its cuBLAS handle, else by its usual names)."""
    lib = _state.get("lib")
    if lib is not None:
        return lib
    with _lock:
        lib = _state.get("lib")
        if lib is None:
            # CuPy's handle first: CuPy loads libcublas then, wherever it lives (CuPy 14
            # through cuda.pathfinder when the package attribute is first read, e.g. from
            # a pip-installed nvidia-cublas the dynamic loader does not search; importing
            # cupy_backends.cuda.libs.cublas directly would skip that and fail to load)
            cp.cuda.device.get_cublas_handle()
            major = cp.cuda.runtime.runtimeGetVersion() // 1000
            lib = _state["lib"] = _declare(ctypes.CDLL(_library_path(major=major)))
    return lib


def _library_path(maps_file="/proc/self/maps", major=None):
    """The mapped libcublas of CUDA `major` (cuBLAS's major version is CUDA's: the
    one CuPy's runtime uses, not another CUDA's that e.g. PyTorch may have mapped),
    then any mapped one, then one the loader finds by name."""
    mapped = []
    try:
        with open(maps_file) as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if os.path.basename(path).startswith("libcublas.so") and path not in mapped:
                    mapped.append(path)
    except OSError:
        pass
    own = [path for path in mapped
           if os.path.basename(path).startswith("libcublas.so.%s." % major)
           or os.path.basename(path) == "libcublas.so.%s" % major] or mapped
    if len({os.path.realpath(path) for path in own}) > 1:
        own = _pathfinders(own) or own  # two copies of one version: CuPy's, if known
    if own:
        return own[0]
    names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"]
    if major is not None:
        names.insert(0, "libcublas.so.%d" % major)
    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    raise OSError("libcublas is not loaded in this process and was not found by name: "
                  "CuPy's cuBLAS is needed to capture matrix products in CUDA graphs")


def _pathfinders(paths):
    """Those of `paths` that are the libcublas cuda.pathfinder loaded (CuPy 14 loads
    its cuBLAS through it), or []."""
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        chosen = os.path.realpath(load_nvidia_dynamic_lib("cublas").abs_path)
    except Exception:  # (no pathfinder, or it found none: CuPy did not use it)
        return []
    return [path for path in paths if os.path.realpath(path) == chosen]


def _declare(lib):
    p, i, ll, st = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong, ctypes.c_size_t
    lib.cublasSetStream_v2.argtypes = [p, p]
    lib.cublasSetWorkspace_v2.argtypes = [p, p, st]
    lib.cublasSetPointerMode_v2.argtypes = [p, i]
    lib.cublasGemmEx.argtypes = [p, i, i, i, i, i, p, p, i, i, p, i, i, p, p, i, i, i, i]
    lib.cublasGemmStridedBatchedEx.argtypes = [
        p, i, i, i, i, i, p, p, i, i, ll, p, i, i, ll, p, p, i, i, ll, i, i, i]
    for fn in (lib.cublasSetStream_v2, lib.cublasSetWorkspace_v2,
               lib.cublasSetPointerMode_v2, lib.cublasGemmEx, lib.cublasGemmStridedBatchedEx):
        fn.restype = ctypes.c_int
    return lib
