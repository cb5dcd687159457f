"""Iter and LearningRate (every policy).

Expected values come from numpy/math formulas written here; a few golden values
come from real Caffe2 1.10.2 (marked so).
"""

import math

import numpy as np
import pytest

from graphnet import core, registry, workspace
from graphnet.devices import CPU, Device
from graphnet.errors import ArgumentError, OperatorError, SchemaError
from tests.opcheck import (check_devices, check_op, check_reference, check_shape_inference,
                           gpu, run_op)
from tests.ops.fill_helpers import DT, check_no_gradient


# --- Iter ----------------------------------------------------------------------------

@pytest.mark.parametrize("counter", [np.array([5], np.int64), np.array(0, np.int64),
                                     np.array([[41]], np.int64)])
def test_iter_increments_in_place(counter):
    ref = lambda c: [c + 1]  # noqa: E731
    check_reference("Iter", [counter], ref, outputs=["in0"])
    check_shape_inference("Iter", [counter], outputs=["in0"])
    check_devices("Iter", [counter], outputs=["in0"])  # the counter stays on the CPU


def test_iter_counts_runs_and_feeds_learning_rate():
    ws = workspace.Workspace()
    init, net = core.Net("init"), core.Net("train")
    init.ConstantFill([], "it", shape=[1], value=0, dtype=DT.INT64)
    with core.DeviceScope(gpu(1)):
        net.Iter("it", "it")
        net.LearningRate("it", "lr", base_lr=-0.5, policy="step", stepsize=2, gamma=0.5)
    ws.RunNetOnce(init)
    ws.CreateNet(net)
    seen = []
    for _ in range(5):
        ws.RunNet(net)
        seen.append((int(ws.FetchBlob("it")[0]), float(ws.FetchBlob("lr"))))
    # the increment happens before LearningRate reads: the first run sees 1
    assert seen == [(k, -0.5 * 0.5 ** (k // 2)) for k in range(1, 6)]
    assert ws.BlobDevice("it") == CPU and ws.BlobDevice("lr") == Device(1, 1)


def test_iter_zero_input_legacy_form_creates_the_counter():
    ws = workspace.Workspace()
    net = core.Net("legacy")
    net.Iter([], "it")
    ws.CreateNet(net)
    for k in (1, 2, 3):
        ws.RunNet(net)
        out = ws.FetchBlob("it")
        assert out.dtype == np.int64 and out.shape == (1,) and out[0] == k
    # The counter lives in the blob, as in Caffe2: one-off runs and feeds see it.
    ws.RunOperatorOnce(core.CreateOperator("Iter", [], ["it"]))
    assert ws.FetchBlob("it")[0] == 4
    ws.FeedBlob("it", np.array([10], np.int64))
    ws.RunNet(net)
    assert ws.FetchBlob("it")[0] == 11
    check_shape_inference("Iter", [])  # a fresh legacy counter: int64 of shape (1,)


@pytest.mark.parametrize("counter,pattern", [
    (np.array([5, 6], np.int64), "The output of IterOp exists, but not of the right size"),
    (np.array([-1], np.int64), "Previous iteration number is negative"),
    (np.array([2 ** 63 - 1], np.int64), "Overflow will happen!"),
    (np.array([5], np.int32), "counter must be int64, found int32"),
    (np.array([5.0], np.float32), "counter must be int64, found float32"),
])
def test_iter_errors(counter, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op("Iter", [counter], outputs=["in0"])


def test_iter_must_be_in_place():
    with pytest.raises(SchemaError, match=r"Input index 0 \(in0\) and output idx 0 \(out0\) "
                                          "are not in-place but should be"):
        run_op("Iter", [np.array([1], np.int64)])


# --- LearningRate ---------------------------------------------------------------------

def lr_of(it, device=None, **kwargs):
    out = run_op("LearningRate", [np.array([it], np.int64)], device=device, **kwargs)[0]
    assert out.dtype == np.float32 and out.shape == ()
    return float(out)


def _warm_then(start, n_const, n_lin, after):
    def f(it):
        if it < n_const:
            return start
        if it < n_const + n_lin:
            return start + (1 - start) * (it - n_const) / n_lin
        return after(it - n_const - n_lin)
    return f


def _cyclical(base, max_lr, step, decay):
    def f(it):
        cycle = math.floor(1 + it / (2 * step))
        x = abs(it / step - 2 * cycle + 1)
        return 1 + (abs(max_lr) / abs(base) - 1) * max(0.0, 1 - x) * \
            decay ** math.floor(it / (2 * step))
    return f


def _sgdr(lo, hi, period, t_mult, shrink):
    """Cosine annealing with warm restarts (arXiv:1608.03983)."""
    def f(it):
        if t_mult == 1:
            i = math.floor(it / period)
            t_cur, t_i = it - i * period, period
        else:
            i = math.floor(math.log(1 - it / period * (1 - t_mult), t_mult))
            t_i = period * t_mult ** i
            t_cur = it - period * (1 - t_mult ** i) / (1 - t_mult)
        return shrink ** i * (lo + (hi - lo) * (1 + math.cos(math.pi * t_cur / t_i)) / 2)
    return f


BASE = -0.05
POLICY_FORMULAS = [
    ("fixed", {}, lambda it: 1.0),
    ("step", dict(stepsize=4, gamma=0.3), lambda it: 0.3 ** (it // 4)),
    ("exp", dict(gamma=0.95), lambda it: 0.95 ** it),
    ("inv", dict(gamma=0.2, power=0.5), lambda it: (1 + 0.2 * it) ** -0.5),
    ("poly", dict(power=1.5, max_iter=40), lambda it: (1 - it / 40) ** 1.5),
    ("gate", dict(multiplier_1=3.0, multiplier_2=0.25, num_iter=8),
     lambda it: 3.0 if it < 8 else 0.25),
    ("linearWarmup", dict(start_multiplier=0.25, num_iter=10),
     lambda it: 0.25 + 0.75 * it / 10 if it < 10 else 1.0),
    ("constantWarmup", dict(multiplier=0.125, num_iter=5),
     lambda it: 0.125 if it < 5 else 1.0),
    ("pieceWarmup", dict(m1=0.25, n1=3, m2=0.75, n2=9, m3=2.0),
     lambda it: 0.25 if it < 3 else 0.75 if it < 9 else 2.0),
    ("alter", dict(active_first=1, active_period=3, inactive_period=2),
     lambda it: 1.0 if it % 5 < 3 else 0.0),
    ("alter", dict(active_first=0, active_period=3, inactive_period=2),
     lambda it: 0.0 if it % 5 < 2 else 1.0),
    ("hill", dict(num_iter=6, start_multiplier=0.5, gamma=0.25, power=2.0,
                  end_multiplier=0.1),
     lambda it: 0.5 + 0.5 * it / 6 if it < 6 else max(0.1, (1 + 0.25 * (it - 6)) ** -2.0)),
    ("slope", dict(num_iter_1=5, multiplier_1=1.0, num_iter_2=15, multiplier_2=0.5),
     lambda it: 1.0 if it < 5 else max(0.5, 1.0 - 0.5 * (it - 5) / 10)),
    ("cyclical", dict(max_lr=-0.2, stepsize=5, decay=0.75), _cyclical(BASE, -0.2, 5, 0.75)),
    ("cosine", dict(max_lr=0.5, min_lr=0.125, period=6, t_mult=1.0, lr_shrink=0.75),
     _sgdr(0.125, 0.5, 6, 1.0, 0.75)),
    ("cosine", dict(max_lr=0.5, min_lr=0.125, period=3, t_mult=2.0, lr_shrink=0.75),
     _sgdr(0.125, 0.5, 3, 2.0, 0.75)),
    ("constantThenLinearWarmup", dict(start_warmup_multiplier=0.5,
                                      constant_warmup_num_iter=4, linear_warmup_num_iter=8),
     _warm_then(0.5, 4, 8, lambda it: 1.0)),
    ("compositeCyclical", dict(start_warmup_multiplier=0.5, constant_warmup_num_iter=2,
                               linear_warmup_num_iter=4, cyclical_max_lr=-0.15,
                               cyclical_step_size=3, cyclical_decay=0.5),
     _warm_then(0.5, 2, 4, _cyclical(BASE, -0.15, 3, 0.5))),
    ("compositeCosine", dict(start_warmup_multiplier=0.5, constant_warmup_num_iter=2,
                             linear_warmup_num_iter=4, cosine_max_lr=0.75,
                             cosine_min_lr=0.25, cosine_period=5, cosine_t_mult=1.0,
                             cosine_lr_shrink=0.5),
     _warm_then(0.5, 2, 4, _sgdr(0.25, 0.75, 5, 1.0, 0.5))),
    ("composite", dict(sub_policy_num_iters=[3, 4, 5], sub_policy_0_policy="constantWarmup",
                       sub_policy_0_multiplier=0.5, sub_policy_0_num_iter=100,
                       sub_policy_1_policy="exp", sub_policy_1_gamma=0.5,
                       sub_policy_1_lr_scale=2.0, sub_policy_2_policy="fixed",
                       sub_policy_2_lr_scale=0.25),
     # sub-policies start at iteration 1 and read the absolute iteration
     lambda it: 0.5 if it < 4 else 2.0 * 0.5 ** it if it < 8 else 0.25),
]


@pytest.mark.parametrize("policy,kwargs,multiplier", POLICY_FORMULAS,
                         ids=["%s-%d" % (p[0], i) for i, p in enumerate(POLICY_FORMULAS)])
def test_learning_rate_policies_follow_their_formulas(policy, kwargs, multiplier):
    iters = [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 21, 30, 37]
    if policy != "composite":
        iters = [0] + iters
    got = [lr_of(it, base_lr=BASE, policy=policy, **kwargs) for it in iters]
    want = [np.float32(BASE * multiplier(it)) for it in iters]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9, err_msg=policy)


# golden from real Caffe2 1.10.2: LearningRate(base_lr=0.1, policy, **args) at iterations
LR_GOLDEN = [
    ("step", {'stepsize': 3, 'gamma': 0.5},
     {1: 0.100000001, 3: 0.0500000007, 4: 0.0500000007, 7: 0.0250000004, 12: 0.00625000009,
      25: 0.000390625006}),
    ("inv", {'gamma': 0.1, 'power': 0.75},
     {1: 0.0931012481, 3: 0.0821376964, 4: 0.0776969492, 7: 0.0671681389, 12: 0.0553583317,
      25: 0.0390794985}),
    ("poly", {'power': 2.0, 'max_iter': 20},
     {1: 0.0902500004, 3: 0.0722500011, 4: 0.064000003, 7: 0.0422499962, 12: 0.0159999989,
      25: 0.00625000009}),
    ("poly", {'power': 2.0},  # max_iter -1 is read as uint64: multiplier ~1
     {1: 0.100000001, 12: 0.100000001, 25: 0.100000001}),
    ("pieceWarmup", {}, {1: 0.0500000007, 25: 0.0500000007}),
    ("alter", {'active_first': 0, 'active_period': 2, 'inactive_period': 3},
     {1: 0, 3: 0.100000001, 4: 0.100000001, 7: 0, 12: 0, 25: 0}),
    ("alter", {}, {1: 0, 3: 0, 25: 0}),   # -1 periods: C++ modulo semantics
    ("hill", {'num_iter': 4, 'start_multiplier': 0.1, 'gamma': 0.5, 'power': 1.5,
              'end_multiplier': 0.2},
     {1: 0.0324999988, 3: 0.0775000006, 4: 0.100000001, 7: 0.025298221, 12: 0.0200000014}),
    ("slope", {'num_iter_1': 3, 'multiplier_1': 0.2, 'num_iter_2': 9, 'multiplier_2': 0.8},
     {1: 0.0200000014, 3: 0.0800000057, 7: 0.0800000057, 12: 0.110000007, 25: 0.24000001}),
    ("cyclical", {'max_lr': 0.35, 'stepsize': 3, 'decay': 0.9},
     {1: 0.183333352, 3: 0.349999994, 4: 0.266666651, 7: 0.174999982, 12: 0.100000001,
      25: 0.154674947}),
    ("cosine", {'max_lr': 0.5, 'min_lr': 0.1, 'period': 4, 't_mult': 2.0, 'lr_shrink': 0.8},
     {1: 0.0441421382, 3: 0.015857866, 4: 0.0400000028, 7: 0.0301229358, 12: 0.0320000015,
      25: 0.00855718926}),
    ("cosine", {},
     {1: 0.049960535, 7: 0.0480965413, 12: 0.0445793718, 25: 0.0300000012}),
    ("compositeCyclical", {'start_warmup_multiplier': 0.2, 'constant_warmup_num_iter': 2,
                           'linear_warmup_num_iter': 3, 'cyclical_max_lr': 0.3,
                           'cyclical_step_size': 2, 'cyclical_decay': 0.8},
     {1: 0.0200000014, 3: 0.0466666669, 4: 0.0733333379, 7: 0.300000012, 12: 0.179999992,
      25: 0.100000001}),
    ("compositeCosine", {'start_warmup_multiplier': 0.2, 'constant_warmup_num_iter': 2,
                         'linear_warmup_num_iter': 3, 'cosine_max_lr': 0.6,
                         'cosine_min_lr': 0.05, 'cosine_period': 4, 'cosine_t_mult': 1.5,
                         'cosine_lr_shrink': 0.7},
     {1: 0.0200000014, 3: 0.0466666669, 4: 0.0733333379, 7: 0.0325000025, 12: 0.0227500014,
      25: 0.0203257482}),
    ("composite", {'sub_policy_num_iters': [2, 3, 4], 'sub_policy_0_policy': 'fixed',
                   'sub_policy_0_lr_scale': 0.5, 'sub_policy_1_policy': 'step',
                   'sub_policy_1_stepsize': 2, 'sub_policy_1_gamma': 0.5,
                   'sub_policy_2_policy': 'linearWarmup',
                   'sub_policy_2_start_multiplier': 0.1, 'sub_policy_2_num_iter': 8,
                   'sub_policy_2_lr_scale': 3.0},
     {1: 0.0500000007, 3: 0.0500000007, 4: 0.0250000004, 7: 0.266249985, 12: 0.300000012}),
]


@pytest.mark.parametrize("policy,kwargs,golden", LR_GOLDEN,
                         ids=["%s-%d" % (g[0], i) for i, g in enumerate(LR_GOLDEN)])
def test_learning_rate_matches_caffe2_goldens(policy, kwargs, golden):
    for it, want in golden.items():
        assert lr_of(it, base_lr=0.1, policy=policy, **kwargs) == pytest.approx(
            want, rel=1e-6, abs=1e-12), (policy, it)


def test_learning_rate_output_is_a_0d_float_on_the_op_device():
    it = np.array([3], np.int64)
    check_op("LearningRate", [it], lambda it: [np.array(-0.01, np.float32)],
             base_lr=-0.01, policy="fixed")
    check_op("LearningRate", [np.array(7, np.int64)],
             lambda it: [np.array(np.float32(0.1) * np.float32(0.5), np.float32)],
             base_lr=0.1, policy="step", stepsize=5, gamma=0.5)
    # Caffe2 reads the first element of a longer counter
    assert lr_of(0, base_lr=1.0, policy="exp", gamma=0.5) == 1.0
    out = run_op("LearningRate", [np.array([2, 9], np.int64)], base_lr=1.0, policy="exp",
                 gamma=0.5)[0]
    assert float(out) == 0.25


def test_learning_rate_reads_only_its_policy_arguments():
    # golden from real Caffe2 1.10.2: a mistyped argument the policy never reads is fine
    assert lr_of(3, base_lr=0.1, policy="fixed", gamma=1) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(policy="fixed"), "Base learning rate must be set."),
    (dict(base_lr=0.1), "Must specify a learning rate policy."),
    (dict(base_lr=0.1, policy=""), "Must specify a learning rate policy."),
    (dict(base_lr=0.1, policy="nope"), "Unknown learning rate policy: nope"),
    (dict(base_lr=1, policy="fixed"),
     "Argument base_lr does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="step", stepsize=2.0, gamma=0.5),
     "Argument stepsize does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="step", stepsize=2, gamma=1),
     "Argument gamma does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="step", stepsize=2 ** 40, gamma=0.5),
     "Value 1099511627776 of argument stepsize cannot be represented.*int32"),
    (dict(base_lr=0.1, policy="gate", num_iter=1.0),
     "Argument num_iter does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="alter", active_first=1.0),
     "Argument active_first does not have the right field: expected field i"),
    (dict(base_lr=0.1, policy="composite"),
     "Must specify at least one sub learning rate policy."),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2, 0],
          sub_policy_0_policy="fixed"),
     "The number of iterations for sub learning rate policy should be positive"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="composite"),
     "Defining composite LR policy as a subpolicy of composite LR policy is not allowed"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2]),
     "Unknown learning rate policy: "),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="step", sub_policy_0_gamma=1),
     "Argument sub_policy_0_gamma does not have the right field: expected field f"),
    (dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
          sub_policy_0_policy="fixed", sub_policy_0_lr_scale=2),
     "Argument sub_policy_0_lr_scale does not have the right field: expected field f"),
])
def test_learning_rate_argument_errors(kwargs, pattern):
    with pytest.raises(ArgumentError, match=pattern):
        run_op("LearningRate", [np.array([3], np.int64)], **kwargs)


