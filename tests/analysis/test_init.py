"""graphnet.analysis: the public names are pinned and importable."""

import graphnet.analysis as analysis

PUBLIC = ["net_graph", "op_dag", "topological_order", "critical_path", "blob_versions",
          "CriticalPath", "op_costs", "device_costs", "communication", "OpCost",
          "DeviceCost", "Transfer", "Communication", "validate", "Finding", "liveness",
          "plan_memory", "Lifetime", "MemoryReport"]


def test_public_names_are_exported():
    assert sorted(analysis.__all__) == sorted(PUBLIC)
    assert all(getattr(analysis, name) is not None for name in PUBLIC)


def test_private_helpers_stay_private():
    assert not [name for name in analysis.__all__ if name.startswith("_")]
    assert not hasattr(analysis, "place") and not hasattr(analysis, "trace")
