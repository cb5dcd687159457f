"""Hot CPU nets run as one compiled call: the fused plan.

On nets of tiny arrays (DLRM's test configs: 61 ops on a few floats each) the
interpreter's cost is the net: each op is a Python closure plus 1-5 numpy calls,
5-15 us, where Caffe2's C++ executor spent ~2 us. Once a net has run
`config.fuse_after()` times (default 50) with the same input signature, and every
op of it has a lowering (`OpSchema.fused`), the net becomes a program for one
compiled loop (graphnet.ops._fused: the VM and its kernels, compiled by numba
once per installation and cached on disk): its blobs move into three flat arenas
(float32, int32, int64) and each run is one call.

What stays exactly as in the interpreter:
* The first runs, and any run whose inputs changed shape, dtype or device, go
  through the interpreter; so every shape and dtype check of every op ran for
  this signature before the program exists.
* Value checks (index bounds, lengths, split sizes, counters) run in the kernels
  every time; when one fails the program stops before that op and the
  interpreter runs the rest of the net from it, which raises Caffe2's error (or
  computes the result) with the blobs of earlier ops already in place.
* Blobs hold views of the arenas, written in place run after run as Caffe2 reused
  its output tensors; fed inputs are copied in. Should anything else hold an
  arena view (another net's op returned one), the arenas are copied first, so the
  other holder keeps its values, as with the interpreter's fresh arrays.
* Results equal the interpreter's within float32 rounding: sums run in order,
  without fused multiply-adds; the embedding and scatter loops are the
  interpreter's own compiled loops.

Lowerings live with their ops (ops/*.py, "fused lowering" sections).
"""

import hashlib
import importlib.util
import logging
import os
import sys
import tempfile
import time
from math import prod
from operator import attrgetter, gt, is_

import numpy as np

from graphnet import config
from graphnet.registry import TensorInfo

__all__ = ["FusedOp", "maybe_run_fused", "fused_state", "FusionInfo"]

log = logging.getLogger(__name__)

HANDED_BACK = -2  # the inputs are not what the program was built for
DONE = -1
_KINDS = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.int64): 2}
_DTYPES = [np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)]
_MAX_REALLOCATIONS = 3
_MAX_VARIANTS = 8  # programs per net (input signatures: batch sizes, bag lengths)
# Nets whose blobs outgrow this stay interpreted: their ops are big enough that the
# interpreter's overhead does not show, and moving GBs of tables into arenas would.
_MAX_ARENA_BYTES = 64 << 20


class FusedOp(object):
    """What a lowering sees of one op, and where it writes its instructions.

    in_info / out_info: TensorInfo (shape, dtype) of inputs and outputs as
    recorded; args: parsed arguments; step: the compiled Step; recorded: each
    output's value from the recording run when small (else None). `off(k)` /
    `out(k)`: arena offset of input / output k; `index(k)`: (kind, offset) of an
    int32/int64 input. A lowering calls `emit`, and returns True, or False to
    decline.
    """

    def __init__(self, program, step, position, ins, outs, in_info, out_info, recorded):
        self._program, self.step, self.position = program, step, position
        self._ins, self._outs = ins, outs
        self.in_info, self.out_info, self.recorded = in_info, out_info, recorded
        self.args = step.args
        self.code = []

    def off(self, k):
        return self._ins[k][1]

    def out(self, k):
        return self._outs[k][1]

    def index(self, k):
        return self._ins[k]

    def emit(self, kernel, *operands):
        """One instruction: `kernel` (a registered VM kernel) over `operands` (ints)."""
        opcode = self._program.opcode(kernel)
        self.code.extend([opcode, 3 + len(operands), self.position])
        self.code.extend(int(v) for v in operands)

    def distinct(self):
        """True when no output is also an input (in-place ops are elementwise only)."""
        return not set(self._ins) & set(self._outs)

    def all_dtypes(self, *dtypes):
        wanted = {np.dtype(d) for d in dtypes}
        return all(i.dtype in wanted for i in self.in_info + self.out_info)

    def same_sizes(self, inputs=None):
        """The listed inputs (default all) hold as many elements as output 0."""
        size = prod(self.out_info[0].shape)
        inputs = range(len(self.in_info)) if inputs is None else inputs
        return all(prod(self.in_info[k].shape) == size for k in inputs)

    def size(self, k=0):
        return prod(self.out_info[k].shape)

    def f32_constant(self, value):
        """Arena offset of a float32 constant (a scalar argument, as C++ float)."""
        return self._program.constant(np.array([value], np.float32))[1]

    def write_recorded(self, out):
        """Output `out` := its recorded value (False when none was kept)."""
        from graphnet.ops._fused import copy_vm
        value = self.recorded[out]
        if value is None or value.dtype not in _KINDS:
            return False
        kind, offset = self._program.constant(value)
        self.emit(copy_vm, kind, offset, self._outs[out][1], value.size)
        return True


