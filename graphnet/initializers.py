"""caffe2.python.modeling.initializers: how parameters get their init ops."""

from graphnet import core
from graphnet.parameter_info import ParameterInfo

__all__ = ["Initializer", "ExternalInitializer", "update_initializer",
           "PseudoFP16Initializer", "ReversePseudoFP16Initializer"]


class Initializer(object):
    """Adds `<operator_name>([], param, shape=shape, **kwargs)` to the init net."""

    def __init__(self, operator_name=None, **kwargs):
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def update(self, operator_name, kwargs):
        if self.operator_name is not None:
            raise Exception("Operator name overwrites are not allowed")
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def create_param(self, param_name, init_net, shape):
        param = init_net.__getattr__(self.operator_name)(
            [], param_name, shape=shape, **self.operator_kwargs)
        return ParameterInfo(param_id=None, param=param, shape=shape)


class ExternalInitializer(object):
    """The parameter is provided from outside (fed); no init op is added."""

    def create_param(self, param_name, init_net, shape):
        if isinstance(param_name, core.BlobReference):
            param = core.BlobReference(str(param_name), init_net)
        elif isinstance(param_name, str):
            param = core.ScopedBlobReference(param_name, init_net)
        else:
            raise TypeError("Unsupported type for param_name")
        return ParameterInfo(param_id=None, param=param, shape=shape)


class PseudoFP16Initializer(Initializer):
    """Kept for API compatibility: initializes like Initializer (float32 master)."""


ReversePseudoFP16Initializer = PseudoFP16Initializer


def update_initializer(initializer_class, operator_name_and_kwargs,
                       default_operator_name_and_kwargs):
    """An initializer object from a class and an ("OpName", {kwargs}) pair."""
    name, kwargs = operator_name_and_kwargs or default_operator_name_and_kwargs
    if initializer_class is not None:
        return initializer_class(name, **kwargs)
    return Initializer(name, **kwargs)
