// memory.h — the memory calls the model's shared call sequence (ref/model_impl.h) makes on its
// backend. On the CPU "device" memory is host memory; cuda/memory.h declares the same names with
// cudaMalloc/cudaMemcpy behind them.
#pragma once
#include <cstddef>  // size_t
#include <cstdlib>  // std::calloc, std::free
#include <cstring>  // std::memcpy, std::memset
#include <new>      // std::bad_alloc

namespace ref {

template <typename T> T* dev_alloc(size_t n) {  // zero-filled
  void* p = std::calloc(n ? n : 1, sizeof(T));
  if (!p) throw std::bad_alloc();
  return static_cast<T*>(p);
}
inline void dev_free(void* p) { std::free(p); }
template <typename T> void dev_zero(T* p, size_t n) { std::memset(p, 0, n * sizeof(T)); }
template <typename T> void to_host(T* host, const T* dev, size_t n) { std::memcpy(host, dev, n * sizeof(T)); }
template <typename T> void to_device(T* dev, const T* host, size_t n) { std::memcpy(dev, host, n * sizeof(T)); }
template <typename T> void dev_copy(T* dst, const T* src, size_t n) { std::memcpy(dst, src, n * sizeof(T)); }
inline void dev_sync() {}
constexpr const char* kBackendName = "cpu";

}  // namespace ref
