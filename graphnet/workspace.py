"""caffe2.python.workspace: Workspace objects and the module API over the current one.

A Workspace owns blobs and created nets; the module-level functions
(FeedBlob, RunNet, ...) act on the current workspace, switched with
SwitchWorkspace. Imports core-free modules only (executors, registry, utils).
"""

import logging
import os
import threading
import types

import numpy as np

from graphnet import c10_flags, config, registry, scope
from graphnet.benchmark import benchmark_net
from graphnet.blobs import Blob
from graphnet.devices import CUDA_TYPE, device_of
from graphnet.errors import GraphnetError, OperatorError
from graphnet.executors import compile_net, run_plan
from graphnet.executors.backends import backend_for, num_gpu_devices, to_numpy
from graphnet.proto import caffe2_pb2
from graphnet.shape_inference import infer_shapes_and_types
from graphnet.torch_feed import is_torch_tensor, torch_to_numpy
from graphnet.utils import Caffe2TensorToNumpyArray

__all__ = [
    "Workspace", "GpuDeviceType", "NumGpuDevices", "NumCudaDevices", "FeedBlob",
    "FetchBlob", "FetchBlobs", "Blobs", "HasBlob", "CreateBlob", "ResetBlob",
    "ResetWorkspace", "CreateNet", "RunNet", "RunNetOnce", "RunOperatorOnce",
    "RunOperatorsOnce", "GlobalInit", "SwitchWorkspace", "CurrentWorkspace",
    "Workspaces", "RegisteredOperators", "InferShapesAndTypes", "StringifyProto",
    "GetNetName", "Nets", "blobs", "has_gpu_support", "has_cuda_support",
    "has_hip_support", "GetGpuPeerAccessPattern", "SetVirtualGpuCount",
    "SetStrictDevices", "SetGpuDeviceMapping", "BlobDevice", "operator_tracebacks",
    "BenchmarkNet", "C",
]

log = logging.getLogger("graphnet")

from graphnet._net import operator_tracebacks  # noqa: E402  (shared with Net)

# Set by graphnet.distributed when this process is one rank of a job (None: one
# process): it places created nets on the ranks and serves feeds and fetches.
_distributed = [None]


def _set_distributed(cluster):
    _distributed[0] = cluster


# Scripts build GPU nets on CPU-only machines through this constant (spec §2.1).
GpuDeviceType = caffe2_pb2.CUDA if hasattr(caffe2_pb2, "CUDA") else CUDA_TYPE

_CPU = device_of(None)
_SUPPORTED_DTYPES = {np.dtype(t) for t in (
    np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8, np.int8,
    np.int16, np.uint16, np.float16, np.object_)}
_NUMERIC_DTYPES = _SUPPORTED_DTYPES - {np.dtype(np.object_)}


def StringifyProto(obj):
    """Serialized bytes of a NetDef/Net/OperatorDef, or `obj` if already a string."""
    if isinstance(obj, (str, bytes)):
        return obj
    if hasattr(obj, "SerializeToString"):
        return obj.SerializeToString()
    if hasattr(obj, "Proto"):
        return obj.Proto().SerializeToString()
    raise ValueError("Unexpected argument to StringifyProto of type " + type(obj).__name__)


def GetNetName(net):
    if isinstance(net, str):
        return net
    if isinstance(net, caffe2_pb2.NetDef):
        return net.name
    if hasattr(net, "Name"):
        return net.Name()
    raise Exception("Not a Net object: {}".format(str(net)))


def _to_netdef(net):
    """A private copy of a Net / NetDef / serialized NetDef."""
    netdef = caffe2_pb2.NetDef()
    if isinstance(net, bytes):
        netdef.ParseFromString(net)
    elif isinstance(net, caffe2_pb2.NetDef):
        netdef.CopyFrom(net)
    elif hasattr(net, "Proto"):
        netdef.CopyFrom(net.Proto())
    else:
        raise TypeError("expected a Net, a NetDef or its serialized bytes, found %s"
                        % type(net).__name__)
    return netdef


