"""The fused-net kernels' common ground (graphnet.executors.fused).

A fused net is a program for one compiled loop (the "VM"): each instruction is an
opcode, its length, its op's position in the net, then integer operands. Blobs
live in three flat arenas by element type (float32, int32, int64); an array
operand is an offset into its arena, an index operand a (kind, offset) pair
(kind INT32 or INT64). Each op file defines its kernels next to its other
kernels:

    @vm_kernel
    def relu_vm(c, p, f4, i4, i8):  # operands start at c[p]; False: hand back
        ...

and helpers those kernels call with @vm_helper. Both stay plain Python until a
net is fused; then `compiled_kernels()` compiles them (numba, cached on disk) and
binds every helper's compiled form in its module, so kernels call compiled code.
The VM is generated from KERNELS (graphnet.executors.fused).
"""

import sys
import types


__all__ = ["vm_kernel", "vm_helper", "vm_bind", "KERNELS", "compiled_kernels",
           "F32_ARENA", "INT32", "INT64", "rows_in_range", "copy_vm",
           "block_copy_vm", "ints_equal_vm", "fill_zero_vm"]

F32_ARENA, INT32, INT64 = 0, 1, 2  # arena kinds (INT32/INT64 also index operand kinds)


KERNELS = []  # every VM kernel, in registration order (its opcode)
_HELPERS = []
_BINDINGS = []  # (module name, global name, provider of a compiled function)
_COMPILED = []


def vm_kernel(function):
    """Register a VM kernel (c, p, f4, i4, i8) -> bool."""
    KERNELS.append(function)
    return function


def vm_helper(function):
    """Register a plain function VM kernels call (compiled with them)."""
    _HELPERS.append(function)
    return function


def vm_bind(module_name, name, provider):
    """When kernels are compiled, the global `name` of module `module_name` becomes
    provider() (a compiled loop the interpreter also uses, e.g. SparseLengthsSum's)."""
    _BINDINGS.append((module_name, name, provider))


def compiled_kernels():
    """Every kernel compiled by numba (lazily, when the VM that calls them compiles;
    division by zero gives inf/NaN as numpy's, not Python's exception), helpers bound
    in their modules first; None without numba."""
    if not _COMPILED:
        try:
            import numba
        except ImportError:
            return None

        def jit(function):  # (not cached on their own: the VM's cache holds them)
            return numba.njit(nogil=True, error_model="numpy")(function)
        compiled = {function: jit(function) for function in _HELPERS}
        for name, module in list(sys.modules.items()):  # every module importing one
            if name.startswith("graphnet.ops") and module is not None:
                space = module.__dict__
                for key, value in list(space.items()):
                    if isinstance(value, types.FunctionType) and value in compiled:
                        space[key] = compiled[value]
        for module_name, name, provider in _BINDINGS:
            sys.modules[module_name].__dict__[name] = provider()
        _COMPILED.append([jit(k) for k in KERNELS])
    return _COMPILED[0]


@vm_helper
def rows_in_range(indices, n):
    """Every index in [0, n)."""
    for j in range(indices.shape[0]):
        if indices[j] < 0 or indices[j] >= n:
            return False
    return True


@vm_kernel
def copy_vm(c, p, f4, i4, i8):
    """arena[dst:dst + n] = arena[src:src + n] (kind, src, dst, n)."""
    kind, src, dst, n = c[p], c[p + 1], c[p + 2], c[p + 3]
    if kind == F32_ARENA:
        f4[dst:dst + n] = f4[src:src + n]
    elif kind == INT32:
        i4[dst:dst + n] = i4[src:src + n]
    else:
        i8[dst:dst + n] = i8[src:src + n]
    return True


@vm_kernel
def block_copy_vm(c, p, f4, i4, i8):
    """Columns [offset, offset + inner) of the (outer, width) view at `wide`, to or from
    the (outer, inner) array at `narrow` (narrow, wide, outer, width, offset, inner,
    into_wide): Concat writes its inputs into the wide view, Split reads them out."""
    narrow, wide, outer, width, offset, inner, into_wide = c[p], c[p + 1], c[p + 2], \
        c[p + 3], c[p + 4], c[p + 5], c[p + 6]
    for o in range(outer):
        w, s = wide + o * width + offset, narrow + o * inner
        if into_wide:
            f4[w:w + inner] = f4[s:s + inner]
        else:
            f4[s:s + inner] = f4[w:w + inner]
    return True


@vm_kernel
def ints_equal_vm(c, p, f4, i4, i8):
    """The int array (kind, offset, n) holds the n values that follow."""
    kind, offset, n = c[p], c[p + 1], c[p + 2]
    for j in range(n):
        value = i4[offset + j] if kind == INT32 else i8[offset + j]
        if value != c[p + 3 + j]:
            return False
    return True


@vm_kernel
def fill_zero_vm(c, p, f4, i4, i8):
    """float32 arena[offset:offset + n] = 0 (offset, n)."""
    f4[c[p]:c[p] + c[p + 1]] = 0
    return True
