// moe.cpp — the CPU reference of the router, expert dispatch/combine, the auxiliary balance loss,
// the loss-free bias update and the load metrics (declared in ref/moe.h).
//
// Numerics and determinism:
//  - plain IEEE arithmetic in T (fp32 for training, double for gradient checks), no fast-math;
//  - every output element is computed by one thread, summing in a fixed order (increasing index,
//    or the token-major assignment order), so results do not depend on the thread count;
//  - anything that decides a discrete outcome (which experts, the sign of a bias step) is decided
//    exactly: keys are compared with ties broken by index, loads are int64 and compared in integers;
//  - routing and metrics are O(N*E*K) and run serially, so that bad input (a NaN score, a bad
//    chunk size) can be reported with a clear exception where it is found. The experts, which do
//    the real work, run as grouped GEMMs (ref/gemm.h), every expert of a stage in one call.
#include "ref/moe.h"
#include "ref/gemm.h"  // gemm_grouped: the experts' GEMMs, all experts of a stage at once
#include "ref/profile.h"  // phase scopes (train --profile): the experts' GEMMs and activations

#include <algorithm>  // std::max, std::partial_sort, std::copy_n, std::fill_n
#include <cmath>      // std::exp, std::isnan, std::isfinite
#include <cstddef>    // size_t
#include <cstdint>    // int64_t, INT64_MAX
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string, std::to_string
#include <vector>     // std::vector

// `#pragma omp` is only spelled out when OpenMP is on, so that builds without -fopenmp compile
// without unknown-pragma warnings.
#ifdef _OPENMP
#define MOE_PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
#else
#define MOE_PARALLEL_FOR
#endif

