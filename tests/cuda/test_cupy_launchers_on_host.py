"""The ops' CuPy launchers (the Python that prepares arguments and launches the CUDA
kernels) run on the CPU: xp is tests/cuda/fakecupy.py's stand-in, whose RawModule
compiles the real kernel sources with hostgrid. A mismatch between a launcher and its
kernel (argument order, dtypes, int64 vs int32 scalars, block sizes, float4's
block // 4, null flags, output sizes) fails here as it would on a GPU, or worse,
where a GPU would silently read garbage (hostgrid checks every argument's type).

Results are compared with numpy formulas written here (plain loops in the kernels'
order, never the ops' own numpy kernels), exactly where the kernels' float order is
the formula's, else with a tolerance. Atomic kernels get dyadic values (every order
sums them exactly) and run under several thread schedules.
"""

import sys

import numpy as np
import pytest

from graphnet import core, registry
from graphnet.devices import Device
from graphnet.errors import EnforceError
from graphnet.executors.cuda import checks, settings
from graphnet.registry import KernelContext

registry.registered_types()  # import every op family: every CudaSource is registered

from graphnet.ops import _cuda, _cuda_checks, _cuda_scatter, gather, sparse_lengths  # noqa: E402

from . import fakecupy, hostgrid  # noqa: E402
from .test_kernels_on_host import scale_reference  # noqa: E402

F32, F16 = np.float32, np.float16
I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min
GPU0 = Device(1, 0)


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _compiled():
    """Every source compiled once, in parallel; RawModule then finds them compiled."""
    hostgrid.compile_many(_cuda.SOURCES.values())


@pytest.fixture
def cp(monkeypatch):
    return fakecupy.install(monkeypatch, fakecupy.FakeCupy())


@pytest.fixture
def mode(monkeypatch):
    """mode(checks="sync"|"deferred", deterministic=bool): the CUDA settings the ops
    read, restored after the test."""
    def set_mode(checks_mode="sync", deterministic=False):
        monkeypatch.setitem(settings._settings, "checks", checks_mode)
        monkeypatch.setitem(settings._settings, "deterministic", bool(deterministic))
    set_mode()
    return set_mode


class _Backend(object):
    name = "cupy"

    def __init__(self, xp):
        self.xp = xp

    def to_host(self, value):
        return value.get() if isinstance(value, self.xp.ndarray) else np.asarray(value)


def run_op(cp, op_type, inputs, outputs, *arrays, **args):
    """The op's backend="cupy" kernel on `arrays`, with a KernelContext whose xp is cp."""
    op = core.CreateOperator(op_type, inputs, outputs, **args)
    schema = registry.get(op_type)
    ctx = KernelContext(_Backend(cp), GPU0, op)
    return schema.kernel_for("cupy")(ctx, schema.parse_args(op), *arrays)


def dev(cp, x, dtype=None):
    return cp.asarray(np.asarray(x, dtype=dtype))


def new_flag(cp):
    return cp.full((1,), I64_MAX, dtype=np.int64)


def floats(rng, shape):
    return rng.standard_normal(shape).astype(F32)


def dyadic(rng, shape):
    """float32 multiples of 1/8 in [-4, 4]: their sums are exact in any order."""
    return (rng.integers(-32, 33, shape) / 8.0).astype(F32)


def only(cp, prefix):
    """The launches whose kernel name starts with `prefix`."""
    return [launch for launch in cp.launches if launch.name.startswith(prefix)]


