"""Compile CUDA C with NVRTC through ctypes: no GPU, no CuPy, only libnvrtc (the
[test] extra installs CUDA 12's and CUDA 13's: GPU images run either)."""

import ctypes
import glob
import importlib.util
import os

__all__ = ["find_libnvrtc", "compile_ptx", "NvrtcError"]


class NvrtcError(RuntimeError):
    pass


# CUDA major version -> the package of its NVRTC wheel: nvidia-cuda-nvrtc-cu12
# (nvidia/cuda_nvrtc/lib/libnvrtc.so.12) and nvidia-cuda-nvrtc 13 (nvidia/cu13/lib)
WHEELS = {"12": "nvidia.cuda_nvrtc", "13": "nvidia.cu13"}
DEFAULT = "12"


def find_libnvrtc(version=DEFAULT):
    """Path of libnvrtc.so of CUDA `version` from its wheel, or None."""
    try:
        spec = importlib.util.find_spec(WHEELS[version])
    except ModuleNotFoundError:
        spec = None
    for root in (spec.submodule_search_locations if spec else []):
        found = sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")))
        found = [f for f in found if "builtins" not in f]
        if found:
            return found[0]
    return None


_lib = {}


def _nvrtc(version):
    if version not in _lib:
        path = find_libnvrtc(version)
        if path:  # its builtins first: some releases find them only on the loader's path
            for builtins in glob.glob(os.path.join(os.path.dirname(path),
                                                   "libnvrtc-builtins.so*")):
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        _lib[version] = ctypes.CDLL(path) if path else None
    return _lib[version]


def compile_ptx(code, name="kernel.cu", arch="compute_90", options=("-std=c++14",),
                version=DEFAULT):
    """Compile `code` with CUDA `version`'s NVRTC; returns the PTX text, raises
    NvrtcError with NVRTC's log."""
    lib = _nvrtc(version)
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
