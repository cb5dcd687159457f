"""graphnet.executors.cuda.blas on the CuPy stand-in: matrix products made through
cuBLAS directly (the stand-in's libcublas, fakecublas.py, follows cuBLAS's
column-major conventions), eagerly and captured into a CUDA graph, against numpy;
and the stand-in refusing CuPy's own cuBLAS calls under capture, as CuPy does."""

import ctypes
import types

import numpy as np
import pytest

from graphnet.executors.cuda import blas

from . import fakecublas, fakecuda

F32, F64 = np.float32, np.float64


@pytest.fixture
def cp(monkeypatch):
    fake = fakecuda.FakeCuda()
    with fakecuda.installed(monkeypatch, fake):
        yield fake


def cp_blas(cp):
    """The stand-in's libcublas that blas calls (fakecublas.FakeCublas)."""
    return blas._state["lib"]


def _floats(rng, shape, dtype=F32):
    return (rng.standard_normal(shape) + 0.25).astype(dtype)


def _close(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-5 if want.dtype == F32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _reference(a, b):
    """Row by row, in float64: an independent formula for a @ b (with batches)."""
    a64, b64 = np.asarray(a, F64), np.asarray(b, F64)
    return np.einsum("...ik,...kj->...ij", a64, b64).astype(a.dtype)


# operand layouts: (how to build an operand of `shape` from a host array) -> the device
# array blas receives: C-contiguous, a transposed view, a strided slice (copied)
LAYOUTS = {
    "c": lambda cp, x: cp.asarray(x),
    "t": lambda cp, x: cp.ascontiguousarray(cp.asarray(np.swapaxes(x, -1, -2)))
    .swapaxes(-1, -2),
    "strided": lambda cp, x: cp.asarray(np.repeat(x, 2, axis=-1))[..., ::2],
}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout_b", sorted(LAYOUTS))
@pytest.mark.parametrize("layout_a", sorted(LAYOUTS))
def test_2d_products_in_every_layout(cp, layout_a, layout_b, dtype):
    rng = np.random.default_rng([len(layout_a), len(layout_b), np.dtype(dtype).itemsize])
    for m, k, n in ((5, 3, 4), (1, 7, 2), (6, 1, 1), (3, 4, 1)):
        a, b = _floats(rng, (m, k), dtype), _floats(rng, (k, n), dtype)
        da, db = LAYOUTS[layout_a](cp, a), LAYOUTS[layout_b](cp, b)
        if layout_a == "t" and min(m, k) > 1:
            assert not da.flags.c_contiguous  # (the op T path, no copy)
        got = blas.matmul(cp, da, db)
        assert got.flags.c_contiguous
        _close(got.get(), _reference(a, b))
    assert {name for name, _ in cp_blas(cp).calls} == {"cublasGemmEx"}


@pytest.mark.parametrize("case", ["batch", "b_transposed", "b_2d", "a_batch_1",
                                  "b_reversed"])
def test_batched_products(cp, case):
    rng = np.random.default_rng(len(case))
    a = _floats(rng, (4, 3, 5))
    b = _floats(rng, (4, 5, 2))
    if case == "b_2d":
        b = b[0]
    if case == "a_batch_1":
        a = a[:1]
    da, db = cp.asarray(a), cp.asarray(b)
    if case == "b_transposed":  # BatchMatMul's trans_b: a swapaxes view
        db = cp.asarray(np.ascontiguousarray(np.swapaxes(b, 1, 2))).swapaxes(1, 2)
    if case == "b_reversed":  # a negative batch stride: copied first
        db = cp.asarray(b[::-1].copy())[::-1]
    got = blas.matmul(cp, da, db)
    _close(got.get(), _reference(a, b))
    assert cp_blas(cp).calls[-1][0] == "cublasGemmStridedBatchedEx"


def test_empty_and_zero_depth_products(cp):
    a = cp.asarray(np.ones((3, 0), F32))
    b = cp.asarray(np.ones((0, 2), F32))
    np.testing.assert_array_equal(blas.matmul(cp, a, b).get(), np.zeros((3, 2), F32))
    got = blas.matmul(cp, cp.asarray(np.ones((0, 4), F32)), cp.asarray(np.ones((4, 2), F32)))
    assert got.shape == (0, 2)
    assert cp_blas(cp).calls == []  # nothing to multiply


def test_refuses_what_it_does_not_multiply(cp):
    a = cp.asarray(np.ones((2, 3), F32))
    with pytest.raises(TypeError, match="float32 or two float64.*float16"):
        blas.matmul(cp, a.astype(np.float16), a.astype(np.float16).T)
    with pytest.raises(TypeError, match="float32 and float64"):
        blas.matmul(cp, a, a.T.astype(F64))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 3\) do not multiply"):
        blas.matmul(cp, a, a)
    with pytest.raises(ValueError, match="batch sizes 2 and 3 differ"):
        blas.matmul(cp, cp.asarray(np.ones((2, 2, 3), F32)),
                    cp.asarray(np.ones((3, 3, 2), F32)))


