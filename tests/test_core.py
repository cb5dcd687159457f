"""core: BlobReference, input/output rectification, Net bookkeeping and errors."""

import numpy as np
import pytest

from graphnet import core, scope, workspace
from graphnet.errors import UnknownOperatorError
from graphnet.proto import caffe2_pb2


def test_blob_reference_equality_hash_and_arithmetic():
    b = core.BlobReference("gpu_0/abc/x")
    assert b == "gpu_0/abc/x" and b == b"gpu_0/abc/x" and b == core.BlobReference(b)
    assert b != 3 and hash(b) == hash("gpu_0/abc/x")
    assert {b: 1}["gpu_0/abc/x"] == 1
    assert b.GetNameScope() == "gpu_0/abc/" and b.GetUnscopedName() == "x"
    assert str(b + "_grad") == "gpu_0/abc/x_grad" and str("pre_" + b) == "pre_gpu_0/abc/x"
    with pytest.raises(RuntimeError, match="Cannot add BlobReference to a non-string."):
        b + 1
    with pytest.raises(RuntimeError, match="Cannot add a non-string to BlobReference."):
        1 + b
    assert repr(b) == 'BlobReference("gpu_0/abc/x")'
    with pytest.raises(AttributeError, match="does not have a net source"):
        b.Relu()


def test_rectify_rejects_bad_types():
    with pytest.raises(TypeError, match="I/O blob #1 of unsupported type"):
        core.CreateOperator("Relu", ["x", 3], "y")
    with pytest.raises(TypeError, match="Unknown input/output type"):
        core.CreateOperator("Relu", 3, "y")


def test_argument_type_errors():
    with pytest.raises(ValueError, match="Unknown argument type: key=bad"):
        core.CreateOperator("Relu", "x", "y", bad=object())
    with pytest.raises(ValueError, match="Unknown iterable argument type: key=mix"):
        core.CreateOperator("Relu", "x", "y", mix=[1, 2.0])


def test_unknown_op_attribute_suggests():
    net = core.Net("suggest")
    with pytest.raises(AttributeError, match=r"Method Rleu is not a registered operator. "
                                             r"Did you mean: \[.*Relu.*\]"):
        net.Rleu("x")
    with pytest.raises(UnknownOperatorError):
        net.NoSuchOp("x")
    with pytest.raises(AttributeError):
        net.__secret__
    assert "Relu" in dir(net)


def test_external_input_and_output_bookkeeping():
    net = core.Net("ext_io")
    x = net.AddExternalInput("x")
    with pytest.raises(AssertionError, match="Net already contains an input named x"):
        net.AddExternalInput("x")
    y = net.Relu(x, "y")
    with pytest.raises(AssertionError, match="nothere is not defined"):
        net.AddExternalOutput(core.BlobReference("nothere"))
    net.AddExternalOutput(y)
    assert net.BlobIsDefined("y") and net.BlobIsDefined(x) and not net.BlobIsDefined("z")
    assert net.UsesBlob("x") and net.UsedBlobNames() == {"x", "y"}
    assert net.GetBlobRef("y").Net() is net
    with pytest.raises(KeyError, match="Net does not define blob zz"):
        net.GetBlobRef("zz")


def test_proto_mutation_invalidates_lookup_tables():
    net = core.Net("mutate")
    net.Relu("a", "b")
    op = net.Proto().op.add()
    op.type = "Relu"
    op.input.append("b")
    op.output.append("c")
    assert net.BlobIsDefined("c")


def test_one_output_list_returns_reference_and_zero_outputs_none():
    net = core.Net("returns")
    assert isinstance(net.Relu("x", ["y"]), core.BlobReference)
    assert net.Copy("y", []) is None


def test_device_option_helpers():
    cpu = core.DeviceOption(caffe2_pb2.CPU)
    assert cpu.HasField("device_type") and cpu.HasField("device_id")
    assert core.device_option_equal(core.DeviceOption(0, 3), core.DeviceOption(0, 0))
    assert not core.device_option_equal(core.DeviceOption(1, 1), core.DeviceOption(1, 2))
    assert core.device_equal(core.DeviceOption(1, 1), core.DeviceOption(1, 1))
    opt = core.DeviceOption(1, 2, random_seed=5, node_name="n", extra_info=["a"])
    assert (opt.random_seed, opt.node_name, list(opt.extra_info)) == (5, "n", ["a"])
    assert core.IsGPUDeviceType(1) and core.IsGPUDeviceType(6) and not core.IsGPUDeviceType(0)
    with pytest.raises(AssertionError):
        core.DeviceOption(1, 0, numa_node_id=1)


def test_infer_blob_devices_and_op_blob_devices():
    net = core.Net("infer_dev")
    with core.DeviceScope(core.DeviceOption(1, 2)):
        net.Copy("x", "y")
        net.CopyGPUToCPU("y", "h")
    devices = core.InferBlobDevices(net)
    assert devices["y"].device_id == 2
    ins, outs = core.InferOpBlobDevices(net.Proto().op[1])
    assert (ins[0].device_type, ins[0].device_id) == (1, 2)
    assert outs[0].device_type == 0


def test_scopes_are_thread_local():
    import threading
    seen = []
    with core.NameScope("main"):
        t = threading.Thread(target=lambda: seen.append(scope.CurrentNameScope()))
        t.start()
        t.join()
        assert scope.CurrentNameScope() == "main/"
    assert seen == [""]


def test_device_scope_exit_check():
    with pytest.raises(AssertionError, match="At least one argument should be non-null"):
        with core.DeviceScope(None):
            pass


def test_device_scope_nesting_decorator_and_single_use():
    outer = core.DeviceOption(1, 1, node_name="host_a", extra_info=["z", "b"])
    seen = {}
    with core.DeviceScope(outer):
        with core.DeviceScope(core.DeviceOption(1, 3, extra_info=["m"])):
            inner = scope.CurrentDeviceScope()
            seen["inner"] = (inner.device_id, inner.node_name, list(inner.extra_info))
        seen["after"] = scope.CurrentDeviceScope().device_id
    assert seen == {"inner": (3, "host_a", ["b", "m", "z"]), "after": 1}
    assert scope.CurrentDeviceScope() is None

    @core.DeviceScope(core.DeviceOption(1, 5))
    def build(net):  # as a decorator: a fresh scope per call
        return net.Relu("x", "y")
    nets = [core.Net("deco_%d" % i) for i in range(2)]
    for net in nets:
        build(net)
    assert [n.Proto().op[0].device_option.device_id for n in nets] == [5, 5]

    ds = core.DeviceScope(core.DeviceOption(1, 2))
    with ds:
        pass
    with pytest.raises(RuntimeError, match="make a new DeviceScope"):
        with ds:
            pass
    assert scope.CurrentDeviceScope() is None
    with pytest.raises(ValueError):  # the body's error passes through, scope restored
        with core.DeviceScope(core.DeviceOption(1, 2)):
            raise ValueError("body")
    assert scope.CurrentDeviceScope() is None


def test_immediate_ops_run_through_workspace():
    workspace.FeedBlob("x", np.array([-1.0, 2.0], dtype=np.float32))
    net = core.Net("small")
    net.Relu("x", "y")
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [0.0, 2.0])
