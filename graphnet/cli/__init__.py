"""The `graphnet` command line: one module per command (inspect, draw, check,
convert, run_net), each with `add_arguments(parser)` and `run(args) -> exit code`;
loading.py reads NetDef files, model directories and option values.

`main(command, argv)` parses a command's arguments and turns every failure into
one line on stderr (`--traceback` adds the Python traceback). Exit codes: 0 done;
1 the command ran and found errors or failed; 2 usage or file errors. Imports
argparse and, when a command runs, its module.
"""

import argparse
import importlib
import sys
import traceback

__all__ = ["COMMANDS", "CliError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "main",
           "one_line"]

# command -> (module of graphnet.cli, one-line summary for `graphnet --help`)
COMMANDS = {
    "inspect": ("inspect", "summarise a net: ops, params, devices, communication, "
                           "FLOPs, critical path"),
    "check": ("check", "report every problem of a net with its fix (exit 1 on errors)"),
    "draw": ("draw", "draw a net with one cluster per device (.dot, .svg, .png)"),
    "convert": ("convert", "convert a NetDef between binary (.pb) and text (.pbtxt)"),
    "run-net": ("run_net", "run a model (directory or files) on emulated devices"),
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure shown as one line, `graphnet COMMAND: message`, with exit `code`
    (EXIT_USAGE for usage and file errors, EXIT_FAILED otherwise)."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError("%s (see `%s --help`)" % (message, self.prog))


def one_line(exc):
    """The message of `exc` with its lines joined."""
    return " ".join(str(exc).split()) or type(exc).__name__


def main(name, argv):
    """Run command `name` with `argv`; returns its exit code."""
    module = importlib.import_module("graphnet.cli." + COMMANDS[name][0])
    doc = module.__doc__.strip()
    parser = _Parser(prog="graphnet " + name, description=doc,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, also print the Python traceback")
    show_traceback = "--traceback" in argv
    try:
        return module.run(parser.parse_args(argv))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        code, message = exc.code, one_line(exc)
        trace = traceback.format_exc()
    except Exception as exc:  # a bug or an unforeseen input: one line, not a traceback
        code = EXIT_FAILED
        message = "%s: %s%s" % (type(exc).__name__, one_line(exc), "" if show_traceback
                                else " (rerun with --traceback for details)")
        trace = traceback.format_exc()
    sys.stdout.flush()
    if show_traceback:
        sys.stderr.write(trace)
    print("graphnet %s: %s" % (name, message), file=sys.stderr)
    return code
