import contextlib

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import SchemaError
from graphnet.gradient_maker import GradientNotImplementedError, make_gradient
from graphnet.registry import TensorInfo
from tests.opcheck import gpu

RNG = np.random.default_rng(0)
# golden from real Caffe2 1.10.2: FetchBlob of a freed blob
FREED = b"%s, a C++ native class of type nullptr (uninitialized)."


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_free_empties_blob_but_keeps_it(dtype):
    ws = workspace.Workspace()
    ws.FeedBlob("x", (RNG.standard_normal((3, 2)) * 5).astype(dtype))
    ws.FeedBlob("keep", np.arange(4, dtype=np.int64))
    ws.RunOperatorOnce(core.CreateOperator("Free", ["x"], ["x"]))
    assert ws.HasBlob("x")
    assert ws.FetchBlob("x") == FREED % b"x"
    np.testing.assert_array_equal(ws.FetchBlob("keep"), np.arange(4))


def test_free_several_blobs_on_virtual_gpus():
    ws = workspace.Workspace()
    a = RNG.standard_normal(5).astype(np.float32)
    for d in (0, 1, 3):
        ws.FeedBlob("a%d" % d, a, device_option=gpu(d))
        ws.FeedBlob("b%d" % d, np.array([d], np.int32), device_option=gpu(d))
        ws.RunOperatorOnce(core.CreateOperator("Free", ["a%d" % d, "b%d" % d],
                                               ["a%d" % d, "b%d" % d],
                                               device_option=gpu(d)))
        for name in ("a%d" % d, "b%d" % d):
            assert ws.FetchBlob(name) == FREED % name.encode()
            assert ws.BlobDevice(name) == Device(1, d)


def free_net_runs_twice(ws, device_option=None, shape=(2, 3)):
    """Relu -> Scale -> Free(h) created once and run twice on `device_option`: y is
    right both times and h freed each time (tests/gpu runs it on a real GPU)."""
    x = RNG.standard_normal(shape).astype(np.float32)
    ws.FeedBlob("x", x, device_option=device_option)
    net = core.Net("free_net")
    with core.DeviceScope(device_option) if device_option else contextlib.nullcontext():
        net.Relu("x", "h")
        net.Scale("h", "y", scale=2.0)
        net.Free(["h"], ["h"])
    ws.CreateNet(net)
    for _ in range(2):
        ws.RunNet(net.Name())
        np.testing.assert_allclose(ws.FetchBlob("y"), 2 * np.maximum(x, 0))
        assert ws.FetchBlob("h") == FREED % b"h"
    return ws


def test_freed_blob_is_recomputed_on_the_next_run():
    ws = free_net_runs_twice(workspace.Workspace())
    assert ws.BlobDevice("h") == CPU


def test_free_shape_rule_forgets_the_shape():
    schema = registry.get("Free")
    op = core.CreateOperator("Free", ["a", "b"], ["a", "b"])
    infos = schema.shape_fn(schema.parse_args(op), TensorInfo((2, 3)),
                            TensorInfo((4,), np.int64))
    assert infos == [None, None]


def test_free_schema_checks():
    ws = workspace.Workspace()
    ws.FeedBlob("a", np.ones(2, np.float32))
    ws.FeedBlob("b", np.ones(2, np.float32))
    with pytest.raises(SchemaError, match="Output size 1 not matching expected output "
                                          "size, which is 2"):
        ws.RunOperatorOnce(core.CreateOperator("Free", ["a", "b"], ["a"]))
    with pytest.raises(SchemaError, match="Output size 2 not matching expected output "
                                          "size, which is 1"):
        ws.RunOperatorOnce(core.CreateOperator("Free", ["a"], ["a", "b"]))
    with pytest.raises(SchemaError, match=r"Input size 0 not in range \[min=1, max=inf\]"):
        ws.RunOperatorOnce(core.CreateOperator("Free", [], []))
    with pytest.raises(SchemaError, match=r"Input index 0 \(a\) and output idx 0 \(c\) are "
                                          "not in-place but should be"):
        ws.RunOperatorOnce(core.CreateOperator("Free", ["a"], ["c"]))
    with pytest.raises(SchemaError, match="set to be in-place but this is actually not "
                                          "supported by op Free"):
        ws.RunOperatorOnce(core.CreateOperator("Free", ["a", "b"], ["b", "a"]))
    # A rejected op leaves the blobs alone.
    np.testing.assert_array_equal(ws.FetchBlob("a"), np.ones(2, np.float32))


def test_free_has_no_gradient():
    op = core.CreateOperator("Free", ["a"], ["a"])
    with pytest.raises(GradientNotImplementedError,
                       match="One should not call gradient for operator Free."):
        make_gradient(op, ["a_grad"])


def test_free_runs_on_cpu_and_gpu():
    schema = registry.get("Free")
    schema.check_device(CPU)
    schema.check_device(Device(1, 0))