class _Arenas(object):
    """One plan's blob storage, shared by its programs: a slot per (blob, shape,
    dtype), so a blob whose shape every program agrees on (the parameters) keeps
    one array whichever program runs, and each slot has one view that its blob
    holds. Grows when a program for new input shapes needs new slots."""

    def __init__(self):
        self.sizes = [0, 0, 0]
        self.slots = {}  # key -> (kind, offset, TensorInfo, blob, device)
        self.arenas = [np.empty(1, d) for d in _DTYPES]
        self.views = {}
        self.arena_refs = None
        self.programs = []  # every _Fused using these arenas

    def slot(self, key, info, blob=None, device=None):
        if key not in self.slots:
            kind = _KINDS[info.dtype]
            self.slots[key] = (kind, self.sizes[kind], info, blob, device)
            self.sizes[kind] += prod(info.shape)
        return self.slots[key][:2]

    def constant(self, value):
        return self.slot(("constant", len(self.slots)), TensorInfo(value.shape, value.dtype),
                         None, value.reshape(-1).copy())

    def nbytes(self):
        return sum(n * d.itemsize for n, d in zip(self.sizes, _DTYPES))

    def materialize(self, copy=False):
        """New arenas when slots outgrew them (or `copy`): old contents kept, a view
        per slot, blobs holding an old view given the new one."""
        if copy or any(len(a) < n for a, n in zip(self.arenas, self.sizes)):
            old = self.arenas
            self.arenas = [np.empty(max(n, 1), d) for n, d in zip(self.sizes, _DTYPES)]
            for new, previous in zip(self.arenas, old):
                n = min(len(new), len(previous))
                new[:n] = previous[:n]
            del old
        self._new_views()
        for program in self.programs:
            program.bind()
        # measured here, with no stray view alive: each arena is referenced by our list
        # and by its views; more, later, means another holder
        self.arena_refs = self.measure_arenas()

    def _new_views(self):
        old = self.views
        self.views = {}
        for key, (kind, offset, info, blob, extra) in self.slots.items():
            view = self.arenas[kind][offset:offset + prod(info.shape)].reshape(info.shape)
            if blob is None:  # a constant: its values
                view[...] = extra.reshape(info.shape)
            else:
                if key in old and blob.value is old[key]:
                    blob.value = view
                self.views[key] = view

    def measure_arenas(self):
        return list(map(sys.getrefcount, self.arenas))


class _Program(object):
    """The instructions of one fused program being written."""

    def __init__(self, kernels, arenas):
        self._opcodes = {k: i for i, k in enumerate(kernels)}
        self.arenas = arenas
        self.code = []

    def opcode(self, kernel):
        return self._opcodes[kernel]

    def constant(self, value):
        return self.arenas.constant(value)


class FusionInfo(object):
    """Whether a plan runs fused, and why not (a plan's `fusion` attribute: state
    "interpreted" until it is hot, then "fused" or "declined" with the reason; counts
    of fused runs, hand-backs to the interpreter and arena copies)."""

    def __init__(self):
        self.state = "interpreted"  # -> "fused" or "declined"
        self.reason = ""
        self.compile_seconds = None
        self.fused_runs = 0
        self.handbacks = 0
        self.reallocations = 0

    def __repr__(self):
        return "FusionInfo(%s%s)" % (self.state, ": " + self.reason if self.reason else "")


_value, _device = attrgetter("value"), attrgetter("device")


