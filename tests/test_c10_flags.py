"""GlobalInit parses flags as Caffe2 1.10.2's C10 parser did. What Caffe2 refused
(goldens from real Caffe2 1.10.2) graphnet accepts with a warning naming it."""

import logging

import pytest

from graphnet import c10_flags, workspace


@pytest.fixture(autouse=True)
def _no_flag_values(monkeypatch):
    monkeypatch.setattr(c10_flags, "_values", {})


@pytest.mark.parametrize("args", [
    ["caffe2", "--caffe2_log_level=0"],
    ["caffe2", "--logtostderr=0"],
    ["caffe2", "--caffe2_log_level", "0"],        # value in the next argument
    ["caffe2", "--caffe2_omp_num_threads=x"],     # atoi never fails: 0
    ["caffe2", "positional", "--v", "3"],         # non "--" arguments are ignored
    ["caffe2"],
    [],
])
def test_accepted(args):
    assert workspace.GlobalInit(args) is True


def test_dlrm_profiling_flags_warn_on_what_caffe2_refused(caplog):
    # dlrm_s_caffe2.py --enable-profiling: real Caffe2 1.10.2 raised on --log_dir and
    # on --caffe2_logging_print_net_summary (dlrm#9); graphnet warns and goes on.
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        assert workspace.GlobalInit(["caffe2", "--caffe2_log_level=0", "--logtostderr=0",
                                     "--log_dir=$HOME",
                                     "--caffe2_logging_print_net_summary=1"]) is True
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "unrecognized commandline argument: --log_dir=$HOME" in messages[0]
    assert "--caffe2_logging_print_net_summary=1" in messages[1]
    assert all("Caffe2 1.10.2 would have raised" in m for m in messages)
    assert c10_flags.get_flag("logtostderr") is False
    assert c10_flags.get_flag("caffe2_log_level") == 0


def test_missing_value_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        assert workspace.GlobalInit(["caffe2", "--caffe2_log_level"])
    assert "expecting a value for --caffe2_log_level" in caplog.text


@pytest.mark.parametrize("value, parsed", [("True", True), ("1", True), ("FALSE", False),
                                           ("0", False)])
def test_bool_values(value, parsed):
    assert workspace.GlobalInit(["caffe2", "--caffe2_print_stacktraces=" + value])
    assert c10_flags.get_flag("caffe2_print_stacktraces") is parsed


def test_bad_bool_warns_naming_the_argument(caplog):
    with caplog.at_level(logging.WARNING, logger="graphnet"):
        assert workspace.GlobalInit(["caffe2", "--logtostderr=yes"])
    assert "illegal argument: --logtostderr=yes" in caplog.text
    assert "Cannot convert argument to bool: yes" in caplog.text
    assert c10_flags.get_flag("logtostderr") is None


def test_typed_values():
    assert workspace.GlobalInit(["caffe2", "--caffe2_tensor_chunk_size=12abc",
                                 "--caffe2_dnnlowp_weight_p99_threshold=0.5",
                                 "--caffe2_net_async_tracing_filepath=/x=y"])
    assert c10_flags.get_flag("caffe2_tensor_chunk_size") == 12
    assert c10_flags.get_flag("caffe2_dnnlowp_weight_p99_threshold") == 0.5
    assert c10_flags.get_flag("caffe2_net_async_tracing_filepath") == "/x=y"


def test_help_prints_every_flag_and_exits(capsys):
    with pytest.raises(SystemExit) as info:
        workspace.GlobalInit(["caffe2", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["(Usage message not set.)", "Arguments: "]
    assert len(out) == 2 + 106
    assert "    caffe2_log_level: (int, default c10::GLOG_WARNING) The minimum log " \
           "level that caffe2 will output." in out


def test_registry_of_the_1_10_wheel():
    flags = c10_flags.registered_flags()
    assert len(flags) == 106
    assert flags["caffe2_log_level"] == "int" and flags["logtostderr"] == "bool"
    assert flags["caffe2_simple_net_benchmark_run_whole_net"] == "bool"
    assert "caffe2_logging_print_net_summary" not in flags and "log_dir" not in flags