def grid_for(threads, block=256):
    return ((threads + block - 1) // block,)


# --- the stand-in itself ------------------------------------------------------------------

def test_fake_arrays_look_like_cupy_arrays(cp):
    x = dev(cp, np.arange(12, dtype=F32).reshape(3, 4))
    assert isinstance(x, cp.ndarray) and x.device.id == 0
    assert x.data.ptr == x.ctypes.data and x.data.ptr % fakecupy.ALIGN == 0
    host = x.get()
    assert type(host) is np.ndarray and not np.shares_memory(host, x)
    assert x[1:].data.ptr == x.data.ptr + 16
    assert isinstance(x.min(), cp.ndarray) and x.min().shape == ()
    assert isinstance(x[1, 2], cp.ndarray) and float(x[1, 2]) == 6.0
    assert (x * 2).data.ptr % fakecupy.ALIGN == 0
    assert cp.ascontiguousarray(x) is x
    assert np.isnan(cp.empty((4,), F32).get()).all()  # never-written memory shows
    assert cp.cuda.Device().id == 0


def test_fake_rejects_host_arrays_and_unknown_apis(cp):
    x = dev(cp, [1.0, 2.0], F32)
    with pytest.raises(TypeError, match="host numpy array"):
        x + np.ones(2, F32)
    with pytest.raises(TypeError, match="host numpy array"):
        cp.cumsum(np.ones(2, F32))
    with pytest.raises(AttributeError, match="cupy.fft"):
        cp.fft
    kernel = _cuda_checks.CHECKS_CUDA.function("flag_rows_i64")
    with pytest.raises(TypeError, match="host numpy array"):
        kernel((1,), (256,), (np.zeros(2, np.int64), np.int64(2), np.int64(5),
                              new_flag(cp)))
    with pytest.raises(TypeError, match="numpy scalar of dtype int64"):
        kernel((1,), (256,), (dev(cp, [0, 1], np.int64), 2, np.int64(5), new_flag(cp)))


def test_modules_are_cached_per_device_and_cleared_between_tests(cp):
    source = _cuda_checks.CHECKS_CUDA
    assert source._modules == {} and source._functions == {}
    first = source.function("flag_rows_i32")
    source.function("flag_rows_i64")
    assert list(source._modules) == [0] and len(cp.modules) == 1
    # a kernel is looked up once per device: the same object on every later call
    assert source.function("flag_rows_i32") is first
    assert sorted(source._functions) == [(0, "flag_rows_i32"), (0, "flag_rows_i64")]
    assert cp.modules[source.code].options == source.options
    assert cp.modules[source.code].host_module.name == "index_checks"


# --- sparse_lengths: _segment_starts, _pool_cuda, _repeat_cuda ------------------------------

@pytest.mark.parametrize("lengths", [[3, 0, 2, 5], [0], [], [7], "many", "more",
                                     "negative"])
def test_segment_starts(cp, lengths):
    """One launch of one block of 1024 threads, however many segments (2,500: runs of
    3 per thread, the last threads idle; 100,003: runs of 98)."""
    if lengths in ("many", "more"):
        count = 2500 if lengths == "many" else 100003
        lengths = np.random.default_rng(4).integers(0, 70000, count).tolist()
    elif lengths == "negative":  # (flagged by the checks; the prefix sums stay exact)
        lengths = [4, -2, 2 ** 31 - 1, 2 ** 31 - 1, 5]
    got = sparse_lengths._segment_starts(cp, dev(cp, lengths, np.int32))
    want = np.cumsum([0] + lengths[:-1], dtype=np.int64)[:len(lengths)].tolist()
    assert got.dtype == np.int64 and got.get().tolist() == want
    assert [(launch.name, launch.grid, launch.block) for launch in cp.launches] == \
        ([("segment_starts", (1,), (1024,))] if lengths else [])


def pool_reference(table, idx, lengths, w=None):
    """Segment sums in float32, index order; rows outside the table skipped."""
    rows = table.shape[0]
    flat = table.reshape(rows, -1).astype(F32)
    out = np.zeros((len(lengths), flat.shape[1]), F32)
    j = 0
    for m, length in enumerate(lengths):
        acc = np.zeros(flat.shape[1], F32)
        for q in range(j, j + int(length)):
            r = int(idx[q])
            if 0 <= r < rows:
                acc = acc + (flat[r] if w is None else F32(w[q]) * flat[r])
        out[m] = acc
        j += int(length)
    return out.reshape((len(lengths),) + table.shape[1:])


def device_table(cp, table, misaligned=False):
    """`table` on the device: in its own aligned buffer, or one float into one."""
    if not misaligned:
        return dev(cp, table)
    buf = cp.zeros((table.size + 1,), table.dtype)
    view = buf[1:].reshape(table.shape)
    view[...] = cp.asarray(table)
    return view


LENGTHS = [3, 0, 5, 1, 0, 6]  # 15 indices: segments of 4+ rows take the unrolled loop

# (data shape, dtype, misaligned, kernel kind, threads per segment)
POOL_CASES = {
    "f32x4": ((9, 2, 4), F32, False, "f32x4", 2),
    "f32x4-wide": ((9, 12), F32, False, "f32x4", 3),
    "f32-misaligned": ((9, 8), F32, True, "f32", 8),
    "f32-odd": ((9, 3), F32, False, "f32", 3),
    "f32-vector": ((9,), F32, False, "f32", 1),
    "f16": ((9, 4), F16, False, "f16", 4),
}


@pytest.mark.parametrize("rows_in_flight", [4, 8])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool_cuda(cp, monkeypatch, case, idx_dtype, weighted, rows_in_flight):
    monkeypatch.setattr(sparse_lengths, "POOL_ROWS", rows_in_flight)
    shape, dtype, misaligned, kind, per_segment = POOL_CASES[case]
    rng = np.random.default_rng(len(case))
    table = floats(rng, shape).astype(dtype)
    n = sum(LENGTHS)
    idx = rng.integers(0, shape[0], n).astype(idx_dtype)
    idx[5] = idx[6] = idx[7]  # duplicates
    w = floats(rng, n) if weighted else None
    data = device_table(cp, table, misaligned)
    out_shape = (len(LENGTHS),) + shape[1:]
    got = sparse_lengths._pool_cuda(cp, data, dev(cp, idx), dev(cp, LENGTHS, np.int32),
                                    None if w is None else dev(cp, w), out_shape)
    assert got.dtype == F32 and got.shape == out_shape
    np.testing.assert_array_equal(got.get(), pool_reference(table, idx, LENGTHS, w))
    starts, launch = cp.launches
    assert starts.name == "segment_starts"
    suffix = "i32" if idx_dtype == np.int32 else "i64"
    rows = "" if rows_in_flight == 4 else "8"
    assert launch.name == "sls_pool%s_%s_%s" % (rows, kind, suffix)
    threads = len(LENGTHS) * per_segment
    assert launch.grid == grid_for(threads) and launch.block == (256,)
    assert launch.args[6] == np.int64(per_segment)  # block: // 4 for float4 rows


def test_pool_cuda_empty_segments_and_no_segment(cp):
    table = np.arange(8, dtype=F32).reshape(2, 4)
    got = sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, [], np.int64),
                                    dev(cp, [0, 0, 0], np.int32), None, (3, 4))
    np.testing.assert_array_equal(got.get(), np.zeros((3, 4), F32))  # zeros, not poison
    got = sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, [], np.int64),
                                    dev(cp, [], np.int32), None, (0, 4))
    assert got.shape == (0, 4) and len(cp.launches) == 2  # nothing launched for it


@pytest.mark.parametrize("case", ["f32x4", "f32-odd", "f16"])
def test_pool_cuda_deferred_flag_and_null_flag(cp, case):
    shape, dtype, misaligned, _, _ = POOL_CASES[case]
    rng = np.random.default_rng(3)
    table = floats(rng, shape).astype(dtype)
    n = sum(LENGTHS)
    idx = rng.integers(0, shape[0], n).astype(np.int64)
    idx[9], idx[4], idx[12] = shape[0], -1, 2 ** 40  # first bad position: 4
    lengths = dev(cp, LENGTHS, np.int32)
    out_shape = (len(LENGTHS),) + shape[1:]
    want = pool_reference(table, idx, LENGTHS)
    flag = new_flag(cp)
    got = sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, idx), lengths, None,
                                    out_shape, flag)
    assert flag.get().tolist() == [4]
    np.testing.assert_array_equal(got.get(), want)  # bad rows skipped
    got = sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, idx), lengths, None,
                                    out_shape)  # null flag: skipped, nothing recorded
    np.testing.assert_array_equal(got.get(), want)
    assert isinstance(cp.launches[-1].args[-1], np.uint64)
    # LENGTHS not summing to len(INDICES): position 0 (the host check reports it)
    short = dev(cp, LENGTHS[:-1] + [LENGTHS[-1] - 1], np.int32)
    flag = new_flag(cp)
    sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, idx), short, None, out_shape,
                              flag)
    assert flag.get().tolist() == [0]


def repeat_reference(rows, lengths):
    out = []
    for m, length in enumerate(lengths):
        out.extend([rows[m].astype(F32)] * int(length))
    return np.array(out, F32).reshape((sum(lengths),) + rows.shape[1:])


# (rows shape, dtype, misaligned, kernel, threads per segment)
REPEAT_CASES = {
    "f32x4": ((4, 2, 4), F32, False, "sls_repeat_f32x4", 2),
    "f32-misaligned": ((4, 4), F32, True, "sls_repeat_f32", 4),
    "f32-odd": ((4, 5), F32, False, "sls_repeat_f32", 5),
    "f16-cast": ((4, 4), F16, False, "sls_repeat_f32x4", 1),
}


