#!/usr/bin/env bash
# check_cuda.sh — builds the CUDA op layer (cuda/*.cu) and its equivalence tests
# (tests/cuda/*.cu, CUDA vs ref on seeded inputs) with nvcc into build/cuda_tests, then runs them.
#   - no nvcc:      prints "SKIP: nvcc not found" and exits 0;
#   - nvcc, no GPU: everything is still COMPILED and linked (a compile error fails this check), then
#                   the program prints "SKIP: no CUDA device (<reason>)" and exits 0;
#   - GPU:          runs every test; exit status is the tests'.
# One architecture (sm_90 code + compute_90 PTX) keeps the build to about a minute on 2 cores.
# Objects are rebuilt only when a source or header is newer than them.
set -u
cd "$(dirname "$0")/.." || exit 1

NVCC=${NVCC:-$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)}
if [ -z "$NVCC" ]; then
  echo "SKIP: nvcc not found (install the CUDA Toolkit, or put nvcc on PATH, to build the GPU backend)"
  exit 0
fi
CUDA_HOME=$(dirname "$(dirname "$NVCC")")
CXX=${CXX:-g++}
OBJ=build/cuda_tests_obj
BIN=build/cuda_tests
mkdir -p "$OBJ"

NVCCFLAGS=(-std=c++17 -O2 -I. -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
           -Wno-deprecated-gpu-targets -Xcompiler -Wall,-Wextra)
OMP=()
echo 'int main(){}' | "$CXX" -fopenmp -x c++ - -o /dev/null 2>/dev/null && OMP=(-fopenmp)
CXXFLAGS=(-std=c++17 -O2 -Wall -Wextra -I. "${OMP[@]}")

headers=$(ls cuda/*.h ref/*.h 2>/dev/null)
# stale OBJECT SOURCE: true when OBJECT is missing or older than SOURCE or any header
stale() {
  [ -f "$1" ] || return 0
  for f in "$2" $headers; do [ "$f" -nt "$1" ] && return 0; done
  return 1
}

pids=(); fail=0
compile() {  # compile SOURCE OBJECT COMMAND... in the background, at most 2 at a time
  local src=$1 obj=$2; shift 2
  stale "$obj" "$src" || return 0
  echo "  compile $src"
  "$@" -c "$src" -o "$obj" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
}

obj_of() { local f=${1%.*}; echo "$OBJ/${f//\//_}.o"; }

echo "== building the CUDA tests with $NVCC"
# every cuda/*.cu is compiled (so a compile error anywhere in the backend fails this check); the test
# program links only the op layer (device, ops, moe), the tests and the two reference files it compares to
for src in cuda/*.cu tests/cuda/*.cu; do
  compile "$src" "$(obj_of "$src")" "$NVCC" "${NVCCFLAGS[@]}"
done
missing=()
for src in ref/ops.cpp ref/moe.cpp; do  # the reference the tests compare against
  if [ -f "$src" ]; then
    compile "$src" "$(obj_of "$src")" "$CXX" "${CXXFLAGS[@]}"
  else
    missing+=("$src")
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail -ne 0 ]; then
  echo "FAIL: the CUDA sources or tests do not compile"
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIP: CUDA sources and tests compile, but ${missing[*]} is missing, so the tests cannot be linked"
  exit 0
fi

objs=()
for src in cuda/device.cu cuda/ops.cu cuda/moe.cu tests/cuda/*.cu ref/ops.cpp ref/moe.cpp; do objs+=("$(obj_of "$src")"); done
LINK_OMP=()
[ ${#OMP[@]} -gt 0 ] && LINK_OMP=(-Xcompiler -fopenmp)
if ! "$NVCC" -o "$BIN" "${objs[@]}" -lcublas "${LINK_OMP[@]}" -Xlinker -rpath -Xlinker "$CUDA_HOME/lib64"; then
  echo "FAIL: the CUDA tests do not link"
  exit 1
fi

echo "== running $BIN"
"$BIN" "$@"
