"""The GPU work of one DLRM training step, counted on the CuPy stand-in: host waits
and device operations (kernels, CuPy calls, copies) per step of
benchmarks/dlrm_caffe2_model.py's "medium" model (8 tables, the benchmark's
eager step). An eager GPU step is host-bound, so these counts are its cost; the
ceilings are the counts measured when they were written, and a change that adds
work must raise them on purpose."""

import collections
import os
import sys

import numpy as np
import pytest

from graphnet import compat, core, workspace
from graphnet.executors.cuda import settings

from .standin import gpu

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))
import dlrm_caffe2_model as c2model  # noqa: E402

STEPS = 2
# (checks mode) -> ceiling of device operations per step
CEILINGS = {"sync": 118, "deferred": 118}


def _census(fake, monkeypatch, checks_mode):
    """Per-step counts over STEPS steps after 3 warm-up steps: (operations by op type and
    call, reads back, kernel launches by name, host synchronizations by what waited),
    and the last loss."""
    compat.install()  # (the model is written against caffe2.python)
    settings.set_checks_mode(checks_mode)
    cfg = c2model.config("medium")
    weights, batches = c2model.make_data(cfg, 4)
    ops, reads = collections.Counter(), []
    access, read_back = fake._access, fake._read_back

    def counted_access(stream, reads_, writes, label):
        from graphnet.executors.cuda import checks
        step = checks.current_step()
        ops[(getattr(step, "op_type", "-"), label.split("(")[0])] += 1
        return access(stream, reads_, writes, label)

    def counted_read(arrays, what, stream=None):
        reads.append(what)
        return read_back(arrays, what, stream)

    waits = collections.Counter()

    def counted_wait(what, wait):
        def wrapper(self, *args):
            waits[what] += 1
            return wait(self, *args)
        return wrapper
    with core.DeviceScope(gpu(0)):
        model, loss = c2model.create(workspace, cfg, weights, batches[0])
        name = model.net.Proto().name
        for it in range(3 + STEPS):
            if it == 3:
                monkeypatch.setattr(fake, "_access", counted_access)
                monkeypatch.setattr(fake, "_read_back", counted_read)
                for what, cls in (("stream", fake.cuda.Stream), ("event", fake.cuda.Event)):
                    monkeypatch.setattr(cls, "synchronize",
                                        counted_wait(what, cls.synchronize))
                monkeypatch.setattr(type(fake), "_device_synchronize", counted_wait(
                    "device", type(fake)._device_synchronize))
                del fake.launches[:]
            c2model.feed_batch(workspace, batches[it % len(batches)])
            workspace.RunNet(name)
        value = float(workspace.FetchBlob(loss))
    return ops, reads, collections.Counter(fake.launches), waits, value


@pytest.mark.parametrize("checks_mode", ["sync", "deferred"])
def test_a_dlrm_step_waits_for_the_device_only_to_end_and_counts_its_work(
        fake, monkeypatch, checks_mode):
    ops, reads, launches, waits, loss = _census(fake, monkeypatch, checks_mode)
    per_step = sum(ops.values()) / STEPS
    print("%s: %.1f device operations per step, %d reads back, host waits %s, launches "
          "%s" % (checks_mode, per_step, len(reads), dict(waits), dict(launches)))
    assert np.isfinite(loss) and loss > 0
    # the host waits once per step, at the run's end, and for the loss's FetchBlob: the
    # batch's 18 FeedBlobs do not wait for their copies (the run's stream is ordered
    # after them)
    assert waits == {"stream": STEPS + 1}
    # host waits: none before the run's end (the fed INDICES, LENGTHS and w_0 are
    # checked on the host); deferred mode has no flag to read either (inputs the host
    # knows to be valid need none)
    assert reads == []
    assert not [k for k in launches if k.startswith("index_stats")]
    # one segment_starts per table and step: the gradient reuses its forward's
    assert launches["segment_starts"] == 8 * STEPS
    # SGD: one kernel per dense parameter, and w_0 == 1 skips the tables' scaling
    assert ops[("WeightedSum", "weighted_sum_pair")] == 8 * STEPS
    assert not [k for k in launches if k.startswith(("count_rows", "scale_"))]
    assert sum(n for (op, _), n in ops.items() if op == "WeightedSum") == 8 * STEPS
    assert per_step <= CEILINGS[checks_mode], sorted(ops.items(), key=lambda kv: -kv[1])
