"""Operator schemas, kernels and gradient makers, keyed by op type.

One `OpSchema` holds everything about an op: input/output counts, in-place
rules, typed arguments with defaults, device placement of its inputs and
outputs, the shape/type rule, kernels per backend, and the gradient maker.
Op families under `ops/` create schemas and fill them with decorators:

    RELU = OpSchema("Relu", inputs=1, outputs=1, allow_inplace={(0, 0)})

    @RELU.shape
    def _(args, x):
        return [x]

    @RELU.kernel
    def relu(ctx, args, x):
        return ctx.xp.maximum(x, 0)

Imports numpy, graphnet.errors and graphnet.devices only.
"""

import difflib
import importlib
import importlib.util
import logging
import os
import sys
from collections import namedtuple

import numpy as np

from graphnet.devices import CPU
from graphnet.errors import (ArgumentError, EnforceError, SchemaError,
                             UnknownOperatorError, enforce)

__all__ = ["Arg", "OpArgs", "OpSchema", "TensorInfo", "KernelContext",
           "register", "get", "lookup", "registered_types", "is_registered",
           "declare_graph_safe",
           "enforce", "EnforceError", "INF"]

log = logging.getLogger("graphnet")

INF = None  # upper bound meaning "no limit" in input/output counts


class TensorInfo(namedtuple("TensorInfo", ["shape", "dtype"])):
    """Static shape (tuple of ints) and numpy dtype of a blob; what shape rules trade."""

    __slots__ = ()

    def __new__(cls, shape, dtype=np.float32):
        return super().__new__(cls, tuple(int(d) for d in shape), np.dtype(dtype))

    @classmethod
    def of(cls, array):
        return cls(array.shape, array.dtype)


# --- arguments -----------------------------------------------------------------

# kind -> (proto field, "what the field holds" for messages)
_ARG_FIELDS = {
    "int": "i", "bool": "i", "float": "f", "string": "s",
    "ints": "ints", "floats": "floats", "strings": "strings",
    "tensor": "t", "tensors": "tensors", "net": "n", "nets": "nets",
}
_SINGULAR = {"i", "f", "s", "t", "n"}


class Arg(object):
    """One typed operator argument: name, kind (see _ARG_FIELDS or 'scalar'), default.

    kind 'scalar' accepts whichever of f/i/s is set (ConstantFill's `value`).
    """

    __slots__ = ("name", "kind", "default", "required")

    def __init__(self, name, kind, default=None, required=False):
        if kind not in _ARG_FIELDS and kind != "scalar":
            raise ValueError("unknown argument kind %r for %r" % (kind, name))
        self.name, self.kind, self.default, self.required = name, kind, default, required


class OpArgs(object):
    """Parsed, typed arguments of one OperatorDef: `args.axis`, `args.has('axis')`.

    `args.field(name)` tells which proto field held a 'scalar' argument;
    `args._num_inputs` / `args._num_outputs` are the op's input and output
    counts (shape rules of ops with optional outputs need them); `args._def` is
    the OperatorDef, for arg_checks that read it as Caffe2's constructors did.
    """

    def __init__(self, values, present, fields):
        self.__dict__.update(values)
        self._present = present
        self._fields = fields

    def has(self, name):
        return name in self._present

    def field(self, name):
        return self._fields.get(name)

    def __repr__(self):
        shown = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return "OpArgs(%r)" % shown


def _arg_value(arg, field):
    if field in ("ints", "floats", "strings", "tensors", "nets"):
        values = list(getattr(arg, field))
        if field == "strings":
            return [v.decode("utf-8", "surrogateescape") for v in values]
        return values
    value = getattr(arg, field)
    if field == "s":
        return value.decode("utf-8", "surrogateescape")
    return value


def _present_field(arg, field):
    if field in _SINGULAR:
        return arg.HasField(field)
    return len(getattr(arg, field)) > 0


# --- the schema ----------------------------------------------------------------

def _count_range(spec):
    if isinstance(spec, int):
        return spec, spec
    low, high = spec
    return low, high


