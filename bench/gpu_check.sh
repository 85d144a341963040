#!/usr/bin/env bash
# The GPU measurements this kit still owes, as one short script for a session that is lent a GPU machine.
#
#   bash bench/gpu_wheels.sh                      # here (with internet to PyPI): the wheels the GPU machine lacks
#   bash bench/gpu_check.sh                       # there, from the repo root; the device tool: carry [".whl"]
#
# It needs a CUDA GPU and the GPU machine's own python3 (torch, torchvision, OpenCV, scikit-image are there);
# basicsr comes from .whl/. Each step prints its table and writes it to $OUT (the device tool brings $OUT
# back) or to bench/out/gpu/, and $out/summary.md lists every step with its status and seconds. Sized to fit in
# ~10 minutes on one GPU (not yet measured on one: no GPU was lent so far); each step has a time limit, so one
# slow step cannot eat the others' time. Nothing here is a test.
#
# The `real` recipes step (a pretrained SPAN x4 teacher on Set5) needs the teacher and Set5 on that machine:
# ../shared/ (KIT_REAL_TEACHER / KIT_SET5 override), or copied into the worktree and carried:
#   mkdir -p experiments/pretrained datasets && cp ../shared/teachers/spanx4_ch48.safetensors experiments/pretrained/
#   cp -r ../shared/benchmarks/Set5 datasets/      # then carry [".whl", "experiments/pretrained", "datasets/Set5"]
# It is skipped, with a message, when bench/recipes.py has no --setting real (issue 14 not merged) or they are
# missing.
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

# KIT_GPU_CHECK_DRY=1 on the CPU: the same steps with fewer iterations (a check of the script, CPU numbers).
# KIT_GPU_CHECK_ONLY="bench_loader bench_runtime": only the steps named (a rerun of some).
# KIT_GPU_CHECK_BUDGET: seconds for all steps together (default 570 on a GPU: the device tool's 10-minute command);
# each step runs at most its own limit and what is left of the budget, and is skipped when nothing is left.
if [ "$device" = cuda ]; then
    iters=30 compile_iters=20 loader_batches=200 workers="0 1 2 4 8" budget=${KIT_GPU_CHECK_BUDGET:-570} cache="" slow=1
else  # the dry run reuses this machine's inductor cache (a fresh one costs minutes of gcc per network here)
    iters=3 compile_iters=3 loader_batches=20 workers="0 1 2" budget=${KIT_GPU_CHECK_BUDGET:-7200} cache=--warm-cache \
        slow=${KIT_GPU_CHECK_SLOW:-20}  # the CPU is ~20x slower: each step's limit times this
fi
deadline=$((SECONDS + budget))
summary="$out/summary.md"
{
    echo "# bench/gpu_check.sh on $("$PYTHON" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'the CPU (KIT_GPU_CHECK_DRY=1: CPU numbers, not GPU numbers)')")"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---:|"
} >"$summary"

skip() {  # skip NAME WHY
    echo "=== $1 skipped: $2" | tee "$out/$1.txt"
    echo "| $1 | skipped: $2 | 0 |" >>"$summary"
}
status=0
step() {  # step NAME LIMIT_S COMMAND...: run (at most LIMIT_S), keep its output in $out/NAME.txt, go on after a failure
    local name=$1 limit=$(($2 * slow))
    shift 2
    if [ -n "${KIT_GPU_CHECK_ONLY:-}" ] && [[ " $KIT_GPU_CHECK_ONLY " != *" $name "* ]]; then
        skip "$name" "not in KIT_GPU_CHECK_ONLY"; return
    fi
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 10 ]; then skip "$name" "no time left of the ${budget} s budget"; status=1; return; fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "=== $name (at most $limit s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]} verdict=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="timed out after ${limit} s"; status=1
    elif [ "$rc" -ne 0 ]; then verdict="failed (exit $rc)"; status=1; fi
    [ "$verdict" = ok ] || echo "=== $name $verdict"
    echo "| $name | $verdict | $((SECONDS - start)) |" >>"$summary"
}

# 1. The metrics on the GPU equal BasicSR's numpy reference (the tests, on the GPU).
step metrics_tests 60 env KIT_TEST_DEVICE="$device" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_metrics.py tests/test_tiled.py
# 2. Issue 4: PSNR+SSIM over a folder, torch on the GPU vs BasicSR's numpy (target >= 20x).
step bench_metrics 45 "$PYTHON" -m bench metrics --repeat 5
# 3. A distillation step vs student step + teacher inference (fp32, bf16); compiled vs eager (fp32, bf16).
step bench_distill_step 30 "$PYTHON" -m bench distill_step --device "$device" --iters "$iters"
step bench_distill_step_bf16 30 "$PYTHON" -m bench distill_step --device "$device" --iters "$iters" --amp bf16
step bench_compile 90 "$PYTHON" -m bench compile --device "$device" --iters "$compile_iters" --repeat 3 $cache
step bench_compile_bf16 75 "$PYTHON" -m bench compile --device "$device" --iters "$compile_iters" --repeat 3 $cache --amp bf16
# 4. The loader's samples/s by workers beside the step rates; 1100/s: an EDSR-64x16 step at batch 16 on an H200.
step bench_loader 60 "$PYTHON" -m bench loader --device "$device" --batches "$loader_batches" --workers $workers \
    --step-rate 1100
# 5. NTIRE-style runtime of each shipped student (CUDA events around each whole-image forward, cudnn.benchmark off).
step bench_runtime 30 "$PYTHON" -m bench runtime --device "$device" --repeat 3
# 6. The offline teacher cache vs the live teacher.
step bench_teacher_cache 30 "$PYTHON" -m bench teacher_cache --device "$device" --iters "$iters"
# 7. A short `real` recipes run: the pretrained SPAN x4 teacher, the shipped student, scratch vs the CWD recipe.
teacher=${KIT_REAL_TEACHER:-}
set5=${KIT_SET5:-}
for t in experiments/pretrained/spanx4_ch48.safetensors ../shared/teachers/spanx4_ch48.safetensors; do
    [ -n "$teacher" ] || { [ -f "$t" ] && teacher=$t; }
done
for s in datasets/Set5 ../shared/benchmarks/Set5; do
    [ -n "$set5" ] || { [ -d "$s" ] && set5=$s; }
done
if ! grep -q '"real"' bench/recipes.py; then
    skip recipes_real "bench/recipes.py has no --setting real yet (issue 14 not on this branch)"
elif [ -z "$teacher" ] || [ -z "$set5" ]; then
    skip recipes_real "no SPAN x4 teacher / Set5 here (see the header: copy them into the worktree and carry them)"
else
    step recipes_real 120 "$PYTHON" -m bench recipes --setting real --teacher "$teacher" --set5 "$set5" \
        --students rlfn32x4 --steps 600 --seeds 0 --recipes scratch cwd --results "$out/recipes_real"
fi
# 8. The main job end to end with bf16 autocast (teacher stage, then the student with its CWD pair).
step train_bf16 180 "$PYTHON" train.py -opt options/distill.yml --force_yml name=gpu_check_distill train:amp=bf16
cat "$summary"
exit $status
