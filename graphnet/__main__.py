"""The `graphnet` command (also `python -m graphnet`).

`run SCRIPT [ARGS...]` / `run -m MODULE [ARGS...]` runs a legacy Caffe2 script
unmodified, with `caffe2.*` imports served by graphnet. The NetDef tools
(inspect, check, draw, convert, run-net) live in graphnet.cli, one module each,
imported only when their command runs.
"""

import runpy
import sys

from graphnet import cli, compat

__all__ = ["main"]

USAGE = """usage: graphnet run SCRIPT [ARGS...]
       graphnet run -m MODULE [ARGS...]

Runs a Caffe2 script unmodified: `from caffe2.python import core, workspace`
and `from caffe2.proto import caffe2_pb2` resolve to graphnet.
Environment: GRAPHNET_VIRTUAL_GPUS=N emulates N GPUs with numpy;
GRAPHNET_STRICT_DEVICES=1 turns cross-device reads into errors.
Under `mpiexec -n R` each rank runs the ops of its devices (gpu_d on rank
d // GRAPHNET_DEVICES_PER_RANK); see graphnet/distributed/."""


def run(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    from graphnet.distributed import launcher
    if launcher.under_mpi():  # one rank of `mpiexec -n R python -m graphnet run ...`
        return launcher.run_rank(argv, _run_script)
    return _run_script(argv)


def _run_script(argv):
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


def _tool(name):
    return lambda argv: cli.main(name, argv)


COMMANDS = dict({"run": run}, **{name: _tool(name) for name in cli.COMMANDS})


def usage():
    lines = ["usage: graphnet COMMAND [ARGS...]   (graphnet COMMAND --help for more)", "",
             "commands:",
             "  %-9s %s" % ("run", "run a legacy Caffe2 script with graphnet as caffe2")]
    lines += ["  %-9s %s" % (name, text) for name, (_, text) in cli.COMMANDS.items()]
    lines += ["", "FILE is a NetDef in binary or text format (told apart by its bytes); "
              "inspect and", "run-net also take a Caffe2 model directory (init_net.pb + "
              "predict_net.pb).", "Exit codes: 0 done, 1 errors found or the run failed, "
              "2 usage or file errors."]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print("graphnet: unknown command '%s'" % argv[0], file=sys.stderr)
        print(usage())
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