@pytest.mark.parametrize("case", sorted(REPEAT_CASES))
def test_repeat_cuda(cp, case):
    shape, dtype, misaligned, kernel, per_segment = REPEAT_CASES[case]
    rows = floats(np.random.default_rng(1), shape).astype(dtype)
    lengths = [2, 0, 3, 1]
    got = sparse_lengths._repeat_cuda(cp, device_table(cp, rows, misaligned),
                                      dev(cp, lengths, np.int32), sum(lengths))
    assert got.dtype == F32 and got.shape == (6,) + shape[1:]
    np.testing.assert_array_equal(got.get(), repeat_reference(rows, lengths))
    starts, launch = cp.launches
    assert starts.name == "segment_starts"
    assert launch.name == kernel and launch.grid == grid_for(4 * per_segment)
    assert launch.args[4] == np.int64(per_segment)


def test_repeat_cuda_flags_bad_lengths(cp):
    rows = dev(cp, np.ones((3, 4), F32))
    for lengths, n in (([2, 1, 2], 4), ([2, -1, 3], 4), ([1, 1, 1], 4)):
        flag = new_flag(cp)
        sparse_lengths._repeat_cuda(cp, rows, dev(cp, lengths, np.int32), n, flag)
        assert flag.get().tolist() == [0], lengths
    flag = new_flag(cp)
    got = sparse_lengths._repeat_cuda(cp, rows, dev(cp, [0, 0, 0], np.int32), 0, flag)
    assert got.shape == (0, 4) and flag.get().tolist() == [I64_MAX]


# --- sparse_lengths ops on the cupy backend -----------------------------------------------

def sls_inputs(cp, rng, idx_dtype, dtype=F32, shape=(10, 2, 4)):
    table = floats(rng, shape).astype(dtype)
    n = sum(LENGTHS)
    idx = rng.integers(0, shape[0], n).astype(idx_dtype)
    idx[1] = idx[2] = idx[0]
    return table, idx, floats(rng, n)


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
@pytest.mark.parametrize("op_type", ["SparseLengthsSum", "SparseLengthsWeightedSum",
                                     "SparseLengthsMean"])
def test_sparse_lengths_ops(cp, mode, op_type, checks_mode):
    mode(checks_mode)
    rng = np.random.default_rng(7)
    table, idx, w = sls_inputs(cp, rng, np.int32)
    weighted = op_type == "SparseLengthsWeightedSum"
    arrays = [dev(cp, table)] + ([dev(cp, w)] if weighted else []) + [
        dev(cp, idx), dev(cp, LENGTHS, np.int32)]
    names = ["d", "w", "i", "l"] if weighted else ["d", "i", "l"]
    with checks.collect() as run:
        got = run_op(cp, op_type, names, ["y"], *arrays)
    want = pool_reference(table, idx, LENGTHS, w if weighted else None)
    if op_type == "SparseLengthsMean":
        scale = np.array([F32(1.0 / n) if n else F32(0) for n in LENGTHS], F32)
        want = want * scale[:, None, None]
    np.testing.assert_array_equal(got.get(), want)
    assert "sls_pool_f32x4_i32" in cp.kernel_names()
    stats = only(cp, "index_stats_")
    if checks_mode == "sync":  # one stats kernel over INDICES and LENGTHS
        assert [s.name for s in stats] == ["index_stats_init", "index_stats_i32"]
        assert run.items == []
    else:
        assert stats == [] and len(run.items) == 1
        assert run.items[0][1].get().tolist() == [I64_MAX]


def test_sparse_lengths_sum_f16_and_bad_index(cp, mode, monkeypatch):
    rng = np.random.default_rng(8)
    table, idx, _ = sls_inputs(cp, rng, np.int64, F16, (10, 3))
    args = [dev(cp, table), dev(cp, idx), dev(cp, LENGTHS, np.int32)]
    got = run_op(cp, "SparseLengthsSum", ["d", "i", "l"], ["y"], *args)
    np.testing.assert_array_equal(got.get(), pool_reference(table, idx, LENGTHS))
    assert "sls_pool_f16_i64" in cp.kernel_names()
    idx[6] = 10
    args[1] = dev(cp, idx)
    with pytest.raises(EnforceError, match=r"Index 6 is out of bounds: 10, range 0 to 10"):
        run_op(cp, "SparseLengthsSum", ["d", "i", "l"], ["y"], *args)
    mode("deferred")
    with checks.collect() as run:
        run_op(cp, "SparseLengthsSum", ["d", "i", "l"], ["y"], *args)
    (step, flag, describe), = run.items
    assert flag.get().tolist() == [6]
    with monkeypatch.context() as m:  # the runner's read of every flag imports cupy
        m.setitem(sys.modules, "cupy", cp)
        _, error = run.first_failure()
    assert isinstance(error, EnforceError)
    assert "Index 6 is out of bounds: 10, range 0 to 10" in str(error)


def test_sparse_lengths_sum_deferred_on_an_empty_table(cp, mode):
    """No row to read: every index is flagged, the sums stay zero."""
    mode("deferred")
    with checks.collect() as run:
        got = run_op(cp, "SparseLengthsSum", ["d", "i", "l"], ["y"], cp.zeros((0, 4), F32),
                     dev(cp, [0, 1], np.int64), dev(cp, [1, 1], np.int32))
    assert got.get().tolist() == [[0] * 4] * 2
    assert run.items[0][1].get().tolist() == [0]


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
@pytest.mark.parametrize("op_type", ["SparseLengthsSumGradient",
                                     "SparseLengthsMeanGradient",
                                     "SparseLengthsIndicesInGradientWeightedSumGradient"])
def test_sparse_lengths_gradients(cp, mode, op_type, checks_mode):
    mode(checks_mode)
    rng = np.random.default_rng(9)
    lengths = [2, 0, 3, 4]
    n = sum(lengths)
    dy = floats(rng, (4, 2, 4))
    w = floats(rng, n)
    idx = rng.integers(0, 5, n).astype(np.int64)
    if op_type.endswith("WeightedSumGradient"):
        names = ["w", "dy", "l", "i"]
        arrays = [dev(cp, w), dev(cp, dy), dev(cp, lengths, np.int32), dev(cp, idx)]
    else:
        names = ["dy", "l"]
        arrays = [dev(cp, dy), dev(cp, lengths, np.int32)]
    got = run_op(cp, op_type, names, ["g"], *arrays)
    rows = dy
    if "Mean" in op_type:
        rows = dy * np.array([F32(1.0 / k) if k else F32(0) for k in lengths],
                             F32)[:, None, None]
    want = repeat_reference(rows, lengths)
    if "Weighted" in op_type:
        want = want * w[:, None, None]
    np.testing.assert_array_equal(got.get(), want)
    assert only(cp, "sls_repeat_")[0].name == "sls_repeat_f32x4"
    deferred = checks_mode == "deferred" and "IndicesInGradient" in op_type
    assert bool(only(cp, "index_stats_")) != deferred  # lengths' stats, unless deferred


