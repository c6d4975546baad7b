#!/usr/bin/env bash
# Interrupting training: SIGTERM or SIGINT (Ctrl-C) stops build/train between two steps, writes the
# checkpoint (--save), prints what it saved and the command that continues, and exits 128 + the
# signal (143, 130). Continuing with that very command ends in a checkpoint byte-identical to the one
# of an uninterrupted run (parameters, AdamW moments, biases, step, data position, config), and the
# step records after the interruption are the uninterrupted run's (as text: shortest round-trip
# numbers, so equal text = equal bits). Also: without --save the message says nothing was kept; two
# runs saving to one path at once both finish (each writes its own PATH.tmp.<pid>, the last rename
# wins) and leave a whole checkpoint and no temp file.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp

N=400  # tiny steps take ~10-20 ms: the signal arrives long before the end
RUN="--preset tiny --data $DATA --threads 1 --steps $N --warmup 5 --lr 3e-3 --seed 3 --print-every 100000"

# step_of FILE: the step in a checkpoint's metadata (read here with the json module, not by lfmoe).
step_of() {
  $PY - "$1" <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
print(json.loads(b[8:8 + n])['__metadata__']['step'])
PYEOF
}

# start_and_signal SIG NAME ARGS...: starts train in the background, waits for 5 step records in its
# log ($TMP/NAME.jsonl), sends SIG, waits; sets rc and leaves stderr in $TMP/NAME.err.
start_and_signal() {
  local sig=$1 name=$2; shift 2
  "$BUILD/train" "$@" --log "$TMP/$name.jsonl" > "$TMP/$name.out" 2> "$TMP/$name.err" &
  local pid=$! i
  for i in $(seq 1 600); do
    local steps; steps=$(grep -c '"type":"step"' "$TMP/$name.jsonl" 2>/dev/null)
    [ "${steps:-0}" -ge 5 ] && break
    sleep 0.05
  done
  kill -"$sig" "$pid"
  wait "$pid"; rc=$?
}

echo "== uninterrupted"
"$BUILD/train" $RUN --save "$TMP/straight.st" --log "$TMP/straight.jsonl" > "$TMP/straight.out" 2>&1 ||
  { tail -n 3 "$TMP/straight.out"; bad "the uninterrupted run failed"; }

for sig in TERM INT; do
  want=$([ $sig = TERM ] && echo 143 || echo 130)
  echo "== SIG$sig, then the printed command"
  start_and_signal $sig "int$sig" $RUN --save "$TMP/int$sig.st"
  err=$(tr '\n' ' ' < "$TMP/int$sig.err")
  if [ "$rc" -ne "$want" ]; then bad "SIG$sig: expected exit $want, got $rc: $err"; continue; fi
  echo "$err" | grep -Eq "interrupted by SIG$sig after step [0-9]+ of $N; saved $TMP/int$sig\.st \(step [0-9]+\); continue with:" ||
    { bad "SIG$sig: message does not say what was saved and how to continue: $err"; continue; }
  k=$(echo "$err" | sed -E 's/.*after step ([0-9]+) of.*/\1/')
  [ "$(step_of "$TMP/int$sig.st")" = "$k" ] || bad "SIG$sig: the checkpoint is not at step $k"
  [ "$k" -lt "$N" ] || bad "SIG$sig: the signal came after the last step; the test proves nothing"
  ls "$TMP"/int$sig.st.tmp* >/dev/null 2>&1 && bad "SIG$sig: a temp file was left"
  cmd=$(grep -A1 "continue with:" "$TMP/int$sig.err" | tail -n 1)
  echo "  stopped after step $k; continuing: ${cmd:0:90}..."
  # The printed command continues the run, logging to a new file (its --log is the same path: appended).
  bash -c "$cmd" > "$TMP/cont$sig.out" 2>&1 || { tail -n 3 "$TMP/cont$sig.out"; bad "SIG$sig: the printed command failed"; continue; }
  cmp -s "$TMP/int$sig.st" "$TMP/straight.st" && echo "  final checkpoint byte-identical to the uninterrupted run's" ||
    bad "SIG$sig: the continued run's checkpoint differs from the uninterrupted run's"
  $PY - "$TMP/straight.jsonl" "$TMP/int$sig.jsonl" "$N" <<'PYEOF' || bad "SIG$sig: step records differ"
import json, sys
def steps(p):
    out = {}
    for line in open(p):
        r = json.loads(line, parse_float=str, parse_int=str)
        if r['type'] == 'step':
            r.pop('tok_s', None); out[int(r['step'])] = r
    return out
a, b, n = steps(sys.argv[1]), steps(sys.argv[2]), int(sys.argv[3])
bad = [s for s in range(1, n + 1) if a.get(s) != b.get(s)]
print(f"  {n} step records compared, {len(bad)} differ" + (f" (first: step {bad[0]})" if bad else ""))
sys.exit(1 if bad else 0)
PYEOF
done

echo "== SIGTERM without --save"
start_and_signal TERM nosave $RUN
err=$(tr '\n' ' ' < "$TMP/nosave.err")
[ "$rc" -eq 143 ] || bad "no --save: expected exit 143, got $rc: $err"
echo "$err" | grep -q "interrupted by SIGTERM after step [0-9]* of $N; nothing saved (no --save)" ||
  bad "no --save: the message does not say nothing was saved: $err"

echo "== two runs saving to one path at once"
"$BUILD/train" $RUN --steps 60 --save "$TMP/shared.st" --save-every 1 > "$TMP/a.out" 2>&1 & pa=$!
"$BUILD/train" $RUN --steps 60 --seed 4 --save "$TMP/shared.st" --save-every 1 > "$TMP/b.out" 2>&1 & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
[ $ra -eq 0 ] || bad "concurrent saves: run A failed ($ra): $(tail -n 1 "$TMP/a.out")"
[ $rb -eq 0 ] || bad "concurrent saves: run B failed ($rb): $(tail -n 1 "$TMP/b.out")"
ls "$TMP"/shared.st.tmp* >/dev/null 2>&1 && bad "concurrent saves: a temp file was left"
"$BUILD/train" $RUN --steps 61 --resume "$TMP/shared.st" > "$TMP/c.out" 2>&1 ||
  bad "concurrent saves: the checkpoint left does not load: $(tail -n 1 "$TMP/c.out")"
[ $fail -eq 0 ] && echo "  both finished; the checkpoint left loads"

[ $fail -eq 0 ] && echo "check_interrupt: PASS" || echo "check_interrupt: FAIL"
exit $fail
