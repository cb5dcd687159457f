"""graphnet: Caffe2's Python front end on a NetDef IR, run with numpy (CPU and
emulated GPUs), CuPy (real GPUs) and MPI/NCCL (many processes).

`from graphnet import core, workspace` is the Caffe2 `from caffe2.python import
core, workspace`; `python -m graphnet run script.py` runs a legacy Caffe2 script.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
