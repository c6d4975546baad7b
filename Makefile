# lfmoe — the primary build. `make` builds the trainer; `make test` installs the test dependencies
# (Debian packages, npm oracles) and runs every test; `make help` lists the targets.
# The reference is plain IEEE fp32: never add fast-math or other value-changing optimisation flags here.

CXX      ?= g++
BUILD    := build
# -ffp-contract=off: the compiler fuses nothing on its own; the kernels' FMAs are explicit (std::fma
# or AVX2 FMA, the same operation), so the numbers do not depend on the instruction set. The AVX2
# code is chosen at run time (LFMOE_SIMD=0 forces the portable code, same bits). NATIVE=1 (default)
# also lets GCC use this CPU's vector width elsewhere; NATIVE=0 builds a portable binary.
NATIVE   ?= 1
CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -ffp-contract=off -I. $(if $(filter 1,$(NATIVE)),-march=native) $(EXTRA_CXXFLAGS)
LDLIBS   :=

# ---- OpenMP (optional): parallel CPU loops -------------------------------------------------------
OPENMP ?= $(shell echo 'int main(){}' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo 1 || echo 0)
ifeq ($(OPENMP),1)
  CXXFLAGS += -fopenmp
  OMP_MSG := OpenMP: yes
else
  OMP_MSG := OpenMP: no (single-threaded; install a compiler with OpenMP, e.g. apt-get install g++)
endif

# ---- CUDA (optional): found when nvcc is on PATH or in /usr/local/cuda ----------------------------
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA ?= $(if $(NVCC),1,0)
# nvcc may be a wrapper script (e.g. /usr/local/bin/nvcc), so look for the toolkit's headers and
# runtime library in the usual places instead of trusting nvcc's own directory.
CUDA_HOME ?= $(firstword $(foreach d,$(patsubst %/bin/nvcc,%,$(NVCC)) /usr/local/cuda $(wildcard /usr/local/cuda-*) /usr,\
               $(if $(wildcard $(d)/include/cuda_runtime.h),$(d))))
CUDA_LIBDIR ?= $(firstword $(foreach d,lib64 lib targets/x86_64-linux/lib lib/x86_64-linux-gnu,\
               $(if $(wildcard $(CUDA_HOME)/$(d)/libcudart.so),$(CUDA_HOME)/$(d))))
ifeq ($(CUDA),1)
  ifeq ($(CUDA_LIBDIR),)
    $(info nvcc found ($(NVCC)) but not libcudart.so next to its headers: building CPU only. Set CUDA_HOME=/path/to/cuda to fix.)
    override CUDA := 0
  endif
