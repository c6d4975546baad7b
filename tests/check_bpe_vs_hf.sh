#!/usr/bin/env bash
# tests/check_bpe_vs_hf.sh — build/bpe_train and build/make_shards against HF tokenizers (the
# native Node binding, tests/bpe_oracle/). Three checks, each must be exact:
#   1. merges: HF's default BpeTrainer and ours (same settings: vocab 30000, min_frequency 0, no
#      specials, alphabet from the data) on the same sample give the identical merge list and vocab;
#   2. HF loads the tokenizer.json we write (specials, full 256-byte alphabet) without complaint;
#   3. shards: every document of data/fixtures encoded by HF with our tokenizer.json equals what
#      build/make_shards wrote into train.bin / val.bin (including the <|endoftext|> layout).
# Sample = data/fixtures (all parts, separator lines dropped) + /usr/share/common-licenses.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP check_bpe_vs_hf: node/npm not installed (tests/install_deps.sh installs them)"; exit 0
fi
if [ ! -d tests/bpe_oracle/node_modules/tokenizers ]; then
  if ! (cd tests/bpe_oracle && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    echo "SKIP check_bpe_vs_hf: 'npm ci' in tests/bpe_oracle failed (no npm registry?)"; exit 0
  fi
fi
[ ! -f Makefile ] || make -s build/bpe_train build/make_shards >/dev/null
[ -x build/bpe_train ] && [ -x build/make_shards ] || { echo "FAIL: build/bpe_train or build/make_shards missing (run make)"; exit 1; }
ls data/fixtures/*.txt >/dev/null 2>&1 || { echo "FAIL: data/fixtures/*.txt missing"; exit 1; }

T=$(mktemp -d /tmp/lfmoe_bpe_vs_hf.XXXXXX)
trap 'rm -rf "$T"' EXIT
ORACLE="node tests/bpe_oracle/oracle.js"

# 1. merges against HF's trainer
{ cat data/fixtures/*.txt | LC_ALL=C grep -av $'^\x1e$'; cat /usr/share/common-licenses/* 2>/dev/null || true; } >"$T/sample.txt"
echo "sample: $(wc -c <"$T/sample.txt") bytes"
build/bpe_train --quiet --vocab-size 30000 --min-frequency 0 --no-special --seen-alphabet --out "$T/ours.json" "$T/sample.txt"
$ORACLE train "$T/sample.txt" "$T/hf.json"
$ORACLE merges "$T/ours.json" "$T/hf.json"

# 2 + 3. our product settings, HF as the encoder of our tokenizer.json
build/bpe_train --quiet --vocab-size 2048 --out "$T/tok.json" data/fixtures/*.txt
build/make_shards --tokenizer "$T/tok.json" --out-dir "$T" --val-every 5 data/fixtures/*.txt 2>/dev/null
$ORACLE shards "$T/tok.json" "$T" 5 data/fixtures/*.txt
echo "PASS check_bpe_vs_hf"