def test_weighted_sum_with_main_input_gradient(cp):
    rng = np.random.default_rng(10)
    lengths = [2, 0, 3]
    n = sum(lengths)
    dy, data, w = floats(rng, (3, 5)), floats(rng, (6, 5)), floats(rng, n)
    idx = np.array([4, 0, 4, 5, 1], np.int32)
    values, wgrad = run_op(
        cp, "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient",
        ["w", "dy", "l", "d", "i"], ["v", "wg"], dev(cp, w), dev(cp, dy),
        dev(cp, lengths, np.int32), dev(cp, data), dev(cp, idx))
    seg = [0, 0, 2, 2, 2]
    want_v = np.array([w[j] * dy[seg[j]] for j in range(n)], F32)
    want_w = np.array([np.dot(dy[seg[j]].astype(np.float64), data[idx[j]]) for j in range(n)])
    np.testing.assert_array_equal(values.get(), want_v)
    np.testing.assert_allclose(wgrad.get(), want_w, rtol=1e-5, atol=1e-6)
    assert "sls_repeat_f32" in cp.kernel_names()  # 5 columns: no float4


# --- _cuda_checks: index_stats, flag_rows -----------------------------------------------

def stats_reference(idx=None, lengths=None):
    idx = [] if idx is None else [int(v) for v in np.ravel(idx)]
    lengths = [] if lengths is None else [int(v) for v in np.ravel(lengths)]
    return (min(lengths, default=I64_MAX), sum(lengths), min(idx, default=I64_MAX),
            max(idx, default=I64_MIN))


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_index_stats_indices_only(cp, idx_dtype):
    rng = np.random.default_rng(11)
    big = 2 ** 40 if idx_dtype == np.int64 else 2 ** 30
    idx = rng.integers(-big, big, 3000).astype(idx_dtype)
    got = _cuda_checks.index_stats(cp, indices=dev(cp, idx))
    assert got == stats_reference(idx) + (0.0,)
    init, stats = cp.launches
    assert init.name == "index_stats_init" and init.grid == (1,) and init.block == (1,)
    suffix = "i32" if idx_dtype == np.int32 else "i64"
    assert stats.name == "index_stats_" + suffix and stats.grid == grid_for(3000)


def test_index_stats_lengths_only_and_both(cp):
    rng = np.random.default_rng(12)
    lengths = rng.integers(-3, 50, 700).astype(np.int32)
    assert _cuda_checks.index_stats(cp, lengths=dev(cp, lengths)) == \
        stats_reference(None, lengths) + (0.0,)
    assert cp.launches[-1].name == "index_stats_i64"  # no indices: the null i64 variant
    idx = rng.integers(0, 9, (10, 10)).astype(np.int32)  # any shape
    got = _cuda_checks.index_stats(cp, dev(cp, idx), dev(cp, lengths))
    assert got == stats_reference(idx, lengths) + (0.0,)
    # int64 LENGTHS are read as int32; strided INDICES are made contiguous first
    strided = dev(cp, np.arange(40, dtype=np.int64).reshape(4, 10))[:, ::3]
    got = _cuda_checks.index_stats(cp, strided, dev(cp, [4, 5], np.int64))
    assert got == stats_reference(strided.get(), [4, 5]) + (0.0,)


@pytest.mark.parametrize("value", [1.0, -2.5, 3.0e38, -0.0])
def test_index_stats_scalar(cp, value):
    scalar = dev(cp, [[value]], F32)
    got = _cuda_checks.index_stats(cp, dev(cp, [3, 1], np.int64), scalar=scalar)
    assert got[:4] == stats_reference([3, 1]) and got[4] == F32(value)
    assert np.signbit(got[4]) == np.signbit(value)
    got = _cuda_checks.index_stats(cp, scalar=dev(cp, [value, 7.0], np.float64))
    assert got == stats_reference() + (float(F32(value)),)  # float64 read as float32


def test_index_stats_empty_inputs_give_the_sentinels(cp):
    sentinels = (I64_MAX, 0, I64_MAX, I64_MIN, 0.0)
    assert _cuda_checks.index_stats(cp) == sentinels
    assert _cuda_checks.index_stats(cp, dev(cp, [], np.int32),
                                    dev(cp, np.zeros((0, 3), np.int32))) == sentinels
    assert not cp.launches  # nothing to read: answered on the host
    got = _cuda_checks.index_stats(cp, dev(cp, [], np.int32),
                                   dev(cp, np.zeros((0, 3), np.int32)),
                                   scalar=dev(cp, [2.5], F32))
    assert got == sentinels[:4] + (2.5,)
    assert cp.launches[-1].grid == (1,)  # one block even for no index


def test_index_stats_grid_stride(cp, monkeypatch):
    monkeypatch.setattr(_cuda_checks, "_MAX_BLOCKS", 2)
    rng = np.random.default_rng(13)
    idx = rng.integers(-5000, 5000, 3000).astype(np.int64)
    lengths = rng.integers(0, 9, 1500).astype(np.int32)
    got = _cuda_checks.index_stats(cp, dev(cp, idx), dev(cp, lengths))
    assert got == stats_reference(idx, lengths) + (0.0,)
    assert cp.launches[-1].grid == (2,)


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_flag_rows(cp, idx_dtype):
    idx = np.array([[3, 0, 9], [10, 2, -1], [4, 12, 9]], idx_dtype)  # any shape
    flag = new_flag(cp)
    _cuda_checks.flag_rows(cp, dev(cp, idx), 10, flag)
    assert flag.get().tolist() == [3]
    (launch,) = cp.launches
    suffix = "i32" if idx_dtype == np.int32 else "i64"
    assert launch.name == "flag_rows_" + suffix and launch.grid == (1,)
    _cuda_checks.flag_rows(cp, dev(cp, idx), 13, flag)  # no bad row: unchanged
    _cuda_checks.flag_rows(cp, dev(cp, idx[:, :0]), 0, flag)  # empty: no launch
    assert flag.get().tolist() == [3] and len(cp.launches) == 2
    _cuda_checks.flag_rows(cp, dev(cp, idx), 0, flag)  # every row bad: the first
    assert flag.get().tolist() == [0]
    fresh = new_flag(cp)
    _cuda_checks.flag_rows(cp, dev(cp, idx)[:, 1], 10, fresh)  # strided: a copy
    assert fresh.get().tolist() == [2]


