"""pytest plugin: the device check of every op, driven by the per-op CPU tests.

    python -m pytest tests/ops -p tests.gpu.sweep

Every opcheck.run_op call of tests/ops (reference, shape, device and gradient
checks, bad-input tests) runs as written (numpy, virtual GPUs) and then again on a
real GPU through CuPy with the same inputs. Outputs must agree within the dtype's
tolerance; where the numpy run raised, the GPU run must raise the same error class
with the same first line, or, for a type refusal, the same class naming the same
found type (Caffe2's CPU and CUDA kernels worded these differently). Two device
differences Caffe2 had are counted as `cpu_only`, not as mismatches: a STRING
tensor refused on the GPU (HostOnlyTypeError), and float16 accepted by a CUDA
kernel that the CPU refuses, whose result must then match the numpy run on the
inputs cast to float32, within float16's tolerance. At the end a table per op
type is printed (and written to $OUT/gpu_op_sweep.txt), every registered op not in
EXCLUDED must have been exercised, and any mismatch fails the session.
"""

import os
import re
import signal
import traceback

import numpy as np

from graphnet import config, registry
from graphnet.errors import HostOnlyTypeError
from graphnet.executors.cuda import probe, settings
from tests import opcheck

# Ops the sweep does not run on a GPU, and why.
EXCLUDED = {
    "MPICreateCommonWorld": "needs MPI ranks (tests/distributed)",
    "MPIBroadcast": "needs MPI ranks", "MPIReduce": "needs MPI ranks",
    "MPIAllgather": "needs MPI ranks", "MPIAllreduce": "needs MPI ranks",
    "MPISendTensor": "needs MPI ranks", "MPIReceiveTensor": "needs MPI ranks",
}
_COLLECTIVE = ("one input per GPU: tests/gpu/test_gpu_runtime.py::test_nccl_* compares it "
               "with the sums and stacks written there")
EXCLUDED.update({op: _COLLECTIVE for op in ("NCCLAllreduce", "NCCLBroadcast", "NCCLReduce",
                                            "NCCLAllGather", "NCCLReduceScatter")})
_COPIES = ("run through a workspace, not run_op: tests/gpu/test_gpu_runtime.py::"
           "test_copies_between_logical_devices compares every copy with its source")
EXCLUDED.update({op: _COPIES for op in ("CopyCPUToGPU", "CopyGPUToCPU", "CopyFromCPUInput",
                                        "CopyOnDeviceLike", "EnsureCPUOutput")})
EXCLUDED["Free"] = ("run through a workspace: tests/gpu/test_gpu_runtime.py::"
                    "test_free_releases_gpu_blobs_and_the_next_run_recomputes_them")
# Random outputs: compared by shape and dtype only.
RANDOM = {"UniformFill", "UniformIntFill", "GaussianFill", "XavierFill", "MSRAFill",
          "Dropout"}
