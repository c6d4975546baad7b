#!/usr/bin/env bash
# dev/gpu_check.sh [OUTDIR] — the one prepared run for a lent GPU machine (docs/CUDA.md, "The first
# GPU run"). Fits in about 8 minutes on a 16-core H100/H200 machine and writes every log and table
# to OUTDIR (default: $OUT, else build/gpu_check). It runs, in this order and without stopping at a
# failure:
#   1. dev/cuda_test.sh with SAN_MODE=short: the build (make -j), the CUDA op and model tests
#      (tests/check_cuda.sh: every op and the model against the CPU reference, checkpoints moved
#      GPU -> CPU -> GPU), compute-sanitizer memcheck and racecheck on one short training run, CUDA
#      dumps checked by the PyTorch reference (tests/torch_ref.py), and the tokens/s table;
#   2. PyTorch eager and torch.compile of the same model and step on the same GPU
#      (dev/bench_cpu_torch.py --device cuda [--compile], the gpu preset), for the speed ratio;
#   3. OUTDIR/summary.md: the stage results and one tokens/s table.
# Exit status: 0 when every required stage of step 1 passed.
# The GPU machine has no network: doctest's header travels with the tree. Prepare it once here with
# `dev/gpu_check.sh --prepare` (copies /usr/include/doctest to .carry/include, which git ignores),
# and name `.carry` in the run's carry list.
set -u
cd "$(dirname "$0")/.." || exit 1
if [ "${1:-}" = --prepare ]; then
  [ -f /usr/include/doctest/doctest.h ] || { echo "gpu_check: /usr/include/doctest/doctest.h missing: run make deps" >&2; exit 1; }
  mkdir -p .carry/include && cp -r /usr/include/doctest .carry/include/ && echo "gpu_check: .carry/include/doctest ready (carry .carry)"
  exit 0
fi
DEST=${1:-${OUT:-build/gpu_check}}
mkdir -p "$DEST" || exit 1
DEST=$(cd "$DEST" && pwd)
[ -d .carry/include ] && export CPATH="$PWD/.carry/include${CPATH:+:$CPATH}"
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 16)}
PY=python3
for p in python3 /usr/bin/python3; do "$p" -c 'import torch' 2>/dev/null && { PY=$p; break; }; done
export PY
t0=$SECONDS
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cores: $(getconf _NPROCESSORS_ONLN)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "nvcc: $( (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | tail -n 1)"
  echo "python: $PY: $($PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -n 1)"
} > "$DEST/env.txt"
cat "$DEST/env.txt"

# ---- 1. tests, sanitizer, PyTorch checks, lfmoe tokens/s -------------------------------------------
echo "== dev/cuda_test.sh (SAN_MODE=short, logs in $DEST/cuda_test)"
JOBS=$JOBS CUDA_TEST_OUT="$DEST/cuda_test" SAN_MODE=short dev/cuda_test.sh > "$DEST/cuda_test.log" 2>&1
rc=$?
tail -n 40 "$DEST/cuda_test.log"
echo "-- dev/cuda_test.sh: exit $rc ($((SECONDS - t0)) s so far)"

# ---- 2. PyTorch eager and torch.compile on the same GPU ----------------------------------------------
for mode in eager compile; do
  flag=""; [ $mode = compile ] && flag=--compile
  echo "== torch $mode: $PY dev/bench_cpu_torch.py --device cuda $flag --steps 12 --warmup 4 -- --preset gpu"
  timeout 150 "$PY" dev/bench_cpu_torch.py --device cuda $flag --steps 12 --warmup 4 -- --preset gpu \
    > "$DEST/torch_$mode.log" 2>&1 || echo "-- torch $mode: exit $? (log $DEST/torch_$mode.log)"
  grep '^torch: ' "$DEST/torch_$mode.log" || tail -n 5 "$DEST/torch_$mode.log"
done

# ---- 3. summary ----------------------------------------------------------------------------------------
median_tok_s() {  # the median tok_s of a train --log JSONL after step 2
  [ -s "$1" ] || { echo n/a; return; }
  "$PY" - "$1" <<'PYEOF'
import json, sys
v = sorted(r['tok_s'] for r in map(json.loads, open(sys.argv[1])) if r.get('type') == 'step' and r['step'] > 2)
print(f'{v[len(v) // 2]:.0f}' if v else 'n/a')
PYEOF
}
torch_tok_s() { grep -o 'tok_s_median [0-9.]*' "$1" 2>/dev/null | awk '{printf "%.0f", $2}' || true; }
lf=$(median_tok_s "$DEST/cuda_test/bench-gpu-preset-cuda.jsonl")
te=$(torch_tok_s "$DEST/torch_eager.log"); tc=$(torch_tok_s "$DEST/torch_compile.log")
ratio() { [ -n "$2" ] && [ "$1" != n/a ] && awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}' || echo n/a; }
{
  echo "# dev/gpu_check.sh"
  echo
  sed 's/^/    /' "$DEST/env.txt"
  echo
  echo "## Stages (dev/cuda_test.sh, exit $rc)"
  echo
  sed -n '/^dev\/cuda_test.sh on /,$p' "$DEST/cuda_test.log" | sed 's/^/    /'
  echo
  echo "## Tokens/s, gpu preset (median after warm-up)"
  echo
  echo "| implementation | tok/s | lfmoe / it |"
  echo "|---|---:|---:|"
  echo "| lfmoe CUDA (fp32, pedantic cuBLAS) | ${lf} | 1.00 |"
  echo "| PyTorch eager (fp32) | ${te:-n/a} | $(ratio "$lf" "$te") |"
  echo "| PyTorch torch.compile (fp32) | ${tc:-n/a} | $(ratio "$lf" "$tc") |"
  echo
  echo "The cpu preset on the CPU and on the GPU: the table at the end of cuda_test.log."
  echo "Total: $((SECONDS - t0)) s."
} > "$DEST/summary.md"
cat "$DEST/summary.md"
exit $rc
