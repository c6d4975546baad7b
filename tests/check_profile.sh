#!/usr/bin/env bash
# train --profile (ref/profile.h, docs/SPEED.md):
# 1. the line: "profile: ..." holds every documented field with a number; the medians are over the
#    steps after --profile-warmup; tok_s_median = tokens_per_step / step_ms_median (an odd count of
#    measured steps, so both are the middle step); the four timed phases fit in the step;
# 2. profiling changes no value: the JSONL step records of a run with --profile equal those of the
#    same run without it (all but the timing field tok_s), on 1 and 2 threads;
# 3. refusals: --profile with --dump, a negative --profile-warmup; --help documents the line.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp
RUN="$BUILD/train --preset tiny --data $DATA --steps 7 --print-every 100"

# 1. the line
out=$($RUN --threads 1 --profile --profile-warmup 4 2>/dev/null) || bad "--profile run failed"
line=$(echo "$out" | grep '^profile: ')
[ -n "$line" ] || bad "no 'profile:' line in: $out"
echo "$line"
$PY - "$line" <<'PYEOF' || bad "the profile line is wrong (above)"
import sys
w = sys.argv[1].split()[1:]
kv = {w[i]: w[i + 1] for i in range(0, len(w) - 1, 2)}
fields = ('steps warmup threads tokens_per_step tok_s_median step_ms_median cpu_ms_median fwd_ms bwd_ms update_ms '
          'gemm_ms gemm_gflop gemm_gflops attention_ms router_ms optimizer_ms other_ms scopes peak_rss_mb').split()
missing = [f for f in fields if f not in kv]
assert not missing and len(w) == 2 * len(fields), f'fields missing {missing} or extra: {w}'
v = {k: float(x) for k, x in kv.items()}
assert v['steps'] == 3 and v['warmup'] == 4 and v['threads'] == 1 and v['tokens_per_step'] == 256, v
assert abs(v['tok_s_median'] - v['tokens_per_step'] / (v['step_ms_median'] / 1e3)) <= 1e-3 * v['tok_s_median'] + 0.1, v
phases = v['gemm_ms'] + v['attention_ms'] + v['router_ms'] + v['optimizer_ms']
assert all(v[k] > 0 for k in ('gemm_ms', 'attention_ms', 'router_ms', 'optimizer_ms', 'fwd_ms', 'bwd_ms', 'update_ms',
                              'gemm_gflop', 'gemm_gflops', 'peak_rss_mb', 'scopes')), v
assert phases <= 1.05 * v['step_ms_median'] and v['other_ms'] > -0.05 * v['step_ms_median'], v
assert v['fwd_ms'] + v['bwd_ms'] + v['update_ms'] <= 1.05 * v['step_ms_median'], v
PYEOF

# 2. the same values with and without the profiler
for t in 1 2; do
  $RUN --threads $t --log "$TMP/plain$t.jsonl" >/dev/null 2>&1 || bad "run without --profile failed"
  $RUN --threads $t --log "$TMP/prof$t.jsonl" --profile >/dev/null 2>&1 || bad "run with --profile failed"
  $PY - "$TMP/plain$t.jsonl" "$TMP/prof$t.jsonl" <<'PYEOF' || bad "--profile changed the step records ($t threads)"
import json, sys
def recs(p):
    r = [json.loads(l) for l in open(p)]
    for x in r:
        x.pop('tok_s', None)
    return r
a, b = recs(sys.argv[1]), recs(sys.argv[2])
assert len(a) == 8 and a == b, (len(a), len(b))
PYEOF
done

# 3. refusals and the help text
msg=$($RUN --profile --dump "$TMP/d.safetensors" 2>&1) && bad "--profile with --dump was accepted"
echo "$msg" | grep -q -- "--profile times the training loop" || bad "--profile --dump: unclear message: $msg"
msg=$($RUN --profile --profile-warmup -1 2>&1) && bad "--profile-warmup -1 was accepted"
echo "$msg" | grep -q -- "--profile-warmup must be >= 0" || bad "--profile-warmup -1: unclear message: $msg"
$BUILD/train --help | grep -q -- "--profile .*profile: steps N" || bad "--help does not document the profile line"
exit $fail
