"""Net-building scenarios written against the Caffe2 API (`caffe2.python`).

The same code runs under real Caffe2 (make_goldens.py, in the reference
environment) and under graphnet (tests/test_goldens.py, through
graphnet.compat). Each scenario returns {key: NetDef | list | np.ndarray};
NetDefs are compared as messages and as bytes, lists and arrays by value.
Keep this file Python 3.8 compatible (the reference environment's Python).
"""

import numpy as np

from caffe2.proto import caffe2_pb2
from caffe2.python import brew, core, model_helper, scope, workspace

SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def _gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


@scenario
def toy_printed_netdef():
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        net = core.Net("toy")
        y = net.FC(["x", "w", "b"], "y")
        net.Scale(y, "y2", scale=2.0)
    net.Proto().type = "async_scheduling"
    arg = net.Proto().arg.add()
    arg.name = "input_shape_info"
    t = arg.tensors.add()
    t.dims.extend([16, 13])
    t.data_type = caffe2_pb2.TensorProto.FLOAT
    t.name = "x"
    return {"net": net.Proto()}


@scenario
def auto_naming():
    net = core.Net("test")
    r1 = net.Relu("x")
    r2 = net.Relu(r1)
    c = net.Concat([r1, r2], 2, axis=1)
    s = net.Split(c[0], 3, axis=1)
    with core.NameScope("scope"):
        r3 = net.Relu("z")
        r4 = net.Sigmoid(r3, "named")
        with core.NameScope("inner"):
            r5 = net.Tanh(r4)
    t = r5.Relu()
    u = t.Scale([], scale=0.5)
    net.AddExternalOutput(u)
    blob = net.NextBlob("tmp")
    blob2 = net.NextBlob("tmp")
    with core.NameScope("ns"):
        blob3 = net.NextScopedBlob("tmp")
    names = [str(b) for b in [r1, r2, c[0], c[1], s[0], s[1], s[2], r3, r4, r5, t, u,
                                blob, blob2, blob3, net.NextName(), net.NextName(),
                                net.NextName("Relu")]]
    refs = [repr(r1), r4.GetNameScope(), r4.GetUnscopedName(), str(type(c).__name__)]
    return {"net": net.Proto(), "names": names, "refs": refs,
            "external_inputs": [str(b) for b in net.external_inputs],
            "external_outputs": [str(b) for b in net.external_outputs]}


@scenario
def net_copies_and_dedup():
    base = core.Net("dedup")
    base.Relu("a", "b")
    base.Relu("b", "dedup_blob_3")
    again = core.Net("dedup")
    from_proto = core.Net(base.Proto())
    auto = from_proto.NextName()
    clone = base.Clone("dedup_clone", blob_remap={"a": "a2", "b": "b2"})
    partial = base.Clone("dedup_part", op_id_mask=[1], update_external_list=True)
    return {"names": [base.Name(), again.Name(), from_proto.Name(), auto, clone.Name(),
                      partial.Name(), str(base)],
            "clone": clone.Proto(), "partial": partial.Proto(),
            "from_proto": from_proto.Proto()}


@scenario
def argument_encoding():
    nested = core.Net("nested")
    nested.Relu("p", "q")
    tensor = caffe2_pb2.TensorProto()
    tensor.dims.extend([2])
    tensor.float_data.extend([1.5, -2.0])
    op = core.CreateOperator(
        "Relu", ["in"], ["out"], name="named_op", engine="CUDNN",
        control_input=["ctl"], device_option=_gpu(3), random_seed=7,
        i=3, f=0.01, b=True, s="text", by=b"bytes\x00\xff", neg=-5,
        ints=[1, 2, 3], floats=[0.5, 1e-7, 0.9999999], strs=["a", "b"],
        np_f32=np.array([1.0, 2.5], dtype=np.float32),
        np_i64=np.array([[4, 5]], dtype=np.int64), np_scalar=np.float32(3.25),
        np_int=np.int64(9), net=nested.Proto(), nets=[nested.Proto(), nested.Proto()],
        tensor=tensor, empty=[], none_is_skipped=None, big=2 ** 40,
        bools=[True, False])
    op2 = core.CreateOperator("Relu", "x", "y")
    with core.DeviceScope(_gpu(1)):
        op3 = core.CreateOperator("Relu", "x", "y", random_seed=11)
    return {"op": _wrap([op, op2, op3])}


