"""The stand-in's libcublas: the five entry points graphnet.executors.cuda.blas calls
through ctypes, written from the cuBLAS documentation (column-major matrices,
leading dimensions, strided batches), so the row-major to column-major mapping of
blas.py is checked against cuBLAS's conventions, not against itself.

* cublasSetStream_v2(handle, stream): later products of `handle` run on `stream`;
  as in cuBLAS 12, it also drops the workspace set on the handle.
* cublasSetWorkspace_v2(handle, ptr, bytes): must lie in live device memory.
* cublasSetPointerMode_v2(handle, mode): recorded; products take host scalars only.
* cublasGemmEx / cublasGemmStridedBatchedEx: C = alpha op(A) op(B) + beta C with
  float32 (CUDA_R_32F, compute 32F or 32F_FAST_TF32) or float64 (CUDA_R_64F, compute
  64F) operands, each matrix read through numpy strides from fake device memory as an
  operation of the stream (captured and replayed like a kernel, race-checked);
  beta == 0 never reads C. Statuses as cuBLAS returns them: INVALID_VALUE (7) for
  negative sizes or leading dimensions too small, NOT_SUPPORTED (15) for other types.
  A product made while its stream captures, on a handle without a workspace of its
  own, is a StandInError (cuBLAS may allocate one there, which a graph cannot hold).
"""

import ctypes

import numpy as np

from . import fakecuda as fc

INVALID_VALUE, NOT_SUPPORTED = 7, 15
_TYPES = {0: (np.dtype(np.float32), (68, 77)), 1: (np.dtype(np.float64), (70,))}


def _value(arg):
    """The plain value of a ctypes argument (c_void_p, c_longlong, byref(c_float), int)."""
    obj = getattr(arg, "_obj", None)  # byref(x)
    if obj is not None:
        return obj.value
    if isinstance(arg, ctypes._SimpleCData):
        return arg.value or 0
    return int(arg)


