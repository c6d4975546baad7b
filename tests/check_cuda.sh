#!/usr/bin/env bash
# check_cuda.sh — the CUDA tests (tests/cuda/: every op and the whole model against the CPU reference,
# docs/CUDA.md) built into build/cuda_tests and run.
#   - no nvcc, or a build without CUDA: one line "SKIP: ..." (why), exit 0;
#   - nvcc but no GPU: build/cuda_tests is still built (a compile or link error fails this check), the
#     comparison harness checks itself on the CPU (a few seconds), then one line "SKIP: no CUDA
#     device (...)" and exit 0;
#   - a GPU: every test runs; the exit status is the tests'. Arguments go to build/cuda_tests
#     (doctest options, e.g. -tc="cuda model*").
# cuda/*.cu are compiled once, by the Makefile (into build/liblfmoe.a, which make all builds). The test
# sources hold no device code, so the host compiler builds them (~3x faster than nvcc would), each
# only when it, a header or the flags changed.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
# the CPU reference runs only tiny shapes here: one thread is fastest (no OpenMP spin-waiting on a
# loaded machine), and ref gives the same bits whatever the thread count
export OMP_NUM_THREADS=1

# The Makefile's own CUDA detection and flags (so that tests and library agree), read without editing it.
vars=$(make -s --no-print-directory -f Makefile -f - lfmoe-print-cuda-vars 2>/dev/null <<'EOF'
lfmoe-print-cuda-vars:
	@echo "MK_CUDA='$(CUDA)' MK_NVCC='$(NVCC)' MK_CXX='$(CXX)' MK_CXXFLAGS='$(CXXFLAGS)' MK_LDLIBS='$(LDLIBS)'"
EOF
)
eval "$(echo "$vars" | grep '^MK_CUDA=')"
if [ -z "${MK_NVCC:-}" ]; then
  echo "SKIP: nvcc not found (install the CUDA Toolkit, or put nvcc on PATH, to build the GPU backend)"
  exit 0
fi
if [ "${MK_CUDA:-0}" != 1 ]; then
  echo "SKIP: nvcc found ($MK_NVCC) but the build has no CUDA ($(echo "$vars" | grep -v '^MK_' | head -n 1))"
  exit 0
fi

log=$(mktemp); trap 'rm -f "$log"' EXIT
if ! make -s -j2 build/liblfmoe.a > "$log" 2>&1; then
  tail -n 30 "$log"
  echo "FAIL: make build/liblfmoe.a failed (it compiles cuda/*.cu)"
  exit 1
fi
if ! echo '#include <doctest/doctest.h>' | $MK_CXX -fsyntax-only -x c++ - 2>/dev/null; then
  echo "FAIL: doctest/doctest.h not found: run make deps (installs doctest-dev)"
  exit 1
fi

OBJ=build/cuda_tests_obj
BIN=build/cuda_tests
LIB=build/liblfmoe.a
mkdir -p "$OBJ"
# the Makefile's flags, but -O1 without -g: the tests' own code is light (the work is in the library),
# and this halves their compile time
read -r -a CXXFLAGS <<< "$(echo "$MK_CXXFLAGS" | sed -E 's/(^| )-O[0-9s]( |$)/ -O1 /; s/(^| )-g( |$)/ /')"
read -r -a LDLIBS <<< "$MK_LDLIBS"
stamp="$OBJ/.flags"
echo "$MK_CXX ${CXXFLAGS[*]}" | cmp -s - "$stamp" 2>/dev/null || echo "$MK_CXX ${CXXFLAGS[*]}" > "$stamp"
headers=$(ls cuda/*.h ref/*.h ref/io/*.h ref/text/*.h tests/*.h tests/cuda/*.h 2>/dev/null)
stale() {  # stale OUTPUT INPUT...: OUTPUT missing or older than an input
  local out=$1; shift
  [ -f "$out" ] || return 0
  for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done
  return 1
}

pids=(); fail=0; objs=()
for src in tests/cuda/*.cpp; do
  obj="$OBJ/$(basename "${src%.cpp}").o"
  objs+=("$obj")
  stale "$obj" "$src" $headers "$stamp" || continue
  $MK_CXX "${CXXFLAGS[@]}" -c "$src" -o "$obj" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail -ne 0 ]; then
  echo "FAIL: the CUDA tests do not compile"
  exit 1
fi
if stale "$BIN" "${objs[@]}" "$LIB"; then
  if ! $MK_CXX "${CXXFLAGS[@]}" "${objs[@]}" "$LIB" "${LDLIBS[@]}" -o "$BIN"; then
    echo "FAIL: the CUDA tests do not link"
    exit 1
  fi
fi
"$BIN" "$@"
