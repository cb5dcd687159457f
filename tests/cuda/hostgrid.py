"""Run the CUDA C kernels of ops/ on the CPU: each source compiled by g++ as C++20
into a shared library, each kernel launched over its whole grid, so tests can check
the kernels' logic against numpy without a GPU.

    module = hostgrid.compile(source)          # an ops._cuda.CudaSource (or code)
    fn = module.get_function("sls_pool_f32_i64")
    fn((grid,), (block,), args)                 # as CuPy's RawKernel, numpy arrays
    hostgrid.launch(fn, threads, args)          # ops._cuda.launch's rounding

A shim header makes CUDA C host C++: __global__/__device__ vanish, __shared__ is
static (blocks run one at a time), threadIdx/blockIdx are thread_local, atomics are
real atomics (__atomic builtins, CAS loops), the _rn intrinsics plain IEEE float
operations (-ffp-contract=off: nothing is fused that the source does not fuse).
Subnormal floats are flushed to zero, inputs and results, as on a GPU: CuPy compiles
every kernel with -ftz=true (cupy/cuda/compiler.py), and the threads that run a
kernel here set the SSE FTZ and DAZ bits (restored after: numpy keeps IEEE).
Kernels that use __syncthreads or __shfl_down_sync run each block as blockDim.x
std::threads with one std::barrier per block and one per warp; a thread that returns
drops out of both, so early exits never deadlock. Other kernels run their threads one
after the other (forward by default; `schedule` reverses or shuffles the order, or
runs them as concurrent threads like the former, to expose order-dependent results).

Arguments are checked against the kernel's parsed parameter list: arrays (C-contiguous,
aligned, written through, of the pointer's element type) for pointers, np.uint64(0)
for a null pointer (ops' null_flag()), numpy scalars of exactly the parameter's type
for values; anything else raises TypeError, as a wrong argument would corrupt a GPU
launch silently. What the emulation found undefined on a GPU (a shuffle reading a lane
that has exited, __syncthreads in a kernel run serially) raises HostGridError.

g++ is required (C++20, <barrier>): without it compile() fails with a message, it does
not skip. GRAPHNET_HOSTGRID_CXX names another compiler.
"""

import atexit
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

__all__ = ["compile", "compile_many", "launch", "HostModule", "HostKernel", "Param",
           "HostGridError", "parse_kernels", "CXXFLAGS", "HEADER", "RUNTIME"]

CXXFLAGS = ("-std=c++20", "-O1", "-ffp-contract=off", "-fno-strict-aliasing", "-shared",
            "-fPIC", "-pthread")


class HostGridError(RuntimeError):
    """The compiler failed, or a kernel did something undefined on a GPU."""