namespace ref {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

std::string str(int64_t v) { return std::to_string(v); }

// Logistic function that only ever exponentiates a non-positive number, so it cannot overflow.
template <typename T> T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

template <typename T> T dot(const T* a, const T* b, int n) {
  T acc = 0;
  for (int i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

void check_router_dims(const char* op, int N, int E, int K) {
  if (N < 0 || E < 1) fail(std::string(op) + ": bad shape N=" + str(N) + " E=" + str(E) + " (need N >= 0, E >= 1)");
  if (K < 1 || K > E)
    fail(std::string(op) + ": K=" + str(K) + " experts per token with E=" + str(E) +
         " experts; K must be in [1, E]: fix the config");
}

// A NaN score would be selected or skipped depending on how comparisons happen to be written, and an
// infinite one (G's output is in [0, 1]) could make a NaN key; refuse both.
template <typename T> void check_scores(const T* scores, int N, int E) {
  for (int t = 0; t < N; t++)
    for (int i = 0; i < E; i++)
      if (!std::isfinite(scores[(size_t)t * E + i]))
        fail(std::string("router: ") + (std::isnan(scores[(size_t)t * E + i]) ? "NaN" : "infinite") +
             " score at token " + str(t) + " expert " + str(i) +
             "; the model diverged: lower the lr (or check the input data)");
}

void check_bias(const float* bias, int E) {
  if (!bias) return;
  for (int i = 0; i < E; i++)
    if (!std::isfinite(bias[i]))
      fail("router: the balance bias of expert " + str(i) + " is " + std::to_string(bias[i]) +
           "; it must be finite: the checkpoint is corrupt or the bias update rate is far too large");
}

// Selection key of expert i: the score, shifted (add) or scaled (mul) by the loss-free bias.
template <typename T> T selection_key(T s, const float* bias, BiasKind kind, int i) {
  if (!bias) return s;
  return kind == BiasKind::add ? s + T(bias[i]) : s * T(bias[i]);
}

// The K experts of largest key of one token, in descending key order with equal keys in ascending
// expert order, by insertion into a sorted list of K (O(E*K), K is small). Experts are visited in
// ascending order and only a strictly larger key moves ahead of a kept one, which is what makes
// ties go to the lower index. idx (K) and best (K) are outputs. Keys are never NaN: scores are
// checked and the bias is finite, so s + b and s * b are numbers.
template <typename T>
void top_k_one_token(int* idx, T* best, const T* s, const float* bias, BiasKind kind, int E, int K) {
  int n = 0;  // slots filled so far
  for (int i = 0; i < E; i++) {
    const T key = selection_key(s[i], bias, kind, i);
    if (n == K && !(key > best[K - 1])) continue;  // no better than the worst kept
    int p = n < K ? n++ : K - 1;                     // free slot, or the worst one, which drops out
    for (; p > 0 && key > best[p - 1]; --p) {
      best[p] = best[p - 1];
      idx[p] = idx[p - 1];
    }
    best[p] = key;
    idx[p] = i;
  }
}

// Gates of one token's assignments [a0, a1): the unbiased score of each times scale, or with norm_topk
// divided by their sum (summed in assignment order) and then multiplied by scale. The bias never
// enters here. (scale 1 multiplies exactly, so the plain gates are the scores bit for bit.)
template <typename T>
void set_gates(T* a_gate, const int* a_exp, const T* s, int a0, int a1, bool norm_topk, float scale, int t) {
  if (!norm_topk) {
    for (int a = a0; a < a1; a++) a_gate[a] = s[a_exp[a]] * T(scale);
    return;
  }
  for (int a = a0; a < a1; a++) a_gate[a] = s[a_exp[a]];
  if (a0 == a1) return;
  T Z = 0;
  for (int a = a0; a < a1; a++) Z += a_gate[a];
  if (!(Z > T(0)))
    fail("router: the selected scores of token " + str(t) + " sum to " + std::to_string(double(Z)) +
         ", so norm_topk cannot normalise them; the model diverged (scores underflowed): lower the lr");
  for (int a = a0; a < a1; a++) a_gate[a] = a_gate[a] / Z * T(scale);
}

// Checks that every assignment names an expert in [0, E).
void check_experts(const char* op, const int* a_exp, int A, int E) {
  for (int a = 0; a < A; a++)
    if (a_exp[a] < 0 || a_exp[a] >= E)
      fail(std::string(op) + ": assignment " + str(a) + " names expert " + str(a_exp[a]) + ", outside [0, " +
           str(E) + "); the routing arrays are corrupt");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// scores

template <typename T> void router_scores_forward(T* scores, const T* logits, int N, int E, Gate gate) {
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++) {
    const T* l = logits + (size_t)t * E;
    T* s = scores + (size_t)t * E;
    if (gate == Gate::sigmoid) {
      for (int i = 0; i < E; i++) s[i] = sigmoid(l[i]);
      continue;
    }
    // softmax over the experts; subtracting the max keeps exp() in (0, 1]
    T mx = l[0];
    for (int i = 1; i < E; i++) mx = std::max(mx, l[i]);
    T sum = 0;
    for (int i = 0; i < E; i++) {
      s[i] = std::exp(l[i] - mx);
      sum += s[i];
    }
    for (int i = 0; i < E; i++) s[i] /= sum;
  }
}

template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E, Gate gate) {
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++) {
    const T* ds = dscores + (size_t)t * E;
    const T* s = scores + (size_t)t * E;
    T* dl = dlogits + (size_t)t * E;
    if (gate == Gate::sigmoid) {
      for (int i = 0; i < E; i++) dl[i] += ds[i] * s[i] * (T(1) - s[i]);  // sigmoid' = s (1 - s)
      continue;
    }
    // softmax Jacobian: ds_i/dl_j = s_i (delta_ij - s_j)  =>  dl_j = s_j (ds_j - sum_i ds_i s_i)
    const T d = dot(ds, s, E);
    for (int i = 0; i < E; i++) dl[i] += s[i] * (ds[i] - d);
  }
}

// ---------------------------------------------------------------------------------------------
// selection

template <typename T>
void route_token_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const float* bias,
                        BiasKind kind, int N, int E, int K, bool norm_topk, float scale) {
  check_router_dims("route_token_choice", N, E, K);
  check_bias(bias, E);
  check_scores(scores, N, E);
  for (int t = 0; t < N; t++) {
    const int a0 = t * K;
    const T* s = scores + (size_t)t * E;
    // a_gate's K slots of this token serve as the list of best keys, then receive the gates
    top_k_one_token(a_exp + a0, a_gate + a0, s, bias, kind, E, K);
    for (int k = 0; k < K; k++) a_tok[a0 + k] = t;
    set_gates(a_gate, a_exp, s, a0, a0 + K, norm_topk, scale, t);
    tok_off[t] = a0;
  }
  tok_off[N] = N * K;
}

