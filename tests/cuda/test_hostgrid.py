"""tests/cuda/hostgrid.py itself: CUDA C run on the CPU launches what it is given,
synchronizes blocks and warps like a GPU, and refuses arguments a GPU would misread.
(The ops' kernels on it: test_kernels_on_host.py.)"""

import numpy as np
import pytest

from . import hostgrid

I64_MAX = np.iinfo(np.int64).max

CODE = r"""
typedef long long i64;
/* out[b] = sum of x over block b (shared memory, __syncthreads, warp shuffles);
   warps past the data return before the __syncthreads (hostgrid must not hang). */
extern "C" __global__ void block_sum(const float* x, i64 n, float* out) {
    __shared__ float part[32];
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if ((i64)blockIdx.x * blockDim.x + (i64)warp * 32 >= n) return;  /* whole warps */
    float v = i < n ? x[i] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (threadIdx.x != 0) return;
    i64 left = n - (i64)blockIdx.x * blockDim.x;
    int warps = (int)((left < (i64)blockDim.x ? left : (i64)blockDim.x) + 31) / 32;
    float s = 0.0f;
    for (int w = 0; w < warps; ++w) s += part[w];
    out[blockIdx.x] = s;
}

/* Lanes 16..31 leave before the shuffle that reads them: undefined on a GPU. */
extern "C" __global__ void shuffle_from_exited(int* out) {
    int lane = threadIdx.x & 31;
    if (lane >= 16) return;
    out[lane] = __shfl_down_sync(0xffffffffu, lane, 8);
}

extern "C" __global__ void atomics(int* ci, unsigned long long* cu, float* cf, i64* lo,
        i64* hi, int* order, i64 n) {
    i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    atomicAdd(ci, 1);
    atomicAdd(cu, (unsigned long long)t);
    atomicAdd(cf, 0.5f);
    atomicMin(lo, 1000 - t);
    atomicMax(hi, t - 1000);
    order[t] = atomicAdd(ci + 1, 1);  /* the position of thread t in the schedule */
    atomicExch(ci + 2, 7);
}

/* out = a * b and a + 0 per element: subnormals flushed (CuPy's -ftz=true) */
extern "C" __global__ void flushed(const float* a, const float* b, i64 n, float* out) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { out[2 * i] = __fmul_rn(a[i], b[i]); out[2 * i + 1] = __fadd_rn(a[i], 0.0f); }
}

extern "C" __global__ void kinds(const double* d, double v, unsigned int u,
        unsigned long long q, float4* f4, const unsigned short* h, int* out) {
    out[0] = (int)(d[0] + v);
    out[1] = (int)u;
    out[2] = (int)q;
    float4 a = f4[1];
    f4[0] = make_float4(a.w, a.z, a.y, a.x);
    out[3] = h ? (int)h[0] : -1;
    out[4] = h == 0;
}
"""


@pytest.fixture(scope="module")
def module():
    return hostgrid.compile(CODE, name="hostgrid_selftest")


def test_parses_parameters_with_typedefs(module):
    params, sync = module.kernels["block_sum"]
    assert [(p.ctype, p.name, p.base, p.pointer, p.const) for p in params] == [
        ("const float*", "x", "float", True, True), ("i64", "n", "long long", False, False),
        ("float*", "out", "float", True, False)]
    assert sync and not module.kernels["atomics"][1]
    assert "block_sum" in repr(module.get_function("block_sum"))
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        module.get_function("nope")


@pytest.mark.parametrize("n", [1, 31, 33, 256, 300, 700])
def test_blocks_synchronize_and_shuffle(module, n):
    rng = np.random.default_rng(n)
    x = rng.integers(1, 100, size=n).astype(np.float32)  # sums exact in float32
    fn = module.get_function("block_sum")
    blocks = (n + 255) // 256
    out = np.full(blocks, -1.0, np.float32)
    hostgrid.launch(fn, n, (x, np.int64(n), out))
    want = [x[b * 256:(b + 1) * 256].sum() for b in range(blocks)]
    np.testing.assert_array_equal(out, np.array(want, np.float32))


def test_a_shuffle_reading_an_exited_lane_is_an_error(module):
    out = np.zeros(32, np.int32)
    with pytest.raises(hostgrid.HostGridError, match="has exited"):
        module.get_function("shuffle_from_exited")((1,), (32,), (out,))


@pytest.mark.parametrize("schedule", [None, "reverse", 12345, "threads"])
def test_atomics_are_atomic_under_every_schedule(module, schedule):
    n = 1000
    ci, cu = np.zeros(3, np.int32), np.zeros(1, np.uint64)
    cf = np.zeros(1, np.float32)
    lo, hi = np.array([I64_MAX]), np.array([-I64_MAX])
    order = np.full(n, -1, np.int32)
    hostgrid.launch(module.get_function("atomics"), n,
                    (ci, cu, cf, lo, hi, order, np.int64(n)), schedule=schedule)
    assert ci.tolist() == [n, n, 7] and int(cu[0]) == n * (n - 1) // 2
    assert cf[0] == 0.5 * n and lo[0] == 1000 - (n - 1) and hi[0] == (n - 1) - 1000
    assert sorted(order.tolist()) == list(range(n))
    if schedule is None:
        assert order.tolist() == list(range(n))
    elif schedule == "reverse":
        assert order.tolist() == list(range(n))[::-1]
    elif schedule == 12345:
        assert order.tolist() != list(range(n))