def _pair_rule(spec):
    """In-place rules are sets of (input, output) pairs or predicates f(i, o)."""
    if callable(spec):
        return spec
    pairs = frozenset(spec or ())
    return lambda i, o: (i, o) in pairs


def default_devices(schema, op_device, num_inputs, num_outputs, input_devices):
    """Inputs and outputs on the op's device, except the schema's CPU-only slots."""
    wanted = [CPU if i in schema.cpu_inputs else op_device for i in range(num_inputs)]
    outs = [CPU if o in schema.cpu_outputs else op_device for o in range(num_outputs)]
    return wanted, outs


class OpSchema(object):
    """Everything about one operator type, in one place.

    inputs/outputs: an int, or (min, max) with max INF for unbounded.
    input_check/output_check: optional predicates on the count (with a message).
    allow_inplace/enforce_inplace: sets of (input, output) pairs, or predicates.
    args: Arg objects; names not listed are ignored, as Caffe2 did.
    arg_check: optional f(args) raising ArgumentError for argument values Caffe2
        rejected when the op was constructed (checked at CreateNet).
    no_gradient: Caffe2's NO_GRADIENT (the op is silently skipped by backward).
    should_not_do_gradient: SHOULD_NOT_DO_GRADIENT (error if backward reaches it).
    cpu_inputs/cpu_outputs: slots that live on the CPU whatever the op's device.
    devices: optional f(schema, op_device, n_in, n_out, input_devices) ->
        (expected input devices, None meaning "any"; output devices).
    device_kinds: where an implementation exists ("cpu", "gpu"); CopyGPUToCPU is
        GPU-only as in Caffe2.
    same_number_of_outputs: Caffe2's SameNumberOfOutput (checked before in-place).
    empty_inputs_ok: the kernel accepts inputs that hold nothing (Free).
    declared_devices: Caffe2's declared placement where it differs from `devices`
        (InjectCrossDeviceCopies reads it): "op_device" (every blob on the op's
        device), "gpu_per_input" (blob i on GPU i: NCCL), "requires_device_option".
    """

    def __init__(self, type, inputs=1, outputs=1, args=(), allow_inplace=(),
                 enforce_inplace=(), input_check=None, output_check=None,
                 cpu_inputs=(), cpu_outputs=(), devices=None, device_kinds=("cpu", "gpu"),
                 no_gradient=False, should_not_do_gradient=False, arg_check=None,
                 same_number_of_outputs=False, empty_inputs_ok=False,
                 declared_devices=None, doc="", register_now=True):
        self.type = type
        self.min_inputs, self.max_inputs = _count_range(inputs)
        self.min_outputs, self.max_outputs = _count_range(outputs)
        self.input_check = input_check
        self.output_check = output_check
        self.args = {a.name: a for a in args}
        self._defaults = {a.name: a.default for a in args}  # parse_args starts from these
        self._required = tuple(n for n, a in self.args.items() if a.required)
        self.allows_inplace = _pair_rule(allow_inplace)
        self.enforces_inplace = _pair_rule(enforce_inplace)
        # the enforced pairs themselves when listed (checked without an n_in x n_out scan)
        self._enforced_pairs = None if callable(enforce_inplace) else frozenset(
            enforce_inplace or ())
        self._enforced_sorted = None if self._enforced_pairs is None else tuple(
            sorted(self._enforced_pairs))
        self._counts_ok = set()  # (n_in, n_out) that passed the count rules
        self.cpu_inputs = frozenset(cpu_inputs)
        self.cpu_outputs = frozenset(cpu_outputs)
        self.devices = devices or default_devices
        self.arg_check = arg_check
        self.device_kinds = frozenset(device_kinds)
        self.same_number_of_outputs = same_number_of_outputs
        self.empty_inputs_ok = empty_inputs_ok
        self.declared_devices = declared_devices
        self.doc = doc
        self.shape_fn = None
        self.kernels = {}
        self.gradient_maker = None
        self.gradient_copies_args = True
        self.fused = None  # lowering f(FusedOp) -> bool (graphnet.executors.fused)
        self.graph_safe = False  # its CuPy kernel may be captured (declare_graph_safe)
        self.no_gradient = no_gradient
        self.should_not_do_gradient = should_not_do_gradient
        if register_now:
            register(self)

    # decorators --------------------------------------------------------------
    def shape(self, fn):
        """Register f(args, *input_infos) -> [TensorInfo per output]."""
        self.shape_fn = fn
        return fn

    def kernel(self, fn=None, backend="generic"):
        """Register f(ctx, args, *inputs) -> output or tuple of outputs.

        'generic' kernels use `ctx.xp` and serve numpy and CuPy alike; a
        backend-specific kernel ('numpy', 'cupy') overrides it there.
        """
        def wrap(f):
            self.kernels[backend] = f
            return f
        return wrap(fn) if fn is not None else wrap

    def lowering(self, fn):
        """Register f(FusedOp) -> True, writing the op as loops into a fused net's
        source (graphnet.executors.fused), or False for cases it does not cover."""
        self.fused = fn
        return fn

    def gradient(self, fn=None, copy_args=True):
        """Register a gradient maker f(g) -> [gradient OperatorDefs], where g is a
        graphnet.gradient_maker.GradientContext (I, O, GO, GI, GI_V, GI_I, op).

        copy_args=False opts out of appending the forward args to the gradient
        ops (Caffe2's BatchMatMul, Transpose and Reshape makers do).
        """
        def wrap(f):
            self.gradient_maker = f
            self.gradient_copies_args = copy_args
            return f
        return wrap(fn) if fn is not None else wrap

    def check_device(self, device):
        kind = "gpu" if device.is_gpu else "cpu"
        if kind not in self.device_kinds:
            raise SchemaError(
                "Cannot create operator of type '%s' on the device '%s'. Verify that "
                "implementation for the corresponding device exist. (%s runs on: %s)"
                % (self.type, "CUDA" if kind == "gpu" else "CPU", self.type,
                   ", ".join(sorted(k.upper() for k in self.device_kinds))))

    def kernel_for(self, backend):
        fn = self.kernels.get(backend) or self.kernels.get("generic")
        if fn is None:
            raise SchemaError(
                "Cannot create operator of type '%s' on the device '%s': no kernel is "
                "registered for that backend." % (self.type, backend))
        return fn

    # checks ------------------------------------------------------------------
    def check(self, op, inputs=None, outputs=None):
        """Validate counts, in-place rules and required args of an OperatorDef
        (`inputs`/`outputs`: its input and output names, when the caller has them)."""
        reason = self._check_reason(op, inputs, outputs)
        if reason:
            raise SchemaError("%s\nOperator def did not pass schema checking: %s"
                              % (reason, short_text(op)))

    def _check_reason(self, op, inputs=None, outputs=None):
        if inputs is None:
            inputs, outputs = op.input[:], op.output[:]
        n_in, n_out = len(inputs), len(outputs)
        if (n_in, n_out) not in self._counts_ok:
            reason = self._count_reason(n_in, n_out)
            if reason:
                return reason
            self._counts_ok.add((n_in, n_out))
        if not set(inputs).isdisjoint(outputs):
            out_slots = {}
            for o, name_out in enumerate(outputs):
                out_slots.setdefault(name_out, []).append(o)
            for i, name_in in enumerate(inputs):
                for o in out_slots.get(name_in, ()):
                    if not (self.allows_inplace(i, o) or self.enforces_inplace(i, o)):
                        return ("Input index %d and output idx %d (%s) are set to be "
                                "in-place but this is actually not supported by op %s."
                                % (i, o, name_in, self.type))
        pairs = self._enforced_sorted
        if pairs is None:
            pairs = sorted((i, o) for i in range(n_in) for o in range(n_out)
                           if self.enforces_inplace(i, o))
        for i, o in pairs:
            if i < n_in and o < n_out and inputs[i] != outputs[o]:
                return ("Input index %d (%s) and output idx %d (%s) are not in-place "
                        "but should be as required by op %s."
                        % (i, inputs[i], o, outputs[o], self.type))
        return None

    def _count_reason(self, n_in, n_out):
        """Why n_in inputs and n_out outputs are refused, or None (the count rules
        depend on the counts only: _check_reason remembers the accepted ones)."""
        for what, n, low, high, pred in (
                ("Input", n_in, self.min_inputs, self.max_inputs, self.input_check),
                ("Output", n_out, self.min_outputs, self.max_outputs, self.output_check)):
            if n < low or (high is not None and n > high):
                return "%s size %d not in range [min=%d, max=%s] for op %s." % (
                    what, n, low, "inf" if high is None else high, self.type)
            if pred is not None and not pred(n):
                return "%s size %d not in allowed %s sizes of op %s." % (
                    what, n, what.lower(), self.type)
        if self.same_number_of_outputs and n_in != n_out:
            return ("Output size %d not matching expected output size, which is %d. Fix: "
                    "give %s one output per input." % (n_out, n_in, self.type))
        return None

    def parse_args(self, op, inputs=None, outputs=None):
        """Typed argument values with defaults; raises ArgumentError like Caffe2
        (`inputs`/`outputs`: the op's input and output names, when the caller has
        them)."""
        values = dict(self._defaults)
        present, fields, seen = set(), {}, {}
        for arg in op.arg:
            name = arg.name
            if name in seen:
                if seen[name] == arg:
                    log.warning("Duplicated argument name [%s] found in operator %s.",
                                name, self.type)
                    continue
                raise ArgumentError("Found argument of the same name %s but with different "
                                    "contents. Op: %s" % (name, short_text(op)))
            seen[name] = arg
            spec = self.args.get(name)
            if spec is None:
                continue  # unknown names are ignored, as in Caffe2 (DLRM's decay_)
            if spec.kind == "scalar":
                field = "f" if arg.HasField("f") else "i" if arg.HasField("i") else \
                    "s" if arg.HasField("s") else None
                if field is None:
                    raise ArgumentError(
                        "Argument %s of op %s holds no scalar value (expected field f, i "
                        "or s)." % (name, self.type))
            else:
                field = _ARG_FIELDS[spec.kind]
                if not _present_field(arg, field) and not _empty_list_ok(arg, field):
                    raise ArgumentError(
                        "Argument %s does not have the right field: expected field %s "
                        "(op %s). Fix: pass %s." % (name, field, self.type,
                                                    _fix_hint(spec.kind, name)))
            value = _arg_value(arg, field)
            if spec.kind == "bool":
                value = bool(value)
            values[name] = value
            present.add(name)
            fields[name] = field
        for name in self._required:
            if name not in present:
                raise ArgumentError("Argument '%s' is required for Operator '%s'."
                                    % (name, self.type))
        args = OpArgs(values, present, fields)
        if inputs is None:
            args._num_inputs, args._num_outputs = len(op.input), len(op.output)
        else:
            args._num_inputs, args._num_outputs = len(inputs), len(outputs)
        args._def = op
        if self.arg_check is not None:
            self.arg_check(args)
        return args


