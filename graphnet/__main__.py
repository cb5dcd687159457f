"""`python -m graphnet run SCRIPT [ARGS...]` / `run -m MODULE [ARGS...]`: run a
legacy Caffe2 script unmodified, with `caffe2.*` imports served by graphnet."""

import argparse
import runpy
import sys

from graphnet import compat

__all__ = ["main"]

USAGE = """usage: graphnet run SCRIPT [ARGS...]
       graphnet run -m MODULE [ARGS...]

Runs a Caffe2 script unmodified: `from caffe2.python import core, workspace`
and `from caffe2.proto import caffe2_pb2` resolve to graphnet.
Environment: GRAPHNET_VIRTUAL_GPUS=N emulates N GPUs with numpy;
GRAPHNET_STRICT_DEVICES=1 turns cross-device reads into errors."""


def run(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    compat.install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("graphnet run -m: missing module name\n" + USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, _script_dir(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


def _script_dir(path):
    import os
    return os.path.dirname(os.path.abspath(path))


COMMANDS = {"run": run}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="graphnet", description=__doc__)
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.print_help()
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
