"""Convert a NetDef between the binary and the text format.

  graphnet convert predict_net.pb -o predict_net.pbtxt
  graphnet convert net.pbtxt -o net.pb
  graphnet convert net.pb -o net.out --to text

The output format comes from OUT's extension (.pb .bin .netdef: binary; .pbtxt
.prototxt .txt: text) or --to. The input format is told apart by its bytes. Op
types are not checked: any NetDef converts. Imports graphnet.cli's loading helpers.
"""

from graphnet.cli import CliError, EXIT_OK, loading
from graphnet.cli._format import plural

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("file", metavar="FILE", help="NetDef (binary or text)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="file to write")
    parser.add_argument("--to", choices=("text", "binary"),
                        help="output format (default: from OUT's extension)")


def run(args):
    fmt = args.to or loading.format_for_path(args.output)
    if fmt is None:
        raise CliError("%s: cannot tell the output format from the extension; name it "
                       ".pb or .pbtxt, or give --to text|binary" % args.output)
    net = loading.read_netdef(args.file)
    written = loading.write_netdef(net.netdef, args.output, fmt)
    print("%s -> %s (%s, {:,} bytes): net '%s', %s".format(written) % (
        net.path, args.output, fmt, net.netdef.name, plural(len(net.netdef.op), "op")))
    return EXIT_OK