def _empty_list_ok(arg, field):
    """An empty repeated argument (`split=[]`) is legal and stays empty."""
    if field in _SINGULAR:
        return False
    return not any(arg.HasField(f) for f in ("f", "i", "s", "t", "n"))


def _fix_hint(kind, name):
    return {"float": "a Python float, e.g. %s=0.0" % name,
            "int": "a Python int, e.g. %s=1" % name,
            "bool": "a Python int or bool",
            "string": "a str"}.get(kind, "a value of kind %s" % kind)


def short_text(op):
    """The one-line text form of a message (protobuf's ShortDebugString)."""
    from google.protobuf import text_format
    return text_format.MessageToString(op, as_one_line=True)


# --- kernel context ----------------------------------------------------------

class KernelContext(object):
    """What a kernel may use besides its inputs: the array module (`xp`), the
    backend (for data movement: `ctx.backend.copy_to(x, ctx.device)`), its
    device, its random generator, how many outputs were asked for, blob names."""

    __slots__ = ("xp", "backend", "device", "op", "num_outputs", "input_names",
                 "output_names", "_rng", "_seed", "options", "_output_blobs", "cache")

    def __init__(self, backend, device, op, seed=None, options=None, names=None):
        self.backend = backend
        self.xp = backend.xp
        self.device = device
        self.op = op
        self.input_names, self.output_names = names or (op.input[:], op.output[:])
        self.num_outputs = len(self.output_names)
        self._rng = None
        self._seed = seed
        self.options = options or {}
        self._output_blobs = None
        self.cache = {}  # the kernel's own reusable buffers (scratch), per op

    def output_value(self, o):
        """The value output o holds before this run (None if empty): for ops that,
        like Caffe2's, update an existing output (the legacy Iter form)."""
        blobs = self._output_blobs
        return None if blobs is None else blobs[o].value

    @property
    def rng(self):
        """A numpy Generator, seeded from device_option.random_seed when set."""
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return self._rng

    def inplace(self, i, o):
        """True when input i and output o name the same blob."""
        return self.input_names[i] == self.output_names[o]


