"""The public surface of the Caffe2-compatible modules is pinned: a name that
disappears breaks legacy scripts, so removing one must be a conscious change."""

import importlib

import pytest

PINNED = {
    "graphnet.core": [
        "BlobReference", "CreateOperator", "DataType", "DeviceOption", "DeviceScope",
        "GlobalInit", "GradientRegistry", "GradientSlice", "IR", "InferBlobDevices",
        "InferOpBlobDevices", "IsGPUDeviceType", "IsOperator", "NameScope", "Net",
        "ScopedBlobReference", "ScopedName", "device_equal", "device_option_equal",
        "get_ssa", "get_output_producers", "InferOpDeviceAsBlobDevices",
        "InferOpBlobDevicesAsDict", "InjectCrossDeviceCopies",
        "InjectDeviceCopiesAmongNets", "InjectDeviceCopiesAmongNetsWithoutB2D",
    ],
    "graphnet.memonger": [
        "share_grad_blobs", "optimize_inference_for_dag", "optimize_inference_fast",
        "release_blobs_when_used", "estimate_memory_usage", "compute_statistics",
        "verify_graph_equality", "verify_inplace_blobs", "Statistics", "blob_nbytes",
        "collect_blob_sizes",
    ],
    "graphnet.predictor.mobile_exporter": ["Export", "add_tensor"],
    "graphnet.workspace": [
        "Blobs", "CreateBlob", "CreateNet", "CurrentWorkspace", "FeedBlob", "FetchBlob",
        "FetchBlobs", "GlobalInit", "GpuDeviceType", "HasBlob", "InferShapesAndTypes",
        "NumCudaDevices", "NumGpuDevices", "RegisteredOperators", "ResetBlob",
        "ResetWorkspace", "RunNet", "RunNetOnce", "RunOperatorOnce", "RunOperatorsOnce",
        "StringifyProto", "SwitchWorkspace", "Workspace", "Workspaces", "blobs",
        "has_gpu_support", "SetVirtualGpuCount", "SetStrictDevices",
    ],
    "graphnet.scope": ["CurrentDeviceScope", "CurrentNameScope", "DeviceScope",
                       "NameScope", "EmptyNameScope", "EmptyDeviceScope"],
    "graphnet.model_helper": ["ModelHelper"],
    "graphnet.dyndep": ["InitOpsLibrary", "GetImportedOpsLibraries"],
    "graphnet.net_drawer": ["GetPydotGraph", "GetPydotGraphMinimal"],
    "graphnet.utils": ["MakeArgument", "NumpyArrayToCaffe2Tensor",
                       "Caffe2TensorToNumpyArray", "ArgsToDict"],
    "graphnet.compat": ["install", "uninstall"],
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_pinned_names_exist(module):
    mod = importlib.import_module(module)
    missing = [n for n in PINNED[module] if not hasattr(mod, n)]
    assert not missing, "%s lost %s" % (module, missing)
    exported = getattr(mod, "__all__", None)
    if exported is not None:
        assert set(PINNED[module]) <= set(exported) | {"GlobalInit"}, \
            set(PINNED[module]) - set(exported)


def test_brew_helpers():
    from graphnet import brew
    for helper in ["fc", "relu", "tanh", "softmax", "dropout", "concat", "sum",
                   "transpose", "iter", "mat_mul", "batch_mat_mul", "add_weight_decay",
                   "arg_scope"]:
        assert brew.has_helper(helper), helper
    assert not brew.has_helper("sigmoid")  # Caffe2 never had brew.sigmoid
    with pytest.raises(AttributeError, match="Helper function sigmoid not registered."):
        brew.sigmoid


def test_ops_package_is_namespaced():
    """ops/ installs as graphnet.ops, never as a global module named `ops`."""
    import configparser
    import os

    import graphnet.ops
    assert graphnet.ops.__name__ == "graphnet.ops"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(root, "setup.cfg"))
    packages = cfg["options"]["packages"].split()
    assert "graphnet.ops" in packages and "ops" not in packages
    assert cfg["options"]["package_dir"].split() == ["graphnet.ops", "=", "ops"]
