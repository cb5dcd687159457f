"""graphnet.memonger: the optimized nets compute what the original nets compute.

The optimized NetDefs are pinned name for name against real Caffe2 by the
goldens (scenarios memonger_*); these tests run them on graphnet.
"""

import numpy as np
import pytest

from graphnet import brew, core, memonger, model_helper, workspace
from graphnet._libstdcxx import HashOrder, hash_bytes, pop_heap, push_heap
from graphnet._memonger_dag import compute_blob_recycling_for_dag
from graphnet.proto import caffe2_pb2

RNG = np.random.default_rng(0)


def _mlp(name, dims, batch=5):
    model = model_helper.ModelHelper(name=name)
    blob = "data"
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        blob = brew.fc(model, blob, "fc%d" % i, dim_in=d_in, dim_out=d_out)
        if i < len(dims) - 2:
            blob = brew.relu(model, blob, "relu%d" % i)
    softmax = brew.softmax(model, blob, "softmax")
    xent = model.net.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.net.AveragedLoss(xent, "loss")
    model.AddGradientOperators([loss])
    feeds = {"data": RNG.standard_normal((batch, dims[0])).astype(np.float32),
             "label": RNG.integers(0, dims[-1], batch).astype(np.int32)}
    return model, loss, feeds


def _params(init_proto):
    """The parameters an init net makes (random fills: run once, reuse)."""
    ws = workspace.Workspace()
    ws.RunNetOnce(init_proto)
    return {name: ws.FetchBlob(name) for name in ws.Blobs()}


def _run(net_proto, feeds, fetch, device_option=None):
    ws = workspace.Workspace()
    for name, value in feeds.items():
        ws.FeedBlob(name, value, device_option=device_option)
    ws.RunNetOnce(net_proto)
    return {name: ws.FetchBlob(name) for name in fetch}


def _shared_names(proto):
    return {b for op in proto.op for b in list(op.input) + list(op.output)
            if b.endswith("_shared")}


@pytest.mark.parametrize("kwargs", [{}, {"share_activations": True},
                                    {"dont_share_blobs": {"relu1_grad"}}])
def test_share_grad_blobs_keeps_loss_and_gradients(kwargs):
    model, loss, feeds = _mlp("mem_train", [6, 8, 8, 8, 3])
    feeds.update(_params(model.param_init_net))
    param_grads = [model.param_to_grad[p] for p in model.params]
    fetch = ["loss"] + [str(g) for g in param_grads]
    want = _run(model.net.Proto(), feeds, fetch)
    optim = memonger.share_grad_blobs(model.net, [loss], param_grads, "", **kwargs)
    assert _shared_names(optim), "nothing was shared"
    got = _run(optim, feeds, fetch)
    for name in fetch:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the caller installs it, as with Caffe2
    model.net._net = optim
    assert model.net.Proto() is optim


def test_share_grad_blobs_in_a_name_scope_on_a_gpu():
    model = model_helper.ModelHelper(name="mem_tower")
    with core.NameScope("gpu_1"), core.DeviceScope(core.DeviceOption(1, 1)):
        fc = brew.fc(model, "data", "fc", dim_in=3, dim_out=4)
        r = brew.relu(model, fc, "r")
        fc2 = brew.fc(model, r, "fc2", dim_in=4, dim_out=4)
        loss = model.net.AveragedLoss(model.net.Sigmoid(fc2, "sig"), "loss")
        model.AddGradientOperators([loss])
    param_grads = [model.param_to_grad[p] for p in model.params]
    optim = memonger.share_grad_blobs(model.net, [loss], param_grads, "gpu_1")
    assert _shared_names(optim) and all(
        n.startswith("gpu_1/__m") for n in _shared_names(optim))
    feeds = _params(model.param_init_net)
    feeds["gpu_1/data"] = RNG.standard_normal((2, 3)).astype(np.float32)
    fetch = ["gpu_1/loss"] + [str(g) for g in param_grads]
    gpu = core.DeviceOption(1, 1)
    want = _run(model.net.Proto(), feeds, fetch, gpu)
    got = _run(optim, feeds, fetch, gpu)
    for name in fetch:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _inference_model():
    model = model_helper.ModelHelper(name="mem_infer")
    fc0 = brew.fc(model, "data", "fc0", dim_in=4, dim_out=6)
    r0 = brew.relu(model, fc0, "r0")
    left = brew.fc(model, r0, "left", dim_in=6, dim_out=6)
    right = brew.fc(model, r0, "right", dim_in=6, dim_out=6)
    both = model.net.Sum([model.net.Relu(left, "lr"), model.net.Sigmoid(right, "rs")],
                         "both")
    fc2 = brew.fc(model, both, "fc2", dim_in=6, dim_out=6)
    model.net.Relu(fc2, fc2)
    out = brew.softmax(model, brew.fc(model, model.net.Tanh(fc2, "t2"), "fc3",
                                      dim_in=6, dim_out=3), "prob")
    model.net.AddExternalOutput(out)
    return model


