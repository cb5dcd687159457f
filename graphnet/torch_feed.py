"""FeedBlob of PyTorch tensors (caffe2.python.workspace._Blob_feed).

Caffe2 1.10 fed a `torch.Tensor` by wrapping its storage: no copy, dtype kept,
contiguous CPU tensors only. Imports numpy and logging; torch only via the
tensor object handed in.
"""

import logging

import numpy as np

__all__ = ["is_torch_tensor", "torch_to_numpy"]

log = logging.getLogger("graphnet")

_warned_device_option = [False]


def is_torch_tensor(obj):
    """Caffe2's own test: the exact class torch.Tensor (subclasses such as
    nn.Parameter were not recognised and failed as an unsupported type)."""
    cls = type(obj)
    return cls.__name__ == "Tensor" and cls.__module__ == "torch"


def torch_to_numpy(name, tensor, device_option):
    """The numpy array a blob holds after `FeedBlob(name, tensor, device_option)`.

    Without a device option the array shares the tensor's memory, as Caffe2's
    wrapper did: changes to the tensor are seen by the blob. (An op that writes
    the blob stores a new array in graphnet; Caffe2 wrote into the tensor.)
    Caffe2 1.10 refused a device option (or an enclosing DeviceScope) with
    `AssertionError: device_option doesn't make sense with PyTorch tensors`;
    graphnet instead copies the data onto the named device, and says so once.
    """
    if tensor.device.type != "cpu":
        raise TypeError(
            "FeedBlob('%s'): got a torch tensor on %s; graphnet feeds host data only. "
            "Fix: feed tensor.cpu()." % (name, tensor.device))
    if tensor.requires_grad:
        raise RuntimeError(
            "Can wrap only non-requires-grad tensor (FeedBlob('%s')). Fix: feed "
            "tensor.detach()." % name)
    if not tensor.is_contiguous():
        raise RuntimeError(
            "[enforce fail at tensor.cc:227] impl_->is_contiguous(). Caffe2 tensor "
            "wrapper supports only contiguous tensors (FeedBlob('%s') got a tensor of "
            "shape %s with strides %s). Fix: feed tensor.contiguous()."
            % (name, tuple(tensor.shape), tuple(tensor.stride())))
    try:
        array = tensor.numpy()
    except TypeError as exc:  # bfloat16, complex, ... have no numpy dtype
        raise TypeError("FeedBlob('%s'): torch dtype %s has no Caffe2 tensor type (%s). "
                        "Fix: convert it, e.g. tensor.float()." % (name, tensor.dtype, exc))
    if device_option is None:
        return array
    if not _warned_device_option[0]:
        _warned_device_option[0] = True
        log.warning(
            "FeedBlob('%s'): a torch tensor fed with a device_option (or inside a "
            "DeviceScope); Caffe2 1.10 raised AssertionError(\"device_option doesn't "
            "make sense with PyTorch tensors\") here. graphnet copies the data onto the "
            "requested device (shown once).", name)
    return np.array(array, copy=True)
