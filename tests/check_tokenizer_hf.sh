#!/usr/bin/env bash
# check_tokenizer_hf.sh — ref::Tokenizer against independent implementations (see
# tests/tokenizer_oracle/run_oracle.js): HuggingFace tokenizers' native Node binding (ids,
# pre-tokens, decode) and gpt-3-encoder (GPT-2 ids).
#   Tokenizers: the full GPT-2 tokenizer, the fixtures in tests/fixtures/tokenizers/ (cl100k-,
#     o200k-, DeepSeek-V3-style Split sequences, GPT-2 with digits), one trained here by
#     build/bpe_train on data/fixtures, and data/tok4k + data/tok32k when they have been built.
#   Texts: hand-picked and seeded random cases (with a block of Unicode 16.0 code points), a regex
#     conformance table, a sweep of every code point through every \p{..} category, \s, \w and \d
#     (HF's regex is Unicode 16.0: docs/TOKENIZER.md), and big real texts:
#     every committed corpus slice data/fixtures/<part>.txt (so a fresh clone checks each corpus
#     part), licences and Unicode data files, and the start of every data/corpus/<part>.txt when
#     the corpus has been built (data/build_all.sh; with GPT-2 and the trained tokenizers only).
# Invalid UTF-8 cannot be given to HF (it takes JS strings); that case is covered by the
# decode(encode(bytes)) round trip in tests/test_tokenizer.cpp.
#
# Needs node + npm (installed by tests/install_deps.sh); installs the npm oracles itself with
# `npm ci` (tests/tokenizer_oracle/package-lock.json). Uses build/tokenize and build/bpe_train
# when they are newer than their sources, otherwise compiles private copies. Exit 0 = all matched.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
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
ls data/fixtures/*.txt >/dev/null 2>&1 || { echo "FAIL: data/fixtures/*.txt missing (they are committed; write them with data/build_corpus.sh --fixtures)"; exit 1; }

TMP=$(mktemp -d /tmp/check_tokenizer_hf.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# tool NAME SOURCES...: prints build/NAME if it is newer than all its sources, else builds a
# private copy in $TMP (so a stale or half-built build/ never hides a change under test).
TOK_SRCS="ref/io/json.cpp ref/text/regex.cpp ref/text/tokenizer.cpp ref/text/unicode_tables.cpp ref/text/normalize.cpp ref/text/unicode_norm_tables.cpp ref/io/json.h ref/text/regex.h ref/text/tokenizer.h ref/text/unicode_tables.h ref/text/normalize.h ref/text/unicode_norm_tables.h"
tool() {
  local name=$1 f; shift
  local bin=build/$name stale=0
  [ -x "$bin" ] || stale=1
  for f in "$@"; do [ "$stale" = 1 ] || [ "$f" -nt "$bin" ] && stale=1; done
  if [ "$stale" = 1 ]; then
    bin=$TMP/$name
    echo "building $bin (build/$name missing or older than its sources)" >&2
    ${CXX:-g++} -std=c++17 -O2 -I. $(printf '%s\n' "$@" | grep '\.cpp$') -o "$bin" || return 1
  fi
  echo "$bin"
}
BIN=$(tool tokenize $TOK_SRCS tools/tokenize.cpp) || { echo "FAIL: could not build the tokenize CLI"; exit 1; }
TRAIN=$(tool bpe_train $TOK_SRCS ref/io/file.cpp ref/io/file.h ref/text/bpe_train.cpp ref/text/bpe_train.h tools/bpe_train.cpp) || { echo "FAIL: could not build bpe_train"; exit 1; }

# A tokenizer trained by us on the committed corpus slices, with the product settings.
"$TRAIN" --quiet --vocab-size 2048 --out "$TMP/fixtures_bpe2048.json" data/fixtures/*.txt >/dev/null ||
  { echo "FAIL: build/bpe_train on data/fixtures failed"; exit 1; }
EXTRA=(--extra "bpe_train on data/fixtures (2048)=$TMP/fixtures_bpe2048.json")
for t in data/tok4k/tokenizer.json data/tok32k/tokenizer.json; do
  [ -f "$t" ] && EXTRA+=(--extra "$t=$t")
done

BIG=(data/fixtures/*.txt)
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/GFDL-1.3 \
         /usr/share/common-licenses/MPL-2.0 /usr/share/unicode/emoji/emoji-test.txt \
         /usr/share/unicode/emoji/emoji-zwj-sequences.txt /usr/share/unicode/NamesList.txt; do
  [ -f "$f" ] && BIG+=("$f")
done
CORPUS=()
for f in data/corpus/*.txt; do [ -f "$f" ] && CORPUS+=("$f"); done

# Characters per corpus part (default 256 KB: the check stays under ~2 min on 2 cores). For the
# large check: CHECK_TOKENIZER_CORPUS_CHARS=4000000 tests/check_tokenizer_hf.sh (about 8 min).
node $ORACLE/run_oracle.js --tokenize "$BIN" --tmp "$TMP" --big-limit 262144 --gpt3-limit 131072 \
  --corpus-limit "${CHECK_TOKENIZER_CORPUS_CHARS:-262144}" "${EXTRA[@]}" --big "${BIG[@]}" --corpus "${CORPUS[@]}"