def test_gather_deferred_checks_flag_rows(cp, mode, monkeypatch):
    mode("deferred")
    # the host check behind describe() without numba's compiled pass (1 s to compile)
    monkeypatch.setattr(gather, "rows_valid", lambda indices, n: False)
    idx = dev(cp, [1, -2, 5, 7, -9], np.int64)
    with checks.collect() as run:
        got = gather._checked_indices(cp, idx, 6, True)  # negatives wrap first
    assert got.get().tolist() == [1, 4, 5, 7, -3]
    (_, flag, describe), = run.items
    assert flag.get().tolist() == [3]
    assert "id=7 axis_dim=6" in str(describe(3))
    assert cp.kernel_names() == ["flag_rows_i64"]


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
def test_gather_op(cp, mode, checks_mode):
    mode(checks_mode)
    data = np.arange(24, dtype=F32).reshape(6, 4)
    idx = np.array([[5, 0], [-1, 2]], np.int32)
    got = run_op(cp, "Gather", ["d", "i"], ["y"], dev(cp, data), dev(cp, idx))
    np.testing.assert_array_equal(got.get(), data[[[5, 0], [5, 2]]])
    # (sync: the bounds of INDICES as given, int32; deferred: of the int64 rows used)
    assert cp.kernel_names()[-1] == ("index_stats_i32" if checks_mode == "sync"
                                     else "flag_rows_i64")
    if checks_mode == "sync":
        with pytest.raises(EnforceError, match="id=6 axis_dim=6"):
            run_op(cp, "Gather", ["d", "i"], ["y"], dev(cp, data),
                   dev(cp, [1, 6], np.int64))


# --- _cuda_scatter -------------------------------------------------------------------------

def test_sorted_runs(cp):
    rows = np.array([3, 1, 3, 0, 1, 3], np.int32)
    order, sorted_rows = _cuda_scatter.sorted_runs(cp, dev(cp, rows))
    assert order.dtype == np.int64 and order.get().tolist() == [3, 1, 4, 0, 2, 5]
    assert sorted_rows.dtype == np.int32 and sorted_rows.get().tolist() == [0, 1, 1, 3, 3, 3]
    cp.ties = "reverse"  # the unique key makes the sort's stability irrelevant
    assert _cuda_scatter.sorted_runs(cp, dev(cp, rows))[0].get().tolist() == \
        [3, 1, 4, 0, 2, 5]
    order, sorted_rows = _cuda_scatter.sorted_runs(cp, dev(cp, [], np.int64))
    assert order.shape == sorted_rows.shape == (0,)


def scatter_reference(out, rows, values, scale):
    out = out.copy()
    flat = out.reshape(out.shape[0], -1)
    values = values.reshape(len(rows), -1)
    for j, r in enumerate(rows):
        if 0 <= r < flat.shape[0]:
            flat[r] = flat[r] + F32(scale) * values[j]
    return out


SCALES = {"one": 1.0, "float": -0.5, "device": "device"}


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64, np.int16])
@pytest.mark.parametrize("deterministic", [False, True])
def test_scatter_add_rows(cp, mode, deterministic, idx_dtype, scale):
    mode(deterministic=deterministic)
    rng = np.random.default_rng(14)
    rows = np.array([[4, 1, 4], [0, 6, 4], [1, 1, 2]], idx_dtype)  # duplicates, 2-D
    out0 = dyadic(rng, (7, 6)) if not deterministic else floats(rng, (7, 6))
    values = dyadic(rng, (9, 2, 3)) if not deterministic else floats(rng, (9, 2, 3))
    value = SCALES[scale]
    arg = dev(cp, [0.25], F32) if value == "device" else value
    want = scatter_reference(out0, rows.ravel(), values, 0.25 if value == "device" else value)
    for schedule in ([None] if deterministic else [None, "reverse", 5]):
        cp.schedule = schedule
        out = dev(cp, out0)
        got = _cuda_scatter.scatter_add_rows(cp, out, dev(cp, rows), dev(cp, values), arg)
        assert got is out
        np.testing.assert_array_equal(out.get(), want)
    launch = cp.launches[-1]
    suffix = "i32" if idx_dtype == np.int32 else "i64"  # int16 rows become int64
    kind = "scatter_sorted_" if deterministic else "scatter_atomic_"
    assert launch.name == kind + suffix and launch.grid == grid_for(9 * 6)
    scale_value, scale_at = launch.args[-6], launch.args[-5]
    if value == "device":
        assert isinstance(scale_at, cp.ndarray) and scale_value == F32(0)
    else:
        assert isinstance(scale_at, np.uint64) and scale_value == F32(value)


@pytest.mark.parametrize("deterministic", [False, True])
def test_scatter_add_rows_flags_bad_rows(cp, mode, deterministic):
    mode(deterministic=deterministic)
    rows = np.array([2, 0, 7, 2, -1, 7, 1], np.int64)
    values = np.arange(14, dtype=F32).reshape(7, 2)
    want = scatter_reference(np.zeros((5, 2), F32), rows, values, 1.0)
    flag = new_flag(cp)
    out = cp.zeros((5, 2), F32)
    _cuda_scatter.scatter_add_rows(cp, out, dev(cp, rows), dev(cp, values), flag=flag)
    assert flag.get().tolist() == [2]  # the first bad position, both algorithms
    np.testing.assert_array_equal(out.get(), want)
    out = cp.zeros((5, 2), F32)
    _cuda_scatter.scatter_add_rows(cp, out, dev(cp, rows), dev(cp, values))  # null flag
    np.testing.assert_array_equal(out.get(), want)


def test_scatter_add_rows_nothing_to_do(cp, mode):
    out = cp.zeros((3, 0), F32)
    _cuda_scatter.scatter_add_rows(cp, out, dev(cp, [0, 1], np.int64), cp.zeros((2, 0), F32))
    out = cp.zeros((3, 2), F32)
    _cuda_scatter.scatter_add_rows(cp, out, dev(cp, [], np.int32), cp.zeros((0, 2), F32))
    _cuda_scatter.scatter_add_rows(cp, cp.zeros((0,), F32), dev(cp, [], np.int64),
                                   cp.zeros((0,), F32))
    assert cp.launches == [] and out.get().tolist() == [[0, 0]] * 3


