"""Fused plans (graphnet.executors.fused): hot CPU nets run as one compiled program.

Every lowered op is checked on the fused path against numpy formulas written
here (random inputs, several runs so in-place updates accumulate), gradients
against finite differences of the fused forward, and whole DLRM training against
the interpreter; then the contract: value errors raise the op's error with earlier
blobs in place, other input shapes get their own program, arrays another holder
references are never written, nets the fused path cannot run say why.
"""

import os
import sys

import numpy as np
import pytest

from graphnet import config, core, workspace
from graphnet.errors import OperatorError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import dlrm_caffe2_model as dlrm  # noqa: E402

F32 = np.float32


@pytest.fixture(autouse=True)
def fuse_on_first_run():
    config.set_fuse_after(1)  # the first run records the net and builds its program
    workspace.ResetWorkspace()
    yield
    config.set_fuse_after(None)
    workspace.ResetWorkspace()


def plan_of(net):
    return workspace._ws()._nets[net.Name()]


def rand(rng, *shape):
    return rng.uniform(-1.5, 1.5, shape).astype(F32)


def fresh(rng, value):
    """New random values like `value` (its NaNs and zeros kept where they are)."""
    new = rng.uniform(-1.5, 1.5, value.shape).astype(value.dtype)
    new[np.isnan(value)] = np.nan
    new[value == 0] = 0
    return new


def run_cases(net, feeds, reference, runs=4, rtol=1e-5, atol=1e-6, fixed=()):
    """Feed, create, run `runs` times, feeding new float inputs before every run (so a
    program that skipped an op would keep stale outputs); after each run every blob
    `reference(state)` returns must match (state starts as the feeds; outputs the net
    updates in place carry over)."""
    rng = np.random.default_rng(99)
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    workspace.CreateNet(net)
    state = {k: np.array(v, copy=True) for k, v in feeds.items()}
    written = set()
    for run in range(runs):
        if run:
            for name, value in feeds.items():
                if name not in written and name not in fixed and value.dtype.kind == "f":
                    state[name] = fresh(rng, value)
                    workspace.FeedBlob(name, state[name])
        workspace.RunNet(net.Name())
        expected = reference(state)
        written |= set(expected)
        state.update(expected)
        for name, value in expected.items():
            got = workspace.FetchBlob(name)
            assert got.shape == np.shape(value), name
            np.testing.assert_allclose(got, value, rtol=rtol, atol=atol, err_msg=name)
    info = plan_of(net).fusion
    assert info.state == "fused", info
    assert info.fused_runs == runs - 1
    return state


# --- every lowering against numpy ----------------------------------------------------

def test_elementwise_activations_and_gradients():
    rng = np.random.default_rng(0)
    x, dy = rand(rng, 3, 5), rand(rng, 3, 5)
    x[0, 0] = np.nan
    net = core.Net("act")
    for op in ("Relu", "Sigmoid", "Tanh"):
        net.__getattr__(op)("x", op + "_y")
        net.__getattr__(op + "Gradient")([op + "_y", "dy"], op + "_dx")

    def reference(s):
        out = {}
        relu = np.where(s["x"] < 0, F32(0), s["x"])
        sig = 1 / (1 + np.exp(-s["x"]))
        tanh = np.tanh(s["x"])
        out["Relu_y"], out["Relu_dx"] = relu, np.where(relu > 0, s["dy"], 0)
        out["Sigmoid_y"], out["Sigmoid_dx"] = sig, s["dy"] * sig * (1 - sig)
        out["Tanh_y"], out["Tanh_dx"] = tanh, s["dy"] * (1 - tanh * tanh)
        return out
    run_cases(net, {"x": x, "dy": dy}, reference)
    assert np.isnan(workspace.FetchBlob("Relu_y")[0, 0])  # NaN passes Relu, as in Caffe2


