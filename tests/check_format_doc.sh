#!/usr/bin/env bash
# docs/FORMAT.md against the files lfmoe writes (tests/format_doc.py): every tensor of a checkpoint
# and of two dumps matches exactly one documented name, with the documented dtype and shape, and
# every documented name is written. The dumps between them hold every kind of tensor the dump table
# lists: a 2-step loss-free dump with gradient accumulation (steps, micro-batches, step-0-only
# tensors) and an expert-choice dump with shuffling (the chunk order).
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, make_tmp, ...
require_built "$BUILD/train"
require_tiny_data
make_tmp
run() { "$BUILD/train" --preset tiny --data "$DATA" --threads 1 --shared 2 "$@" >"$TMP/out" 2>&1 ||
          { cat "$TMP/out"; echo "FAIL: $BUILD/train $*"; exit 1; }; }
run --steps 1 --save "$TMP/ckpt.safetensors"
run --grad-accum 2 --dump "$TMP/lossfree.safetensors" --dump-steps 2
run --routing expert --ec-shuffle --ec-chunk 64 --balance none --dump "$TMP/ec.safetensors"
$PY tests/format_doc.py docs/FORMAT.md "$TMP/ckpt.safetensors" "$TMP/lossfree.safetensors" "$TMP/ec.safetensors"
