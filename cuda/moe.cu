// moe.cu — the router, dispatch/experts/combine, aux loss and loss-free bias on the GPU (see
// cuda/moe.h; the rules are ref/moe.h's and ref/moe.cpp is the reference these kernels mirror).
//
// Design: small per-token work (scores, top-K, gates, aux terms) runs one thread per token with the
// same loops, in the same order and precision, as ref; so given the same scores the routing is
// identical and most outputs are bitwise equal (up to FMA contraction). Integer results (indices,
// offsets, perm, counts) are exact. Expert GEMMs are cuBLAS, one call per expert, with row
// gathers/scatters around them. No float atomics anywhere.
#include "cuda/moe.h"

#include <stdexcept>  // std::runtime_error
#include <string>     // std::string, std::to_string
#include <vector>     // std::vector (host copy of exp_off)

#include "cuda/common.h"  // dev::block_sum, dev::block_exclusive_scan, dev::exp_
#include "cuda/device.h"  // workspace, grid_for, KERNEL_CHECK
#include "cuda/memory.h"  // to_host, dev_zero
#include "cuda/ops.h"     // matmul_forward / matmul_backward (cuBLAS) for the expert GEMMs
#include "ref/moe.h"      // ref::maxvio (the one host implementation)

namespace cuda {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }
std::string str(int64_t v) { return std::to_string(v); }

__device__ inline size_t thread_index() { return blockIdx.x * size_t(blockDim.x) + threadIdx.x; }
__device__ inline size_t grid_stride() { return size_t(gridDim.x) * blockDim.x; }

void check_router_dims(const char* op, int N, int E, int K) {
  if (N < 0 || E < 1) fail(std::string("cuda::") + op + ": bad shape N=" + str(N) + " E=" + str(E) + " (need N >= 0, E >= 1)");
  if (K < 1 || K > E)
    fail(std::string("cuda::") + op + ": K=" + str(K) + " experts per token with E=" + str(E) +
         " experts; K must be in [1, E]: fix the config");
}

// Logistic function that only exponentiates a non-positive number (ref's form, so equal results).
template <typename T> __device__ T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + dev::exp_(-x));
  const T e = dev::exp_(x);
  return e / (T(1) + e);
}

template <typename T> __device__ T dot(const T* a, const T* b, int n) {
  T acc = 0;
  for (int i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

// ============================== scores ==============================

template <typename T> __global__ void router_scores_forward_kernel(T* scores, const T* logits, int N, int E, Gate gate) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  const T* l = logits + t * E;
  T* s = scores + t * E;
  if (gate == Gate::sigmoid) {
    for (int i = 0; i < E; i++) s[i] = sigmoid(l[i]);
    return;
  }
  T mx = l[0];
  for (int i = 1; i < E; i++) mx = max(mx, l[i]);
  T sum = 0;
  for (int i = 0; i < E; i++) {
    s[i] = dev::exp_(l[i] - mx);
    sum += s[i];
  }
  for (int i = 0; i < E; i++) s[i] /= sum;
}

template <typename T>
__global__ void router_scores_backward_kernel(T* dlogits, const T* dscores, const T* scores, int N, int E, Gate gate) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  const T* ds = dscores + t * E;
  const T* s = scores + t * E;
  T* dl = dlogits + t * E;
  if (gate == Gate::sigmoid) {
    for (int i = 0; i < E; i++) dl[i] += ds[i] * s[i] * (T(1) - s[i]);
    return;
  }
  const T d = dot(ds, s, E);  // softmax Jacobian: dl_j = s_j (ds_j - sum_i ds_i s_i)
  for (int i = 0; i < E; i++) dl[i] += s[i] * (ds[i] - d);
}

// ============================== selection ==============================

template <typename T> __device__ T selection_key(T s, const float* bias, BiasKind kind, int i) {
  if (!bias) return s;
  return kind == BiasKind::add ? s + T(bias[i]) : s * T(bias[i]);
}

// Gates of token t's assignments [a0, a1): the unbiased score, optionally / sum * scale (ref's order).
// A sum that is not positive is where ref throws: recorded as kErrNormTopk (see device.h).
template <typename T>
__device__ void set_gates(T* a_gate, const int* a_exp, const T* s, int a0, int a1, bool norm_topk, float scale,
                          int t, int* err) {
  for (int a = a0; a < a1; a++) a_gate[a] = s[a_exp[a]];
  if (!norm_topk || a0 == a1) return;
  T Z = 0;
  for (int a = a0; a < a1; a++) Z += a_gate[a];
  if (!(Z > T(0))) dev::report_error(err, kErrNormTopk, t);
  for (int a = a0; a < a1; a++) a_gate[a] = a_gate[a] / Z * T(scale);
}