@pytest.mark.parametrize("factor", [0.5, 1.0, -3.0])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("sorted_", [False, True])
def test_scale_rows(cp, sorted_, idx_dtype, factor):
    rng = np.random.default_rng(15)
    rows = np.array([3, 0, 3, 9, 3, 1, 0, -2], idx_dtype)  # duplicates, two bad rows
    out0 = floats(rng, (6, 5))
    want = scale_reference(out0, rows, factor)
    for schedule in ([None] if sorted_ else [None, "reverse", 3]):
        cp.schedule = schedule
        out = dev(cp, out0)
        factor_at = dev(cp, [factor], F32)
        if sorted_:
            runs = _cuda_scatter.sorted_runs(cp, dev(cp, rows))
            _cuda_scatter.scale_rows(cp, out, factor_at, runs)
        else:
            _cuda_scatter.scale_rows(cp, out, factor_at, rows=dev(cp, rows))
        np.testing.assert_array_equal(out.get(), want)
    suffix = "i32" if idx_dtype == np.int32 else "i64"
    names = [launch.name for launch in cp.launches if not launch.name.startswith("index")]
    if sorted_:
        assert names[-1] == "scale_rows_sorted_" + suffix
    else:
        assert names[-3:] == ["count_rows_" + suffix, "claim_rows_" + suffix,
                              "scale_claimed_" + suffix]
        assert cp.launches[-1].grid == grid_for(8 * 5)


def swsum_reference(x0, w0, idx, pairs):
    data = x0.reshape(x0.shape[0], -1).copy()
    for r in idx:
        data[r] = data[r] * F32(w0)
    for x, w in pairs:
        x = x.reshape(len(idx), -1)
        for j, r in enumerate(idx):
            data[r] = data[r] + F32(w) * x[j]
    return data.reshape(x0.shape)


@pytest.mark.parametrize("w0", [1.0, 0.5])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("checks_mode,deterministic", [("sync", False), ("sync", True),
                                                       ("deferred", False),
                                                       ("deferred", True)])
def test_scatter_weighted_sum_op(cp, mode, checks_mode, deterministic, idx_dtype, w0):
    mode(checks_mode, deterministic)
    rng = np.random.default_rng(16)
    x0 = dyadic(rng, (7, 2, 2))
    idx = np.array([5, 0, 5, 3, 5, 0], idx_dtype)
    pairs = [(dyadic(rng, (6, 2, 2)), 2.0), (dyadic(rng, (6, 4)), -0.25)]
    want = swsum_reference(x0, w0, idx, pairs)
    x0_dev = dev(cp, x0)
    arrays = [x0_dev, dev(cp, [w0], F32), dev(cp, idx)]
    for x, w in pairs:
        arrays += [dev(cp, x), dev(cp, [w], F32)]
    with checks.collect() as run:
        got = run_op(cp, "ScatterWeightedSum", ["x0", "w0", "i", "x1", "w1", "x2", "w2"],
                     ["x0"], *arrays)
    np.testing.assert_array_equal(got.get(), want)
    np.testing.assert_array_equal(x0_dev.get(), want)  # in place
    names = cp.kernel_names()
    suffix = "i32" if idx_dtype == np.int32 else "i64"
    adds = "scatter_sorted_" if deterministic else "scatter_atomic_"
    assert names.count(adds + suffix) == 2
    scaled = checks_mode == "deferred" or w0 != 1.0  # sync checks read w_0 first
    assert any(n.startswith(("scale_", "count_")) for n in names) == scaled
    if checks_mode == "sync":
        assert names[:2] == ["index_stats_init", "index_stats_" + suffix]
        assert run.items == []
    else:
        assert len(run.items) == 1 and run.items[0][1].get().tolist() == [I64_MAX]


def test_activations_are_one_kernel_each_on_float32(cp):
    rng = np.random.default_rng(43)
    x = floats(rng, (3, 5, 2))
    y = run_op(cp, "Sigmoid", ["x"], ["y"], dev(cp, x))
    with np.errstate(over="ignore"):
        want = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(F32)
    assert y.shape == x.shape and y.dtype == F32
    np.testing.assert_allclose(y.get(), want, rtol=2e-7)
    dy = floats(rng, x.shape)
    dx = run_op(cp, "SigmoidGradient", ["y", "dy"], ["dx"], y, dev(cp, dy))
    np.testing.assert_array_equal(dx.get(), dy * y.get() * (F32(1) - y.get()))
    relu_y = np.maximum(x, 0)
    dr = run_op(cp, "ReluGradient", ["r", "dy"], ["dr"], dev(cp, relu_y), dev(cp, dy))
    np.testing.assert_array_equal(dr.get(), np.where(relu_y > 0, dy, F32(0)))
    assert cp.kernel_names() == ["sigmoid_f32", "sigmoid_gradient_f32", "relu_gradient_f32"]
    # float16 (which Caffe2's CUDA Relu took) keeps the CuPy formula: no kernel
    half = run_op(cp, "ReluGradient", ["r", "dy"], ["dr"], dev(cp, relu_y, np.float16),
                  dev(cp, dy, np.float16))
    assert half.dtype == np.float16 and len(cp.launches) == 3
    np.testing.assert_array_equal(half.get(), np.where(relu_y > 0, dy, 0).astype(np.float16))


@pytest.mark.parametrize("pairs", [1, 2, 3])
def test_weighted_sum_op_is_one_kernel_plus_one_per_further_pair(cp, pairs):
    rng = np.random.default_rng(41)
    xs = [floats(rng, (4, 6))] + [floats(rng, (24,) if k % 2 else (4, 6))
                                  for k in range(1, pairs)]  # any shape of X_0's size
    ws = [floats(rng, (1,)) for _ in range(pairs)]
    names, arrays = [], []
    for k in range(pairs):
        names += ["x%d" % k, "w%d" % k]
        arrays += [dev(cp, xs[k]), dev(cp, ws[k])]
    got = run_op(cp, "WeightedSum", names, ["y"], *arrays)
    want = xs[0] * ws[0][0]
    for k in range(1, pairs):
        want = want + ws[k][0] * xs[k].reshape(4, 6)
    assert got.shape == (4, 6) and got.dtype == F32
    np.testing.assert_array_equal(got.get(), want)
    assert cp.kernel_names() == ([] if pairs == 1 else
                                 ["weighted_sum_pair"] + ["weighted_sum_add"] * (pairs - 2))


def test_scatter_weighted_sum_op_bad_index(cp, mode):
    x0 = np.ones((4, 3), F32)
    arrays = [dev(cp, x0), dev(cp, [1.0], F32), dev(cp, [1, 4, 0, -1], np.int64),
              dev(cp, np.ones((4, 3), F32)), dev(cp, [1.0], F32)]
    names = ["x0", "w0", "i", "x1", "w1"]
    with pytest.raises(EnforceError, match=r"Index out of bounds: 4, range 0 to 4"):
        run_op(cp, "ScatterWeightedSum", names, ["x0"], *arrays)
    np.testing.assert_array_equal(arrays[0].get(), x0)  # nothing written
    mode("deferred")
    with checks.collect() as run:
        run_op(cp, "ScatterWeightedSum", names, ["x0"], *arrays)
    (_, flag, describe), = run.items
    assert flag.get().tolist() == [1]
    assert "INDICES[1]" in str(describe(1))
    np.testing.assert_array_equal(arrays[0].get(), [[2] * 3, [2] * 3, [1] * 3, [1] * 3])


