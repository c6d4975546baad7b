#!/usr/bin/env bash
# One training step of lfmoe (train --dump) against the independent PyTorch reference
# (tests/torch_ref.py check), over configs that together cover: gate sigmoid/softmax; balance
# none / aux (per sequence and per batch) / loss-free add and mul with the sign and error rules;
# token choice and expert choice (with and without shuffle); K 1..3; E 8 and 6 (not a power of
# two); S 0..2; n_dense 0, 1, 2; norm_topk with a route scale; grad_accum 2 everywhere; and the
# peers' semantics: the centred bias update (torchtitan), the bias plus the sequence-wise aux loss
# (DeepSeek-V3), a gate scale without renormalisation, K=1 gates (Megatron's softmax-after-top-K
# gives 1; sigmoid gives the score, or 1 with norm_topk); and a dump that continues a checkpoint.
#
# Init: the default init std 0.006 puts every sigmoid score at 0.5 +- 0.01, so keys of different
# experts are ~1e-3 apart and a near-tie (keys within the checker's 1e-5 budget) turns up every
# few hundred tokens. Most configs use --init-std 0.02 so that routing is decided by clear gaps;
# one keeps the default to exercise the near-tie path on a realistic init.
#
# First the checker's own selftest runs (a float32 dump must pass, corrupted dumps must fail),
# so this script cannot go green with a checker that accepts anything.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_torch
if [ ! -f train.cpp ]; then
  echo "SKIP: train.cpp does not exist yet (the dump comparison needs build/train --dump)"; exit 0
fi
require_built "$BUILD/train"
require_tiny_data

echo "== checker selftest"
$PY tests/torch_ref.py selftest || { echo "FAIL: the checker's selftest failed"; exit 1; }

make_tmp
# small shapes so that the float64 reference is quick: N = 2*32 tokens per micro-batch
COMMON="--preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 7"
CASES=(
  "sig-lossfree-add-sign|--init-std 0.02 --gate sigmoid --balance lossfree --bias-kind add --update-rule sign"
  "soft-aux-seq-K1-S0-nd0-E6|--init-std 0.02 --gate softmax --balance aux --aux-alpha 0.01 --topk 1 --shared 0 --dense-layers 0 --experts 6"
  "sig-aux-batch-normtopk-K3-S2-nd2-E6|--init-std 0.02 --gate sigmoid --balance aux --aux-alpha 0.01 --aux-per-batch --norm-topk --route-scale 2.5 --topk 3 --shared 2 --dense-layers 2 --experts 6"
  "sig-lossfree-mul-error|--init-std 0.02 --gate sigmoid --balance lossfree --bias-kind mul --update-rule error"
  "sig-none-expert-choice|--init-std 0.02 --gate sigmoid --balance none --routing expert_choice"
  "soft-none-ec-shuffle-chunk32|--init-std 0.02 --gate softmax --balance none --routing expert_choice --ec-chunk 32 --ec-shuffle"
  "soft-lossfree-add-error-nd0-E6|--init-std 0.02 --gate softmax --balance lossfree --update-rule error --dense-layers 0 --experts 6"
  "sig-default-init-0.006|--gate sigmoid --balance lossfree"
  # the peers' router semantics (docs/MODEL.md sections 5-6); multi-step dumps also run `trajectory`
  "sig-center-sign-3steps|--init-std 0.02 --bias-center --bias-rate 0.01 --dump-steps 3"
  "soft-center-error-mul|--init-std 0.02 --gate softmax --bias-center --update-rule error --bias-kind mul"
  "sig-lossfree_aux-normtopk2.5-2steps|--init-std 0.02 --balance lossfree_aux --aux-alpha 1e-3 --norm-topk --route-scale 2.5 --dump-steps 2"
  "soft-lossfree_aux-batch|--init-std 0.02 --gate softmax --balance lossfree_aux --aux-alpha 0.01 --aux-per-batch"
  "sig-scale2-no-norm|--init-std 0.02 --route-scale 2"
  "soft-K1-normtopk-megatron|--init-std 0.02 --gate softmax --topk 1 --norm-topk --balance none"
  "sig-K1-plain-gate-is-score|--init-std 0.02 --topk 1"
  "sig-K1-normtopk-gate-1|--init-std 0.02 --topk 1 --norm-topk --route-scale 1.5"
)

# A dump that continues a checkpoint (step 4 of 20): the schedule, AdamW's moments and step count
# and the bias go on from the checkpoint, and the checker replays it from the dump's init/.
RES="--init-std 0.02 --bias-rate 0.01 --steps 20 --warmup 6"
if "$BUILD/train" $COMMON $RES --stop-after 4 --save "$TMP/ckpt4.safetensors" > "$TMP/ckpt4.log" 2>&1; then
  CASES+=("resumed-at-step4-2steps|$RES --resume $TMP/ckpt4.safetensors --dump-steps 2")
else
  tail -n 5 "$TMP/ckpt4.log"; echo "FAIL: the checkpoint for the resumed dump was not written"; fail=1
fi

rows=()
for c in "${CASES[@]}"; do
  name=${c%%|*}; flags=${c#*|}
  echo "== $name: $BUILD/train $COMMON $flags --dump ..."
  dump="$TMP/$name.safetensors"
  if ! "$BUILD/train" $COMMON $flags --dump "$dump" > "$TMP/$name.train.log" 2>&1; then
    tail -n 20 "$TMP/$name.train.log"
    rows+=("$name|train failed|||||FAIL"); fail=1; continue
  fi
  $PY tests/torch_ref.py check "$dump" > "$TMP/$name.check.log" 2>&1; rc=$?
  case "$flags" in *--dump-steps*)
    $PY tests/torch_ref.py trajectory "$dump" >> "$TMP/$name.check.log" 2>&1 || rc=1 ;;
  esac
  # the full table only when something is off; near-ties and failures always
  if [ $rc -ne 0 ]; then cat "$TMP/$name.check.log"; else grep -E '^(near-tie|warning)' "$TMP/$name.check.log"; fi
  s=$(grep '^SUMMARY' "$TMP/$name.check.log" | tail -n 1)
  get() { echo "$s" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  res=PASS; [ $rc -eq 0 ] || { res=FAIL; fail=1; }
  rows+=("$name|$(get activations)|$(get loss)|$(get grads)|$(get params)|$(get near_ties)|$res")
done

echo
echo "lfmoe dump vs PyTorch float64 reference (worst relative error / worst fraction of budget used)"
printf '%-38s %-18s %-18s %-18s %-18s %-9s %s\n' config activations losses grads params-after near-ties result
for r in "${rows[@]}"; do
  IFS='|' read -r n a l g p t res <<< "$r"
  printf '%-38s %-18s %-18s %-18s %-18s %-9s %s\n' "$n" "$a" "$l" "$g" "$p" "$t" "$res"
done
[ $fail -eq 0 ] && echo "check_torch_dumps: PASS" || echo "check_torch_dumps: FAIL"
exit $fail