// ref refuses non-finite scores (a NaN would be kept or dropped depending on how the comparisons
// happen to be written); here they are recorded as kErrScore for the token.
template <typename T> __device__ void check_scores(const T* s, int E, int t, int* err) {
  for (int i = 0; i < E; i++)
    if (!dev::finite_(s[i])) {
      dev::report_error(err, kErrScore, t);
      return;
    }
}

// One thread per token. Insertion into a sorted list of K kept in the token's own output slots
// (a_exp holds indices, a_gate the keys until the gates overwrite them), visiting experts in
// ascending order; only a strictly larger key moves ahead, so equal keys keep the lower index first.
template <typename T>
__global__ void route_token_choice_kernel(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores,
                                          const float* bias, BiasKind kind, int N, int E, int K, bool norm_topk,
                                          float scale, int* err) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  const int a0 = int(t) * K;
  const T* s = scores + t * E;
  check_scores(s, E, int(t), err);
  if (t == 0 && bias)
    for (int i = 0; i < E; i++)
      if (!isfinite(bias[i])) dev::report_error(err, kErrBias, i);
  int* idx = a_exp + a0;
  T* best = a_gate + a0;
  int n = 0;
  for (int i = 0; i < E; i++) {
    const T key = selection_key(s[i], bias, kind, i);
    if (n == K && !(key > best[K - 1])) continue;
    int p = n < K ? n++ : K - 1;
    for (; p > 0 && key > best[p - 1]; --p) {
      best[p] = best[p - 1];
      idx[p] = idx[p - 1];
    }
    best[p] = key;
    idx[p] = i;
  }
  for (int k = 0; k < K; k++) a_tok[a0 + k] = int(t);
  set_gates(a_gate, a_exp, s, a0, a0 + K, norm_topk, scale, int(t), err);
  tok_off[t] = a0;
  if (t == size_t(N) - 1) tok_off[N] = N * K;
}

// Expert choice, one block per (chunk, expert): position p of the chunk is taken when fewer than cap
// positions come before it in the order (score desc, position asc). That order is strict and total,
// so exactly cap positions are taken, the same ones ref's partial sort takes. O(chunk^2) per block.
template <typename T>
__global__ void expert_choice_pick_kernel(int* picked, const T* scores, const int* order, int E, int chunk, int cap) {
  const int e = blockIdx.x % E;
  const int c0 = (blockIdx.x / E) * chunk;
  for (int p = threadIdx.x; p < chunk; p += blockDim.x) {
    const int tp = order ? order[c0 + p] : c0 + p;
    const T sp = scores[size_t(tp) * E + e];
    int rank = 0;
    for (int q = 0; q < chunk && rank < cap; q++) {
      const int tq = order ? order[c0 + q] : c0 + q;
      const T sq = scores[size_t(tq) * E + e];
      rank += (sq > sp || (sq == sp && q < p)) ? 1 : 0;
    }
    if (rank < cap) picked[size_t(tp) * E + e] = 1;
  }
}

// n_assign[t] = number of experts that took token t (and the token's scores are checked)
template <typename T>
__global__ void count_picked_kernel(int* n_assign, const int* picked, const T* scores, int N, int E, int* err) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  check_scores(scores + t * E, E, int(t), err);
  int n = 0;
  for (int e = 0; e < E; e++) n += picked[t * E + e];
  n_assign[t] = n;
}

