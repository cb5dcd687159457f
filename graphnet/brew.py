"""caffe2.python.brew: `brew.fc(model, ...)` helpers with Caffe2's keyword merging.

As in Caffe2, this module replaces itself in sys.modules by a HelperWrapper,
so `brew.<helper>` looks helpers up in a registry and merges the model's
arg_scope, the active brew.arg_scope and the call's own kwargs.
"""

import copy
import inspect
import sys

from graphnet.helpers.algebra import batch_mat_mul, mat_mul, sub, sum, transpose
from graphnet.helpers.arg_scope import arg_scope, get_current_scope
from graphnet.helpers.array_helpers import concat, depth_concat
from graphnet.helpers.dropout import dropout
from graphnet.helpers.fc import fc
from graphnet.helpers.nonlinearity import relu, softmax, tanh
from graphnet.helpers.train import accuracy, add_weight_decay, iter
from graphnet.model_helper import ModelHelper


class HelperWrapper(object):
    """brew itself: helper lookup by attribute, Register, has_helper."""

    _registry = {
        "arg_scope": arg_scope, "fc": fc, "dropout": dropout, "softmax": softmax,
        "relu": relu, "tanh": tanh, "concat": concat, "depth_concat": depth_concat,
        "sum": sum, "sub": sub, "transpose": transpose, "iter": iter,
        "accuracy": accuracy, "mat_mul": mat_mul, "batch_mat_mul": batch_mat_mul,
        "add_weight_decay": add_weight_decay,
    }

    def __init__(self, wrapped):
        self.wrapped = wrapped

    def __getattr__(self, helper_name):
        if helper_name.startswith("__"):
            raise AttributeError(helper_name)
        if helper_name not in self._registry:
            raise AttributeError("Helper function {} not registered.".format(helper_name))

        def scope_wrapper(*args, **kwargs):
            new_kwargs = {}
            if helper_name != "arg_scope":
                if len(args) > 0 and isinstance(args[0], ModelHelper):
                    model = args[0]
                elif "model" in kwargs:
                    model = kwargs["model"]
                else:
                    raise RuntimeError(
                        "The first input of helper function should be model. Or you can "
                        "provide it in kwargs as model=<your_model>.")
                new_kwargs = copy.deepcopy(model.arg_scope)
            func = self._registry[helper_name]
            spec = inspect.getfullargspec(func)
            if spec.varkw is None:
                new_kwargs = {name: new_kwargs[name] for name in spec.args
                              if name in new_kwargs}
            new_kwargs.update(get_current_scope().get(helper_name, {}))
            new_kwargs.update(kwargs)
            return func(*args, **new_kwargs)

        scope_wrapper.__name__ = helper_name
        return scope_wrapper

    def Register(self, helper):
        name = helper.__name__
        if name in self._registry:
            raise AttributeError("Helper {} already exists. Please change your helper "
                                 "name.".format(name))
        self._registry[name] = helper

    def has_helper(self, helper_or_helper_name):
        name = helper_or_helper_name if isinstance(helper_or_helper_name, str) \
            else helper_or_helper_name.__name__
        return name in self._registry

    def __dir__(self):
        return sorted(self._registry) + ["Register", "has_helper"]


sys.modules[__name__] = HelperWrapper(sys.modules[__name__])