HEADER = r"""
// ---- hostgrid header: CUDA C as host C++ (tests/cuda/hostgrid.py) ----
#include <math.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __restrict__ __restrict

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
extern thread_local uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
static const int warpSize = 32;

struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// IEEE float intrinsics: x86-64 float arithmetic is SSE single precision, and
// -ffp-contract=off fuses nothing the source does not fuse (fmaf is a real fma).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }

// Atomics: CUDA's overloads only (a call CUDA lacks fails to compile here too).
#define GN_ATOMIC_INT(T)                                                            \
    inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }   \
    inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); } \
    inline T atomicCAS(T* p, T compare, T v) {                                      \
        __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST,          \
                                    __ATOMIC_SEQ_CST);                                \
        return compare; }
#define GN_ATOMIC_MINMAX(T)                                                         \
    inline T atomicMin(T* p, T v) {                                                 \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                               \
        while (v < old && !__atomic_compare_exchange_n(p, &old, v, true,            \
                   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}                           \
        return old; }                                                               \
    inline T atomicMax(T* p, T v) {                                                 \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                               \
        while (v > old && !__atomic_compare_exchange_n(p, &old, v, true,            \
                   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}                           \
        return old; }
GN_ATOMIC_INT(int)
GN_ATOMIC_INT(unsigned int)
GN_ATOMIC_INT(unsigned long long)
GN_ATOMIC_MINMAX(int)
GN_ATOMIC_MINMAX(unsigned int)
GN_ATOMIC_MINMAX(long long)
GN_ATOMIC_MINMAX(unsigned long long)

template <class F, class U>
inline F gn_atomic_float(F* p, F v, bool exchange) {
    static_assert(sizeof(F) == sizeof(U), "float and bits");
    U* bits = reinterpret_cast<U*>(p);
    U old = __atomic_load_n(bits, __ATOMIC_SEQ_CST), want;
    F before;
    do {
        memcpy(&before, &old, sizeof(F));
        F after = exchange ? v : before + v;
        memcpy(&want, &after, sizeof(F));
    } while (!__atomic_compare_exchange_n(bits, &old, want, true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    return before;
}
inline float atomicAdd(float* p, float v) {
    return gn_atomic_float<float, unsigned int>(p, v, false); }
inline double atomicAdd(double* p, double v) {
    return gn_atomic_float<double, unsigned long long>(p, v, false); }
inline float atomicExch(float* p, float v) {
    return gn_atomic_float<float, unsigned int>(p, v, true); }

// Block and warp synchronization: in the runtime library (gn_run's threads).
void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
unsigned long long gn_shuffle_down(unsigned long long bits, unsigned mask, unsigned delta,
                                   int width);
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    static_assert(__is_trivially_copyable(T) && sizeof(T) <= 8, "shuffle type");
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = gn_shuffle_down(bits, mask, delta, width);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
typedef void (*gn_body)(void*);
void gn_run(const char* name, unsigned grid, unsigned block, bool sync, gn_body body,
            void* args);
// ---- end of the header ----
"""