@scenario
def scopes():
    net = core.Net("scopes")
    records = []
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU), node_name="node1"):
        net.Relu("a", "b")
        with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 2,
                                                extra_info=["z", "k"])):
            net.Relu("b", "c")
            with core.DeviceScope(core.DeviceOption(workspace.GpuDeviceType, 1,
                                                    extra_info=["m"])):
                net.Relu("c", "d")
                records.append(str(scope.CurrentDeviceScope()))
    with core.NameScope("a"):
        with core.NameScope("b"):
            records.append(scope.CurrentNameScope())
            with core.NameScope(None):
                records.append(scope.CurrentNameScope())
            with core.NameScope("c", reset=True):
                records.append(scope.CurrentNameScope())
                net.Relu("e", "f")
    records.append(scope.CurrentNameScope())
    records.append(str(scope.CurrentDeviceScope()))
    return {"net": net.Proto(), "records": records}


@scenario
def model_helper_and_brew():
    model = model_helper.ModelHelper(name="mh")
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        fc1 = brew.fc(model, "data", "fc1", dim_in=3, dim_out=8)
        r1 = brew.relu(model, fc1, "r1")
        fc2 = brew.fc(model, r1, "fc2", dim_in=8, dim_out=2,
                      weight_init=("GaussianFill", {"std": 0.1}),
                      bias_init=("ConstantFill", {"value": 0.5}))
        sm = brew.softmax(model, fc2, "sm")
        it = brew.iter(model, "iter")
        model.LearningRate(it, "lr", base_lr=-0.1, policy="step", stepsize=10,
                           gamma=0.5)
        model.Copy(sm, "sm_copy")
        model.Scale(sm, "sm_scaled", scale=3.0)
        with brew.arg_scope([brew.fc], axis=1):
            brew.fc(model, r1, "fc3", dim_in=8, dim_out=4)
        with core.NameScope("tower"):
            brew.fc(model, "data", "fc4", dim_in=3, dim_out=5)
        brew.concat(model, [fc2, "other"], "cat", axis=1)
        brew.sum(model, [fc2, fc2], "fsum")
    no_init = model_helper.ModelHelper(name="noinit", init_params=False)
    brew.fc(no_init, "x", "out", dim_in=2, dim_out=3)
    return {"net": model.net.Proto(), "init": model.param_init_net.Proto(),
            "params": [str(p) for p in model.params],
            "weights": [str(p) for p in model.weights],
            "biases": [str(p) for p in model.biases],
            "tower_params": [str(p) for p in model.GetParams("tower")],
            "noinit_net": no_init.net.Proto(), "noinit_init": no_init.param_init_net.Proto(),
            "noinit_params": [str(p) for p in no_init.params]}


@scenario
def const_and_misc_net_api():
    net = core.Net("misc")
    net.Const(np.array([[1, 2], [3, 4]], dtype=np.int32), "ci")
    net.Const(np.array([1, 2], dtype=np.int64), "cl")
    net.Const(np.array([1.5, 2.5], dtype=np.float32), "cf")
    net.Const(True, "cb")
    net.AddArgument("first_iter_only_one_worker", 1)
    net.AddArgument("note", "hello")
    gpu = core.Net("gpu")
    gpu.Relu("x", "y")
    gpu.RunAllOnGPU(gpu_id=1, use_cudnn=True)
    seeded = core.Net("seeded")
    seeded.Relu("x", "y")
    seeded.Relu("y", "z")
    seeded.set_rand_seed(seed=5)
    return {"net": net.Proto(), "gpu": gpu.Proto(), "seeded": seeded.Proto()}


def _wrap(ops):
    net = caffe2_pb2.NetDef()
    net.name = "ops"
    net.op.extend(ops)
    return net


def _grad_map(grads):
    """A gradient map as sorted [input, gradient] pairs (slices as [indices, values])."""
    out = []
    for key, value in grads.items():
        if isinstance(value, core.GradientSlice):
            out.append([str(key), [str(value.indices), str(value.values)]])
        else:
            out.append([str(key), str(value)])
    return out


@scenario
def gradients_mlp():
    model = model_helper.ModelHelper(name="gmlp")
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        fc1 = brew.fc(model, "data", "fc1", dim_in=4, dim_out=6)
        r1 = brew.relu(model, fc1, "r1")
        fc2 = brew.fc(model, r1, "fc2", dim_in=6, dim_out=2)
        both = model.net.Sum([fc2, fc2], "twice")
        sm = model.net.Softmax(both, "sm")
        sig = model.net.Sigmoid(fc2, "sig")
        dist = model.net.SquaredL2Distance([sig, "label"], "dist")
        loss = model.net.AveragedLoss(dist, "loss")
        xent = model.net.LabelCrossEntropy([sm, "cls"], "xent")
        loss2 = model.net.AveragedLoss(xent, "loss2")
    grads = model.AddGradientOperators([loss, loss2])
    return {"net": model.net.Proto(), "grads": _grad_map(grads),
            "param_to_grad": sorted([str(k), str(v)] for k, v in model.param_to_grad.items())}