endif
ifeq ($(CUDA),1)
  # sm_90 (H100/H200) machine code plus compute_90 PTX that newer GPUs can JIT
  NVCCFLAGS  := -std=c++17 -O2 --fmad=false -I. -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
                -Xcompiler -fopenmp -Wno-deprecated-gpu-targets
  CUDA_SRC   := $(wildcard cuda/*.cu)
  CUDA_OBJ   := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
  CXXFLAGS   += -DLFMOE_CUDA=1 -I$(CUDA_HOME)/include
  LDLIBS     += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart
  CUDA_MSG   := CUDA: yes ($(NVCC)); GPU tests run where a GPU exists
else
  CUDA_MSG   := CUDA: no (CPU only; install the CUDA Toolkit for the GPU backend)
endif

REF_SRC   := $(wildcard ref/*.cpp ref/text/*.cpp ref/io/*.cpp)
REF_HDR   := $(wildcard ref/*.h ref/text/*.h ref/io/*.h)
REF_OBJ   := $(REF_SRC:%.cpp=$(BUILD)/%.o)
LIB       := $(BUILD)/liblfmoe.a
TOOLS     := $(patsubst tools/%.cpp,$(BUILD)/%,$(wildcard tools/*.cpp))
TEST_SRC  := tests/main.cpp $(wildcard tests/test_*.cpp)
TEST_OBJ  := $(TEST_SRC:%.cpp=$(BUILD)/%.o)

.PHONY: all info train tools unit_tests test deps cuda cuda-test bench-cpu clean help bench_attention fuzz fuzz-replay bench_gemm
# keep intermediate objects (tools/*.o), so that a second make does not relink everything
.SECONDARY:
all: info $(BUILD)/train $(TOOLS)

info:
	@echo "lfmoe build: $(OMP_MSG); $(CUDA_MSG)"

help:
	@echo "make            build the trainer and tools into build/"
	@echo "make test       install test dependencies, then run every test (ends with 'N passed, N failed')"
	@echo "make unit_tests the doctest suites only (build/unit_tests)"
	@echo "make deps       install the test dependencies (Debian packages, npm oracles)"
	@echo "make bench_attention  build/bench_attention, the CPU attention microbenchmark"
	@echo "make fuzz       libFuzzer harnesses (clang), each for FUZZ_TIME seconds (docs/RELIABILITY.md)"
	@echo "make bench_gemm       build/bench_gemm, GFLOP/s of the CPU GEMM on the cpu preset's shapes"
	@echo "make cuda-test  GPU tests + compute-sanitizer (skips without a GPU)"
	@echo "make bench-cpu  lfmoe vs PyTorch tokens/s on this CPU, with lfmoe's phase split (docs/SPEED.md)"
	@echo "make data       build the default corpus, tokenizers and shards (data/build_all.sh)"
	@echo "make train-default  build everything needed and train the default model"
	@echo "Variables: CUDA=0 to skip the GPU backend, OPENMP=0 for a single-threaded build"

# Objects depend on a stamp of the flags, so switching CUDA=0/1 or OPENMP rebuilds them.
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD); echo '$(CXX) $(CXXFLAGS) $(NVCCFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CXX) $(CXXFLAGS) $(NVCCFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/%.o: %.cpp $(REF_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# the test files also include the tests' own headers (a change there rebuilds the tests only)
$(BUILD)/tests/%.o: tests/%.cpp $(REF_HDR) $(wildcard tests/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# the tools share tools/cli.h (strict number parsing)
$(BUILD)/tools/%.o: tools/%.cpp $(REF_HDR) $(wildcard tools/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/cuda/%.o: cuda/%.cu $(REF_HDR) $(wildcard cuda/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(REF_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/train: $(BUILD)/train.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/%: $(BUILD)/tools/%.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

train: $(BUILD)/train
tools: $(TOOLS)
cuda: $(CUDA_OBJ)

unit_tests: $(BUILD)/unit_tests
$(BUILD)/unit_tests: $(TEST_OBJ) $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

# Microbenchmark of the CPU attention (dev/bench_attention.cpp); run it with OMP_NUM_THREADS=1 or 2.
bench_attention: $(BUILD)/bench_attention
$(BUILD)/bench_attention: $(BUILD)/dev/bench_attention.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

# GFLOP/s of ref::gemm on the cpu preset's shapes (dev/bench_gemm.cpp); OMP_NUM_THREADS=1 or 2.
bench_gemm: $(BUILD)/bench_gemm
$(BUILD)/bench_gemm: $(BUILD)/dev/bench_gemm.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

# On a machine with an NVIDIA GPU: the CUDA-vs-CPU tests, compute-sanitizer, CUDA dumps checked by
# PyTorch, and a tokens/s table (docs/CUDA.md). Prints SKIP and succeeds when there is no GPU.
cuda-test: all
	dev/cuda_test.sh

# lfmoe against an independent PyTorch implementation of the same model and step, on this CPU
# (docs/SPEED.md). A benchmark, not a test: BENCH_ARGS=--full for the long run.
bench-cpu: $(BUILD)/train $(BUILD)/fma_peak
	BUILD=$(BUILD) dev/bench_cpu.sh $(BENCH_ARGS)

# this machine's fp32 peak (the benchmark's yardstick); its kernels pick their ISA at run time
$(BUILD)/fma_peak: dev/fma_peak.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $< -o $@

# ---- fuzzing (docs/RELIABILITY.md, "Fuzzing") ---------------------------------------------------
# tests/fuzz/fuzz_<name>.cpp are libFuzzer harnesses. `make fuzz` builds them with clang
# (build-fuzz/) and runs each for FUZZ_TIME seconds; `make fuzz-replay` builds them with $(CXX)
# and tests/fuzz/replay.cpp as main(), to replay the corpora and regressions (make test does).
FUZZ_TIME   ?= 60
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.cpp)
FUZZ_REPLAY := $(patsubst tests/fuzz/fuzz_%.cpp,$(BUILD)/fuzz/replay_%,$(FUZZ_SRC))
$(BUILD)/tests/fuzz/%.o: tests/fuzz/%.cpp $(REF_HDR) $(wildcard tests/fuzz/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@
$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/fuzz/make_seeds: $(BUILD)/tests/fuzz/make_seeds.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)
fuzz-replay: $(FUZZ_REPLAY) $(BUILD)/fuzz/make_seeds
fuzz:
	tests/fuzz/run.sh $(FUZZ_TIME)

deps:
	@tests/install_deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit_tests
	@tests/run_all.sh

data: $(BUILD)/bpe_train $(BUILD)/make_shards
	data/build_all.sh

train-default: all
	./train.sh

clean:
	rm -rf $(BUILD)

# Reproductions of the paper's experiments (docs/results/<target>/): dev/repro.sh has the details.
repro-%: all
	dev/repro.sh $*