class FakeCublas(object):
    """Bound to one FakeCuda. `calls`: (entry point, stream ptr) of every product;
    `last_compute`: the compute type of the last one."""

    def __init__(self, fake):
        self.fake = fake
        self.streams = {}     # handle -> stream ptr
        self.workspaces = {}  # handle -> (ptr, bytes) or None
        self.modes = {}       # handle -> pointer mode (0: host scalars, the default)
        self.calls = []
        self.last_compute = None

    def cublasSetStream_v2(self, handle, stream):
        handle = _value(handle)
        self.streams[handle] = _value(stream)
        self.workspaces[handle] = None  # (cuBLAS 12: back to its own pool)
        return 0

    def cublasSetPointerMode_v2(self, handle, mode):
        self.modes[_value(handle)] = _value(mode)
        return 0

    def cublasSetWorkspace_v2(self, handle, ptr, nbytes):
        ptr, nbytes = _value(ptr), _value(nbytes)
        self.fake._find(ptr, nbytes, "cublasSetWorkspace")
        self.workspaces[_value(handle)] = (ptr, nbytes)
        return 0

    def cublasGemmEx(self, handle, transa, transb, m, n, k, alpha, a, a_type, lda, b,
                     b_type, ldb, beta, c, c_type, ldc, compute, algo):
        return self._gemm("cublasGemmEx", handle, transa, transb, m, n, k, alpha, a,
                          a_type, lda, 0, b, b_type, ldb, 0, beta, c, c_type, ldc, 0, 1,
                          compute)

    def cublasGemmStridedBatchedEx(self, handle, transa, transb, m, n, k, alpha, a,
                                   a_type, lda, stride_a, b, b_type, ldb, stride_b, beta,
                                   c, c_type, ldc, stride_c, batch, compute, algo):
        return self._gemm("cublasGemmStridedBatchedEx", handle, transa, transb, m, n, k,
                          alpha, a, a_type, lda, stride_a, b, b_type, ldb, stride_b, beta,
                          c, c_type, ldc, stride_c, batch, compute)

    def _gemm(self, name, handle, transa, transb, m, n, k, alpha, a, a_type, lda,
              stride_a, b, b_type, ldb, stride_b, beta, c, c_type, ldc, stride_c, batch,
              compute):
        fake = self.fake
        handle = _value(handle)
        transa, transb, m, n, k = (_value(v) for v in (transa, transb, m, n, k))
        lda, ldb, ldc, batch = (_value(v) for v in (lda, ldb, ldc, batch))
        stride_a, stride_b, stride_c = (_value(v) for v in (stride_a, stride_b, stride_c))
        types = {_value(a_type), _value(b_type), _value(c_type)}
        if len(types) != 1 or next(iter(types)) not in _TYPES:
            return NOT_SUPPORTED
        dtype, computes = _TYPES[types.pop()]
        if _value(compute) not in computes or transa not in (0, 1) or transb not in (0, 1):
            return NOT_SUPPORTED
        rows_a, cols_a = (m, k) if transa == 0 else (k, m)
        rows_b, cols_b = (k, n) if transb == 0 else (n, k)
        if min(m, n, k, batch) < 0 or lda < max(1, rows_a) or ldb < max(1, rows_b) \
                or ldc < max(1, m):
            return INVALID_VALUE
        stream = fake._stream_of(self.streams.get(handle, 0))
        if stream.capture is not None and self.workspaces.get(handle) is None:
            message = ("%s captured on a handle without a workspace of its own "
                       "(cublasSetWorkspace after cublasSetStream): cuBLAS may allocate "
                       "one during the capture" % name)
            fake.problems.append(message)
            raise fc.StandInError(message)
        if self.modes.get(handle, 0) != 0:
            raise fc.StandInError("%s with device pointer mode: the stand-in reads alpha "
                                  "and beta from host memory only" % name)
        if m == 0 or n == 0 or batch == 0:
            return 0
        one = (rows_a, cols_a, lda, stride_a), (rows_b, cols_b, ldb, stride_b)
        alpha, beta = dtype.type(_value(alpha)), dtype.type(_value(beta))
        refs = []
        for what, ptr, (rows, cols, ld, stride) in (("A", a, one[0]), ("B", b, one[1]),
                                                  ("C", c, (m, n, ldc, stride_c))):
            if rows == 0 or cols == 0:
                refs.append(None)
                continue
            count = (cols - 1) * ld + rows + (batch - 1) * stride
            owner, offset, pinned = fake._find(_value(ptr), count * dtype.itemsize,
                                               "%s %s" % (name, what))
            if pinned:
                raise fc.StandInError("%s: %s is host memory, cuBLAS takes device pointers"
                                      % (name, what))
            refs.append(fc._Ref.raw(owner, offset, count * dtype.itemsize, False))
        ref_a, ref_b, ref_c = refs

        def product(a_bytes, b_bytes, c_bytes):
            out = _matrices(c_bytes, dtype, m, n, ldc, stride_c, batch)
            if k == 0 or a_bytes is None or b_bytes is None:
                ab = np.zeros((batch, m, n), dtype)
            else:
                left = _matrices(a_bytes, dtype, rows_a, cols_a, lda, stride_a, batch)
                right = _matrices(b_bytes, dtype, rows_b, cols_b, ldb, stride_b, batch)
                left = left if transa == 0 else left.transpose(0, 2, 1)
                right = right if transb == 0 else right.transpose(0, 2, 1)
                ab = np.matmul(left, right)
            if beta == 0:
                out[...] = alpha * ab
            else:
                out[...] = alpha * ab + beta * out
        self.calls.append((name, stream.ptr))
        self.last_compute = _value(compute)
        fake.launches.append(name)
        reads = [r for r in (ref_a, ref_b) if r is not None] + ([ref_c] if beta else [])
        fake._enqueue(fc._Node(name, product, (ref_a, ref_b, ref_c), {}, reads, [ref_c]),
                      stream)
        return 0


def _matrices(raw, dtype, rows, cols, ld, stride, batch):
    """(batch, rows, cols) column-major matrices with leading dimension `ld`, `stride`
    elements apart, over the bytes `raw` (writable views)."""
    flat = raw.view(dtype)
    item = dtype.itemsize
    return np.lib.stride_tricks.as_strided(flat, shape=(batch, rows, cols),
                                           strides=(stride * item, item, ld * item))
