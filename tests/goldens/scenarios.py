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


# --- cross-device copy injection (core.InjectCrossDeviceCopies) ----------------------

_DEVICE_TABLE_OPS = (
    "Abs:1:1 AbsGradient:2:1 Accuracy:2:1 Adagrad:4:2 Adam:6:3 Add:2:1 AddGradient:3:2 "
    "AveragedLoss:1:1 AveragedLossGradient:2:1 BatchGather:2:1 BatchGatherGradient:3:1 "
    "BatchMatMul:2:1 Clip:1:1 ClipGradient:2:1 Concat:1:2 Concat:3:2 ConstantFill:0:1 "
    "Copy:1:1 CopyCPUToGPU:1:1 CopyFromCPUInput:1:1 CopyGPUToCPU:1:1 CopyOnDeviceLike:2:1 "
    "CrossEntropy:2:1 CrossEntropyGradient:3:1 Div:2:1 DivGradient:3:2 Dropout:1:1 "
    "DropoutGrad:1:1 EnsureCPUOutput:1:1 Exp:1:1 ExpandDims:1:1 FC:3:1 FCGradient:3:2 "
    "FCTransposed:3:1 FCTransposedGradient:3:2 Flatten:1:1 FlattenToVec:1:1 Gather:2:1 "
    "GaussianFill:0:1 GivenTensorBoolFill:0:1 GivenTensorByteStringToUInt8Fill:0:1 "
    "GivenTensorDoubleFill:0:1 GivenTensorFill:0:1 GivenTensorInt16Fill:0:1 "
    "GivenTensorInt64Fill:0:1 GivenTensorIntFill:0:1 GivenTensorStringFill:0:1 Iter:0:1 "
    "Iter:1:1 LabelCrossEntropy:2:1 LabelCrossEntropyGradient:3:1 LearningRate:1:1 "
    "Log:1:1 MSRAFill:0:1 MakeTwoClass:1:1 MakeTwoClassGradient:1:1 MatMul:2:1 Max:1:1 "
    "MaxGradient:3:1 Mean:1:1 MeanGradient:1:1 Min:1:1 MinGradient:3:1 MomentumSGD:3:2 "
    "MomentumSGDUpdate:4:3 Mul:2:1 MulGradient:3:2 NCCLAllGather:1:1 NCCLAllGather:3:3 "
    "NCCLAllreduce:1:1 NCCLAllreduce:1:2 "
    "NCCLAllreduce:3:1 NCCLAllreduce:3:2 NCCLBroadcast:1:1 NCCLBroadcast:1:2 "
    "NCCLBroadcast:3:1 NCCLBroadcast:3:2 NCCLReduce:1:1 NCCLReduce:3:1 NCCLReduceScatter:1:1 "
    "NCCLReduceScatter:3:3 Negative:1:1 "
    "Pow:1:1 Relu:1:1 ReluGradient:2:1 Reshape:1:2 Reshape:2:2 ResizeLike:2:1 "
    "RowWiseSparseAdagrad:5:2 RowWiseSparseAdam:7:3 Scale:1:1 ScatterWeightedSum:3:1 "
    "Sigmoid:1:1 SigmoidCrossEntropyWithLogits:2:1 "
    "SigmoidCrossEntropyWithLogitsGradient:3:1 SigmoidGradient:2:1 Softmax:1:1 "
    "SoftmaxGradient:2:1 SoftmaxWithLoss:2:1 SoftmaxWithLossGradient:0:1 "
    "SparseAdagrad:5:2 SparseAdam:7:3 SparseLengthsIndicesInGradientMeanGradient:3:1 "
    "SparseLengthsIndicesInGradientSumGradient:3:1 "
    "SparseLengthsIndicesInGradientWeightedSumGradient:4:1 "
    "SparseLengthsIndicesInGradientWeightedSumWithMainInputGradient:5:2 "
    "SparseLengthsMean:3:1 SparseLengthsMeanGradient:2:1 SparseLengthsSum:3:1 "
    "SparseLengthsSumGradient:2:1 SparseLengthsWeightedSum:4:1 "
    "SparseLengthsWeightedSumGradient:3:1 SparseMomentumSGDUpdate:5:3 SparseToDense:2:1 "
    "Split:1:1 Split:1:2 Split:2:1 Split:2:2 Sqr:1:1 Sqrt:1:1 SquaredL2Distance:2:1 "
    "SquaredL2DistanceGradient:3:2 Squeeze:1:1 Sub:2:1 SubGradient:3:2 Sum:1:1 "
    "SumReduceLike:2:1 Tanh:1:1 TanhGradient:2:1 Transpose:1:1 UniformFill:0:1 "
    "UniformIntFill:0:1 Unique:1:1 UnsortedSegmentMean:2:1 "
    "UnsortedSegmentMeanGradient:2:1 UnsortedSegmentSum:2:1 "
    "UnsortedSegmentSumGradient:2:1 WeightedSigmoidCrossEntropyWithLogits:3:1 "
    "WeightedSigmoidCrossEntropyWithLogitsGradient:4:1 WeightedSum:2:1 "
    "WeightedSumGradient:3:1 XavierFill:0:1 Free:2:2 NotAnOp:2:1 "
)


