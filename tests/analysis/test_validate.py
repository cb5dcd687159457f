"""validate: every problem of a NetDef, each with its code, op, blob and fix."""

from graphnet import core
from graphnet.analysis import validate
from graphnet.analysis.validate import CODES
from graphnet.devices import Device
from tests.analysis import nets

GPU = [core.DeviceOption(1, d) for d in range(4)]


def _codes(findings):
    return [(f.severity, f.code, f.op_index, f.blob) for f in findings]


def test_realistic_nets_are_clean_but_for_unused_outputs():
    case = nets.mlp()
    blobs = {n: (v.shape, v.dtype, d) for n, (v, d) in case.feeds.items()}
    assert validate(case.netdef, blobs) == []
    forward = nets.dlrm_forward()
    found = validate(forward.netdef, {n: (v.shape, v.dtype, d)
                                      for n, (v, d) in forward.feeds.items()})
    # Concat's split_info outputs and the per-device prob_click are never read.
    assert {f.code for f in found} == {"unused_output"}
    assert {f.blob for f in found} >= set(forward.fetch)


def test_dlrm_training_net_reports_the_three_seed_reads():
    """The same three reads test_training.py sees as CrossDeviceReadWarnings."""
    case = nets.dlrm_training()
    found = validate(case.netdef, {n: (v.shape, v.dtype, d)
                                   for n, (v, d) in case.feeds.items()})
    reads = [f for f in found if f.code == "cross_device_read"]
    assert [f.blob for f in reads] == ["gpu_%d/loss_autogen_grad" % d for d in (3, 2, 1)]
    assert all(f.severity == "warning" and "add a Copy" in f.message for f in reads)
    assert not [f for f in found if f.severity == "error"]
    devices_only = {n: (None, None, d) for n, (_, d) in case.feeds.items()}
    strict = validate(case.netdef, devices_only, strict_devices=True)
    assert [f.severity for f in strict if f.code == "cross_device_read"] == ["error"] * 3


def test_undefined_inputs_and_unknown_ops():
    netdef = core.Net("undefined").Proto()  # raw ops: Net would declare their inputs
    netdef.external_input.append("x")
    netdef.op.add(type="Relu", input=["later"], output=["y"])     # 0: produced by op 2
    netdef.op.add(type="Relu", input=["missing"], output=["z"])   # 1: produced by nobody
    netdef.op.add(type="Relu", input=["x"], output=["later"])     # 2
    netdef.op.add(type="Rellu", input=["x"], output=["w"])        # 3
    found = validate(netdef)
    undefined = [f for f in found if f.code == "undefined_input"]
    assert [(f.op_index, f.blob) for f in undefined] == [(0, "later"), (1, "missing")]
    assert "move op #2 before op #0" in undefined[0].message
    assert "FeedBlob" in undefined[1].message
    unknown, = [f for f in found if f.code == "unknown_op"]
    assert unknown.op_index == 3 and "Did you mean: Relu" in unknown.message
    assert validate(netdef, blobs={"missing": None, "later": None}) == [
        f for f in found if f.code not in ("undefined_input",)]


def test_schema_argument_and_device_kind_errors():
    net = core.Net("schema")
    net.Proto().op.add(type="FC", input=["x", "w"], output=["y"])       # too few inputs
    net.Scale("y", "s", scale=2)                                        # int, not float
    net.NCCLAllreduce(["s"], ["t"])                                     # on the CPU
    found = validate(net.Proto(), {"x": ((2, 3), "float32", None),
                                   "w": ((4, 3), "float32", None)})
    assert _codes(found)[:3] == [("error", "schema", 0, None),
                                 ("error", "argument", 1, None),
                                 ("error", "device_kind", 2, None)]
    assert "Input size 2 not in range" in found[0].message
    assert "Fix: pass a Python float" in found[1].message
    assert "on the device 'CPU'" in found[2].message and "DeviceScope" in found[2].message


def test_in_place_and_overwrite_mistakes():
    net = core.Net("inplace")
    net.AddExternalInput("x", "w", "b", "it")
    net.FC(["x", "w", "b"], "x")            # 0: FC cannot run in place
    net.Proto().op.add(type="Iter", input=["it"], output=["it2"])  # 1: must be in place
    net.Relu("w", "tmp")                    # 2: overwritten by 3 before use
    net.Sigmoid("w", "tmp")                 # 3
    net.Relu("tmp", "out")                  # 4
    net.Proto().external_output.extend(["out", "never"])
    found = validate(net.Proto())
    assert ("error", "inplace_not_allowed", 0, "x") in _codes(found)
    assert ("error", "inplace_required", 1, "it2") in _codes(found)
    over, = [f for f in found if f.code == "overwritten_before_use"]
    assert (over.op_index, over.blob) == (2, "tmp") and "op #3 (Sigmoid)" in over.message
    assert ("warning", "unused_output", 1, "it2") in _codes(found)
    assert ("error", "external_output_missing", None, "never") in _codes(found)
    assert not [f for f in found if f.code == "schema"]  # in-place reported once


def test_shape_errors_from_every_op_are_all_reported():
    net = core.Net("shapes")
    net.FC(["x", "w", "b"], "y")             # K mismatch: x is (2, 3), w is (4, 5)
    net.Add(["u", "v"], "z")                 # (2, 3) + (4,) without broadcast
    net.Relu("y", "r")                        # y unknown after the failure: not reported
    blobs = {"x": ((2, 3), "float32", None), "w": ((4, 5), "float32", None),
             "b": ((4,), "float32", None), "u": ((2, 3), "float32", None),
             "v": ((4,), "float32", None)}
    shape = [f for f in validate(net.Proto(), blobs) if f.code == "shape"]
    assert [f.op_index for f in shape] == [0, 1]
    assert all("shape inference fails" in f.message and "Fix:" in f.message for f in shape)


def test_devices_given_with_the_blobs_drive_cross_device_reads():
    net = core.Net("devices")
    with core.DeviceScope(GPU[1]):
        net.Relu("a", "b")
    assert validate(net.Proto(), {"a": (None, None, Device(1, 1))}) == [
        f for f in validate(net.Proto(), {"a": None})]
    read, = [f for f in validate(net.Proto(), {"a": ((2,), "float32", Device(1, 0))})
             if f.code == "cross_device_read"]
    assert read.blob == "a"
    assert "Copy of 'a' to gpu_1 under DeviceScope(gpu_1)" in read.message
    assert str(read).startswith("warning [cross_device_read] op #0 (Relu) reads")


def test_every_code_is_documented():
    assert set(CODES) >= {"unknown_op", "schema", "argument", "device_kind", "device_rule",
                          "undefined_input", "inplace_not_allowed", "inplace_required",
                          "cross_device_read", "overwritten_before_use", "unused_output",
                          "external_output_missing", "shape"}
