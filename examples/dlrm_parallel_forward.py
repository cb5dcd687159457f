"""DLRM's model-parallel + data-parallel forward pass, in graphnet's Caffe2 API.

The structure of facebookresearch/dlrm's `create_parallel_forward_ops`,
written anew: embedding tables live on device `i % N` (model parallelism),
the bottom and top MLPs are replicated on every device (data parallelism,
blobs `gpu_d/...`), and a butterfly shuffle moves each table's pooled output
to the device that owns each slice of the batch: per table a `Split` along
the batch on the table's home device, then a `Copy` of every slice to its
destination device. Each device then computes the dot interaction of its
slice (Concat add_axis=1, BatchMatMul trans_b=1, Flatten, BatchGather of the
lower triangle) and its top MLP.

    python examples/dlrm_parallel_forward.py            # N = 1, 2, 4, 8
    python examples/dlrm_parallel_forward.py --devices 4 --print-net
    python examples/dlrm_parallel_forward.py --devices 4 --save-model /tmp/dlrm4

The net runs on N emulated GPUs (numpy); the concatenated output is checked
against the same model built for one device with the same weights.
`--save-model DIR` also writes the N-device model as a Caffe2 model directory
(init_net.pb, predict_net.pb, and inputs.npz with one batch) for `graphnet
inspect / draw / check / run-net`.
"""

import argparse
import os
import sys

import numpy as np

from graphnet import core, model_helper, workspace
from graphnet.proto import caffe2_pb2


class Config(object):
    """DLRM dimensions (dlrm's defaults, a little wider) and batch size."""

    def __init__(self, batch=8, dense_dim=4, emb_dim=2, table_rows=(4, 3, 2, 5),
                 bottom=(4, 3, 2), top=(4, 2, 1), max_bag=3):
        self.batch = batch
        self.dense_dim = dense_dim
        self.emb_dim = emb_dim
        self.table_rows = list(table_rows)
        self.bottom = list(bottom)
        num_features = len(self.table_rows) + 1
        interactions = num_features * (num_features - 1) // 2 + emb_dim
        self.top = [interactions] + list(top)[1:]
        self.max_bag = max_bag
        assert bottom[-1] == emb_dim, "the bottom MLP must end at the embedding size"


def dense_weight_names(cfg):
    """The MLP parameters' unprefixed blob names (make_weights' non-table keys)."""
    return ["%s:::fc%d_%s" % (tag, i, kind) for tag, layers in (("bot", cfg.bottom),
                                                                  ("top", cfg.top))
            for i in range(1, len(layers)) for kind in "wb"]


