#!/usr/bin/env bash
# Trains the default model on the default data, building whatever is missing on first use:
# the binaries (make), then the corpus, the tokenizers and the token shards (data/build_all.sh;
# each step is skipped when its output is present and valid). Extra flags go to build/train,
# e.g. ./train.sh --steps 50   or   ./train.sh --backend cuda --preset gpu --data data/shards/tok32k
set -euo pipefail
cd "$(dirname "$0")"
make -s all
data/build_all.sh
mkdir -p runs
exec build/train --preset cpu --data data/shards/tok4k --vocab 4096 --eval-every 100 --eval-batches 50 \
  --log runs/default.jsonl --save runs/default.safetensors "$@"