def test_a_failing_status_is_an_error_naming_the_call(cp, monkeypatch):
    monkeypatch.setattr(fakecublas.FakeCublas, "cublasGemmEx",
                        lambda self, *args: fakecublas.INVALID_VALUE)
    a = cp.asarray(np.ones((2, 2), F32))
    with pytest.raises(blas.CublasError, match="cublasGemmEx returned cuBLAS status 7"):
        blas.matmul(cp, a, a)


def test_a_captured_product_replays_with_new_values(cp):
    """The product is recorded into the graph (stream and workspace set first, as cuBLAS
    needs under capture); each replay multiplies what the buffers hold then."""
    rng = np.random.default_rng(7)
    a, b = _floats(rng, (4, 3)), _floats(rng, (3, 5))
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        da = cp.asarray(a)
        db = cp.asarray(np.ascontiguousarray(b.T)).T  # op T (a view: nothing to keep)
        blas.matmul(cp, da, db)  # (the workspace: allocated before the capture)
        s.begin_capture()
        out = blas.matmul(cp, da, db)
        graph = s.end_capture()
        assert np.isnan(out.get()).all()  # recorded, not run
        graph.launch(s)
        _close(out.get(), _reference(a, b))
        a2 = _floats(rng, (4, 3))
        da[...] = cp.asarray(a2)
        graph.launch(s)
        _close(out.get(), _reference(a2, b))
    lib = cp_blas(cp)
    assert lib.calls[-1] == ("cublasGemmEx", s.ptr)
    workspace = blas._state[("ws", 0, s.ptr)]
    assert lib.workspaces[cp.cuda.device.get_cublas_handle()] == (
        workspace.data.ptr, blas.WORKSPACE_BYTES)
    assert not cp.problems


def test_each_device_multiplies_in_a_workspace_of_its_own(monkeypatch):
    """The default streams have the same handle on every device: products made there
    on two GPUs keep two workspaces, each on its own GPU."""
    fake = fakecuda.FakeCuda(devices=2)
    with fakecuda.installed(monkeypatch, fake):
        rng = np.random.default_rng(13)
        a, b = _floats(rng, (3, 4)), _floats(rng, (4, 2))
        for device in (0, 1):
            with fake.cuda.Device(device):
                got = blas.matmul(fake, fake.asarray(a), fake.asarray(b))
                _close(got.get(), _reference(a, b))
        null = fake.cuda.get_current_stream().ptr
        spaces = [blas._state[("ws", device, null)] for device in (0, 1)]
        assert [w.device.id for w in spaces] == [0, 1]
        assert not fake.problems


def test_cupy_matmul_is_refused_under_capture_as_cupy_does(cp):
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        a = cp.asarray(np.ones((2, 2), F32))
        v = cp.asarray(np.ones(2, F32))
        s.begin_capture()
        for call in (lambda: a @ a, lambda: cp.matmul(a, a), lambda: cp.dot(a, v),
                     lambda: cp.einsum("ij,ij->i", a, a)):
            with pytest.raises(NotImplementedError,
                               match="calling cuBLAS API during stream capture"):
                call()
        assert cp.dot(v, v).shape == ()  # a vector dot is CuPy's own reduction: allowed
        assert (a.astype(np.int32) @ a.astype(np.int32)).shape == (2, 2)  # own kernel
        s.end_capture()


