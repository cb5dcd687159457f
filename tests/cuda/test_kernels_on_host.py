"""The ops' CUDA kernels, run on the CPU by tests/cuda/hostgrid.py, against numpy
formulas written here (never the ops' own Python code): the argument conventions are
the ones of the kernels' callers (ops/sparse_lengths.py _pool_cuda / _repeat_cuda,
ops/_cuda_checks.py, ops/_cuda_scatter.py, ops/adagrad.py, ops/gather.py unique_cuda).

Sums are compared in the kernels' order (index order, position order), so float32
results agree to the last bits; rtol 1e-6 leaves room for fma's single rounding.
Inputs are placed inside guard bands (NaN rows, poisoned indices, sentinel outputs):
a read outside an input shows up as a NaN, a write outside an output as a changed
sentinel.
"""

import numpy as np
import pytest

from graphnet import registry
from graphnet.ops import _cuda

from . import hostgrid
from .nvrtc import compile_ptx

registry.registered_types()  # import every op family, so every source is registered

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min
F32 = np.float32
PAD = 16  # guard elements on each side of a guarded array (64 bytes of float32)
THREADED_BLOCK = 64  # schedule="threads" starts a thread per lane: smaller blocks


@pytest.fixture(scope="module")
def mods():
    return hostgrid.compile_many(_cuda.SOURCES.values())


def kernel(mods, source, name):
    return mods[source].get_function(name)


# --- helpers ----------------------------------------------------------------------------

def _aligned_empty(count, dtype):
    dtype = np.dtype(dtype)
    raw = np.empty(count * dtype.itemsize + 16, np.uint8)
    skip = (-raw.ctypes.data) % 16
    return raw[skip:skip + count * dtype.itemsize].view(dtype)


class Guarded(object):
    """`values` in the middle of a 16-byte aligned buffer whose PAD elements on each
    side hold `fill`: .a is the (C-contiguous) array handed to a kernel."""

    def __init__(self, values, fill, dtype=None):
        values = np.asarray(values, dtype=dtype)
        self.buffer = _aligned_empty(values.size + 2 * PAD, values.dtype)
        self.buffer[:] = fill
        self.fill = fill
        self.a = self.buffer[PAD:PAD + values.size].reshape(values.shape)
        self.a[...] = values

    def untouched(self):
        edges = np.concatenate([self.buffer[:PAD], self.buffer[-PAD:]])
        if isinstance(self.fill, float) and np.isnan(self.fill):
            return bool(np.isnan(edges).all())
        return bool((edges == self.fill).all())


def new_flag():
    return np.array([I64_MAX], np.int64)


def nonzero_floats(rng, shape, low=0.25, high=2.0):
    """Random float32 values, never zero, of both signs."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (sign * rng.uniform(low, high, shape)).astype(F32)


def close(got, want, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def starts_of(lengths):
    """Where each segment starts: exclusive prefix sum, int64 (what _pool_cuda passes)."""
    starts = np.zeros(len(lengths), np.int64)
    if len(lengths) > 1:
        starts[1:] = np.cumsum(np.asarray(lengths, np.int64))[:-1]
    return starts


# --- sparse_lengths: sls_pool_* -------------------------------------------------------

def pool_reference(table, idx, lengths, w, upto=None):
    """Per-segment float32 sums in index order, bad rows skipped; positions past
    `upto` (default len(idx)) are never read. (rows, block) float32 table."""
    rows, block = table.shape
    n = len(idx) if upto is None else upto
    out = np.zeros((len(lengths), block), F32)
    j = 0
    for m, length in enumerate(lengths):
        acc = np.zeros(block, F32)
        for q in range(j, min(j + int(length), n)):
            r = int(idx[q])
            if 0 <= r < rows:
                acc = acc + (table[r] if w is None else F32(w[q]) * table[r])
        out[m] = acc
        j += int(length)
    return out


def run_pool(mods, kind, idx_dtype, table, idx, lengths, w=None, flag="null",
             schedule=None, poison_row=None, rows_in_flight=4):
    """Launch sls_pool[8]_<kind>_<i32|i64> as _pool_cuda does (8: rows_in_flight=8);
    (out, flag value or None).
    Inputs sit in guard bands; INDICES' guards hold `poison_row` (a row whose values
    are NaN) and WEIGHTS' guards NaN, so a read past either end makes a NaN sum."""
    rows, block = table.shape
    segs = len(lengths)
    data = Guarded(table, np.nan, np.float16 if kind == "f16" else F32)
    fill = poison_row if poison_row is not None else 0
    indices = Guarded(idx, fill, idx_dtype)
    weights = Guarded(w, np.nan, F32) if w is not None else None
    lens = Guarded(lengths, 0, np.int32)
    out = Guarded(np.full((segs, block), -7.0, F32), -7.0)
    f = new_flag() if flag == "flag" else np.uint64(0)
    threads_block = block // 4 if kind == "f32x4" else block
    name = "sls_pool%s_%s_%s" % ("" if rows_in_flight == 4 else rows_in_flight, kind,
                                  _cuda.index_type(idx_dtype))
    hostgrid.launch(kernel(mods, "sparse_lengths", name), segs * threads_block,
                    (data.a, indices.a, np.uint64(0) if weights is None else weights.a,
                     starts_of(lengths), lens.a, np.int64(segs), np.int64(threads_block),
                     np.int64(rows), np.int64(len(idx)), out.a, f), schedule=schedule)
    assert out.untouched(), "sls_pool wrote outside OUTPUT"
    return out.a, (int(f[0]) if flag == "flag" else None)


