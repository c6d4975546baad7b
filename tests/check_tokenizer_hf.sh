#!/usr/bin/env bash
# check_tokenizer_hf.sh — ref::Tokenizer against independent implementations (see
# tests/tokenizer_oracle/run_oracle.js): HuggingFace tokenizers' native Node binding (ids,
# pre-tokens, decode) and gpt-3-encoder (GPT-2 ids), on the full GPT-2 tokenizer, the fixtures in
# tests/fixtures/tokenizers/, hand-picked and random texts, MBs of real text, and a regex table.
# Invalid UTF-8 cannot be given to HF (it takes JS strings); that case is covered by the
# decode(encode(bytes)) round trip in tests/test_tokenizer.cpp.
#
# Needs node + npm (installed by tests/install_deps.sh); installs the npm oracles itself with
# `npm ci` (tests/tokenizer_oracle/package-lock.json). Uses build/tokenize when it is newer than
# its sources, otherwise compiles a private copy. Exit 0 = everything matched.
set -u
cd "$(dirname "$0")/.." || exit 1
ORACLE=tests/tokenizer_oracle

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not found (apt-get install nodejs npm, or run tests/install_deps.sh)"
  exit 0
fi
if [ ! -f $ORACLE/node_modules/tokenizers/package.json ] || [ ! -f $ORACLE/node_modules/gpt-3-encoder/package.json ]; then
  echo "installing the npm oracles (npm ci in $ORACLE)"
  if ! (cd $ORACLE && npm ci --no-audit --no-fund --loglevel=error); then
    echo "FAIL: npm ci in $ORACLE failed (is the npm registry reachable?)"
    exit 1
  fi
fi

TMP=$(mktemp -d /tmp/check_tokenizer_hf.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The CLI under test: build/tokenize if it is up to date, else a private build.
BIN=build/tokenize
SRCS="ref/json.cpp ref/regex.cpp ref/tokenizer.cpp ref/unicode_tables.cpp tools/tokenize.cpp ref/json.h ref/regex.h ref/tokenizer.h ref/unicode_tables.h"
stale=0
[ -x "$BIN" ] || stale=1
for f in $SRCS; do [ "$stale" = 1 ] || [ "$f" -nt "$BIN" ] && stale=1; done
if [ "$stale" = 1 ]; then
  BIN=$TMP/tokenize
  echo "building $BIN (build/tokenize missing or older than its sources)"
  ${CXX:-g++} -std=c++17 -O2 -I. ref/json.cpp ref/regex.cpp ref/tokenizer.cpp ref/unicode_tables.cpp tools/tokenize.cpp \
    -o "$BIN" || { echo "FAIL: could not build the tokenize CLI"; exit 1; }
fi

# Real text, several MB: licenses, Unicode's emoji lists and names list, and the corpus if built.
BIG=()
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/GFDL-1.3 \
         /usr/share/common-licenses/MPL-2.0 /usr/share/unicode/emoji/emoji-test.txt \
         /usr/share/unicode/emoji/emoji-zwj-sequences.txt /usr/share/unicode/NamesList.txt data/corpus/*.txt; do
  [ -f "$f" ] && BIG+=("$f")
done

node $ORACLE/run_oracle.js --tokenize "$BIN" --tmp "$TMP" --big-limit 1000000 --big "${BIG[@]}"
