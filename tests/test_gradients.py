"""core.IR / AddGradientOperators semantics and errors (spec §2.8, §6.3–6.5).
Whole-net wiring against real Caffe2 is in test_goldens.py."""

import numpy as np
import pytest

from graphnet import core, model_helper, workspace


def test_autogen_seed_lands_in_current_device_scope():
    net = core.Net("seed")
    with core.DeviceScope(core.DeviceOption(1, 3)):
        loss = net.AveragedLoss("x", "loss")
    with core.DeviceScope(core.DeviceOption(1, 0)):
        net.AddGradientOperators([loss])
    seed = net.Proto().op[1]
    assert seed.type == "ConstantFill" and list(seed.output) == ["loss_autogen_grad"]
    assert seed.device_option.device_id == 0 and not seed.is_gradient_op
    grad = net.Proto().op[2]
    assert grad.type == "AveragedLossGradient" and grad.is_gradient_op
    assert grad.device_option.device_id == 3


def test_gradient_map_includes_inputs_and_loss():
    net = core.Net("gm")
    y = net.FC(["x", "w", "b"], "y")
    loss = net.AveragedLoss(net.Relu(y, "r"), "loss")
    grads = net.AddGradientOperators([loss])
    assert {str(k): str(v) for k, v in grads.items()} == {
        "loss": "loss_autogen_grad", "r": "r_grad", "y": "y_grad", "x": "x_grad",
        "w": "w_grad", "b": "b_grad"}
    assert grads["w"] == "w_grad"  # plain strings index the map


def test_multiple_uses_are_summed_and_autosplit_named():
    net = core.Net("acc")
    a = net.Scale("x", "a", scale=2.0)
    b = net.Scale("x", "b", scale=3.0)
    loss = net.AveragedLoss(net.Sum([a, b], "s"), "loss")
    grads = net.AddGradientOperators([loss])
    types = [op.type for op in net.Proto().op]
    assert types[-1] == "Sum"
    total = net.Proto().op[-1]
    assert list(total.input) == ["x_grad", "_x_grad_autosplit_0"]
    assert list(total.output) == ["x_grad"]
    assert "is_auto_gen_sum_ops:1" in total.device_option.extra_info
    x = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob(grads["x"]),
                               np.full((3, 2), 5.0 / 6, np.float32), rtol=1e-6)


def test_sparse_contributions_are_concatenated():
    net = core.Net("sparse_acc")
    g1 = net.Gather(["table", "i1"], "g1")
    g2 = net.SparseLengthsSum(["table", "i2", "len"], "g2")
    loss = net.AveragedLoss(net.Concat([net.Flatten(g1, "f1"), g2], 2, axis=0)[0],
                            "loss")
    grads = net.AddGradientOperators([loss])
    g = grads["table"]
    assert isinstance(g, core.GradientSlice)
    assert (str(g.indices), str(g.values)) == ("table_grad_indices_concat",
                                               "table_grad_values_concat")
    rng = np.random.default_rng(1)
    table = rng.standard_normal((5, 2)).astype(np.float32)
    workspace.FeedBlob("table", table)
    workspace.FeedBlob("i1", np.array([0, 3, 3], dtype=np.int64))
    workspace.FeedBlob("i2", np.array([1, 3, 4, 4], dtype=np.int64))
    workspace.FeedBlob("len", np.array([1, 3], dtype=np.int32))
    workspace.RunNetOnce(net)
    indices = workspace.FetchBlob(g.indices)
    values = workspace.FetchBlob(g.values)
    # backward order: the later reader (SparseLengthsSum) contributes first
    np.testing.assert_array_equal(indices, [1, 3, 4, 4, 0, 3, 3])
    n = 3 * 2 + 2 * 2  # elements averaged by AveragedLoss
    np.testing.assert_allclose(values, np.full((7, 2), 1.0 / n), rtol=1e-6)


def test_inplace_overwrite_is_reported_with_versions():
    net = core.Net("inplace")
    r = net.Relu("x", "r")
    net.Scale(r, "s", scale=2.0)
    net.Relu("x", r)                       # r overwritten after Scale read it
    loss = net.AveragedLoss("s", "loss")
    with pytest.raises(RuntimeError, match='Gradient operator needs output "r" at version '
                                           '0, but currently we have version 1.'):
        net.AddGradientOperators([loss])


