"""caffe2.python.model_helper: ModelHelper, a net + init net + parameters."""

import logging

from graphnet import core, registry, scope
from graphnet.parameter_info import ParameterInfo, ParameterTags

__all__ = ["ModelHelper"]

log = logging.getLogger("graphnet")

# The ops ModelHelper forwards without a warning (Caffe2's exact list).
_known_working_ops = [
    "Accuracy", "Adam", "Add", "Adagrad", "SparseAdagrad", "Adadelta",
    "SparseAdadelta", "AveragedLoss", "Cast", "Checkpoint", "ConstantFill", "Copy",
    "CopyGPUToCPU", "CopyCPUToGPU", "DequeueBlobs", "EnsureCPUOutput", "ExpandDims",
    "Flatten", "FlattenToVec", "LabelCrossEntropy", "LearningRate", "MakeTwoClass",
    "MatMul", "NCCLAllreduce", "NHWC2NCHW", "PackSegments", "Print", "PRelu",
    "ReduceFrontSum", "Scale", "ScatterWeightedSum", "Sigmoid", "SortedSegmentSum",
    "Snapshot", "Softmax", "SoftmaxWithLoss", "SquaredL2Distance", "Squeeze",
    "StopGradient", "Summarize", "Tanh", "Transpose", "UnpackSegments",
    "WeightedSum", "YellowFin",
]


