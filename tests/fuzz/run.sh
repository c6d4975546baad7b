#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] — `make fuzz`: builds every tests/fuzz/fuzz_<name>.cpp harness with
# clang's libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer (into build-fuzz/), then runs
# each for SECONDS (default 60; FUZZ_TIME=... with make) and prints one line per harness:
# executions, coverage (cov = edges, ft = features, as libFuzzer counts them), corpus size, crashes.
# Exits 1 when a harness found a crash, a timeout (> FUZZ_TIMEOUT s on one input, default 10) or an
# out-of-memory (> 2 GB); the input is saved as build-fuzz/artifacts/<name>/crash-* (or timeout-*,
# oom-*). Reproduce it with build-fuzz/fuzz_<name> FILE, then make it a regression test: copy it to
# tests/fuzz/regressions/<name>/ (docs/RELIABILITY.md).
# FUZZ_ONLY="json regex" runs only those harnesses; FUZZ_RUNS=N stops each after N inputs (or SECONDS,
# whichever comes first). One harness at a time, one process each.
set -u
cd "$(dirname "$0")/../.." || exit 1
SECS=${1:-60}
OUT=build-fuzz
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "make fuzz needs clang (apt-get install clang: libFuzzer comes with it)"; exit 1; }
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
# The library and the harnesses get coverage instrumentation (fuzzer-no-link); only the link adds
# libFuzzer's main(). No OpenMP: clang's libomp may be absent, and the readers are single-threaded.
make -s -j2 BUILD=$OUT CXX="$CXX" CUDA=0 OPENMP=0 \
  EXTRA_CXXFLAGS="-fsanitize=fuzzer-no-link $SAN -Wno-unknown-pragmas" \
  $OUT/liblfmoe.a $(ls tests/fuzz/fuzz_*.cpp | sed "s|^tests/fuzz/\(.*\)\.cpp|$OUT/tests/fuzz/\1.o|") ||
  { echo "FAIL: building the harnesses with $CXX"; exit 1; }
names=$(ls tests/fuzz/fuzz_*.cpp | sed 's|.*/fuzz_\(.*\)\.cpp|\1|')
for n in $names; do
  if [ ! -x "$OUT/fuzz_$n" ] || [ "$OUT/tests/fuzz/fuzz_$n.o" -nt "$OUT/fuzz_$n" ] || [ "$OUT/liblfmoe.a" -nt "$OUT/fuzz_$n" ]; then
    $CXX -fsanitize=fuzzer $SAN "$OUT/tests/fuzz/fuzz_$n.o" "$OUT/liblfmoe.a" -o "$OUT/fuzz_$n" || { echo "FAIL: linking fuzz_$n"; exit 1; }
  fi
done
# Fresh binary seeds in the current formats (make_seeds, built with the normal compiler), next to
# the committed ones.
make -s BUILD=build build/fuzz/make_seeds >/dev/null 2>&1 && build/fuzz/make_seeds $OUT/seeds >/dev/null

fail=0
printf '%-15s %12s %8s %8s %8s %8s\n' harness executions cov ft corpus crashes
for n in ${FUZZ_ONLY:-$names}; do
  mkdir -p "$OUT/corpus/$n" "$OUT/artifacts/$n"
  seeds=""
  for d in tests/fuzz/corpus/$n tests/fuzz/regressions/$n $OUT/seeds/$n; do [ -d "$d" ] && seeds="$seeds $d"; done
  dict=""; [ -f "tests/fuzz/$n.dict" ] && dict="-dict=tests/fuzz/$n.dict"
  # The first directory collects what the run learns (build-fuzz/corpus/<name>: kept between runs,
  # not committed); the others are read only.
  log="$OUT/artifacts/$n/log.txt"
  "$OUT/fuzz_$n" -max_total_time="$SECS" -runs="${FUZZ_RUNS:--1}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$n/" $dict "$OUT/corpus/$n" $seeds >"$log" 2>&1
  rc=$?
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | sed -nE 's/.*cov: ([0-9]+).*/\1/p'); ft=$(echo "$last" | sed -nE 's/.*ft: ([0-9]+).*/\1/p')
  corp=$(echo "$last" | sed -nE 's/.*corp: ([0-9]+).*/\1/p')
  crashes=$(ls "$OUT/artifacts/$n" | grep -cE '^(crash|timeout|oom|leak|slow-unit)-')
  printf '%-15s %12s %8s %8s %8s %8s\n' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
  if [ $rc != 0 ] || [ "$crashes" != 0 ]; then
    fail=1; echo "  -> $n: exit $rc, see $log"; grep -m3 -E 'ERROR|SUMMARY|property violated|Test unit written' "$log" | sed 's/^/     /'
  fi
done
exit $fail