def test_the_stand_ins_cublas_follows_column_major_conventions(cp):
    """fakecublas itself, called as the cuBLAS documentation defines gemm: C (m x n,
    ldc) = alpha op(A) op(B) + beta C, element (i, j) of a column-major matrix at
    i + j * ld, with leading dimensions larger than the rows (padding to skip). A host
    array h of shape (columns, ld) holds such a matrix as h[:, :rows].T."""
    rng = np.random.default_rng(3)
    m, n, k, lda, ldb, ldc = 3, 2, 4, 5, 6, 4
    a = _floats(rng, (k, lda))  # A: m x k, op N
    b = _floats(rng, (k, ldb))  # B stored n x k, op T: op(B) = B^T is k x n
    c = _floats(rng, (n, ldc))
    A, B, C = a[:, :m].T, b[:, :n].T, c[:, :m].T
    product = 2.0 * (A.astype(F64) @ B.T.astype(F64)) + 0.5 * C.astype(F64)
    want = c.copy()
    want[:, :m] = product.T.astype(F32)  # the padding rows stay as they were
    da, db, dc = cp.asarray(a), cp.asarray(b), cp.asarray(c)
    lib, handle = cp_blas(cp), cp.cuda.device.get_cublas_handle()
    assert lib.cublasSetStream_v2(ctypes.c_void_p(handle), ctypes.c_void_p(0)) == 0
    status = lib.cublasGemmEx(
        ctypes.c_void_p(handle), 0, 1, m, n, k, ctypes.byref(ctypes.c_float(2.0)),
        ctypes.c_void_p(da.data.ptr), 0, lda, ctypes.c_void_p(db.data.ptr), 0, ldb,
        ctypes.byref(ctypes.c_float(0.5)), ctypes.c_void_p(dc.data.ptr), 0, ldc, 68, -1)
    assert status == 0
    np.testing.assert_allclose(dc.get(), want, rtol=1e-5, atol=1e-6)
    # lda < m: cuBLAS's CUBLAS_STATUS_INVALID_VALUE, nothing written
    assert lib.cublasGemmEx(handle, 0, 1, m, n, k, ctypes.byref(ctypes.c_float(1.0)),
                            da.data.ptr, 0, 2, db.data.ptr, 0, ldb,
                            ctypes.byref(ctypes.c_float(0.0)), dc.data.ptr, 0, ldc, 68,
                            -1) == fakecublas.INVALID_VALUE
    np.testing.assert_allclose(dc.get(), want, rtol=1e-5, atol=1e-6)


def test_the_library_is_the_libcublas_cupy_mapped(tmp_path, monkeypatch):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f01-7f02 r-xp 00000000 08:01 11 /opt/nv/lib/libcublasLt.so.12.4.5\n"
        "7f03-7f04 r-xp 00000000 08:01 12 /opt/nv/lib/libcublas.so.12.4.5\n"
        "7f05-7f06 rw-p 00000000 00:00 0 [heap]\n")
    assert blas._library_path(str(maps)) == "/opt/nv/lib/libcublas.so.12.4.5"
    # two CUDAs mapped (PyTorch's and CuPy's): the one of CuPy's runtime
    maps.write_text(
        "7f01-7f02 r-xp 00000000 08:01 11 /torch/lib/libcublas.so.12\n"
        "7f03-7f04 r-xp 00000000 08:01 12 /torch/lib/libcublas.so.12\n"
        "7f05-7f06 r-xp 00000000 08:01 13 /nv/cu13/lib/libcublasLt.so.13\n"
        "7f07-7f08 r-xp 00000000 08:01 14 /nv/cu13/lib/libcublas.so.13\n")
    assert blas._library_path(str(maps), major=13) == "/nv/cu13/lib/libcublas.so.13"
    assert blas._library_path(str(maps), major=12) == "/torch/lib/libcublas.so.12"
    assert blas._library_path(str(maps), major=11) == "/torch/lib/libcublas.so.12"
    # two files of CuPy's version: the one cuda.pathfinder loaded (CuPy 14 loads there)
    maps.write_text(
        "7f01-7f02 r-xp 00000000 08:01 11 /torch/nvidia/cu13/lib/libcublas.so.13\n"
        "7f03-7f04 r-xp 00000000 08:01 12 /cupy/nvidia/cu13/lib/libcublas.so.13\n")
    monkeypatch.setattr(blas, "_pathfinders",
                        lambda paths: [p for p in paths if p.startswith("/cupy/")])
    assert blas._library_path(str(maps), major=13) == "/cupy/nvidia/cu13/lib/libcublas.so.13"
    monkeypatch.setattr(blas, "_pathfinders", lambda paths: [])  # (unknown: the first)
    assert blas._library_path(str(maps), major=13) == "/torch/nvidia/cu13/lib/libcublas.so.13"
    tried = []

    def missing(name):
        tried.append(name)
        raise OSError(name)
    monkeypatch.setattr(blas.ctypes, "CDLL", missing)
    maps.write_text("7f05-7f06 rw-p 00000000 00:00 0 [heap]\n")
    with pytest.raises(OSError, match="libcublas is not loaded in this process"):
        blas._library_path(str(maps))
    assert tried[:2] == ["libcublas.so.13", "libcublas.so.12"]
    del tried[:]
    with pytest.raises(OSError):
        blas._library_path(str(maps), major=12)
    assert tried[:2] == ["libcublas.so.12", "libcublas.so.13"]