def test_scatter_weighted_sum_op_empty_indices(cp, mode):
    x0 = dev(cp, np.ones((3, 2), F32))
    got = run_op(cp, "ScatterWeightedSum", ["x0", "w0", "i", "x1", "w1"], ["x0"], x0,
                 dev(cp, [0.5], F32), dev(cp, [], np.int32), cp.zeros((0, 2), F32),
                 dev(cp, [1.0], F32))
    assert got.get().tolist() == [[1, 1]] * 3 and cp.launches == []


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("op_type", ["SparseToDense", "UnsortedSegmentSum",
                                     "BatchGatherGradient"])
def test_scatter_ops(cp, mode, op_type, deterministic):
    mode(deterministic=deterministic)
    rng = np.random.default_rng(17)
    idx = np.array([2, 0, 2, 4, 2], np.int32)
    if op_type == "BatchGatherGradient":
        data = np.zeros((2, 5, 3), F32)
        grad = dyadic(rng, (2, 5, 3))
        got = run_op(cp, op_type, ["d", "i", "g"], ["y"], dev(cp, data), dev(cp, idx),
                     dev(cp, grad))
        want = np.zeros_like(data)
        for s in range(2):
            want[s] = scatter_reference(want[s], idx, grad[s], 1.0)
    else:
        values = dyadic(rng, (5, 2, 3))
        if op_type == "SparseToDense":
            got = run_op(cp, op_type, ["i", "v"], ["y"], dev(cp, idx), dev(cp, values))
        else:
            got = run_op(cp, op_type, ["v", "i"], ["y"], dev(cp, values), dev(cp, idx))
        want = scatter_reference(np.zeros((5, 2, 3), F32), idx, values, 1.0)
    np.testing.assert_array_equal(got.get(), want)
    kind = "scatter_sorted_" if deterministic else "scatter_atomic_"
    assert kind + ("i64" if op_type == "BatchGatherGradient" else "i32") in cp.kernel_names()


# --- adagrad ---------------------------------------------------------------------------------

def fma32(a, x, y):
    """float32 fma: the float64 product of two float32s is exact."""
    return (np.float64(F32(a)) * x.astype(np.float64) + y.astype(np.float64)).astype(F32)


def sparse_adagrad_reference(w, h, idx, grad, lr, eps, wd):
    w, h = w.reshape(w.shape[0], -1).copy(), h.reshape(w.shape[0], -1).copy()
    g = grad.reshape(len(idx), -1)
    for j, r in enumerate(idx):
        gv = fma32(wd, w[r], g[j]) if wd else g[j]
        h[r] = h[r] + gv * gv
        w[r] = w[r] + (F32(lr) * gv) / (np.sqrt(h[r]) + F32(eps))
    return w, h


@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("idx_shape", [(7,), (2, 4)])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_sparse_adagrad(cp, idx_dtype, idx_shape, wd):
    rng = np.random.default_rng(18)
    param, moment = floats(rng, (8, 2, 3)), np.abs(floats(rng, (8, 2, 3)))
    idx = np.array([5, 1, 5, 0, 5, 7, 1, 2][:int(np.prod(idx_shape))],
                   idx_dtype).reshape(idx_shape)
    grad = floats(rng, idx_shape + (2, 3))
    w, h = dev(cp, param), dev(cp, moment)
    got_w, got_h = run_op(cp, "SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], w, h,
                          dev(cp, idx), dev(cp, grad), dev(cp, [0.1], F32),
                          epsilon=1e-5, weight_decay=wd)
    assert got_w is w and got_h is h  # in place
    want_w, want_h = sparse_adagrad_reference(param, moment, idx.ravel(), grad, 0.1,
                                              1e-5, wd)
    np.testing.assert_allclose(w.get().reshape(8, -1), want_w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h.get().reshape(8, -1), want_h, rtol=1e-6, atol=1e-7)
    (launch,) = cp.launches
    k = idx.size
    assert launch.name == "sparse_adagrad_i64"  # indices are made int64 before the sort
    assert launch.grid == grid_for(k * 6) and launch.args[-4:-1] == (k, 6, 8)


def test_sparse_adagrad_empty_and_bad_indices(cp):
    param = dev(cp, np.ones((4, 2), F32))
    args = [param, dev(cp, np.ones((4, 2), F32))]
    run_op(cp, "SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], *args,
           dev(cp, [], np.int64), cp.zeros((0, 2), F32), dev(cp, [0.1], F32))
    assert cp.launches == [] and param.get().tolist() == [[1, 1]] * 4
    with pytest.raises(EnforceError, match="idx:4"):
        run_op(cp, "SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], *args,
               dev(cp, [1, 4], np.int32), cp.zeros((2, 2), F32), dev(cp, [0.1], F32))
    assert cp.launches == [] and param.get().tolist() == [[1, 1]] * 4