def test_chained_inplace_relu_is_reported():
    """pytorch/pytorch#8186: Relu applied in place twice cannot be differentiated."""
    net = core.Net("chain")
    y = net.Relu("x", "y")
    net.Relu(y, y)
    with pytest.raises(RuntimeError, match='Gradient operator needs output "y" at version '
                                           '0, but currently we have version 1.'):
        net.AddGradientOperators([net.AveragedLoss(y, "loss")])


def test_mixed_sparse_dense_error():
    net = core.Net("mixed")
    g = net.Flatten(net.Gather(["t", "i"], "g"), "gf")
    d = net.Flatten(net.Scale("t", "d", scale=1.0), "df")
    loss = net.AveragedLoss(net.Concat([g, d], 2, axis=0)[0], "loss")
    with pytest.raises(RuntimeError, match="Gradients for param ''t'' failed to verify: "
                                           "Automatic aggregation of a mix of sparse and "
                                           "dense gradients is not supported yet"):
        net.AddGradientOperators([loss])


def test_op_without_gradient_maker_and_should_not():
    net = core.Net("nomaker")
    y = net.EnsureCPUOutput("x", "y")
    with pytest.raises(Exception, match=r"Exception when creating gradient for "
                                        r"\[EnsureCPUOutput\]:Gradient maker for operator "
                                        r"EnsureCPUOutput not implemented"):
        net.AddGradientOperators([net.AveragedLoss(y, "loss")])
    net2 = core.Net("shouldnot")
    u, _ = net2.Unique("i", ["u", "r"])
    with pytest.raises(Exception, match="One should not call gradient for operator Unique"):
        net2.AddGradientOperators([u])


def test_no_gradient_ops_are_skipped():
    net = core.Net("skip")
    it = net.Iter("it", "it")
    lr = net.LearningRate(it, "lr", base_lr=0.1, policy="fixed")
    loss = net.AveragedLoss(net.Mul(["x", lr], "xl", broadcast=1), "loss")
    grads = net.AddGradientOperators([loss])
    assert "it" not in grads and "x" in grads


def test_python_registered_gradient_is_a_fallback():
    @core.GradientRegistry.RegisterGradient("EnsureCPUOutput")
    def _ensure_grad(op, g_output):
        return (core.CreateOperator("Copy", [g_output[0]], [op.input[0] + "_grad"]),
                [op.input[0] + "_grad"])
    try:
        net = core.Net("pyreg")
        y = net.EnsureCPUOutput("x", "y")
        grads = net.AddGradientOperators([net.AveragedLoss(y, "loss")])
        assert str(grads["x"]) == "x_grad"
        assert net.Proto().op[-1].type == "Copy"
    finally:
        core.GradientRegistry.gradient_registry_.pop("EnsureCPUOutput")


def test_model_helper_gradients_and_twice():
    from graphnet import brew
    model = model_helper.ModelHelper(name="mhgrad")
    fc = brew.fc(model, "data", "fc", dim_in=3, dim_out=2)
    loss = model.AveragedLoss(fc, "loss")
    grads = model.AddGradientOperators([loss])
    assert {str(p): str(g) for p, g in model.param_to_grad.items()} == {
        "fc_w": "fc_w_grad", "fc_b": "fc_b_grad"}
    assert grads is model.grad_map
    with pytest.raises(RuntimeError, match="You cannot run AddGradientOperators twice."):
        model.AddGradientOperators([loss])
    dup = model_helper.ModelHelper(name="dup")
    dup.params.extend([core.BlobReference("p"), core.BlobReference("p")])
    with pytest.raises(AssertionError, match=r"Duplicate params: \['p'\]"):
        dup.AddGradientOperators([loss])


def test_ys_must_be_list_or_dict():
    with pytest.raises(TypeError, match="ys should either be a list or a dict."):
        core.Net("bad_ys").AddGradientOperators("loss")
