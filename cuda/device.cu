// device.cu — device detection, the cuBLAS handle, the shared workspace and the deterministic
// device-to-host sum (see device.h).
#include "cuda/device.h"

#include <stdexcept>  // std::runtime_error

#include "cuda/common.h"  // dev::block_sum

namespace cuda {

bool device_available(std::string* why) {
  int count = 0;
  // cudaGetDeviceCount returns an error code (no driver, driver too old, no device) instead of
  // aborting, which is what lets the tests skip cleanly on machines without a GPU.
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err) + " (no usable CUDA driver/GPU)";
    (void)cudaGetLastError();
    return false;
  }
  if (count == 0) {
    if (why) *why = "the CUDA runtime reports 0 devices";
    return false;
  }
  err = cudaFree(nullptr);  // creates the context: catches a device that is present but unusable
  if (err != cudaSuccess) {
    if (why) *why = std::string("cannot create a CUDA context: ") + cudaGetErrorString(err);
    (void)cudaGetLastError();
    return false;
  }
  if (why) why->clear();
  return true;
}

void check_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call +
                           " failed: " + cublasGetStatusString(st));
}

cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    // PEDANTIC: no TF32 tensor cores and no reduced-precision internal formats, so cublasSgemm is an
    // fp32 GEMM in IEEE arithmetic (only the summation order differs from ref). Speed is a later issue.
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));
    CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    return h;
  }();
  return handle;  // never destroyed: the driver may already be gone when static destructors run
}

void* workspace(size_t bytes) {
  static void* buf = nullptr;
  static size_t capacity = 0;
  if (bytes > capacity) {
    dev_free(buf);  // cudaFree waits for queued work, so no kernel still uses the old buffer
    buf = nullptr;
    capacity = 0;
    const size_t grown = bytes + bytes / 4;  // some headroom, so a slowly growing request reallocates rarely
    buf = dev_alloc<unsigned char>(grown);
    capacity = grown;
  }
  return buf;
}

// ---- errors recorded by kernels ----

namespace {
constexpr int kErrInts = 2 * kNumDeviceErrors;
const int kNoIndex = 0x7fffffff;  // INT_MAX: no error of this kind recorded

void reset_errors(int* rec) {
  int init[kErrInts];
  for (int k = 0; k < kNumDeviceErrors; ++k) init[2 * k] = kNoIndex, init[2 * k + 1] = 0;
  to_device(rec, init, kErrInts);
}
}  // namespace

int* device_errors() {
  static int* rec = [] {
    int* r = dev_alloc<int>(kErrInts);
    reset_errors(r);
    return r;
  }();
  return rec;
}

void raise_device_errors() {
  int* rec = device_errors();
  int h[kErrInts];
  to_host(h, rec, kErrInts);  // waits for every queued kernel
  auto index = [&](DeviceError k) { return h[2 * k]; };
  auto more = [&](DeviceError k) {
    const int n = h[2 * k + 1] - 1;
    return n > 0 ? " (and " + std::to_string(n) + " more)" : std::string();
  };
  std::string msg;
  if (h[2 * kErrBias + 1])  // in the order ref checks: bias, scores, then the gates
    msg = "router: the balance bias of expert " + std::to_string(index(kErrBias)) +
          " is not finite; it must be finite: the checkpoint is corrupt or the bias update rate is far too large";
  else if (h[2 * kErrScore + 1])
    msg = "router: NaN or infinite score at token " + std::to_string(index(kErrScore)) + more(kErrScore) +
          "; the model diverged: lower the lr (or check the input data)";
  else if (h[2 * kErrExpertChoice + 1])
    msg = "route_expert_choice: the experts took " + std::to_string(index(kErrExpertChoice)) +
          " assignments instead of N*K: NaN scores cannot be ranked (the model diverged: lower the lr), or the "
          "token order is not a permutation";
  else if (h[2 * kErrNormTopk + 1])
    msg = "router: the selected scores of token " + std::to_string(index(kErrNormTopk)) + more(kErrNormTopk) +
          " do not sum to a positive number, so norm_topk cannot normalise them; the model diverged (scores "
          "underflowed): lower the lr";
  if (msg.empty()) return;
  reset_errors(rec);  // the next forward starts clean
  throw std::runtime_error(msg);
}

// ---- deterministic sum: fixed grid of partial sums, then one block sums the partials ----

constexpr int kSumBlocks = 128;  // fixed (not derived from the GPU), so the order depends only on n
constexpr int kSumThreads = 256;

template <typename T>
__global__ void partial_sums_kernel(double* partials, const T* x, size_t n, bool square) {
  double acc = 0.0;
  for (size_t i = blockIdx.x * size_t(kSumThreads) + threadIdx.x; i < n; i += size_t(kSumBlocks) * kSumThreads) {
    const double v = static_cast<double>(x[i]);
    acc += square ? v * v : v;
  }
  acc = dev::block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void final_sum_kernel(double* out, const double* partials) {
  double acc = threadIdx.x < kSumBlocks ? partials[threadIdx.x] : 0.0;
  acc = dev::block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

template <typename T> double sum_to_host(const T* x, size_t n, bool square) {
  static double* slots = nullptr;  // kSumBlocks partials + 1 result, allocated once
  if (!slots) slots = dev_alloc<double>(kSumBlocks + 1);
  partial_sums_kernel<T><<<kSumBlocks, kSumThreads>>>(slots, x, n, square);
  KERNEL_CHECK();
  final_sum_kernel<<<1, kSumBlocks>>>(slots + kSumBlocks, slots);
  KERNEL_CHECK();
  double result = 0.0;
  to_host(&result, slots + kSumBlocks, 1);
  return result;
}

template double sum_to_host<float>(const float*, size_t, bool);
template double sum_to_host<double>(const double*, size_t, bool);
template double sum_to_host<int>(const int*, size_t, bool);

}  // namespace cuda