def pool_case(rng, rows, block, segs, max_len=9, kind="f32"):
    lengths = rng.integers(0, max_len + 1, size=segs).astype(np.int32)
    n = int(lengths.sum())
    idx = rng.integers(0, rows, size=n)
    table = nonzero_floats(rng, (rows, block))
    if kind == "f16":
        table = table.astype(np.float16).astype(F32)  # the values a half table holds
    w = nonzero_floats(rng, (n,))
    return table, idx, lengths, w


POOL_KINDS = ["f32", "f16", "f32x4"]
SHAPES = [(1, 4, 1), (7, 4, 5), (13, 12, 17), (5, 8, 40), (3, 4, 0)]  # rows, block, segs


@pytest.mark.parametrize("kind", POOL_KINDS)
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("flag", ["null", "flag"])
def test_sls_pool_sums_segments_in_index_order(mods, kind, idx_dtype, weighted, flag):
    rng = np.random.default_rng([POOL_KINDS.index(kind), weighted, flag == "flag",
                                 np.dtype(idx_dtype).itemsize])
    blocks = [4, 8, 12] if kind == "f32x4" else [1, 3, 5, 8]
    for rows, block, segs in SHAPES:
        for b in (block, blocks[segs % len(blocks)]):
            table, idx, lengths, w = pool_case(rng, rows, b, segs, max_len=19, kind=kind)
            w = w if weighted else None
            want = pool_reference(table, idx, lengths, w)
            out, f = run_pool(mods, kind, idx_dtype, table, idx, lengths, w, flag)
            close(out, want)
            assert f in (None, I64_MAX)
            # 8 rows in flight: the same sums in the same order, bit for bit
            out8, f8 = run_pool(mods, kind, idx_dtype, table, idx, lengths, w, flag,
                                rows_in_flight=8)
            np.testing.assert_array_equal(out8, out)
            assert f8 == f


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_sls_pool_empty_segments_and_empty_indices(mods, kind):
    rng = np.random.default_rng(5)
    table = nonzero_floats(rng, (4, 8))
    if kind == "f16":
        table = table.astype(np.float16).astype(F32)  # the values a half table holds
    for lengths in ([0], [0, 0, 0], [0, 3, 0, 0, 2, 0]):
        lengths = np.array(lengths, np.int32)
        idx = rng.integers(0, 4, size=int(lengths.sum()))
        out, f = run_pool(mods, kind, np.int64, table, idx, lengths, None, "flag")
        close(out, pool_reference(table, idx, lengths, None))
        assert f == I64_MAX
        assert (out[lengths == 0] == 0).all()


@pytest.mark.parametrize("kind", POOL_KINDS)
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("schedule", [None, "reverse", 7])
def test_sls_pool_flags_the_first_bad_index_and_skips_bad_ones(mods, kind, idx_dtype,
                                                               schedule):
    rng = np.random.default_rng([POOL_KINDS.index(kind), np.dtype(idx_dtype).itemsize])
    rows, block = 9, 8
    for trial in range(12):
        table, idx, lengths, w = pool_case(rng, rows, block, 6, kind=kind)
        n = len(idx)
        if n < 2:
            continue
        bad = np.sort(rng.choice(n, size=min(n, 1 + trial % 3), replace=False))
        idx[bad] = rng.choice([-1, -3, rows, rows + 5, -2 ** 31], size=len(bad))
        w = w if trial % 2 else None
        out, f = run_pool(mods, kind, idx_dtype, table, idx, lengths, w, "flag", schedule)
        assert f == bad[0], "flagged %d, the first bad position is %d" % (f, bad[0])
        close(out, pool_reference(table, idx, lengths, w))
        # with the checks made before (null flag) the same sums, nothing recorded
        out, _ = run_pool(mods, kind, idx_dtype, table, idx, lengths, w, "null", schedule)
        close(out, pool_reference(table, idx, lengths, w))


@pytest.mark.parametrize("rows_in_flight", [4, 8])
def test_sls_pool_bad_index_in_the_unrolled_loop_and_its_remainder(mods, rows_in_flight):
    """One segment of 11: positions 0..7 go through the unrolled loop (two rounds of
    4 or one of 8), 8..10 the remainder."""
    table = nonzero_floats(np.random.default_rng(1), (5, 4))
    for j in range(11):
        idx = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0])
        idx[j] = 5
        out, f = run_pool(mods, "f32", np.int64, table, idx, np.array([11]), None, "flag",
                          rows_in_flight=rows_in_flight)
        assert f == j
        close(out, pool_reference(table, idx, [11], None))


