#!/usr/bin/env bash
# Bad command-line numbers to the tools (build/make_shards, bpe_train, bench_tokenizer, plot): each
# must stop with exit status 1 and a message naming the flag, the text given and the range
# expected (tools/cli.h). Before, strtoull/atoi/strtod took "-3" as 2^64-3, cut 99999999999 to 32
# bits, read "abc" as 0, "300.5" as 300 and "0x200" as 512, without a word. tokenize and normalize
# take no numeric flags (tokenize's decode ids are checked by check_tokenizer_asan.sh). Valid values
# must still work: one good run per tool. A few seconds.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, BUILD, require_built, bad, make_tmp
require_built "$BUILD/make_shards" "$BUILD/bpe_train" "$BUILD/bench_tokenizer" "$BUILD/plot" "$BUILD/tokenize"
passive_threads
make_tmp
n=0
TOK=tests/fixtures/tokenizers/gpt2_prefix_digits.json
TEXT=data/fixtures/bible.txt

# case_ NAME RC REGEX CMD...: CMD exits with RC and its stderr+stdout match the extended REGEX.
case_() {
  local name=$1 want=$2 re=$3; shift 3
  n=$((n + 1))
  "$@" >"$TMP/out" 2>&1 </dev/null; local rc=$?
  local msg; msg=$(tr '\n' ' ' <"$TMP/out")
  if [ "$rc" != "$want" ]; then bad "$name: exit $rc, want $want: $(echo "$msg" | cut -c1-300)"; return; fi
  echo "$msg" | grep -Eq -- "$re" || { bad "$name: message does not match /$re/: $(echo "$msg" | cut -c1-300)"; return; }
  printf 'ok  %-32s %s\n' "$name" "$(echo "$msg" | cut -c1-130)"
}

# ---- bpe_train: --vocab-size in [1, 2^31-1], --min-frequency >= 0, --threads in [0, 4096]
BT="$BUILD/bpe_train --quiet --out $TMP/t.json"
case_ "vocab-size 99999999999" 1 "--vocab-size '99999999999': out of range, expected an integer in \[1, 2147483647\]" $BT --vocab-size 99999999999 $TEXT
case_ "vocab-size 4294967296"  1 "--vocab-size '4294967296': out of range" $BT --vocab-size 4294967296 $TEXT
case_ "vocab-size -300"        1 "--vocab-size '-300': expected an integer" $BT --vocab-size -300 $TEXT
case_ "vocab-size 0x200"       1 "--vocab-size '0x200': expected an integer" $BT --vocab-size 0x200 $TEXT
case_ "vocab-size ' 300'"      1 "--vocab-size ' 300': expected an integer" $BT --vocab-size " 300" $TEXT
case_ "vocab-size 3e2"         1 "--vocab-size '3e2': expected an integer" $BT --vocab-size 3e2 $TEXT
case_ "vocab-size 0"           1 "--vocab-size '0': out of range" $BT --vocab-size 0 $TEXT
case_ "min-frequency -1"       1 "--min-frequency '-1': expected an integer" $BT --vocab-size 300 --min-frequency -1 $TEXT
case_ "min-frequency 2.5"      1 "--min-frequency '2.5': expected an integer" $BT --vocab-size 300 --min-frequency 2.5 $TEXT
case_ "threads 99999999999"    1 "--threads '99999999999': out of range, expected an integer in \[0, 4096\]" $BT --vocab-size 300 --threads 99999999999 $TEXT
case_ "threads -1"             1 "--threads '-1': expected an integer" $BT --vocab-size 300 --threads -1 $TEXT
case_ "verify vocab-size abc"  1 "--vocab-size 'abc': expected an integer" $BUILD/bpe_train --verify $TOK --vocab-size abc
case_ "vocab-size 300 (good)"  0 "wrote .*300 tokens" $BT --vocab-size 300 --threads 1 $TEXT

# ---- make_shards --val-every: an integer >= 2
MS="$BUILD/make_shards --tokenizer $TMP/t.json --out-dir $TMP"  # t.json: the good bpe_train run above
case_ "val-every -3"          1 "--val-every '-3': expected an integer in \[2, 18446744073709551615\]" $MS --val-every -3 $TEXT
case_ "val-every 1"           1 "--val-every '1': out of range, expected an integer in \[2, " $MS --val-every 1 $TEXT
case_ "val-every 5x"          1 "--val-every '5x': expected an integer" $MS --val-every 5x $TEXT
case_ "val-every empty"       1 "--val-every '': expected an integer" $MS --val-every "" $TEXT
case_ "val-every +5"          1 "--val-every '\+5': expected an integer" $MS --val-every +5 $TEXT
case_ "val-every 2^64"        1 "--val-every '18446744073709551616': too large" $MS --val-every 18446744073709551616 $TEXT
case_ "val-every no value"    1 "--val-every needs a value" $MS $TEXT --val-every
case_ "val-every 5 (good)"    0 "wrote .*train,val" $MS --val-every 5 $TEXT

