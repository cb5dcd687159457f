"""tests/cuda/fakecuda.py itself, the CuPy stand-in the executor runs on in CI (not a
GPU): device arrays behave as CuPy's, a capture records without executing and
refuses what CUDA and CuPy refuse, graphs replay with pointers baked and contents read
at launch, races between streams and freed memory used by a graph are found, and the
numpy doubles of the synchronizing kernels equal the real kernels bit for bit."""

import numpy as np
import pytest

from graphnet import registry
from graphnet.ops import _cuda

from . import fakecuda, hostgrid
from .fakecuda import CUDARuntimeError, StandInError

registry.registered_types()  # every CudaSource registered


@pytest.fixture
def cp(monkeypatch):
    fake = fakecuda.FakeCuda(devices=2, peer=True)
    with fakecuda.installed(monkeypatch, fake):
        yield fake


def _stream(cp):
    return cp.cuda.Stream(non_blocking=True)


def test_device_arrays_behave_as_cupys(cp):
    x = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert type(x).__module__ == "cupy" and not isinstance(x, np.ndarray)
    assert x.data.ptr % 256 == 0 and x.device.id == 0
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(AttributeError):
        x.ctypes
    with pytest.raises(TypeError, match="host numpy array"):
        x + np.ones(3, np.float32)
    total = (2 * x + 1).sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and float(total) == 36.0
    row = x[1]  # a view: no copy
    assert row.data.ptr == x.data.ptr + 12 and isinstance(x[1, 2], cp.ndarray)
    wrapped = x.reshape(-1)[cp.asarray(np.array([0, 7, -1]))]  # CuPy wraps indices
    np.testing.assert_array_equal(wrapped.get(), [0, 1, 5])
    np.testing.assert_array_equal(np.take(x, cp.asarray(np.array([8])), axis=None).get(),
                                  [2])
    x[0, cp.asarray(np.array([0, 2]))] = 7
    x[1] = np.array([9, 9, 9], np.float32)  # an upload
    np.testing.assert_array_equal(x.get(), [[7, 1, 7], [9, 9, 9]])
    assert cp.ascontiguousarray(cp.asarray(np.float32(3))).shape == (1,)  # as CuPy
    with pytest.raises(TypeError, match="incorrect type"):
        cp.ascontiguousarray(np.ones(2))
    assert cp.empty(3, np.int32).get().tolist() == [-1, -1, -1]  # poisoned
    with pytest.raises(fakecuda.OutOfMemoryError):
        cp.empty(1 << 40, np.float32)
    with cp.cuda.Device(1):
        y = cp.zeros(2)
        with pytest.raises(ValueError, match="Peer access is unavailable"):
            x + 1  # (device 0's array while device 1 is current, peer not enabled)
    assert y.device.id == 1


def _keeping(cp, kept):
    """The current allocator, keeping every block (as graphs._kept_allocator does)."""
    base = cp.cuda.get_allocator()

    def malloc(size):
        kept.append(base(size))
        return kept[-1]
    return cp.cuda.using_allocator(malloc)


def test_a_capture_records_and_a_launch_replays_with_current_contents(cp):
    s, kept = _stream(cp), []
    with s:
        a = cp.asarray(np.arange(4, dtype=np.float32))
        out = cp.zeros(4, np.float32)
        with _keeping(cp, kept):  # (temporaries must outlive the capture)
            s.begin_capture()
            b = a * 2
            out[...] = b + 1
            out += cp.asarray(np.float32(0.5))  # a 0-d host value: a fill, no transfer
            graph = s.end_capture()
        assert len(kept) == 3
        assert np.isnan(b.get()).all()  # recorded, not executed
        np.testing.assert_array_equal(out.get(), 0)
        graph.launch(s)
        np.testing.assert_array_equal(out.get(), [1.5, 3.5, 5.5, 7.5])
        a[...] = 10  # pointers are baked, contents read at launch
        graph.launch(s)
        np.testing.assert_array_equal(out.get(), 21.5)
    assert cp.captures == 1 and cp.graph_launches == 2


