#!/usr/bin/env bash
# data/build_all.sh — the whole data pipeline, each step skipped when its output exists and is valid:
#   1. corpus      data/corpus/<part>.txt + MANIFEST          (data/build_corpus.sh)
#   2. tokenizers  data/tok4k/tokenizer.json  (4096 tokens, for small CPU runs)
#                  data/tok32k/tokenizer.json (32064 tokens, the paper's vocabulary size)
#   3. shards      data/shards/<tok>/{train,val}.bin + stats.tsv (every 50th document -> val)
# Uses build/bpe_train and build/make_shards (built here with make if needed). Threads: OpenMP's
# default (all cores); set OMP_NUM_THREADS to change it. Prints the time of every step.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VAL_EVERY=50
# The small one first: it is done in a fraction of the time and enough for CPU experiments.
TOKENIZERS=("tok4k 4096" "tok32k 32064")

log() { printf '[build_all %s] %s\n' "$(date +%T)" "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "  ($((SECONDS - t0)) s)"; }

if [ -f Makefile ]; then make -s build/bpe_train build/make_shards >/dev/null; fi
[ -x build/bpe_train ] && [ -x build/make_shards ] ||
  { echo "build_all.sh: build/bpe_train and build/make_shards are missing; run make first" >&2; exit 1; }

T0=$SECONDS
log "1. corpus"
timed data/build_corpus.sh
PARTS=(data/corpus/*.txt)

for spec in "${TOKENIZERS[@]}"; do
  read -r name size <<<"$spec"
  tok="data/$name/tokenizer.json"
  log "2. tokenizer $name ($size tokens)"
  if build/bpe_train --verify "$tok" --vocab-size "$size" >/dev/null 2>&1; then
    log "  $tok present and valid, skipped"
  else
    mkdir -p "data/$name"
    rm -rf "data/shards/$name"  # shards of an old tokenizer are stale
    timed build/bpe_train --vocab-size "$size" --min-frequency 2 --out "$tok" "${PARTS[@]}"
  fi

  log "3. shards $name"
  out="data/shards/$name"
  if [ -f "$out/stats.tsv" ] && build/make_shards --check --tokenizer "$tok" --out-dir "$out" >/dev/null 2>&1; then
    log "  $out present and valid, skipped"
  else
    mkdir -p "$out"
    rm -f "$out/stats.tsv"
    timed build/make_shards --tokenizer "$tok" --out-dir "$out" --val-every "$VAL_EVERY" "${PARTS[@]}"
  fi
done

log "done in $((SECONDS - T0)) s"
for spec in "${TOKENIZERS[@]}"; do
  read -r name size <<<"$spec"
  echo "== data/shards/$name/stats.tsv"
  column -t -s $'\t' "data/shards/$name/stats.tsv" 2>/dev/null || cat "data/shards/$name/stats.tsv"
done