# The runtime: compiled once per session; every source's library links to it.
RUNTIME = r"""
#include <algorithm>
#include <barrier>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <xmmintrin.h>

thread_local uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

// ---- errors: the first one wins, read by Python after the launch ----
static std::mutex gn_error_mutex;
static std::string gn_error_text;
static bool gn_error_set = false;
static void gn_error(const std::string& text) {
    std::lock_guard<std::mutex> lock(gn_error_mutex);
    if (!gn_error_set) { gn_error_set = true; gn_error_text = text; }
}
extern "C" const char* gn_host_error() { return gn_error_set ? gn_error_text.c_str() : nullptr; }

// ---- blocks of concurrent threads: one barrier per block and one per warp ----
struct gn_warp {
    explicit gn_warp(int n) : lanes(n), bar(n) {}
    int lanes;
    std::barrier<> bar;
    // Double-buffered: shuffle c uses slot[c % 2], so one barrier per shuffle is
    // enough (a lane can only write slot[c % 2] again, at shuffle c + 2, after every
    // lane has arrived at shuffle c + 1, that is, has read shuffle c's values).
    unsigned long long slot[2][32] = {};
    unsigned long long written[2][32] = {};  // the shuffle number each value is for
    unsigned long long calls[32] = {};       // shuffles made by each lane
    bool exited[32] = {};
};
struct gn_block {
    explicit gn_block(unsigned n) : bar((std::ptrdiff_t)n) {
        for (unsigned w = 0; w < (n + 31) / 32; ++w)
            warps.emplace_back(new gn_warp((int)std::min(32u, n - 32 * w)));
    }
    std::barrier<> bar;
    std::vector<std::unique_ptr<gn_warp>> warps;
};
static thread_local gn_block* gn_current = nullptr;
static const char* gn_kernel_name = "";

static bool gn_serial(const char* what) {
    if (gn_current) return false;
    if (blockDim.x > 1)
        gn_error(std::string(gn_kernel_name) + " called " + what + " but hostgrid ran it "
                 "serially (the kernel's body names no __syncthreads or __shfl*: a helper "
                 "does); hostgrid.py must detect it");
    return true;
}

void __syncthreads() {
    if (!gn_serial("__syncthreads")) gn_current->bar.arrive_and_wait();
}

void __syncwarp(unsigned) {
    if (!gn_serial("__syncwarp")) gn_current->warps[threadIdx.x / 32]->bar.arrive_and_wait();
}

unsigned long long gn_shuffle_down(unsigned long long bits, unsigned mask, unsigned delta,
                                   int width) {
    if (gn_serial("__shfl_down_sync")) return bits;
    if (mask != 0xffffffffu || width != 32) {
        gn_error(std::string(gn_kernel_name) + ": hostgrid emulates full-warp shuffles only");
        return bits;
    }
    unsigned lane = threadIdx.x % 32;
    gn_warp& warp = *gn_current->warps[threadIdx.x / 32];
    unsigned long long call = ++warp.calls[lane];
    int buf = (int)(call & 1);
    warp.slot[buf][lane] = bits;
    warp.written[buf][lane] = call;
    warp.bar.arrive_and_wait();
    unsigned long long out = bits;
    unsigned src = lane + delta;
    if (src < 32) {
        if (src < (unsigned)warp.lanes && warp.written[buf][src] == call) {
            out = warp.slot[buf][src];
        } else {
            gn_error(std::string(gn_kernel_name) + ": __shfl_down_sync(0xffffffff) read lane "
                     + std::to_string(src) + " of warp " + std::to_string(threadIdx.x / 32) +
                     " of block " + std::to_string(blockIdx.x) + ", which " +
                     (src >= (unsigned)warp.lanes ? "does not exist" :
                      warp.exited[src] ? "has exited" : "is at another shuffle") +
                     " (undefined on a GPU)");
        }
    }
    return out;
}

static void gn_thread_exit() {
    gn_warp& warp = *gn_current->warps[threadIdx.x / 32];
    warp.exited[threadIdx.x % 32] = true;
    warp.bar.arrive_and_drop();
    gn_current->bar.arrive_and_drop();
    gn_current = nullptr;
}

// schedule: 0 serial forward, 1 serial reverse, 2 serial shuffled (seed), 3 threads
static int gn_mode = 0;
static unsigned long long gn_seed = 0;
extern "C" void gn_host_schedule(int mode, unsigned long long seed) {
    gn_mode = mode;
    gn_seed = seed;
}

// CuPy compiles kernels with -ftz=true: float subnormals read as 0 and underflowing
// results become 0. SSE's DAZ (bit 6) and FTZ (bit 15) do the same on the threads
// running a kernel; the caller's mode is restored when the launch ends.
struct gn_flush_subnormals {
    unsigned int saved = _mm_getcsr();
    gn_flush_subnormals() { _mm_setcsr(saved | 0x8040u); }
    ~gn_flush_subnormals() { _mm_setcsr(saved); }
};

void gn_run(const char* name, unsigned grid, unsigned block, bool sync, gn_body body,
            void* args) {
    gn_flush_subnormals flush;
    {
        std::lock_guard<std::mutex> lock(gn_error_mutex);
        gn_error_set = false;
        gn_error_text.clear();
    }
    gn_kernel_name = name;
    gridDim = dim3{grid, 1, 1};
    blockDim = dim3{block, 1, 1};
    try {
        if (sync || gn_mode == 3) {
            // `block` threads run every block in turn (blocks one at a time: __shared__
            // is static); each block has its own barriers, and the pool barrier keeps a
            // block from starting before every thread has left the one before.
            std::vector<std::unique_ptr<gn_block>> blocks;
            for (unsigned b = 0; b < grid; ++b) blocks.emplace_back(new gn_block(block));
            std::barrier<> pool((std::ptrdiff_t)block);
            std::vector<std::thread> threads;
            threads.reserve(block);
            for (unsigned t = 0; t < block; ++t)
                threads.emplace_back([&blocks, &pool, body, args, grid, t] {
                    gn_flush_subnormals thread_flush;
                    for (unsigned b = 0; b < grid; ++b) {
                        blockIdx = uint3{b, 0, 0};
                        threadIdx = uint3{t, 0, 0};
                        gn_current = blocks[b].get();
                        body(args);
                        gn_thread_exit();
                        pool.arrive_and_wait();
                    }
                });
            for (auto& th : threads) th.join();
            return;
        }
        unsigned long long total = (unsigned long long)grid * block;
        std::vector<unsigned long long> order;
        if (gn_mode == 2) {
            order.resize(total);
            for (unsigned long long i = 0; i < total; ++i) order[i] = i;
            unsigned long long state = gn_seed;
            for (unsigned long long i = total; i > 1; --i) {  // Fisher-Yates, splitmix64
                unsigned long long z = (state += 0x9e3779b97f4a7c15ull);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                std::swap(order[i - 1], order[(z ^ (z >> 31)) % i]);
            }
        }
        gn_current = nullptr;
        for (unsigned long long i = 0; i < total; ++i) {
            unsigned long long id = gn_mode == 0 ? i : gn_mode == 1 ? total - 1 - i : order[i];
            blockIdx = uint3{(unsigned)(id / block), 0, 0};
            threadIdx = uint3{(unsigned)(id % block), 0, 0};
            body(args);
        }
    } catch (const std::exception& e) {
        gn_error(std::string(name) + ": " + e.what());
    }
}
"""