// out (n+1) = exclusive prefix sum of in (n), out[n] = total. One block, tiles of kScanThreads.
// The expert-choice offsets must total `expected` (= N*K, the size of the assignment arrays). Only a
// NaN score can break that (it makes the ranking inconsistent); then the offsets are zeroed, so that
// no later kernel indexes past the arrays, and kErrExpertChoice is recorded with the total.
__global__ void exclusive_scan_kernel(int* out, const int* in, int n, int expected, int* err) {
  int carry = 0;  // the same in every thread
  for (int base = 0; base < n; base += dev::kScanThreads) {
    const int i = base + threadIdx.x;
    int tile_total = 0;
    const int prefix = dev::block_exclusive_scan(i < n ? in[i] : 0, &tile_total);
    if (i < n) out[i] = carry + prefix;
    carry += tile_total;
  }
  if (carry == expected) {
    if (threadIdx.x == 0) out[n] = carry;
    return;
  }
  __syncthreads();  // every out[i] above is written before it is cleared
  for (int i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 0;
  if (threadIdx.x == 0) dev::report_error(err, kErrExpertChoice, carry);
}

// Token-major assignment lists, ascending expert within a token, then the gates.
template <typename T>
__global__ void expert_choice_fill_kernel(int* a_tok, int* a_exp, T* a_gate, const int* tok_off, const int* picked,
                                          const T* scores, int N, int E, int A, bool norm_topk, float scale,
                                          int* err) {
  const size_t t = thread_index();
  if (t >= size_t(N) || tok_off[N] != A) return;  // offsets cleared by the scan: an error is recorded
  int a = tok_off[t];
  for (int e = 0; e < E; e++)
    if (picked[t * E + e]) {
      a_tok[a] = int(t);
      a_exp[a] = e;
      a++;
    }
  set_gates(a_gate, a_exp, scores + t * E, tok_off[t], a, norm_topk, scale, int(t), err);
}

template <typename T>
__global__ void gates_backward_kernel(T* dscores, const T* da_gate, const T* scores, const int* tok_off,
                                      const int* a_exp, const T* a_gate, int N, int E, bool norm_topk, float scale) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  const int a0 = tok_off[t], a1 = tok_off[t + 1];
  const T* s = scores + t * E;
  T* ds = dscores + t * E;
  if (!norm_topk) {
    for (int a = a0; a < a1; a++) ds[a_exp[a]] += da_gate[a];
    return;
  }
  // g_a = scale * s_a / Z, Z = sum_b s_b  =>  ds_b = (scale * dg_b - sum_a dg_a g_a) / Z
  T Z = 0, dg_dot_g = 0;
  for (int a = a0; a < a1; a++) {
    Z += s[a_exp[a]];
    dg_dot_g += da_gate[a] * a_gate[a];
  }
  for (int a = a0; a < a1; a++) ds[a_exp[a]] += (T(scale) * da_gate[a] - dg_dot_g) / Z;
}

// Shared-memory histogram per block, then one integer atomic per (block, expert): exact.
// Expert ids outside [0, E) are ignored (ref throws on them; see moe.h).
__global__ void count_experts_kernel(int64_t* counts, const int* a_exp, int A, int E) {
  extern __shared__ int hist[];  // E ints
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  for (size_t a = thread_index(); a < size_t(A); a += grid_stride()) {
    const int e = a_exp[a];
    if (e >= 0 && e < E) atomicAdd(&hist[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (hist[e]) atomicAdd(reinterpret_cast<unsigned long long*>(counts + e), (unsigned long long)hist[e]);
}

// ============================== dispatch ==============================

// exp_off[e + 1] = number of assignments of expert e (one block per expert; block sum of 0/1 flags)
__global__ void dispatch_count_kernel(int* exp_off, const int* a_exp, int A) {
  const int e = blockIdx.x;
  int n = 0;
  for (int a = threadIdx.x; a < A; a += blockDim.x) n += a_exp[a] == e ? 1 : 0;
  n = dev::block_sum(n);
  if (threadIdx.x == 0) exp_off[e + 1] = n;
}

// exp_off[0] = 0, then the counts in exp_off[1..E] become the inclusive prefix sums (E is small).
__global__ void dispatch_offsets_kernel(int* exp_off, int E) {
  exp_off[0] = 0;
  for (int e = 0; e < E; e++) exp_off[e + 1] += exp_off[e];
}

// One block per expert walks the assignments in order, tile by tile; a block scan of the flags gives
// each of the expert's assignments its slot, so every group is in ascending assignment order.
__global__ void dispatch_place_kernel(int* perm, const int* exp_off, const int* a_exp, int A) {
  const int e = blockIdx.x;
  int next = exp_off[e];
  for (int base = 0; base < A; base += dev::kScanThreads) {
    const int a = base + threadIdx.x;
    const int flag = (a < A && a_exp[a] == e) ? 1 : 0;
    int tile_total = 0;
    const int prefix = dev::block_exclusive_scan(flag, &tile_total);
    if (flag) perm[next + prefix] = a;
    next += tile_total;
  }
}

// ============================== experts ==============================

// dst[j] = src[row(j)] for j < A, row(j) = a_tok[perm[j]] (a_tok != nullptr) or perm[j]   (rows of C)
template <typename T>
__global__ void gather_rows_kernel(T* dst, const T* src, const int* perm, const int* a_tok, int A, int C) {
  const size_t total = size_t(A) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t j = i / C, c = i % C;
    const int a = perm[j];
    const size_t row = a_tok ? size_t(a_tok[a]) : size_t(a);
    dst[i] = src[row * C + c];
  }
}

// dst[perm[j]] = src[j]  (rows of C; perm is a permutation, so no two threads write one row)
template <typename T> __global__ void scatter_rows_kernel(T* dst, const T* src, const int* perm, int A, int C) {
  const size_t total = size_t(A) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t j = i / C, c = i % C;
    dst[size_t(perm[j]) * C + c] = src[i];
  }
}

// act = silu(h1) * h3 with ref/moe.cpp's stable sigmoid
template <typename T> __global__ void expert_swiglu_kernel(T* act, const T* h1, const T* h3, size_t n) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) act[i] = h1[i] * sigmoid(h1[i]) * h3[i];
}

