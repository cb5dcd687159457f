"""Every CUDA kernel source of ops/ compiles with NVRTC (on the CPU: no GPU needed),
exports the kernels the ops launch, and the template helpers do what they say."""

import re

import numpy as np
import pytest

from graphnet import registry
from graphnet.ops import _cuda, _cuda_scatter

from .nvrtc import WHEELS, compile_ptx, find_libnvrtc

registry.registered_types()  # import every op family, so every source is registered

# Kernels the ops launch by name (a typo here or there fails the test below).
LAUNCHED = {
    "sparse_lengths": ["segment_starts", "sls_pool_f32_i32", "sls_pool_f32_i64", "sls_pool_f16_i32",
                       "sls_pool_f16_i64", "sls_pool_f32x4_i32", "sls_pool_f32x4_i64",
                       "sls_pool8_f32_i32", "sls_pool8_f32_i64", "sls_pool8_f16_i32",
                       "sls_pool8_f16_i64", "sls_pool8_f32x4_i32", "sls_pool8_f32x4_i64",
                       "sls_repeat_f32", "sls_repeat_f32x4"],
    "index_checks": ["index_stats_init", "index_stats_i32", "index_stats_i64",
                     "flag_rows_i32", "flag_rows_i64"],
    "scatter_rows": ["scatter_atomic_i32", "scatter_atomic_i64", "scatter_sorted_i32",
                     "scatter_sorted_i64", "scale_rows_sorted_i32", "scale_rows_sorted_i64",
                     "count_rows_i32", "count_rows_i64", "claim_rows_i32", "claim_rows_i64",
                     "scale_claimed_i32", "scale_claimed_i64"],
    "unique": ["unique_mark_i32", "unique_mark_i64", "unique_scatter_i32",
               "unique_scatter_i64"],
    "weighted_sum": ["weighted_sum_pair", "weighted_sum_add"],
    "activations": ["relu_gradient_f32", "sigmoid_f32", "sigmoid_gradient_f32"],
    "sparse_adagrad": ["sparse_adagrad_i32", "sparse_adagrad_i64", "rowwise_adagrad_i32",
                       "rowwise_adagrad_i64"],
}


# (version, architecture): CUDA 13 compiles from Turing (compute_75) on
ARCHS = [("12", "compute_90"), ("12", "compute_70"), ("13", "compute_90"),
         ("13", "compute_75")]


@pytest.mark.parametrize("version", sorted(WHEELS))
def test_libnvrtc_is_installed(version):
    assert find_libnvrtc(version), (
        "CUDA %s's libnvrtc not found: pip install 'graphnet[test]' installs the NVRTC "
        "wheels (nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvrtc 13) these tests compile "
        "with" % version)


def test_every_source_is_covered():
    assert sorted(_cuda.SOURCES) == sorted(LAUNCHED)


@pytest.mark.parametrize("name", sorted(LAUNCHED))
@pytest.mark.parametrize("version,arch", ARCHS)
def test_source_compiles_and_exports_its_kernels(name, version, arch):
    ptx = compile_ptx(_cuda.SOURCES[name].code, name + ".cu", arch=arch,
                      options=_cuda.SOURCES[name].options, version=version)
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
    missing = [k for k in LAUNCHED[name] if k not in entries]
    assert not missing, "%s does not export %s (has %s)" % (name, missing, sorted(entries))


def test_a_broken_source_reports_nvrtc_log():
    from .nvrtc import NvrtcError
    with pytest.raises(NvrtcError, match="undefined"):
        compile_ptx('extern "C" __global__ void k() { undefined_thing(); }')


def test_variants_instantiate_every_combination():
    code = _cuda.variants("k$SUFFIX($DT, $IT)", IT=_cuda.INDEX_TYPES, DT=_cuda.DATA_TYPES)
    assert code.splitlines() == ["k_f16_i32(unsigned short, int)",
                                 "k_f16_i64(unsigned short, long long)",
                                 "k_f32_i32(float, int)", "k_f32_i64(float, long long)"]
    assert _cuda.index_type(np.int32) == "i32" and _cuda.index_type(np.int64) == "i64"
    with pytest.raises(TypeError, match="int32 or int64 indices, found uint32"):
        _cuda.index_type(np.uint32)  # (read as 64-bit, it would address wrong rows)


def test_sorted_runs_orders_by_row_then_position():
    rows = np.array([3, 1, 3, 0, 1, 3], dtype=np.int64)
    order, sorted_rows = _cuda_scatter.sorted_runs(np, rows)
    assert order.tolist() == [3, 1, 4, 0, 2, 5]
    assert sorted_rows.tolist() == [0, 1, 1, 3, 3, 3]


def _emulate_scatter_sorted(out, rows, values, scale):
    """The scatter_sorted kernel's arithmetic, thread by thread, in numpy."""
    order, sorted_rows = _cuda_scatter.sorted_runs(np, rows)
    out = out.copy()
    k = len(rows)
    for p in range(k):
        r = sorted_rows[p]
        if p > 0 and sorted_rows[p - 1] == r:
            continue
        acc = out[r].copy()
        q = p
        while q < k and sorted_rows[q] == r:
            acc = acc + np.float32(scale) * values[order[q]]
            q += 1
        out[r] = acc
    return out


def test_deterministic_scatter_order_equals_numpy_add_at_bitwise():
    rng = np.random.default_rng(0)
    out = rng.standard_normal((7, 5)).astype(np.float32)
    rows = rng.integers(0, 7, size=40)
    values = rng.standard_normal((40, 5)).astype(np.float32)
    want = out.copy()
    np.add.at(want, rows, np.float32(0.5) * values)
    got = _emulate_scatter_sorted(out, rows, values, 0.5)
    np.testing.assert_array_equal(got, want)


def test_sorted_runs_keeps_valid_rows_together_beside_huge_bad_rows():
    """Rows far out of range (deferred checks flag them) must not overflow the sort
    key into a valid row's run: the valid rows' runs stay whole and in position order."""
    huge = np.iinfo(np.int64).max // 3
    rows = np.array([2, huge, 2, -huge, 0, 2], dtype=np.int64)
    order, sorted_rows = _cuda_scatter.sorted_runs(np, rows)
    assert order.tolist() == [3, 4, 0, 2, 5, 1]
    assert sorted_rows.tolist() == [-huge, 0, 2, 2, 2, huge]
