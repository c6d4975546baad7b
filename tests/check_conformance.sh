#!/usr/bin/env bash
# The router conformance kit (tools/conformance/kit.py, docs/PEERS.md) on small lfmoe dumps (tiny
# preset, 3 optimizer steps of 2 micro-batches, bias rate 0.01 so that the bias changes routing):
#   * the example adapters (Megatron-, torchtitan-, HF-DeepseekV3-style, and the DeepSeek-V3
#     inference gate with --router-only) must pass on the dumps of their settings;
#   * every planted bug of tools/conformance/adapters/bugs.py must fail with its own DIAGNOSIS name;
#   * an exact tie (planted into a 1-step dump) broken to the higher index is one near-tie and passes;
#   * the kit refuses what it cannot check (not a dump, an adapter without the interface, a config
#     the adapter cannot express) with exit status 2.
# With a build whose dumps are version 1 (no router logits) only the replay checks run, and the bugs
# that need routing say SKIP. The cases run in one Python process (tests/conformance_cases.py); the
# refusals go through the command line, as a user would meet them.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_torch
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp

KIT="$PY tools/conformance/kit.py"
AD=tools/conformance/adapters
COMMON="--preset tiny --seq 32 --batch 2 --grad-accum 2 --data $DATA --seed 11 --init-std 0.02 --warmup 2 --lr 3e-3 --threads 1 --dump-steps 3"
v2=0
"$BUILD/train" --help 2>&1 | grep -q -- '--bias-center' && v2=1
declare -A DUMPS=(
  [plain]="--balance lossfree --bias-rate 0.01 --norm-topk --route-scale 2.5"
)
if [ $v2 -eq 1 ]; then
  DUMPS[centred]="--balance lossfree --bias-rate 0.01 --bias-center --route-scale 2"
  DUMPS[aux]="--balance lossfree_aux --bias-rate 0.01 --aux-alpha 0.01 --norm-topk --route-scale 2.5"
  DUMPS[softmax]="--gate softmax --balance aux --aux-per-batch --aux-alpha 0.01 --norm-topk"
  DUMPS[onestep]="--balance lossfree --bias-rate 0.01 --norm-topk --route-scale 2.5 --dump-steps 1"
fi
for k in "${!DUMPS[@]}"; do
  if ! "$BUILD/train" $COMMON ${DUMPS[$k]} --dump "$TMP/$k.safetensors" > "$TMP/$k.train.log" 2>&1; then
    tail -n 5 "$TMP/$k.train.log"; bad "train --dump failed for the $k dump"
  fi
done
[ $fail -eq 0 ] || exit 1

echo "== the example adapters and the planted bugs (tests/conformance_cases.py)"
$PY tests/conformance_cases.py "$TMP" "$([ $v2 -eq 1 ] && echo 2 || echo 1)" || bad "a conformance case did not do what it must"

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

[ $fail -eq 0 ] && echo "check_conformance: PASS" || echo "check_conformance: FAIL"
exit $fail
