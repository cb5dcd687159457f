"""workspace.C.benchmark_net (spec §2.10): how often the net runs, what it prints,
what it returns. Expected behaviour observed on real Caffe2 1.10.2 (a 3-op net:
ConstantFill, Iter, Add): benchmark_net(name, 0, 1, True) runs the net twice
(whole + op by op), (name, 2, 3, False) five times and returns [ms, 0, 0, 0];
an async_scheduling net runs whole only and returns [ms]."""

import re

import numpy as np
import pytest

from graphnet import c10_flags, core, workspace


def _counting_net(name="bn", net_type=None):
    net = core.Net(name)
    net.ConstantFill([], "c", shape=[1], value=1.0)
    net.Iter(["it"], ["it"])
    net.Add(["x", "c"], "x")
    if net_type:
        net.Proto().type = net_type
    workspace.FeedBlob("x", np.zeros(1, np.float32))
    workspace.FeedBlob("it", np.zeros(1, np.int64))
    workspace.CreateNet(net)
    return net


def _runs():
    x, it = workspace.FetchBlob("x"), workspace.FetchBlob("it")
    assert x[0] == it[0]
    return int(it[0])


def test_dlrm_profiling_call_runs_the_net_twice_and_prints_a_profile(capsys):
    net = _counting_net()
    result = workspace.C.benchmark_net(net.Name(), 0, 1, True)
    assert _runs() == 2  # one whole run + one op-by-op run (DLRM --enable-profiling)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Starting benchmark.", "Running warmup runs.", "Main runs."]
    assert re.fullmatch(r"Main run finished\. Milliseconds per iter: \S+\. Iters per "
                        r"second: \S+", lines[3])
    assert [re.sub(r"\) \S+ ms/iter$", ") <t> ms/iter", l) for l in lines[4:7]] == [
        "Operator #0 (c, ConstantFill) <t> ms/iter",
        "Operator #1 (it, Iter) <t> ms/iter",
        "Operator #2 (x, Add) <t> ms/iter"]
    assert lines[7] == "Time per operator type:"
    types = sorted(re.fullmatch(r" *\S+ ms\. +\S+%\. (\w+) \(1 ops\)", l).group(1)
                   for l in lines[8:11])
    assert types == ["Add", "ConstantFill", "Iter"]
    assert re.fullmatch(r" *\S+ ms in Total", lines[11]) and len(lines) == 12
    assert len(result) == 4 and all(isinstance(v, float) and v >= 0 for v in result)
    # per-op values are the printed ones (ms per iteration, float32 like Caffe2)
    assert result[1] == pytest.approx(float(lines[4].split()[-2]), rel=1e-5)


def test_whole_runs_only_returns_zero_op_times(capsys):
    net = _counting_net()
    result = workspace.BenchmarkNet(net, 2, 3, False)
    assert _runs() == 5
    assert result[1:] == [0.0, 0.0, 0.0] and result[0] >= 0
    assert "Operator #" not in capsys.readouterr().out


def test_async_net_runs_whole_only_and_returns_one_number(capsys):
    _counting_net("bn_async", "async_scheduling")
    result = workspace.C.benchmark_net("bn_async", 1, 2, True)
    assert _runs() == 3 and len(result) == 1
    assert capsys.readouterr().out == ""  # Caffe2 logged these at INFO level


def test_flag_disables_whole_net_runs(monkeypatch, capsys):
    monkeypatch.setattr(c10_flags, "_values", {})
    assert workspace.GlobalInit(["caffe2",
                                 "--caffe2_simple_net_benchmark_run_whole_net=false"])
    net = _counting_net()
    result = workspace.C.benchmark_net(net.Name(), 0, 2, True)
    assert _runs() == 2 and len(result) == 3  # op-by-op passes only, no whole time
    assert "Main run finished" not in capsys.readouterr().out


def test_op_name_is_printed_when_set(capsys):
    net = core.Net("named")
    op = net.ConstantFill([], "c", shape=[1], value=1.0)
    net.Proto().op[0].name = "my_fill"
    workspace.CreateNet(net)
    workspace.C.benchmark_net("named", 0, 1, True)
    assert "Operator #0 (my_fill, ConstantFill)" in capsys.readouterr().out
    assert str(op) == "c"


def test_unknown_net_and_negative_counts_fail():
    with pytest.raises(RuntimeError, match="Didn't find net: nope"):
        workspace.C.benchmark_net("nope", 0, 1, True)
    net = _counting_net()
    with pytest.raises(RuntimeError, match="warm up runs should be non negative, "
                                           "provided -1"):
        workspace.C.benchmark_net(net.Name(), -1, 1, True)
    with pytest.raises(RuntimeError, match="main runs should be non negative, "
                                           "provided -2"):
        workspace.C.benchmark_net(net.Name(), 0, -2, True)
    assert _runs() == 0


def test_c_exposes_the_same_function():
    assert workspace.C.benchmark_net is workspace.BenchmarkNet
