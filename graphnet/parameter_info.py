"""caffe2.python.modeling.parameter_info: parameter tags and ParameterInfo."""

from graphnet import core

__all__ = ["ParameterTags", "ParameterInfo", "ParameterType"]


class ParameterTags(object):
    BIAS = "BIAS"
    WEIGHT = "WEIGHT"
    COMPUTED_PARAM = "COMPUTED_PARAM"


class ParameterType(object):
    DENSE = "dense"
    SPARSE = "sparse"


class ParameterInfo(object):
    """A parameter blob with its gradient, shape, optimizer and regularizer."""

    def __init__(self, param_id, param, key=None, shape=None, length=None, grad=None,
                 blob_copy=None):
        assert isinstance(param, core.BlobReference)
        self.param_id = param_id
        self.name = str(param)
        self.blob = param
        self.key = key
        self.shape = shape
        self.size = None if shape is None else int(_prod(shape))
        self.length = max(1, length if length is not None else 1)
        self.grad = grad
        self._cloned_init_net = None
        self.blob_copy = blob_copy
        self._optimizer = None

    @property
    def parameter(self):
        return self.blob

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value):
        assert self._optimizer is None, "optimizer has already been set"
        self._optimizer = value

    def grad_type(self):
        assert self.grad is not None, "Gradient is not yet set for parameter %s" % (
            self.name)
        return ParameterType.SPARSE if isinstance(self.grad, core.GradientSlice) \
            else ParameterType.DENSE

    def __str__(self):
        return self.name


def _prod(shape):
    result = 1
    for d in shape:
        result *= d
    return result
