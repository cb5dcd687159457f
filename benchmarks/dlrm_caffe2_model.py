"""DLRM written against Caffe2's Python API, trained (or run forward) and timed.

One script for two runtimes, unmodified:

    python -m graphnet run benchmarks/dlrm_caffe2_model.py --config small128 ...
    /path/to/caffe2-python benchmarks/dlrm_caffe2_model.py --config small128 ...

The net is dlrm_s_caffe2.py's, op for op: FC + Relu bottom MLP, one
SparseLengthsSum per table, the "dot" interaction (Concat with add_axis,
BatchMatMul trans_b, Flatten, BatchGather of the lower triangle, Concat), FC +
Relu top MLP ending in Sigmoid, MSE loss (SquaredL2Distance, Scale 2,
AveragedLoss), AddGradientOperators, and SGD (WeightedSum on dense weights,
ScatterWeightedSum on tables). Data and weights come from make_data(), which
the PyTorch peer (dlrm_torch_model.py) imports, so every peer sees the same
numbers. Runs on Python 3.8 + numpy 1.19 (the real-Caffe2 environment) and on
current Python/numpy.

Prints one JSON line: per-iteration seconds (warm-up excluded) and losses.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

# name -> (dense features, bottom MLP, table rows, embedding dim, top MLP without its
#          input width, mini-batch, max lookups per bag)
CONFIGS = {
    # dlrm_s_caffe2.py / dlrm_s_pytorch.py defaults
    "tiny": (4, [4, 3, 2], [4, 3, 2], 2, [4, 2, 1], 1, 10),
    # dlrm's test/dlrm_s_test.sh configs 2-4 (mini-batch 2, default arch)
    "dlrm-test": (4, [4, 3, 2], [4, 3, 2], 2, [4, 2, 1], 2, 10),
    # a larger test-style config: 8 tables of 10k rows, batch 32
    "medium": (13, [13, 64, 16], [10000] * 8, 16, [64, 1], 32, 40),
    "small128": (13, [13, 512, 256, 64, 16], [1000000] * 8, 16, [512, 256, 1], 128, 100),
    "small2048": (13, [13, 512, 256, 64, 16], [1000000] * 8, 16, [512, 256, 1], 2048,
                  100),
    # dlrm's bench/dlrm_s_benchmark.sh shape
    "bench2048": (512, [512, 512, 64], [1000000] * 8, 64, [1024, 1024, 1024, 1], 2048,
                  100),
}


def config(name):
    dense, bot, rows, dim, top, batch, lookups = CONFIGS[name]
    num_fea = len(rows) + 1
    interactions = dim + num_fea * (num_fea - 1) // 2
    return dict(name=name, dense=dense, bot=list(bot), rows=list(rows), dim=dim,
                top=[interactions] + list(top), batch=batch, lookups=lookups)


def tril_indices(num_fea):
    """Flattened (i, j) positions with j < i of the (F+1) x (F+1) interaction matrix."""
    return np.array([j + i * num_fea for i in range(num_fea) for j in range(i)],
                    dtype=np.int64)


def make_data(cfg, num_batches, seed=123, fixed_bags=False):
    """Weights (dlrm's init: uniform tables, normal FC) and batches, from RandomState so
    every numpy version draws the same numbers. Bags hold 1 to min(rows, lookups)
    indices (dlrm's random data), or exactly that many with fixed_bags (dlrm's
    --num-indices-per-lookup-fixed): static shapes, which CUDA graphs replay."""
    rng = np.random.RandomState(seed)
    weights = {}
    for i, rows in enumerate(cfg["rows"]):
        bound = np.sqrt(1.0 / rows)
        weights["emb_%d" % i] = rng.uniform(-bound, bound, (rows, cfg["dim"])).astype(
            np.float32)
    for tag, layers in (("bot", cfg["bot"]), ("top", cfg["top"])):
        for k in range(len(layers) - 1):
            m, n = layers[k], layers[k + 1]
            weights["%s_fc%d_w" % (tag, k)] = rng.normal(
                0.0, np.sqrt(2.0 / (m + n)), (n, m)).astype(np.float32)
            weights["%s_fc%d_b" % (tag, k)] = rng.normal(
                0.0, np.sqrt(1.0 / n), n).astype(np.float32)
    batches = []
    b = cfg["batch"]
    for _ in range(num_batches):
        dense = rng.uniform(0.0, 1.0, (b, cfg["dense"])).astype(np.float32)
        lengths, indices = [], []
        for rows in cfg["rows"]:
            top = min(rows, cfg["lookups"])
            length = np.maximum(1, np.round(rng.uniform(0.0, 1.0, b) * top)).astype(
                np.int32)
            if fixed_bags:
                length[:] = top
            lengths.append(length)
            indices.append(rng.randint(0, rows, int(length.sum())).astype(np.int64))
        target = np.round(rng.uniform(0.0, 1.0, (b, 1))).astype(np.float32)
        batches.append((dense, lengths, indices, target))
    return weights, batches


def build(cfg, train, learning_rate=0.01, net_type=None):
    """The Caffe2 model; returns (model, loss blob name or None)."""
    from caffe2.python import brew, model_helper

    model = model_helper.ModelHelper(name="dlrm")
    net = model.net
    if net_type:
        net.Proto().type = net_type

    def mlp(x, tag, layers, sigmoid_last):
        for k in range(len(layers) - 1):
            y = net.FC([x, "%s_fc%d_w" % (tag, k), "%s_fc%d_b" % (tag, k)],
                       "%s_fc%d_y" % (tag, k))
            last = k == len(layers) - 2
            x = (net.Sigmoid if (last and sigmoid_last) else net.Relu)(
                y, "%s_fc%d_z" % (tag, k))
        return x

    x = mlp("dense", "bot", cfg["bot"], False)
    ly = [net.SparseLengthsSum(["emb_%d" % i, "ind_%d" % i, "len_%d" % i], "sls_%d" % i)
          for i in range(len(cfg["rows"]))]
    t, _ = net.Concat([x] + ly, ["int_cat", "int_cat_info"], axis=1, add_axis=1)
    z = net.BatchMatMul([t, t], "int_matmul", trans_b=1)
    zflat_all = net.Flatten(z, "int_flat_all", axis=1)
    zflat = net.BatchGather([zflat_all, "tril_indices"], "int_flat")
    r, _ = net.Concat([x, zflat], ["int_out", "int_out_info"], axis=1)
    prob = mlp(r, "top", cfg["top"], True)
    if not train:
        return model, None
    net.SquaredL2Distance([prob, "target"], "sd")
    net.Scale("sd", "sd2", scale=2.0)
    loss = net.AveragedLoss("sd2", "loss")
    grads = model.AddGradientOperators([loss])
    model.param_init_net.ConstantFill([], "const_one", shape=[1], value=1.0)
    brew.iter(model, "optim_it")
    model.LearningRate("optim_it", "optim_lr", base_lr=-learning_rate, policy="fixed")
    for tag, layers in (("top", cfg["top"]), ("bot", cfg["bot"])):
        for k in range(len(layers) - 1):
            for w in ("%s_fc%d_w" % (tag, k), "%s_fc%d_b" % (tag, k)):
                model.WeightedSum([w, "const_one", grads[w], "optim_lr"], w)
    for i in range(len(cfg["rows"])):
        g = grads["emb_%d" % i]
        model.ScatterWeightedSum(["emb_%d" % i, "const_one", g.indices, g.values,
                                  "optim_lr"], "emb_%d" % i)
    return model, str(loss)


def feed_batch(workspace, batch):
    dense, lengths, indices, target = batch
    workspace.FeedBlob("dense", dense)
    for i, (length, index) in enumerate(zip(lengths, indices)):
        workspace.FeedBlob("len_%d" % i, length)
        workspace.FeedBlob("ind_%d" % i, index)
    workspace.FeedBlob("target", target)


def create(workspace, cfg, weights, batch, train=True, **build_args):
    """A fresh workspace holding the model's weights and `batch`, its init net run and
    its net created; returns (model, loss blob name or None)."""
    workspace.ResetWorkspace()
    model, loss = build(cfg, train=train, **build_args)
    for name, value in sorted(weights.items()):
        workspace.FeedBlob(name, value)
    workspace.FeedBlob("tril_indices", tril_indices(len(cfg["rows"]) + 1))
    feed_batch(workspace, batch)
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    return model, loss


TEST_CONFIG = {"name": "test", "dense": 5, "bot": [5, 12, 4], "rows": [40, 2500, 7],
               "dim": 4, "top": [4 + 6, 8, 1], "batch": 32, "lookups": 30}


def train_losses(workspace, iters, cfg=TEST_CONFIG, num_batches=3, seed=5,
                 learning_rate=0.3):
    """Train `iters` steps cycling `num_batches` batches (the tests' check of kernels and
    executors); returns (losses, model, the weights' names)."""
    weights, batches = make_data(cfg, num_batches, seed=seed)
    model, loss = create(workspace, cfg, weights, batches[0], learning_rate=learning_rate)
    losses = []
    for it in range(iters):
        feed_batch(workspace, batches[it % len(batches)])
        workspace.RunNet(model.net.Name())
        losses.append(float(workspace.FetchBlob(loss)))
    return np.array(losses), model, sorted(weights)


def run_arguments(doc):
    """The command-line options every peer's script takes."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    parser.add_argument("--inference", action="store_true")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batches", type=int, default=4)
    return parser


def main(argv=None):
    parser = run_arguments(__doc__)
    parser.add_argument("--net-type", default="simple")
    args = parser.parse_args(argv)

    from caffe2.python import workspace
    cfg = config(args.config)
    weights, batches = make_data(cfg, args.batches)
    model, loss = create(workspace, cfg, weights, batches[0], train=not args.inference,
                         net_type=args.net_type)
    times, losses = [], []
    for it in range(args.warmup + args.iters):
        batch = batches[it % len(batches)]
        start = time.perf_counter()
        feed_batch(workspace, batch)
        workspace.RunNet(model.net.Proto().name)
        elapsed = time.perf_counter() - start
        if it >= args.warmup:
            times.append(elapsed)
        if loss is not None:
            losses.append(float(workspace.FetchBlob(loss)))
    out = workspace.FetchBlob("top_fc%d_z" % (len(cfg["top"]) - 2))
    print(json.dumps({"times": times, "losses": losses, "ops": len(model.net.Proto().op),
                      "checksum": float(np.asarray(out, np.float64).sum()),
                      "runtime": "graphnet" if "graphnet" in sys.modules else "caffe2",
                      "pid": os.getpid()}))


if __name__ == "__main__":
    main()