class Workspace(object):
    """Blobs and created nets. Usable directly, without the module-level globals."""

    def __init__(self, name="default", root_folder=None):
        self.name = name
        self.root_folder = root_folder
        self._blobs = {}
        self._nets = {}

    # --- blobs -------------------------------------------------------------------
    def Blobs(self):
        return list(self._blobs)

    def HasBlob(self, name):
        return str(name) in self._blobs

    def CreateBlob(self, name):
        name = str(name)
        if name not in self._blobs:
            self._blobs[name] = Blob()
        return True

    def ResetBlob(self, name):
        blob = self._blobs.get(str(name))
        if blob is None:
            raise RuntimeError("Can't find blob: %s" % name)
        blob.value = None
        return True

    def BlobDevice(self, name):
        """The Device a blob lives on (graphnet extension)."""
        blob = self._blobs.get(str(name))
        if blob is None:
            raise RuntimeError("Can't find blob: %s" % name)
        return blob.device

    def FeedBlob(self, name, arr, device_option=None):
        """Store a copy of `arr` in blob `name` on the device the option names
        (else the current DeviceScope, else the CPU). Returns True."""
        if (type(arr) is np.ndarray and device_option is None and type(name) is str
                and arr.dtype in _NUMERIC_DTYPES and _distributed[0] is None
                and scope.CurrentDeviceScope() is None):
            # the common case, a numeric array for the CPU (training loops feed
            # several per step): what the general path below does, without its tests
            self._store(name, np.array(arr, copy=True, order="C"), _CPU)
            return True
        name = str(name)
        if type(arr) is caffe2_pb2.TensorProto:
            arr = Caffe2TensorToNumpyArray(arr)
        if device_option is None:
            device_option = scope.CurrentDeviceScope()
        device = device_of(device_option)
        shared = False
        if is_torch_tensor(arr):
            shared = device_option is None  # Caffe2 wrapped the tensor's storage
            arr = torch_to_numpy(name, arr, device_option)
        if isinstance(arr, (str, bytes)):
            value = arr.encode("utf-8") if isinstance(arr, str) else bytes(arr)
            backend = None
        else:
            if isinstance(arr, np.generic):
                arr = np.asarray(arr)
            if not isinstance(arr, np.ndarray):
                raise TypeError(
                    "FeedBlob('%s'): expected a numpy array, a TensorProto or a string, "
                    "found %s. Fix: wrap it, e.g. np.array(value, dtype=np.float32)."
                    % (name, type(arr).__name__))
            if arr.dtype.kind in "SU":
                arr = arr.astype(object)
            if arr.dtype not in _SUPPORTED_DTYPES:
                raise TypeError("This numpy data type is not supported: %d. (FeedBlob('%s')"
                                " got %s; use float32/64, int8/16/32/64, uint8/16, bool, "
                                "float16 or object)" % (arr.dtype.num, name, arr.dtype))
            if device.is_gpu and arr.dtype == np.float64:
                log.warning("CUDA operators do not support 64-bit doubles, please use "
                            "arr.astype(np.float32) or np.int32 for ints. Blob: %s type: "
                            "%s", name, arr.dtype)
            try:
                backend = backend_for(device)
            except GraphnetError as exc:
                raise GraphnetError("FeedBlob('%s'): %s" % (name, exc))
            if not shared and not (backend.name == "cupy" and device.is_gpu
                                   and arr.dtype != object):
                arr = np.array(arr, copy=True, order="C")  # (a GPU copies it anyway)
            old = self._blobs.get(name)
            value = backend.from_host(arr, device, None if old is None or
                                      old.device != device else old.value)
        blob = self._store(name, value, device)
        if _distributed[0] is not None:
            _distributed[0].fed(self, name, blob)
        return True

    def _store(self, name, value, device):
        """Blob `name` := value on device (created if missing); returns the blob."""
        blob = self._blobs.get(name)
        if blob is None:
            blob = self._blobs[name] = Blob(value, device)
        else:
            blob.value, blob.device = value, device
        return blob

    def FetchBlob(self, name):
        """A numpy copy of the blob (bytes for string blobs and empty blobs)."""
        name = str(name)
        blob = self._blobs.get(name)
        if blob is None:
            raise RuntimeError("Can't find blob: %s" % name)
        value = blob.value
        if _distributed[0] is not None:  # a blob another rank holds comes from there
            value = _distributed[0].fetch(self, name, value)
        if value is None:
            return ("%s, a C++ native class of type nullptr (uninitialized)." % name
                    ).encode("utf-8")
        if isinstance(value, (bytes, str)):
            return value
        return np.array(to_numpy(value), copy=True)

    def FetchBlobs(self, names):
        return [self.FetchBlob(n) for n in names]

    # --- nets ----------------------------------------------------------------------
    def Nets(self):
        return list(self._nets)

    def CreateNet(self, net, overwrite=False, input_blobs=None):
        """Compile `net` now (checks of §5.1) and keep it under its name."""
        for name in input_blobs or ():
            self.CreateBlob(name)
        netdef = _to_netdef(net)
        if not netdef.name:  # only nets kept by name need one (RunNetOnce does not)
            raise GraphnetError("Net definition should have a name.")
        if netdef.name in self._nets and not overwrite:
            raise RuntimeError(
                'I respectfully refuse to overwrite an existing net of the same name '
                '"%s", unless you explicitly specify overwrite=true.' % netdef.name)
        self._nets[netdef.name] = self._placed(compile_net(netdef, self._blobs),
                                               "CreateNet")
        return True

    def _placed(self, plan, how):
        """The plan as this rank runs it (unchanged in a single process)."""
        cluster = _distributed[0]
        return plan if cluster is None else cluster.place(plan, self, how)

    def RunNet(self, name, num_iter=1, allow_fail=False):
        """Run a created net `num_iter` times; False instead of raising if allow_fail."""
        name = GetNetName(name)
        plan = self._nets.get(name)
        if plan is None:
            raise RuntimeError("Can't find net %s. Fix: call CreateNet first." % name)
        for _ in range(num_iter):
            try:
                run_plan(plan)
            except OperatorError:
                if allow_fail:
                    return False
                raise
        return True

    def RunNetOnce(self, net):
        """Compile a temporary copy of `net` and run it once (blobs persist)."""
        run_plan(self._placed(compile_net(_to_netdef(net), self._blobs), "RunNetOnce"))
        return True

    def RunOperatorOnce(self, op):
        return self.RunOperatorsOnce([op])

    def RunOperatorsOnce(self, ops):
        netdef = caffe2_pb2.NetDef()
        netdef.name = "RunOperatorsOnce"
        for op in ops:
            if isinstance(op, bytes):
                netdef.op.add().ParseFromString(op)
            else:
                netdef.op.add().CopyFrom(op)
        run_plan(self._placed(compile_net(netdef, self._blobs), "RunOperatorsOnce"))
        return True

    def BenchmarkNet(self, name, warmup_runs, main_runs, run_individual):
        """Time created net `name` (Caffe2's C.benchmark_net; see graphnet.benchmark)."""
        plan = self._nets.get(GetNetName(name))
        if plan is None:
            raise RuntimeError("[enforce fail at pybind_state.cc:1334] net. Didn't find "
                               "net: %s. Fix: call CreateNet first." % GetNetName(name))
        return benchmark_net(plan, warmup_runs, main_runs, run_individual)

    def CrossDeviceReads(self, name):
        """The cross-device reads found when net `name` was created (extension)."""
        return list(self._nets[GetNetName(name)].cross_device_reads)

    def InferShapesAndTypes(self, nets, blob_dimensions=None, nets_proto=False,
                            blob_types=None):
        netdefs = [n if nets_proto or isinstance(n, caffe2_pb2.NetDef) else n.Proto()
                   for n in nets]
        return infer_shapes_and_types(netdefs, blob_dimensions, blob_types, self._blobs)


