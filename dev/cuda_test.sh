#!/usr/bin/env bash
# dev/cuda_test.sh — everything that needs a GPU, in one run (docs/CUDA.md; `make cuda-test`):
#   1. build: make all (the trainer with the CUDA backend) and the CUDA tests;
#   2. the CUDA tests: tests/check_cuda.sh (every op and the whole model against the CPU reference);
#   3. compute-sanitizer memcheck and racecheck on short `build/train --backend cuda` runs (token
#      choice and expert choice) and on the CUDA tests; synccheck and initcheck as information;
#   4. CUDA dumps checked by the independent PyTorch reference (tests/torch_ref.py check, trajectory);
#   5. tokens/s: the gpu preset on the GPU against the cpu preset on the CPU (and the cpu preset on
#      the GPU), printed as a table.
# Without a GPU (or without CUDA in the build) it prints one line "SKIP: ..." and exits 0.
# Exit status: 0 when every required stage passed. Logs: build/cuda_test/*.log.
# Environment: JOBS (make -j, default: all cores), SANITIZER (compute-sanitizer's path),
# PY (default: the first of python3, /usr/bin/python3 that imports torch), GPU_STEPS (default 20),
# CPU_STEPS (default 5), CUDA_TEST_OUT (the log folder, default build/cuda_test), SAN_MODE (full,
# the default: memcheck + racecheck on two runs and on the tests, synccheck and initcheck as
# information; short: memcheck and racecheck on one short token-choice run only, as
# dev/gpu_check.sh uses to fit its time).
set -u
cd "$(dirname "$0")/.." || exit 1
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
if [ -z "${PY:-}" ]; then
  PY=/usr/bin/python3
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
  done
fi
SAN_MODE=${SAN_MODE:-full}
GPU_STEPS=${GPU_STEPS:-20}
CPU_STEPS=${CPU_STEPS:-5}
OUT=${CUDA_TEST_OUT:-build/cuda_test}
mkdir -p "$OUT"

# ---- is there a GPU to test on? ----------------------------------------------------------------
if ! make -s -j"$JOBS" all > "$OUT/build.log" 2>&1; then
  tail -n 30 "$OUT/build.log"; echo "FAIL: make all failed (log: $OUT/build.log)"; exit 1
fi
if ! grep -q "CUDA: yes" "$OUT/build.log"; then
  echo "SKIP: this build has no CUDA backend ($(grep -o 'CUDA: no.*' "$OUT/build.log" | head -n 1)); nothing was run on a GPU"
  exit 0
fi
info=$(tests/check_cuda.sh --device-info 2>&1); rc=$?
if [ $rc -eq 2 ]; then
  echo "SKIP: $(echo "$info" | tail -n 1): dev/cuda_test.sh needs a GPU; nothing was run on a GPU"
  exit 0
elif [ $rc -ne 0 ]; then
  echo "$info"; echo "FAIL: could not build or start build/cuda_tests"; exit 1
fi
echo "== $(echo "$info" | tail -n 1)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/== nvidia-smi: /'

# ---- stage bookkeeping -----------------------------------------------------------------------------
results=(); failed=0
# stage NAME REQUIRED(1|0) COMMAND...: runs COMMAND with its output in $OUT/NAME.log
stage() {
  local name=$1 required=$2; shift 2
  local log="$OUT/$name.log" start=$SECONDS rc
  echo "== $name: $*"
  "$@" > "$log" 2>&1; rc=$?
  local res=PASS
  if [ $rc -ne 0 ]; then
    if [ "$required" = 1 ]; then res=FAIL; failed=$((failed + 1)); else res="INFO (exit $rc)"; fi
    tail -n 25 "$log"
  fi
  echo "-- $name: $res ($((SECONDS - start)) s, log $log)"
  results+=("$name|$res")
}

# ---- 2. the CUDA tests ---------------------------------------------------------------------------------
stage cuda-tests 1 tests/check_cuda.sh
grep -E '^  (step 0|10 steps|checkpoint)' "$OUT/cuda-tests.log"  # one summary line per config
grep -E '^      (near-tie|note)' "$OUT/cuda-tests.log" | head -n 20