// In place: d1 holds dact on entry and dh1 on exit; d3 = dh3. silu'(a) = sg (1 + a (1 - sg)).
template <typename T> __global__ void expert_swiglu_backward_kernel(T* d1, T* d3, const T* h1, const T* h3, size_t n) {
  for (size_t i = thread_index(); i < n; i += grid_stride()) {
    const T a = h1[i], b = h3[i], sg = sigmoid(a);
    const T dact = d1[i];
    d1[i] = dact * b * sg * (T(1) + a * (T(1) - sg));
    d3[i] = dact * a * sg;
  }
}

// dx[t] += sum of rows[a] over the token's assignments, in token-major order (one thread per (t,c))
template <typename T> __global__ void token_gather_sum_kernel(T* dx, const T* rows, const int* tok_off, int N, int C) {
  const size_t total = size_t(N) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t t = i / C, c = i % C;
    T acc = dx[i];
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) acc += rows[size_t(a) * C + c];
    dx[i] = acc;
  }
}

// The expert boundaries on the host: the loop over experts launches one GEMM per expert.
std::vector<int> host_offsets(const int* exp_off, int E) {
  std::vector<int> off(E + 1);
  to_host(off.data(), exp_off, off.size());
  if (off[0] != 0) fail("cuda::experts: exp_off[0] = " + str(off[0]) + ", expected 0; run dispatch_sort first");
  for (int e = 0; e < E; e++)
    if (off[e + 1] < off[e]) fail("cuda::experts: exp_off is not ascending at expert " + str(e) + "; run dispatch_sort first");
  return off;
}

// ============================== combine ==============================

template <typename T>
__global__ void combine_forward_kernel(T* out, const T* y, const T* a_gate, const int* tok_off, int N, int C) {
  const size_t total = size_t(N) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t t = i / C, c = i % C;
    T acc = out[i];
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) acc += a_gate[a] * y[size_t(a) * C + c];
    out[i] = acc;
  }
}

template <typename T>
__global__ void combine_backward_dy_kernel(T* dy, const T* dout, const T* a_gate, const int* tok_off, int N, int C) {
  const size_t total = size_t(N) * C;
  for (size_t i = thread_index(); i < total; i += grid_stride()) {
    const size_t t = i / C, c = i % C;
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) dy[size_t(a) * C + c] = a_gate[a] * dout[i];
  }
}

template <typename T>
__global__ void combine_backward_gate_kernel(T* da_gate, const T* dout, const T* y, const int* tok_off, int N, int C) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  for (int a = tok_off[t]; a < tok_off[t + 1]; a++) da_gate[a] = dot(dout + t * C, y + size_t(a) * C, C);
}

// ============================== aux loss ==============================

// S[t] = sum_j s[t,j] (sigmoid: s' = s / S) or 1 (softmax), in double, in expert order
template <typename T> __global__ void aux_score_norm_kernel(double* S, const T* scores, int N, int E, Gate gate) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  if (gate == Gate::softmax) {
    S[t] = 1.0;
    return;
  }
  double sum = 0;
  for (int j = 0; j < E; j++) sum += double(scores[t * E + j]);
  S[t] = sum;
}

// One thread per (group g, expert i): f[g,i] and term[g,i] = double(f) * P[g,i] / Tg, in ref's order.
template <typename T>
__global__ void aux_terms_kernel(T* f, double* term, const T* scores, const double* S, const int* tok_off,
                                 const int* a_exp, int G, int Tg, int E, int K) {
  const size_t gi = thread_index();
  if (gi >= size_t(G) * E) return;
  const int g = int(gi / E), i = int(gi % E);
  const int t0 = g * Tg, t1 = t0 + Tg;
  int64_t cnt = 0;
  for (int a = tok_off[t0]; a < tok_off[t1]; a++) cnt += a_exp[a] == i ? 1 : 0;
  const T fgi = T(double(E) * double(cnt) / (double(K) * Tg));
  f[gi] = fgi;
  double P = 0;
  for (int t = t0; t < t1; t++) P += double(scores[size_t(t) * E + i]) / S[t];
  term[gi] = double(fgi) * P / Tg;
}

// *total = sum of n terms in index order (one thread: ref's exact summation order)
__global__ void serial_sum_kernel(double* total, const double* x, int n) {
  double acc = 0;
  for (int i = 0; i < n; i++) acc += x[i];
  *total = acc;
}