def test_the_library_is_looked_up_once_cupy_made_its_handle(cp, monkeypatch):
    """CuPy loads libcublas when it makes its handle (CuPy 14: through cuda.pathfinder,
    from wherever the library lives); only then is the process's map read."""
    order = []
    monkeypatch.setattr(cp.cuda.device, "get_cublas_handle",
                        lambda: order.append("handle") or fakecuda.CUBLAS_HANDLE)
    monkeypatch.setattr(blas, "_library_path",
                        lambda major: order.append(("maps", major)) or "/opt/nv/libcublas.so.13")
    loaded = types.SimpleNamespace(**{name: (lambda *a: 0) for name in (
        "cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasSetPointerMode_v2",
        "cublasGemmEx", "cublasGemmStridedBatchedEx")})
    opened = []
    monkeypatch.setattr(blas.ctypes, "CDLL", lambda path: opened.append(path) or loaded)
    monkeypatch.delitem(blas._state, "lib")
    assert blas._library(cp) is loaded
    # (the fake's CUDA runtime is 12.8: libcublas.so.12 is its cuBLAS)
    assert order == ["handle", ("maps", 12)] and opened == ["/opt/nv/libcublas.so.13"]
    assert loaded.cublasGemmEx.restype is ctypes.c_int
    assert len(loaded.cublasGemmStridedBatchedEx.argtypes) == 23  # (cublas_api.h)
    assert len(loaded.cublasGemmEx.argtypes) == 19
    assert blas._library(cp) is loaded and len(order) == 2  # (kept)


def test_eager_products_take_the_direct_path_once_its_check_passed(cp, monkeypatch):
    from graphnet.executors.cuda import settings
    monkeypatch.setitem(settings._settings, "direct_blas", True)
    assert blas.eager_ok(cp)
    checked = len(cp_blas(cp).calls)
    assert checked == 6  # the binding's check: one product per layout, once per device
    assert blas.eager_ok(cp) and len(cp_blas(cp).calls) == checked
    monkeypatch.setitem(settings._settings, "direct_blas", False)
    assert not blas.eager_ok(cp)  # GRAPHNET_CUDA_DIRECT_BLAS=0


@pytest.mark.parametrize("failure", ["wrong result", "no library"])
def test_a_binding_that_fails_its_check_leaves_eager_products_to_cupy(cp, monkeypatch,
                                                                     failure):
    from graphnet.executors.cuda import settings
    monkeypatch.setitem(settings._settings, "direct_blas", True)
    if failure == "wrong result":  # e.g. a layout mapped wrongly: products of zeros
        monkeypatch.setattr(fakecublas, "_matrices",
                            lambda raw, dtype, *shape: np.zeros(
                                (shape[4], shape[0], shape[1]), dtype))
        match = "differs from numpy"
    else:
        del blas._state["lib"]

        def missing(maps_file="/proc/self/maps", major=None):
            raise OSError("libcublas is not loaded in this process")
        monkeypatch.setattr(blas, "_library_path", missing)
        match = "OSError: libcublas is not loaded"
    with pytest.warns(RuntimeWarning, match="cuBLAS called directly failed its check on "
                                            "GPU 0 .*%s.*use CuPy's matmul" % match):
        assert not blas.eager_ok(cp)
    assert not blas.eager_ok(cp)  # (decided once: no second warning)