# --- the module-level API over the current workspace --------------------------------

_lock = threading.Lock()
_workspaces = {"default": Workspace("default")}
_current = ["default"]


def _ws():
    return _workspaces[_current[0]]


def CurrentWorkspace():
    return _current[0]


def Workspaces():
    return list(_workspaces)


def SwitchWorkspace(name, create_if_missing=None):
    """Make workspace `name` current (created only if create_if_missing)."""
    with _lock:
        if name not in _workspaces:
            if not create_if_missing:
                raise RuntimeError("Workspace %s does not exist. Fix: pass "
                                   "create_if_missing=True." % name)
            _workspaces[name] = Workspace(name)
        _current[0] = name
    return True


def ResetWorkspace(root_folder=None):
    """Replace the current workspace by an empty one (nets and blobs dropped)."""
    old = _ws()
    if root_folder is not None and not os.path.exists(root_folder):
        os.makedirs(root_folder)
    _workspaces[old.name] = Workspace(old.name, root_folder or old.root_folder)
    return True


def GlobalInit(args):
    """Parse Caffe2 command-line flags (`["caffe2", "--caffe2_log_level=0"]`) with
    Caffe2 1.10's C10 rules and keep their values. A flag that build did not
    register, or a bad bool, made Caffe2 raise (dlrm#9); graphnet logs a warning
    naming it and ignores it (README: Differences). Returns True."""
    problems, _ = c10_flags.parse_flags(args)
    for problem in problems:
        log.warning("GlobalInit ignores %s (Caffe2 1.10.2 would have raised "
                    "'Failed to run some init functions for caffe2'; the registered "
                    "flags are listed by graphnet.c10_flags.registered_flags())",
                    problem.replace("C10 flag: ", ""))
    return True


