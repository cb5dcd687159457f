"""Loaded (via PYTHONPATH) only by compare_dlrm.py's plot set, in both environments:
whenever a pydot graph is rendered to a file, its dot source is also saved next to
it as <file>.dot, so the two runs' graphs can be compared as text (the PDFs embed
creation dates)."""

try:
    import pydot
except ImportError:  # the run itself will report the missing pydot
    pydot = None

if pydot is not None:
    _write = pydot.Dot.write

    def _write_and_keep_source(self, path, *args, **kwargs):
        with open(str(path) + ".dot", "w") as f:
            f.write(self.to_string())
        return _write(self, path, *args, **kwargs)

    pydot.Dot.write = _write_and_keep_source