class _Fused(object):
    """One program for one input signature over the plan's arenas."""

    def __init__(self, vm, code, arenas, keys, blobs, n_ext):
        self.vm, self.code = vm, np.asarray(code, dtype=np.int64)
        self.arenas, self.keys, self.blobs, self.n_ext = arenas, keys, blobs, n_ext
        self.devices = [arenas.slots[k][4] for k in keys]
        self.views, self.view_refs = None, None

    def bind(self):
        """This program's views (after the arenas changed) and their reference counts
        with every blob holding its view."""
        self.views = [self.arenas.views[k] for k in self.keys]
        counts = list(map(sys.getrefcount, self.views))
        holds = list(map(is_, map(_value, self.blobs), self.views))
        self.view_refs = [c - h + 1 for c, h in zip(counts, holds)]

    def _stale(self):
        """Positions of the blobs not holding their view (fed since, or left by the
        interpreter or another program), found in one C-level pass."""
        held = list(map(is_, map(_value, self.blobs), self.views))
        return [k for k, same in enumerate(held) if not same]

    def adopt(self):
        """Let every blob hold its view, copying the inputs in (and outputs that fit:
        the run that recorded the net computed them). False, before anything moved,
        when an input does not fit this program (its dtype or device differs)."""
        return self._refresh(self._stale(), outputs_too=True)

    def _fits(self, stale):
        n_ext, blobs, views, devices = self.n_ext, self.blobs, self.views, self.devices
        for k in stale:
            if k >= n_ext:
                break
            value, view = blobs[k].value, views[k]
            if (type(value) is not np.ndarray or value.shape != view.shape
                    or value.dtype != view.dtype or blobs[k].device != devices[k]):
                return False
        return True

    def run(self, info, adopted=False):
        """DONE, HANDED_BACK, or the position of the op the interpreter takes over at
        (`adopted`: every blob was just given its view)."""
        stale = () if adopted else self._stale()
        if stale and not self._refresh(stale):
            return HANDED_BACK
        arenas = self.arenas
        # more references than when bound: something else holds a view
        if (any(map(gt, map(sys.getrefcount, self.views), self.view_refs))
                or any(map(gt, arenas.measure_arenas(), arenas.arena_refs))):
            if not self._reallocate(info):
                return HANDED_BACK
        a = arenas.arenas
        return self.vm(self.code, a[0], a[1], a[2])

    def _refresh(self, stale, outputs_too=False):
        """Copy fed inputs in (`outputs_too`: outputs whose shape fits as well) and
        point the `stale` blobs back at their views; False (before copying anything)
        when an input no longer fits this program."""
        if not self._fits(stale):
            return False
        n_ext, blobs, views, devices = self.n_ext, self.blobs, self.views, self.devices
        for k in stale:
            view, value = views[k], blobs[k].value
            if k < n_ext or (outputs_too and isinstance(value, np.ndarray)
                             and value.shape == view.shape):
                view[...] = value
            blobs[k].value, blobs[k].device = view, devices[k]
        return True

    def _reallocate(self, info):
        """Something else holds an arena view: it keeps the old arenas, we copy."""
        info.reallocations += 1
        if info.reallocations > _MAX_REALLOCATIONS:
            info.state, info.reason = "declined", (
                "its blobs' arrays are shared with other holders run after run")
            return False
        self.arenas.materialize(copy=True)
        return True


def fused_state(plan):
    """The plan's FusionInfo (created on first use)."""
    info = getattr(plan, "fusion", None)
    if info is None:
        info = plan.fusion = FusionInfo()
        plan.fused = None
        plan.fused_variants = {}  # input signature -> _Fused
        plan.fused_arenas = _Arenas()
        plan.fuse_count = 0  # runs before the first program
        plan.fuse_counts = {}  # input signature -> runs it had no program
    return info


def maybe_run_fused(plan, interpret):
    """Run `plan` once: fused when a program fits these inputs, else through
    `interpret(plan)`, counting runs towards fusing (per input signature)."""
    info = fused_state(plan)
    fused = plan.fused
    if fused is not None and info.state == "fused":
        # one program: try it; several (batches cycling through shapes): pick by shapes
        status = fused.run(info) if len(plan.fused_variants) == 1 else HANDED_BACK
        if status == HANDED_BACK and info.state == "fused":
            signature = _signature(fused.blobs[:fused.n_ext])
            other = plan.fused_variants.get(signature)
            if other is None:  # interpret; compile for it once it recurs enough
                info.handbacks += 1
                counts = plan.fuse_counts
                counts[signature] = counts.get(signature, 0) + 1
                if counts[signature] < _later_threshold() or len(
                        plan.fused_variants) >= _MAX_VARIANTS:
                    return interpret(plan)
                return _record_and_fuse(plan, info)
            plan.fused = fused = other
            status = fused.run(info, adopted=True) if fused.adopt() else HANDED_BACK
        if status == DONE:
            info.fused_runs += 1
            return
        if status != HANDED_BACK:
            return _interpret_from(plan, status)
        return interpret(plan)
    if info.state == "declined":
        return interpret(plan)
    plan.fuse_count += 1
    if plan.fuse_count < config.fuse_after():
        return interpret(plan)
    _record_and_fuse(plan, info)