class ModelHelper(object):
    """A model: `net`, `param_init_net`, `params`, and op forwarding (model.Copy)."""

    def __init__(self, name=None, init_params=True, allow_not_known_ops=True,
                 skip_sparse_optim=False, param_model=None, arg_scope=None):
        self.name = name or "model"
        self.net = core.Net(self.name)
        if param_model is not None:
            self.param_init_net = param_model.param_init_net
            self.param_to_grad = param_model.param_to_grad
            self.params = param_model.params
            self._parameters_info = param_model._parameters_info
            self._computed_params = param_model._computed_params
        else:
            self.param_init_net = core.Net(self.name + "_init")
            self.param_to_grad = {}
            self.params = []
            self._parameters_info = {}
            self._computed_params = []
        self._devices = []
        self.gradient_ops_added = False
        self.init_params = init_params
        self.allow_not_known_ops = allow_not_known_ops
        self.skip_sparse_optim = skip_sparse_optim
        self.weights = []
        self.biases = []
        self._arg_scope = {"order": "NCHW", "use_cudnn": True,
                           "cudnn_exhaustive_search": False}
        if arg_scope is not None:
            self._arg_scope.update(arg_scope)

    @property
    def arg_scope(self):
        return self._arg_scope

    def get_name(self):
        return self.name

    # --- parameters -----------------------------------------------------------------
    def create_param(self, param_name, shape, initializer, tags=None):
        """The param blob (created once, name-scoped) with its init op in param_init_net."""
        if isinstance(param_name, core.BlobReference):
            param_name = str(param_name)
        elif isinstance(param_name, str):
            param_name = scope.CurrentNameScope() + param_name
        else:
            raise TypeError("Unsupported type for param_name")
        if param_name in self._parameters_info:
            assert self._parameters_info[param_name].shape == shape
            return self._parameters_info[param_name].blob
        info = initializer.create_param(param_name=core.BlobReference(param_name),
                                        init_net=self.param_init_net, shape=shape)
        self._parameters_info[param_name] = info
        self.AddParameter(info.blob, tags)
        return info.blob

    def get_param_info(self, param):
        assert isinstance(param, core.BlobReference), \
            "Param {} is not a BlobReference".format(param)
        return self._parameters_info.get(param, None)

    @staticmethod
    def _normalize_tags(tags):
        tags = tags or []
        return set(tags) if isinstance(tags, list) else {tags}

    def AddParameter(self, param, tags=None):
        assert isinstance(param, core.BlobReference)
        tags = self._normalize_tags(tags)
        if ParameterTags.COMPUTED_PARAM in tags:
            self._computed_params.append(param)
        else:
            self.params.append(param)
        if ParameterTags.WEIGHT in tags:
            self.weights.append(param)
        if ParameterTags.BIAS in tags:
            self.biases.append(param)

    @staticmethod
    def _NormalizeNamescope(namescope):
        if namescope is None:
            return scope.CurrentNameScope()
        if namescope == "" or namescope.endswith(scope._NAMESCOPE_SEPARATOR):
            return namescope
        return namescope + scope._NAMESCOPE_SEPARATOR

    def GetParams(self, namescope=None, top_scope=False):
        """Params whose name scope starts with `namescope` (default: current)."""
        namescope = ModelHelper._NormalizeNamescope(namescope)
        if namescope == "":
            return self.params[:]
        return [p for p in self.params if p.GetNameScope().startswith(namescope)]

    def GetComputedParams(self, namescope=None):
        namescope = ModelHelper._NormalizeNamescope(namescope)
        if namescope == "":
            return self._computed_params[:]
        return [p for p in self._computed_params
                if p.GetNameScope().startswith(namescope)]

    def GetAllParams(self, namescope=None):
        return self.GetParams(namescope) + self.GetComputedParams(namescope)

    def _Validate(self):
        names = sorted(str(p) for p in self.params)
        dupes = []
        for j in range(1, len(names)):
            if names[j - 1] == names[j] and names[j] not in dupes:
                dupes.append(names[j])
        return dupes

    def Validate(self):
        dupes = self._Validate()
        assert dupes == [], "Duplicate params: {}".format(dupes)

    # --- nets -------------------------------------------------------------------------
    def Proto(self):
        return self.net.Proto()

    def InitProto(self):
        return self.param_init_net.Proto()

    def RunAllOnGPU(self, *args, **kwargs):
        self.param_init_net.RunAllOnGPU(*args, **kwargs)
        self.net.RunAllOnGPU(*args, **kwargs)

    def GetDevices(self):
        assert len(self._devices) > 0, \
            "Use data_parallel_model to run model on multiple GPUs."
        return self._devices

    def AddGradientOperators(self, *args, **kwargs):
        """Append the backward pass to `net`; returns (and keeps) the gradient map."""
        if self.gradient_ops_added:
            raise RuntimeError("You cannot run AddGradientOperators twice.")
        self.Validate()
        self.gradient_ops_added = True
        self.grad_map = self.net.AddGradientOperators(*args, **kwargs)
        self.param_to_grad = self.get_param_to_grad(self.params)
        for param, grad in self.param_to_grad.items():
            info = self.get_param_info(param)
            if info:
                info.grad = grad
            else:
                self._parameters_info[param] = ParameterInfo(
                    param_id=None, param=param, grad=grad)
        return self.grad_map

    def get_param_to_grad(self, params):
        if not self.gradient_ops_added:
            raise RuntimeError("You need to run AddGradientOperators first.")
        return {p: self.grad_map[str(p)] for p in params if str(p) in self.grad_map}

    def GetOptimizationParamInfo(self, params=None):
        """ParameterInfo of params that have gradients (sparse ones skipped when
        skip_sparse_optim)."""
        params = params or self.GetParams()
        infos = []
        for param in params:
            info = self.get_param_info(param)
            if info is None or info.grad is None:
                continue
            if self.skip_sparse_optim and isinstance(info.grad, core.GradientSlice):
                continue
            infos.append(info)
        return infos

    def __getattr__(self, op_type):
        """Forward any other registered op to self.net (model.Copy(...))."""
        if op_type.startswith("__"):
            raise AttributeError(op_type)
        registry.require_method(op_type)
        if op_type not in _known_working_ops:
            if not self.allow_not_known_ops:
                raise AttributeError("Operator {} is not known to be safe".format(op_type))
            log.warning("You are creating an op that the ModelHelper does not "
                        "recognize: %s.", op_type)
        return self.net.__getattr__(op_type)

    def __dir__(self):
        return sorted(set(dir(type(self)) + list(self.__dict__) + _known_working_ops))

