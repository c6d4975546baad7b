#!/usr/bin/env bash
# The fuzz harnesses of tests/fuzz/ (docs/RELIABILITY.md, "Fuzzing") replayed without clang: each
# harness is built with the normal compiler under AddressSanitizer + UBSan (build-asan/fuzz/,
# tests/lib_asan.sh) and run once on every file of tests/fuzz/corpus/<name>/ (the seeds) and
# tests/fuzz/regressions/<name>/ (inputs that once crashed a reader: each stays a test here), and on
# binary seeds written now by make_seeds (so the harnesses follow the current file formats). A
# harness property that fails, a sanitizer report or a crash fails the check, naming the input.
# (A tests/fuzz/pending/ folder may hold crash inputs whose fix is not merged yet; it is not replayed.)
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, bad, make_tmp
. tests/lib_asan.sh
make_tmp
asan_build fuzz-replay
"$ASAN_BUILD/fuzz/make_seeds" "$TMP/seeds" >/dev/null || { echo "FAIL: make_seeds"; exit 1; }
total=0
for src in tests/fuzz/fuzz_*.cpp; do
  name=$(basename "$src" .cpp); name=${name#fuzz_}
  [ -d "tests/fuzz/corpus/$name" ] && [ -n "$(ls "tests/fuzz/corpus/$name")" ] ||
    { bad "$name: no seeds in tests/fuzz/corpus/$name"; continue; }
  dirs="tests/fuzz/corpus/$name"
  for d in "tests/fuzz/regressions/$name" "$TMP/seeds/$name"; do [ -d "$d" ] && dirs="$dirs $d"; done
  "$ASAN_BUILD/fuzz/replay_$name" $dirs >"$TMP/out" 2>"$TMP/err"; rc=$?
  if [ $rc != 0 ] || sanitizer_report "$TMP/err"; then
    bad "$name: exit $rc on $(grep '^replay: ' "$TMP/err" | tail -1 | cut -c9-)"; grep -v '^replay: ' "$TMP/err" | head -20
    continue
  fi
  count=$(sed -n 's/^replayed \([0-9]*\) inputs$/\1/p' "$TMP/out"); total=$((total + ${count:-0}))
  printf 'ok  %-15s %4s inputs\n' "$name" "$count"
done
[ $fail = 0 ] && echo "PASS check_fuzz_replay: $total inputs, no failure" || echo "FAIL check_fuzz_replay"
exit $fail
