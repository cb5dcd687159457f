"""What Caffe2's C++ GradientMakerBase did: run one op's gradient maker.

A maker is registered on the op's schema and receives a GradientContext:

    @FC.gradient
    def _(g):
        return [g.op("FCGradient", [g.I(0), g.I(1), g.GO(0)],
                     [g.GI(1), g.GI(2), g.GI(0)])]

Calling g.GI(k) (or g.GI_V(k)/g.GI_I(k), g.SetDense, g.SetSparse) records the
gradient of forward input k, exactly as the C++ helpers did. make_gradient
then applies the post-processing of spec §2.8.2 (is_gradient_op, device
option, engine, forward args appended, empty name). Imports registry, utils,
proto only.
"""

from collections import namedtuple

from graphnet import registry
from graphnet.errors import GraphnetError
from graphnet.proto import caffe2_pb2
from graphnet.utils import MakeArgument

__all__ = ["GradientSlice", "GradientContext", "make_gradient",
           "GradientNotImplementedError"]

GradientSlice = namedtuple("GradientSlice", ["indices", "values"])


class GradientNotImplementedError(GraphnetError):
    """No gradient maker, or a maker that refuses (SHOULD_NOT_DO_GRADIENT)."""


class GradientContext(object):
    """The forward op and its output gradients, plus the naming helpers."""

    def __init__(self, op, g_output, io=None):
        self.def_ = op
        self.g_output = list(g_output)
        # the op's input and output names, read once (each proto access costs a wrapper)
        self._inputs, self._outputs = io if io is not None else (op.input[:], None)
        self.g_input = [None] * len(self._inputs)

    # forward blobs -----------------------------------------------------------
    def I(self, k):  # noqa: E743 (Caffe2's name)
        return self._inputs[k]

    def O(self, k):  # noqa: E743
        if self._outputs is None:
            self._outputs = list(self.def_.output)
        return self._outputs[k]

    def arg(self, name, default=None):
        for a in self.def_.arg:
            if a.name == name:
                for field in ("f", "i", "s"):
                    if a.HasField(field):
                        value = getattr(a, field)
                        return value.decode() if field == "s" else value
                return list(a.ints) or list(a.floats) or [s.decode() for s in a.strings]
        return default

    def has_arg(self, name):
        return any(a.name == name for a in self.def_.arg)

    # output gradients ----------------------------------------------------------
    def GO(self, k):
        g = self.g_output[k]
        if isinstance(g, GradientSlice):
            raise GraphnetError("Gradient of output %d (%s) of %s is sparse; this maker "
                                "needs a dense gradient." % (k, self.O(k), self.def_.type))
        return g

    def GO_I(self, k):
        return self.g_output[k].indices

    def GO_V(self, k):
        return self.g_output[k].values

    def has_GO(self, k):
        return self.g_output[k] is not None

    # input gradients (recording them, as C++'s GI() did) -------------------------
    def GI(self, k):
        name = self.I(k) + "_grad"
        self.g_input[k] = name
        return name

    def GI_I(self, k):
        name = self.I(k) + "_grad_indices"
        self._sparse(k, indices=name)
        return name

    def GI_V(self, k):
        name = self.I(k) + "_grad_values"
        self._sparse(k, values=name)
        return name

    def SetDense(self, k, name):
        self.g_input[k] = str(name)

    def SetSparse(self, k, indices, values):
        self.g_input[k] = GradientSlice(str(indices), str(values))

    def _sparse(self, k, indices=None, values=None):
        old = self.g_input[k] if isinstance(self.g_input[k], GradientSlice) else \
            GradientSlice(None, None)
        self.g_input[k] = GradientSlice(indices or old.indices, values or old.values)

    # building ops ------------------------------------------------------------------
    def op(self, op_type, inputs, outputs, **args):
        """A gradient OperatorDef (post-processing is applied by make_gradient)."""
        op = caffe2_pb2.OperatorDef()
        op.type = op_type
        try:  # names are str nearly always; extend converts nothing
            op.input.extend(inputs)
            op.output.extend(outputs)
        except TypeError:  # a BlobReference among them (Python makers may pass one)
            del op.input[:], op.output[:]
            op.input.extend([str(i) for i in inputs])
            op.output.extend([str(o) for o in outputs])
        for key, value in args.items():
            if value is not None:
                op.arg.add().CopyFrom(MakeArgument(key, value))
        return op


def make_gradient(op, g_output, io=None):
    """(gradient ops, g_input) for forward `op` given its output gradients (`io`:
    op's input and output name lists, when the caller has read them already)."""
    schema = registry.get(op.type)
    if schema.no_gradient:
        return [], [None] * len(op.input)
    if schema.should_not_do_gradient:
        raise GradientNotImplementedError(
            "One should not call gradient for operator %s." % op.type)
    if schema.gradient_maker is None:
        raise GradientNotImplementedError(
            "Gradient maker for operator %s not implemented. (op: %s)"
            % (op.type, registry.short_text(op)))
    inputs, outputs = io if io is not None else (op.input[:], op.output[:])
    try:
        schema.check(op, inputs, outputs)
    except GraphnetError as exc:
        raise GraphnetError("(GradientMaker) Operator def did not pass schema checking: "
                            "%s" % exc)
    g = GradientContext(op, g_output, (inputs, outputs))
    ops = schema.gradient_maker(g) or []
    device_option = op.device_option if op.HasField("device_option") else None
    engine = op.engine if op.HasField("engine") else None
    args = op.arg if schema.gradient_copies_args and len(op.arg) else None
    for grad_op in ops:
        grad_op.is_gradient_op = True
        grad_op.name = ""
        if device_option is not None:
            grad_op.device_option.CopyFrom(device_option)
        if engine is not None:
            grad_op.engine = engine
        if args is not None:
            grad_op.arg.extend(args)
    for k, gi in enumerate(g.g_input):
        if isinstance(gi, GradientSlice) and (gi.indices is None or gi.values is None):
            raise GraphnetError(
                "For sparse gradient, one should set both indices and values. Currently "
                "we have: (%s, %s) for input %d of %s." % (gi.indices, gi.values, k,
                                                         op.type))
    return ops, g.g_input
