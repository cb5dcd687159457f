"""Exception types raised by graphnet. Imports nothing from graphnet.

Every user-facing failure is a RuntimeError subclass (as Caffe2's enforce
failures were), so `except RuntimeError` in legacy scripts keeps working.
"""

__all__ = [
    "GraphnetError", "EnforceError", "SchemaError", "ArgumentError",
    "UnknownOperatorError", "OperatorError", "DeviceMismatchError", "HostOnlyTypeError",
    "enforce",
]


class GraphnetError(RuntimeError):
    """Base class of every error graphnet raises on purpose."""


class EnforceError(GraphnetError):
    """A kernel or shape rule found input it cannot accept (Caffe2's CAFFE_ENFORCE).

    `input_index`, when set, names the offending input so the executor can
    report the blob name and device.
    """

    def __init__(self, message, input_index=None):
        super().__init__(message)
        self.input_index = input_index


class HostOnlyTypeError(EnforceError):
    """A GPU op met a type only host memory holds (a STRING tensor): Caffe2's CUDA
    context stored plain-old-data types only. The fix is to run the op on the CPU."""


class SchemaError(GraphnetError):
    """An OperatorDef does not satisfy its op's schema (counts, in-place rules)."""


class ArgumentError(SchemaError):
    """An argument is stored in the wrong field, is missing, or has a bad value."""


class UnknownOperatorError(GraphnetError, AttributeError):
    """No operator of that type is registered (also an AttributeError for net.Op)."""


class DeviceMismatchError(GraphnetError):
    """An op reads a blob that lives on another device (strict mode)."""


class OperatorError(GraphnetError):
    """An op failed while running inside a net; carries the failing op's context."""

    def __init__(self, message, op_index=None, op_type=None, net_name=None, cause=None):
        super().__init__(message)
        self.op_index = op_index
        self.op_type = op_type
        self.net_name = net_name
        self.cause = cause


def enforce(condition, message, input_index=None):
    """Raise EnforceError(message) unless condition holds (CAFFE_ENFORCE)."""
    if not condition:
        raise EnforceError(message, input_index=input_index)