def test_sparse_adagrad_reinterprets_an_int64_moment(cp):
    """Caffe2 kept an int64 moment's buffer as float32 (DLRM's zero moments): the
    kernel updates the first half of its bytes, through the launcher's view."""
    rng = np.random.default_rng(20)
    param, idx, grad = floats(rng, (6, 4)), np.array([1, 3, 1], np.int64), floats(rng, (3, 4))
    moment = dev(cp, np.zeros((6, 4), np.int64))
    w, h = run_op(cp, "SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"],
                  dev(cp, param), moment, dev(cp, idx), dev(cp, grad), dev(cp, [0.1], F32))
    want_w, want_h = sparse_adagrad_reference(param, np.zeros((6, 4), F32), idx, grad, 0.1,
                                              1e-5, 0.0)
    assert h.dtype == F32 and h.shape == (6, 4) and np.shares_memory(h, moment)
    np.testing.assert_allclose(w.get(), want_w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h.get(), want_h, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(moment.get().view(F32).ravel()[:24], want_h.ravel())


def rowwise_reference(w, h, idx, grad, lr, eps, wd, counter=None, halflife=-1):
    w, h = w.copy(), h.copy()
    block = w.shape[1]
    g_all = grad.reshape(len(idx), block)
    for j, r in enumerate(idx):
        g = g_all[j]
        if wd:
            if counter is not None:
                freq = F32(halflife / counter[r] if counter[r] > 0 else 1.0)
                scale = F32(F32(wd) * freq)
                g = (np.float64(scale) * w[r].astype(np.float64) + g).astype(F32)
            else:
                g = fma32(wd, w[r], g)
        total = F32(0)
        for c in range(block):
            total = F32(total + F32(g[c] * g[c]))
        h[r] = F32(h[r] + F32(total / F32(block)))
        step = F32(F32(lr) / F32(np.sqrt(h[r]) + F32(eps)))
        w[r] = w[r] + g * step
    return w, h


@pytest.mark.parametrize("wd,halflife", [(0.0, -1), (0.02, -1), (0.02, 4), (0.0, 4)])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_rowwise_sparse_adagrad(cp, idx_dtype, wd, halflife):
    rng = np.random.default_rng(19)
    param, moment = floats(rng, (8, 5)), np.abs(floats(rng, 8))
    idx = np.array([6, 2, 6, 0, 6, 2, 7], idx_dtype)
    grad = floats(rng, (7, 5))
    counter = np.array([0, 3, 0.5, 9, 1, 2, 8, 0], np.float64)
    w, h = dev(cp, param), dev(cp, moment)
    names = ["p", "m", "i", "g", "lr"] + (["c"] if halflife != -1 else [])
    arrays = [w, h, dev(cp, idx), dev(cp, grad), dev(cp, [0.05], F32)]
    if halflife != -1:
        arrays.append(dev(cp, counter))
    run_op(cp, "RowWiseSparseAdagrad", names, ["p", "m"], *arrays, epsilon=1e-5,
           weight_decay=wd, counter_halflife=halflife)
    want_w, want_h = rowwise_reference(param, moment, idx, grad, 0.05, 1e-5, wd,
                                       counter if halflife > 0 else None, halflife)
    np.testing.assert_allclose(w.get(), want_w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h.get(), want_h, rtol=1e-6, atol=1e-7)
    (launch,) = cp.launches
    assert launch.name == "rowwise_adagrad_i64" and launch.grid == (1,)
    assert isinstance(launch.args[8], cp.ndarray if halflife > 0 else np.uint64)
    assert launch.args[9] == np.float64(halflife)


def test_rowwise_sparse_adagrad_on_a_vector(cp):
    """A 1-D param: rows of one element (block 1)."""
    rng = np.random.default_rng(21)
    param, moment = floats(rng, 8), np.zeros(8, F32)
    idx, grad = np.array([1, 3, 1], np.int32), floats(rng, 3)
    w, h = dev(cp, param), dev(cp, moment)
    run_op(cp, "RowWiseSparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], w, h,
           dev(cp, idx), dev(cp, grad), dev(cp, [0.1], F32))
    want_w, want_h = rowwise_reference(param.reshape(8, 1), moment, idx, grad, 0.1, 1e-5,
                                       0.0)
    np.testing.assert_allclose(w.get(), want_w.ravel(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h.get(), want_h, rtol=1e-6, atol=1e-7)
    assert cp.launches[0].args[-3] == np.int64(1)


# --- gather: Unique ---------------------------------------------------------------------------

@pytest.mark.parametrize("ties", ["stable", "reverse"])
@pytest.mark.parametrize("values", [[5, -3, 5, 0, 7, -3, 5], [4], [2 ** 40, -1, 2 ** 40, 3],
                                    []])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_unique(cp, dtype, values, ties):
    if dtype == np.int32 and any(abs(v) >= 2 ** 31 for v in values):
        values = [v % 1000 for v in values]
    cp.ties = ties
    x = np.array(values, dtype)
    distinct = sorted(set(values))
    got, remapping = run_op(cp, "Unique", ["x"], ["u", "r"], dev(cp, x))
    assert got.dtype == dtype and got.get().tolist() == distinct
    assert remapping.dtype == np.int32
    assert remapping.get().tolist() == [distinct.index(v) for v in values]
    only_values = run_op(cp, "Unique", ["x"], ["u"], dev(cp, x))
    assert only_values.get().tolist() == distinct
    suffix = "i32" if dtype == np.int32 else "i64"
    assert cp.kernel_names() == ([] if not values else
                                 ["unique_mark_" + suffix, "unique_scatter_" + suffix] * 2)


# --- grids: the launch covers its last thread ------------------------------------------------

def test_launches_cover_the_last_thread(cp, mode):
    """257 threads need a second block: a launcher one thread short, or a grid rounded
    down, leaves out the last position (where each case puts something to see)."""
    n = 257
    idx = np.zeros(n, np.int64)
    idx[-1] = 99
    flag = new_flag(cp)
    _cuda_checks.flag_rows(cp, dev(cp, idx), 10, flag)
    assert flag.get().tolist() == [n - 1]
    assert _cuda_checks.index_stats(cp, dev(cp, idx))[3] == 99
    out = cp.zeros((100, 1), F32)
    _cuda_scatter.scatter_add_rows(cp, out, dev(cp, idx), cp.ones((n, 1), F32))
    assert out.get()[[0, 99], 0].tolist() == [n - 1, 1]
    _cuda_scatter.scale_rows(cp, out, dev(cp, [2.0], F32), rows=dev(cp, idx))
    assert out.get()[99, 0] == 2.0
    table = np.arange(100, dtype=F32).reshape(100, 1)
    got = sparse_lengths._pool_cuda(cp, dev(cp, table), dev(cp, idx),
                                    dev(cp, [1] * n, np.int32), None, (n, 1))
    assert got.get()[-1, 0] == 99.0
    got = sparse_lengths._repeat_cuda(cp, dev(cp, np.arange(n, dtype=F32).reshape(n, 1)),
                                      dev(cp, [1] * n, np.int32), n)
    assert got.get()[-1, 0] == n - 1
    values, remapping = run_op(cp, "Unique", ["x"], ["u", "r"], dev(cp, idx))
    assert values.get().tolist() == [0, 99] and remapping.get()[-1] == 1
    w = dev(cp, np.zeros((100, 1), F32))
    run_op(cp, "SparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], w,
           dev(cp, np.zeros((100, 1), F32)), dev(cp, idx), cp.ones((n, 1), F32),
           dev(cp, [1.0], F32), epsilon=0.0)
    assert w.get()[99, 0] == 1.0
    w = dev(cp, np.zeros(100, F32))
    run_op(cp, "RowWiseSparseAdagrad", ["p", "m", "i", "g", "lr"], ["p", "m"], w,
           dev(cp, np.zeros(100, F32)), dev(cp, idx), cp.ones((n,), F32),
           dev(cp, [1.0], F32), epsilon=0.0)
    assert w.get()[99] == 1.0