@pytest.mark.parametrize("direct", [True, False])
def test_fc_multiplies_through_the_binding_eagerly_unless_turned_off(fake, direct):
    """FC's product: cuBLAS directly when eager (unless GRAPHNET_CUDA_DIRECT_BLAS=0),
    and always while a CUDA graph is captured (CuPy refuses there)."""
    from graphnet import workspace
    from graphnet.executors.cuda import settings
    from .standin import plan_of
    settings.set_direct_blas(direct)
    net, want = _fc_relu_net("fc_blas", 11)
    workspace.RunNet("fc_blas")  # eager
    eager = [name for name in fake.launches if name.startswith("cublas")]
    check = ["cublasGemmEx"] * 4 + ["cublasGemmStridedBatchedEx"] * 2  # (the binding's)
    assert eager == (check + ["cublasGemmEx"] if direct else [])
    workspace.RunNet("fc_blas")  # captured, then launched
    workspace.RunNet("fc_blas")  # replayed
    # (turned off, the capture checks the binding first: it multiplies only once passed)
    assert [name for name in fake.launches if name.startswith("cublas")][len(eager):] == \
        ([] if direct else check) + ["cublasGemmEx"]
    np.testing.assert_allclose(workspace.FetchBlob("y"), want, rtol=1e-5, atol=1e-6)
    from graphnet.executors.cuda import graphs
    assert "captured 1 time(s), 2 launch(es)" in graphs.report(plan_of(net))[0]


def _fc_relu_net(name, seed):
    """FC then Relu on gpu_0, with CUDA graphs on, created: (net, Y by numpy)."""
    from graphnet import core, workspace
    from graphnet.executors.cuda import settings
    from .standin import gpu
    settings.set_cuda_graphs(True)
    rng = np.random.default_rng(seed)
    x, w, b = _floats(rng, (4, 5)), _floats(rng, (3, 5)), _floats(rng, (3,))
    net = core.Net(name)
    with core.DeviceScope(gpu(0)):
        for blob, value in (("x", x), ("w", w), ("b", b)):
            workspace.FeedBlob(blob, value)
        net.FC(["x", "w", "b"], "h")
        net.Relu("h", "y")  # (a segment holds two ops at least)
    workspace.CreateNet(net)
    return net, np.maximum(_reference(x, w.T) + b, 0)


def test_a_capture_multiplies_through_the_binding_only_once_its_check_passed(
        fake, monkeypatch):
    """A binding that failed its check is not captured either: CuPy's matmul refuses
    the capture, and the segment stays eager with CuPy's products, results right."""
    from graphnet import workspace
    from graphnet.executors.cuda import graphs
    from .standin import plan_of
    monkeypatch.setattr(blas, "_binding_works", lambda cp, device: False)
    net, want = _fc_relu_net("fc_unchecked", 12)
    for _ in range(3):  # eager, refused capture, eager
        workspace.RunNet("fc_unchecked")
        np.testing.assert_allclose(workspace.FetchBlob("y"), want, rtol=1e-5, atol=1e-6)
    assert not [name for name in fake.launches if name.startswith("cublas")]
    report = graphs.report(plan_of(net))[0]
    assert "refused: op #0 (FC)" in report and "NotImplementedError" in report, report


def test_fc_gradient_sums_dy_as_a_product_with_ones(fake):
    """FCGradient's bias gradient on a GPU: dY^T times ones through cuBLAS (Caffe2's
    bias_multiplier_), one product beside dW's and dX's; against column sums in
    float64."""
    from tests.opcheck import run_op
    rng = np.random.default_rng(12)
    x, w, dy = _floats(rng, (6, 5)), _floats(rng, (4, 5)), _floats(rng, (6, 4))
    dw, db, dx = run_op("FCGradient", [x, w, dy], 3, device=0)
    _close(db, dy.astype(F64).sum(axis=0).astype(F32))
    _close(dw, _reference(dy.T, x))
    _close(dx, _reference(dy, w))
    products = [name for name in fake.launches if name.startswith("cublas")]
    assert products[6:] == ["cublasGemmEx"] * 3  # (after the binding's check)


@pytest.mark.parametrize("tf32, compute", [(None, 68), ("1", 77)])
def test_float32_products_compute_as_cupy_does(cp, monkeypatch, tf32, compute):
    """CUBLAS_COMPUTE_32F (68), or 32F_FAST_TF32 (77) when CUPY_TF32=1 asks CuPy for
    TF32 tensor cores; float64 in CUBLAS_COMPUTE_64F (70)."""
    if tf32 is None:
        monkeypatch.delenv("CUPY_TF32", raising=False)
    else:
        monkeypatch.setenv("CUPY_TF32", tf32)
    a = cp.asarray(np.ones((2, 2), F32))
    blas.matmul(cp, a, a)
    assert cp_blas(cp).last_compute == compute
    blas.matmul(cp, a.astype(F64), a.astype(F64))
    assert cp_blas(cp).last_compute == 70


