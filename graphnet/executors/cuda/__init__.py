"""The CuPy executor: ops placed on GPUs run on real GPUs through CuPy.

settings  environment / Python settings (GRAPHNET_CUDA, GRAPHNET_GPU_MAP, ...)
probe     whether CuPy sees GPUs (imports CuPy lazily) and the logical -> physical map
runtime   one stream per logical GPU, peer access, pinned host buffers
backend   CupyBackend: the array backend (xp = cupy) kernels see as ctx.backend
copies    host <-> device and device <-> device copies on the current stream
runner    runs a plan: per-device streams, cross-device CUDA events, one final sync
checks    deferred index checks made by the kernels themselves
errors    CUDA errors as messages naming the device
nccl      NCCLAllreduce / Broadcast / Reduce through cupy.cuda.nccl
launch    compiling and launching the RawKernel sources of ops/ (per device, lazily)

Importing this package imports no CuPy; graphnet.executors.backends decides,
per process, whether CUDA-typed ops run here or on numpy-emulated GPUs.
"""
