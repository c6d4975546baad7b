#!/usr/bin/env bash
# The router conformance kit (tools/conformance/kit.py, docs/PEERS.md) on small lfmoe dumps (tiny
# preset, 3 optimizer steps of 2 micro-batches, bias rate 0.01 so that the bias changes routing):
#   * the example adapters (Megatron-, torchtitan-, HF-DeepseekV3-style, and the DeepSeek-V3
#     inference gate with --router-only) must pass on the dumps of their settings;
#   * every planted bug of tools/conformance/adapters/bugs.py must fail with its own DIAGNOSIS name;
#   * the kit refuses what it cannot check (not a dump, an adapter without the interface, a config
#     the adapter cannot express) with exit status 2.
# With a build whose dumps are version 1 (no router logits) only the replay checks run, and the bugs
# that need routing say SKIP.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_torch
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp

KIT="$PY tools/conformance/kit.py"
AD=tools/conformance/adapters
COMMON="--preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 11 --init-std 0.02 --warmup 2 --lr 3e-3 --threads 1 --bias-rate 0.01 --dump-steps 3"
v2=0
"$BUILD/train" --help 2>&1 | grep -q -- '--bias-center' && v2=1
declare -A DUMPS=(
  [plain]="--balance lossfree --norm-topk --route-scale 2.5"
)
if [ $v2 -eq 1 ]; then
  DUMPS[centred]="--balance lossfree --bias-center --route-scale 2"
  DUMPS[aux]="--balance lossfree_aux --aux-alpha 0.01 --norm-topk --route-scale 2.5"
  DUMPS[softmax]="--gate softmax --balance aux --aux-per-batch --aux-alpha 0.01 --norm-topk"
fi
for k in "${!DUMPS[@]}"; do
  if ! "$BUILD/train" $COMMON ${DUMPS[$k]} --dump "$TMP/$k.safetensors" > "$TMP/$k.train.log" 2>&1; then
    tail -n 5 "$TMP/$k.train.log"; bad "train --dump failed for the $k dump"
  fi
done
[ $fail -eq 0 ] || exit 1

# run_kit NAME EXPECT DUMP ADAPTER [kit flags]: EXPECT = pass, or the DIAGNOSIS name a failure must carry
rows=()
run_kit() {
  local name=$1 expect=$2 dump=$3 adapter=$4; shift 4
  $KIT "$TMP/$dump.safetensors" --adapter "$adapter" "$@" > "$TMP/$name.out" 2>&1; local rc=$?
  local diag res=ok
  diag=$(grep -o '^DIAGNOSIS [a-z0-9-]*' "$TMP/$name.out" | cut -d' ' -f2 | tr '\n' ' ')
  if [ "$expect" = pass ]; then
    if [ $rc -ne 0 ] || ! grep -q '^RESULT: PASS' "$TMP/$name.out"; then res=WRONG; fi
    # a faithful run on a version 2 dump must have checked the router itself, not only replayed
    if [ $v2 -eq 1 ] && ! grep -qE '^routing +[1-9]' "$TMP/$name.out"; then res=WRONG; fi
  else
    if [ $rc -ne 1 ] || ! grep -q "^DIAGNOSIS $expect:" "$TMP/$name.out"; then res=WRONG; fi
  fi
  if [ $res = WRONG ]; then cat "$TMP/$name.out"; bad "$name: expected $expect"; fi
  local verdict
  verdict=$(grep -E '^(routing|gates|aux_loss|load|bias|large_counts) +[0-9]' "$TMP/$name.out" |
            awk '$5 > 0 {printf "%s%s", sep, $1; sep=","}')
  rows+=("$name|$dump|rc $rc, mismatch in: ${verdict:-none}|${diag:-none}|$res")
}

echo "== faithful adapters (dumps version $([ $v2 -eq 1 ] && echo 2 || echo 1))"
run_kit megatron-style pass plain $AD/megatron_style.py
run_kit hf-deepseek-v3-style pass plain $AD/hf_deepseek_v3_style.py
if [ $v2 -eq 1 ]; then
  run_kit megatron-style-seq-aux pass aux $AD/megatron_style.py
  run_kit megatron-style-softmax-aux pass softmax $AD/megatron_style.py
  run_kit torchtitan-style pass centred $AD/torchtitan_style.py
  run_kit deepseek-v3-inference pass plain $AD/deepseek_v3_inference_style.py --router-only
fi

echo "== planted bugs"
while read -r cls diag dump needs; do
  if [ "$needs" = v2 ] && [ $v2 -eq 0 ]; then
    echo "SKIP: $cls needs a version 2 dump (router logits of every step)"; continue
  fi
  run_kit "$cls" "$diag" "$dump" "$AD/bugs.py:$cls"
done < <(cd $AD && $PY bugs.py)

echo "== refusals"
$KIT "$DATA" --adapter $AD/megatron_style.py > "$TMP/r1.out" 2>&1; rc=$?
{ [ $rc -eq 2 ] && grep -q 'not an lfmoe dump\|safetensors' "$TMP/r1.out"; } || { cat "$TMP/r1.out"; bad "a non-dump file must be refused (exit 2)"; }
printf 'class Adapter:\n    layout = "bt"\n    def __init__(self, *a):\n        pass\n' > "$TMP/empty_adapter.py"
$KIT "$TMP/plain.safetensors" --adapter "$TMP/empty_adapter.py" > "$TMP/r2.out" 2>&1; rc=$?
{ [ $rc -eq 2 ] && grep -q 'lacks' "$TMP/r2.out"; } || { cat "$TMP/r2.out"; bad "an adapter without route/load/end_step/saved_bias must be refused"; }
if [ $v2 -eq 1 ]; then
  $KIT "$TMP/plain.safetensors" --adapter $AD/torchtitan_style.py > "$TMP/r3.out" 2>&1; rc=$?
  { [ $rc -eq 2 ] && grep -q 'refuses' "$TMP/r3.out"; } || { cat "$TMP/r3.out"; bad "torchtitan-style on an uncentred dump must be refused"; }
fi

echo
printf '%-28s %-8s %-44s %-28s %s\n' run dump verdict diagnosis check
for r in "${rows[@]}"; do
  IFS='|' read -r n dmp v dg res <<< "$r"
  printf '%-28s %-8s %-44s %-28s %s\n' "$n" "$dmp" "$v" "$dg" "$res"
done
[ $fail -eq 0 ] && echo "check_conformance: PASS" || echo "check_conformance: FAIL"
exit $fail
