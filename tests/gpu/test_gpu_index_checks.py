"""ops/_cuda_checks.py on a real GPU: the stats kernel against numpy's reductions
(several blocks, both index types, negatives, a float scalar's bits) and the
deferred row flag against the first bad position numpy finds."""

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from graphnet.ops._cuda_checks import flag_rows, index_stats  # noqa: E402


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n,m", [(1, 1), (37, 5), (300001, 70000), (5, 1 << 19)])
def test_index_stats_equal_numpy_reductions(dtype, n, m):
    rng = np.random.default_rng(n + m)
    idx = rng.integers(-1000, 10 ** 6, n).astype(dtype)
    lengths = rng.integers(-3, 50, m).astype(np.int32)
    w = np.array([rng.standard_normal()], np.float32)
    got = index_stats(cp, cp.asarray(idx), cp.asarray(lengths), cp.asarray(w))
    want = (int(lengths.min()), int(lengths.sum(dtype=np.int64)), int(idx.min()),
            int(idx.max()), float(w[0]))
    assert got == want


def test_index_stats_of_absent_inputs_are_the_sentinels():
    big = np.iinfo(np.int64).max
    assert index_stats(cp) == (big, 0, big, -big - 1, 0.0)
    lengths = cp.asarray(np.array([4, 0, 2], np.int32))
    assert index_stats(cp, lengths=lengths)[:2] == (0, 6)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_flag_rows_records_the_first_bad_position(dtype):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 500, 100000).astype(dtype)
    idx[[70123, 4242, 99999]] = [500, -1, 10 ** 6]
    flag = cp.full((1,), np.iinfo(np.int64).max, dtype=np.int64)
    flag_rows(cp, cp.asarray(idx), 500, flag)
    assert int(flag.get()[0]) == 4242
    ok = cp.full((1,), np.iinfo(np.int64).max, dtype=np.int64)
    flag_rows(cp, cp.asarray(np.clip(idx, 0, 499)), 500, ok)
    assert int(ok.get()[0]) == np.iinfo(np.int64).max


def test_host_values_on_cupy_arrays():
    """graphnet.executors.cuda.host_values relies on CuPy's views sharing their
    allocation object (data.mem) and on weak references to arrays."""
    import gc
    from graphnet.executors.cuda import host_values
    idx = np.arange(20, dtype=np.int64) * 7
    a = cp.asarray(idx)
    host_values.remember(a, idx.copy())
    np.testing.assert_array_equal(host_values.lookup(a.reshape(4, 5)), idx.reshape(4, 5))
    assert host_values.lookup(a[3:]) is None
    assert index_stats(cp, a)[2:4] == (0, 133)  # answered from the host's copy
    host_values.forget(a[10:])  # a view of the same allocation
    assert host_values.lookup(a) is None
    host_values.remember(a, idx.copy())
    ptr = a.data.ptr
    assert ptr in host_values._by_ptr
    del a
    gc.collect()
    assert ptr not in host_values._by_ptr  # (dropped with the array: a weak reference)