# --- the registry --------------------------------------------------------------

_SCHEMAS = {}
_LOADED = [False]


def register(schema):
    if schema.type in _SCHEMAS:
        raise ValueError("operator %r registered twice" % schema.type)
    _SCHEMAS[schema.type] = schema
    return schema


def _ensure_loaded():
    """Import every op family once (graphnet.ops, or ops/ beside a source checkout)."""
    if _LOADED[0]:
        return
    _LOADED[0] = True
    try:
        importlib.import_module("graphnet.ops")
    except ModuleNotFoundError as exc:
        if exc.name != "graphnet.ops":
            raise
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        init = os.path.join(here, "ops", "__init__.py")
        spec = importlib.util.spec_from_file_location(
            "graphnet.ops", init, submodule_search_locations=[os.path.dirname(init)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["graphnet.ops"] = module
        spec.loader.exec_module(module)


def declare_graph_safe(*op_types):
    """Ops whose CuPy kernels a CUDA graph may capture (graphnet.executors.cuda.graphs):
    no host-side state, no random draws, nothing read back from the device except
    through deferred checks, outputs shaped by input shapes and arguments alone.
    Each op file declares its own, after auditing its kernels."""
    for op_type in op_types:
        _SCHEMAS[op_type].graph_safe = True  # (a KeyError names an op not yet defined)


def lookup(op_type):
    """The schema of `op_type`, or None."""
    if not _LOADED[0]:
        _ensure_loaded()
    return _SCHEMAS.get(op_type)


def get(op_type):
    """The schema of `op_type`; unknown types raise with 'Did you mean' suggestions."""
    schema = _SCHEMAS.get(op_type) if _LOADED[0] else lookup(op_type)
    if schema is None:
        close = difflib.get_close_matches(op_type, list(_SCHEMAS), n=5, cutoff=0.6)
        raise UnknownOperatorError(
            "Operator type '%s' is not registered. Did you mean: %s"
            % (op_type, close if close else "(no close match)"))
    return schema


def is_registered(op_type):
    return lookup(op_type) is not None


def registered_types():
    _ensure_loaded()
    return sorted(_SCHEMAS)


def require_method(op_type):
    """Raise UnknownOperatorError (an AttributeError) unless `op_type` is registered:
    what `net.<Op>`, `model.<Op>` and `blob.<Op>` say for an unknown op."""
    if _LOADED[0] and op_type in _SCHEMAS:  # once per op built: the short way first
        return
    if not is_registered(op_type):
        raise UnknownOperatorError(
            "Method " + op_type + " is not a registered operator. Did you mean: ["
            + ",".join(suggestions(op_type)) + "]")


def suggestions(op_type, n=5):
    _ensure_loaded()
    return difflib.get_close_matches(op_type, list(_SCHEMAS), n=n, cutoff=0.6)