def test_a_capture_refuses_what_cuda_and_cupy_refuse(cp):
    s = _stream(cp)
    with s:
        a = cp.asarray(np.arange(4, dtype=np.float32))
        idx = cp.asarray(np.array([1, 2], np.int64))
        s.begin_capture()
        for call, match in ((lambda: a.get(), "D2H"), (lambda: float(a.sum()), "D2H"),
                            (lambda: cp.asarray(np.ones(3)), "H2D"),
                            (lambda: a[np.array([0, 1])], "H2D"),
                            (lambda: a[a > 1], "D2H"),
                            (lambda: cp.bincount(idx), "D2H"),
                            (lambda: cp.concatenate([a] * 9), "H2D"),
                            (lambda: cp.stack([a] * 9), "H2D")):
            with pytest.raises(RuntimeError, match="the current stream is capturing, so "
                                                   "%s transfers are disallowed" % match):
                call()
        assert cp.concatenate([a] * 8).shape == (32,)  # one copy per array: allowed
        assert cp.concatenate([a] * 9, dtype=np.float64).shape == (36,)  # (casts: too)
        with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported"):
            s.synchronize()
        with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
            s.end_capture()
        other = _stream(cp)
        event = cp.cuda.Event()
        event.record(other)
        s.begin_capture()
        with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureIsolation"):
            s.wait_event(event)
        with pytest.raises(CUDARuntimeError, match="Invalidated"):
            s.end_capture()
        s.begin_capture()
        captured = s.record()
        with pytest.raises(CUDARuntimeError, match="cudaErrorCapturedEvent"):
            captured.synchronize()
        with pytest.raises(CUDARuntimeError):
            s.end_capture()
    with pytest.raises(CUDARuntimeError, match="legacy default stream"):
        cp.get_current_stream().begin_capture()


def test_races_between_streams_are_found_and_events_order_them(cp):
    s1, s2 = _stream(cp), _stream(cp)
    with s1:
        a = cp.ones(1000, np.float32)
    with s2:
        a + 1  # nothing orders s2 after s1's fill
    assert len(cp.problems) == 1 and "race: cupy.add reads device memory" in \
        cp.problems[0] and "cupy.full" in cp.problems[0]
    cp.problems.clear()
    s2.wait_event(s1.record())
    with s2:
        b = a * 2  # ordered by the event
    with s1:
        a.fill(3)  # but s1 has not waited for s2's read
    assert len(cp.problems) == 1 and "writes" in cp.problems[0] and "reads" in \
        cp.problems[0]
    cp.problems.clear()
    s1.synchronize()
    s2.synchronize()
    with s1:
        b + a  # the host waited for both: ordered


def test_a_pool_block_reused_on_its_stream_before_another_streams_read_is_a_race(cp):
    s1, s2 = _stream(cp), _stream(cp)
    with s1:
        t = cp.ones(1000, np.float32)
    s2.wait_event(s1.record())
    with s2:
        t * 2  # s2 reads t
    ptr = t.data.ptr
    del t  # back to s1's free list
    with s1:
        r = cp.zeros(1000, np.float32)  # the same block, written on s1
    assert r.data.ptr == ptr
    assert len(cp.problems) == 1 and "race: cupy.full writes" in cp.problems[0]
    cp.problems.clear()


def test_a_graph_using_memory_freed_after_its_capture_raises(cp):
    s = _stream(cp)
    with s:
        a = cp.ones(4, np.float32)
        s.begin_capture()
        temporary = a * 2
        out = temporary + 1
        graph = s.end_capture()
        del temporary  # nothing keeps it: the pool may hand it out again
        with pytest.raises(StandInError, match="device memory freed since it was "
                                               "captured"):
            graph.launch(s)
    assert out.shape == (4,) and cp.problems
    cp.problems.clear()


