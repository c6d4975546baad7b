// common.h — device-side helpers shared by cuda/*.cu (device code: include only from .cu files):
// precision-matched math overloads and deterministic block reductions. Internal to cuda/, not part
// of the op API.
#pragma once
#include <cuda_runtime.h>  // __shfl_down_sync, expf, ...

namespace cuda {
namespace dev {

// Overloads so templated kernels call the fp32 function for float and the fp64 one for double
// (never the fast-math intrinsics: results must stay close to ref's libm).
__device__ inline float exp_(float x) { return expf(x); }
__device__ inline double exp_(double x) { return exp(x); }
__device__ inline float log_(float x) { return logf(x); }
__device__ inline double log_(double x) { return log(x); }
__device__ inline float sqrt_(float x) { return sqrtf(x); }
__device__ inline double sqrt_(double x) { return sqrt(x); }
__device__ inline bool finite_(float x) { return isfinite(x); }
__device__ inline bool finite_(double x) { return isfinite(x); }

// Records an error of kind `kind` (cuda/device.h, DeviceError) at `index` in the device error
// record: integer atomics only, so the record (lowest index, count) is the same whatever the order.
__device__ inline void report_error(int* err, int kind, int index) {
  atomicMin(err + 2 * kind, index);
  atomicAdd(err + 2 * kind + 1, 1);
}

// Sum of v over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most
// 1024). The tree is fixed for a given blockDim, so the result is the same run to run.
template <typename T> __device__ T block_sum(T v) {
  __shared__ T warp_sums[32];
  __shared__ T result;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? warp_sums[lane] : T(0);
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) result = v;
  }
  __syncthreads();
  const T r = result;
  __syncthreads();  // everyone has read `result` before a following call may overwrite it
  return r;
}

// Maximum of v over the block, returned to every thread (same rules as block_sum).
template <typename T> __device__ T block_max(T v) {
  __shared__ T warp_max[32];
  __shared__ T result;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  for (int o = 16; o > 0; o /= 2) v = max(v, __shfl_down_sync(0xffffffffu, v, o));
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? warp_max[lane] : warp_max[0];
    for (int o = 16; o > 0; o /= 2) v = max(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) result = v;
  }
  __syncthreads();
  const T r = result;
  __syncthreads();
  return r;
}

// Exclusive prefix sum of an int flag over the block (Hillis-Steele in shared memory); *total gets
// the block's sum. blockDim.x must equal kScanThreads.
constexpr int kScanThreads = 256;
__device__ inline int block_exclusive_scan(int x, int* total) {
  __shared__ int buf[kScanThreads];
  buf[threadIdx.x] = x;
  __syncthreads();
  for (int o = 1; o < kScanThreads; o *= 2) {
    const int add = threadIdx.x >= o ? buf[threadIdx.x - o] : 0;
    __syncthreads();
    buf[threadIdx.x] += add;
    __syncthreads();
  }
  const int inclusive = buf[threadIdx.x];
  *total = buf[kScanThreads - 1];
  __syncthreads();  // all reads done before a following call overwrites buf
  return inclusive - x;
}

}  // namespace dev
}  // namespace cuda