_TYPE_WORDS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}

# C scalar types -> numpy dtypes (pointer element types and value parameters)
_SCALARS = {
    "bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "signed": np.int32,
    "signed int": np.int32, "unsigned int": np.uint32, "unsigned": np.uint32,
    "long long": np.int64, "long long int": np.int64, "signed long long": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64,
    "float": np.float32, "double": np.float64,
}
# arrays a pointer accepts beyond its own dtype (float16 tables are read as raw bits)
_ALSO = {"unsigned short": (np.float16,), "float4": (np.float32,)}


class Param(object):
    """One kernel parameter: its C type as written (`ctype`), the base type with
    typedefs resolved (`base`), whether it is a pointer, const, and its name."""

    def __init__(self, ctype, name, base, pointer, const):
        self.ctype, self.name, self.base = ctype, name, base
        self.pointer, self.const = pointer, const

    def dtypes(self):
        if self.base == "float4":
            return [np.dtype(np.float32)]
        return [np.dtype(_SCALARS[self.base])] + [np.dtype(d) for d in
                                                   _ALSO.get(self.base, ())]

    def __repr__(self):
        return "Param(%r %s)" % (self.ctype, self.name)


def _typedefs(code):
    found = {}
    for target, alias in re.findall(r"\btypedef\s+([A-Za-z_][\w\s]*?)\s+(\w+)\s*;", code):
        found[alias] = " ".join(target.split())
    return found


def _parse_param(text, typedefs, kernel):
    text = " ".join(text.replace("*", " * ").split())
    words = text.split()
    if len(words) < 2 or not re.match(r"^[A-Za-z_]\w*$", words[-1]):
        raise HostGridError("%s: cannot parse the parameter %r" % (kernel, text))
    name, type_words = words[-1], words[:-1]
    stars = type_words.count("*")
    if stars > 1:
        raise HostGridError("%s: parameter %r: pointers to pointers are not supported"
                            % (kernel, text))
    const = "const" in type_words
    base = " ".join(w for w in type_words if w not in _TYPE_WORDS and w != "*")
    for _ in range(8):
        if base not in typedefs:
            break
        base = " ".join(w for w in typedefs[base].split() if w not in _TYPE_WORDS)
    if base not in _SCALARS and base != "float4":
        raise HostGridError("%s: parameter %r: type %r is not supported by hostgrid"
                            % (kernel, text, base))
    if base == "float4" and not stars:
        raise HostGridError("%s: parameter %r: float4 values are not supported (pointers "
                            "are)" % (kernel, text))
    ctype = " ".join(w for w in type_words if w not in ("__restrict__", "__restrict"))
    return Param(ctype.replace(" *", "*"), name, base, bool(stars), const)


def _body(code, start):
    """Text of the {...} block opening at or after `start`."""
    open_at = code.index("{", start)
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return code[open_at:i + 1]
    raise HostGridError("unbalanced braces after offset %d" % start)


_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_SYNC = re.compile(r"\b(__syncthreads|__syncwarp|__shfl\w*)\s*\(")


def _strip_comments(code):
    """The code with comments blanked out (string literals are left alone)."""
    def blank(match):
        text = match.group(0)
        return text if text.startswith('"') else re.sub(r"[^\n]", " ", text)
    return re.sub(r'"(?:\\.|[^"\\])*"|/\*.*?\*/|//[^\n]*', blank, code, flags=re.S)


