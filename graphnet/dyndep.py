"""caffe2.python.dyndep: loading operator libraries.

graphnet's operators are Python modules, so a Caffe2 C++ library path or Buck
target (DLRM passes "//caffe2/caffe2/contrib/nccl:nccl_ops") is accepted and
ignored exactly as Caffe2 ignored a non-file; a Python file is imported,
which registers the ops it defines.
"""

import importlib.util
import os

__all__ = ["InitOpsLibrary", "GetImportedOpsLibraries"]

_IMPORTED_DYNDEPS = set()


def InitOpsLibrary(name, trigger_lazy=True):
    """Load an op library: a .py file of graphnet ops is imported; anything else
    that is not a file prints Caffe2's notice and is ignored."""
    if not os.path.exists(name):
        print("Ignoring {} as it is not a valid file.".format(name))
        return None
    if name.endswith(".py"):
        module_name = "graphnet_opslib_" + os.path.splitext(os.path.basename(name))[0]
        spec = importlib.util.spec_from_file_location(module_name, name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _IMPORTED_DYNDEPS.add(name)
        return None
    raise RuntimeError(
        "InitOpsLibrary('%s'): graphnet cannot load C++ Caffe2 operator libraries; "
        "its ops are Python (see ops/). Fix: port the op to a graphnet op module and "
        "pass that .py file." % name)


def GetImportedOpsLibraries():
    return _IMPORTED_DYNDEPS
