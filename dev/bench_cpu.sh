#!/usr/bin/env bash
# bench_cpu.sh — lfmoe against an independent PyTorch implementation of the same model and training
# step on this CPU (docs/SPEED.md; `make bench-cpu`). For each config and thread count it trains
# both on the same random-token shard, with the same batch, for a few steps, and prints a table of
# per-step medians after the warm-up steps: tokens/s of each and their ratio, lfmoe's phase split
# (train --profile), its GEMM GFLOP/s against this machine's measured fp32 peak (build/fma_peak),
# and the peak RSS of each process.
#
#   dev/bench_cpu.sh                 quick: the cpu preset, 1 and all threads (~1-2 minutes)
#   dev/bench_cpu.sh --full          cpu, wide, e32, e64 (several minutes)
#   dev/bench_cpu.sh --tiny          the tiny preset, 1 thread, 3 steps (the smoke test's mode)
#   options: --configs "cpu wide e16 e32 e64 tiny"  --threads "1 2"  --steps N  --warmup W
#            --out DIR (keep every run's output there)  --no-peak (skip fma_peak)
#
# Configs (every one is the cpu preset plus flags, see config_flags below):
#   cpu   the cpu preset (C 128, L 4, T 128, E 16, K 2, S 1, F 64, B 8)
#   wide  C 256, L 6, T 256, E 32, K 4, S 2, F 128
#   e16 / e32 / e64   the cpu preset with E experts (K 2): per-token cost against E
#   tiny  the tiny preset (tests)
# Exit status: 0, or 1 when a run failed or the two models disagree (parameter count, or a first
# loss that is not ~ln V on random tokens): then the timings would not compare like with like.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
PY=/usr/bin/python3  # Debian's python3-torch (make deps)
NCPU=$(nproc)

configs="cpu"; threads="1 $NCPU"; steps=8; warmup=2; out=""; peak=1; peak_s=1
while [ $# -gt 0 ]; do
  case "$1" in
    --full) configs="cpu wide e32 e64"; steps=12; warmup=3 ;;
    --tiny) configs="tiny"; threads="1"; steps=3; warmup=1; peak_s=0.2 ;;
    --configs) configs="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --warmup) warmup="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-peak) peak=0 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_cpu: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$threads" = "1 1" ] && threads="1"
case "$steps$warmup" in *[!0-9]*) echo "bench_cpu: --steps and --warmup must be integers" >&2; exit 2 ;; esac
[ "$steps" -gt "$warmup" ] || { echo "bench_cpu: --steps ($steps) must exceed --warmup ($warmup)" >&2; exit 2; }

config_flags() {
  case "$1" in
    cpu|e16) echo "--preset cpu" ;;
    wide) echo "--preset cpu --width 256 --layers 6 --seq 256 --experts 32 --topk 4 --shared 2 --expert-hidden 128" ;;
    e32) echo "--preset cpu --experts 32" ;;
    e64) echo "--preset cpu --experts 64" ;;
    tiny) echo "--preset tiny" ;;
    *) return 1 ;;
  esac
}
for cfg in $configs; do
  config_flags "$cfg" >/dev/null || { echo "bench_cpu: unknown config '$cfg' (cpu wide e16 e32 e64 tiny)" >&2; exit 2; }
done
for need in "$BUILD/train" "$BUILD/fma_peak"; do
  [ -x "$need" ] || { echo "bench_cpu: $need is missing: run make $need (or make bench-cpu)" >&2; exit 1; }
done
$PY -c 'import torch' 2>/dev/null || { echo "bench_cpu: $PY has no torch: run make deps (Debian's python3-torch)" >&2; exit 1; }

if [ -n "$out" ]; then mkdir -p "$out" || exit 1; TMP=$out; else TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT; fi

# field NAME: the value after NAME in a "key value key value" line on stdin
field() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) { print $(i + 1); exit }}'; }

echo "# bench_cpu: $(date -u +%Y-%m-%dT%H:%MZ), $NCPU cores, load average $(cut -d' ' -f1-3 /proc/loadavg), steps $steps (warm-up $warmup), configs: $configs, threads: $threads, OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-unset}"
declare -A peak_gf
if [ "$peak" = 1 ]; then
  for t in $threads; do
    line=$("$BUILD/fma_peak" --threads "$t" --seconds "$peak_s" | grep "^fma_peak:.* threads $t ")
    echo "# $line"
    peak_gf[$t]=$(echo "$line" | field fma_gflops)
  done
fi