def parse_kernels(code):
    """{name: (params, uses_sync)} for every extern "C" __global__ kernel in `code`."""
    code = _strip_comments(code)
    typedefs = _typedefs(code)
    kernels = {}
    for match in _KERNEL.finditer(code):
        name, params = match.group(1), match.group(2).strip()
        if name in kernels:
            raise HostGridError("kernel %s is defined twice" % name)
        parsed = [] if params in ("", "void") else [
            _parse_param(p, typedefs, name) for p in params.split(",")]
        kernels[name] = (parsed, bool(_SYNC.search(_body(code, match.end()))))
    return kernels


def _launcher(name, params, sync):
    """gn_host_NAME: unpacks args (*(T*)args[k] for values, (T)*(void**)args[k] for
    pointers) and runs the grid; each thread calls NAME with its own copy of them."""
    unpack = []
    for k, p in enumerate(params):
        if p.pointer:
            unpack.append("(%s)*(void**)args[%d]" % (p.ctype, k))
        else:
            unpack.append("*(%s*)args[%d]" % (p.ctype.replace("const ", ""), k))
    return "\n".join([
        "static void gn_body_%s(void* packed) {" % name,
        "    void** args = (void**)packed;",
        "    (void)args;",
        "    %s(%s);" % (name, ",\n        ".join(unpack)),
        "}",
        'extern "C" void gn_host_%s(unsigned grid, unsigned block, void** args) {' % name,
        '    gn_run("%s", grid, block, %s, gn_body_%s, args);'
        % (name, "true" if sync else "false", name),
        "}", ""])


def _find_compiler():
    cxx = os.environ.get("GRAPHNET_HOSTGRID_CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise HostGridError(
            "tests/cuda/hostgrid.py compiles the CUDA kernels as C++20 with %r, which is "
            "not on PATH. Fix: install g++ (>= 11, for <barrier>; Debian/Ubuntu: apt-get "
            "install g++) or set GRAPHNET_HOSTGRID_CXX to a C++20 compiler." % cxx)
    return path


_cache_lock = threading.Lock()
_launch_lock = threading.Lock()  # the runtime's schedule and error are process-wide
_cache = {}          # digest -> HostModule, or runtime path
_cache_dir = []      # the session's temporary directory, made on first use


def _session_dir():
    with _cache_lock:
        if not _cache_dir:
            path = tempfile.mkdtemp(prefix="graphnet-hostgrid-")
            atexit.register(shutil.rmtree, path, True)
            _cache_dir.append(path)
        return _cache_dir[0]


def _translation_unit(name, code, kernels):
    return "".join([HEADER, '#line 1 "%s.cu"\n' % name, code, "\n\n// ---- launchers ----\n",
                    '#line 1 "%s launchers"\n' % name,
                    "".join(_launcher(k, params, sync)
                            for k, (params, sync) in kernels.items())])


def _build(cxx, folder, name, unit, link=()):
    """Compile `unit` into folder/name-DIGEST.so unless it is there; its path."""
    digest = hashlib.sha256("\0".join((cxx,) + CXXFLAGS + tuple(link) + (unit,))
                            .encode()).hexdigest()[:20]
    stem = os.path.join(folder, "%s-%s" % (re.sub(r"\W", "_", name), digest))
    library = stem + ".so"
    if os.path.exists(library):
        return library
    with open(stem + ".cpp", "w", encoding="utf-8") as f:
        f.write(unit)
    partial = "%s.%d.%d.tmp.so" % (stem, os.getpid(), threading.get_ident())
    command = [cxx] + list(CXXFLAGS) + ["-o", partial, stem + ".cpp"] + list(link)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            encoding="utf-8", errors="replace")
    if result.returncode != 0:
        raise HostGridError("%s could not compile %r for the host (the C++ is in %s):\n%s"
                            % (cxx, name, stem + ".cpp", result.stdout))
    os.replace(partial, library)
    return library