def _device_text(option):
    return str(option).replace("\n", " ").strip()


@scenario
def op_blob_devices():
    """core.InferOpBlobDevices for every op graphnet knows (op type:inputs:outputs),
    on a GPU with extra fields, on a CPU with an id, and without a device option."""
    table = []
    for entry in "".join(_DEVICE_TABLE_OPS).split():
        op_type, n_in, n_out = entry.split(":")
        for variant in ("gpu", "cpu", "none"):
            op = caffe2_pb2.OperatorDef()
            op.type = op_type
            op.input.extend(["i%d" % k for k in range(int(n_in))])
            op.output.extend(["o%d" % k for k in range(int(n_out))])
            if variant == "gpu":
                op.device_option.CopyFrom(_gpu(2))
                op.device_option.random_seed = 7
                op.device_option.node_name = "node"
            elif variant == "cpu":
                op.device_option.device_type = caffe2_pb2.CPU
                op.device_option.device_id = 3
            try:
                ins, outs = core.InferOpBlobDevices(op)
                found = [[_device_text(d) for d in ins], [_device_text(d) for d in outs]]
            except Exception:
                found = "error"
            table.append([entry, variant, found])
    return {"table": table}


def _b2d(blob_to_device):
    return sorted([str(k), _device_text(v)] for k, v in blob_to_device.items())


@scenario
def cross_device_copies():
    cpu = core.DeviceOption(caffe2_pb2.CPU)
    net = core.Net("xdev")
    with core.DeviceScope(cpu):
        net.Relu("x", "x_relu")
        it = net.Iter("iter", "iter")
    with core.DeviceScope(_gpu(0)):
        fc0 = net.FC(["x_relu", "w", "b"], "fc0")            # CPU -> GPU 0 copies
        net.LearningRate(it, "lr", base_lr=0.1, policy="fixed")
        net.Relu("x_relu", "x_relu2")                         # reuses x_relu_gpu_0
    with core.DeviceScope(_gpu(1)):
        r1 = net.Relu(fc0, "r1")                              # GPU 0 -> GPU 1 Copy
        s1 = net.Sum([r1, fc0], "s1")                         # reuses fc0_gpu_1
        net.Relu(fc0, fc0)                                    # in-place on the copy
        cat, info = net.Concat([s1, r1], ["cat", "split_info"], axis=1)
        net.Split([cat, info], ["p0", "p1"], axis=1)          # split_info stays on CPU
    with core.DeviceScope(cpu):
        net.Scale(s1, "out", scale=2.0)                       # GPU 1 -> CPU
        net.Sum(["lr", "p0"], "mixed")
    with core.DeviceScope(_gpu(0)):
        net.Add(["out", "mixed"], "back")                     # CPU -> GPU 0 again
    with core.DeviceScope(_gpu(2)):
        net.Reshape(["r1"], ["r1_flat", "r1_old"], shape=[-1])
        net.Relu("r1_old", "r1_old_relu")
    new_net, blob_to_device = core.InjectCrossDeviceCopies(net)

    # A net-level device option is where unplaced external inputs live.
    gnet = core.Net("xdev_netopt")
    gnet.Proto().device_option.CopyFrom(_gpu(1))
    with core.DeviceScope(cpu):
        gnet.Relu("g", "g_cpu_relu")
    with core.NameScope("tower"):
        with core.DeviceScope(_gpu(3)):
            gnet.Relu("g", "g3")
    gnew, gb2d = core.InjectCrossDeviceCopies(gnet)

    # Placeholder ops keep every blob on their device; outputs known elsewhere
    # get renamed to <blob>_cpu (in the original op, as Caffe2 did).
    pnet = core.Net("xdev_placeholder")
    with core.DeviceScope(_gpu(0)):
        pnet.Relu("a", "h")
    with core.DeviceScope(cpu):
        pnet.Scale("h", "h", scale=1.0)
        pnet.Sigmoid("h", "k")
    pnew, pb2d = core.InjectCrossDeviceCopies(pnet, placeHolderOps=["Scale"])
    return {"net": new_net.Proto(), "blob_to_device": _b2d(blob_to_device),
            "names": [new_net.Name(), gnew.Name(), pnew.Name()],
            "gnet": gnew.Proto(), "g_blob_to_device": _b2d(gb2d),
            "pnet": pnew.Proto(), "p_original": pnet.Proto(), "p_blob_to_device": _b2d(pb2d)}


