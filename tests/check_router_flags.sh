#!/usr/bin/env bash
# The router and balance flags act or are refused (docs/MODEL.md sections 5-6): every combination
# without meaning stops with exit status 1 and a message that names both flags and what to use
# instead; so do the semantics the CUDA mirror does not have yet (--backend cuda, whether or not this
# build or machine has CUDA); --help documents the flags; a resumed run's flags are judged against
# the checkpoint's config. (What the flags compute is checked by tests/test_router_flags.cpp and,
# against PyTorch, by tests/check_torch_dumps.sh.)
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp
RUN="$BUILD/train --preset tiny --data $DATA --seq 16 --batch 2 --steps 1 --threads 1"
n=0
refused() {  # refused NAME REGEX FLAGS...: exit status 1 and a message matching REGEX
  local name=$1 rx=$2; shift 2; n=$((n + 1))
  out=$($RUN "$@" 2>&1); rc=$?
  if [ $rc -ne 1 ]; then bad "$name: exit $rc, expected 1 ($*)"; return; fi
  echo "$out" | grep -Eq -- "$rx" || bad "$name: message does not match /$rx/: $(echo "$out" | tail -n 2)"
}
refused "aux alpha without aux loss" "--aux-alpha has no effect with --balance lossfree: .*--balance aux or lossfree_aux" --aux-alpha 1e-3
refused "aux per batch, balance none" "--aux-per-batch has no effect with --balance none" --balance none --aux-per-batch
refused "bias rate with aux"         "--bias-rate has no effect with --balance aux: .*--balance lossfree or lossfree_aux" --balance aux --bias-rate 0.01
refused "bias kind with none"        "--bias-kind has no effect with --balance none" --balance none --bias-kind mul
refused "update rule, expert choice" "--update-rule has no effect with --routing expert" --routing expert --balance none --update-rule error
refused "bias center without bias"   "--bias-center with --balance none: .*use --balance lossfree" --balance none --bias-center
refused "ec-shuffle, token choice"   "--ec-shuffle has no effect with --routing token: .*add --routing expert" --ec-shuffle
refused "ec-chunk, token choice"     "--ec-chunk has no effect with --routing token" --ec-chunk 16
refused "lossfree_aux without alpha" "--balance lossfree_aux with --aux-alpha 0 .*use --balance lossfree" --balance lossfree_aux --aux-alpha 0
refused "lossfree_aux, expert choice" "expert choice has no bias to steer" --routing expert --balance lossfree_aux
refused "route scale 0"              "route-scale must be a positive number" --route-scale 0
refused "cuda: centred bias"         "--bias-center .*not yet in the CUDA mirror; use --backend cpu" --backend cuda --bias-center
refused "cuda: lossfree_aux"         "--balance lossfree_aux .*not yet in the CUDA mirror" --backend cuda --balance lossfree_aux --aux-alpha 1e-4
refused "cuda: scale without norm"   "--route-scale without --norm-topk .*not yet in the CUDA mirror.*add --norm-topk" --backend cuda --route-scale 2.5
refused "unknown balance lists all"  "expected one of: none, aux, lossfree, lossfree_aux" --balance auxx

# a resumed run: the flags are judged against the checkpoint's config (balance aux here)
$RUN --balance aux --save "$TMP/aux.st" > "$TMP/save.out" 2>&1 || { cat "$TMP/save.out"; bad "could not write the checkpoint"; }
n=$((n + 1))
out=$($BUILD/train --data "$DATA" --threads 1 --resume "$TMP/aux.st" --steps 2 --bias-rate 0.01 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q -- "--bias-rate has no effect with --balance aux" ||
  bad "resume: --bias-rate on an aux checkpoint was not refused (exit $rc): $(echo "$out" | tail -n 1)"

# accepted: each new semantic runs a step (on the CPU)
for flags in "--bias-center" "--bias-center --update-rule error" "--balance lossfree_aux --aux-alpha 1e-4" \
             "--route-scale 2" "--topk 1 --norm-topk --gate softmax --balance none"; do
  n=$((n + 1))
  # shellcheck disable=SC2086
  $RUN $flags > "$TMP/ok.out" 2>&1 || bad "$flags was refused: $(tail -n 1 "$TMP/ok.out")"
done

help=$($BUILD/train --help)
for f in "--bias-center" "lossfree_aux" "--route-scale X  *multiply every gate"; do
  n=$((n + 1))
  echo "$help" | grep -Eq -- "$f" || bad "--help does not document $f"
done
[ $fail -eq 0 ] && echo "check_router_flags: PASS ($n cases)" || echo "check_router_flags: FAIL"
exit $fail
