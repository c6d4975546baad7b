# tests/lib_asan.sh — the AddressSanitizer + UndefinedBehaviorSanitizer build that
# tests/check_train_asan.sh and tests/check_fuzz_replay.sh share (source it after lib.sh).
# build-asan/ is the whole project built by the Makefile with these flags (its own directory: build/
# is left alone; make rebuilds only what changed, and everything when the flags change). Not
# executable and not named check_*: run_all.sh does not run it.
#   -O1: fast enough for short trainings, still exact stack traces
#   -fno-sanitize-recover=all: the first UB report ends the process (exit != 0), never just a line
#   OPENMP=0: libgomp is not instrumented; the code runs single-threaded (the pragmas are ignored)
#   CUDA=0: the sanitizers check host code only (compute-sanitizer covers CUDA: make cuda-test)
ASAN_BUILD=build-asan
ASAN_CXXFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Wno-unknown-pragmas"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99

# asan_build TARGET...: brings build-asan/TARGET... up to date (e.g. train fuzz-replay), or fails.
asan_build() {
  local targets=() t
  for t in "$@"; do case $t in fuzz-replay) targets+=("$t") ;; *) targets+=("$ASAN_BUILD/$t") ;; esac; done
  make -s -j2 BUILD=$ASAN_BUILD CUDA=0 OPENMP=0 EXTRA_CXXFLAGS="$ASAN_CXXFLAGS" "${targets[@]}" >"${TMP:-/tmp}/asan_build.log" 2>&1 ||
    { tail -20 "${TMP:-/tmp}/asan_build.log"; echo "FAIL: make BUILD=$ASAN_BUILD ${targets[*]} (sanitizer build) failed"; exit 1; }
}

# sanitizer_report FILE: true when FILE holds a sanitizer report.
sanitizer_report() { grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$1"; }
