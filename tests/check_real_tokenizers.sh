#!/usr/bin/env bash
# check_real_tokenizers.sh — ref::Tokenizer against HF tokenizers (npm `tokenizers` 0.23.2) on the
# real tokenizer.json files of Qwen3, Llama-3, DeepSeek-V3 and Llama-2, as shipped unmodified by
# the npm packages pinned in tests/real_tokenizers/package-lock.json (not committed here: about
# 30 MB), and on variants of them with the other normalizers, Metaspace pre-tokenizers, decoders
# and normalized=true added tokens (tests/tokenizer_oracle/real_tokenizers.js). Per real file:
# every case class of tests/tokenizer_oracle/cases.js + normalizer_cases.js, the decode and
# decode(encode(x)) == x claims of docs/TOKENIZER.md, and about 1 MB of text (corpus fixtures,
# licences, Unicode's NamesList, a generated multi-script text) compared id for id.
#   CHECK_REAL_TOKENIZERS_CHARS=8000000 tests/check_real_tokenizers.sh   # the long run (8 MB each)
# Needs node + npm; installs both folders with `npm ci`. Exit 0 = all matched.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
ORACLE=tests/tokenizer_oracle REAL=tests/real_tokenizers

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not found (apt-get install nodejs npm, or run tests/install_deps.sh)"
  exit 0
fi
for d in $ORACLE $REAL; do
  if [ ! -d $d/node_modules ] || [ $d/package-lock.json -nt $d/node_modules ]; then
    echo "installing the npm packages of $d (npm ci)"
    (cd $d && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci in $d failed (is the npm registry reachable?)"; exit 1; }
    touch $d/node_modules
  fi
done

TMP=$(mktemp -d /tmp/check_real_tokenizers.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
SRCS="ref/io/json.cpp ref/text/regex.cpp ref/text/tokenizer.cpp ref/text/unicode_tables.cpp ref/text/normalize.cpp ref/text/unicode_norm_tables.cpp tools/tokenize.cpp"
BIN=build/tokenize
for f in $SRCS ref/io/json.h ref/text/regex.h ref/text/tokenizer.h ref/text/unicode_tables.h ref/text/normalize.h ref/text/unicode_norm_tables.h; do
  if [ ! -x "$BIN" ] || [ "$f" -nt "$BIN" ]; then BIN=""; break; fi
done
if [ -z "$BIN" ]; then
  BIN=$TMP/tokenize
  echo "building $BIN (build/tokenize missing or older than its sources)"
  ${CXX:-g++} -std=c++17 -O2 -I. $SRCS -o "$BIN" || { echo "FAIL: could not build the tokenize CLI"; exit 1; }
fi

BIG=(data/fixtures/*.txt)
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/unicode/NamesList.txt \
         /usr/share/unicode/emoji/emoji-test.txt; do
  [ -f "$f" ] && BIG+=("$f")
done
node $ORACLE/real_tokenizers.js --tokenize "$BIN" --tmp "$TMP" --real-dir $REAL/node_modules \
  --big-limit "${CHECK_REAL_TOKENIZERS_CHARS:-1000000}" --variant-big-limit 131072 --big "${BIG[@]}"
