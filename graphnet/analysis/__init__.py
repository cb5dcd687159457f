"""Static analyses of NetDefs, with networkx: the dataflow graph and op DAG
(graph), FLOP/byte and communication estimates (cost), checks that report every
problem with its fix (validate), and a blob-reuse memory planner (memory).

Nothing here runs a net; every function takes a NetDef and, where sizes or
devices matter, the shapes and devices of the blobs fed before the run.
"""

from graphnet.analysis.cost import (Communication, DeviceCost, OpCost, Transfer,
                                    communication, device_costs, op_costs)
from graphnet.analysis.graph import (CriticalPath, blob_versions, critical_path,
                                     net_graph, op_dag, topological_order)
from graphnet.analysis.memory import Lifetime, MemoryReport, liveness, plan_memory
from graphnet.analysis.validate import Finding, validate

__all__ = [
    "net_graph", "op_dag", "topological_order", "critical_path", "blob_versions",
    "CriticalPath",
    "op_costs", "device_costs", "communication", "OpCost", "DeviceCost", "Transfer",
    "Communication",
    "validate", "Finding",
    "liveness", "plan_memory", "Lifetime", "MemoryReport",
]
