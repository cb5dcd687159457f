#!/usr/bin/env bash
# The one prepared script for a session with a lent GPU (see tests/gpu/README.md):
# versions, offline install, the GPU test suite, the GPU benchmarks, the device check
# of every op (tests/ops through tests.gpu.sweep), and a summary table printed last.
# Every step has its own time limit (380 s in all); most finish well inside theirs.
# Logs go to $OUT (the device tool's folder) when set, else to /tmp/graphnet-gpu.
set -u
cd "$(dirname "$0")/../.."
LOGS="${OUT:-/tmp/graphnet-gpu}"
mkdir -p "$LOGS"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
START=$(date +%s)
declare -a ROWS

note() { ROWS+=("$1"); }

echo "== versions"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY - <<'PYEOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "cupy", "torch", "google.protobuf", "networkx", "scipy", "mpi4py"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING:", exc)
try:
    import cupy
    print("cupy devices", cupy.cuda.runtime.getDeviceCount())
    import cupy.cuda.nccl as nccl  # a submodule `import cupy` does not load
    print("nccl", getattr(nccl, "available", False),
          nccl.get_version() if getattr(nccl, "available", False) else "")
except Exception as exc:
    print("cupy device query failed:", exc)
PYEOF

echo "== install (offline)"
if ls .whl/*.whl >/dev/null 2>&1; then
    # a venv over the image's packages (CuPy, torch): the carried wheels win, and the
    # mpich wheel's mpiexec and libmpi land beside its python, where mpi4py finds them
    if $PY -m venv --system-site-packages /tmp/gpuvenv > "$LOGS/venv.log" 2>&1 && \
            /tmp/gpuvenv/bin/python -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir .whl/*.whl >> "$LOGS/venv.log" 2>&1; then
        PY=/tmp/gpuvenv/bin/python
    else
        echo "venv install failed (see venv.log): wheels into /tmp/site instead"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
fi
if [ -z "${GRAPHNET_SKIP_INSTALL:-}" ] && ! $PY -m pip install -q --no-deps \
        --no-build-isolation --no-index -e . > "$LOGS/install.log" 2>&1; then
    echo "pip install -e . failed (see install.log); using PYTHONPATH=$PWD"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import graphnet.workspace" 2> "$LOGS/import.log"; then
    cat "$LOGS/import.log"
    echo "graphnet does not import (protobuf >= 7.35 needed: run tests/gpu/prepare_wheels.sh"
    echo "here and carry .whl)"
    note "import graphnet | FAILED (see import.log)"
fi

run_step() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$LOGS/$name.log"
    local last
    last=$(grep -E "passed|failed|skipped|error|SUMMARY|sweep:" "$LOGS/$name.log" | tail -n 1)
    [ $rc -eq 124 ] && last="TIMED OUT after ${limit}s; $last"
    note "$name | rc=$rc | $(( $(date +%s) - t0 ))s | ${last:-no result line}"
}

# limits sum to 380 s, inside the device call's 420
run_step gpu_tests 100 $PY -m pytest tests/gpu -q -p no:cacheprovider -rs -s \
    --ignore=tests/gpu/test_gpu_distributed.py
run_step gpu_dist 70 $PY -m pytest tests/gpu/test_gpu_distributed.py -q -p no:cacheprovider \
    -rs -s
run_step bench_copy 30 $PY benchmarks/gpu_copy_bandwidth.py
run_step bench_sls 35 $PY benchmarks/gpu_sls_bandwidth.py
run_step bench_dlrm 55 $PY benchmarks/gpu_dlrm_step.py --iters 15
run_step op_sweep 90 $PY -m pytest tests/ops -q -p no:cacheprovider -p tests.gpu.sweep

echo
echo "================ SUMMARY ($(( $(date +%s) - START ))s) ================"
for row in "${ROWS[@]}"; do echo "$row"; done
echo "-- benchmarks: what | graphnet | peer | ratio | target"
grep -h "^SUMMARY|" "$LOGS"/bench_*.log 2>/dev/null | sed 's/^SUMMARY| //'
grep -h "^sweep:" "$LOGS/op_sweep.log" 2>/dev/null
echo "logs: $LOGS"
