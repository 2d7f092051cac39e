#!/usr/bin/env bash
# The GPU checks of issue 16 in one run on a lent GPU machine (the device tool).
#
# That machine has torch, scikit-learn and scikit-image but no skorch or torchattacks,
# and ../shared does not travel: `make device-prep` gathers their wheels and the MNIST
# files into .device/ (git-ignored). Then, in one call of the device tool's `run`:
#
#     command: bash benchmarks/device_check.sh     carry: [".device"]     timeout_s: 600
#
# It runs the GPU tests, then the GPU benchmarks (benchmarks/gpu.py: attacks against the
# floor and torchattacks, evaluate_robustness against AutoAttack, training against
# hand-written loops; benchmarks/mixed_precision.py on the device), each under its own
# time limit so that one slow step cannot eat the lease, and writes logs and JSON under
# $OUT (what comes back). At most 8.5 minutes; sizes: DEVICE_N (images attacked),
# DEVICE_N_EVAL (images evaluated), DEVICE_N_TRAIN (images of a training epoch).
set -uo pipefail
OUT=${OUT:-/tmp/skrobust_device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if compgen -G ".device/whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .device/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no .device/whl: run 'make device-prep' here first (skorch is needed)" >&2
    export PYTHONPATH=$PWD
fi
if [ -d .device/data/mnist ]; then export SKROBUST_DATA=$PWD/.device/data; fi

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, never abort the rest
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c \
    "import torch, sklearn; print(torch.__version__, sklearn.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$OUT/machine.log"
step gpu_tests 120 python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
step gpu_bench 300 python3 benchmarks/gpu.py --n "${DEVICE_N:-10000}" \
    --n-eval "${DEVICE_N_EVAL:-1000}" --n-train "${DEVICE_N_TRAIN:-20000}" --repeats 3 \
    --json "$OUT/gpu.json"
step mixed_precision 90 python3 benchmarks/mixed_precision.py --device cuda --n 2048 \
    --accuracy-epochs 0 --json "$OUT/mixed_precision.json"
