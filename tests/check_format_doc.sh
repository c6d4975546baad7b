#!/usr/bin/env bash
# docs/FORMAT.md against the files lfmoe writes (tests/format_doc.py): every tensor of a checkpoint
# and of two dumps matches exactly one documented name, with the documented dtype and shape, and
# every documented name is written. The dumps between them hold every kind of tensor the dump table
# lists: a 2-step loss-free dump with gradient accumulation (steps, micro-batches, step-0-only
# tensors) and an expert-choice dump with shuffling (the chunk order).
set -u
cd "$(dirname "$0")/.." || exit 1
make -s build/train >/dev/null || { echo "FAIL: make build/train failed"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { build/train --preset tiny --data tests/fixtures/tiny.txt --threads 1 --shared 2 "$@" >"$tmp/out" 2>&1 ||
          { cat "$tmp/out"; echo "FAIL: build/train $*"; exit 1; }; }
run --steps 1 --save "$tmp/ckpt.safetensors"
run --grad-accum 2 --dump "$tmp/lossfree.safetensors" --dump-steps 2
run --routing expert --ec-shuffle --ec-chunk 64 --balance none --dump "$tmp/ec.safetensors"
/usr/bin/python3 tests/format_doc.py docs/FORMAT.md "$tmp/ckpt.safetensors" "$tmp/lossfree.safetensors" "$tmp/ec.safetensors"