def _later_threshold():
    """A net already fused gets a program for another input signature sooner (its
    batches cycle through a few shapes: bag lengths, a last smaller batch)."""
    return max(1, config.fuse_after() // 10)


def _signature(blobs):
    """The input shapes a program is chosen by (a dtype or device that differs too is
    caught by the program's own check, and the net interpreted)."""
    return tuple(getattr(b.value, "shape", None) for b in blobs)


def _interpret_from(plan, position):
    """The interpreter's closures from op `position` on (its errors are the op's)."""
    from graphnet.executors.run import runners
    with np.errstate(all="ignore"):
        for run in runners(plan)[position:]:
            run()


def _record_and_fuse(plan, info):
    """Run the plan op by op recording every input and output's shape and dtype, then
    build its program (or decline, saying why)."""
    from graphnet.executors.run import runners
    records = []
    with np.errstate(all="ignore"):
        for step, run in zip(plan.steps, runners(plan)):
            ins = [_info(b.value) for b in step.in_blobs]
            run()
            records.append((ins, [_info(b.value) for b in step.out_blobs],
                            [_small_copy(b.value) for b in step.out_blobs]))
    start = time.perf_counter()
    try:
        fused = _compile(plan, records)
    except _Decline as exc:
        info.state, info.reason = "declined", str(exc)
        log.debug("net '%s' stays interpreted: %s", plan.name, exc)
        return
    arenas = plan.fused_arenas
    arenas.programs.append(fused)
    arenas.materialize()  # binds every program (the new one too)
    fused.adopt()  # (fits: the recording run made these values)
    for program in arenas.programs:
        program.bind()  # reference counts with the blobs now holding these views
    plan.fused = fused
    plan.fused_variants[_signature(fused.blobs[:fused.n_ext])] = fused
    info.state, info.reason = "fused", ""
    info.compile_seconds = time.perf_counter() - start


def _small_copy(value):
    """A copy of a small output as this run made it (constant outputs are written from
    it: fills, split sizes, a fixed learning rate)."""
    if isinstance(value, np.ndarray) and value.size <= 4096:
        return value.copy()
    return None


def _info(value):
    if not isinstance(value, np.ndarray):
        return None
    return TensorInfo(value.shape, value.dtype)


class _Decline(Exception):
    pass


def _eligible(plan):
    if not config.fast_kernels():
        raise _Decline("fast kernels are off (the plain kernels are the reference)")
    if getattr(plan, "runner", None) is not None:
        raise _Decline("placed on several ranks")
    if plan.cross_device_reads:
        raise _Decline("it reads blobs across devices")
    for step in plan.steps:
        if step.backend.name != "numpy":
            raise _Decline("op #%d (%s) runs on %s" % (step.index, step.op_type,
                                                       step.backend.name))
        if step.schema.fused is None:
            raise _Decline("op #%d (%s) has no fused lowering" % (step.index,
                                                                  step.op_type))


def _compile(plan, records):
    """The _Fused for the recorded signature (raises _Decline)."""
    _eligible(plan)
    from graphnet.ops import _fused as kernels_module
    if kernels_module.compiled_kernels() is None:
        raise _Decline("numba is not installed (the [fast] extra)")
    try:  # numba's np.dot calls BLAS through scipy; without it the call aborts Python
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        raise _Decline("scipy is not installed (the [fast] extra): the kernels' products "
                       "need its BLAS")
    vm = _vm()
    arenas = plan.fused_arenas
    program = _Program(kernels_module.KERNELS, arenas)
    infos = {}  # blob name -> TensorInfo in this program
    ext, owned = [], []  # blob names in order
    blobs = {}
    for position, (step, (in_info, out_info, values)) in enumerate(zip(plan.steps, records)):
        if None in in_info or None in out_info:
            raise _Decline("op #%d (%s) has a non-array blob" % (step.index, step.op_type))
        for i in list(in_info) + list(out_info):
            if i.dtype not in _KINDS:
                raise _Decline("op #%d (%s) has a %s blob" % (step.index, step.op_type,
                                                               i.dtype.name))
        ins, outs = [], []
        for names, step_blobs, step_infos, order in (
                (step.in_names, step.in_blobs, in_info, ext),
                (step.out_names, step.out_blobs, out_info, owned)):
            slots = ins if order is ext else outs
            for name, blob, i in zip(names, step_blobs, step_infos):
                if name not in infos:
                    infos[name], blobs[name] = i, blob
                    order.append(name)
                elif infos[name] != i:
                    raise _Decline("blob '%s' changes shape or type within the net" % name)
                slots.append(arenas.slot((name, i), i, blob, blob.device))
        op = FusedOp(program, step, position, ins, outs, list(in_info), list(out_info),
                     values)
        if not step.schema.fused(op):
            raise _Decline("op #%d (%s): its lowering does not cover %s" % (
                step.index, step.op_type, ", ".join(
                    "%s%s" % (i.dtype.name, list(i.shape)) for i in in_info)))
        program.code.extend(op.code)
    if arenas.nbytes() > _MAX_ARENA_BYTES:
        raise _Decline("its blobs hold over %d MB: the interpreter's overhead does not "
                       "show there" % (_MAX_ARENA_BYTES >> 20))
    names = ext + owned
    return _Fused(vm, program.code, arenas, [(n, infos[n]) for n in names],
                  [blobs[n] for n in names], len(ext))


# --- the VM: one loop over the program, generated from the kernel list -------------

_VM = []


def _vm():
    """The compiled VM (built once per process; numba caches it on disk, keyed by
    the kernels' source)."""
    if not _VM:
        try:
            log.info("loading the fused-net VM (compiled once per installation: ~30 s "
                     "on 2 cores; then cached under %s)", _cache_dir())
            vm = _load_vm()
            empty = [np.zeros(1, d) for d in _DTYPES]
            vm(np.zeros(0, np.int64), *empty)  # compiles (or loads) it now
        except Exception as exc:  # e.g. numba's np.dot without scipy
            _VM.append(_Decline("the VM could not be compiled (%s: %s)" % (
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")))
        else:
            _VM.append(vm)
    if isinstance(_VM[0], _Decline):
        raise _VM[0]
    return _VM[0]


def _vm_source(kernels):
    lines = ["# Generated by graphnet.executors.fused: the fused-net VM.",
             "import numba", "from graphnet.ops import _fused",
             "K = _fused.compiled_kernels()"]
    lines += ["k%d = K[%d]" % (i, i) for i in range(len(kernels))]
    lines += ["", "", "@numba.njit(nogil=True, cache=True)",
              "def vm(c, f4, i4, i8):",
              "    p = 0",
              "    while p < c.shape[0]:",
              "        op = c[p]"]
    for i, kernel in enumerate(kernels):
        lines.append("        %s op == %d:  # %s.%s" % ("if" if i == 0 else "elif", i,
                                                     kernel.__module__, kernel.__name__))
        lines.append("            ok = k%d(c, p + 3, f4, i4, i8)" % i)
    lines += ["        else:", "            return -3",
              "        if not ok:", "            return c[p + 2]",
              "        p += c[p + 1]", "    return -1", ""]
    return "\n".join(lines)


def _load_vm():
    from graphnet.ops import _fused as kernels_module
    kernels = kernels_module.KERNELS
    text = _vm_source(kernels)
    # Keyed by the source of every op module: the cached VM holds its kernels' code,
    # and that of every loop they call, whichever file it lives in.
    digest = hashlib.sha1(text.encode())
    folder = os.path.dirname(os.path.abspath(kernels_module.__file__))
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as handle:
                digest.update(handle.read())
    digest.update(np.__version__.encode())
    name = "graphnet_fused_vm_%s" % digest.hexdigest()[:16]
    path = os.path.join(_cache_dir(), name + ".py")
    if not os.path.exists(path):
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's disk cache finds the function's module by name
    spec.loader.exec_module(module)
    return module.vm


def _cache_dir():
    """GRAPHNET_CACHE_DIR, else ~/.cache/graphnet, else a temp folder."""
    for path in (os.environ.get("GRAPHNET_CACHE_DIR"),
                 os.path.join(os.path.expanduser("~"), ".cache", "graphnet"),
                 os.path.join(tempfile.gettempdir(), "graphnet-cache")):
        if not path:
            continue
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise _Decline("no writable cache folder for the compiled VM")