def make_weights(cfg, seed=0):
    """All parameters, by unprefixed blob name (same values on every device)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for tag, layers in (("bot", cfg.bottom), ("top", cfg.top)):
        for i in range(1, len(layers)):
            n, m = layers[i - 1], layers[i]
            weights["%s:::fc%d_w" % (tag, i)] = rng.normal(
                0, np.sqrt(2 / (m + n)), (m, n)).astype(np.float32)
            weights["%s:::fc%d_b" % (tag, i)] = rng.normal(
                0, np.sqrt(1 / m), m).astype(np.float32)
    for i, rows in enumerate(cfg.table_rows):
        bound = np.sqrt(1 / rows)
        weights["emb:::sls%d_w" % i] = rng.uniform(
            -bound, bound, (rows, cfg.emb_dim)).astype(np.float32)
    return weights


def make_batch(cfg, seed=1, rng=None, min_bag=0):
    """Dense features, per-table (lengths int32, indices int64); bags hold min_bag
    to cfg.max_bag indices. Pass `rng` to draw several batches from one stream."""
    rng = np.random.default_rng(seed) if rng is None else rng
    dense = rng.random((cfg.batch, cfg.dense_dim)).astype(np.float32)
    sparse = []
    for rows in cfg.table_rows:
        lengths = rng.integers(min_bag, cfg.max_bag + 1, cfg.batch).astype(np.int32)
        indices = rng.integers(0, rows, int(lengths.sum())).astype(np.int64)
        sparse.append((lengths, indices))
    return dense, sparse


def tril_indices(num_features):
    """Flat positions of the strictly lower triangle of a (F, F) matrix."""
    return np.array([j + i * num_features for i in range(num_features)
                     for j in range(i)], dtype=np.int64)


def gpu(d):
    return core.DeviceOption(workspace.GpuDeviceType, d)


class ParallelDLRM(object):
    """Builds the forward net for `ndevices` devices (1: no prefixes, one device)."""

    def __init__(self, cfg, ndevices, device_option=None):
        self.cfg = cfg
        self.ndevices = ndevices
        self.model = model_helper.ModelHelper(name="DLRM", init_params=True)
        self.device_option = device_option

    def prefix(self, d):
        return "" if self.ndevices <= 1 else "gpu_%d/" % d

    def replicated(self, build):
        """Call build(prefix) once per device under that device's scope (data
        parallelism; with one device, under the model's device option)."""
        if self.ndevices <= 1:
            with core.DeviceScope(self.device_option):
                return [build("")]
        outs = []
        for d in range(self.ndevices):
            with core.DeviceScope(gpu(d)):
                outs.append(build(self.prefix(d)))
        return outs

    def mlp(self, tag, layers, blob_in, blob_out, sigmoid_last):
        """FC + Relu per layer, emitted layer by layer across devices."""
        net = self.model.net
        current = blob_in
        for i in range(1, len(layers)):
            y = "%s:::fc%d_y" % (tag, i)
            z = blob_out if i == len(layers) - 1 else "%s:::fc%d_z" % (tag, i)
            w, b = "%s:::fc%d_w" % (tag, i), "%s:::fc%d_b" % (tag, i)
            src = current
            self.replicated(lambda p: net.FC([p + src, p + w, p + b], p + y))
            act = net.Sigmoid if (sigmoid_last and i == len(layers) - 1) else net.Relu
            self.replicated(lambda p: act(p + y, p + z))
            current = z
        return current

    def embeddings(self):
        """One SparseLengthsSum per table, on the table's home device."""
        outputs = []
        for i in range(len(self.cfg.table_rows)):
            home = i % max(self.ndevices, 1)
            p = self.prefix(home)
            names = [p + "emb:::sls%d_%s" % (i, s) for s in ("w", "i", "l")]
            option = gpu(home) if self.ndevices > 1 else self.device_option
            with core.DeviceScope(option):
                outputs.append(self.model.net.SparseLengthsSum(
                    names, [p + "emb:::sls%d_z" % i]))
        return outputs

    def butterfly_shuffle(self, emb_outputs):
        """Per table: Split the batch on its home device, Copy each slice to the
        device that owns it. Returns, per device, its slices of every table."""
        per_device = [[] for _ in range(self.ndevices)]
        for i, emb in enumerate(emb_outputs):
            src = i % self.ndevices
            slices = [str(emb) + "_split_%d" % d for d in range(self.ndevices)]
            with core.DeviceScope(gpu(src)):
                self.model.net.Split(emb, slices, axis=0)
            for dst, piece in enumerate(slices):
                target = piece.replace("gpu_%d" % src, "gpu_%d" % dst, 1)
                if target != piece:
                    with core.DeviceScope(gpu(dst)):
                        self.model.Copy(piece, target)
                per_device[dst].append(target)
        return per_device

    def interaction(self, p, dense, sparse):
        """Dot interaction of one device's dense features and table slices."""
        net = self.model.net
        t = p + "interaction"
        cat, _ = net.Concat([dense] + sparse, [t + "_cat_axis0", t + "_info_cat_axis0"],
                            axis=1, add_axis=1)
        z = net.BatchMatMul([cat, cat], t + "_matmul", trans_b=1)
        flat_all = net.Flatten(z, t + "_flatten_all", axis=1)
        flat = net.BatchGather([flat_all, t + "_tril_indices"], t + "_flatten")
        out, _ = net.Concat([dense, flat], [t, t + "_info"], axis=1)
        return out

    def build(self):
        cfg = self.cfg
        emb = self.embeddings()
        self.mlp("bot", cfg.bottom, "dense_in", "dense_out", sigmoid_last=False)
        if self.ndevices <= 1:
            with core.DeviceScope(self.device_option):
                self.interaction("", "dense_out", emb)
        else:
            shuffled = self.butterfly_shuffle(emb)
            for d in range(self.ndevices):
                with core.DeviceScope(gpu(d)):
                    self.interaction(self.prefix(d), self.prefix(d) + "dense_out",
                                     shuffled[d])
        self.mlp("top", cfg.top, "interaction", "prob_click", sigmoid_last=True)
        return self.model.net

    def feed(self, weights, dense, sparse):
        """Parameters and one batch."""
        self.feed_params(weights)
        self.feed_batch(dense, sparse)

    def option(self, d):
        return gpu(d) if self.ndevices > 1 else self.device_option

    def feed_params(self, weights):
        """MLP parameters on every device, each table on its home device."""
        n = max(self.ndevices, 1)
        for d in range(n):
            for name, value in weights.items():
                if not name.startswith("emb:::"):
                    workspace.FeedBlob(self.prefix(d) + name, value,
                                       device_option=self.option(d))
            workspace.FeedBlob(self.prefix(d) + "interaction_tril_indices",
                               tril_indices(len(self.cfg.table_rows) + 1),
                               device_option=self.option(d))
        for i in range(len(self.cfg.table_rows)):
            home = i % n
            workspace.FeedBlob(self.prefix(home) + "emb:::sls%d_w" % i,
                               weights["emb:::sls%d_w" % i], device_option=self.option(home))

    def feed_batch(self, dense, sparse):
        """The batch split evenly across devices; each table's indices and lengths on
        the table's home device."""
        n = max(self.ndevices, 1)
        for d, part in enumerate(np.split(dense, n)):
            workspace.FeedBlob(self.prefix(d) + "dense_in", part,
                               device_option=self.option(d))
        for i, (lengths, indices) in enumerate(sparse):
            home = i % n
            p = self.prefix(home)
            workspace.FeedBlob(p + "emb:::sls%d_l" % i, lengths,
                               device_option=self.option(home))
            workspace.FeedBlob(p + "emb:::sls%d_i" % i, indices,
                               device_option=self.option(home))

    def output(self):
        n = max(self.ndevices, 1)
        return np.concatenate([workspace.FetchBlob(self.prefix(d) + "prob_click")
                               for d in range(n)])