template <typename T>
__global__ void aux_loss_backward_kernel(T* dscores, const T* f, const T* scores, int N, int Tg, int E, Gate gate,
                                         double c) {
  const size_t t = thread_index();
  if (t >= size_t(N)) return;
  const T* fg = f + (t / Tg) * E;
  const T* s = scores + t * E;
  T* ds = dscores + t * E;
  if (gate == Gate::softmax) {
    for (int i = 0; i < E; i++) ds[i] += T(c * double(fg[i]));
    return;
  }
  double S = 0, ws = 0;  // s'_i = s_i / S  =>  ds_j = w_j / S - (sum_i w_i s_i) / S^2, w_i = c f_i
  for (int i = 0; i < E; i++) {
    S += double(s[i]);
    ws += c * double(fg[i]) * double(s[i]);
  }
  for (int j = 0; j < E; j++) ds[j] += T(c * double(fg[j]) / S - ws / (S * S));
}

// Tokens per group and number of groups (ref's rules and message).
void aux_groups(int* Tg, int* G, int N, int T_, bool per_batch) {
  if (per_batch) {
    *Tg = N;
    *G = N > 0 ? 1 : 0;
    return;
  }
  if (T_ < 1 || N % T_ != 0)
    fail("cuda::aux_loss: " + str(N) + " tokens are not a whole number of sequences of length " + str(T_) +
         "; pass the sequence length T (N = B*T) or use the per-batch loss");
  *Tg = T_;
  *G = N / T_;
}

// ============================== bias ==============================

// One block. The sign is decided in integers: E*c_i vs sum c (no rounding can flip it); the error
// rule's arithmetic is docs/FORMAT.md's, so the result is bitwise ref's.
__global__ void bias_update_kernel(float* bias, const int64_t* counts, int E, UpdateRule rule, float u) {
  __shared__ long long sum_s;
  if (threadIdx.x == 0) {
    long long sum = 0;
    for (int i = 0; i < E; i++) sum += counts[i];
    sum_s = sum;
  }
  __syncthreads();
  const long long sum = sum_s;
  if (sum == 0) return;  // no load seen: nothing to balance
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    const long long diff = sum - (long long)E * counts[i];  // = E * e_i, exactly
    if (rule == UpdateRule::sign) {
      if (diff > 0) bias[i] += u;
      if (diff < 0) bias[i] -= u;
    } else {
      const double mean = double(sum) / E;
      const double delta = double(u) * (mean - double(counts[i])) / mean;
      bias[i] = bias[i] + float(delta);
    }
  }
}

}  // namespace

// ===================================== public ops =====================================

template <typename T> void router_scores_forward(T* scores, const T* logits, int N, int E, Gate gate) {
  if (N <= 0) return;
  if (E < 1) fail("cuda::router_scores_forward: E=" + str(E) + " must be >= 1");
  router_scores_forward_kernel<<<grid_for(N), kThreads>>>(scores, logits, N, E, gate);
  KERNEL_CHECK();
}

template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E, Gate gate) {
  if (N <= 0 || !dlogits) return;
  router_scores_backward_kernel<<<grid_for(N), kThreads>>>(dlogits, dscores, scores, N, E, gate);
  KERNEL_CHECK();
}

// ref scales the plain gates too (gate = scale * s without norm_topk); these kernels apply the scale
// only with norm_topk, so the other case is refused until the mirror has it.
static void check_gate_scale(const char* op, bool norm_topk, float scale) {
  if (!norm_topk && scale != 1.0f)
    fail(std::string("cuda::") + op + ": route_scale " + std::to_string(scale) +
         " without norm_topk (gates scaled without renormalisation) is not yet in the CUDA mirror; use --backend cpu");
}

template <typename T>
void route_token_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const float* bias,
                        BiasKind kind, int N, int E, int K, bool norm_topk, float scale) {
  check_router_dims("route_token_choice", N, E, K);
  check_gate_scale("route_token_choice", norm_topk, scale);
  if (N == 0) return dev_zero(tok_off, 1);
  route_token_choice_kernel<<<grid_for(N), kThreads>>>(tok_off, a_tok, a_exp, a_gate, scores, bias, kind, N, E, K,
                                                        norm_topk, scale, device_errors());
  KERNEL_CHECK();
}