def NumGpuDevices():
    return num_gpu_devices()


NumCudaDevices = NumGpuDevices


def GetGpuPeerAccessPattern():
    """Which GPUs can read each other's memory: every pair of virtual GPUs; on real
    GPUs, logical GPUs on one physical GPU or on a pair with peer access."""
    n = NumGpuDevices()
    from graphnet.executors.backends import cuda_backend
    backend = cuda_backend()
    if backend is None:
        return np.ones((n, n), dtype=bool)
    rt = backend.rt
    return np.array([[rt.can_peer(rt.physical_of(i), rt.physical_of(j)) for j in range(n)]
                     for i in range(n)], dtype=bool)


def SetVirtualGpuCount(n):
    """Emulate `n` GPUs with numpy (as GRAPHNET_VIRTUAL_GPUS=n)."""
    global has_gpu_support, has_cuda_support
    config.set_virtual_gpu_count(n)
    has_gpu_support = has_cuda_support = NumGpuDevices() > 0


def SetGpuDeviceMapping(mapping=None):
    """Logical GPUs on real GPUs (CuPy): an int N makes N logical GPUs with gpu_d on
    physical d % P; a list [p0, p1, ...] puts gpu_d on physical p_d; None restores
    one logical GPU per physical GPU (the GRAPHNET_GPU_MAP twin). Create nets after
    changing it: compiled nets keep the mapping they were built with."""
    global has_gpu_support, has_cuda_support
    from graphnet.executors.cuda import settings
    settings.set_gpu_map(mapping)
    has_gpu_support = has_cuda_support = NumGpuDevices() > 0


def SetStrictDevices(strict=True):
    """Raise instead of transferring when an op reads a blob on another device."""
    config.set_strict_devices(strict)


has_gpu_support = has_cuda_support = NumGpuDevices() > 0
has_hip_support = False


def RegisteredOperators():
    return registry.registered_types()


def FeedBlob(name, arr, device_option=None):
    return _ws().FeedBlob(name, arr, device_option)


def BenchmarkNet(name, warmup_runs, main_runs, run_individual):
    return _ws().BenchmarkNet(name, warmup_runs, main_runs, run_individual)


# `workspace.C` was Caffe2's C++ extension module; scripts reach a few of its
# functions through it directly (DLRM: C.benchmark_net). Only those live here.
C = types.SimpleNamespace(benchmark_net=BenchmarkNet, global_init=GlobalInit)


def FetchBlob(name):
    return _ws().FetchBlob(name)


def FetchBlobs(names):
    return _ws().FetchBlobs(names)


def Blobs():
    return _ws().Blobs()


def HasBlob(name):
    return _ws().HasBlob(name)


def CreateBlob(name):
    return _ws().CreateBlob(name)


def ResetBlob(name):
    return _ws().ResetBlob(name)


def BlobDevice(name):
    return _ws().BlobDevice(name)


def Nets():
    return _ws().Nets()


def CreateNet(net, overwrite=False, input_blobs=None):
    return _ws().CreateNet(net, overwrite, input_blobs)


def RunNet(name, num_iter=1, allow_fail=False):
    return _ws().RunNet(name, num_iter, allow_fail)


def RunNetOnce(net):
    return _ws().RunNetOnce(net)


def RunOperatorOnce(op):
    return _ws().RunOperatorOnce(op)


def RunOperatorsOnce(ops):
    return _ws().RunOperatorsOnce(ops)


def InferShapesAndTypes(nets, blob_dimensions=None, nets_proto=False, blob_types=None):
    return _ws().InferShapesAndTypes(nets, blob_dimensions, nets_proto, blob_types)


class _BlobDict(object):
    """`workspace.blobs`: dict-like view of the current workspace's blobs."""

    def __getitem__(self, key):
        return FetchBlob(key)

    def __setitem__(self, key, value):
        return FeedBlob(key, value)

    def __len__(self):
        return len(Blobs())

    def __iter__(self):
        return iter(Blobs())

    def __contains__(self, item):
        return HasBlob(item)


blobs = _BlobDict()