template <typename T>
void route_expert_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const int* order,
                         int N, int E, int K, int chunk, bool norm_topk, float scale) {
  check_router_dims("route_expert_choice", N, E, K);
  tok_off[0] = 0;
  if (N == 0) return;
  if (chunk <= 0) chunk = N;
  if (N % chunk != 0)
    fail("route_expert_choice: " + str(N) + " tokens cannot be cut into chunks of " + str(chunk) +
         "; choose ec_chunk dividing B*T (or 0 for the whole micro-batch)");
  if (((int64_t)chunk * K) % E != 0)
    fail("route_expert_choice: chunk*K = " + str((int64_t)chunk * K) + " is not a multiple of E = " + str(E) +
         ", so experts cannot take equal shares; choose ec_chunk so that ec_chunk*K % E == 0");
  check_scores(scores, N, E);

  // the visiting order, checked to be a permutation so that no token is counted twice
  std::vector<int> ord(N);
  std::vector<char> seen(N, 0);
  for (int p = 0; p < N; p++) {
    const int t = order ? order[p] : p;
    if (t < 0 || t >= N || seen[t])
      fail("route_expert_choice: order is not a permutation of 0.." + str(N - 1) + " (entry " + str(p) + " = " +
           str(t) + ")");
    seen[t] = 1;
    ord[p] = t;
  }

  // picked (N,E): expert e took token t. Each expert ranks the chunk's positions by
  // (score desc, position asc); that is a strict total order, so the partial sort is deterministic.
  const int cap = int((int64_t)chunk * K / E);
  std::vector<char> picked((size_t)N * E, 0);
  std::vector<int> pos(chunk);
  for (int c0 = 0; c0 < N; c0 += chunk) {
    const int* toks = ord.data() + c0;
    for (int e = 0; e < E; e++) {
      auto before = [&](int p, int q) {
        const T sp = scores[(size_t)toks[p] * E + e], sq = scores[(size_t)toks[q] * E + e];
        return sp != sq ? sp > sq : p < q;
      };
      for (int p = 0; p < chunk; p++) pos[p] = p;
      std::partial_sort(pos.begin(), pos.begin() + cap, pos.end(), before);
      for (int k = 0; k < cap; k++) picked[(size_t)toks[pos[k]] * E + e] = 1;
    }
  }

  // token-major lists, ascending expert within a token; tok_off by counting
  for (int t = 0; t < N; t++) {
    int a = tok_off[t];
    for (int e = 0; e < E; e++)
      if (picked[(size_t)t * E + e]) {
        a_tok[a] = t;
        a_exp[a] = e;
        a++;
      }
    tok_off[t + 1] = a;
    set_gates(a_gate, a_exp, scores + (size_t)t * E, tok_off[t], a, norm_topk, scale, t);
  }
}

template <typename T>
void gates_backward(T* dscores, const T* da_gate, const T* scores, const int* tok_off, const int* a_exp,
                    const T* a_gate, int N, int E, bool norm_topk, float scale) {
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++) {
    const int a0 = tok_off[t], a1 = tok_off[t + 1];
    const T* s = scores + (size_t)t * E;
    T* ds = dscores + (size_t)t * E;
    if (!norm_topk) {
      for (int a = a0; a < a1; a++) ds[a_exp[a]] += da_gate[a] * T(scale);  // gate = scale * s
      continue;
    }
    // g_a = scale * s_a / Z, Z = sum_b s_b  =>  ds_b = (scale * dg_b - sum_a dg_a g_a) / Z
    T Z = 0, dg_dot_g = 0;
    for (int a = a0; a < a1; a++) {
      Z += s[a_exp[a]];
      dg_dot_g += da_gate[a] * a_gate[a];
    }
    for (int a = a0; a < a1; a++) ds[a_exp[a]] += (T(scale) * da_gate[a] - dg_dot_g) / Z;
  }
}

void count_experts(int64_t* counts, const int* a_exp, int A, int E) {
  check_experts("count_experts", a_exp, A, E);
  for (int a = 0; a < A; a++) counts[a_exp[a]] += 1;
}

// ---------------------------------------------------------------------------------------------
// dispatch, experts, combine