def _poisoned_table(rng, rows, block, kind):
    """A table whose last row is NaN: INDICES' guards point there, and the data's
    indices never do."""
    table = nonzero_floats(rng, (rows, block))
    if kind == "f16":
        table = table.astype(np.float16).astype(F32)
    table[rows - 1] = np.nan
    return table


@pytest.mark.parametrize("kind", POOL_KINDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_sls_pool_negative_length_flags_0_and_reads_nothing_out_of_range(mods, kind,
                                                                          weighted):
    rng = np.random.default_rng([POOL_KINDS.index(kind), weighted])
    rows, block = 6, 8
    table = _poisoned_table(rng, rows, block, kind)
    for lengths in ([3, -2, 4], [-1, 2], [2, 5, -7, 1, 3], [4, -9], [0, -3, 9, 2]):
        lengths = np.array(lengths, np.int32)
        n = max(1, int(np.maximum(lengths, 0).sum()))
        idx = rng.integers(0, rows - 1, size=n)
        w = nonzero_floats(rng, (n,)) if weighted else None
        out, f = run_pool(mods, kind, np.int64, table, idx, lengths, w, "flag",
                          poison_row=rows - 1)
        assert f == 0
        assert np.isfinite(out).all(), "a NaN: INDICES or WEIGHTS read out of range"
        first_bad = int(np.argmax(lengths < 0))
        close(out[:first_bad], pool_reference(table, idx, lengths[:first_bad], w))


@pytest.mark.parametrize("kind", POOL_KINDS)
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_sls_pool_lengths_past_indices_flag_and_stop_at_n(mods, kind, idx_dtype):
    """sum(LENGTHS) > n. The last segment ends elsewhere than n, which flags 0
    (gn_check_segment). The
    segment crossing n sums up to n; later ones are empty; nothing past n is read."""
    rng = np.random.default_rng(np.dtype(idx_dtype).itemsize)
    rows, block = 6, 4
    table = _poisoned_table(rng, rows, block, kind)
    for lengths, n in (([3, 4], 5), ([9], 2), ([2, 3, 4, 5], 6), ([1, 8, 0, 3], 4),
                       ([5, 6], 5)):
        lengths = np.array(lengths, np.int32)
        idx = rng.integers(0, rows - 1, size=n)
        for w in (None, nonzero_floats(rng, (n,))):
            out, f = run_pool(mods, kind, idx_dtype, table, idx, lengths, w, "flag",
                              poison_row=rows - 1)
            assert f == 0
            assert np.isfinite(out).all(), "a NaN: INDICES or WEIGHTS read past n"
            close(out, pool_reference(table, idx, lengths, w, upto=n))


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_sls_pool_lengths_short_of_indices_flag_0(mods, kind):
    """sum(LENGTHS) < n: the last segment does not end at n."""
    rng = np.random.default_rng(11)
    rows, block = 6, 4
    table = _poisoned_table(rng, rows, block, kind)
    for lengths, n in (([3, 4], 9), ([0], 1), ([2, 0, 1], 4)):
        lengths = np.array(lengths, np.int32)
        idx = rng.integers(0, rows - 1, size=n)
        out, f = run_pool(mods, kind, np.int32, table, idx, lengths, None, "flag",
                          poison_row=rows - 1)
        assert f == 0
        close(out, pool_reference(table, idx, lengths, None))


def test_sls_pool_f16_converts_every_half_exactly(mods):
    """All 65536 float16 bit patterns through gn_load's host conversion (ops/_cuda.py
    PRELUDE): one segment per pattern, one column."""
    halves = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(-1, 1)
    segs = halves.shape[0]
    out = np.empty((segs, 1), F32)
    hostgrid.launch(kernel(mods, "sparse_lengths", "sls_pool_f16_i32"), segs,
                    (halves, np.arange(segs, dtype=np.int32), np.uint64(0),
                     np.arange(segs, dtype=np.int64), np.ones(segs, np.int32),
                     np.int64(segs), np.int64(1), np.int64(segs), np.int64(segs), out,
                     np.uint64(0)))
    with np.errstate(invalid="ignore"):  # signaling NaNs
        want = F32(0.0) + halves.astype(F32)  # a sum from +0: -0.0 comes out as +0.0
    nan = np.isnan(want)
    assert (np.isnan(out) == nan).all()
    np.testing.assert_array_equal(out[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_prelude_half_load_is_exact_for_every_bit_pattern():
    """gn_load's host conversion alone (a sum would turn -0.0 into +0.0)."""
    module = hostgrid.compile(_cuda.PRELUDE + r"""
extern "C" __global__ void half_to_float(const unsigned short* h, i64 n, float* out) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = gn_load(h, i);
}
""", name="prelude_half")
    halves = np.arange(65536, dtype=np.uint16)
    out = np.empty(65536, F32)
    hostgrid.launch(module.get_function("half_to_float"), 65536,
                    (halves, np.int64(65536), out))
    want = halves.view(np.float16).astype(F32)
    nan = np.isnan(want)
    assert (np.isnan(out) == nan).all() and nan.sum() == 2 * 1023
    np.testing.assert_array_equal(out[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert out[0x8000].view(np.uint32) == 0x80000000  # -0.0
    assert out[0x0001] == 2.0 ** -24 and out[0x7C00] == np.inf  # subnormal, inf


def test_device_compile_keeps_the_ptx_conversion():
    """NVRTC defines __CUDA_ARCH__: the GPU still loads halves with cvt.f32.f16."""
    ptx = compile_ptx(_cuda.SOURCES["sparse_lengths"].code, "sparse_lengths.cu")
    assert "cvt.f32.f16" in ptx


# --- sparse_lengths: sls_repeat_* ----------------------------------------------------

def run_repeat(mods, kind, dy, lengths, n, flag="flag", schedule=None):
    segs, block = dy.shape
    threads_block = block // 4 if kind == "f32x4" else block
    grads = Guarded(dy, np.nan, F32)
    out = Guarded(np.full((n, block), -7.0, F32), -7.0)
    f = new_flag() if flag == "flag" else np.uint64(0)
    hostgrid.launch(kernel(mods, "sparse_lengths", "sls_repeat_" + kind),
                    segs * threads_block,
                    (grads.a, starts_of(lengths), np.asarray(lengths, np.int32),
                     np.int64(segs), np.int64(threads_block), np.int64(n), out.a, f),
                    schedule=schedule)
    assert out.untouched(), "sls_repeat wrote outside OUTPUT"
    return out.a, (int(f[0]) if flag == "flag" else None)


@pytest.mark.parametrize("kind", ["f32", "f32x4"])
@pytest.mark.parametrize("flag", ["null", "flag"])
def test_sls_repeat_copies_each_row_length_times(mods, kind, flag):
    rng = np.random.default_rng([kind == "f32x4", flag == "flag"])
    for segs, block in ((1, 4), (5, 8), (17, 12), (40, 4)):
        if kind == "f32" and segs % 2:
            block -= 1  # odd widths too (float kernels only)
        lengths = rng.integers(0, 10, size=segs).astype(np.int32)
        dy = nonzero_floats(rng, (segs, block))
        n = int(lengths.sum())
        out, f = run_repeat(mods, kind, dy, lengths, n, flag, schedule=segs)
        np.testing.assert_array_equal(out, np.repeat(dy, lengths, axis=0))
        assert f in (None, I64_MAX)


@pytest.mark.parametrize("kind", ["f32", "f32x4"])
def test_sls_repeat_bad_lengths_flag_0_and_write_only_inside(mods, kind):
    """A negative length, or lengths not summing to n, flag 0; rows are written only
    inside OUTPUT. (After a negative length the later segments start earlier and
    overwrite rows: garbage, but flagged; only sums to n are checked row by row.)"""
    rng = np.random.default_rng(3)
    block = 8
    for lengths, n in (([3, -2, 4], 5), ([2, 5], 4), ([1, 1], 5), ([-3], 2), ([4, 0], 1)):
        lengths = np.array(lengths, np.int32)
        dy = nonzero_floats(rng, (len(lengths), block))
        out, f = run_repeat(mods, kind, dy, lengths, n)
        assert f == 0
        if (lengths < 0).any():
            continue
        want = np.full((n, block), -7.0, F32)  # rows no segment reaches stay as they were
        reached = np.repeat(dy, lengths, axis=0)[:n]
        want[:len(reached)] = reached
        np.testing.assert_array_equal(out, want)


# --- index_checks ------------------------------------------------------------------------

def run_index_stats(mods, idx, lengths, scalar, blocks=None, block=256):
    """index_stats_init, then index_stats_<i32|i64> as _cuda_checks.index_stats
    launches it (or over `blocks` blocks: the grid-stride loop)."""
    out = np.full(5, -123, np.int64)
    hostgrid.launch(kernel(mods, "index_checks", "index_stats_init"), 1, (out,), block=1)
    n = 0 if idx is None else len(idx)
    m = 0 if lengths is None else len(lengths)
    if blocks is None:
        blocks = max(1, min(1024, (max(n, m) + 255) // 256))
    suffix = "i64" if idx is None else _cuda.index_type(idx.dtype)
    bits = (np.uint64(0) if scalar is None
            else np.array([scalar], F32).view(np.uint32))
    fn = kernel(mods, "index_checks", "index_stats_" + suffix)
    fn((blocks,), (block,), (np.uint64(0) if not n else idx, np.int64(n),
                             np.uint64(0) if not m else lengths, np.int64(m), bits, out))
    return out.tolist()


def stats_reference(idx, lengths, scalar):
    has_idx = idx is not None and len(idx) > 0
    has_len = lengths is not None and len(lengths) > 0
    return [int(lengths.min()) if has_len else I64_MAX,
            int(lengths.astype(np.int64).sum()) if has_len else 0,
            int(idx.min()) if has_idx else I64_MAX,
            int(idx.max()) if has_idx else I64_MIN,
            int(np.array([scalar], F32).view(np.uint32)[0]) if scalar is not None else 0]


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_index_stats_over_several_blocks(mods, idx_dtype):
    rng = np.random.default_rng(np.dtype(idx_dtype).itemsize)
    big = 2 ** 40 if idx_dtype == np.int64 else 2 ** 30
    for n, m in ((1000, 900), (257, 3), (5, 800), (1, 1), (0, 300)):
        idx = rng.integers(-big, big, size=n).astype(idx_dtype)
        lengths = rng.integers(-2 ** 30, 2 ** 30, size=m).astype(np.int32)
        scalar = F32(rng.standard_normal())
        want = stats_reference(idx, lengths, scalar)
        assert run_index_stats(mods, idx, lengths, scalar) == want
    # lengths summing past 2**31: accumulated in int64
    lengths = np.full(5, 2 ** 30, np.int32)
    assert run_index_stats(mods, None, lengths, None)[:2] == [2 ** 30, 5 * 2 ** 30]


def test_index_stats_grid_stride_and_absent_inputs(mods):
    rng = np.random.default_rng(4)
    idx = rng.integers(-50, 10 ** 6, size=3000)
    lengths = rng.integers(-5, 50, size=2001).astype(np.int32)
    for blocks, block in ((1, 256), (2, 256), (3, 128)):  # fewer threads than items
        assert (run_index_stats(mods, idx, lengths, F32(-2.5), blocks, block)
                == stats_reference(idx, lengths, F32(-2.5)))
    assert run_index_stats(mods, None, None, None) == [I64_MAX, 0, I64_MAX, I64_MIN, 0]
    assert run_index_stats(mods, None, None, F32(1.0))[4] == 0x3F800000


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("schedule", [None, "reverse", 3, "threads"])
def test_flag_rows_records_the_first_row_out_of_range(mods, idx_dtype, schedule):
    rng = np.random.default_rng([np.dtype(idx_dtype).itemsize, 1])
    fn = kernel(mods, "index_checks", "flag_rows_" + _cuda.index_type(idx_dtype))
    block = THREADED_BLOCK if schedule == "threads" else 256
    for n, rows in ((1, 1), (300, 7), (1000, 50), (3, 2)):
        idx = rng.integers(0, rows, size=n).astype(idx_dtype)
        flag = new_flag()
        hostgrid.launch(fn, n, (idx, np.int64(n), np.int64(rows), flag), schedule=schedule,
                        block=block)
        assert flag[0] == I64_MAX
        bad = np.sort(rng.choice(n, size=min(n, 3), replace=False))
        idx[bad] = [[-1, rows, 2 ** 30][i % 3] for i in range(len(bad))]
        hostgrid.launch(fn, n, (idx, np.int64(n), np.int64(rows), flag), schedule=schedule,
                        block=block)
        assert flag[0] == bad[0]


# --- scatter_rows --------------------------------------------------------------------

def scatter_reference(out, rows, values, scale):
    out = out.copy()
    for j, r in enumerate(rows):
        if 0 <= r < out.shape[0]:
            out[r] = out[r] + F32(scale) * values[j]
    return out


def sort_positions(rows):
    """Positions ordered by (row, position), and the rows in that order."""
    order = np.lexsort((np.arange(len(rows)), rows)).astype(np.int64)
    return order, np.ascontiguousarray(rows[order])


def scatter_case(rng, k, nrows, block, idx_dtype, bad=0):
    rows = rng.integers(0, nrows, size=k).astype(idx_dtype)
    if bad and k:
        at = np.sort(rng.choice(k, size=min(bad, k), replace=False))
        rows[at] = rng.choice([-1, nrows, nrows + 3], size=len(at))
    return (nonzero_floats(rng, (nrows, block)), rows, nonzero_floats(rng, (k, block)))


@pytest.mark.parametrize("algorithm", ["atomic", "sorted"])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("scale_on_device", [False, True])
def test_scatter_adds_rows_with_duplicates(mods, algorithm, idx_dtype, scale_on_device):
    rng = np.random.default_rng([algorithm == "sorted", np.dtype(idx_dtype).itemsize,
                                 scale_on_device])
    suffix = _cuda.index_type(idx_dtype)
    fn = kernel(mods, "scatter_rows", "scatter_%s_%s" % (algorithm, suffix))
    for k, nrows, block, bad in ((1, 1, 1, 0), (12, 3, 5, 0), (40, 7, 8, 0), (33, 4, 3, 2),
                                 (7, 20, 1, 1), (64, 2, 16, 3)):
        out0, rows, values = scatter_case(rng, k, nrows, block, idx_dtype, bad)
        scale = F32(rng.uniform(-2, 2))
        want = scatter_reference(out0, rows, values, scale)
        bad_at = [j for j, r in enumerate(rows) if not 0 <= r < nrows]
        scale_args = ((F32(0), np.array([scale], F32)) if scale_on_device
                      else (scale, np.uint64(0)))
        schedules = [None, "reverse", k, "threads"] if algorithm == "atomic" else [None, k]
        for schedule in schedules:
            out = Guarded(out0, -9.0)
            flag = new_flag()
            if algorithm == "atomic":
                args = (out.a, rows, values) + scale_args + (
                    np.int64(k), np.int64(block), np.int64(nrows), flag)
            else:
                order, sorted_rows = sort_positions(rows)
                args = (out.a, sorted_rows, order, values) + scale_args + (
                    np.int64(k), np.int64(block), np.int64(nrows), flag)
            hostgrid.launch(fn, k * block, args, schedule=schedule,
                            block=THREADED_BLOCK if schedule == "threads" else 256)
            assert out.untouched()
            if schedule is None or algorithm == "sorted":
                close(out.a, want)  # np.add.at's (position) order
            else:  # atomics in another order: the same sums up to rounding
                close(out.a, want, rtol=1e-5, atol=1e-5)
            assert flag[0] == (bad_at[0] if bad_at else I64_MAX)


def scale_reference(out, rows, factor):
    out = out.copy()
    for r in rows:
        if 0 <= r < out.shape[0]:
            out[r] = out[r] * F32(factor)
    return out


SCALE_CASES = ((1, 1, 1, 0), (12, 3, 5, 0), (40, 7, 8, 2), (9, 30, 2, 1), (50, 2, 3, 0))


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_scale_rows_sorted_once_per_occurrence(mods, idx_dtype):
    rng = np.random.default_rng(np.dtype(idx_dtype).itemsize)
    fn = kernel(mods, "scatter_rows", "scale_rows_sorted_" + _cuda.index_type(idx_dtype))
    for k, nrows, block, bad in SCALE_CASES:
        out0, rows, _ = scatter_case(rng, k, nrows, block, idx_dtype, bad)
        for factor in (F32(rng.uniform(0.5, 1.5)), F32(1.0), F32(-0.75)):
            _, sorted_rows = sort_positions(rows)
            out = Guarded(out0, -9.0)
            hostgrid.launch(fn, k * block, (out.a, sorted_rows, np.array([factor], F32),
                                            np.int64(k), np.int64(block), np.int64(nrows)),
                            schedule=k)
            assert out.untouched()
            close(out.a, scale_reference(out0, rows, factor))


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("schedule", [None, "reverse", 99, "threads"])
def test_count_claim_scale_once_per_occurrence(mods, idx_dtype, schedule):
    """count_rows, claim_rows, scale_claimed (_scale_rows_counted): w_0 applied once
    per occurrence of a row, whichever position claims it."""
    rng = np.random.default_rng([np.dtype(idx_dtype).itemsize, hash(str(schedule)) % 97])
    suffix = _cuda.index_type(idx_dtype)
    count = kernel(mods, "scatter_rows", "count_rows_" + suffix)
    claim = kernel(mods, "scatter_rows", "claim_rows_" + suffix)
    scale = kernel(mods, "scatter_rows", "scale_claimed_" + suffix)
    block_size = THREADED_BLOCK if schedule == "threads" else 256
    for k, nrows, block, bad in SCALE_CASES:
        out0, rows, _ = scatter_case(rng, k, nrows, block, idx_dtype, bad)
        good = (rows >= 0) & (rows < nrows)
        counts = np.zeros(nrows, np.int32)
        hostgrid.launch(count, k, (rows, np.int64(k), np.int64(nrows), counts),
                        schedule=schedule, block=block_size)
        np.testing.assert_array_equal(counts, np.bincount(rows[good], minlength=nrows))
        times = np.full(k, -1, np.int32)
        hostgrid.launch(claim, k, (rows, np.int64(k), np.int64(nrows), counts, times),
                        schedule=schedule, block=block_size)
        assert (counts == 0).all() and (times[~good] == 0).all()
        for r in np.unique(rows[good]):  # one claiming position per row, with the count
            at = times[rows == r]
            assert (at > 0).sum() == 1 and at.sum() == (rows == r).sum()
        for factor in (F32(1.25), F32(1.0)):
            out = Guarded(out0, -9.0)
            hostgrid.launch(scale, k * block, (out.a, rows, times, np.array([factor], F32),
                                               np.int64(k), np.int64(block)),
                            schedule=schedule, block=block_size)
            assert out.untouched()
            close(out.a, scale_reference(out0, rows, factor))


# --- sparse_adagrad ------------------------------------------------------------------

def fma32(a, x, y):
    """float32 fma (the float64 product is exact; the sum rounds twice at worst)."""
    return (np.float64(F32(a)) * np.asarray(x, np.float64)
            + np.asarray(y, np.float64)).astype(F32)


def adagrad_reference(w, h, g, idx, lr, eps, wd):
    """Caffe2's loop: position by position, a repeated row from its updated state."""
    w, h = w.copy(), h.copy()
    lr, eps = F32(lr), F32(eps)
    for j, r in enumerate(idx):
        if not 0 <= r < w.shape[0]:
            continue
        gv = fma32(wd, w[r], g[j]) if wd != 0 else g[j]
        h[r] = h[r] + gv * gv
        w[r] = w[r] + (lr * gv) / (np.sqrt(h[r]) + eps)
    return w, h


def rowwise_reference(w, h, g, idx, lr, eps, wd, counter, halflife):
    w, h = w.copy(), h.copy()
    lr, eps, block = F32(lr), F32(eps), w.shape[1]
    for j, r in enumerate(idx):
        if not 0 <= r < w.shape[0]:
            continue
        gv = g[j]
        if wd != 0:
            if counter is not None:
                count = counter[r]
                freq = F32(halflife / count if count > 0 else 1.0)
                scale = F32(F32(wd) * freq)
                gv = (np.float64(scale) * w[r].astype(np.float64)
                      + gv.astype(np.float64)).astype(F32)
            else:
                gv = fma32(wd, w[r], gv)
        total = F32(0)
        for v in gv:
            total = F32(total + v * v)
        h[r] = F32(h[r] + total / F32(block))
        step = lr / (np.sqrt(h[r]) + eps)
        w[r] = w[r] + gv * step
    return w, h


ADAGRAD_CASES = ((1, 1, 1, 0), (6, 4, 5, 0), (40, 7, 8, 0), (25, 3, 3, 2), (9, 30, 2, 1))


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("wd", [0.0, 0.125])
def test_sparse_adagrad_applies_duplicates_in_position_order(mods, idx_dtype, wd):
    rng = np.random.default_rng([np.dtype(idx_dtype).itemsize, wd > 0])
    fn = kernel(mods, "sparse_adagrad", "sparse_adagrad_" + _cuda.index_type(idx_dtype))
    for k, rows, block, bad in ADAGRAD_CASES:
        w0, idx, g = scatter_case(rng, k, rows, block, idx_dtype, bad)
        h0 = rng.uniform(0.1, 1.0, (rows, block)).astype(F32)
        lr, eps = F32(-0.05), F32(1e-5)
        order, sorted_rows = sort_positions(idx)
        w, h, flag = Guarded(w0, -9.0), Guarded(h0, -9.0), new_flag()
        hostgrid.launch(fn, k * block,
                        (w.a, h.a, g, sorted_rows, order, np.array([lr], F32), eps, F32(wd),
                         np.int64(k), np.int64(block), np.int64(rows), flag), schedule=k)
        assert w.untouched() and h.untouched()
        want_w, want_h = adagrad_reference(w0, h0, g, idx, lr, eps, wd)
        close(w.a, want_w)
        close(h.a, want_h)
        bad_at = [j for j, r in enumerate(idx) if not 0 <= r < rows]
        assert flag[0] == (bad_at[0] if bad_at else I64_MAX)


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("wd, with_counter", [(0.0, False), (0.25, False), (0.25, True),
                                              (0.0, True)])
def test_rowwise_adagrad_applies_duplicates_in_position_order(mods, idx_dtype, wd,
                                                              with_counter):
    rng = np.random.default_rng([np.dtype(idx_dtype).itemsize, wd > 0, with_counter])
    fn = kernel(mods, "sparse_adagrad", "rowwise_adagrad_" + _cuda.index_type(idx_dtype))
    for k, rows, block, bad in ADAGRAD_CASES:
        w0, idx, g = scatter_case(rng, k, rows, block, idx_dtype, bad)
        h0 = rng.uniform(0.1, 1.0, rows).astype(F32)
        counter = None
        if with_counter:
            counter = rng.uniform(0.5, 4.0, rows)
            counter[::3] = 0.0  # freq 1 where the counter is 0
        lr, eps, halflife = F32(-0.05), F32(1e-5), np.float64(2.5)
        order, sorted_rows = sort_positions(idx)
        w, h, flag = Guarded(w0, -9.0), Guarded(h0, -9.0), new_flag()
        hostgrid.launch(fn, k, (w.a, h.a, g, sorted_rows, order, np.array([lr], F32), eps,
                                F32(wd), np.uint64(0) if counter is None else counter,
                                halflife, np.int64(k), np.int64(block), np.int64(rows),
                                flag), schedule=k)
        assert w.untouched() and h.untouched()
        want_w, want_h = rowwise_reference(w0, h0, g, idx, lr, eps, wd, counter, halflife)
        close(w.a, want_w)
        close(h.a, want_h)
        bad_at = [j for j, r in enumerate(idx) if not 0 <= r < rows]
        assert flag[0] == (bad_at[0] if bad_at else I64_MAX)


# --- unique --------------------------------------------------------------------------

@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
def test_unique_mark_and_scatter(mods, idx_dtype):
    """unique_cuda's pipeline: sort, mark run starts, number them, scatter."""
    rng = np.random.default_rng(np.dtype(idx_dtype).itemsize)
    suffix = _cuda.index_type(idx_dtype)
    mark = kernel(mods, "unique", "unique_mark_" + suffix)
    scatter = kernel(mods, "unique", "unique_scatter_" + suffix)
    big = 2 ** 40 if idx_dtype == np.int64 else 2 ** 30
    for n, spread in ((1, 5), (2, 1), (7, 3), (257, 40), (1000, big), (300, 1)):
        x = rng.integers(-spread, spread + 1, size=n).astype(idx_dtype)
        order = np.argsort(x, kind="stable").astype(np.int64)
        ordered = np.ascontiguousarray(x[order])
        first = np.full(n, -1, np.int32)
        hostgrid.launch(mark, n, (ordered, np.int64(n), first), schedule=n)
        np.testing.assert_array_equal(first, np.r_[True, ordered[1:] != ordered[:-1]])
        ids = np.cumsum(first, dtype=np.int64) - 1
        count = int(ids[-1]) + 1
        values = Guarded(np.zeros(count, idx_dtype), 77)
        remapping = Guarded(np.full(n, -1, np.int32), 77)
        hostgrid.launch(scatter, n, (ordered, order, first, ids, np.int64(n), values.a,
                                     remapping.a), schedule="reverse")
        assert values.untouched() and remapping.untouched()
        want_values, want_inverse = np.unique(x, return_inverse=True)
        np.testing.assert_array_equal(values.a, want_values)
        np.testing.assert_array_equal(remapping.a, want_inverse.reshape(-1))
        np.testing.assert_array_equal(values.a[remapping.a], x)


# --- WeightedSum (ops/weighted_sum.py weighted_sum_cuda) ---------------------------------

def test_weighted_sum_pair_then_add_rounds_each_product_and_sum(mods):
    """y = x0 * w0 + w1 * x1, then y += w2 * x2: float32 products and sums rounded one
    by one (numpy's float32 arithmetic), bit for bit; values spread over 12 decades
    so a fused multiply-add would show."""
    pair = kernel(mods, "weighted_sum", "weighted_sum_pair")
    add = kernel(mods, "weighted_sum", "weighted_sum_add")
    rng = np.random.default_rng(31)
    for n in (1, 255, 256, 257, 1000):
        x0, x1, x2 = (nonzero_floats(rng, n, 1e-6, 1e6) for _ in range(3))
        w0, w1, w2 = (nonzero_floats(rng, 1) for _ in range(3))
        y = Guarded(np.zeros(n, F32), np.nan)
        hostgrid.launch(pair, n, (x0, w0, x1, w1, np.int64(n), y.a), schedule="reverse")
        want = x0 * w0[0] + w1[0] * x1
        assert want.dtype == F32
        np.testing.assert_array_equal(y.a, want)
        hostgrid.launch(add, n, (x2, w2, np.int64(n), y.a))
        np.testing.assert_array_equal(y.a, want + w2[0] * x2)
        assert y.untouched()
        wide = (x0.astype(np.float64) * w0[0] + np.float64(w1[0]) * x1).astype(F32)
        assert n < 200 or (wide != want).any()  # (the test tells roundings apart)


# --- activations (ops/activations.py _launch_fused) ----------------------------------------

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.0, -88.0, 104.0, -104.0], F32)


def test_relu_gradient_selects_dy_where_y_is_positive(mods):
    rng = np.random.default_rng(41)
    y = np.concatenate([nonzero_floats(rng, 500), SPECIALS])
    dy = np.concatenate([nonzero_floats(rng, 500), [np.nan] * len(SPECIALS)]).astype(F32)
    dy[::7] = np.nan
    dx = Guarded(np.zeros(y.size, F32), 5.0)
    hostgrid.launch(kernel(mods, "activations", "relu_gradient_f32"), y.size,
                    (y, dy, np.int64(y.size), dx.a), schedule="reverse")
    want = np.array([d if v > 0 else 0.0 for v, d in zip(y, dy)], F32)
    np.testing.assert_array_equal(dx.a, want)  # (NaN where Y > 0 and dY is NaN)
    assert dx.untouched()


def test_sigmoid_and_its_gradient(mods):
    rng = np.random.default_rng(42)
    x = np.concatenate([nonzero_floats(rng, 700, 1e-3, 30.0), SPECIALS])
    y = Guarded(np.zeros(x.size, F32), 5.0)
    hostgrid.launch(kernel(mods, "activations", "sigmoid_f32"), x.size,
                    (x, np.int64(x.size), y.a))
    with np.errstate(over="ignore"):
        want = (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(F32)
    # (kernels flush subnormal results to 0, as CuPy's -ftz=true builds do on a GPU:
    # sigmoid(-88) = 6.05e-39 is 0 there)
    assert 0 < want[x.size - 3] < np.finfo(F32).tiny and y.a[x.size - 3] == 0.0
    want[np.abs(want) < np.finfo(F32).tiny] = 0.0
    np.testing.assert_allclose(y.a, want, rtol=2e-7, atol=0)  # (expf: a few ulps)
    assert y.a[x.size - 7] == 0.0 and y.a[x.size - 8] == 1.0  # -inf, +inf
    assert np.isnan(y.a[x.size - 9]) and y.untouched()
    dy = nonzero_floats(rng, x.size)
    dx = Guarded(np.zeros(x.size, F32), 5.0)
    hostgrid.launch(kernel(mods, "activations", "sigmoid_gradient_f32"), x.size,
                    (y.a, dy, np.int64(x.size), dx.a))
    np.testing.assert_array_equal(dx.a, dy * y.a * (F32(1) - y.a))  # rounded in that order
    assert dx.untouched()