def run(cfg, ndevices, weights, batch, print_net=False):
    """Build, feed and run the N-device net; returns (output, net)."""
    workspace.ResetWorkspace()
    model = ParallelDLRM(cfg, ndevices, device_option=gpu(0) if ndevices == 1 else None)
    net = model.build()
    model.feed(weights, *batch)
    if print_net:
        print(net.Proto())
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    return model.output(), net


_FILLS = {np.dtype(np.float32): "GivenTensorFill",
          np.dtype(np.int32): "GivenTensorIntFill",
          np.dtype(np.int64): "GivenTensorInt64Fill"}


def save_model(directory, cfg, ndevices, weights, batch):
    """Write the `ndevices` model as a Caffe2 model directory: init_net.pb (every
    parameter as a GivenTensor*Fill op on its device), predict_net.pb (external
    outputs: every device's prob_click) and inputs.npz (one batch, by blob name).
    Returns the paths written."""
    workspace.ResetWorkspace()
    model = ParallelDLRM(cfg, ndevices, device_option=gpu(0) if ndevices == 1 else None)
    predict = model.build().Proto()
    predict.name = "dlrm_%dgpu" % ndevices
    predict.external_output.extend(model.prefix(d) + "prob_click"
                                   for d in range(max(ndevices, 1)))
    model.feed_params(weights)
    init = caffe2_pb2.NetDef(name=predict.name + "_init")
    for name in workspace.Blobs():
        value, device = workspace.FetchBlob(name), workspace.BlobDevice(name)
        init.op.extend([core.CreateOperator(
            _FILLS[value.dtype], [], [name], shape=list(value.shape),
            values=value.ravel().tolist(),
            device_option=core.DeviceOption(device.type, device.id))])
    workspace.ResetWorkspace()
    model.feed_batch(*batch)
    inputs = {name: workspace.FetchBlob(name) for name in workspace.Blobs()}
    workspace.ResetWorkspace()
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f) for f in
             ("init_net.pb", "predict_net.pb", "inputs.npz")]
    for path, netdef in zip(paths, (init, predict)):
        with open(path, "wb") as f:
            f.write(netdef.SerializeToString())
    np.savez(paths[2], **inputs)
    return paths


def reference(cfg, weights, batch):
    """The same model built for one device (the CPU) with the same weights."""
    workspace.ResetWorkspace()
    model = ParallelDLRM(cfg, 1, device_option=core.DeviceOption(0))
    net = model.build()
    model.feed(weights, *batch)
    workspace.RunNetOnce(net)
    return model.output()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--print-net", action="store_true",
                        help="print the NetDef of every run (default: the 2-device one)")
    parser.add_argument("--save-model", metavar="DIR",
                        help="write the model of the largest N as a Caffe2 model "
                             "directory: init_net.pb, predict_net.pb, inputs.npz")
    args = parser.parse_args(argv)
    cfg = Config(batch=args.batch)
    weights = make_weights(cfg)
    batch = make_batch(cfg)
    workspace.SetVirtualGpuCount(max(args.devices))
    expected = reference(cfg, weights, batch)
    worst = 0.0
    for n in args.devices:
        if cfg.batch % n:
            print("skip N=%d: batch %d is not divisible by %d" % (n, cfg.batch, n))
            continue
        out, net = run(cfg, n, weights, batch, print_net=args.print_net or n == 2)
        diff = float(np.max(np.abs(out - expected)))
        worst = max(worst, diff)
        print("N=%d virtual GPUs: %d ops, output %s, max |diff| vs 1-device CPU = %.3g"
              % (n, len(net.Proto().op), out.shape, diff))
    if args.save_model:
        n = max(n for n in args.devices if cfg.batch % n == 0)
        for path in save_model(args.save_model, cfg, n, weights, batch):
            print("wrote %s (N=%d)" % (path, n))
    print("max abs difference over all runs: %.3g (%s)" % (
        worst, "OK" if worst < 1e-5 else "FAILED: above 1e-5"))
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
