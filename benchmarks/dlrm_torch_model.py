"""The PyTorch-eager peer of dlrm_caffe2_model.py: the same DLRM, data and SGD.

EmbeddingBag (sum, sparse gradients) per table, Linear + ReLU MLPs (Sigmoid
last on top), the dot interaction over the lower triangle, MSE loss, plain SGD
(torch.optim.SGD; sparse table updates). Weights and batches come from
dlrm_caffe2_model.make_data, so losses can be compared number for number.

    python benchmarks/dlrm_torch_model.py --config small128 --threads 1

Prints one JSON line, as the Caffe2-API script does.
"""

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlrm_caffe2_model import (config, make_data, run_arguments,  # noqa: E402
                               tril_indices)


class DLRM(torch.nn.Module):
    def __init__(self, cfg, weights):
        super().__init__()
        self.emb = torch.nn.ModuleList()
        for i, rows in enumerate(cfg["rows"]):
            bag = torch.nn.EmbeddingBag(rows, cfg["dim"], mode="sum", sparse=True)
            bag.weight.data = torch.from_numpy(weights["emb_%d" % i].copy())
            self.emb.append(bag)
        self.bot = self._mlp(cfg["bot"], "bot", weights, sigmoid_last=False)
        self.top = self._mlp(cfg["top"], "top", weights, sigmoid_last=True)
        self.register_buffer("tril", torch.from_numpy(tril_indices(len(cfg["rows"]) + 1)))

    @staticmethod
    def _mlp(layers, tag, weights, sigmoid_last):
        mods = []
        for k in range(len(layers) - 1):
            fc = torch.nn.Linear(layers[k], layers[k + 1])
            fc.weight.data = torch.from_numpy(weights["%s_fc%d_w" % (tag, k)].copy())
            fc.bias.data = torch.from_numpy(weights["%s_fc%d_b" % (tag, k)].copy())
            last = k == len(layers) - 2
            mods += [fc, torch.nn.Sigmoid() if (last and sigmoid_last) else torch.nn.ReLU()]
        return torch.nn.Sequential(*mods)

    def forward(self, dense, indices, offsets):
        x = self.bot(dense)
        ly = [bag(ind, off) for bag, ind, off in zip(self.emb, indices, offsets)]
        t = torch.cat([x] + ly, dim=1).view(x.shape[0], -1, x.shape[1])
        z = torch.bmm(t, t.transpose(1, 2)).flatten(1)
        r = torch.cat([x, z[:, self.tril]], dim=1)
        return self.top(r)


def to_torch(batch):
    dense, lengths, indices, target = batch
    offsets = [torch.from_numpy(np.concatenate([[0], np.cumsum(l)[:-1]]).astype(np.int64))
               for l in lengths]
    return (torch.from_numpy(dense), [torch.from_numpy(i) for i in indices], offsets,
            torch.from_numpy(target))


def main(argv=None):
    parser = run_arguments(__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = config(args.config)
    weights, batches = make_data(cfg, args.batches)
    model = DLRM(cfg, weights)
    del weights
    batches = [to_torch(b) for b in batches]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.MSELoss()
    times, losses = [], []
    for it in range(args.warmup + args.iters):
        dense, indices, offsets, target = batches[it % len(batches)]
        start = time.perf_counter()
        if args.inference:
            with torch.no_grad():
                out = model(dense, indices, offsets)
        else:
            out = model(dense, indices, offsets)
            loss = loss_fn(out, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        elapsed = time.perf_counter() - start
        if it >= args.warmup:
            times.append(elapsed)
        if not args.inference:
            losses.append(float(loss.detach()))
    print(json.dumps({"times": times, "losses": losses, "runtime": "pytorch",
                      "checksum": float(out.detach().double().sum()),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