@pytest.mark.parametrize("how", ["dag", "fast", "release"])
def test_inference_optimizations_keep_outputs(how):
    model = _inference_model()
    feeds = _params(model.param_init_net)
    feeds["data"] = RNG.standard_normal((3, 4)).astype(np.float32)
    want = _run(model.net.Proto(), feeds, ["prob"])
    if how == "dag":
        optim = memonger.optimize_inference_for_dag(model.net, ["data"])
    elif how == "fast":
        optim = memonger.optimize_inference_fast(model.net.Proto(), ["data", "prob"])
    else:
        optim = memonger.release_blobs_when_used(model.net.Proto(), set())
        assert [op.type for op in optim.op].count("Free") > 3
    if how != "release":
        assert _shared_names(optim)
    ws = workspace.Workspace()
    for name, value in feeds.items():
        ws.FeedBlob(name, value)
    ws.CreateNet(optim)
    for _ in range(2):          # freed/shared buffers are refilled on every run
        ws.RunNet(optim.name)
        np.testing.assert_array_equal(ws.FetchBlob("prob"), want["prob"])
    if how == "release":
        assert isinstance(ws.FetchBlob("r0"), bytes)      # freed after its last use


def test_optimize_inference_for_dag_rejects_bad_nets():
    net = core.Net("mem_bad")
    net.Relu("data", "h")
    net.Proto().op.extend([core.CreateOperator("Relu", ["never_made"], ["z"])])
    with pytest.raises(AssertionError, match="never_made not in external input"):
        memonger.optimize_inference_for_dag(net, ["data"])
    grad = core.Net("mem_grad")
    grad.Relu("data", "h")
    grad.Proto().op[0].is_gradient_op = True
    with pytest.raises(AssertionError, match="inference-only nets"):
        memonger.optimize_inference_for_dag(grad, ["data"])


def test_deep_chain_does_not_recurse():
    """Caffe2's pass was recursive in C++; 3000 chained ops must not hit Python's
    recursion limit."""
    net = caffe2_pb2.NetDef()
    net.name = "chain"
    prev, names = "in", []
    for k in range(3000):
        out = "b%d_grad" % k
        net.op.extend([core.CreateOperator("Relu", [prev], [out])])
        names.append(out)
        prev = out
    optim = compute_blob_recycling_for_dag(net, ["in"], range(3000), set(names), "")
    assert _shared_names(optim) == {"__m0_shared", "__m1_shared"}
    assert memonger.verify_graph_equality(net, optim)


def test_verify_helpers():
    a = core.Net("va")
    a.Relu("x", "y")
    a.Relu("y", "z")
    b = caffe2_pb2.NetDef()
    b.CopyFrom(a.Proto())
    b.op[1].input[0] = "x"                       # now reads the external input
    assert memonger.verify_graph_equality(a.Proto(), a.Proto())
    assert not memonger.verify_graph_equality(a.Proto(), b)
    c = caffe2_pb2.NetDef()
    c.CopyFrom(a.Proto())
    c.op[1].output[0] = "y"                      # in place where it was not
    assert not memonger.verify_inplace_blobs(a.Proto(), c)
    c.op[1].type = "Sigmoid"
    assert not memonger.verify_graph_equality(a.Proto(), c)


def test_estimate_memory_usage_and_statistics():
    net = core.Net("est")
    net.Relu("x", "h")
    net.Relu("h", "y")
    proto = memonger.release_blobs_when_used(net.Proto(), set())
    assert [op.type for op in proto.op] == ["Relu", "Relu", "Free"]
    shapes = {"h": [4, 5], "y": [4, 5]}
    types = {"h": caffe2_pb2.TensorProto.FLOAT, "y": caffe2_pb2.TensorProto.DOUBLE}
    total, high, by_op = memonger.estimate_memory_usage(
        [proto], shapes, types, caffe2_pb2.DeviceOption())
    assert (total, high, dict(by_op)) == (80 + 160, 240, {"Relu": 240})
    workspace.FeedBlob("h", np.zeros((4, 5), np.float32))
    workspace.FeedBlob("y", np.zeros(3, np.float64))
    stats = memonger.compute_statistics([[("h", None), ("y", None)], [("missing", None)]])
    assert stats == memonger.Statistics(baseline_nbytes=104, optimized_nbytes=80)


def test_libstdcxx_hash_and_order_goldens():
    # golden values from g++/libstdc++: std::hash<std::string>
    assert hash_bytes("hello") == 2762169579135187400
    assert hash_bytes("fc1_w_grad_abc") == 8171540784076797558
    # golden from libstdc++: range-for over an unordered_map filled with
    # blob_0 .. blob_70 (operator[] in that order) starts and ends like this
    order = HashOrder()
    for i in range(71):
        order.add("blob_%d" % i)
    keys = list(order)
    assert len(keys) == 71 and keys[-2:] == ["blob_64", "blob_58"]
    heap = []
    for item in [(-1, "b"), (0, "a"), (-2, "z"), (-2, "c")]:
        heap.append(item)
        push_heap(heap)
    popped = []
    while heap:
        pop_heap(heap)
        popped.append(heap.pop())
    assert popped == [(-2, "c"), (-2, "z"), (-1, "b"), (0, "a")]