@pytest.mark.parametrize("schedule", ["forward", "threads"])
def test_subnormals_are_flushed_in_kernels_only(module, schedule):
    """Kernels see float subnormals as 0 and flush underflowing results (CuPy compiles
    with -ftz=true); numpy's arithmetic around the launch stays IEEE."""
    tiny = np.finfo(np.float32).tiny
    a = np.array([1e-20, 3e-39, 2.0, -1e-30], np.float32)  # (3e-39: subnormal)
    b = np.array([1e-20, 1.0, 3.0, 1e-10], np.float32)
    out = np.full(8, 9.0, np.float32)
    hostgrid.launch(module.get_function("flushed"), a.size, (a, b, np.int64(a.size), out),
                    schedule=schedule)
    assert out.tolist()[0::2] == [0.0, 0.0, 6.0, 0.0]  # products below 2**-126: 0
    assert np.signbit(out[6])  # (-0: the sign stays)
    assert out.tolist()[1::2] == [np.float32(1e-20), 0.0, 2.0, np.float32(-1e-30)]
    assert 0 < a[1] * np.float32(1.0) < tiny and 0 < a[0] * b[0] < tiny  # numpy: IEEE


def test_every_argument_kind_reaches_the_kernel(module):
    fn = module.get_function("kinds")
    f4 = hostgrid_aligned(8)
    f4[:] = np.arange(8, dtype=np.float32)
    h = np.array([3.0], np.float16)
    out = np.zeros(5, np.int32)
    fn((1,), (1,), (np.array([2.0]), np.float64(3.0), np.uint32(4), np.uint64(5), f4, h,
                    out))
    assert out.tolist() == [5, 4, 5, int(h.view(np.uint16)[0]), 0]
    assert f4[:4].tolist() == [7.0, 6.0, 5.0, 4.0]
    fn((1,), (1,), (np.array([2.0]), np.float64(3.0), np.uint32(4), np.uint64(5), f4,
                    np.uint64(0), out))
    assert out[3] == -1 and out[4] == 1  # np.uint64(0): a null pointer


def hostgrid_aligned(n):
    raw = np.zeros(n * 4 + 16, np.uint8)
    skip = (-raw.ctypes.data) % 16
    return raw[skip:skip + n * 4].view(np.float32)


def test_wrong_arguments_raise_type_error(module):
    fn = module.get_function("block_sum")
    x, out = np.ones(4, np.float32), np.zeros(1, np.float32)
    cases = [
        ((x, np.int64(4)), "takes 3 arguments"),
        ((x, np.int32(4), out), "expected a numpy int64 scalar, found int32"),
        ((x, 4, out), "takes a numpy scalar of dtype int64"),
        ((x, np.array(4), out), "takes a numpy scalar"),
        ((x.astype(np.float64), np.int64(4), out), "expected an array of float32"),
        ((x, np.int64(4), np.int64(0)), "takes a numpy array"),
        ((x, np.int64(4), np.uint64(8)), "must be 0"),
        ((np.ones(8, np.float32)[::2], np.int64(4), out), "C-contiguous"),
    ]
    for args, message in cases:
        with pytest.raises(TypeError, match=message):
            fn((1,), (32,), args)
    frozen = np.zeros(1, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        fn((1,), (32,), (x, np.int64(4), frozen))
    x.flags.writeable = False  # a const pointer may read a read-only array
    fn((1,), (32,), (x, np.int64(4), out))
    assert out[0] == 4.0
    kinds = module.get_function("kinds")
    f4 = hostgrid_aligned(9)[1:]  # 4 bytes past a 16-byte boundary
    with pytest.raises(TypeError, match="16-byte boundary"):
        kinds((1,), (1,), (np.array([2.0]), np.float64(3.0), np.uint32(4), np.uint64(5),
                           f4, np.uint64(0), np.zeros(5, np.int32)))


def test_launch_configuration_is_checked_as_on_a_gpu(module):
    fn = module.get_function("block_sum")
    args = (np.ones(1, np.float32), np.int64(1), np.zeros(1, np.float32))
    for grid, block in (((0,), (32,)), ((1,), (0,)), ((1,), (1025,))):
        with pytest.raises(ValueError, match="invalid launch configuration"):
            fn(grid, block, args)
    with pytest.raises(ValueError, match="y and z of 1"):
        fn((1, 2), (32,), args)
    with pytest.raises(ValueError, match="synchronizes"):
        fn((1,), (32,), args, schedule="reverse")
    hostgrid.launch(fn, 0, args)  # no thread: nothing runs, as ops._cuda.launch


def test_compile_errors_and_a_missing_compiler_are_reported(monkeypatch):
    with pytest.raises(hostgrid.HostGridError, match="undefined_thing"):
        hostgrid.compile('extern "C" __global__ void k() { undefined_thing(); }',
                         name="broken")
    monkeypatch.setenv("GRAPHNET_HOSTGRID_CXX", "no-such-compiler-graphnet")
    with pytest.raises(hostgrid.HostGridError, match="install g\\+\\+"):
        hostgrid.compile(CODE)
