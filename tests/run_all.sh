#!/usr/bin/env bash
# Runs every test: the doctest suites (each test case counts), then every tests/check_*.sh script
# (each counts as one test; exit 0 = pass). Ends with the line CI reads: "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
passed=0; failed=0; failures=()

echo "== unit tests (build/unit_tests)"
out=$(build/unit_tests --no-version 2>&1); rc=$?
echo "$out" | tail -n 40
summary=$(echo "$out" | grep -E '^\[doctest\] test cases:' | tail -n 1)
if [ -n "$summary" ]; then
  p=$(echo "$summary" | sed -E 's/.*\| *([0-9]+) passed.*/\1/'); f=$(echo "$summary" | sed -E 's/.*\| *([0-9]+) failed.*/\1/')
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failures+=("unit_tests ($f cases)")
fi
if [ $rc -ne 0 ] && { [ -z "$summary" ] || [ "${f:-0}" -eq 0 ]; }; then
  failed=$((failed + 1)); failures+=("unit_tests crashed (exit $rc)")
fi

for t in tests/check_*.sh; do
  [ -x "$t" ] || continue
  echo "== $t"
  start=$(date +%s)
  if "$t"; then passed=$((passed + 1)); r=PASS; else failed=$((failed + 1)); failures+=("$t"); r=FAIL; fi
  echo "-- $t: $r ($(( $(date +%s) - start )) s)"
done

[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
