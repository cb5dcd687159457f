"""FeedBlob of torch tensors (DLRM feeds its data loader's tensors directly).
Outcomes golden from real Caffe2 1.10.2 unless marked as graphnet's divergence."""

import logging

import numpy as np
import pytest

from graphnet import core, torch_feed, workspace

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype, np_dtype", [
    (torch.float32, np.float32), (torch.float64, np.float64), (torch.int32, np.int32),
    (torch.int64, np.int64), (torch.float16, np.float16), (torch.bool, np.bool_),
    (torch.uint8, np.uint8)])
def test_dtype_and_values_are_kept(dtype, np_dtype):
    tensor = (torch.arange(6).reshape(2, 3) % 2).to(dtype)
    assert workspace.FeedBlob("t", tensor) is True
    got = workspace.FetchBlob("t")
    assert got.dtype == np_dtype and got.shape == (2, 3)
    np.testing.assert_array_equal(got, tensor.numpy())
    assert str(workspace.BlobDevice("t")) == "cpu"


def test_blob_shares_the_tensor_storage():
    tensor = torch.arange(4, dtype=torch.float32)
    workspace.FeedBlob("t", tensor)
    tensor.add_(10)  # Caffe2 wrapped the storage: the blob sees the change
    np.testing.assert_array_equal(workspace.FetchBlob("t"), [10, 11, 12, 13])


def test_zero_dim_tensor_feeds_a_scalar():
    workspace.FeedBlob("s", torch.tensor(3.0))
    got = workspace.FetchBlob("s")
    assert got.shape == () and got.dtype == np.float32 and got == 3.0


def test_rejected_tensors():
    with pytest.raises(RuntimeError, match="only contiguous tensors.*t_view"):
        workspace.FeedBlob("t_view", torch.ones(2, 3).t())
    with pytest.raises(RuntimeError, match="non-requires-grad"):
        workspace.FeedBlob("t_grad", torch.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="found Parameter"):  # not the exact Tensor class
        workspace.FeedBlob("t_param", torch.nn.Parameter(torch.ones(2)))
    with pytest.raises(TypeError, match="bfloat16"):
        workspace.FeedBlob("t_bf16", torch.ones(2, dtype=torch.bfloat16))
    assert not any(workspace.HasBlob(n) for n in ("t_view", "t_grad", "t_param", "t_bf16"))


def test_device_option_copies_onto_the_device(monkeypatch, caplog):
    # graphnet's divergence: Caffe2 1.10 raised AssertionError("device_option doesn't
    # make sense with PyTorch tensors"), which stops dlrm_s_caffe2.py --use-gpu on
    # more than one GPU in create_input
    monkeypatch.setattr(torch_feed, "_warned_device_option", [False])
    tensor = torch.arange(4, dtype=torch.float32)
    gpu1 = core.DeviceOption(workspace.GpuDeviceType, 1)
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        workspace.FeedBlob("g", tensor, device_option=gpu1)
        with core.DeviceScope(gpu1):
            workspace.FeedBlob("h", tensor)
    assert str(workspace.BlobDevice("g")) == "gpu_1" == str(workspace.BlobDevice("h"))
    tensor.add_(1)  # a copy, not shared
    np.testing.assert_array_equal(workspace.FetchBlob("g"), [0, 1, 2, 3])
    warnings = [r for r in caplog.records if "device_option doesn't make sense" in
                r.getMessage()]
    assert len(warnings) == 1 and "FeedBlob('g')" in warnings[0].getMessage()