void dispatch_sort(int* perm, int* exp_off, const int* a_exp, int A, int E) {
  check_experts("dispatch_sort", a_exp, A, E);
  for (int e = 0; e <= E; e++) exp_off[e] = 0;
  for (int a = 0; a < A; a++) exp_off[a_exp[a] + 1]++;
  for (int e = 0; e < E; e++) exp_off[e + 1] += exp_off[e];
  std::vector<int> next(exp_off, exp_off + E);  // next free slot of each group
  for (int a = 0; a < A; a++) perm[next[a_exp[a]]++] = a;  // ascending a: stable
}

// The experts are one group of rows per expert (the dispatch slots exp_off[e] .. exp_off[e+1]), so
// each expert is three ordinary Linear layers on a gathered (n_e, C) block. All experts' products
// of one stage go to the GEMM as one group (ref/gemm.h gemm_grouped: one parallel region, threads
// split (expert, column panel) items), which gives the same bits as one matmul per expert: every
// output element is still one sum in the fixed order of ref/gemm.h, whatever the thread count.
// Empty experts have no products.
namespace {

// Grow-only scratch of the calling thread (no allocation once the largest shape ran).
template <typename U> U* grow(std::vector<U>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// dst row j = src row idx(j), C values per row, rows split over threads.
template <typename T, typename Idx> void copy_rows(T* dst, const T* src, int rows, int C, Idx idx) {
  MOE_PARALLEL_FOR
  for (int j = 0; j < rows; j++) std::copy_n(src + (size_t)idx(j) * C, C, dst + (size_t)j * C);
}

}  // namespace

template <typename T>
void experts_forward(T* y, T* h1, T* h3, T* act, const T* x, const T* w1, const T* w3, const T* w2,
                     const int* perm, const int* exp_off, const int* a_tok, int E, int C, int F) {
  const int A = exp_off[E];
  if (A == 0) return;
  static thread_local std::vector<T> xbuf, ybuf;
  static thread_local std::vector<GemmProblem<T>> probs;
  T* xs = grow(xbuf, (size_t)A * C);  // token rows in slot order
  T* ys = grow(ybuf, (size_t)A * C);  // expert outputs in slot order
  copy_rows(xs, x, A, C, [&](int j) { return a_tok[perm[j]]; });
  // h1 = x_e W1_e^T and h3 = x_e W3_e^T for every expert e
  probs.clear();
  for (int e = 0; e < E; e++) {
    const int j0 = exp_off[e], n = exp_off[e + 1] - j0;
    if (n == 0) continue;
    const MatView<T> xe = row_major(xs + (size_t)j0 * C, C);
    probs.push_back({h1 + (size_t)j0 * F, F, xe, transposed(w1 + (size_t)e * F * C, C), n, F, C, false});
    probs.push_back({h3 + (size_t)j0 * F, F, xe, transposed(w3 + (size_t)e * F * C, C), n, F, C, false});
  }
  {
    prof::Scope p(prof::Phase::gemm, 2 * prof::matmul_flops(A, C, F));
    gemm_grouped(probs.data(), (int)probs.size());
  }
  {
    prof::Scope p(prof::Phase::other);
    const int64_t AF = (int64_t)A * F;
    MOE_PARALLEL_FOR
    for (int64_t i = 0; i < AF; i++) act[i] = h1[i] * sigmoid(h1[i]) * h3[i];  // silu(h1) * h3
  }
  // y_e = act_e W2_e^T
  probs.clear();
  for (int e = 0; e < E; e++) {
    const int j0 = exp_off[e], n = exp_off[e + 1] - j0;
    if (n == 0) continue;
    probs.push_back({ys + (size_t)j0 * C, C, row_major(act + (size_t)j0 * F, F), transposed(w2 + (size_t)e * C * F, F),
                     n, C, F, false});
  }
  {
    prof::Scope p(prof::Phase::gemm, prof::matmul_flops(A, F, C));
    gemm_grouped(probs.data(), (int)probs.size());
  }
  // scatter back to assignment order (each assignment has one slot)
  MOE_PARALLEL_FOR
  for (int j = 0; j < A; j++) std::copy_n(ys + (size_t)j * C, C, y + (size_t)perm[j] * C);
}

template <typename T>
void experts_backward(T* dx, T* dw1, T* dw3, T* dw2, T* scratch, const T* dy, const T* x, const T* h1, const T* h3,
                      const T* act, const T* w1, const T* w3, const T* w2, const int* perm, const int* exp_off,
                      const int* tok_off, const int* a_tok, int N, int E, int C, int F) {
  const int A = exp_off[E];
  if (A == 0) return;
  T* dh1 = scratch;                      // (A,F) in slot order
  T* dh3 = scratch + (size_t)A * F;      // (A,F) in slot order
  T* dxs = scratch + (size_t)2 * A * F;  // (A,C) in slot order: each assignment's part of dx
  static thread_local std::vector<T> xbuf, dybuf;
  static thread_local std::vector<int> slot_buf;
  static thread_local std::vector<GemmProblem<T>> probs;
  T* xs = grow(xbuf, (size_t)A * C);
  T* dys = grow(dybuf, (size_t)A * C);
  copy_rows(xs, x, A, C, [&](int j) { return a_tok[perm[j]]; });
  copy_rows(dys, dy, A, C, [&](int j) { return perm[j]; });

  // 1. through W2: dact = dy W2 (held in dh1 for now); dW2 += dy^T act
  std::fill_n(dh1, (size_t)A * F, T(0));
  probs.clear();
  for (int e = 0; e < E; e++) {
    const int j0 = exp_off[e], n = exp_off[e + 1] - j0;
    if (n == 0) continue;
    const T* dye = dys + (size_t)j0 * C;
    probs.push_back({dh1 + (size_t)j0 * F, F, row_major(dye, C), row_major(w2 + (size_t)e * C * F, F), n, F, C, true});
    if (dw2)
      probs.push_back({dw2 + (size_t)e * C * F, F, transposed(dye, C), row_major(act + (size_t)j0 * F, F), C, F, n,
                       true});
  }
  {
    prof::Scope p(prof::Phase::gemm, prof::matmul_backward_flops(dh1, dw2, A, F, C));
    gemm_grouped(probs.data(), (int)probs.size());
  }
  // 2. through the SwiGLU: dh1 = dact * h3 * silu'(h1), dh3 = dact * silu(h1)
  {
    prof::Scope p(prof::Phase::other);
    const int64_t AF = (int64_t)A * F;
    MOE_PARALLEL_FOR
    for (int64_t i = 0; i < AF; i++) {
      const T a = h1[i], b = h3[i], sg = sigmoid(a), dact = dh1[i];
      dh1[i] = dact * b * sg * (T(1) + a * (T(1) - sg));  // silu'(a) = sg (1 + a (1 - sg))
      dh3[i] = dact * a * sg;
    }
  }
  // 3. through W1 and W3: dx_e = dh1 W1 + dh3 W3 (in this order: the W3 part is a second group);
  //    dW1 += dh1^T x_e; dW3 += dh3^T x_e
  if (dx) std::fill_n(dxs, (size_t)A * C, T(0));
  {
    prof::Scope p(prof::Phase::gemm, prof::matmul_backward_flops(dx, dw1, A, C, F) +
                                       prof::matmul_backward_flops(dx, dw3, A, C, F));
    for (int pass = 0; pass < 2; pass++) {
      probs.clear();
      for (int e = 0; e < E; e++) {
        const int j0 = exp_off[e], n = exp_off[e + 1] - j0;
        if (n == 0) continue;
        const T* d1 = dh1 + (size_t)j0 * F;
        const T* d3 = dh3 + (size_t)j0 * F;
        const MatView<T> xe = row_major(xs + (size_t)j0 * C, C);
        T* dxe = dxs + (size_t)j0 * C;
        if (pass == 0) {
          if (dx) probs.push_back({dxe, C, row_major(d1, F), row_major(w1 + (size_t)e * F * C, C), n, C, F, true});
          if (dw1) probs.push_back({dw1 + (size_t)e * F * C, C, transposed(d1, F), xe, F, C, n, true});
          if (dw3) probs.push_back({dw3 + (size_t)e * F * C, C, transposed(d3, F), xe, F, C, n, true});
        } else if (dx) {
          probs.push_back({dxe, C, row_major(d3, F), row_major(w3 + (size_t)e * F * C, C), n, C, F, true});
        }
      }
      gemm_grouped(probs.data(), (int)probs.size());
    }
  }
  if (!dx) return;

  // 4. summed per token in token-major assignment order (a gather: no two threads write one row)
  int* slot = grow(slot_buf, (size_t)A);  // slot of assignment a
  for (int j = 0; j < A; j++) slot[perm[j]] = j;
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++)
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) {
      const T* src = dxs + (size_t)slot[a] * C;
      for (int c = 0; c < C; c++) dx[(size_t)t * C + c] += src[c];
    }
}

