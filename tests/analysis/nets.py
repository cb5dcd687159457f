"""Nets the analysis tests share: a small MLP and DLRM's forward and training nets
from examples/ (4 emulated GPUs), each with the blobs a run feeds.

A net comes as a Case: the NetDef, the fed blobs (name -> (array, Device)) and the
blobs a caller fetches afterwards. Feeds are captured by running the example's own
feed code in the current workspace, which is then reset.
"""

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples"))
import dlrm_parallel_forward  # noqa: E402
import dlrm_train  # noqa: E402

from graphnet import core, workspace  # noqa: E402
from graphnet.devices import Device  # noqa: E402
from graphnet.proto import caffe2_pb2  # noqa: E402


class Case(object):
    def __init__(self, netdef, feeds, fetch, init_netdef=None, batches=None):
        self.netdef, self.feeds, self.fetch = netdef, feeds, fetch
        self.init_netdef, self.batches = init_netdef, batches or []

    @property
    def shapes(self):
        return {name: (value.shape, value.dtype) for name, (value, _) in
                self.feeds.items()}

    @property
    def devices(self):
        return {name: device for name, (_, device) in self.feeds.items()}

    def observed_shapes(self):
        """Shape and dtype of every blob after one run (what a profiling run sees)."""
        run(self, self.netdef, iterations=1)
        shapes = {name: (workspace.FetchBlob(name).shape, workspace.FetchBlob(name).dtype)
                  for name in workspace.Blobs()}
        workspace.ResetWorkspace()
        return shapes


def run(case, netdef, net_type="simple", iterations=None):
    """Feed, run `netdef` once per batch (or once), and return per run the fetched
    blobs, then the final values of the external inputs (the trained parameters)."""
    workspace.ResetWorkspace()
    feed(case.feeds)
    copy = caffe2_pb2.NetDef()
    copy.CopyFrom(netdef)
    copy.type = net_type
    netdef = copy
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DLRM's seeds are read across devices
        workspace.CreateNet(netdef)
        for batch in (case.batches or [{}])[:iterations]:
            feed(batch)
            workspace.RunNet(netdef.name)
            runs.append({name: workspace.FetchBlob(name) for name in case.fetch})
    final = {name: workspace.FetchBlob(name) for name in netdef.external_input}
    return runs, final


def _option(device):
    return core.DeviceOption(device.type, device.id)


def feed(feeds):
    for name, (value, device) in feeds.items():
        workspace.FeedBlob(name, value, device_option=_option(device))


def _snapshot():
    feeds = {name: (workspace.FetchBlob(name), workspace.BlobDevice(name))
             for name in workspace.Blobs()}
    workspace.ResetWorkspace()
    return feeds


def mlp(batch=4, sizes=(5, 8, 8, 8, 3), device=Device(1, 2)):
    """FC + Relu layers then Softmax on one emulated GPU; not in place."""
    net = core.Net("mlp")
    rng = np.random.default_rng(0)
    feeds = {"x": (rng.standard_normal((batch, sizes[0])).astype(np.float32), device)}
    current = "x"
    with core.DeviceScope(_option(device)):
        for i in range(1, len(sizes)):
            w, b = "w%d" % i, "b%d" % i
            feeds[w] = (rng.standard_normal((sizes[i], sizes[i - 1])).astype(np.float32),
                        device)
            feeds[b] = (rng.standard_normal(sizes[i]).astype(np.float32), device)
            y = net.FC([current, w, b], "fc%d" % i)
            current = net.Relu(y, "relu%d" % i) if i < len(sizes) - 1 else y
        net.Softmax(current, "prob")
    netdef = net.Proto()
    netdef.external_output.append("prob")
    return Case(netdef, feeds, ["prob"])


def dlrm_forward(ndevices=4, batch=8):
    """examples/dlrm_parallel_forward.py's net on `ndevices` emulated GPUs."""
    cfg = dlrm_parallel_forward.Config(batch=batch)
    model = dlrm_parallel_forward.ParallelDLRM(cfg, ndevices)
    netdef = model.build().Proto()
    workspace.ResetWorkspace()
    model.feed(dlrm_parallel_forward.make_weights(cfg),
               *dlrm_parallel_forward.make_batch(cfg))
    fetch = [model.prefix(d) + "prob_click" for d in range(ndevices)]
    return Case(netdef, _snapshot(), fetch)


def dlrm_training(ndevices=4, batch=16, num_batches=2):
    """examples/dlrm_train.py's training net (forward, backward, NCCLAllreduce, SGD)
    with its parameter-init net and `num_batches` batches of (dense, sparse, target)
    feeds."""
    cfg = dlrm_train.Config(batch=batch)
    data = dlrm_train.make_data(cfg, num_batches=num_batches)
    workspace.ResetWorkspace()
    model = dlrm_train.TrainableDLRM(cfg, ndevices, device_option=dlrm_train.gpu(0))
    model.build()
    model.sgd(model.loss(), learning_rate=0.1)
    model.feed(dlrm_train.make_weights(cfg), data[0][0], data[0][1])
    model.feed_targets(data[0][2])
    workspace.RunNetOnce(model.model.param_init_net)
    feeds = _snapshot()
    batches = []
    for dense, sparse, targets in data:
        model.feed_batch(dense, sparse)
        model.feed_targets(targets)
        batches.append(_snapshot())  # only this batch's blobs
    fetch = [model.prefix(d) + "loss" for d in range(ndevices)]
    return Case(model.model.net.Proto(), feeds, fetch,
                init_netdef=model.model.param_init_net.Proto(), batches=batches)