rows=(); checks=(); status=0
for cfg in $configs; do
  flags=$(config_flags "$cfg")
  # shellcheck disable=SC2086
  V=$("$BUILD/train" $flags --print-config | $PY -c 'import json,sys; print(json.load(sys.stdin)["V"])') || { status=1; continue; }
  shard=$TMP/rand_$V.bin
  [ -f "$shard" ] || $PY - "$shard" "$V" <<'EOF'
import sys
import numpy as np
path, V = sys.argv[1], int(sys.argv[2])
tok = np.random.default_rng(1234).integers(0, V, size=1 << 18).astype('<u2')  # uniformly random tokens
head = np.zeros(256, dtype='<i4'); head[:3] = (20240520, 1, len(tok))     # llm.c shard, version 1 (uint16)
with open(path, 'wb') as f:
    f.write(head.tobytes() + tok.tobytes())
EOF
  for t in $threads; do
    lf=$TMP/lfmoe_${cfg}_t$t.txt; tf=$TMP/torch_${cfg}_t$t.txt
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$t "$BUILD/train" $flags --data "$shard" --steps "$steps" --threads "$t" --print-every 1 \
      --profile --profile-warmup "$warmup" >"$lf" 2>&1 || { echo "bench_cpu: lfmoe failed ($cfg, $t threads):"; tail -3 "$lf"; status=1; continue; }
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$t $PY dev/bench_cpu_torch.py --steps "$steps" --warmup "$warmup" --threads "$t" --data "$shard" \
      --train "$BUILD/train" -- $flags >"$tf" 2>&1 || { echo "bench_cpu: torch failed ($cfg, $t threads):"; tail -3 "$tf"; status=1; continue; }
    lp=$(grep '^profile: ' "$lf"); tp=$(grep '^torch: ' "$tf")
    l_params=$(sed -n 's/.* \([0-9]*\) parameters,.*/\1/p' "$lf" | head -1)
    t_params=$(echo "$tp" | field params)
    l_loss=$(grep -m1 '^step ' "$lf" | field loss); t_loss=$(echo "$tp" | field loss_first); lnv=$(echo "$tp" | field ln_V)
    verdict=$($PY -c "
lp, tp, ll, tl, v = $l_params, $t_params, $l_loss, $t_loss, $lnv
bad = [m for ok, m in ((lp == tp, 'parameter counts differ'), (abs(ll - v) < 0.05, 'lfmoe first loss is not ~ln V'),
                       (abs(tl - v) < 0.05, 'torch first loss is not ~ln V')) if not ok]
print('; '.join(bad) if bad else 'same')")
    checks+=("# check $cfg t$t: params lfmoe $l_params torch $t_params; first loss lfmoe $l_loss torch $t_loss (ln V $lnv): $verdict")
    [ "$verdict" = same ] || status=1
    rows+=("$($PY - "$cfg" "$t" "${peak_gf[$t]:-}" "$lp" "$tp" <<'EOF'
import sys
cfg, t, peak, lp, tp = sys.argv[1:6]
def kv(line):
    w = line.split()[1:]
    return {w[i]: w[i + 1] for i in range(0, len(w) - 1, 2)}
l, p = kv(lp), kv(tp)
f = lambda d, k: float(d[k])
gf = f(l, 'gemm_gflops')
pct = f'{100 * gf / float(peak):.0f}%' if peak else '-'
cells = [cfg, t, f"{f(l, 'tok_s_median'):.0f}", f"{f(p, 'tok_s_median'):.0f}",
         f"{f(l, 'tok_s_median') / f(p, 'tok_s_median'):.2f}", f"{f(p, 'cpu_ms_median') / f(l, 'cpu_ms_median'):.2f}",
         f"{f(l, 'step_ms_median'):.0f}", f"{f(p, 'step_ms_median'):.0f}"]
cells += [f"{f(l, k + '_ms'):.0f}" for k in ('gemm', 'attention', 'router', 'optimizer', 'other')]
cells += [f'{gf:.1f}', pct, f"{f(l, 'peak_rss_mb'):.0f}", f"{f(p, 'peak_rss_mb'):.0f}"]
print('| ' + ' | '.join(cells) + ' |')
EOF
)")
  done
done

echo
echo "| config | threads | lfmoe tok/s | torch tok/s | ratio | cpu ratio | lfmoe ms/step | torch ms/step | gemm ms | attention ms | router ms | optimizer ms | other ms | GEMM GFLOP/s | % FMA peak | lfmoe RSS MB | torch RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do echo "$r"; done
echo
for c in "${checks[@]}"; do echo "$c"; done
[ -n "$out" ] && echo "# every run's output: $out/"
exit $status