# ---- 3. compute-sanitizer ------------------------------------------------------------------------------
CUDA_BIN=$(dirname "$(make -s --no-print-directory -f Makefile -f - lfmoe-print-nvcc 2>/dev/null <<'EOF' | tail -n 1
lfmoe-print-nvcc:
	@echo $(NVCC)
EOF
)")
SANITIZER=${SANITIZER:-$(command -v compute-sanitizer 2>/dev/null || ls "$CUDA_BIN/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -n 1)}
DATA=tests/fixtures/tiny.txt
SHORT="--preset tiny --data $DATA --seq 32 --batch 2 --grad-accum 2 --steps 2 --init-std 0.02"
RUN_TC="$SHORT --balance lossfree --bias-kind mul --update-rule error"
RUN_EC="$SHORT --gate softmax --balance aux --aux-alpha 0.01 --norm-topk --route-scale 2.5 --routing expert --ec-chunk 32 --ec-shuffle"
if [ -z "$SANITIZER" ]; then
  echo "== compute-sanitizer not found (it ships with the CUDA Toolkit, in its bin/; set SANITIZER=/path)"
  results+=("compute-sanitizer|FAIL (not found)"); failed=$((failed + 1))
else
  export OMP_NUM_THREADS=1  # the CPU side of the tests is tiny; see tests/check_cuda.sh
  SAN="$SANITIZER --error-exitcode 1 --print-limit 20"
  if [ "$SAN_MODE" = short ]; then
    stage memcheck-train-token-choice 1 $SAN --tool memcheck build/train --backend cuda $RUN_TC
    stage racecheck-train-token-choice 1 $SAN --tool racecheck build/train --backend cuda $RUN_TC
  else
    for tool in memcheck racecheck; do
      stage "$tool-train-token-choice" 1 $SAN --tool $tool build/train --backend cuda $RUN_TC
      stage "$tool-train-expert-choice" 1 $SAN --tool $tool build/train --backend cuda $RUN_EC
    done
    stage memcheck-tests 1 $SAN --tool memcheck build/cuda_tests
    # racecheck instruments every shared-memory access: the op tests and one model step are enough
    stage racecheck-tests 1 $SAN --tool racecheck build/cuda_tests -tce="*10-step*,*checkpoints*"
    stage synccheck-tests 0 $SAN --tool synccheck build/cuda_tests -tce="*10-step*,*checkpoints*"
    stage initcheck-train 0 $SAN --tool initcheck build/train --backend cuda $RUN_TC
  fi
  unset OMP_NUM_THREADS
fi

# ---- 4. CUDA dumps against the PyTorch reference -------------------------------------------------------
# The configs of tests/check_torch_dumps.sh and tests/check_torch_trajectory.sh, on the GPU.
if ! $PY -c 'import torch' 2>/dev/null; then
  echo "== python3-torch missing: run make deps (installs Debian's python3-torch)"
  results+=("torch-check|FAIL (no torch)"); failed=$((failed + 1))
else
  COMMON="--backend cuda --preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 7"
  CHECKS=(
    "sig-lossfree-add-sign|--init-std 0.02 --gate sigmoid --balance lossfree --bias-kind add --update-rule sign"
    "soft-aux-seq-K1-S0-nd0-E6|--init-std 0.02 --gate softmax --balance aux --aux-alpha 0.01 --topk 1 --shared 0 --dense-layers 0 --experts 6"
    "sig-aux-batch-normtopk-K3-S2-nd2-E6|--init-std 0.02 --gate sigmoid --balance aux --aux-alpha 0.01 --aux-per-batch --norm-topk --route-scale 2.5 --topk 3 --shared 2 --dense-layers 2 --experts 6"
    "sig-lossfree-mul-error|--init-std 0.02 --gate sigmoid --balance lossfree --bias-kind mul --update-rule error"
    "sig-none-expert-choice|--init-std 0.02 --gate sigmoid --balance none --routing expert"
    "soft-none-ec-shuffle-chunk32|--init-std 0.02 --gate softmax --balance none --routing expert --ec-chunk 32 --ec-shuffle"
    "soft-lossfree-add-error-nd0-E6|--init-std 0.02 --gate softmax --balance lossfree --update-rule error --dense-layers 0 --experts 6"
    "sig-default-init-0.006|--gate sigmoid --balance lossfree"
  )
  torch_check() {  # torch_check NAME MODE(check|trajectory) FLAGS...
    local name=$1 mode=$2; shift 2
    local dump="$OUT/$name.safetensors" steps=1
    [ "$mode" = trajectory ] && steps=10
    build/train "$@" --dump "$dump" --dump-steps $steps || return 1
    $PY tests/torch_ref.py "$mode" "$dump"
  }
  for c in "${CHECKS[@]}"; do
    name=${c%%|*}; flags=${c#*|}
    stage "torch-check-$name" 1 torch_check "$name" check $COMMON $flags
    grep -E '^(SUMMARY|near-tie)' "$OUT/torch-check-$name.log"
  done
  TRAJ="--backend cuda --preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 11 --init-std 0.02 --warmup 2 --lr 3e-3"
  for c in "lossfree-add-sign|--gate sigmoid --balance lossfree --bias-kind add --update-rule sign --bias-rate 0.01" \
           "lossfree-mul-error|--gate sigmoid --balance lossfree --bias-kind mul --update-rule error --bias-rate 0.01" \
           "aux-softmax|--gate softmax --balance aux --aux-alpha 0.01"; do
    name=${c%%|*}; flags=${c#*|}
    stage "torch-trajectory-$name" 1 torch_check "traj-$name" trajectory $TRAJ $flags
    grep -E '^(SUMMARY|near-tie)' "$OUT/torch-trajectory-$name.log"
  done
fi

# ---- 5. tokens/s -----------------------------------------------------------------------------------------
# Raw-byte text from the repository's own sources, ~600 KB, so that the gpu preset (16 x 513 tokens
# per micro-batch) has enough for its training windows and a 5% validation split. --vocab keeps each
# preset's vocabulary (raw bytes would otherwise set V = 256).
BENCH="$OUT/bench.txt"
: > "$BENCH"
while [ "$(wc -c < "$BENCH")" -lt 600000 ]; do cat ref/*.cpp ref/*.h cuda/* train.cpp tests/*.cpp >> "$BENCH"; done
median_tok_s() {  # median tok_s of the JSONL step records after the first two (warm-up)
  $PY - "$1" <<'EOF'
import json, sys
v = [r['tok_s'] for r in map(json.loads, open(sys.argv[1])) if r.get('type') == 'step' and r['step'] > 2]
v.sort()
print(f'{v[len(v) // 2]:.0f}' if v else 'n/a')
EOF
}
bench() {  # bench NAME PRESET BACKEND VOCAB STEPS
  rm -f "$OUT/$1.jsonl"
  build/train --preset "$2" --backend "$3" --vocab "$4" --steps "$5" --data "$BENCH" --eval-batches 1 \
    --print-every 5 --log "$OUT/$1.jsonl"
}
stage bench-gpu-preset-cuda 1 bench bench-gpu-preset-cuda gpu cuda 32064 "$GPU_STEPS"
stage bench-cpu-preset-cuda 1 bench bench-cpu-preset-cuda cpu cuda 4096 "$GPU_STEPS"
stage bench-cpu-preset-cpu 1 bench bench-cpu-preset-cpu cpu cpu 4096 "$CPU_STEPS"
echo
echo "tokens/s, median of steps 3..N ($(echo "$info" | tail -n 1); CPU: $(getconf _NPROCESSORS_ONLN) cores)"
printf '%-8s %-8s %-12s %s\n' preset backend tokens/step tok/s
for r in "gpu cuda 8192" "cpu cuda 1024" "cpu cpu 1024"; do
  read -r preset backend tps <<< "$r"
  f="$OUT/bench-$preset-preset-$backend.jsonl"
  printf '%-8s %-8s %-12s %s\n' "$preset" "$backend" "$tps" "$([ -s "$f" ] && median_tok_s "$f" || echo 'n/a')"
done

# ---- summary -----------------------------------------------------------------------------------------------
echo
echo "dev/cuda_test.sh on $(echo "$info" | tail -n 1)"
for r in "${results[@]}"; do printf '  %-40s %s\n' "${r%%|*}" "${r#*|}"; done
echo "cuda_test: $((${#results[@]} - failed)) passed or informational, $failed failed"
[ $failed -eq 0 ]
