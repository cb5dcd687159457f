#!/usr/bin/env bash
# The one prepared script for a session with a lent GPU (see tests/gpu/README.md):
# versions, offline install, the GPU test suite, the GPU benchmarks, the device check
# of every op (tests/ops through tests.gpu.sweep), and a summary table printed last.
# Every step has its own time limit, capped by one deadline for the whole script
# (GPU_RUN_BUDGET, 400 s from the start) so the summary always prints inside the
# device call's 420 s. Step logs go to $OUT (the device tool's folder, which returns
# at most 8 files) when set, else to /tmp/graphnet-gpu; set-up logs to /tmp.
set -u
cd "$(dirname "$0")/../.."
LOGS="${OUT:-/tmp/graphnet-gpu}"
SETUP=/tmp/graphnet-gpu-setup
mkdir -p "$LOGS" "$SETUP"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
START=$(date +%s)
DEADLINE=$(( START + ${GPU_RUN_BUDGET:-400} ))
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
    # A venv for the carried wheels, with the mpich wheel's mpiexec and libmpi beside its
    # python (where mpi4py and tests/distributed/mpirun.py find them). The image's python3
    # is itself a venv, and a venv made from it sees only the interpreter beneath, so a
    # .pth file appends the image's own site directories (CuPy, torch, numpy, pytest,
    # pip, setuptools) after the venv's: the carried protobuf and mpi4py win (-I).
    if $PY -m venv --without-pip --system-site-packages /tmp/gpuvenv > "$SETUP/venv.log" 2>&1 && \
            VSITE=$(/tmp/gpuvenv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
            $PY -c 'import sys; print("import site; " + "; ".join("site.addsitedir(%r)" % p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
                > "$VSITE/_image_site.pth" && \
            /tmp/gpuvenv/bin/python -m pip install -q -I --no-index --no-deps --no-compile \
            --no-cache-dir .whl/*.whl >> "$SETUP/venv.log" 2>&1; then
        PY=/tmp/gpuvenv/bin/python
    else
        cat "$SETUP/venv.log"
        echo "venv install failed: wheels into /tmp/site instead; the MPI tests will be"
        echo "skipped (pip --target leaves out the mpich wheel's libmpi)"
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    $PY -c "import mpi4py, google.protobuf as p; print('carried: protobuf', p.__version__, 'mpi4py', mpi4py.__version__)" || true
fi
if [ -z "${GRAPHNET_SKIP_INSTALL:-}" ] && ! $PY -m pip install -q --no-deps \
        --no-build-isolation --no-index -e . > "$SETUP/install.log" 2>&1; then
    echo "pip install -e . failed (see install.log); using PYTHONPATH=$PWD"
    tail -n 5 "$SETUP/install.log"
    note "pip install -e . | FAILED (PYTHONPATH fallback; see /tmp/graphnet-gpu-setup/install.log)"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import graphnet.workspace" 2> "$SETUP/import.log"; then
    cat "$SETUP/import.log"
    echo "graphnet does not import (protobuf >= 7.35 needed: run tests/gpu/prepare_wheels.sh"
    echo "here and carry .whl)"
    note "import graphnet | FAILED (see import.log)"
fi

# GPU_RUN_STEPS="op_sweep profile_dlrm" runs only the steps named (profile_* steps run
# only when named); unset, every step but the profiles runs.
STEPS=${GPU_RUN_STEPS:-gpu_tests gpu_dist bench_copy bench_sls bench_dlrm bench_launch op_sweep}

run_step() {  # name, seconds, command...  (the limit shrinks to what the deadline leaves)
    local name=$1 limit=$2; shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    local left=$(( DEADLINE - $(date +%s) - 5 ))
    if [ "$left" -lt 10 ]; then note "$name | not run (time budget spent)"; return; fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name (limit ${limit}s)"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$LOGS/$name.log"
    local last
    last=$(grep -iE "passed|failed|skipped|error|^SUMMARY|^sweep:" "$LOGS/$name.log" | tail -n 1)
    { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && last="TIMED OUT after ${limit}s; $last"
    note "$name | rc=$rc | $(( $(date +%s) - t0 ))s | ${last:-no result line}"
}

# (setup.cfg's addopts already give -q -ra; a second -q would hide pytest's counts)
run_step gpu_tests 100 $PY -m pytest tests/gpu -p no:cacheprovider -rfEs -s \
    --ignore=tests/gpu/test_gpu_distributed.py
run_step gpu_dist 70 $PY -m pytest tests/gpu/test_gpu_distributed.py -p no:cacheprovider \
    -rfEs -s
run_step bench_copy 30 $PY benchmarks/gpu_copy_bandwidth.py
run_step bench_sls 45 $PY benchmarks/gpu_sls_bandwidth.py
run_step bench_dlrm 100 $PY benchmarks/gpu_dlrm_step.py --iters 15
run_step bench_launch 30 $PY benchmarks/gpu_launch_costs.py
run_step op_sweep 90 $PY -m pytest tests/ops -p no:cacheprovider -p tests.gpu.sweep
run_step profile_dlrm 60 $PY benchmarks/gpu_dlrm_step.py --config medium --iters 20 \
    --profile 45
run_step profile_sls 40 $PY -m cProfile -s tottime benchmarks/gpu_sls_bandwidth.py \
    --repeat 40

echo
echo "================ SUMMARY ($(( $(date +%s) - START ))s) ================"
for row in "${ROWS[@]}"; do echo "$row"; done
echo "-- benchmarks: what | graphnet | peer | ratio | target"
grep -h "^SUMMARY|" "$LOGS"/bench_*.log 2>/dev/null | sed 's/^SUMMARY| //'
grep -h "^sweep:" "$LOGS/op_sweep.log" 2>/dev/null
echo "logs: $LOGS"