TOLERANCE = {"float16": (1e-2, 1e-2), "float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}

RESULTS = {}  # op type -> {"ok": n, "cpu_only": n, "fail": [text]}
_original = opcheck.run_op


def _entry(op_type):
    return RESULTS.setdefault(op_type, {"ok": 0, "cpu_only": 0, "fail": []})


def _cause(exc):
    return getattr(exc, "cause", None) or exc


def _first_line(exc):
    cause = _cause(exc)
    return "%s: %s" % (type(cause).__name__, str(cause).splitlines()[0] if str(cause) else "")


_FOUND_TYPE = re.compile(r"found (float16|float32|float64|int8|int16|int32|int64|uint8|"
                         r"uint16|bool|object)\b")


def _same_refusal(cpu_exc, gpu_exc):
    """Both runs refused the input alike: the same class and first line, or the same
    class and the same found type in a type refusal."""
    if type(_cause(gpu_exc)) is not type(_cause(cpu_exc)):
        return False
    if _first_line(gpu_exc) == _first_line(cpu_exc):
        return True
    cpu_found = _FOUND_TYPE.findall(str(_cause(cpu_exc)))
    return bool(cpu_found) and cpu_found == _FOUND_TYPE.findall(str(_cause(gpu_exc)))


def _half_on_gpu_only(op_type, inputs, outputs, device, args, cpu_exc, gpu_result):
    """A CUDA kernel took float16 the CPU kernel refuses (as Caffe2's did): compare it
    with the numpy run on float32 copies. None when it agrees, else the problem."""
    if not any(getattr(x, "dtype", None) == np.float16 for x in inputs):
        return "numpy raised %s; the GPU run did not" % _first_line(cpu_exc)
    wide = [x.astype(np.float32) if getattr(x, "dtype", None) == np.float16 else x
            for x in inputs]
    try:
        want = _original(op_type, wide, outputs, device=device, **args)
    except Exception as exc:
        return ("numpy raised %s on float16 and %s on float32 copies; the GPU run did "
                "not" % (_first_line(cpu_exc), _first_line(exc)))
    want = [w.astype(np.float16) if getattr(w, "dtype", None) == np.float32 else w
            for w in want]
    return _compare(op_type, want, gpu_result)


def _compare(op_type, want, got):
    if len(want) != len(got):
        return "%d outputs on numpy, %d on the GPU" % (len(want), len(got))
    for k, (w, g) in enumerate(zip(want, got)):
        if isinstance(w, bytes) or isinstance(g, bytes):
            if w != g:
                return "output %d: %r vs %r" % (k, w, g)
            continue
        w, g = np.asarray(w), np.asarray(g)
        if w.shape != g.shape or w.dtype != g.dtype:
            return "output %d: numpy %s%s, GPU %s%s" % (k, w.dtype, w.shape, g.dtype,
                                                         g.shape)
        if op_type in RANDOM:
            continue
        if w.dtype.kind in "fc":
            rtol, atol = TOLERANCE.get(w.dtype.name, (1e-4, 1e-5))
            if not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
                diff = np.nanmax(np.abs(g.astype(np.float64) - w.astype(np.float64)))
                return "output %d differs: max |diff| %.3g" % (k, diff)
        elif not np.array_equal(g, w):
            return "output %d differs (dtype %s)" % (k, w.dtype)
    return None


def _on_gpu(op_type, inputs, outputs, device, args):
    schema = registry.get(op_type)
    if "gpu" not in schema.device_kinds:
        _entry(op_type)["cpu_only"] += 1
        return "cpu_only", None
    saved = config.virtual_gpu_count()
    config.set_virtual_gpu_count(0)
    try:
        return "ran", _original(op_type, inputs, outputs,
                                device=0 if device is None else device, **args)
    except Exception as exc:  # compared with the numpy run's outcome
        return "raised", exc
    finally:
        config.set_virtual_gpu_count(saved)


def run_op_on_both(op_type, inputs, outputs=1, device=None, ws=None, return_ws=False,
                   **args):
    """opcheck.run_op, then the same op on a real GPU, compared."""
    try:
        result = _original(op_type, inputs, outputs, device=device, ws=ws,
                           return_ws=return_ws, **args)
    except Exception as cpu_exc:
        # A GPU-only op refused on the CPU proves nothing about the GPU kernel.
        cpu_only_refusal = device is None and "on the device 'CPU'" in str(cpu_exc)
        if op_type not in EXCLUDED and ws is None and not cpu_only_refusal:
            how, gpu = _on_gpu(op_type, inputs, outputs, device, args)
            entry = _entry(op_type)
            if how == "ran":
                problem = _half_on_gpu_only(op_type, inputs, outputs, device, args,
                                            cpu_exc, gpu)
                if problem:
                    entry["fail"].append(problem)
                else:
                    entry["cpu_only"] += 1
            elif how == "raised":
                if not _same_refusal(cpu_exc, gpu):
                    entry["fail"].append("numpy raised %s; GPU raised %s" % (
                        _first_line(cpu_exc), _first_line(gpu)))
                else:
                    entry["ok"] += 1
        raise
    if op_type in EXCLUDED or ws is not None:
        return result
    want = result[0] if return_ws else result
    how, gpu = _on_gpu(op_type, inputs, outputs, device, args)
    entry = _entry(op_type)
    if how == "raised" and isinstance(_cause(gpu), HostOnlyTypeError):
        entry["cpu_only"] += 1  # strings stay on the host, as in Caffe2
    elif how == "raised":
        entry["fail"].append("GPU raised %s\n%s" % (_first_line(gpu), "".join(
            traceback.format_exception(type(gpu), gpu, gpu.__traceback__)[-3:])))
    elif how == "ran":
        problem = _compare(op_type, want, gpu)
        if problem:
            entry["fail"].append(problem)
        else:
            entry["ok"] += 1
    return result


def _time_limit(signum, frame):
    raise KeyboardInterrupt("SIGTERM: the step's time limit (run.sh)")


def pytest_configure(config):
    # a step killed at its limit still reaches pytest_sessionfinish: a partial table
    signal.signal(signal.SIGTERM, _time_limit)
    probe.forget()
    if probe.load() is None:
        raise RuntimeError("tests.gpu.sweep needs a GPU: %s" % probe.why_unavailable())
    settings.set_gpu_map(4)
    opcheck.run_op = run_op_on_both


def pytest_sessionfinish(session, exitstatus):
    types = registry.registered_types()
    lines = ["%-58s %6s %8s %5s" % ("op", "ok", "cpu_only", "fail")]
    missing, failures = [], 0
    for op_type in types:
        entry = RESULTS.get(op_type)
        if op_type in EXCLUDED:
            lines.append("%-58s excluded: %s" % (op_type, EXCLUDED[op_type]))
            continue
        if entry is None:
            missing.append(op_type)
            lines.append("%-58s NOT EXERCISED by tests/ops" % op_type)
            continue
        failures += len(entry["fail"])
        lines.append("%-58s %6d %8d %5d" % (op_type, entry["ok"], entry["cpu_only"],
                                            len(entry["fail"])))
        for text in entry["fail"][:3]:
            lines.append("    " + text.replace("\n", "\n    "))
    lines.append("sweep: %d op types, %d compared runs, %d mismatches, %d not exercised"
                 % (len(types), sum(e["ok"] for e in RESULTS.values()), failures,
                    len(missing)))
    text = "\n".join(lines)
    print("\n" + text)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_op_sweep.txt"), "w") as f:
            f.write(text + "\n")
    if failures or missing:
        session.exitstatus = 1