template <typename T>
void route_expert_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const int* order,
                         int N, int E, int K, int chunk, bool norm_topk, float scale) {
  check_router_dims("route_expert_choice", N, E, K);
  check_gate_scale("route_expert_choice", norm_topk, scale);
  if (N == 0) return dev_zero(tok_off, 1);
  if (chunk <= 0) chunk = N;
  if (N % chunk != 0)
    fail("cuda::route_expert_choice: " + str(N) + " tokens cannot be cut into chunks of " + str(chunk) +
         "; choose ec_chunk dividing B*T (or 0 for the whole micro-batch)");
  if ((int64_t(chunk) * K) % E != 0)
    fail("cuda::route_expert_choice: chunk*K = " + str(int64_t(chunk) * K) + " is not a multiple of E = " + str(E) +
         ", so experts cannot take equal shares; choose ec_chunk so that ec_chunk*K % E == 0");
  const int cap = int(int64_t(chunk) * K / E);
  // workspace: picked (N,E) flags, then the per-token assignment counts (N)
  int* picked = static_cast<int*>(workspace((size_t(N) * E + N) * sizeof(int)));
  int* n_assign = picked + size_t(N) * E;
  dev_zero(picked, size_t(N) * E);
  expert_choice_pick_kernel<<<unsigned((N / chunk) * E), 256>>>(picked, scores, order, E, chunk, cap);
  KERNEL_CHECK();
  int* err = device_errors();
  count_picked_kernel<<<grid_for(N), kThreads>>>(n_assign, picked, scores, N, E, err);
  KERNEL_CHECK();
  exclusive_scan_kernel<<<1, dev::kScanThreads>>>(tok_off, n_assign, N, N * K, err);
  KERNEL_CHECK();
  expert_choice_fill_kernel<<<grid_for(N), kThreads>>>(a_tok, a_exp, a_gate, tok_off, picked, scores, N, E, N * K,
                                                        norm_topk, scale, err);
  KERNEL_CHECK();
}

template <typename T>
void gates_backward(T* dscores, const T* da_gate, const T* scores, const int* tok_off, const int* a_exp,
                    const T* a_gate, int N, int E, bool norm_topk, float scale) {
  check_gate_scale("gates_backward", norm_topk, scale);
  if (N <= 0 || !dscores) return;
  gates_backward_kernel<<<grid_for(N), kThreads>>>(dscores, da_gate, scores, tok_off, a_exp, a_gate, N, E, norm_topk,
                                                    scale);
  KERNEL_CHECK();
}

void count_experts(int64_t* counts, const int* a_exp, int A, int E) {
  if (E < 1) fail("cuda::count_experts: E=" + str(E) + " must be >= 1");
  if (A <= 0) return;
  unsigned blocks = grid_for(A);
  if (blocks > 1024) blocks = 1024;  // each block flushes E atomics; the grid-stride loop covers the rest
  count_experts_kernel<<<blocks, kThreads, size_t(E) * sizeof(int)>>>(counts, a_exp, A, E);
  KERNEL_CHECK();
}

void dispatch_sort(int* perm, int* exp_off, const int* a_exp, int A, int E) {
  if (E < 1) fail("cuda::dispatch_sort: E=" + str(E) + " must be >= 1");
  if (A < 0) fail("cuda::dispatch_sort: A=" + str(A) + " must be >= 0");
  if (A == 0) return dev_zero(exp_off, size_t(E) + 1);
  dispatch_count_kernel<<<E, 256>>>(exp_off, a_exp, A);
  KERNEL_CHECK();
  dispatch_offsets_kernel<<<1, 1>>>(exp_off, E);
  KERNEL_CHECK();
  dispatch_place_kernel<<<E, dev::kScanThreads>>>(perm, exp_off, a_exp, A);
  KERNEL_CHECK();
}

template <typename T>
void experts_forward(T* y, T* h1, T* h3, T* act, const T* x, const T* w1, const T* w3, const T* w2,
                     const int* perm, const int* exp_off, const int* a_tok, int E, int C, int F) {
  if (E < 1 || C < 1 || F < 1)
    fail("cuda::experts_forward: bad shape E=" + str(E) + " C=" + str(C) + " F=" + str(F) + " (all must be >= 1)");
  const std::vector<int> off = host_offsets(exp_off, E);
  const int A = off[E];
  if (A == 0) return;
  T* rows = static_cast<T*>(workspace(size_t(A) * C * sizeof(T)));  // x rows in perm order, then y rows
  gather_rows_kernel<<<grid_for(size_t(A) * C), kThreads>>>(rows, x, perm, a_tok, A, C);
  KERNEL_CHECK();
  for (int e = 0; e < E; e++) {  // h1, h3 (n_e,F) = x_e (n_e,C) @ W[e]^T
    const int o = off[e], n = off[e + 1] - off[e];
    matmul_forward(h1 + size_t(o) * F, rows + size_t(o) * C, w1 + size_t(e) * F * C, n, C, F);
    matmul_forward(h3 + size_t(o) * F, rows + size_t(o) * C, w3 + size_t(e) * F * C, n, C, F);
  }
  expert_swiglu_kernel<<<grid_for(size_t(A) * F), kThreads>>>(act, h1, h3, size_t(A) * F);
  KERNEL_CHECK();
  for (int e = 0; e < E; e++) {  // y rows (n_e,C) = act_e (n_e,F) @ W2[e]^T, into the workspace (perm order)
    const int o = off[e], n = off[e + 1] - off[e];
    matmul_forward(rows + size_t(o) * C, act + size_t(o) * F, w2 + size_t(e) * C * F, n, F, C);
  }
  scatter_rows_kernel<<<grid_for(size_t(A) * C), kThreads>>>(y, rows, perm, A, C);  // to assignment order
  KERNEL_CHECK();
}

template <typename T>
void experts_backward(T* dx, T* dw1, T* dw3, T* dw2, T* scratch, const T* dy, const T* x, const T* h1, const T* h3,
                      const T* act, const T* w1, const T* w3, const T* w2, const int* perm, const int* exp_off,
                      const int* tok_off, const int* a_tok, int N, int E, int C, int F) {
  if (E < 1 || C < 1 || F < 1)
    fail("cuda::experts_backward: bad shape E=" + str(E) + " C=" + str(C) + " F=" + str(F) + " (all must be >= 1)");
  const std::vector<int> off = host_offsets(exp_off, E);
  const int A = off[E];
  if (A == 0) return;
  const size_t AF = size_t(A) * F, AC = size_t(A) * C;
  T* dh1 = scratch;           // (A,F) perm order: dact, then dh1
  T* dh3 = scratch + AF;      // (A,F) perm order
  T* dxp = scratch + 2 * AF;  // (A,C) perm order: each assignment's dx row
  T* rows = static_cast<T*>(workspace(AC * sizeof(T)));  // dy rows, then x rows, then dx rows (all A,C)

  // 1. dact = dy W2[e] (overwrite), dW2[e] += dy^T act, per expert, dy gathered into perm order
  gather_rows_kernel<<<grid_for(AC), kThreads>>>(rows, dy, perm, static_cast<const int*>(nullptr), A, C);
  KERNEL_CHECK();
  dev_zero(dh1, AF);
  for (int e = 0; e < E; e++) {
    const int o = off[e], n = off[e + 1] - off[e];
    matmul_backward(dh1 + size_t(o) * F, dw2 ? dw2 + size_t(e) * C * F : nullptr, rows + size_t(o) * C,
                    act + size_t(o) * F, w2 + size_t(e) * C * F, n, F, C);
  }
  if (!dx && !dw1 && !dw3) return;

  // 2. through the SwiGLU: dh1 = dact * h3 * silu'(h1), dh3 = dact * silu(h1)
  expert_swiglu_backward_kernel<<<grid_for(AF), kThreads>>>(dh1, dh3, h1, h3, AF);
  KERNEL_CHECK();

  // 3. dxp = dh1 W1[e] + dh3 W3[e] (per assignment, perm order), dW1/3[e] += dh^T x, x gathered
  gather_rows_kernel<<<grid_for(AC), kThreads>>>(rows, x, perm, a_tok, A, C);
  KERNEL_CHECK();
  if (dx) dev_zero(dxp, AC);
  for (int e = 0; e < E; e++) {
    const int o = off[e], n = off[e + 1] - off[e];
    T* dxe = dx ? dxp + size_t(o) * C : nullptr;
    const T* xe = rows + size_t(o) * C;
    matmul_backward(dxe, dw1 ? dw1 + size_t(e) * F * C : nullptr, dh1 + size_t(o) * F, xe, w1 + size_t(e) * F * C,
                    n, C, F);
    matmul_backward(dxe, dw3 ? dw3 + size_t(e) * F * C : nullptr, dh3 + size_t(o) * F, xe, w3 + size_t(e) * F * C,
                    n, C, F);
  }
  if (!dx) return;

  // 4. rows back to assignment order, then each token sums its rows in token-major order (a gather)
  scatter_rows_kernel<<<grid_for(AC), kThreads>>>(rows, dxp, perm, A, C);
  KERNEL_CHECK();
  token_gather_sum_kernel<<<grid_for(size_t(N) * C), kThreads>>>(dx, rows, tok_off, N, C);
  KERNEL_CHECK();
}

template <typename T> void combine_forward(T* out, const T* y, const T* a_gate, const int* tok_off, int N, int C) {
  if (N <= 0 || C <= 0) return;
  combine_forward_kernel<<<grid_for(size_t(N) * C), kThreads>>>(out, y, a_gate, tok_off, N, C);
  KERNEL_CHECK();
}

template <typename T>
void combine_backward(T* dy, T* da_gate, const T* dout, const T* y, const T* a_gate, const int* tok_off, int N,
                      int C) {
  if (N <= 0 || C <= 0) return;
  if (dy) {
    combine_backward_dy_kernel<<<grid_for(size_t(N) * C), kThreads>>>(dy, dout, a_gate, tok_off, N, C);
    KERNEL_CHECK();
  }
  if (da_gate) {
    combine_backward_gate_kernel<<<grid_for(N), kThreads>>>(da_gate, dout, y, tok_off, N, C);
    KERNEL_CHECK();
  }
}

template <typename T>
double aux_loss_forward(T* f, const T* scores, const int* tok_off, const int* a_exp, int N, int T_, int E, int K,
                        Gate gate, bool per_batch, float alpha) {
  int Tg, G;
  aux_groups(&Tg, &G, N, T_, per_batch);
  if (K < 1) fail("cuda::aux_loss_forward: K=" + str(K) + " must be >= 1");
  if (E < 1) fail("cuda::aux_loss_forward: E=" + str(E) + " must be >= 1");
  if (G == 0) return 0.0;
  // workspace: S (N), term (G*E), total (1), all double
  double* S = static_cast<double*>(workspace((size_t(N) + size_t(G) * E + 1) * sizeof(double)));
  double* term = S + N;
  double* total = term + size_t(G) * E;
  aux_score_norm_kernel<<<grid_for(N), kThreads>>>(S, scores, N, E, gate);
  KERNEL_CHECK();
  aux_terms_kernel<<<grid_for(size_t(G) * E), kThreads>>>(f, term, scores, S, tok_off, a_exp, G, Tg, E, K);
  KERNEL_CHECK();
  serial_sum_kernel<<<1, 1>>>(total, term, G * E);
  KERNEL_CHECK();
  double host_total = 0;
  to_host(&host_total, total, 1);
  return double(alpha) * host_total / G;
}

template <typename T>
void aux_loss_backward(T* dscores, const T* f, const T* scores, int N, int T_, int E, Gate gate, bool per_batch,
                       float alpha, float dloss) {
  int Tg, G;
  aux_groups(&Tg, &G, N, T_, per_batch);
  if (G == 0 || !dscores) return;
  const double c = double(dloss) * double(alpha) / G / Tg;  // dL/ds'_{t,i} = c * f_{g,i}
  aux_loss_backward_kernel<<<grid_for(N), kThreads>>>(dscores, f, scores, N, Tg, E, gate, c);
  KERNEL_CHECK();
}

void bias_update(float* bias, const int64_t* counts, int E, UpdateRule rule, float u, bool center) {
  if (E < 1) fail("cuda::bias_update: E=" + str(E) + " must be >= 1");
  if (center) fail("cuda::bias_update: the centred bias update (--bias-center) is not yet in the CUDA mirror; use --backend cpu");
  bias_update_kernel<<<1, 256>>>(bias, counts, E, rule, u);
  KERNEL_CHECK();
}

double maxvio(const int64_t* counts, int E) { return ref::maxvio(counts, E); }

// ---- explicit instantiations: float (training) and double ----
#define LFMOE_CUDA_MOE(T)                                                                                           \
  template void router_scores_forward<T>(T*, const T*, int, int, Gate);                                            \
  template void router_scores_backward<T>(T*, const T*, const T*, int, int, Gate);                                 \
  template void route_token_choice<T>(int*, int*, int*, T*, const T*, const float*, BiasKind, int, int, int, bool, \
                                      float);                                                                      \
  template void route_expert_choice<T>(int*, int*, int*, T*, const T*, const int*, int, int, int, int, bool,      \
                                       float);                                                                     \
  template void gates_backward<T>(T*, const T*, const T*, const int*, const int*, const T*, int, int, bool, float); \
  template void experts_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, const int*, const int*, \
                                   const int*, int, int, int);                                                     \
  template void experts_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*,         \
                                    const T*, const T*, const T*, const int*, const int*, const int*, const int*,  \
                                    int, int, int, int);                                                           \
  template void combine_forward<T>(T*, const T*, const T*, const int*, int, int);                                  \
  template void combine_backward<T>(T*, T*, const T*, const T*, const T*, const int*, int, int);                   \
  template double aux_loss_forward<T>(T*, const T*, const int*, const int*, int, int, int, int, Gate, bool, float); \
  template void aux_loss_backward<T>(T*, const T*, const T*, int, int, int, Gate, bool, float, float);
LFMOE_CUDA_MOE(float)
LFMOE_CUDA_MOE(double)
#undef LFMOE_CUDA_MOE

}  // namespace cuda
