"""workspace: feeding, fetching, nets, named workspaces, errors (spec §2.10, §5.1)."""

import logging

import numpy as np
import pytest

from graphnet import core, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import GraphnetError, OperatorError, UnknownOperatorError
from graphnet.proto import caffe2_pb2
from graphnet.utils import NumpyArrayToCaffe2Tensor

RNG = np.random.default_rng(42)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_,
                                   np.uint8, np.int8, np.int16, np.uint16, np.float16])
def test_feed_fetch_roundtrip_keeps_dtype(dtype):
    x = (RNG.standard_normal((3, 2)) * 50).astype(dtype)
    assert workspace.FeedBlob("x", x) is True
    y = workspace.FetchBlob("x")
    assert y.dtype == np.dtype(dtype) and y.shape == (3, 2)
    np.testing.assert_array_equal(y, x)


def test_feed_copies_and_fetch_copies():
    x = RNG.standard_normal(4).astype(np.float32)
    workspace.FeedBlob("x", x)
    x[0] = 123.0
    y = workspace.FetchBlob("x")
    assert y[0] != 123.0
    y[1] = -5.0
    assert workspace.FetchBlob("x")[1] != -5.0


def test_feed_strings_tensorproto_and_scalars():
    workspace.FeedBlob("s", "hello")
    assert workspace.FetchBlob("s") == b"hello"
    workspace.FeedBlob("u", np.array(["ab", "c"]))
    assert workspace.FetchBlob("u").dtype == object
    t = NumpyArrayToCaffe2Tensor(np.arange(6, dtype=np.int64).reshape(2, 3))
    workspace.FeedBlob("t", t)
    np.testing.assert_array_equal(workspace.FetchBlob("t"),
                                  np.arange(6, dtype=np.int64).reshape(2, 3))
    workspace.FeedBlob("scalar", np.float32(2.5))
    assert workspace.FetchBlob("scalar").shape == ()


def test_feed_rejects_unsupported_dtype_and_type():
    with pytest.raises(TypeError, match="This numpy data type is not supported: .*"
                                        "complex128"):
        workspace.FeedBlob("c", np.ones(2, dtype=np.complex128))
    with pytest.raises(TypeError, match="expected a numpy array.*Fix"):
        workspace.FeedBlob("l", [1, 2, 3])


def test_fetch_missing_and_uninitialized():
    with pytest.raises(RuntimeError, match="Can't find blob: nope"):
        workspace.FetchBlob("nope")
    workspace.CreateBlob("empty")
    assert workspace.FetchBlob("empty") == \
        b"empty, a C++ native class of type nullptr (uninitialized)."


def test_feed_device_placement_from_option_and_scope():
    x = RNG.standard_normal(3).astype(np.float32)
    workspace.FeedBlob("a", x)
    assert workspace.BlobDevice("a") == CPU
    workspace.FeedBlob("b", x, device_option=core.DeviceOption(1, 2))
    assert workspace.BlobDevice("b") == Device(1, 2)
    with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 3)):
        workspace.FeedBlob("c", x)
    assert workspace.BlobDevice("c") == Device(1, 3)
    np.testing.assert_array_equal(workspace.FetchBlob("c"), x)


def test_feed_float64_on_gpu_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        workspace.FeedBlob("d", np.ones(2), device_option=core.DeviceOption(1, 0))
    assert "CUDA operators do not support 64-bit doubles" in caplog.text


def test_feed_on_missing_gpu_names_the_fix():
    workspace.SetVirtualGpuCount(2)
    with pytest.raises(GraphnetError, match="gpu_5.*GRAPHNET_VIRTUAL_GPUS=6"):
        workspace.FeedBlob("x", np.ones(1, np.float32), core.DeviceOption(1, 5))


def test_num_gpu_devices_follows_virtual_count():
    workspace.SetVirtualGpuCount(3)
    assert workspace.NumGpuDevices() == 3
    assert workspace.GetGpuPeerAccessPattern().shape == (3, 3)
    assert workspace.GpuDeviceType == caffe2_pb2.CUDA == 1


def test_blobs_has_reset_and_blob_dict():
    workspace.FeedBlob("x", np.ones(1, np.float32))
    assert workspace.HasBlob("x") and "x" in workspace.Blobs()
    assert "x" in workspace.blobs and len(workspace.blobs) == 1
    workspace.blobs["y"] = np.zeros(2, np.int32)
    np.testing.assert_array_equal(workspace.blobs["y"], np.zeros(2, np.int32))
    workspace.ResetWorkspace()
    assert workspace.Blobs() == [] and not workspace.HasBlob("x")


def test_switch_workspace_and_objects():
    workspace.FeedBlob("x", np.ones(1, np.float32))
    with pytest.raises(RuntimeError, match="does not exist"):
        workspace.SwitchWorkspace("other")
    workspace.SwitchWorkspace("other", True)
    assert workspace.CurrentWorkspace() == "other" and not workspace.HasBlob("x")
    assert "other" in workspace.Workspaces()
    workspace.SwitchWorkspace("default")
    assert workspace.HasBlob("x")
    ws = workspace.Workspace()
    ws.FeedBlob("q", np.ones(2, np.float32))
    assert ws.HasBlob("q") and not workspace.HasBlob("q")


def test_create_run_net_and_refuse_overwrite():
    net = core.Net("runme")
    net.Copy("x", "y")
    workspace.FeedBlob("x", np.arange(3, dtype=np.float32))
    assert workspace.CreateNet(net)
    assert workspace.FetchBlob("y") == b"y, a C++ native class of type nullptr " \
                                       b"(uninitialized)."
    assert workspace.RunNet(net.Name(), num_iter=3)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [0, 1, 2])
    with pytest.raises(RuntimeError, match='I respectfully refuse to overwrite an '
                                           'existing net of the same name "runme"'):
        workspace.CreateNet(net)
    assert workspace.CreateNet(net, overwrite=True)
    with pytest.raises(RuntimeError, match="Can't find net nothere"):
        workspace.RunNet("nothere")


