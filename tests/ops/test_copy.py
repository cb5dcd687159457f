import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import SchemaError
from tests.opcheck import check_op, gpu, run_op

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_copy_reference(dtype):
    x = (RNG.standard_normal((3, 4)) * 10).astype(dtype)
    check_op("Copy", [x], lambda x: [x.copy()])


def test_copy_moves_between_virtual_gpus():
    ws = workspace.Workspace()
    x = RNG.standard_normal((5, 2)).astype(np.float32)
    ws.FeedBlob("x", x, device_option=gpu(1))
    ws.RunOperatorOnce(core.CreateOperator("Copy", ["x"], ["y"], device_option=gpu(3)))
    assert ws.BlobDevice("x") == Device(1, 1)
    assert ws.BlobDevice("y") == Device(1, 3)
    np.testing.assert_array_equal(ws.FetchBlob("y"), x)


def test_copy_gpu_to_cpu_and_back():
    ws = workspace.Workspace()
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    ws.FeedBlob("x", x, device_option=gpu(2))
    ws.RunOperatorOnce(core.CreateOperator("CopyGPUToCPU", ["x"], ["h"],
                                           device_option=gpu(2)))
    assert ws.BlobDevice("h") == CPU
    ws.RunOperatorOnce(core.CreateOperator("CopyCPUToGPU", ["h"], ["g"],
                                           device_option=gpu(0)))
    assert ws.BlobDevice("g") == Device(1, 0)
    np.testing.assert_array_equal(ws.FetchBlob("g"), x)


def test_copy_gpu_to_cpu_is_gpu_only():
    with pytest.raises(SchemaError, match="Cannot create operator of type 'CopyGPUToCPU' "
                                          "on the device 'CPU'"):
        run_op("CopyGPUToCPU", [np.ones(2, np.float32)])


def test_copy_on_device_like_follows_second_input():
    ws = workspace.Workspace()
    ws.FeedBlob("g", RNG.standard_normal(4).astype(np.float32), device_option=gpu(3))
    ws.FeedBlob("like", np.zeros(4, np.float32), device_option=gpu(1))
    ws.RunOperatorOnce(core.CreateOperator("CopyOnDeviceLike", ["g", "like"], ["out"],
                                           device_option=gpu(3)))
    assert ws.BlobDevice("out") == Device(1, 1)
    np.testing.assert_array_equal(ws.FetchBlob("out"), ws.FetchBlob("g"))


def test_ensure_cpu_output():
    ws = workspace.Workspace()
    x = RNG.standard_normal(3).astype(np.float32)
    ws.FeedBlob("x", x, device_option=gpu(2))
    ws.RunOperatorOnce(core.CreateOperator("EnsureCPUOutput", ["x"], ["y"],
                                           device_option=gpu(2)))
    assert ws.BlobDevice("y") == CPU
    np.testing.assert_array_equal(ws.FetchBlob("y"), x)



def test_copy_gradient_returns_to_source_device():
    from tests.opcheck import check_gradient, gradient_of
    x = RNG.standard_normal((3, 2)).astype(np.float32)
    check_gradient("Copy", [x], wrt=[0])
    op, outs, dys, grads, ops = gradient_of("Copy", [x], device=2)
    assert [o.type for o in ops] == ["CopyOnDeviceLike"]
    assert list(ops[0].input) == ["out0_grad", "in0"]
    assert ops[0].is_gradient_op and ops[0].device_option.device_id == 2
    np.testing.assert_array_equal(grads[0], dys[0])


def test_copy_gpu_to_cpu_gradient_is_copy_cpu_to_gpu():
    from tests.opcheck import gradient_of
    x = RNG.standard_normal((2, 2)).astype(np.float32)
    op, outs, dys, grads, ops = gradient_of("CopyGPUToCPU", [x], device=1)
    assert [o.type for o in ops] == ["CopyCPUToGPU"]
    np.testing.assert_array_equal(grads[0], dys[0])