def test_copies_check_their_ranges_and_directions(cp):
    s = _stream(cp)
    pinned = cp.cuda.alloc_pinned_memory(64)
    host = np.frombuffer(pinned, np.float32, 16)
    host[...] = np.arange(16)
    x = cp.empty(16, np.float32)
    runtime = cp.cuda.runtime
    runtime.memcpyAsync(x.data.ptr, host.ctypes.data, 64, runtime.memcpyHostToDevice, s.ptr)
    np.testing.assert_array_equal(x.get(stream=s), np.arange(16))
    with pytest.raises(CUDARuntimeError, match="cudaErrorInvalidMemcpyDirection"):
        runtime.memcpyAsync(x.data.ptr, host.ctypes.data, 64, runtime.memcpyDeviceToHost,
                            s.ptr)
    with pytest.raises(StandInError, match="no live device allocation"):
        runtime.memcpyAsync(x.data.ptr, host.ctypes.data, 128, runtime.memcpyDefault, s.ptr)
    pageable = np.zeros(16, np.float32)
    with pytest.raises(StandInError, match="pageable host memory"):
        runtime.memcpyAsync(pageable.ctypes.data, x.data.ptr, 64, runtime.memcpyDefault,
                            s.ptr)
    cp.problems.clear()


def test_devices_streams_and_the_allocator(cp):
    with pytest.raises(CUDARuntimeError, match="cudaErrorInvalidDevice"):
        cp.cuda.Device(2)
    s1 = _stream(cp)
    with cp.cuda.Device(1):
        with pytest.raises(RuntimeError, match="does not match with the current device"):
            with s1:
                pass
        assert cp.get_current_stream().device_id == -1  # CuPy's null stream
    kept = []
    assert isinstance(cp.cuda.get_allocator().__self__, cp.cuda.MemoryPool)
    with _keeping(cp, kept):
        x = cp.zeros((3, 5), np.float32)
    assert len(kept) == 1 and kept[0].ptr == x.data.ptr and kept[0].mem.size == 60
    cp.cuda.runtime.deviceEnablePeerAccess(1)
    with pytest.raises(CUDARuntimeError) as info:
        cp.cuda.runtime.deviceEnablePeerAccess(1)
    assert info.value.status == 704


def _double_cases():
    rng = np.random.default_rng(0)
    for n, m in ((1, 1), (37, 5), (3000, 700), (0, 4), (5, 0)):
        lengths = rng.integers(-3, 50, m).astype(np.int32)
        for dtype in (np.int32, np.int64):
            yield rng.integers(-1000, 10 ** 6, n).astype(dtype), lengths, \
                np.array([rng.standard_normal()], np.float32)


def test_the_numpy_doubles_equal_the_synchronizing_kernels():
    """FakeCuda runs these kernels as numpy (hostgrid takes 40-200 ms a launch for
    them): each double must leave exactly what the kernel leaves."""
    module = hostgrid.compile(_cuda.SOURCES["index_checks"])
    sls = hostgrid.compile(_cuda.SOURCES["sparse_lengths"])
    init = np.array([np.iinfo(np.int64).max, 5, np.iinfo(np.int64).max,
                     np.iinfo(np.int64).min, 0], np.int64)
    null = np.uint64(0)
    for idx, lengths, scalar in _double_cases():
        name = "index_stats_" + ("i32" if idx.dtype == np.int32 else "i64")
        args = (idx if idx.size else null, np.int64(idx.size),
                lengths if lengths.size else null, np.int64(lengths.size),
                scalar.view(np.uint32) if idx.size % 2 else null)
        outs = []
        for run in ("kernel", "double"):
            out = init.copy()
            if run == "kernel":
                hostgrid.launch(module.get_function(name), 4 * 256, args + (out,))
            else:
                fakecuda.DOUBLES[name](*(args + (out,)))
            outs.append(out)
        np.testing.assert_array_equal(outs[1], outs[0], err_msg=name)
        if lengths.size:
            starts = [np.full(lengths.size, -7, np.int64) for _ in range(2)]
            hostgrid.launch(sls.get_function("segment_starts"), 1024,
                            (lengths, np.int64(lengths.size), starts[0]), block=1024)
            fakecuda.DOUBLES["segment_starts"](lengths, np.int64(lengths.size), starts[1])
            np.testing.assert_array_equal(starts[1], starts[0])
    assert set(fakecuda.DOUBLES) == {
        kernel for source in _cuda.SOURCES.values()
        for kernel, (_, sync) in hostgrid.parse_kernels(source.code).items() if sync}
