"""Plain-text formatting the commands share: counts, byte sizes, shapes and
aligned tables. Imports nothing from graphnet."""

__all__ = ["count", "plural", "size", "shape_text", "table"]


def count(n):
    """1234 -> '1,234'; None -> '?'."""
    return "?" if n is None else "{:,}".format(n)


def plural(n, word):
    """(1, 'op') -> '1 op'; (2, 'op') -> '2 ops'."""
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def size(n):
    """A byte count: '192 B', '2,524 B', '12.5 KiB', '1.5 MiB'; None -> '?'."""
    if n is None:
        return "?"
    if n < 10 << 10:
        return "{:,} B".format(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d B" % n


def shape_text(shape):
    """(2, 4) -> '(2, 4)', (8,) -> '(8,)'; None -> '?'."""
    return "?" if shape is None else str(tuple(int(d) for d in shape))


def table(header, rows, indent="  "):
    """Lines of an aligned table; the first column is left-aligned, the others
    right-aligned (numbers)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:],
                                                                          widths[1:])]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines
