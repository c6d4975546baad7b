// ops.cu — the dense ops on the GPU (see cuda/ops.h and ref/ops.h for the contracts).
//
// Written for clarity first: one thread per element for elementwise ops, one block per row for row
// reductions, cuBLAS for GEMMs. Reductions whose result feeds training never use float atomics;
// where many rows add into one gradient (embedding, RMSNorm weight, attention dk/dv), one thread
// owns an output element and walks the rows in order, which is exactly ref's order.
//
// Precision follows ref/ops.cpp operation by operation: dot products accumulate in T; per-row
// statistics (RMSNorm's mean square, softmax normalisers, the loss) accumulate in double. The
// remaining differences from ref are the summation ORDER of block reductions and GEMMs, the
// CUDA libm (expf etc., within 2 ulp) and FMA contraction (nvcc's default); the equivalence tests
// (tests/cuda/test_cuda_ops.cu) bound them.
#include "cuda/ops.h"

#include <cmath>      // std::pow, std::sqrt (host side of AdamW)
#include <stdexcept>  // std::runtime_error
#include <string>     // std::to_string

#include "cuda/common.h"  // dev::block_sum, dev::block_max, dev::exp_, ...
#include "cuda/device.h"    // cublas_handle, workspace, sum_to_host, grid_for, KERNEL_CHECK

namespace cuda {

namespace {

// grid-stride loop index helpers for 1-D kernels
__device__ inline size_t thread_index() { return blockIdx.x * size_t(blockDim.x) + threadIdx.x; }
__device__ inline size_t grid_stride() { return size_t(gridDim.x) * blockDim.x; }

constexpr int kRowThreads = 128;  // threads per block for one-block-per-row kernels (multiple of 32)

// ---- GEMM: row-major arrays through column-major cuBLAS ----
// A row-major (R,Cn) array is the column-major (Cn,R) array with the same memory, so every row-major
// product is computed as its transpose. beta = 0 overwrites C, beta = 1 accumulates (backward ops).
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  const float alpha = 1.0f;
  CUBLAS_CHECK(cublasSgemm(cublas_handle(), ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
}
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const double* A, int lda, const double* B,
          int ldb, double beta, double* C, int ldc) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  const double alpha = 1.0;
  CUBLAS_CHECK(cublasDgemm(cublas_handle(), ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
}

// ---- embedding ----

template <typename T> __global__ void embedding_forward_kernel(T* out, const int* tokens, const T* wte, int N, int C) {
  const size_t total = size_t(N) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t n = i / C, c = i % C;
    out[i] = wte[size_t(tokens[n]) * C + c];
  }
}

// One thread per column c walks the tokens in order: no two threads touch the same element and each
// element receives its additions in token order (bitwise what ref does). Slow for long N (N serial
// steps), acceptable for now.
template <typename T>
__global__ void embedding_backward_kernel(T* dwte, const T* dout, const int* tokens, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int n = 0; n < N; ++n) dwte[size_t(tokens[n]) * C + c] += dout[size_t(n) * C + c];
}

// ---- RMSNorm ----

template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, T* rstd, const T* inp, const T* w, int C, float eps) {
  const size_t row = blockIdx.x;
  const T* x = inp + row * C;
  double ss = 0;  // mean square in double, as ref
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += double(x[c]) * x[c];
  ss = dev::block_sum(ss);
  const T r = T(1.0 / sqrt(ss / C + eps));
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[row * C + c] = x[c] * r * w[c];
  if (threadIdx.x == 0) rstd[row] = r;
}

// dinp_j += r*w_j*dout_j - r^3/C * x_j * sum_c(dout_c w_c x_c)   (one block per row)
template <typename T>
__global__ void rmsnorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* w, const T* rstd, int C) {
  const size_t row = blockIdx.x;
  const T* x = inp + row * C;
  const T* dy = dout + row * C;
  double dot = 0;  // in double, as ref
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += double(dy[c]) * w[c] * x[c];
  dot = dev::block_sum(dot);
  const double r = rstd[row];
  const T coef = T(r * r * r * dot / C);
  for (int c = threadIdx.x; c < C; c += blockDim.x) dinp[row * C + c] += rstd[row] * (w[c] * dy[c]) - x[c] * coef;
}

// dw_c += sum_n dout[n,c] * x[n,c] * rstd[n], one thread per column, rows in order
template <typename T>
__global__ void rmsnorm_backward_dw_kernel(T* dw, const T* dout, const T* inp, const T* rstd, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  T acc = 0;
  for (int n = 0; n < N; ++n) acc += dout[size_t(n) * C + c] * (inp[size_t(n) * C + c] * rstd[n]);
  dw[c] += acc;
}

// ---- RoPE ----

// One thread per pair (b, t, h, i): rotate (x[2i], x[2i+1]) by sign * t * theta^(-2i/D).
template <typename T> __global__ void rope_kernel(T* x, int B, int T_, int H, int D, float theta, int sign) {
  const int half = D / 2;
  const size_t total = size_t(B) * T_ * H * half;
  for (size_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int i = int(idx % half);
    const size_t bth = idx / half;  // (b*T_ + t)*H + h
    const int t = int((bth / H) % T_);
    const double angle = double(t) * pow(double(theta), -2.0 * i / D);  // in double, as ref
    const T c = T(cos(angle)), s = T(sign * sin(angle));
    T* p = x + bth * D + 2 * i;
    const T x0 = p[0], x1 = p[1];
    p[0] = x0 * c - x1 * s;
    p[1] = x0 * s + x1 * c;
  }
}

// ---- attention (one block per (b, h, t) query row) ----

// Row (b,h,t) of att: scores q.k*scale for s <= t, softmax, zeros above the diagonal; then out row.
template <typename T>
__global__ void attention_forward_kernel(T* out, T* att, const T* q, const T* k, const T* v, int T_, int C, int H,
                                         T scale) {
  const int D = C / H;
  const int t = blockIdx.x % T_;
  const int h = (blockIdx.x / T_) % H;
  const int b = blockIdx.x / (T_ * H);
  T* row = att + size_t(blockIdx.x) * T_;  // blockIdx.x == (b*H + h)*T_ + t
  const T* qt = q + (size_t(b) * T_ + t) * C + size_t(h) * D;

  T local_max = T(-INFINITY);
  for (int s = threadIdx.x; s < T_; s += blockDim.x) {
    if (s > t) {
      row[s] = 0;
      continue;
    }
    const T* ks = k + (size_t(b) * T_ + s) * C + size_t(h) * D;
    T dot = 0;
    for (int d = 0; d < D; ++d) dot += qt[d] * ks[d];
    row[s] = scale * dot;
    local_max = max(local_max, row[s]);
  }
  const T mx = dev::block_max(local_max);
  double local_sum = 0;  // the normaliser in double, as ref
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    row[s] = dev::exp_(row[s] - mx);
    local_sum += row[s];
  }
  const T inv = T(1.0 / dev::block_sum(local_sum));
  for (int s = threadIdx.x; s <= t; s += blockDim.x) row[s] *= inv;
  __syncthreads();  // the normalised row (written by all threads) is read by all threads below

  T* ot = out + (size_t(b) * T_ + t) * C + size_t(h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    T acc = 0;
    for (int s = 0; s <= t; ++s) acc += row[s] * v[(size_t(b) * T_ + s) * C + size_t(h) * D + d];
    ot[d] = acc;
  }
}

// dpre[t,s] = scale * att[t,s] * (datt[t,s] - sum_j att[t,j] datt[t,j]),  datt[t,s] = dout[t] . v[s]
// (s <= t): the gradient of the pre-scale scores q.k, i.e. ref's ds.
template <typename T>
__global__ void attention_dpre_kernel(T* dpre, const T* dout, const T* v, const T* att, int T_, int C, int H,
                                      T scale) {
  const int D = C / H;
  const int t = blockIdx.x % T_;
  const int h = (blockIdx.x / T_) % H;
  const int b = blockIdx.x / (T_ * H);
  const T* arow = att + size_t(blockIdx.x) * T_;
  T* prow = dpre + size_t(blockIdx.x) * T_;
  const T* dot_ = dout + (size_t(b) * T_ + t) * C + size_t(h) * D;
  double partial = 0;  // the softmax Jacobian's shared term, in double as ref
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    const T* vs = v + (size_t(b) * T_ + s) * C + size_t(h) * D;
    T datt = 0;
    for (int d = 0; d < D; ++d) datt += dot_[d] * vs[d];
    prow[s] = datt;  // read back below by this same thread
    partial += double(arow[s]) * datt;
  }
  const T rowdot = T(dev::block_sum(partial));
  for (int s = threadIdx.x; s <= t; s += blockDim.x) prow[s] = scale * (arow[s] * (prow[s] - rowdot));
}

// dq[t] += sum_{s<=t} dpre[t,s] k[s]   (block per (b,h,t), threads over d)
template <typename T>
__global__ void attention_dq_kernel(T* dq, const T* dpre, const T* k, int T_, int C, int H) {
  const int D = C / H;
  const int t = blockIdx.x % T_;
  const int h = (blockIdx.x / T_) % H;
  const int b = blockIdx.x / (T_ * H);
  const T* prow = dpre + size_t(blockIdx.x) * T_;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    T acc = 0;
    for (int s = 0; s <= t; ++s) acc += prow[s] * k[(size_t(b) * T_ + s) * C + size_t(h) * D + d];
    dq[(size_t(b) * T_ + t) * C + size_t(h) * D + d] += acc;
  }
}

// dk[s] += sum_{t>=s} dpre[t,s] q[t];  dv[s] += sum_{t>=s} att[t,s] dout[t]  (block per (b,h,s)).
// Each element is added to in increasing t, starting from its current value: ref's order exactly.
template <typename T>
__global__ void attention_dkdv_kernel(T* dk, T* dv, const T* dpre, const T* att, const T* q, const T* dout, int T_,
                                      int C, int H) {
  const int D = C / H;
  const int s = blockIdx.x % T_;
  const size_t bh = blockIdx.x / T_;  // b*H + h
  const int h = int(bh % H);
  const int b = int(bh / H);
  const size_t mat = bh * T_ * T_;  // start of this (b,h) T x T matrix
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const size_t dst = (size_t(b) * T_ + s) * C + size_t(h) * D + d;
    T acc_k = dk ? dk[dst] : T(0), acc_v = dv ? dv[dst] : T(0);
    for (int t = s; t < T_; ++t) {
      const size_t src = (size_t(b) * T_ + t) * C + size_t(h) * D + d;
      const size_t ts = mat + size_t(t) * T_ + s;
      acc_k += dpre[ts] * q[src];
      acc_v += att[ts] * dout[src];
    }
    if (dk) dk[dst] = acc_k;
    if (dv) dv[dst] = acc_v;
  }
}

// ---- elementwise ----

template <typename T> __device__ inline T sigmoid(T a) { return T(1) / (T(1) + dev::exp_(-a)); }

template <typename T> __global__ void swiglu_forward_kernel(T* out, const T* a, const T* b, size_t n) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) out[i] = a[i] * sigmoid(a[i]) * b[i];
}

// silu'(a) = s + a s (1 - s), s = sigmoid(a)
template <typename T>
__global__ void swiglu_backward_kernel(T* da, T* db, const T* dout, const T* a, const T* b, size_t n) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) {
    const T s = sigmoid(a[i]);
    if (da) da[i] += dout[i] * b[i] * (s + a[i] * s * (T(1) - s));
    if (db) db[i] += dout[i] * (a[i] * s);
  }
}

template <typename T> __global__ void add_inplace_kernel(T* x, const T* y, size_t n) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) x[i] += y[i];
}

template <typename T> __global__ void scale_inplace_kernel(T* x, size_t n, T s) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) x[i] *= s;
}

// ---- cross-entropy (one block per row) ----

// Returns (max, sum of exp(l - max)) of a logits row to every thread of the block; like ref, the
// differences l - max are formed in T and exponentiated and summed in double.
template <typename T> __device__ void softmax_stats(const T* l, int V, T* mx, double* sum) {
  T m = T(-INFINITY);
  for (int i = threadIdx.x; i < V; i += blockDim.x) m = max(m, l[i]);
  m = dev::block_max(m);
  double s = 0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) s += exp(double(l[i] - m));
  *mx = m;
  *sum = dev::block_sum(s);
}

// A target outside [0, V) is counted in *bad (an exact integer atomic) and gives a NaN loss; the host
// turns a nonzero count into an exception, like ref's check.
template <typename T>
__global__ void crossentropy_forward_kernel(T* losses, int* bad, const T* logits, const int* targets, int V) {
  const size_t row = blockIdx.x;
  const T* l = logits + row * V;
  T mx;
  double sum;
  softmax_stats(l, V, &mx, &sum);
  if (threadIdx.x != 0) return;
  const int target = targets[row];
  if (target < 0 || target >= V) {
    atomicAdd(bad, 1);
    losses[row] = T(NAN);
    return;
  }
  losses[row] = T(double(mx) + log(sum) - double(l[target]));
}

template <typename T>
__global__ void crossentropy_backward_kernel(T* dlogits, const T* logits, const int* targets, int V, double g) {
  const size_t row = blockIdx.x;
  const T* l = logits + row * V;
  T mx;
  double sum;
  softmax_stats(l, V, &mx, &sum);
  const int target = targets[row];
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const double p = exp(double(l[i] - mx)) / sum;
    dlogits[row * V + i] += T((p - (i == target ? 1.0 : 0.0)) * g);
  }
}

// ---- AdamW (torch order) ----
template <typename T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, size_t n, T decay, T beta1, T beta2, T eps,
                             T step_size, T bc2_sqrt) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) {
    p[i] *= decay;
    m[i] = beta1 * m[i] + (T(1) - beta1) * g[i];
    v[i] = beta2 * v[i] + (T(1) - beta2) * g[i] * g[i];
    p[i] -= step_size * m[i] / (dev::sqrt_(v[i]) / bc2_sqrt + eps);
  }
}

void check_dims(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string("cuda::") + op + ": " + what);
}

}  // namespace

// ===================================== public ops =====================================

template <typename T> void embedding_forward(T* out, const int* tokens, const T* wte, int N, int C) {
  const size_t total = size_t(N) * C;
  if (total == 0) return;
  embedding_forward_kernel<<<grid_for(total), kThreads>>>(out, tokens, wte, N, C);
  KERNEL_CHECK();
}

template <typename T> void embedding_backward(T* dwte, const T* dout, const int* tokens, int N, int C) {
  if (!dwte || N <= 0 || C <= 0) return;
  embedding_backward_kernel<<<grid_for(C, 128), 128>>>(dwte, dout, tokens, N, C);
  KERNEL_CHECK();
}

template <typename T> void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* w, int N, int C, float eps) {
  if (N <= 0) return;
  check_dims(C > 0, "rmsnorm_forward", "C must be positive, got " + std::to_string(C));
  rmsnorm_forward_kernel<<<N, kRowThreads>>>(out, rstd, inp, w, C, eps);
  KERNEL_CHECK();
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const T* rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  if (dinp) {
    rmsnorm_backward_dinp_kernel<<<N, kRowThreads>>>(dinp, dout, inp, w, rstd, C);
    KERNEL_CHECK();
  }
  if (dw) {
    rmsnorm_backward_dw_kernel<<<grid_for(C, 128), 128>>>(dw, dout, inp, rstd, N, C);
    KERNEL_CHECK();
  }
}

// Row-major out (N,OC) is column-major (OC,N); inp (N,IC) is col-major (IC,N); w (OC,IC) is
// col-major (IC,OC). So out_cm = w_cm^T (OC,IC) * inp_cm (IC,N).
template <typename T> void matmul_forward(T* out, const T* inp, const T* w, int N, int IC, int OC) {
  if (N <= 0 || OC <= 0) return;
  if (IC <= 0) return dev_zero(out, size_t(N) * OC);
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, w, IC, inp, IC, T(0), out, OC);
}

// dinp_cm (IC,N) += w_cm (IC,OC) * dout_cm (OC,N);  dw_cm (IC,OC) += inp_cm (IC,N) * dout_cm^T (N,OC)
template <typename T>
void matmul_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, int N, int IC, int OC) {
  if (dinp) gemm(CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, w, IC, dout, OC, T(1), dinp, IC);
  if (dw) gemm(CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, inp, IC, dout, OC, T(1), dw, IC);
}

template <typename T> void rope_forward(T* x, int B, int T_, int H, int D, float theta) {
  check_dims(D % 2 == 0, "rope_forward", "head dim D must be even, got " + std::to_string(D));
  const size_t total = size_t(B) * T_ * H * (D / 2);
  if (total == 0) return;
  rope_kernel<<<grid_for(total), kThreads>>>(x, B, T_, H, D, theta, +1);
  KERNEL_CHECK();
}

template <typename T> void rope_backward(T* dx, int B, int T_, int H, int D, float theta) {
  check_dims(D % 2 == 0, "rope_backward", "head dim D must be even, got " + std::to_string(D));
  const size_t total = size_t(B) * T_ * H * (D / 2);
  if (total == 0 || !dx) return;
  rope_kernel<<<grid_for(total), kThreads>>>(dx, B, T_, H, D, theta, -1);
  KERNEL_CHECK();
}

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int C, int H) {
  check_dims(H > 0 && C % H == 0, "attention_forward",
             "C (" + std::to_string(C) + ") must be a multiple of H (" + std::to_string(H) + ")");
  const size_t rows = size_t(B) * H * T_;
  if (rows == 0) return;
  const T scale = T(1.0 / std::sqrt(double(C / H)));
  attention_forward_kernel<<<unsigned(rows), kRowThreads>>>(out, att, q, k, v, T_, C, H, scale);
  KERNEL_CHECK();
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        int B, int T_, int C, int H) {
  check_dims(H > 0 && C % H == 0, "attention_backward",
             "C (" + std::to_string(C) + ") must be a multiple of H (" + std::to_string(H) + ")");
  const size_t rows = size_t(B) * H * T_;
  if (rows == 0) return;
  const T scale = T(1.0 / std::sqrt(double(C / H)));
  // dpre (B,H,T,T): the gradient of the unscaled scores q.k (ref's ds), in the shared workspace.
  T* dpre = static_cast<T*>(workspace(rows * T_ * sizeof(T)));
  attention_dpre_kernel<<<unsigned(rows), kRowThreads>>>(dpre, dout, v, att, T_, C, H, scale);
  KERNEL_CHECK();
  if (dq) {
    attention_dq_kernel<<<unsigned(rows), 64>>>(dq, dpre, k, T_, C, H);
    KERNEL_CHECK();
  }
  if (dk || dv) {
    attention_dkdv_kernel<<<unsigned(rows), 64>>>(dk, dv, dpre, att, q, dout, T_, C, H);
    KERNEL_CHECK();
  }
}

template <typename T> void swiglu_forward(T* out, const T* a, const T* b, size_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads>>>(out, a, b, n);
  KERNEL_CHECK();
}

template <typename T> void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, size_t n) {
  if (n == 0 || (!da && !db)) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads>>>(da, db, dout, a, b, n);
  KERNEL_CHECK();
}

template <typename T> void add_inplace(T* x, const T* y, size_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<grid_for(n), kThreads>>>(x, y, n);
  KERNEL_CHECK();
}

template <typename T> double crossentropy_forward(T* losses, const T* logits, const int* targets, int N, int V) {
  check_dims(N > 0 && V > 0, "crossentropy_forward",
             "need N > 0 and V > 0, got N=" + std::to_string(N) + " V=" + std::to_string(V));
  static int* bad = nullptr;  // count of out-of-range targets, allocated once
  if (!bad) bad = dev_alloc<int>(1);
  dev_zero(bad, 1);
  crossentropy_forward_kernel<<<N, 256>>>(losses, bad, logits, targets, V);
  KERNEL_CHECK();
  const double mean = sum_to_host(losses, size_t(N), false) / N;  // waits for the kernel
  // The forward ends here and the host waits anyway: errors the router kernels recorded earlier in
  // this forward (a NaN score, norm_topk's zero sum; see device.h) are raised now, before backward.
  raise_device_errors();
  int n_bad = 0;
  to_host(&n_bad, bad, 1);
  check_dims(n_bad == 0, "crossentropy_forward",
             std::to_string(n_bad) + " of " + std::to_string(N) + " targets are outside [0, V=" + std::to_string(V) +
                 "); the data does not match the model's vocabulary");
  return mean;
}

template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, float dloss) {
  if (N <= 0 || V <= 0 || !dlogits) return;
  const double g = double(dloss) / N;  // d(dloss * mean)/d(loss_n), as ref
  crossentropy_backward_kernel<<<N, 256>>>(dlogits, logits, targets, V, g);
  KERNEL_CHECK();
}

template <typename T> double sumsq(const T* g, size_t n) { return n ? sum_to_host(g, n, true) : 0.0; }

template <typename T> void scale_inplace(T* x, size_t n, float s) {
  if (n == 0) return;
  scale_inplace_kernel<<<grid_for(n), kThreads>>>(x, n, T(s));
  KERNEL_CHECK();
}

template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                  int t) {
  check_dims(t >= 1, "adamw_update", "step t must be >= 1 (it counts from 1), got " + std::to_string(t));
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(double(beta1), t);  // bias corrections in double, as torch does
  const double bc2 = 1.0 - std::pow(double(beta2), t);
  const T decay = T(1.0 - double(lr) * double(wd));
  const T step_size = T(double(lr) / bc1);
  const T bc2_sqrt = T(std::sqrt(bc2));
  adamw_kernel<<<grid_for(n), kThreads>>>(p, g, m, v, n, decay, T(beta1), T(beta2), T(eps), step_size, bc2_sqrt);
  KERNEL_CHECK();
}

// ---- explicit instantiations: float (training) and double ----
#define LFMOE_CUDA_OPS(T)                                                                                        \
  template void embedding_forward<T>(T*, const int*, const T*, int, int);                                       \
  template void embedding_backward<T>(T*, const T*, const int*, int, int);                                      \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, float);                                \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int);                  \
  template void matmul_forward<T>(T*, const T*, const T*, int, int, int);                                       \
  template void matmul_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int);                        \
  template void rope_forward<T>(T*, int, int, int, int, float);                                                 \
  template void rope_backward<T>(T*, int, int, int, int, float);                                                \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int, int, int, int);                 \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int, int,   \
                                      int, int);                                                                \
  template void swiglu_forward<T>(T*, const T*, const T*, size_t);                                              \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, size_t);                               \
  template void add_inplace<T>(T*, const T*, size_t);                                                           \
  template double crossentropy_forward<T>(T*, const T*, const int*, int, int);                                  \
  template void crossentropy_backward<T>(T*, const T*, const int*, int, int, float);                            \
  template double sumsq<T>(const T*, size_t);                                                                   \
  template void scale_inplace<T>(T*, size_t, float);                                                            \
  template void adamw_update<T>(T*, const T*, T*, T*, size_t, float, float, float, float, float, int);
LFMOE_CUDA_OPS(float)
LFMOE_CUDA_OPS(double)
#undef LFMOE_CUDA_OPS

}  // namespace cuda