def _fortran_gemm(dtype):
    """The reference BLAS gemm (Fortran, column-major, arguments by reference) that
    SciPy exports for Cython (scipy.linalg.cython_blas), as a ctypes function: the
    same contract cuBLAS's gemm implements, from an implementation that is not ours."""
    cython_blas = pytest.importorskip("scipy.linalg.cython_blas")
    capsule = cython_blas.__pyx_capi__["sgemm" if dtype == F32 else "dgemm"]
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    p = ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, *([p] * 13))(address)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_the_stand_ins_cublas_agrees_with_reference_blas(cp, dtype):
    """fakecublas against the reference BLAS gemm, called with the very arguments:
    both transposes, leading dimensions with and without padding, alpha and beta,
    and strided batches as one reference call per matrix."""
    gemm = _fortran_gemm(dtype)
    scalar = ctypes.c_float if dtype == F32 else ctypes.c_double
    cuda_type, compute = (0, 68) if dtype == F32 else (1, 70)
    lib, handle = cp_blas(cp), ctypes.c_void_p(cp.cuda.device.get_cublas_handle())
    assert lib.cublasSetStream_v2(handle, ctypes.c_void_p(0)) == 0
    rng = np.random.default_rng(11)
    ptr = lambda x: ctypes.c_void_p(x.ctypes.data)  # noqa: E731
    ref = lambda v, t=ctypes.c_int: ctypes.byref(t(v))  # noqa: E731
    cases = 0
    for transa in (0, 1):
        for transb in (0, 1):
            for pad in (0, 3):
                for batch in (1, 3):
                    m, n, k = rng.integers(1, 6, 3)
                    rows_a = m if transa == 0 else k
                    rows_b = k if transb == 0 else n
                    cols_a, cols_b = (k if transa == 0 else m), (n if transb == 0 else k)
                    lda, ldb, ldc = rows_a + pad, rows_b + pad, m + pad
                    sa, sb, sc = lda * cols_a + pad, ldb * cols_b, ldc * n + 2 * pad
                    a = _floats(rng, batch * sa, dtype)
                    b = _floats(rng, batch * sb, dtype)
                    c = _floats(rng, batch * sc, dtype)
                    alpha, beta = 1.5, (0.0 if pad else -0.75)
                    want = c.copy()
                    for i in range(batch):
                        gemm(ctypes.c_char_p(b"NT"[transa:transa + 1]),
                             ctypes.c_char_p(b"NT"[transb:transb + 1]),
                             ref(m), ref(n), ref(k), ref(alpha, scalar),
                             ptr(a[i * sa:]), ref(lda), ptr(b[i * sb:]), ref(ldb),
                             ref(beta, scalar), ptr(want[i * sc:]), ref(ldc))
                    da, db, dc = cp.asarray(a), cp.asarray(b), cp.asarray(c)
                    args = [handle, transa, transb, int(m), int(n), int(k),
                            ctypes.byref(scalar(alpha)), ctypes.c_void_p(da.data.ptr),
                            cuda_type, int(lda)]
                    if batch == 1:
                        status = lib.cublasGemmEx(
                            *args, ctypes.c_void_p(db.data.ptr), cuda_type, int(ldb),
                            ctypes.byref(scalar(beta)), ctypes.c_void_p(dc.data.ptr),
                            cuda_type, int(ldc), compute, -1)
                    else:
                        status = lib.cublasGemmStridedBatchedEx(
                            *args, ctypes.c_longlong(int(sa)), ctypes.c_void_p(db.data.ptr),
                            cuda_type, int(ldb), ctypes.c_longlong(int(sb)),
                            ctypes.byref(scalar(beta)), ctypes.c_void_p(dc.data.ptr),
                            cuda_type, int(ldc), ctypes.c_longlong(int(sc)), batch,
                            compute, -1)
                    assert status == 0
                    tol = 1e-5 if dtype == F32 else 1e-12
                    np.testing.assert_allclose(dc.get(), want, rtol=tol, atol=tol)
                    assert not np.array_equal(want, c)  # the reference did write C
                    cases += 1
    assert cases == 16