def test_scale_sum_flatten_resize_like_fill():
    rng = np.random.default_rng(1)
    feeds = {"a": rand(rng, 2, 3, 4), "b": rand(rng, 2, 3, 4), "c": rand(rng, 2, 3, 4)}
    net = core.Net("misc")
    net.Scale("a", "scaled", scale=0.37)
    net.Sum(["a", "b", "c"], "total")
    net.Sum(["scaled", "b"], "scaled")  # in place
    net.Flatten("a", "flat", axis=2)
    net.FlattenToVec("b", "vec")
    net.ResizeLike(["vec", "a"], "back")
    net.ConstantFill(["c"], "ones", value=2.5)

    def reference(s):
        return {"scaled": s["a"] * F32(0.37) + s["b"], "total": s["a"] + s["b"] + s["c"],
                "flat": s["a"].reshape(6, 4), "vec": s["b"].reshape(-1),
                "back": s["b"].copy(), "ones": np.full((2, 3, 4), 2.5, F32)}
    run_cases(net, feeds, reference)


def test_add_sub_mul_div_same_shapes():
    rng = np.random.default_rng(15)
    feeds = {"a": rand(rng, 3, 4), "b": rand(rng, 3, 4)}
    feeds["b"][1, 2] = 0.0  # x / 0: inf or NaN, as numpy (not an exception)
    feeds["a"][2, 3] = 0.0
    feeds["b"][2, 3] = 0.0
    net = core.Net("arith")
    for op in ("Add", "Sub", "Mul", "Div"):
        net.__getattr__(op)(["a", "b"], op.lower())

    def reference(s):
        with np.errstate(all="ignore"):
            return {"add": s["a"] + s["b"], "sub": s["a"] - s["b"], "mul": s["a"] * s["b"],
                    "div": s["a"] / s["b"]}
    run_cases(net, feeds, reference)
    div = workspace.FetchBlob("div")
    assert np.isinf(div[1, 2]) and np.isnan(div[2, 3])


def test_iter_learning_rate_weighted_sum_accumulate():
    rng = np.random.default_rng(2)
    feeds = {"it": np.array([7], np.int64), "w": rand(rng, 4, 3), "g": rand(rng, 4, 3),
             "one": np.array([1.0], F32), "v": rand(rng, 5), "u": rand(rng, 5),
             "a": np.array([0.5], F32), "b": np.array([-2.0], F32)}
    net = core.Net("opt")
    net.Iter("it", "it")
    net.LearningRate("it", "lr", base_lr=-0.1, policy="fixed")
    net.WeightedSum(["w", "one", "g", "lr"], "w")
    net.WeightedSum(["v", "a", "u", "b", "v", "lr"], "mix")

    def reference(s):
        lr = F32(-0.1)
        return {"it": s["it"] + 1, "lr": np.array(lr),
                "w": s["w"] * s["one"][0] + lr * s["g"],
                "mix": s["v"] * s["a"][0] + s["b"][0] * s["u"] + lr * s["v"]}
    state = run_cases(net, feeds, reference)
    assert int(state["it"][0]) == 11


def test_losses_and_their_gradients():
    rng = np.random.default_rng(3)
    feeds = {"x": rand(rng, 6, 4), "y": rand(rng, 6, 4), "dz": rand(rng, 6),
             "dl": np.array(0.7, F32)}
    net = core.Net("loss")
    net.SquaredL2Distance(["x", "y"], "dist")
    net.SquaredL2DistanceGradient(["x", "y", "dz"], ["dx", "dy"])
    net.AveragedLoss("dist", "avg")
    net.AveragedLossGradient(["dist", "dl"], "ddist")

    def reference(s):
        diff = s["x"] - s["y"]
        dist = 0.5 * (diff * diff).sum(axis=1)
        return {"dist": dist, "dx": diff * s["dz"][:, None], "dy": -diff * s["dz"][:, None],
                "avg": np.array(dist.mean(), F32),
                "ddist": np.full(6, float(s["dl"]) / 6, F32)}
    run_cases(net, feeds, reference)


@pytest.mark.parametrize("add_axis", [0, 1])
def test_concat_and_split_round_trip(add_axis):
    rng = np.random.default_rng(4)
    shapes = [(3, 2, 5)] * 3 if add_axis else [(3, 2, 5), (3, 4, 5), (3, 1, 5)]
    feeds = {"x%d" % k: rand(rng, *s) for k, s in enumerate(shapes)}
    names = sorted(feeds)
    net = core.Net("cat")
    net.Concat(names, ["cat", "info"], axis=1, add_axis=add_axis)
    net.Split(["cat", "info"], ["s%d" % k for k in range(3)], axis=1, add_axis=add_axis)
    if not add_axis:
        net.Split("cat", ["t0", "t1"], axis=1, split=[5, 2])

    def reference(s):
        xs = [s[n] for n in names]
        cat = np.stack(xs, axis=1) if add_axis else np.concatenate(xs, axis=1)
        out = {"cat": cat, "info": np.array([1, 1, 1] if add_axis else [2, 4, 1], np.int32)}
        out.update({"s%d" % k: xs[k] for k in range(3)})
        if not add_axis:
            out["t0"], out["t1"] = cat[:, :5], cat[:, 5:]
        return out
    run_cases(net, feeds, reference)