template <typename T> void combine_forward(T* out, const T* y, const T* a_gate, const int* tok_off, int N, int C) {
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++)
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) {
      const T g = a_gate[a];
      for (int c = 0; c < C; c++) out[(size_t)t * C + c] += g * y[(size_t)a * C + c];
    }
}

template <typename T>
void combine_backward(T* dy, T* da_gate, const T* dout, const T* y, const T* a_gate, const int* tok_off, int N,
                      int C) {
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++) {
    const T* d = dout + (size_t)t * C;
    for (int a = tok_off[t]; a < tok_off[t + 1]; a++) {
      for (int c = 0; c < C; c++) dy[(size_t)a * C + c] = a_gate[a] * d[c];
      da_gate[a] = dot(d, y + (size_t)a * C, C);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// auxiliary balance loss

namespace {

// Tokens per group (Tg) and number of groups (G), checked.
void aux_groups(int* Tg, int* G, int N, int T_, bool per_batch) {
  if (per_batch) {
    *Tg = N;
    *G = N > 0 ? 1 : 0;
    return;
  }
  if (T_ < 1 || N % T_ != 0)
    fail("aux_loss: " + str(N) + " tokens are not a whole number of sequences of length " + str(T_) +
         "; pass the sequence length T (N = B*T) or use the per-batch loss");
  *Tg = T_;
  *G = N / T_;
}

// s'_{t,i}: the score itself (softmax) or normalised over the token's experts (sigmoid), in double.
template <typename T> double score_norm(const T* s, int E, Gate gate) {
  if (gate == Gate::softmax) return 1.0;
  double S = 0;
  for (int j = 0; j < E; j++) S += double(s[j]);
  return S;
}

}  // namespace

template <typename T>
double aux_loss_forward(T* f, const T* scores, const int* tok_off, const int* a_exp, int N, int T_, int E, int K,
                        Gate gate, bool per_batch, float alpha) {
  int Tg, G;
  aux_groups(&Tg, &G, N, T_, per_batch);
  if (K < 1) fail("aux_loss_forward: K=" + str(K) + " must be >= 1");
  if (N > 0) check_experts("aux_loss_forward", a_exp + tok_off[0], tok_off[N] - tok_off[0], E);
  std::vector<int64_t> cnt(E);
  std::vector<double> P(E);
  double total = 0;
  for (int g = 0; g < G; g++) {
    const int t0 = g * Tg, t1 = t0 + Tg;
    // f_{g,i} = E/(K Tg) * #tokens of g that selected i (each token selects an expert at most once)
    std::fill(cnt.begin(), cnt.end(), 0);
    for (int a = tok_off[t0]; a < tok_off[t1]; a++) cnt[a_exp[a]]++;
    for (int i = 0; i < E; i++) f[(size_t)g * E + i] = T(double(E) * double(cnt[i]) / (double(K) * Tg));
    // P_{g,i} = 1/Tg sum_t s'_{t,i}, summed in token order
    std::fill(P.begin(), P.end(), 0.0);
    for (int t = t0; t < t1; t++) {
      const T* s = scores + (size_t)t * E;
      const double S = score_norm(s, E, gate);
      for (int i = 0; i < E; i++) P[i] += double(s[i]) / S;
    }
    // the saved (rounded) f is used, so that forward and backward see the same constant
    for (int i = 0; i < E; i++) total += double(f[(size_t)g * E + i]) * P[i] / Tg;
  }
  return G > 0 ? double(alpha) * total / G : 0.0;
}

template <typename T>
void aux_loss_backward(T* dscores, const T* f, const T* scores, int N, int T_, int E, Gate gate, bool per_batch,
                       float alpha, float dloss) {
  int Tg, G;
  aux_groups(&Tg, &G, N, T_, per_batch);
  if (G == 0) return;
  const double c = double(dloss) * double(alpha) / G / Tg;  // dL/ds'_{t,i} = c * f_{g,i}
  MOE_PARALLEL_FOR
  for (int t = 0; t < N; t++) {
    const T* fg = f + (size_t)(t / Tg) * E;
    const T* s = scores + (size_t)t * E;
    T* ds = dscores + (size_t)t * E;
    if (gate == Gate::softmax) {
      for (int i = 0; i < E; i++) ds[i] += T(c * double(fg[i]));
      continue;
    }
    // s'_i = s_i / S  =>  ds_j = w_j / S - (sum_i w_i s_i) / S^2, with w_i = c f_i
    double S = 0, ws = 0;
    for (int i = 0; i < E; i++) {
      S += double(s[i]);
      ws += c * double(fg[i]) * double(s[i]);
    }
    for (int j = 0; j < E; j++) ds[j] += T(c * double(fg[j]) / S - ws / (S * S));
  }
}

// ---------------------------------------------------------------------------------------------
// loss-free bias and metrics

namespace {

// Sum of the loads, after checking that E*c_i and the sum fit in int64 (exact integer decisions).
int64_t checked_load_sum(const char* op, const int64_t* counts, int E) {
  if (E < 1) fail(std::string(op) + ": E=" + str(E) + " must be >= 1");
  const int64_t limit = INT64_MAX / E;
  int64_t sum = 0;
  for (int i = 0; i < E; i++) {
    if (counts[i] < 0 || counts[i] > limit)
      fail(std::string(op) + ": load of expert " + str(i) + " is " + str(counts[i]) + ", outside [0, " + str(limit) +
           "]; the counts are corrupt (were they reset every optimizer step?)");
    sum += counts[i];  // cannot overflow: every term <= INT64_MAX / E
  }
  return sum;
}

}  // namespace

void bias_update(float* bias, const int64_t* counts, int E, UpdateRule rule, float u, bool center) {
  const int64_t sum = checked_load_sum("bias_update", counts, E);
  if (sum == 0) return;  // no load seen: nothing to balance
  if (center) {
    // torchtitan's update: the step's deltas minus their mean over the experts, so that the bias's
    // mean stays where it started. docs/FORMAT.md fixes the arithmetic: delta_i in double (sign rule
    // u * sgn_i with the sign decided in integers; error rule as below), mu = sum_i delta_i / E
    // summed in expert order, b_i = fp32(b_i + fp32(delta_i - mu)).
    std::vector<double> delta(E);
    const double mean = double(sum) / E;
    double mu = 0;
    for (int i = 0; i < E; i++) {
      const int64_t diff = sum - (int64_t)E * counts[i];
      delta[i] = rule == UpdateRule::sign ? (diff > 0 ? double(u) : diff < 0 ? -double(u) : 0.0)
                                          : double(u) * (mean - double(counts[i])) / mean;
      mu += delta[i];
    }
    mu /= E;
    for (int i = 0; i < E; i++) bias[i] = bias[i] + float(delta[i] - mu);
    return;
  }
  for (int i = 0; i < E; i++) {
    const int64_t diff = sum - (int64_t)E * counts[i];  // = E * e_i, exactly
    if (rule == UpdateRule::sign) {
      if (diff > 0) bias[i] += u;  // underloaded: raise
      if (diff < 0) bias[i] -= u;  // overloaded: lower; balanced: unchanged
    } else {
      // docs/FORMAT.md fixes this arithmetic so that other implementations can match it bit for bit:
      // delta = double(u) * (mean - c_i) / mean, mean = double(sum c) / E, then b = fp32(b + fp32(delta))
      const double mean = double(sum) / E;
      const double delta = double(u) * (mean - double(counts[i])) / mean;
      bias[i] = bias[i] + float(delta);
    }
  }
}

double maxvio(const int64_t* counts, int E) {
  const int64_t sum = checked_load_sum("maxvio", counts, E);
  if (sum == 0) return 0.0;
  int64_t mx = 0;
  for (int i = 0; i < E; i++) mx = std::max(mx, counts[i]);
  // (max - mean) / mean = (E*max - sum) / sum, with an exact integer numerator
  return double((int64_t)E * mx - sum) / double(sum);
}

// ---------------------------------------------------------------------------------------------
// explicit instantiations

#define MOE_INSTANTIATE(T)                                                                                        \
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

MOE_INSTANTIATE(float)
MOE_INSTANTIATE(double)

}  // namespace ref
