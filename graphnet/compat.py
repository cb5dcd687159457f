"""Run unmodified Caffe2 scripts: `caffe2.python.*` and `caffe2.proto.*` resolve
to graphnet.

install() puts an import finder in front of sys.meta_path that answers any
`caffe2...` import with the graphnet module of the same path
(caffe2.python.core -> graphnet.core, caffe2.proto.caffe2_pb2 ->
graphnet.proto.caffe2_pb2, caffe2.python.modeling.initializers ->
graphnet.initializers). A module graphnet lacks fails with an ImportError
naming it.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["install", "uninstall", "target_of"]

# caffe2 module paths whose graphnet twin lives elsewhere.
_RENAMES = {
    "caffe2.python.modeling.initializers": "graphnet.initializers",
    "caffe2.python.modeling.parameter_info": "graphnet.parameter_info",
    "caffe2.python.modeling": "graphnet",
    "caffe2.python": "graphnet",
    "caffe2.proto": "graphnet.proto",
    "caffe2": "graphnet",
}


def target_of(fullname):
    """The graphnet module name standing in for a caffe2 module name."""
    if fullname in _RENAMES:
        return _RENAMES[fullname]
    for prefix in ("caffe2.python.", "caffe2.proto."):
        if fullname.startswith(prefix):
            return _RENAMES[prefix[:-1]] + "." + fullname[len(prefix):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _Caffe2Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "caffe2" and not fullname.startswith("caffe2."):
            return None
        alias = target_of(fullname)
        if alias is None or importlib.util.find_spec(alias) is None:
            raise ImportError(
                "graphnet has no equivalent of module '%s' (looked for '%s'). Fix: use "
                "the graphnet module that provides the API, or file an issue."
                % (fullname, alias), name=fullname)
        spec = importlib.util.spec_from_loader(fullname, _Alias(alias),
                                               is_package=True)
        spec.submodule_search_locations = []
        return spec


_finder = _Caffe2Finder()


def install():
    """Make `import caffe2...` resolve to graphnet in this process."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall():
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name in [n for n in sys.modules if n == "caffe2" or n.startswith("caffe2.")]:
        del sys.modules[name]