def _runtime(cxx, folder):
    """The runtime library (threads, barriers, shuffles), built once per folder."""
    key = ("runtime", cxx, folder)
    with _cache_lock:
        path = _cache.get(key)
    if path is None:
        path = _build(cxx, folder, "hostgrid_runtime", HEADER + RUNTIME)
        runtime = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        runtime.gn_host_error.restype = ctypes.c_char_p
        runtime.gn_host_schedule.argtypes = [ctypes.c_int, ctypes.c_ulonglong]
        with _cache_lock:
            _cache.setdefault(key, path)
            _cache.setdefault(("lib",) + key, runtime)
    return _cache[key], _cache[("lib",) + key]


def compile(source, cache_dir=None, name=None):
    """A HostModule of `source` (a CudaSource, or CUDA C text), compiled once per
    session (cache_dir: where the libraries go; default a per-session temp dir)."""
    code = source if isinstance(source, str) else source.code
    name = name or getattr(source, "name", None) or "kernels"
    kernels = parse_kernels(code)
    unit = _translation_unit(name, code, kernels)
    cxx = _find_compiler()
    folder = os.path.abspath(str(cache_dir) if cache_dir is not None else _session_dir())
    os.makedirs(folder, exist_ok=True)
    key = (cxx, folder, unit)
    with _cache_lock:
        module = _cache.get(key)
    if module is not None:
        return module
    runtime_path, runtime = _runtime(cxx, folder)
    # linked by its full path (no soname): the loader finds the very same library
    library = _build(cxx, folder, name, unit, link=(runtime_path,))
    module = HostModule(name, library, kernels, runtime)
    with _cache_lock:
        return _cache.setdefault(key, module)


def compile_many(sources, cache_dir=None):
    """compile() every source, with the compilers running in parallel: {name: module}."""
    from concurrent.futures import ThreadPoolExecutor
    sources = list(sources)
    if not sources:
        return {}
    _runtime(_find_compiler(), os.path.abspath(
        str(cache_dir) if cache_dir is not None else _session_dir()))
    with ThreadPoolExecutor(max(1, min(len(sources), os.cpu_count() or 1))) as pool:
        modules = list(pool.map(lambda s: compile(s, cache_dir), sources))
    return {m.name: m for m in modules}


class HostModule(object):
    """A compiled source: get_function(name) as CuPy's RawModule."""

    def __init__(self, name, library, kernels, runtime):
        self.name, self.path, self.kernels = name, library, kernels
        self._lib = ctypes.CDLL(library)
        self._runtime = runtime

    def get_function(self, name):
        if name not in self.kernels:
            raise KeyError("source %r has no kernel %r (it has %s)"
                           % (self.name, name, ", ".join(sorted(self.kernels))))
        params, sync = self.kernels[name]
        entry = getattr(self._lib, "gn_host_" + name)
        entry.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        entry.restype = None
        return HostKernel(self, name, params, sync, entry)


_SCHEDULES = {"forward": 0, "reverse": 1, "threads": 3}


def _dims(value, what):
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) != 1 for d in dims[1:]):
        raise ValueError("hostgrid: %s must be (x,) (y and z of 1), found %r" % (what, value))
    return int(dims[0])


