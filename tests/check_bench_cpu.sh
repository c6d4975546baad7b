#!/usr/bin/env bash
# The CPU benchmark (dev/bench_cpu.sh, docs/SPEED.md) in its tiny mode, and the claim it rests on:
# that dev/bench_cpu_torch.py is the same model and step as lfmoe.
# 1. dev/bench_cpu.sh --tiny exits 0 and prints the table with one full row (every cell a number
#    or a percentage) and a check line where both parameter counts are equal and both first losses
#    are ~ln V;
# 2. bench_cpu_torch.py --check-dump runs step 0 of lfmoe dumps of three variants (the default;
#    softmax gate, aux loss, no shared experts, norm_topk, grad accumulation; multiplicative bias,
#    error rule, no dense layer, 2 shared experts) from their initial parameters and agrees with
#    lfmoe's loss, gradient norm, counts, biases and parameters after the step;
# 3. ... and reports a difference: a dump whose recorded loss was changed fails it.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train" "$BUILD/fma_peak"
require_tiny_data
require_torch
passive_threads
make_tmp

# 1. the table
out=$(dev/bench_cpu.sh --tiny --out "$TMP/runs" 2>&1); rc=$?
echo "$out"
[ $rc -eq 0 ] || bad "dev/bench_cpu.sh --tiny exited $rc"
echo "$out" | grep -q '^| config | threads | lfmoe tok/s | torch tok/s | ratio |' || bad "no table header"
row=$(echo "$out" | grep '^| tiny | 1 |')
$PY - "$row" <<'PYEOF' || bad "the table row is incomplete: $row"
import re, sys
cells = [c.strip() for c in sys.argv[1].strip('|').split('|')]
assert len(cells) == 17, cells
assert all(re.fullmatch(r'-?[0-9.]+%?', c) for c in cells[1:]), cells
PYEOF
echo "$out" | grep -Eq '^# check tiny t1: params lfmoe ([0-9]+) torch \1; .*: same$' \
  || bad "parameter counts differ or the first losses are not ~ln V"

# 2. the same model, variant by variant (and 3. an altered copy of the first dump), in one torch process
i=0; dumps=()
for flags in "" "--balance aux --gate softmax --shared 0 --norm-topk --route-scale 2.5 --grad-accum 2" \
             "--bias-kind mul --update-rule error --dense-layers 0 --shared 2"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  $BUILD/train --preset tiny --data "$DATA" $flags --dump "$TMP/d$i.safetensors" >/dev/null 2>&1 || bad "dump failed: $flags"
  dumps+=("$TMP/d$i.safetensors")
done
$PY - "$TMP/d1.safetensors" "$TMP/bad.safetensors" <<'PYEOF' || bad "could not write the altered dump"
import json, struct, sys
data = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', data[:8])[0]
b, _ = json.loads(data[8:8 + n])['step0/loss']['data_offsets']
(x,) = struct.unpack_from('<f', data, 8 + n + b)
struct.pack_into('<f', data, 8 + n + b, x * 1.001)
open(sys.argv[2], 'wb').write(data)
PYEOF
r=$($PY dev/bench_cpu_torch.py --check-dump "${dumps[@]}" "$TMP/bad.safetensors" 2>&1); rc=$?
echo "$r"
[ $rc -eq 1 ] || bad "check-dump exited $rc, expected 1 (the altered dump fails, nothing else)"
for d in "${dumps[@]}"; do
  echo "$r" | grep -q "^check-dump $d: .*: same model$" || bad "not the same model: $d"
done
echo "$r" | grep -q "^check-dump $TMP/bad.safetensors: .*loss .* vs lfmoe" || bad "the altered loss was not caught"
exit $fail