def test_net_sees_blobs_fed_after_creation():
    net = core.Net("refeed")
    net.Copy("x", "y")
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.CreateNet(net)
    workspace.FeedBlob("x", np.full(2, 7, np.float32))
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [7, 7])


def test_create_net_missing_input_message():
    net = core.Net("missing")
    net.Copy("nothing", "y")
    with pytest.raises(GraphnetError, match="op Copy: Encountered a non-existing input "
                                            "blob: nothing"):
        workspace.CreateNet(net)
    assert not workspace.HasBlob("y"), "a rejected net must not create blobs"
    workspace.CreateNet(net, input_blobs=["nothing"])


def test_source_unknown_with_external_inputs():
    netdef = caffe2_pb2.NetDef()
    netdef.name = "ext"
    netdef.external_input.append("a")
    netdef.op.add().CopyFrom(core.CreateOperator("Copy", ["b"], ["c"]))
    workspace.FeedBlob("b", np.ones(1, np.float32))
    with pytest.raises(GraphnetError, match="Source for input b is unknown for net ext"):
        workspace.CreateNet(netdef)


def test_external_output_never_produced():
    netdef = caffe2_pb2.NetDef()
    netdef.name = "extout"
    netdef.external_output.append("ghost")
    with pytest.raises(GraphnetError, match="never produced by the net extout, the first "
                                            "one is ghost"):
        workspace.CreateNet(netdef)


def test_unknown_op_and_net_type():
    netdef = caffe2_pb2.NetDef()
    netdef.name = "bad"
    netdef.op.add().CopyFrom(core.CreateOperator("Cpoy", ["x"], ["y"]))
    with pytest.raises(UnknownOperatorError, match="Cpoy.*Did you mean.*Copy"):
        workspace.RunNetOnce(netdef)
    netdef = caffe2_pb2.NetDef(name="t", type="quantum")
    with pytest.raises(GraphnetError, match=r"net type: \[quantum\] does not exist"):
        workspace.CreateNet(netdef)


def test_net_without_name():
    # Caffe2 checked the name when a net is created and kept (workspace.cc), not in
    # RunNetOnce: its own exporter writes nameless init nets.
    with pytest.raises(GraphnetError, match="Net definition should have a name."):
        workspace.CreateNet(caffe2_pb2.NetDef())
    nameless = caffe2_pb2.NetDef()
    nameless.op.add().CopyFrom(core.CreateOperator("ConstantFill", [], ["c"], shape=[2],
                                                   value=3.0))
    assert workspace.RunNetOnce(nameless)
    np.testing.assert_array_equal(workspace.FetchBlob("c"), [3.0, 3.0])


def test_run_operator_once_and_allow_fail():
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("Copy", ["x"], ["y"]))
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [1, 1])
    workspace.RunOperatorsOnce([core.CreateOperator("Copy", ["y"], ["z"]),
                                core.CreateOperator("Copy", ["z"], ["w"])])
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [1, 1])
    net = core.Net("failing")
    net.Copy("x", "y2")
    net.Copy("later", "boom")
    workspace.CreateNet(net, input_blobs=["later"])
    assert workspace.RunNet(net, allow_fail=True) is False
    with pytest.raises(OperatorError):
        workspace.RunNet(net)


def test_failed_op_keeps_earlier_blobs_and_workspace_usable():
    workspace.FeedBlob("x", np.arange(4, dtype=np.float32))
    workspace.FeedBlob("keep", np.full(2, 9, np.float32))
    net = core.Net("partial")
    net.Copy("x", "first")
    net.Copy("uninit", "keep")
    workspace.CreateNet(net, input_blobs=["uninit"])
    with pytest.raises(OperatorError) as info:
        workspace.RunNet(net)
    message = str(info.value)
    assert "op #1 (Copy)" not in message  # the op is described below, not guessed
    assert "Error from operator #1 (Copy) in net 'partial' on device cpu" in message
    assert "uninit" in message and "nullptr (uninitialized)" in message
    assert info.value.op_index == 1 and info.value.op_type == "Copy"
    np.testing.assert_array_equal(workspace.FetchBlob("first"), [0, 1, 2, 3])
    np.testing.assert_array_equal(workspace.FetchBlob("keep"), [9, 9])
    workspace.FeedBlob("uninit", np.ones(1, np.float32))
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("keep"), [1])


def test_global_init_accepts_caffe2_flags():
    assert workspace.GlobalInit(["caffe2", "--caffe2_log_level=0", "--logtostderr=0"])
    assert core.GlobalInit(["prog", "--caffe2_log_level=1"])


def test_global_init_accepts_flags_caffe2_1_10_did_not_register(caplog):
    # the 1.10 wheel has no caffe2_logging_print_net_summary (dlrm#9, spec §6 item 8):
    # Caffe2 raised; graphnet warns and ignores it (the full rules: test_c10_flags.py)
    import logging
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        assert workspace.GlobalInit(["caffe2", "--caffe2_logging_print_net_summary=1"])
    assert "unrecognized commandline argument: --caffe2_logging_print_net_summary=1" \
        in caplog.text


def test_registered_operators_lists_ops():
    ops = workspace.RegisteredOperators()
    assert "Copy" in ops and "CopyGPUToCPU" in ops and ops == sorted(ops)
