#!/usr/bin/env bash
# build-asan/train (the trainer under AddressSanitizer + UndefinedBehaviorSanitizer, leak checks on;
# tests/lib_asan.sh) on short trainings of the tiny preset that cover the code paths: loss-free
# balance (add/sign, mul/error with norm-topk), aux loss (per sequence and per batch, softmax gate),
# no balancing, expert choice with chunks and shuffle, grad-accum, evaluation with computation-batch
# MaxVio, periodic and final checkpoints, resume, sampling from a checkpoint and a dump. Each run
# must exit 0 with no sanitizer report, log a finite loss, and the files it should write must
# exist. The first run builds build-asan/ (a few minutes on 2 cores); then about half a minute.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, bad, make_tmp, require_tiny_data
. tests/lib_asan.sh
require_tiny_data
make_tmp
asan_build train
T=$ASAN_BUILD/train
BASE="--preset tiny --data $DATA --seq 32 --batch 2 --warmup 2 --lr 3e-3 --seed 3 --print-every 1"
n=0

# run NAME EXPECTED_FILE ARGS...: one training; EXPECTED_FILE must exist afterwards ("" = none).
run() {
  local name=$1 want=$2; shift 2
  n=$((n + 1))
  "$T" $BASE "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; local rc=$?
  if sanitizer_report "$TMP/err"; then bad "$name: sanitizer report:"; head -30 "$TMP/err"; return; fi
  if [ $rc != 0 ]; then bad "$name: exit $rc: $(tail -3 "$TMP/err" "$TMP/out" | tr '\n' ' ')"; return; fi
  if [ -n "$want" ] && [ ! -s "$want" ]; then bad "$name: did not write $want"; return; fi
  if grep -q '^step' "$TMP/out" && grep '^step' "$TMP/out" | grep -qiE 'loss (nan|-?inf)'; then
    bad "$name: non-finite loss: $(grep '^step' "$TMP/out" | tail -1)"; return
  fi
  printf 'ok  %-26s %s\n' "$name" "$(grep -E '^(step|eval|wrote|sample)' "$TMP/out" | tail -1 | cut -c1-110)"
}

run "lossfree add/sign"       "$TMP/lf.st"  --steps 6 --balance lossfree --bias-rate 0.01 --eval-every 3 --eval-batches 2 \
                                            --ep-dp 1 --save "$TMP/lf.st" --save-every 3 --log "$TMP/lf.jsonl"
run "lossfree mul/error topk" ""            --steps 4 --balance lossfree --bias-kind mul --update-rule error --norm-topk \
                                            --route-scale 2 --grad-accum 2
run "aux per sequence"        ""            --steps 4 --balance aux --aux-alpha 0.01
run "aux per batch, softmax"  ""            --steps 4 --balance aux --aux-alpha 0.01 --aux-per-batch --gate softmax
run "no balance, multistep"   ""            --steps 4 --balance none --schedule multistep --milestones 2,3
run "expert choice, shuffle"  "$TMP/ec.st"  --steps 4 --balance none --routing expert --ec-chunk 32 --ec-shuffle --grad-accum 2 \
                                            --eval-every 4 --eval-batches 1 --save "$TMP/ec.st"
run "resume"                  "$TMP/lf2.st" --steps 9 --balance lossfree --bias-rate 0.01 --resume "$TMP/lf.st" \
                                            --save "$TMP/lf2.st" --log "$TMP/lf.jsonl"
grep -q '"step":9' "$TMP/lf.jsonl" || bad "resume: the log has no step 9 record"
run "sample"                  ""            --steps 9 --resume "$TMP/lf2.st" --sample 16 --prompt "The " --temperature 0.8
grep -q '^The ' "$TMP/out" || bad "sample: the output does not start with the prompt"
run "dump"                    "$TMP/d.st"   --steps 4 --balance lossfree --dump "$TMP/d.st" --dump-steps 2
run "print-config"            ""            --print-config

[ $fail = 0 ] && echo "PASS check_train_asan: $n runs, no sanitizer report" || echo "FAIL check_train_asan"
exit $fail
