"""The `graphnet` entry point: the command list, unknown commands, the console
script; `run` itself is tested in tests/test_compat.py."""

import os
import subprocess
import sys

import pytest

from graphnet import cli
from tests.cli.helpers import golden, run_cli, run_subprocess


def test_help_lists_every_command(capsys):
    result = run_cli(capsys, "--help")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == ("usage: graphnet COMMAND [ARGS...]   "
                        "(graphnet COMMAND --help for more)")
    listed = [line.split()[0] for line in lines[3:9]]
    assert listed == ["run", "inspect", "check", "draw", "convert", "run-net"]
    assert set(listed[1:]) == set(cli.COMMANDS)


def test_no_or_unknown_command_is_a_usage_error(capsys):
    assert run_cli(capsys).code == 2
    result = run_cli(capsys, "inpsect", "x.pb")
    assert result.code == 2
    assert result.err == "graphnet: unknown command 'inpsect'\n"
    assert result.out.startswith("usage: graphnet COMMAND")


def test_every_command_has_help(capsys):
    for name in cli.COMMANDS:
        result = run_cli(capsys, name, "--help")
        assert result.code == 0 and result.out.startswith("usage: graphnet %s " % name)
        assert "--traceback" in result.out


def test_console_script(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "graphnet")
    if not os.path.exists(script):
        pytest.skip("the graphnet console script is not installed next to this Python")
    done = subprocess.run([script, "inspect", golden("toy_printed_netdef.net.pb")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == run_subprocess("inspect",
                                         golden("toy_printed_netdef.net.pb")).out
    assert done.stdout.startswith("net 'toy' (")