@scenario
def cross_device_among_nets():
    cpu = core.DeviceOption(caffe2_pb2.CPU)
    init = core.Net("xinit")
    with core.DeviceScope(cpu):
        init.ConstantFill([], "w", shape=[4, 3], value=0.5)
        init.ConstantFill([], "b", shape=[4], value=0.0)
    with core.DeviceScope(_gpu(0)):
        init.Scale("w", "w_scaled", scale=2.0)                # copies w to GPU 0
    train = core.Net("xtrain")
    train.AddExternalInput("w", "b", "w_scaled", "data")
    with core.DeviceScope(_gpu(0)):
        fc = train.FC(["data", "w", "b"], "fc")               # reuses w_gpu_0
    with core.DeviceScope(_gpu(1)):
        train.FC([fc, "w_scaled", "b"], "fc2")
    with core.DeviceScope(cpu):
        train.Sum(["w", "b"], "wb")
    new_nets, blob_to_device = core.InjectDeviceCopiesAmongNets(
        [init, train], blob_to_device_init={"data": _gpu(0)})
    only = core.InjectDeviceCopiesAmongNetsWithoutB2D([init, train])
    return {"init": new_nets[0].Proto(), "train": new_nets[1].Proto(),
            "blob_to_device": _b2d(blob_to_device), "train_again": only[1].Proto(),
            "names": [n.Name() for n in new_nets + only]}


@scenario
def cross_device_errors():
    messages = []
    clash = core.Net("xclash")
    with core.DeviceScope(_gpu(0)):
        clash.Relu("x", "y")
    with core.DeviceScope(_gpu(1)):
        clash.Relu("z", "y")                 # y already lives on GPU 0
    later = caffe2_pb2.NetDef()
    later.name = "xlater"
    later.op.extend([core.CreateOperator("Relu", ["p"], ["q"]),
                     core.CreateOperator("Relu", ["s"], ["p"])])   # p made too late
    later.external_input.extend(["s"])
    undefined = core.Net("xundefined")
    undefined.Proto().op.extend([core.CreateOperator("Relu", ["nowhere"], ["r"])])
    for net in (clash, core.Net(later), undefined):
        try:
            core.InjectCrossDeviceCopies(net)
            messages.append("no error")
        except Exception as exc:
            messages.append("%s: %s" % (type(exc).__name__, exc))
    return {"messages": messages}


# --- memonger ------------------------------------------------------------------------

def _mlp_training(model, dims, device):
    with core.DeviceScope(device):
        blob = "data"
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            blob = brew.fc(model, blob, "fc%d" % i, dim_in=d_in, dim_out=d_out)
            if i < len(dims) - 2:
                blob = brew.relu(model, blob, "relu%d" % i)
        softmax = brew.softmax(model, blob, "softmax")
        xent = model.net.LabelCrossEntropy([softmax, "label"], "xent")
        loss = model.net.AveragedLoss(xent, "loss")
    model.AddGradientOperators([loss])
    return loss


@scenario
def memonger_share_grad_blobs():
    from caffe2.python import memonger
    model = model_helper.ModelHelper(name="mg_mlp")
    loss = _mlp_training(model, [6, 8, 8, 8, 3], core.DeviceOption(caffe2_pb2.CPU))
    param_grads = [model.param_to_grad[p] for p in model.params]
    plain = memonger.share_grad_blobs(model.net, [loss], param_grads, namescope="")
    acts = memonger.share_grad_blobs(model.net, [loss], param_grads, namescope="",
                                     share_activations=True,
                                     dont_share_blobs=set(["relu1_grad"]))
    shapes = {}
    for op in model.net.Proto().op:
        for b in list(op.input) + list(op.output):
            shapes[b] = [4, 8 if "relu" in b or "fc1" in b else 3]
    sized = memonger.share_grad_blobs(model.net, [loss], param_grads, namescope="",
                                      blob_shapes=shapes)

    tower = model_helper.ModelHelper(name="mg_tower")
    with core.NameScope("gpu_0"):
        tloss = _mlp_training(tower, [5, 7, 7, 2], _gpu(0))
    tparam_grads = [tower.param_to_grad[p] for p in tower.params]
    towered = memonger.share_grad_blobs(tower.net, [tloss], tparam_grads, "gpu_0")
    return {"net": model.net.Proto(), "plain": plain, "activations": acts,
            "sized": sized, "tower": towered,
            "checks": [memonger.verify_graph_equality(model.net.Proto(), plain),
                       memonger.verify_inplace_blobs(model.net.Proto(), acts)]}