@pytest.mark.parametrize("it,kwargs,pattern", [
    (np.array([3], np.int32), dict(policy="fixed"),
     "caller expects elements to be long int, while tensor contains int"),
    (np.array([], np.int64), dict(policy="fixed"), "iteration input is empty"),
    (np.array([3], np.int64), dict(policy="step", gamma=0.5), "stepsize is 0"),
    (np.array([3], np.int64), dict(policy="alter", active_period=1, inactive_period=-1),
     "active_period \\+ inactive_period is 0"),
])
def test_learning_rate_run_time_errors(it, kwargs, pattern):
    with pytest.raises(OperatorError, match=pattern):
        run_op("LearningRate", [it], base_lr=0.1, **kwargs)


def test_learning_rate_schema():
    with pytest.raises(SchemaError, match="are set to be in-place but this is actually not "
                                          "supported by op LearningRate"):
        run_op("LearningRate", [np.array([1], np.int64)], outputs=["in0"], base_lr=0.1,
               policy="fixed")
    with pytest.raises(SchemaError, match=r"Input size 0 not in range \[min=1, max=1\]"):
        run_op("LearningRate", [], base_lr=0.1, policy="fixed")
    assert registry.get("LearningRate").cpu_inputs == {0}
    check_shape_inference("LearningRate", [np.array([3], np.int64)], base_lr=0.1,
                          policy="fixed")


# --- gradients --------------------------------------------------------------------------

NO_GRADIENT_OPS = [
    ("Iter", 1, {}),
    ("LearningRate", 1, dict(base_lr=0.1, policy="fixed")),
]


@pytest.mark.parametrize("op_type,n_in,kwargs", NO_GRADIENT_OPS)
def test_fill_family_has_no_gradient(op_type, n_in, kwargs):
    check_no_gradient(op_type, n_in, kwargs)