@scenario
def gradients_sparse_and_seeds():
    net = core.Net("gsparse")
    with core.DeviceScope(_gpu(1)):
        emb = net.SparseLengthsSum(["table", "idx", "len"], "emb")
        gat = net.Gather(["table", "idx2"], "gat")
        flat = net.Flatten(gat, "flat", axis=1)
        loss = net.AveragedLoss(net.Concat([emb, flat], 2, axis=1)[0], "loss")
    with core.DeviceScope(_gpu(0)):
        grads = net.AddGradientOperators({loss: None})
    net2 = core.Net("gexplicit")
    y = net2.Scale("x", "y", scale=3.0)
    grads2 = net2.AddGradientOperators({y: "my_grad"})
    return {"net": net.Proto(), "grads": _grad_map(grads), "net2": net2.Proto(),
            "grads2": _grad_map(grads2)}


@scenario
def gradient_errors():
    messages = []
    inplace = core.Net("ginplace")
    r = inplace.Relu("x", "r")
    inplace.Relu(r, r)
    inplace.Scale(r, "s", scale=2.0)
    inplace.Relu("s", "x2")
    inplace.Scale(r, r, scale=1.0)  # overwrites r after FC-like readers
    try:
        core.Net("ginplace_b")  # keep net naming history identical on both sides
        inplace.AddGradientOperators(["x2"])
        messages.append("no error")
    except Exception as exc:
        messages.append(str(exc).split("\n")[0])
    mixed = core.Net("gmixed")
    g = mixed.Gather(["table", "idx"], "g")
    f = mixed.Scale("table", "f", scale=1.0)
    loss = mixed.Sum([mixed.Flatten(g, "gf"), mixed.Flatten(f, "ff")], "loss")
    try:
        mixed.AddGradientOperators([loss])
        messages.append("no error")
    except Exception as exc:
        messages.append(str(exc).split("\n")[0])
    nograd = core.Net("gnograd")
    u = nograd.Unique("idx", ["u", "rm"])
    try:
        nograd.AddGradientOperators([u[0]])
        messages.append("no error")
    except Exception as exc:
        # Caffe2 prefixes its C++ enforce location; compare the sentence itself.
        text = str(exc)
        wanted = "One should not call gradient for operator Unique."
        messages.append(wanted if wanted in text else text)
    return {"messages": messages}


def _dlrm_nets(ndevices):
    import os
    import sys
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import dlrm_train
    cfg = dlrm_train.Config(batch=8)
    option = core.DeviceOption(caffe2_pb2.CPU) if ndevices == 0 else _gpu(0)
    model = dlrm_train.TrainableDLRM(cfg, max(ndevices, 1), device_option=option)
    model.build()
    losses = model.loss()
    grads = model.sgd(losses, 0.1)
    return {"net": model.model.net.Proto(), "init": model.model.param_init_net.Proto(),
            "grads": _grad_map(grads)}


@scenario
def dlrm_training_net_1device():
    return _dlrm_nets(0)


@scenario
def dlrm_training_net_2devices():
    return _dlrm_nets(2)


@scenario
def dlrm_training_net_4devices():
    return _dlrm_nets(4)


def _examples():
    import os
    import sys
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)


@scenario
def dlrm_forward_outputs():
    """Run the CPU DLRM forward net with fixed weights and batch; outputs compared."""
    _examples()
    import dlrm_parallel_forward as fwd
    cfg = fwd.Config(batch=8)
    weights, batch = fwd.make_weights(cfg), fwd.make_batch(cfg)
    workspace.ResetWorkspace()
    model = fwd.ParallelDLRM(cfg, 1, device_option=core.DeviceOption(caffe2_pb2.CPU))
    net = model.build()
    model.feed(weights, *batch)
    workspace.RunNetOnce(net)
    out = {"prob_click": workspace.FetchBlob("prob_click"),
           "interaction": workspace.FetchBlob("interaction"),
           "emb_z": workspace.FetchBlob("emb:::sls1_z")}
    workspace.ResetWorkspace()
    return out


@scenario
def dlrm_training_losses():
    """Five SGD steps of the CPU DLRM training example: the loss curve."""
    _examples()
    import dlrm_train
    cfg = dlrm_train.Config(batch=8)
    data = dlrm_train.make_data(cfg, num_batches=3)
    losses = dlrm_train.train(cfg, 0, data, 5, learning_rate=0.1, show=False)
    table = workspace.FetchBlob("emb:::sls0_w")
    weight = workspace.FetchBlob("top:::fc1_w")
    workspace.ResetWorkspace()
    return {"losses": np.array(losses, dtype=np.float64), "table0": table,
            "top_fc1_w": weight}
