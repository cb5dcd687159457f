"""Check a NetDef without running it and print every problem with its fix.

  graphnet check net.pb [--blobs-from init_net.pb] [--shape NAME=D0,D1 ...]
                        [--strict-devices]

Runs graphnet.analysis.validate: unknown op types, schema and argument errors,
undefined inputs, ops on devices they do not support, cross-device reads,
in-place mistakes, overwritten and unused outputs, missing external outputs and
shape errors. One line per finding: severity, [code], op index and type, blob,
message ending with the fix. Exit 1 if any finding is an error, else 0.
--blobs-from INIT: the blobs INIT creates exist before the run, with their
shapes and devices (what a predict net's init net provides).
Imports graphnet.analysis and graphnet.cli's loading helpers.
"""

from graphnet import analysis
from graphnet.cli import EXIT_FAILED, EXIT_OK, loading
from graphnet.cli._format import plural

__all__ = ["add_arguments", "run", "format_finding"]


def add_arguments(parser):
    parser.add_argument("file", metavar="FILE", help="NetDef (binary or text)")
    parser.add_argument("--blobs-from", metavar="INIT",
                        help="init net whose output blobs exist before the run")
    parser.add_argument("--shape", action="append", metavar="NAME=D0,D1[:DTYPE]",
                        help="shape of a blob fed before the run; repeatable")
    parser.add_argument("--inputs", action="append", metavar="FILE.npz",
                        help="arrays by blob name, fed before the run (their shapes)")
    parser.add_argument("--strict-devices", action="store_true",
                        help="cross-device reads are errors (as "
                             "GRAPHNET_STRICT_DEVICES=1)")


def format_finding(finding):
    """severity [code] op #i (Type) blob 'name': message (with its fix)."""
    where = []
    if finding.op_index is not None and not finding.message.startswith("op #"):
        where.append("op #%d (%s)" % (finding.op_index, finding.op_type))
    if finding.blob is not None and "'%s'" % finding.blob not in finding.message:
        where.append("blob '%s'" % finding.blob)
    return "%-7s [%s] %s%s" % (finding.severity, finding.code,
                               " ".join(where) + ": " if where else "", finding.message)


def run(args):
    net = loading.read_netdef(args.file)
    init = loading.read_netdef(args.blobs_from) if args.blobs_from else None
    known = loading.known_blobs(init, args.shape, args.inputs)
    blobs = {name: tuple(b) for name, b in known.items()}
    findings = analysis.validate(net.netdef, blobs=blobs,
                                 strict_devices=args.strict_devices)
    for finding in findings:
        print(format_finding(finding))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    what = "%s: %s" % (net.describe(), plural(len(net.netdef.op), "op"))
    if not findings:
        print("%s, no problems found" % what)
    else:
        print("%s, %s, %s" % (what, plural(errors, "error"), plural(warnings, "warning")))
    return EXIT_FAILED if errors else EXIT_OK
