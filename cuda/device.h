// device.h — the GPU itself: is one usable, the cuBLAS handle, and the scratch memory the ops share.
// Also the small launch helpers every cuda/*.cu uses (grid sizes, kernel error checks).
#pragma once
#include <cublas_v2.h>     // cublasHandle_t, cublasStatus_t
#include <cuda_runtime.h>  // cudaGetLastError

#include <cstddef>  // size_t
#include <string>   // std::string

#include "cuda/memory.h"  // CUDA_CHECK

namespace cuda {

// True when a CUDA driver and at least one GPU can be used. Never aborts: without a driver or a GPU
// it returns false and, if why != nullptr, says why (the CUDA runtime's own message).
bool device_available(std::string* why);

// The process-wide cuBLAS handle on the default stream, created on first use, with TF32 and every
// other reduced-precision mode OFF (CUBLAS_PEDANTIC_MATH), so fp32 GEMMs are plain IEEE fp32 like ref.
cublasHandle_t cublas_handle();

// Throws std::runtime_error("file:line: call failed: <status>") when a cuBLAS call fails.
void check_cublas(cublasStatus_t st, const char* call, const char* file, int line);

// One shared device scratch buffer of at least `bytes`, reused by every op that needs temporary
// memory its signature does not provide (it grows, never shrinks). Valid until the next call:
// an op takes it once, carves what it needs, and never calls another op that takes it.
void* workspace(size_t bytes);

// ---- errors found inside kernels ----
// A kernel cannot throw. The checks ref makes while it routes (a non-finite score or bias, a
// norm_topk sum that is not positive, an expert-choice selection that does not add up because of a
// NaN score) are recorded by the kernels in one small device array, and raise_device_errors() turns
// the record into the exception ref throws, with the same wording. The model's forward ends with
// crossentropy_forward, which waits for the GPU anyway and calls raise_device_errors(): so a training
// or eval forward on the GPU throws like the CPU one, before any backward, optimizer step or bias
// update uses the bad values (ref throws at the router itself, the GPU at the end of that forward).
// Costs one 32-byte copy per forward; no extra host round-trip per layer.
enum DeviceError { kErrScore = 0, kErrBias, kErrNormTopk, kErrExpertChoice, kNumDeviceErrors };
// Device array of 2 ints per DeviceError: [2k] first (lowest) index seen (INT_MAX: none; kErrExpertChoice:
// the assignment total), [2k+1] count.
int* device_errors();
// Throws std::runtime_error naming the first recorded error (and clears the record), or returns.
void raise_device_errors();

// Sums n values of x (squared when `square`) in double on the GPU in a fixed order that depends only
// on n (fixed grid, fixed tree), and returns the sum to the host. Deterministic run to run.
template <typename T> double sum_to_host(const T* x, size_t n, bool square);

// Threads per block for 1-D elementwise kernels, and a grid that covers n with grid-stride loops.
constexpr int kThreads = 256;
inline unsigned grid_for(size_t n, int threads = kThreads) {
  size_t blocks = (n + threads - 1) / threads;
  if (blocks > (1u << 20)) blocks = 1u << 20;  // the kernels loop (grid stride) beyond this
  return static_cast<unsigned>(blocks ? blocks : 1);
}

}  // namespace cuda

#define CUBLAS_CHECK(call) ::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After every kernel launch: a bad launch configuration is reported here, at its source.
#define KERNEL_CHECK() CUDA_CHECK(cudaGetLastError())