# ---- bench_tokenizer --repeat: an integer in [1, 10^6]
head -c 20000 $TEXT >"$TMP/small.txt"
BB="$BUILD/bench_tokenizer --tokenizer $TOK --in $TMP/small.txt"
case_ "repeat abc"             1 "--repeat 'abc': expected an integer in \[1, 1000000\]" $BB --repeat abc
case_ "repeat -5"              1 "--repeat '-5': expected an integer" $BB --repeat -5
case_ "repeat 0"               1 "--repeat '0': out of range" $BB --repeat 0
case_ "repeat 3x"              1 "--repeat '3x': expected an integer" $BB --repeat 3x
case_ "repeat 1 (good)"        0 "ours.text.best" $BB --repeat 1

# ---- plot: --width/--height integers in [200, 10000], --smooth >= 1, --step >= 0, --tail in (0, 1]
cat >"$TMP/run.jsonl" <<'LOG'
{"type":"config","config":{"V":256,"E":2}}
{"type":"step","step":1,"loss":3.0,"maxvio_batch":0.5}
{"type":"step","step":2,"loss":2.5,"maxvio_batch":0.4}
{"type":"eval","step":2,"loss":2.6,"ppl":13.4}
LOG
PL="$BUILD/plot lines --y loss --out $TMP/p.svg"
case_ "width 300.5"            1 "--width '300.5': expected an integer in \[200, 10000\]" $PL --width 300.5 "$TMP/run.jsonl"
case_ "width 0x200"            1 "--width '0x200': expected an integer" $PL --width 0x200 "$TMP/run.jsonl"
case_ "width ' 300'"           1 "--width ' 300': expected an integer" $PL --width " 300" "$TMP/run.jsonl"
case_ "height 1e3"             1 "--height '1e3': expected an integer" $PL --height 1e3 "$TMP/run.jsonl"
case_ "height 99999"           1 "--height '99999': out of range" $PL --height 99999 "$TMP/run.jsonl"
case_ "smooth 2.5"             1 "--smooth '2.5': expected an integer" $PL --smooth 2.5 "$TMP/run.jsonl"
case_ "width=300 (good)"       0 "" $PL --width=300 --height 250 --smooth 2 "$TMP/run.jsonl"
PT="$BUILD/plot table"
case_ "tail inf"               1 "--tail 'inf': expected a number in \[1e-09, 1\]" $PT --tail inf "$TMP/run.jsonl"
case_ "tail nan"               1 "--tail 'nan': expected a number" $PT --tail nan "$TMP/run.jsonl"
case_ "tail 0.5x"              1 "--tail '0.5x': expected a number" $PT --tail 0.5x "$TMP/run.jsonl"
case_ "tail 0x0.8"             1 "--tail '0x0.8': expected a number" $PT --tail 0x0.8 "$TMP/run.jsonl"
case_ "tail 1.5"               1 "--tail '1.5': expected a number in" $PT --tail 1.5 "$TMP/run.jsonl"
case_ "tail .5 (good)"         0 "loss" $PT --tail .5 "$TMP/run.jsonl"
case_ "heatmap step -2"        1 "--step '-2': expected an integer in \[0, " $BUILD/plot heatmap --step -2 --out "$TMP/h.svg" "$TMP/run.jsonl"
case_ "heatmap step 2.0"       1 "--step '2.0': expected an integer" $BUILD/plot heatmap --step 2.0 --out "$TMP/h.svg" "$TMP/run.jsonl"

# ---- tokenize: a tokenizer.json whose ids are far from dense (fuzz finding: id 2^31-1 ended in
# std::bad_alloc, id 22222273 allocated 1.4 GB); refused at load, naming the id
for f in tests/fuzz/regressions/tokenizer_json/vocab_id_2147483647_bad_alloc.json \
         tests/fuzz/regressions/tokenizer_json/vocab_id_22222273_allocates_1.4GB.json; do
  case_ "tokenizer id $(basename "$f")" 1 "model.vocab: the largest token id [0-9]* is far beyond the file's [0-9]* tokens" \
    $BUILD/tokenize info --tokenizer "$f"
done

[ $fail = 0 ] && echo "PASS check_bad_input_tools: $n cases" || echo "FAIL check_bad_input_tools"
exit $fail
