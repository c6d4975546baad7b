#!/usr/bin/env bash
# Ten optimizer steps of lfmoe (train --dump --dump-steps 10) against the float64 PyTorch reference
# (tests/torch_ref.py trajectory): per-step CE and aux loss and grad norm within 1e-4 relative,
# per-step expert counts and loss-free biases bit for bit (they come from integer counts), final
# parameters within the trajectory budget. The bias rate is raised to 0.01 so that after a few steps
# the bias actually changes which experts are picked (at 1e-3 it stays below the score gaps).
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_torch
if [ ! -f train.cpp ]; then
  echo "SKIP: train.cpp does not exist yet (the trajectory comparison needs build/train --dump)"; exit 0
fi
require_built "$BUILD/train"
require_tiny_data

make_tmp
COMMON="--preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 11 --init-std 0.02 --warmup 2 --lr 3e-3"
CASES=(
  "lossfree-add-sign|--gate sigmoid --balance lossfree --bias-kind add --update-rule sign --bias-rate 0.01"
  "lossfree-mul-error|--gate sigmoid --balance lossfree --bias-kind mul --update-rule error --bias-rate 0.01"
  "aux-softmax|--gate softmax --balance aux --aux-alpha 0.01"
)
rows=()
for c in "${CASES[@]}"; do
  name=${c%%|*}; flags=${c#*|}
  echo "== $name: $BUILD/train $COMMON $flags --dump ... --dump-steps 10"
  dump="$TMP/$name.safetensors"
  if ! "$BUILD/train" $COMMON $flags --dump "$dump" --dump-steps 10 > "$TMP/$name.train.log" 2>&1; then
    tail -n 20 "$TMP/$name.train.log"; rows+=("$name|train failed|||FAIL"); fail=1; continue
  fi
  $PY tests/torch_ref.py trajectory "$dump" > "$TMP/$name.log" 2>&1; rc=$?
  if [ $rc -ne 0 ]; then cat "$TMP/$name.log"; else grep -E '^( *[0-9]+ |step |near-tie|warning)' "$TMP/$name.log"; fi
  s=$(grep '^SUMMARY' "$TMP/$name.log" | tail -n 1)
  get() { echo "$s" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  res=PASS; [ $rc -eq 0 ] || { res=FAIL; fail=1; }
  rows+=("$name|$(get loss)|$(get params)|$(get near_ties)|$res")
done
echo
echo "10-step trajectories vs PyTorch float64 (worst relative error / worst fraction of budget used)"
printf '%-22s %-20s %-20s %-9s %s\n' config losses final-params near-ties result
for r in "${rows[@]}"; do
  IFS='|' read -r n l p t res <<< "$r"
  printf '%-22s %-20s %-20s %-9s %s\n' "$n" "$l" "$p" "$t" "$res"
done
[ $fail -eq 0 ] && echo "check_torch_trajectory: PASS" || echo "check_torch_trajectory: FAIL"
exit $fail
