"""CUDA C sources of the ops' kernels and their lazy, per-device compilation.

An op file declares `KERNELS = CudaSource("name", code)` at import time (a
string, nothing compiled, no CuPy imported); its backend="cupy" kernel calls
`KERNELS.function("fn")`, which compiles the module with NVRTC for the current
device on first use. Every source is registered in SOURCES so the CPU test
suite can compile them all with NVRTC alone (tests/cuda/test_kernel_sources.py).

Sources are self-contained (no #include): float16 loads use the PTX cvt
instruction, so NVRTC needs no CUDA headers (off the device, as in the host
emulation of tests/cuda/hostgrid.py, a portable bit conversion). Type variants are
generated from one template with string.Template ($NAME, $DT, $IT, ...). Imports
numpy only.
"""

import string

import numpy as np

__all__ = ["CudaSource", "SOURCES", "variants", "launch", "PRELUDE", "index_type",
           "cupy_module", "null_flag"]

SOURCES = {}

# Shared device helpers: loads of float / half as float, and the index guard.
PRELUDE = r"""
typedef long long i64;
__device__ __forceinline__ float gn_load(const float* p, i64 i) { return p[i]; }
__device__ __forceinline__ float gn_load(const unsigned short* p, i64 i) {
    unsigned short h = p[i];
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    /* Not device code (NVRTC defines __CUDA_ARCH__): the host emulation of
       tests/cuda/hostgrid.py compiles these sources with g++, which has no PTX.
       IEEE binary16 -> binary32 by bits: the value cvt.f32.f16 gives (exact; a nan
       stays a nan). */
    unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    unsigned int exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);          /* inf, nan */
    } else if (exp != 0u) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0u) {
        bits = sign;                                      /* +-0 */
    } else {                                              /* subnormal: normalize */
        exp = 113u;
        while (!(man & 0x400u)) { man <<= 1; --exp; }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    union { unsigned int u; float f; } v;
    v.u = bits;
    return v.f;
#endif
}
/* Record the smallest failing position (flag may be null: checks were made before). */
__device__ __forceinline__ void gn_flag(i64* flag, i64 position) {
    if (flag) atomicMin(flag, position);
}
"""

_TYPE_NAMES = {"float32": "float", "float16": "unsigned short", "int32": "int",
               "int64": "long long", "float64": "double"}


def index_type(dtype):
    """The suffix of kernel variants for an index dtype: 'i32' or 'i64' (the ops
    validate or cast indices first; anything else here is a bug, not bad input)."""
    dtype = np.dtype(dtype)
    if dtype == np.int32:
        return "i32"
    if dtype == np.int64:
        return "i64"
    raise TypeError("CUDA index kernels take int32 or int64 indices, found %s" % dtype)


def variants(template, **choices):
    """Instantiate `template` for every combination in choices: suffix -> mapping.

    variants(T, IT={"i32": {"IT": "int"}, "i64": {"IT": "long long"}}) yields one
    kernel per index type, each named with $NAME's suffix (e.g. sls_pool_i32).
    """
    combos = [("", {})]
    for _, options in sorted(choices.items()):
        combos = [(suffix + "_" + key, dict(values, **extra))
                  for suffix, values in combos for key, extra in sorted(options.items())]
    out = []
    for suffix, values in combos:
        out.append(string.Template(template).substitute(SUFFIX=suffix, **values))
    return "\n".join(out)


INDEX_TYPES = {"i32": {"IT": "int"}, "i64": {"IT": "long long"}}
DATA_TYPES = {"f32": {"DT": "float"}, "f16": {"DT": "unsigned short"}}


class CudaSource(object):
    """One CUDA module (several extern "C" kernels), compiled per device on demand."""

    def __init__(self, name, code, options=("-std=c++14",)):
        if name in SOURCES:
            raise ValueError("CUDA source %r registered twice" % name)
        self.name = name
        self.code = PRELUDE + code
        self.options = tuple(options)
        self._modules = {}
        self._functions = {}  # (device, kernel name) -> RawKernel
        SOURCES[name] = self

    def function(self, fn_name):
        """The compiled kernel `fn_name` for the current CUDA device. Kept: CuPy's
        get_function builds a new RawKernel and looks its compiled code up on every
        call, several microseconds per launch."""
        cp = cupy_module()
        key = (cp.cuda.Device().id, fn_name)
        kernel = self._functions.get(key)
        if kernel is None:
            module = self._modules.get(key[0])
            if module is None:
                module = self._modules[key[0]] = cp.RawModule(code=self.code,
                                                              options=self.options)
            kernel = self._functions[key] = module.get_function(fn_name)
        return kernel


def cupy_module():
    import cupy  # imported only when a kernel actually runs on a GPU
    return cupy


def launch(kernel, threads, args, block=256):
    """Launch `kernel` on the current stream with at least `threads` threads."""
    threads = int(threads)
    if threads <= 0:
        return
    kernel(((threads + block - 1) // block,), (block,), args)


def null_flag():
    """What kernels receive instead of an error flag when indices were checked."""
    return np.uint64(0)
