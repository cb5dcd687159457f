"""GlobalInit's flag parsing: Caffe2 1.10's C10 flags (no gflags build).

Rules (c10/util/flags_use_no_gflags.cpp): `--name=value` or `--name value`;
arguments not starting with `--` are ignored. Caffe2 1.10 failed the whole call
on an unregistered name or a bool that is not true/false/1/0 (dlrm#9: scripts
broke on builds lacking a flag); graphnet reports those as problems and goes on
(GlobalInit warns and ignores them). Parsed values are kept (graphnet reads
caffe2_simple_net_benchmark_run_whole_net); the others have no effect. Imports
the flag table only.
"""

import sys

from graphnet._c10_flag_table import HELP

__all__ = ["registered_flags", "parse_flags", "get_flag", "GLOBAL_INIT_FAILED"]

GLOBAL_INIT_FAILED = ("[enforce fail at init.cc:90] success. Failed to run some init "
                      "functions for caffe2.")

_TYPES = {}    # name -> "bool" | "int" | "int64_t" | "double" | "std::string"
for _line in HELP.splitlines():
    _name, _rest = _line.strip().split(": (", 1)
    _TYPES[_name] = _rest.split(",", 1)[0]
del _line, _name, _rest

_values = {}   # flags set by GlobalInit, parsed to Python values

_TRUE = ("true", "True", "TRUE", "1")
_FALSE = ("false", "False", "FALSE", "0")


def registered_flags():
    """Flag name -> C++ type, for every flag Caffe2 1.10.2 registered."""
    return dict(_TYPES)


def get_flag(name, default=None):
    """The value GlobalInit set for flag `name`, else `default`."""
    return _values.get(name, default)


def _atoi(text):
    """C atoi/atoll: leading whitespace, sign and digits; anything else stops it."""
    text = text.lstrip()
    end = 1 if text[:1] in "+-" else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


def _atof(text):
    text = text.strip()
    for end in range(len(text), 0, -1):
        try:
            return float(text[:end])
        except ValueError:
            continue
    return 0.0


def _convert(kind, value, log):
    if kind == "bool":
        if value in _TRUE or value in _FALSE:
            return True, value in _TRUE
        log.append("C10 flag error: Cannot convert argument to bool: %s\nNote that if you "
                   "are passing in a bool flag, you need to explicitly specify it, like "
                   "--arg=True or --arg True. Otherwise, the next argument may be "
                   "inadvertently used as the argument, causing the above error." % value)
        return False, None
    if kind in ("int", "int64_t"):
        return True, _atoi(value)
    if kind == "double":
        return True, _atof(value)
    return True, value


def parse_flags(args):
    """Parse GlobalInit's argument list (args[0] is the program name).

    Returns (problems, log lines): problems lists each argument Caffe2 1.10 would
    have refused (the call failed there); every other flag is parsed and kept.
    `--help` anywhere in an argument prints the flag list to stdout and exits the
    process with status 0, as Caffe2 did.
    """
    args = [str(a) for a in args]
    problems = []
    if not args:
        return problems, []
    log = ["Parsing commandline arguments for c10."]
    i = 1
    while i < len(args):
        arg = args[i]
        if "--help" in arg:
            sys.stdout.write("(Usage message not set.)\nArguments: \n" + HELP)
            sys.stdout.flush()
            sys.exit(0)
        if not arg.startswith("--"):
            log.append("C10 flag: commandline argument does not match --name=var or "
                       "--name format: %s. Ignoring this argument." % arg)
            i += 1
            continue
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        else:
            key = arg[2:]
            i += 1
            if i == len(args):
                problems.append("C10 flag: reached the last commandline argument, but I "
                                "am expecting a value for %s" % arg)
                break
            value = args[i]
        if key not in _TYPES:
            problems.append("C10 flag: unrecognized commandline argument: %s" % arg)
            i += 1
            continue
        ok, parsed_value = _convert(_TYPES[key], value, log)
        if not ok:
            problems.append("C10 flag: illegal argument: %s (%s)" % (arg, log.pop()))
            i += 1
            continue
        _values[key] = parsed_value
        i += 1
    return problems, log + problems