class HostKernel(object):
    """One kernel: call it as CuPy's RawKernel, fn(grid, block, args)."""

    def __init__(self, module, name, params, sync, entry):
        self.module, self.name, self.params, self.sync = module, name, params, sync
        self._entry = entry

    def __repr__(self):
        return "<hostgrid kernel %s(%s)>" % (
            self.name, ", ".join("%s %s" % (p.ctype, p.name) for p in self.params))

    def __call__(self, grid, block, args, schedule=None):
        """Run the grid. schedule (kernels without __syncthreads / shuffles): None or
        "forward" (threads in order, one at a time), "reverse", an int (a seeded random
        order), or "threads" (each block's threads concurrent, as synchronizing kernels
        always run)."""
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        if grid < 1 or block < 1 or block > 1024 or grid > 2 ** 31 - 1:
            raise ValueError("%s: invalid launch configuration grid=%d block=%d (a GPU "
                             "rejects it: CUDA needs 1 <= block <= 1024 and grid >= 1)"
                             % (self.name, grid, block))
        if schedule is None:
            mode, seed = 0, 0
        elif isinstance(schedule, str):
            if schedule not in _SCHEDULES:
                raise ValueError("schedule must be one of %s or an int seed, found %r"
                                 % (sorted(_SCHEDULES), schedule))
            mode, seed = _SCHEDULES[schedule], 0
        else:
            mode, seed = 2, int(schedule) & (2 ** 64 - 1)
        if self.sync and mode != 0 and mode != 3:
            raise ValueError("%s synchronizes its threads: it runs as concurrent threads "
                             "only (schedule None or 'threads')" % self.name)
        buffers, keep = self._pack(tuple(args))
        runtime = self.module._runtime
        with _launch_lock:
            runtime.gn_host_schedule(mode, seed)
            self._entry(grid, block, buffers)
            error = runtime.gn_host_error()
        del keep
        if error is not None:
            raise HostGridError(error.decode(errors="replace"))

    def _pack(self, args):
        if len(args) != len(self.params):
            raise TypeError("%s takes %d arguments (%s), found %d" % (
                self.name, len(self.params),
                ", ".join("%s %s" % (p.ctype, p.name) for p in self.params), len(args)))
        keep, addresses = [], []
        for k, (p, a) in enumerate(zip(self.params, args)):
            where = "%s argument %d (%s %s)" % (self.name, k, p.ctype, p.name)
            if p.pointer:
                holder = ctypes.c_void_p(self._pointer(p, a, where))
            else:
                holder = self._value(p, a, where)
            keep.append(holder)
            addresses.append(ctypes.addressof(holder) if isinstance(holder, ctypes.c_void_p)
                             else holder.ctypes.data)
        return (ctypes.c_void_p * max(1, len(addresses)))(*addresses), keep

    @staticmethod
    def _pointer(p, a, where):
        if isinstance(a, np.uint64) and not isinstance(a, np.ndarray):
            if int(a) != 0:
                raise TypeError("%s: np.uint64 stands for a null pointer and must be 0, "
                                "found %d" % (where, int(a)))
            return None
        if not isinstance(a, np.ndarray):
            raise TypeError("%s: a pointer takes a numpy array (or np.uint64(0) for null), "
                            "found %s" % (where, type(a).__name__))
        if a.dtype not in p.dtypes():
            raise TypeError("%s: expected an array of %s, found %s" % (
                where, " or ".join(d.name for d in p.dtypes()), a.dtype.name))
        if not a.flags.c_contiguous or not a.flags.aligned:
            raise TypeError("%s: the array must be C-contiguous and aligned (the kernel "
                            "writes through its pointer): pass np.ascontiguousarray(x)"
                            % where)
        if not p.const and not a.flags.writeable:
            raise TypeError("%s: the kernel may write it, but the array is read-only" % where)
        if p.base == "float4":
            if a.size % 4 or a.ctypes.data % 16:
                raise TypeError("%s: float4 data needs a multiple of 4 floats on a 16-byte "
                                "boundary (size %d, address %% 16 = %d)"
                                % (where, a.size, a.ctypes.data % 16))
        return a.ctypes.data

    @staticmethod
    def _value(p, a, where):
        want = np.dtype(_SCALARS[p.base])
        if isinstance(a, np.ndarray) or not isinstance(a, np.generic):
            raise TypeError("%s: a value parameter takes a numpy scalar of dtype %s (as "
                            "ops pass them, e.g. np.%s(...)), found %s"
                            % (where, want.name, want.name, type(a).__name__))
        if a.dtype != want:
            raise TypeError("%s: expected a numpy %s scalar, found %s (a GPU would read "
                            "its bytes as %s)" % (where, want.name, a.dtype.name, p.ctype))
        return np.array(a, dtype=want)


def launch(kernel, threads, args, block=256, schedule=None):
    """ops._cuda.launch on the host: at least `threads` threads, nothing if <= 0."""
    threads = int(threads)
    if threads <= 0:
        return
    kernel(((threads + block - 1) // block,), (block,), args, schedule=schedule)
