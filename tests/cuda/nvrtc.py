"""Compile CUDA C with NVRTC through ctypes: no GPU, no CuPy, only libnvrtc
(pip package nvidia-cuda-nvrtc-cu12, in the [test] extra)."""

import ctypes
import glob
import importlib.util
import os

__all__ = ["find_libnvrtc", "compile_ptx", "NvrtcError"]


class NvrtcError(RuntimeError):
    pass


def find_libnvrtc():
    """Path of libnvrtc.so from the nvidia-cuda-nvrtc wheel, or None."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except ModuleNotFoundError:
        spec = None
    for root in (spec.submodule_search_locations if spec else []):
        found = sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")))
        found = [f for f in found if "builtins" not in f]
        if found:
            return found[0]
    return None


_lib = {}


def _nvrtc():
    if "lib" not in _lib:
        path = find_libnvrtc()
        _lib["lib"] = ctypes.CDLL(path) if path else None
    return _lib["lib"]


def compile_ptx(code, name="kernel.cu", arch="compute_90", options=("-std=c++14",)):
    """Compile `code`; returns the PTX text, raises NvrtcError with NVRTC's log."""
    lib = _nvrtc()
    prog = ctypes.c_void_p()
    status = lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(), 0,
                                    None, None)
    if status:
        raise NvrtcError("nvrtcCreateProgram failed with status %d" % status)
    try:
        opts = ["--gpu-architecture=%s" % arch] + list(options)
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if status:
            raise NvrtcError("NVRTC could not compile %s for %s:\n%s"
                             % (name, arch, log.value.decode(errors="replace")))
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
