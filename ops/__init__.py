"""graphnet's operator library, installed as `graphnet.ops`.

One module per op family; each op's schema, shape rule, kernels and gradient
maker live together in its family module. Every module in this package is
imported here, so a new family is one new file.
"""

import importlib
import pkgutil

__all__ = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(__name__ + "." + _info.name)
        __all__.append(_info.name)