@pytest.mark.parametrize("m,k,n", [(5, 7, 3), (64, 48, 80)])
def test_fc_and_gradient(m, k, n):
    rng = np.random.default_rng(5)
    feeds = {"x": rand(rng, m, k), "w": rand(rng, n, k), "b": rand(rng, n),
             "dy": rand(rng, m, n)}
    net = core.Net("fc")
    net.FC(["x", "w", "b"], "y")
    net.FCGradient(["x", "w", "dy"], ["dw", "db", "dx"])
    net.FCGradient(["x", "w", "dy"], ["dw2", "db2"])

    def reference(s):
        x, w, dy = (s[n].astype(np.float64) for n in ("x", "w", "dy"))
        return {"y": x @ w.T + s["b"], "dw": dy.T @ x, "db": dy.sum(0), "dx": dy @ w,
                "dw2": dy.T @ x, "db2": dy.sum(0)}
    run_cases(net, feeds, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,m,k,n", [(4, 3, 5, 2), (2, 20, 16, 24)])
def test_batch_matmul_every_transpose(batch, m, k, n):
    rng = np.random.default_rng(6)
    feeds = {"a": rand(rng, batch, m, k), "at": rand(rng, batch, k, m),
             "b": rand(rng, batch, k, n), "bt": rand(rng, batch, n, k)}
    net = core.Net("bmm")
    net.BatchMatMul(["a", "b"], "ab")
    net.BatchMatMul(["at", "b"], "atb", trans_a=1)
    net.BatchMatMul(["a", "bt"], "abt", trans_b=1)
    net.BatchMatMul(["at", "bt"], "atbt", trans_a=1, trans_b=1)

    def reference(s):
        t = lambda v: np.swapaxes(v, 1, 2).astype(np.float64)  # noqa: E731
        a, b = s["a"].astype(np.float64), s["b"].astype(np.float64)
        return {"ab": a @ b, "atb": t(s["at"]) @ b, "abt": a @ t(s["bt"]),
                "atbt": t(s["at"]) @ t(s["bt"])}
    run_cases(net, feeds, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_batch_gather_and_gradient_with_duplicates(index_dtype):
    rng = np.random.default_rng(7)
    idx = np.array([3, 0, 3, 2, 3], index_dtype)
    feeds = {"data": rand(rng, 4, 5, 2), "idx": idx, "g": rand(rng, 4, 5, 2)}
    net = core.Net("bg")
    net.BatchGather(["data", "idx"], "picked")
    net.BatchGatherGradient(["data", "idx", "g"], "ddata")

    def reference(s):
        grad = np.zeros((4, 5, 2), F32)
        for j, row in enumerate(idx):
            grad[:, row] += s["g"][:, j]
        return {"picked": s["data"][:, idx], "ddata": grad}
    run_cases(net, feeds, reference)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_sparse_lengths_forward_and_gradients(index_dtype):
    rng = np.random.default_rng(8)
    lengths = np.array([2, 0, 3, 1], np.int32)
    idx = rng.integers(0, 6, lengths.sum()).astype(index_dtype)
    feeds = {"table": rand(rng, 6, 3), "idx": idx, "len": lengths,
             "wts": rand(rng, lengths.sum()), "dy": rand(rng, 4, 3)}
    net = core.Net("sls")
    net.SparseLengthsSum(["table", "idx", "len"], "pooled")
    net.SparseLengthsWeightedSum(["table", "wts", "idx", "len"], "wpooled")
    net.SparseLengthsIndicesInGradientSumGradient(["dy", "len", "idx"], "gvalues")
    net.SparseLengthsSumGradient(["dy", "len"], "gvalues2")

    def reference(s):
        seg = np.repeat(np.arange(4), lengths)
        pooled = np.zeros((4, 3), F32)
        wpooled = np.zeros((4, 3), F32)
        for j, row in enumerate(idx):
            pooled[seg[j]] += s["table"][row]
            wpooled[seg[j]] += s["wts"][j] * s["table"][row]
        return {"pooled": pooled, "wpooled": wpooled, "gvalues": s["dy"][seg],
                "gvalues2": s["dy"][seg]}
    run_cases(net, feeds, reference)


def test_scatter_weighted_sum_accumulates_duplicates_in_place():
    rng = np.random.default_rng(9)
    idx = np.array([4, 1, 4, 4, 0], np.int64)
    feeds = {"table": rand(rng, 6, 2), "one": np.array([1.0], F32), "idx": idx,
             "upd": rand(rng, 5, 2), "lr": np.array([-0.25], F32), "upd2": rand(rng, 5, 2),
             "lr2": np.array([0.5], F32)}
    net = core.Net("swsum")
    net.ScatterWeightedSum(["table", "one", "idx", "upd", "lr", "upd2", "lr2"], "table")

    def reference(s):
        table = s["table"].copy()
        for x, w in (("upd", "lr"), ("upd2", "lr2")):
            for j, row in enumerate(idx):
                table[row] += s[w][0] * s[x][j]
        return {"table": table}
    run_cases(net, feeds, reference, fixed={"one"})  # (w_0 != 1: the kernel's rounds)


# --- gradients by finite differences, through the fused program ------------------------

def test_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(10)
    net = core.Net("mlp")
    net.FC(["x", "w1", "b1"], "h")
    net.Relu("h", "hr")
    net.FC(["hr", "w2", "b2"], "o")
    net.Sigmoid("o", "p")
    net.SquaredL2Distance(["p", "t"], "d")
    loss = net.AveragedLoss("d", "loss")
    net.AddGradientOperators([loss])
    feeds = {"x": rand(rng, 6, 4), "w1": rand(rng, 5, 4), "b1": rand(rng, 5),
             "w2": rand(rng, 2, 5), "b2": rand(rng, 2), "t": rng.uniform(0, 1, (6, 2))
             .astype(F32)}
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    workspace.CreateNet(net)
    for _ in range(3):
        workspace.RunNet(net.Name())
    assert plan_of(net).fusion.state == "fused"
    for param in ("w1", "b1", "w2"):
        analytic = workspace.FetchBlob(param + "_grad").astype(np.float64)
        base = feeds[param].astype(np.float64)
        numeric = np.zeros_like(base)
        eps = 1e-2
        for pos in np.ndindex(base.shape):
            values = []
            for sign in (1, -1):
                moved = base.copy()
                moved[pos] += sign * eps
                workspace.FeedBlob(param, moved.astype(F32))
                workspace.RunNet(net.Name())
                values.append(float(workspace.FetchBlob("loss")))
            numeric[pos] = (values[0] - values[1]) / (2 * eps)
        workspace.FeedBlob(param, feeds[param])
        np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3, err_msg=param)
    assert plan_of(net).fusion.fused_runs > 50


# --- whole DLRM training --------------------------------------------------------------

def train(fuse_after, iters=24):
    config.set_fuse_after(fuse_after)
    from graphnet import compat
    compat.install()
    cfg = dict(dlrm.TEST_CONFIG, batch=8, lookups=6)  # bag lengths differ per batch
    losses, model, names = dlrm.train_losses(workspace, iters, cfg)
    params = {n: workspace.FetchBlob(n) for n in names}
    return losses, params, getattr(plan_of(model.net), "fusion", None)


def test_dlrm_training_fused_equals_interpreted():
    plain, plain_params, _ = train(0)
    fused, fused_params, info = train(2)
    assert info.state == "fused" and len(workspace._ws()._nets) == 1
    assert info.fused_runs >= 14  # three batch shapes, a program each
    assert fused[-3:].sum() < fused[:3].sum()
    np.testing.assert_allclose(fused, plain, rtol=1e-5)
    for name in plain_params:
        np.testing.assert_allclose(fused_params[name], plain_params[name], rtol=1e-5,
                                   atol=1e-6, err_msg=name)


# --- the contract around the program -------------------------------------------------

def sls_net():
    net = core.Net("guarded")
    net.Relu("x", "xr")
    net.SparseLengthsSum(["table", "idx", "len"], "pooled")
    net.Scale("pooled", "scaled", scale=2.0)
    return net


def test_bad_index_raises_the_ops_error_with_earlier_blobs_in_place():
    rng = np.random.default_rng(11)
    table, x = rand(rng, 5, 2), rand(rng, 3)
    net = sls_net()
    workspace.FeedBlob("table", table)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("len", np.array([2, 1], np.int32))
    workspace.FeedBlob("idx", np.array([0, 4, 2], np.int64))
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    workspace.RunNet(net.Name())
    info = plan_of(net).fusion
    assert info.state == "fused" and info.fused_runs == 1
    before = workspace.FetchBlob("scaled")
    x2 = rand(rng, 3)
    workspace.FeedBlob("x", x2)
    workspace.FeedBlob("idx", np.array([0, 5, 2], np.int64))  # 5 is past the table
    with pytest.raises(OperatorError) as err:
        workspace.RunNet(net.Name())
    assert "SparseLengthsSum" in str(err.value) and "#1" in str(err.value)
    np.testing.assert_array_equal(workspace.FetchBlob("xr"), np.maximum(x2, 0))  # op #0 ran
    np.testing.assert_array_equal(workspace.FetchBlob("scaled"), before)  # #2 did not
    workspace.FeedBlob("idx", np.array([1, 1, 3], np.int64))
    workspace.RunNet(net.Name())
    assert info.fused_runs == 2
    np.testing.assert_allclose(workspace.FetchBlob("scaled"),
                               2 * np.stack([table[1] + table[1], table[3]]), rtol=1e-6)


def test_other_input_shapes_get_their_own_program():
    rng = np.random.default_rng(12)
    net = sls_net()
    for name, value in (("table", rand(rng, 5, 2)), ("x", rand(rng, 2)),
                        ("len", np.array([1, 2], np.int32)), ("idx", np.arange(3))):
        workspace.FeedBlob(name, value)
    workspace.CreateNet(net)
    table = workspace.FetchBlob("table")
    shapes = [(2, 3), (3, 5), (2, 3), (3, 5), (3, 5), (2, 3)]
    for n, total in shapes * 3:
        lengths = np.full(n, total // n, np.int32)
        lengths[0] += total - lengths.sum()
        idx = rng.integers(0, 5, total).astype(np.int64)
        x = rand(rng, n)
        for name, value in (("len", lengths), ("idx", idx), ("x", x)):
            workspace.FeedBlob(name, value)
        workspace.RunNet(net.Name())
        seg = np.repeat(np.arange(n), lengths)
        expected = np.zeros((n, 2), F32)
        np.add.at(expected, seg, table[idx])
        np.testing.assert_allclose(workspace.FetchBlob("scaled"), 2 * expected, rtol=1e-6)
        np.testing.assert_array_equal(workspace.FetchBlob("xr"), np.maximum(x, 0))
    plan = plan_of(net)
    assert len(plan.fused_variants) == 2 and plan.fusion.fused_runs >= 14


def test_a_view_held_elsewhere_keeps_its_values():
    rng = np.random.default_rng(13)
    net = core.Net("held")
    net.Scale("x", "y", scale=3.0)
    workspace.FeedBlob("x", rand(rng, 4))
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    workspace.RunNet(net.Name())
    info = plan_of(net).fusion
    assert info.state == "fused"
    held = workspace._ws()._blobs["y"].value.reshape(2, 2)  # e.g. another net's view
    snapshot = held.copy()
    x = rand(rng, 4)
    workspace.FeedBlob("x", x)
    workspace.RunNet(net.Name())
    np.testing.assert_array_equal(held, snapshot)
    np.testing.assert_allclose(workspace.FetchBlob("y"), 3 * x, rtol=1e-6)
    assert info.reallocations == 1 and info.fused_runs == 2


def test_nets_it_cannot_run_stay_interpreted_and_say_why():
    rng = np.random.default_rng(14)
    x = rand(rng, 3, 4)
    net = core.Net("softmax")
    net.Relu("x", "r")
    net.Softmax("r", "s")
    workspace.FeedBlob("x", x)
    workspace.CreateNet(net)
    for _ in range(3):
        workspace.RunNet(net.Name())
    info = plan_of(net).fusion
    assert info.state == "declined" and "Softmax" in info.reason
    e = np.exp(np.maximum(x, 0) - np.maximum(x, 0).max(1, keepdims=True))
    np.testing.assert_allclose(workspace.FetchBlob("s"), e / e.sum(1, keepdims=True),
                               rtol=1e-6)

    config.set_fast_kernels(False)  # the plain kernels are the reference: never fused
    try:
        relu = core.Net("relu")
        relu.Relu("x", "r2")
        workspace.CreateNet(relu)
        for _ in range(3):
            workspace.RunNet(relu.Name())
        assert plan_of(relu).fusion.state == "declined"
        assert "fast kernels" in plan_of(relu).fusion.reason
    finally:
        config.set_fast_kernels(True)


def test_fusing_off_means_never():
    config.set_fuse_after(0)
    net = core.Net("off")
    net.Relu("x", "r")
    workspace.FeedBlob("x", np.ones(3, F32))
    workspace.CreateNet(net)
    for _ in range(5):
        workspace.RunNet(net.Name())
    assert getattr(plan_of(net), "fusion", None) is None


def test_without_scipy_nets_stay_interpreted(monkeypatch):
    # numba's np.dot needs scipy's BLAS bindings; calling it without them aborts Python
    monkeypatch.setitem(sys.modules, "scipy.linalg.cython_blas", None)
    net = core.Net("noblas")
    net.Relu("x", "r")
    workspace.FeedBlob("x", np.array([-1.0, 2.0], F32))
    workspace.CreateNet(net)
    for _ in range(3):
        workspace.RunNet(net.Name())
    info = plan_of(net).fusion
    assert info.state == "declined" and "scipy" in info.reason
    assert workspace.FetchBlob("r").tolist() == [0.0, 2.0]


def test_same_shapes_other_dtype_run_interpreted():
    rng = np.random.default_rng(16)
    net = core.Net("dtypes")
    net.Sum(["a", "b"], "s")
    workspace.FeedBlob("a", rand(rng, 2, 3))
    workspace.FeedBlob("b", rand(rng, 2, 3))
    workspace.CreateNet(net)
    for _ in range(3):
        workspace.RunNet(net.Name())
    info = plan_of(net).fusion
    assert info.state == "fused" and info.fused_runs == 2
    a, b = (rng.integers(-50, 50, (2, 3)).astype(np.int32) for _ in range(2))
    workspace.FeedBlob("a", a)
    workspace.FeedBlob("b", b)
    for _ in range(3):
        workspace.RunNet(net.Name())
        got = workspace.FetchBlob("s")
        assert got.dtype == np.int32 and got.tolist() == (a + b).tolist()
    assert info.fused_runs == 2  # never through the float32 program
    x, y = rand(rng, 2, 3), rand(rng, 2, 3)
    workspace.FeedBlob("a", x)
    workspace.FeedBlob("b", y)
    workspace.RunNet(net.Name())
    assert info.fused_runs == 3
    np.testing.assert_allclose(workspace.FetchBlob("s"), x + y, rtol=1e-6)


def test_a_net_on_an_emulated_gpu_is_fused_with_its_devices():
    from graphnet.proto import caffe2_pb2
    rng = np.random.default_rng(17)
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 0)
    net = core.Net("on_gpu")
    with core.DeviceScope(gpu):
        net.FC(["x", "w", "b"], "y")
        net.Relu("y", "r")
        feeds = {"x": rand(rng, 4, 3), "w": rand(rng, 2, 3), "b": rand(rng, 2)}
        for name, value in feeds.items():
            workspace.FeedBlob(name, value)
    workspace.CreateNet(net)
    for _ in range(3):
        x = rand(rng, 4, 3)
        workspace.FeedBlob("x", x, gpu)
        workspace.RunNet(net.Name())
        np.testing.assert_allclose(workspace.FetchBlob("r"), np.maximum(
            x @ feeds["w"].T + feeds["b"], 0), rtol=1e-5, atol=1e-6)
    info = plan_of(net).fusion
    assert info.state == "fused" and info.fused_runs == 2
    assert workspace._ws()._blobs["r"].device.is_gpu  # outputs stay on gpu_0
