// memory.h — the backend memory calls of the model's shared call sequence (ref/model_impl.h), on the
// GPU. Same names and signatures as ref/memory.h; pointers returned by dev_alloc are device pointers.
// Every call is synchronous with respect to the host where data crosses (to_host, to_device), and
// ordered on the default stream otherwise, like every op in cuda/.
#pragma once
#include <cuda_runtime.h>  // cudaMalloc, cudaMemcpy, cudaMemset, cudaGetErrorString

#include <cstddef>    // size_t
#include <cstdio>     // std::fprintf (dev_free cannot throw)
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string, std::to_string

namespace cuda {

// Throws std::runtime_error("file:line: call failed: <CUDA's message>") when a CUDA call fails.
inline void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call +
                           " failed: " + cudaGetErrorString(err) + " (CUDA error " +
                           std::to_string(static_cast<int>(err)) + ")");
}

}  // namespace cuda

#define CUDA_CHECK(call) ::cuda::check_cuda((call), #call, __FILE__, __LINE__)

namespace cuda {

template <typename T> T* dev_alloc(size_t n) {  // zero-filled, like ref's calloc
  const size_t bytes = (n ? n : 1) * sizeof(T);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // reset the last-error slot so a later kernel check is not blamed for it
    throw std::runtime_error("cuda::dev_alloc: cannot allocate " + std::to_string(bytes) +
                             " bytes of GPU memory: " + cudaGetErrorString(err) +
                             " (use a smaller batch/model, or free the GPU from other processes)");
  }
  CUDA_CHECK(cudaMemset(p, 0, bytes));
  return static_cast<T*>(p);
}

// Never throws (it runs in destructors); a failure is reported on stderr.
inline void dev_free(void* p) {
  if (!p) return;
  cudaError_t err = cudaFree(p);
  if (err != cudaSuccess) std::fprintf(stderr, "cuda::dev_free: cudaFree failed: %s\n", cudaGetErrorString(err));
}

template <typename T> void dev_zero(T* p, size_t n) {
  if (n) CUDA_CHECK(cudaMemset(p, 0, n * sizeof(T)));
}
template <typename T> void to_host(T* host, const T* dev, size_t n) {
  if (n) CUDA_CHECK(cudaMemcpy(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost));
}
template <typename T> void to_device(T* dev, const T* host, size_t n) {
  if (n) CUDA_CHECK(cudaMemcpy(dev, host, n * sizeof(T), cudaMemcpyHostToDevice));
}
template <typename T> void dev_copy(T* dst, const T* src, size_t n) {
  if (n) CUDA_CHECK(cudaMemcpy(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice));
}
// Waits for all queued GPU work and surfaces any asynchronous kernel error here.
inline void dev_sync() { CUDA_CHECK(cudaDeviceSynchronize()); }
constexpr const char* kBackendName = "cuda";

}  // namespace cuda
