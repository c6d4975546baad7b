// main.cpp — the CUDA test program (tests/check_cuda.sh builds and runs it as build/cuda_tests).
//
//   build/cuda_tests [doctest options]   with a GPU: every test; without one: the CPU self-test of the
//                                        comparison harness (suite "harness (CPU)", quiet), then one
//                                        line "SKIP: no CUDA device (...)" and exit status 0
//   build/cuda_tests --device-info       prints the GPU (exit 0) or why there is none (exit 2)
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>  // doctest::Context

#include <cuda_runtime.h>  // cudaGetDeviceProperties

#include <cstdio>   // std::printf
#include <cstdlib>  // std::getenv
#include <cstring>  // std::strcmp
#include <string>   // std::string

#include "cuda/device.h"               // device_available
#include "tests/cuda/model_compare.h"  // print_summaries

int main(int argc, char** argv) {
  std::string why;
  const bool have_gpu = cuda::device_available(&why);
  for (int i = 1; i < argc; i++)
    if (std::strcmp(argv[i], "--device-info") == 0) {
      if (!have_gpu) {
        std::printf("no CUDA device (%s)\n", why.c_str());
        return 2;
      }
      int dev = 0;
      cudaDeviceProp p{};
      cudaGetDevice(&dev);
      cudaGetDeviceProperties(&p, dev);
      std::printf("CUDA device %d: %s, compute capability %d.%d, %.1f GiB\n", dev, p.name, p.major, p.minor,
                  p.totalGlobalMem / 1073741824.0);
      return 0;
    }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  if (have_gpu) return ctx.run();

  // No GPU: nothing in cuda/ can run, but the harness that judges the GPU can, on the CPU
  // (LFMOE_HARNESS_VERBOSE=1 prints its per-config summaries).
  mc::print_summaries() = std::getenv("LFMOE_HARNESS_VERBOSE") != nullptr;
  ctx.setOption("test-suite", "harness (CPU)");
  ctx.setOption("minimal", true);
  const int rc = ctx.run();
  if (rc != 0) {
    std::printf("FAIL: the CPU self-test of the CUDA tests' comparison harness failed (above); no CUDA device (%s)\n",
                why.c_str());
    return rc;
  }
  std::printf("SKIP: no CUDA device (%s): the CUDA tests are built but were not run (their comparison harness "
              "passed its CPU self-test)\n", why.c_str());
  return 0;
}
