#!/usr/bin/env bash
# Download, HERE (a machine with network), the wheels the GPU machine lacks into the
# repository's .whl/ folder (git-ignored through .git/info/exclude). The device image
# has CuPy, torch, numpy, scipy, networkx and pytest, but a protobuf of unknown version;
# graphnet's generated caffe2_pb2 needs protobuf >= 7.35 (Python 3.12, x86-64); the
# multi-rank GPU tests need mpi4py with an MPI library and mpiexec (the mpich wheel,
# installed with it into a venv by run.sh, as CI does).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 -d .whl "protobuf==7.36.2" "mpi4py==4.1.2" "mpich==5.0.2"
ls -la .whl
