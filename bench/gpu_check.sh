#!/usr/bin/env bash
# The GPU measurements this kit still owes, as one short script for a session that is lent a GPU machine.
#
#   bash bench/gpu_wheels.sh                      # here (with internet to PyPI): the wheels the GPU machine lacks
#   bash bench/gpu_check.sh                       # there, from the repo root; the device tool: carry [".whl"]
#
# It needs a CUDA GPU and the GPU machine's own python3 (torch, torchvision, OpenCV, scikit-image are there);
# basicsr comes from .whl/. Each step prints its table and writes it to $OUT (the device tool brings $OUT
# back) or to bench/out/gpu/. Expected to take a few minutes on an H200 (not yet measured); nothing here is a test.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
out=${OUT:-bench/out/gpu}
mkdir -p "$out"
if [ -d .whl ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/*.whl failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
# KIT_GPU_CHECK_DRY=1 runs it all on the CPU (to check the script itself; the numbers are then CPU numbers).
"$PYTHON" -c "import os, torch; assert torch.cuda.is_available() or os.environ.get('KIT_GPU_CHECK_DRY'), 'no CUDA GPU here'" \
    || exit 1
device=$("$PYTHON" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")

status=0
step() {  # step NAME COMMAND...: run, keep its output in $out/NAME.txt, remember a failure and go on
    local name=$1
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== $name failed (exit $rc)"; status=1; }
}

# 1. The metrics on the GPU equal BasicSR's numpy reference (the tests, on the GPU).
step metrics_tests env KIT_TEST_DEVICE="$device" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_metrics.py tests/test_tiled.py
# 2. Issue 4: PSNR+SSIM over a folder, torch on the GPU vs BasicSR's numpy (target >= 20x).
step bench_metrics "$PYTHON" bench/bench_metrics.py --repeat 5
# 3. A distillation step vs student step + teacher inference, on the GPU (fp32 and bf16), and the teacher cache.
step bench_distill_step "$PYTHON" bench/bench_distill_step.py --device "$device" --iters 30
step bench_distill_step_bf16 "$PYTHON" bench/bench_distill_step.py --device "$device" --iters 30 --amp bf16
step bench_teacher_cache "$PYTHON" bench/bench_teacher_cache.py --device "$device" --iters 30
# 4. The main job end to end on the GPU with bf16 autocast (teacher stage, then the student with its CWD pair).
step train_bf16 "$PYTHON" train.py -opt options/distill.yml --force_yml name=gpu_check_distill train:amp=bf16
exit $status