def _inference_net(name):
    model = model_helper.ModelHelper(name=name, init_params=False)
    with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU)):
        fc0 = brew.fc(model, "data", "fc0", dim_in=4, dim_out=6)
        r0 = brew.relu(model, fc0, "r0")
        left = brew.fc(model, r0, "left", dim_in=6, dim_out=6)
        right = brew.fc(model, r0, "right", dim_in=6, dim_out=6)
        both = model.net.Sum([model.net.Relu(left, "left_relu"),
                              model.net.Sigmoid(right, "right_sig")], "both")
        fc2 = brew.fc(model, both, "fc2", dim_in=6, dim_out=6)
        r2 = model.net.Relu(fc2, fc2)
        deep = brew.fc(model, model.net.Tanh(r2, "t2"), "fc3", dim_in=6, dim_out=3)
        out = brew.softmax(model, deep, "prob")
    model.net.AddExternalOutput(out)
    return model


@scenario
def memonger_inference_dag():
    from caffe2.python import memonger
    model = _inference_net("mg_infer")
    optim = memonger.optimize_inference_for_dag(model.net, ["data"])
    scoped = memonger.optimize_inference_for_dag(model.net, ["data"], namescope="inf/")
    fast = memonger.optimize_inference_fast(model.net.Proto(), ["data", "prob"])
    messages = []
    bad = core.Net("mg_bad")
    bad.Relu("data", "h")
    bad.Proto().op.extend([core.CreateOperator("Relu", ["never_made"], ["z"])])
    try:
        memonger.optimize_inference_for_dag(bad, ["data"])
    except AssertionError as exc:
        messages.append(str(exc))
    return {"net": model.net.Proto(), "optim": optim, "scoped": scoped, "fast": fast,
            "messages": messages}


@scenario
def memonger_release_and_estimate():
    from caffe2.python import memonger
    model = _inference_net("mg_release")
    proto = model.net.Proto()
    released = memonger.release_blobs_when_used(proto, set(["r0"]))
    selected = memonger.release_blobs_when_used(
        proto, set(), selector_fun=lambda b: b.startswith("fc"))
    with core.NameScope("ns"):
        with core.DeviceScope(_gpu(1)):
            scoped = memonger.release_blobs_when_used(proto, set())
    shapes, types = {}, {}
    for op in proto.op:
        for b in list(op.input) + list(op.output):
            shapes[b] = [2, 6]
            types[b] = caffe2_pb2.TensorProto.FLOAT
    types["data"] = caffe2_pb2.TensorProto.DOUBLE
    device = core.DeviceOption(caffe2_pb2.CPU)
    total, high, by_op = memonger.estimate_memory_usage(
        [caffe2_pb2.NetDef.FromString(released.SerializeToString())], shapes, types,
        device)
    total0, high0, _ = memonger.estimate_memory_usage(
        [caffe2_pb2.NetDef.FromString(proto.SerializeToString())], shapes, types, device)
    return {"released": released, "selected": selected, "scoped": scoped,
            "estimate": [int(total), int(high), int(total0), int(high0),
                         sorted([k, int(v)] for k, v in by_op.items())]}


@scenario
def memonger_deep_nets():
    """Enough shared blobs that Caffe2's hash map grew several times (its order
    numbers the __m<k>_shared names)."""
    from caffe2.python import memonger
    model = model_helper.ModelHelper(name="mg_deep")
    loss = _mlp_training(model, [4] + [5] * 40 + [3], core.DeviceOption(caffe2_pb2.CPU))
    param_grads = [model.param_to_grad[p] for p in model.params]
    deep = memonger.share_grad_blobs(model.net, [loss], param_grads, namescope="",
                                     share_activations=True)
    net = core.Net("mg_branchy")
    blobs, state = ["data"], 12345
    for k in range(150):
        state = (state * 1103515245 + 12345) % (2 ** 31)
        other = blobs[-1 - state % min(len(blobs), 5)]
        if k % 3 == 0:
            out = net.Sum([blobs[-1], other], "s%d" % k)
        elif k % 3 == 1:
            out = net.Relu(other, "r%d" % k)
        else:
            out = net.Tanh(blobs[-1], "t%d" % k)
        blobs.append(str(out))
    net.AddExternalOutput(core.BlobReference(blobs[-1]))
    dag = memonger.optimize_inference_for_dag(net, ["data"], namescope="b/")
    fast = memonger.optimize_inference_fast(net.Proto(), ["data"])
    return {"deep": deep, "dag": dag, "fast": fast}
