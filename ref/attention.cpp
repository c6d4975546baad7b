// attention.cpp — causal softmax attention of ref/ops.h on the CPU, forward and backward.
//
// One (batch b, head h) at a time: rows of q/k/v/out are C apart and the head's D = C/H columns
// start at the pointer given. Only the causal triangle (key u <= query t) is computed. The AVX2
// paths first copy the head's rows into contiguous buffers (row stride D), which is data movement
// only: rows a power-of-two C floats apart would share a few L1 sets.
//
// Numerics (docs/MODEL.md section 9). Every result is defined by the portable code below (the
// `*_portable` functions, templated on T); the AVX2+FMA code (`*_avx2`, float only, chosen at run
// time by simd_enabled(), ref/vmath.h) performs the same IEEE operations in the same order, so the
// two give bit-identical results (tests/test_ops.cpp checks it), and so does any thread count
// (each output element is computed by one thread; threads split (b,h) pairs or query rows). Where
// AVX-512 may run (avx512_enabled(), ref/gemm.h) and D is a multiple of 16, the weighted sums and
// the score passes take two query rows or two keys at a time (`*_512`, `dots8x2`): the same chains
// again, with each loaded row used twice.
//  - dot products over the head dimension (scores q_t.k_u, and dout_t.v_u in backward) use 8 lanes:
//    lane j accumulates the terms i = j, j+8, j+16, ... in increasing i with fused multiply-adds,
//    starting from 0, the last block padded with zeros to 8; then the lanes combine as
//    ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) (dot8);
//  - weighted sums along the sequence (out_t = sum_u p_tu v_u, dq_t = sum_u ds_tu k_u) accumulate
//    each element from 0 in increasing u with fused multiply-adds; dk_u and dv_u accumulate into
//    the caller's gradient in increasing query row t (dk_u <- fma(ds_tu, q_t, dk_u)); dq_t adds its
//    sum to the caller's dq at the end of row t;
//  - softmax: scores s = scale * dot8; e = vexp(s - max) (ref/vmath.h, < 1 ulp); the normaliser
//    and the backward's sum_u p_u dp_u accumulate in double in the same 8-lane pattern over u
//    (sum8); p = e * float(1 / sum).
// T = double (gradient checks) runs the portable code with std::exp and std::fma in double.
#include <algorithm>    // std::fill, std::max, std::copy_n
#include <atomic>       // std::atomic (the forward's call count)
#include <cmath>        // std::fma, std::exp, std::sqrt
#include <cstdint>      // int64_t
#include <stdexcept>    // std::runtime_error
#include <string>       // std::string, std::to_string
#include <type_traits>  // std::is_same
#include <vector>       // std::vector (per-thread scratch)

#include "ref/gemm.h"  // avx512_enabled
#include "ref/ops.h"
#include "ref/vmath.h"

namespace ref {
namespace {

void check_shape(const char* op, int B, int T_, int C, int H) {
  auto fail = [op](const std::string& what) { throw std::runtime_error(std::string("ref::") + op + ": " + what); };
  if (B < 0) fail("row count (N or B) must be >= 0, got " + std::to_string(B));
  for (int d : {T_, C, H}) {
    if (d <= 0) fail("every width must be > 0, got " + std::to_string(d));
  }
  if (C % H != 0) fail("C (" + std::to_string(C) + ") must be a multiple of H (" + std::to_string(H) + ")");
}

// ---------------------------------------------------------------------------------------------
// Portable code: the definition of every result.

// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)): how 8 lanes of partial sums combine.
template <typename S> inline S tree8(const S* l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

// a . b over n elements: lane j sums i = j (mod 8) in increasing i with FMAs, zero-padded to a
// multiple of 8 (fma(0, 0, l) is part of the definition: it turns a lane's -0 into +0).
template <typename T> inline T dot8(const T* a, const T* b, int n) {
  T l[8] = {};
  for (int i = 0; i < n; i += 8) {
    for (int j = 0; j < 8; j++) {
      const bool in = i + j < n;
      l[j] = std::fma(in ? a[i + j] : T(0), in ? b[i + j] : T(0), l[j]);
    }
  }
  return tree8(l);
}

// sum_{u<n} x_u in double: lane j sums u = j (mod 8) in increasing u, then tree8.
template <typename T> inline double sum8(const T* x, int n) {
  double l[8] = {};
  for (int u = 0; u < n; u += 8) {
    for (int j = 0; j < 8 && u + j < n; j++) l[j] += (double)x[u + j];
  }
  return tree8(l);
}

// sum_{u<n} x_u y_u in double, the same pattern (for float inputs every product is exact).
template <typename T> inline double dotsum8(const T* x, const T* y, int n) {
  double l[8] = {};
  for (int u = 0; u < n; u += 8) {
    for (int j = 0; j < 8 && u + j < n; j++) l[j] += (double)x[u + j] * (double)y[u + j];
  }
  return tree8(l);
}

inline float exp_of(float x) { return vexp(x); }
inline double exp_of(double x) { return std::exp(x); }

// Query row t of one head: att_row (T_) = causal softmax of scale * q_t . k_u, out_t = sum_u p_u v_u.
template <typename T>
void row_forward_portable(T* out_t, T* att_row, const T* q_t, const T* k, const T* v, int t, int T_, int C, int D,
                          T scale) {
  for (int u = 0; u <= t; u++) att_row[u] = scale * dot8(q_t, k + (size_t)u * C, D);
  T mx = att_row[0];  // the max keeps exp from overflowing (exact: any order gives the same max)
  for (int u = 1; u <= t; u++) mx = att_row[u] > mx ? att_row[u] : mx;
  for (int u = 0; u <= t; u++) att_row[u] = exp_of(att_row[u] - mx);
  const T inv = T(1.0 / sum8(att_row, t + 1));
  for (int u = 0; u <= t; u++) att_row[u] *= inv;
  std::fill(att_row + t + 1, att_row + T_, T(0));  // masked: the future is not attended
  std::fill(out_t, out_t + D, T(0));  // each out_t[d] sums u = 0..t in order
  for (int u = 0; u <= t; u++) {
    const T* v_u = v + (size_t)u * C;
    for (int d = 0; d < D; d++) out_t[d] = std::fma(att_row[u], v_u[d], out_t[d]);
  }
}

// Backward of one (b,h). With p = att row t and s = scale * q_t . k_u the pre-softmax scores:
//   dv_u += p_tu dout_t ;  dp_tu = dout_t . v_u ;  ds_tu = scale * (p_tu (dp_tu - sum_u' p_tu' dp_tu'))
//   dq_t += sum_u ds_tu k_u ;  dk_u += ds_tu q_t
// Rows run in increasing t; within row t, for each u: dv_u then dk_u (this order also holds when
// the gradients share memory); dq_t at the end of the row. ds (T_) and acc (D) are scratch.
template <typename T>
void head_backward_portable(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                            int T_, int C, int D, T scale, T* ds, T* acc) {
  for (int t = 0; t < T_; t++) {
    const T* p = att + (size_t)t * T_;
    const T* dout_t = dout + (size_t)t * C;
    const T* q_t = q + (size_t)t * C;
    for (int u = 0; u <= t; u++) ds[u] = dot8(dout_t, v + (size_t)u * C, D);
    const T pdp = T(dotsum8(p, ds, t + 1));  // the softmax Jacobian's shared term
    for (int u = 0; u <= t; u++) ds[u] = scale * (p[u] * (ds[u] - pdp));
    std::fill(acc, acc + D, T(0));
    for (int u = 0; u <= t; u++) {
      const size_t off = (size_t)u * C;
      for (int d = 0; d < D; d++) {
        if (dv) dv[off + d] = std::fma(p[u], dout_t[d], dv[off + d]);
        if (dq) acc[d] = std::fma(ds[u], k[off + d], acc[d]);
        if (dk) dk[off + d] = std::fma(ds[u], q_t[d], dk[off + d]);
      }
    }
    if (dq) {
      for (int d = 0; d < D; d++) dq[(size_t)t * C + d] += acc[d];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA code (float): the same operations as the portable code, 8 at a time.
#if LFMOE_X86_SIMD

// Lane j of the result = tree8 of a[j]'s lanes: the hadd/permute pattern pairs (0,1) (2,3) (4,5)
// (6,7), then (01,23) (45,67), then (0123,4567), exactly as tree8.
LFMOE_TARGET_AVX2 inline __m256 reduce8x8(const __m256* a) {
  const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 g0 = _mm256_hadd_ps(h01, h23), g1 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
}

// mask of the first n (0..8) lanes
LFMOE_TARGET_AVX2 inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// sum8 and dotsum8 (above) 8 lanes at a time in double: lane j takes u = j (mod 8) in increasing u
// (lanes 0-3 in one register, 4-7 in the other), the tail continues the same lanes, then tree8.
LFMOE_TARGET_AVX2 inline double sum8_lanes(const float* x, const float* y, int n) {
  __m256d lo = _mm256_setzero_pd(), hi = lo;
  const int full = n / 8 * 8;
  for (int u = 0; u < full; u += 8) {
    const __m256 xv = _mm256_loadu_ps(x + u);
    __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), xh = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
    if (y) {  // float * float is exact in double
      const __m256 yv = _mm256_loadu_ps(y + u);
      xl = _mm256_mul_pd(xl, _mm256_cvtps_pd(_mm256_castps256_ps128(yv)));
      xh = _mm256_mul_pd(xh, _mm256_cvtps_pd(_mm256_extractf128_ps(yv, 1)));
    }
    lo = _mm256_add_pd(lo, xl);
    hi = _mm256_add_pd(hi, xh);
  }
  alignas(32) double l[8];
  _mm256_store_pd(l, lo);
  _mm256_store_pd(l + 4, hi);
  for (int u = full; u < n; u++) l[u - full] += y ? (double)x[u] * (double)y[u] : (double)x[u];
  return tree8(l);
}
LFMOE_TARGET_AVX2 inline double sum8_avx2(const float* x, int n) { return sum8_lanes(x, nullptr, n); }
LFMOE_TARGET_AVX2 inline double dotsum8_avx2(const float* x, const float* y, int n) { return sum8_lanes(x, y, n); }

// out[j] = dot8(x, rows + u_j * C, D) for the 8 rows u_j = min(u0 + j, last), stored for j <= last - u0.
LFMOE_TARGET_AVX2 inline void dots8(float* out, const float* x, const float* rows, int u0, int last, int C, int D,
                                   float scale, bool scaled) {
  const float* r[8];
  for (int j = 0; j < 8; j++) r[j] = rows + (size_t)std::min(u0 + j, last) * C;
  __m256 acc[8];
  for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= D; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(r[j] + i), acc[j]);
  }
  if (i < D) {  // zero-padded last block, as in dot8
    const __m256i m = first_lanes(D - i);
    const __m256 xv = _mm256_maskload_ps(x + i, m);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(xv, _mm256_maskload_ps(r[j] + i, m), acc[j]);
  }
  __m256 s = reduce8x8(acc);
  if (scaled) s = _mm256_mul_ps(_mm256_set1_ps(scale), s);
  const int n = last - u0 + 1;
  if (n >= 8) {
    _mm256_storeu_ps(out + u0, s);
  } else {
    _mm256_maskstore_ps(out + u0, first_lanes(n), s);
  }
}

// out[d] = sum_u p[u] * v[u*C + d] for d in [d0, d0 + 8*NC), u = 0..t, from 0 in increasing u.
template <int NC>
LFMOE_TARGET_AVX2 inline void weighted_sum_block(float* out, const float* p, const float* v, int t, int C, int d0) {
  __m256 acc[NC];
  for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
  for (int u = 0; u <= t; u++) {
    const __m256 pu = _mm256_set1_ps(p[u]);
    const float* vu = v + (size_t)u * C + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm256_fmadd_ps(pu, _mm256_loadu_ps(vu + 8 * c), acc[c]);
  }
  for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + d0 + 8 * c, acc[c]);
}

// att_row = causal softmax of scale * q_t . k_u (u <= t), zeros after; with scored, att_row[0..t]
// already holds the scaled scores.
LFMOE_TARGET_AVX2 void row_softmax_avx2(float* att_row, const float* q_t, const float* k, int t, int T_, int C, int D,
                                        float scale, bool scored = false) {
  if (!scored) {
    for (int u0 = 0; u0 <= t; u0 += 8) dots8(att_row, q_t, k, u0, t, C, D, scale, true);
  }
  const int n = t + 1, full = n / 8 * 8;
  __m256 mv = _mm256_set1_ps(att_row[0]);
  for (int u = 0; u < full; u += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(att_row + u));
  float m8[8];
  _mm256_storeu_ps(m8, mv);
  float mx = m8[0];
  for (int j = 1; j < 8; j++) mx = m8[j] > mx ? m8[j] : mx;
  for (int u = full; u < n; u++) mx = att_row[u] > mx ? att_row[u] : mx;
  const __m256 mxv = _mm256_set1_ps(mx);
  for (int u = 0; u < full; u += 8) _mm256_storeu_ps(att_row + u, vexp8(_mm256_sub_ps(_mm256_loadu_ps(att_row + u), mxv)));
  for (int u = full; u < n; u++) att_row[u] = vexp(att_row[u] - mx);
  const float inv = float(1.0 / sum8_avx2(att_row, n));
  const __m256 invv = _mm256_set1_ps(inv);
  for (int u = 0; u < full; u += 8) _mm256_storeu_ps(att_row + u, _mm256_mul_ps(_mm256_loadu_ps(att_row + u), invv));
  for (int u = full; u < n; u++) att_row[u] *= inv;
  std::fill(att_row + n, att_row + T_, 0.0f);
}

LFMOE_TARGET_AVX2 void row_forward_avx2(float* out_t, float* att_row, const float* q_t, const float* k,
                                        const float* v, int t, int T_, int C, int D, float scale) {
  row_softmax_avx2(att_row, q_t, k, t, T_, C, D, scale);
  int d0 = 0;
  for (; d0 + 32 <= D; d0 += 32) weighted_sum_block<4>(out_t, att_row, v, t, C, d0);
  switch ((D - d0) / 8) {
    case 3: weighted_sum_block<3>(out_t, att_row, v, t, C, d0); break;
    case 2: weighted_sum_block<2>(out_t, att_row, v, t, C, d0); break;
    case 1: weighted_sum_block<1>(out_t, att_row, v, t, C, d0); break;
    default: break;
  }
  for (int d = D / 8 * 8; d < D; d++) {  // columns past the last multiple of 8
    float acc = 0;
    for (int u = 0; u <= t; u++) acc = std::fma(att_row[u], v[(size_t)u * C + d], acc);
    out_t[d] = acc;
  }
}

// Row t's updates of dv, dq, dk for columns [d0, d0 + 8*NC): per u, dv_u then dk_u, as in the
// portable code; dq_t at the end.
template <int NC>
LFMOE_TARGET_AVX2 inline void backward_block(float* dq, float* dk, float* dv, const float* dout_t, const float* q_t,
                                             const float* k, const float* p, const float* ds, int t, int C, int d0) {
  __m256 g[NC], qt[NC], acc[NC];
  for (int c = 0; c < NC; c++) {
    g[c] = _mm256_loadu_ps(dout_t + d0 + 8 * c);
    qt[c] = _mm256_loadu_ps(q_t + d0 + 8 * c);
    acc[c] = _mm256_setzero_ps();
  }
  for (int u = 0; u <= t; u++) {
    const __m256 pu = _mm256_set1_ps(p[u]), su = _mm256_set1_ps(ds[u]);
    const size_t off = (size_t)u * C + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
      if (dv) _mm256_storeu_ps(dv + off + 8 * c, _mm256_fmadd_ps(pu, g[c], _mm256_loadu_ps(dv + off + 8 * c)));
      if (dq) acc[c] = _mm256_fmadd_ps(su, _mm256_loadu_ps(k + off + 8 * c), acc[c]);
      if (dk) _mm256_storeu_ps(dk + off + 8 * c, _mm256_fmadd_ps(su, qt[c], _mm256_loadu_ps(dk + off + 8 * c)));
    }
  }
  if (dq) {
    float* dqt = dq + (size_t)t * C + d0;
    for (int c = 0; c < NC; c++) _mm256_storeu_ps(dqt + 8 * c, _mm256_add_ps(_mm256_loadu_ps(dqt + 8 * c), acc[c]));
  }
}

LFMOE_TARGET_AVX2 void head_backward_avx2(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                          const float* k, const float* v, const float* att, int T_, int C, int D,
                                          float scale, float* ds) {
  for (int t = 0; t < T_; t++) {
    const float* p = att + (size_t)t * T_;
    const float* dout_t = dout + (size_t)t * C;
    const float* q_t = q + (size_t)t * C;
    for (int u0 = 0; u0 <= t; u0 += 8) dots8(ds, dout_t, v, u0, t, C, D, 0.0f, false);
    const int n = t + 1, full = n / 8 * 8;
    const float pdp = float(dotsum8_avx2(p, ds, n));
    const __m256 pdpv = _mm256_set1_ps(pdp), sv = _mm256_set1_ps(scale);
    for (int u = 0; u < full; u += 8) {
      const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(p + u), _mm256_sub_ps(_mm256_loadu_ps(ds + u), pdpv));
      _mm256_storeu_ps(ds + u, _mm256_mul_ps(sv, x));
    }
    for (int u = full; u < n; u++) ds[u] = scale * (p[u] * (ds[u] - pdp));
    int d0 = 0;
    for (; d0 + 32 <= D; d0 += 32) backward_block<4>(dq, dk, dv, dout_t, q_t, k, p, ds, t, C, d0);
    switch ((D - d0) / 8) {
      case 3: backward_block<3>(dq, dk, dv, dout_t, q_t, k, p, ds, t, C, d0); break;
      case 2: backward_block<2>(dq, dk, dv, dout_t, q_t, k, p, ds, t, C, d0); break;
      case 1: backward_block<1>(dq, dk, dv, dout_t, q_t, k, p, ds, t, C, d0); break;
      default: break;
    }
    for (int d = D / 8 * 8; d < D; d++) {  // columns past the last multiple of 8
      float acc = 0;
      for (int u = 0; u <= t; u++) {
        const size_t ud = (size_t)u * C + d;
        if (dv) dv[ud] = std::fma(p[u], dout_t[d], dv[ud]);
        if (dq) acc = std::fma(ds[u], k[ud], acc);
        if (dk) dk[ud] = std::fma(ds[u], q_t[d], dk[ud]);
      }
      if (dq) dq[(size_t)t * C + d] += acc;
    }
  }
}

// The same backward in another loop order, for gradients in separate arrays: first every row t
// (its ds row, kept in S (T_ x T_), and dq_t), then every key u (dv_u and dk_u). Each element's
// chain is unchanged (dv_u and dk_u: one fma per query row t = u..T_-1 in increasing t, from the
// caller's value; dq_t: from 0 in increasing u, then added), so are the bits; but dv_u and dk_u now
// stay in registers over t instead of being loaded and stored once per (t, u).
template <int NC>
LFMOE_TARGET_AVX2 inline void dq_block(float* dq, const float* k, const float* ds, int t, int C, int d0) {
  __m256 acc[NC];
  for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
  for (int u = 0; u <= t; u++) {
    const __m256 su = _mm256_set1_ps(ds[u]);
    const float* ku = k + (size_t)u * C + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm256_fmadd_ps(su, _mm256_loadu_ps(ku + 8 * c), acc[c]);
  }
  float* dqt = dq + (size_t)t * C + d0;
  for (int c = 0; c < NC; c++) _mm256_storeu_ps(dqt + 8 * c, _mm256_add_ps(_mm256_loadu_ps(dqt + 8 * c), acc[c]));
}

template <int NC>
LFMOE_TARGET_AVX2 inline void kv_block(float* dk, float* dv, const float* dout, const float* q, const float* att,
                                       const float* S, int u, int T_, int C, int d0) {
  __m256 av[NC], ak[NC];
  const size_t off = (size_t)u * C + d0;
  for (int c = 0; c < NC; c++) {
    av[c] = dv ? _mm256_loadu_ps(dv + off + 8 * c) : _mm256_setzero_ps();
    ak[c] = dk ? _mm256_loadu_ps(dk + off + 8 * c) : _mm256_setzero_ps();
  }
  for (int t = u; t < T_; t++) {
    const __m256 pu = _mm256_set1_ps(att[(size_t)t * T_ + u]), su = _mm256_set1_ps(S[(size_t)t * T_ + u]);
    const float* g = dout + (size_t)t * C + d0;
    const float* qt = q + (size_t)t * C + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
      if (dv) av[c] = _mm256_fmadd_ps(pu, _mm256_loadu_ps(g + 8 * c), av[c]);
      if (dk) ak[c] = _mm256_fmadd_ps(su, _mm256_loadu_ps(qt + 8 * c), ak[c]);
    }
  }
  for (int c = 0; c < NC; c++) {
    if (dv) _mm256_storeu_ps(dv + off + 8 * c, av[c]);
    if (dk) _mm256_storeu_ps(dk + off + 8 * c, ak[c]);
  }
}

// Row t's ds (u <= t) from its probabilities p and dout_t: ds_u = scale * (p_u (dout_t . v_u - pdp));
// with dotted, ds[0..t] already holds the dot products.
LFMOE_TARGET_AVX2 void ds_row_avx2(float* ds, const float* p, const float* dout_t, const float* v, int t, int C, int D,
                                   float scale, bool dotted = false) {
  if (!dotted) {
    for (int u0 = 0; u0 <= t; u0 += 8) dots8(ds, dout_t, v, u0, t, C, D, 0.0f, false);
  }
  const int n = t + 1, full = n / 8 * 8;
  const float pdp = float(dotsum8_avx2(p, ds, n));
  const __m256 pdpv = _mm256_set1_ps(pdp), sv = _mm256_set1_ps(scale);
  for (int u = 0; u < full; u += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(p + u), _mm256_sub_ps(_mm256_loadu_ps(ds + u), pdpv));
    _mm256_storeu_ps(ds + u, _mm256_mul_ps(sv, x));
  }
  for (int u = full; u < n; u++) ds[u] = scale * (p[u] * (ds[u] - pdp));
}

LFMOE_TARGET_AVX2 void head_backward_split_avx2(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                                const float* k, const float* v, const float* att, int T_, int C,
                                                int D, float scale, float* S) {
  const int d_rest = D / 8 * 8;
  for (int t = 0; t < T_; t++) {
    float* ds = S + (size_t)t * T_;
    ds_row_avx2(ds, att + (size_t)t * T_, dout + (size_t)t * C, v, t, C, D, scale);
    if (!dq) continue;
    int d0 = 0;  // column blocks of 32, then one of 24, 16 or 8, then scalar columns
    for (; d0 + 32 <= D; d0 += 32) dq_block<4>(dq, k, ds, t, C, d0);
    switch ((D - d0) / 8) {
      case 3: dq_block<3>(dq, k, ds, t, C, d0); break;
      case 2: dq_block<2>(dq, k, ds, t, C, d0); break;
      case 1: dq_block<1>(dq, k, ds, t, C, d0); break;
      default: break;
    }
    for (int d = d_rest; d < D; d++) {
      float acc = 0;
      for (int u = 0; u <= t; u++) acc = std::fma(ds[u], k[(size_t)u * C + d], acc);
      dq[(size_t)t * C + d] += acc;
    }
  }
  if (!dk && !dv) return;
  for (int u = 0; u < T_; u++) {
    int d0 = 0;
    for (; d0 + 32 <= D; d0 += 32) kv_block<4>(dk, dv, dout, q, att, S, u, T_, C, d0);
    switch ((D - d0) / 8) {
      case 3: kv_block<3>(dk, dv, dout, q, att, S, u, T_, C, d0); break;
      case 2: kv_block<2>(dk, dv, dout, q, att, S, u, T_, C, d0); break;
      case 1: kv_block<1>(dk, dv, dout, q, att, S, u, T_, C, d0); break;
      default: break;
    }
    for (int d = d_rest; d < D; d++) {
      const size_t ud = (size_t)u * C + d;
      for (int t = u; t < T_; t++) {
        if (dv) dv[ud] = std::fma(att[(size_t)t * T_ + u], dout[(size_t)t * C + d], dv[ud]);
        if (dk) dk[ud] = std::fma(S[(size_t)t * T_ + u], q[(size_t)t * C + d], dk[ud]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 code (float, head dims that are a multiple of 16; chosen when avx512_enabled(),
// ref/gemm.h): the weighted sums along the sequence (out_t, dq_t, dk_u, dv_u) two query rows or
// two keys at a time, 16 columns per register. Each element keeps the portable code's chain of
// FMAs term for term; the pair only shares the loads of the rows both read, which gives every load
// two uses and the FMA units twice as many independent chains. Scores, softmax and ds rows are the
// AVX2 code's.
#define LFMOE_TARGET_AVX512 __attribute__((target("avx512f")))
// GCC 12 warns inside its own AVX-512 intrinsics when the build is not -march'ed for AVX-512.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// dots8 for two query rows x0 (keys u0.. up to last0) and x1 (up to last0 + 1) at once: the same
// lanes and tree for every score, the key rows loaded once for both (AVX-512VL gives the 16
// accumulators their 256-bit registers).
#define LFMOE_TARGET_AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))
LFMOE_TARGET_AVX512VL inline void dots8x2(float* out0, float* out1, const float* x0, const float* x1,
                                          const float* rows, int u0, int last0, int ld, int D, float scale,
                                          bool scaled) {
  const int last1 = last0 + 1;
  const float* r[8];
  for (int j = 0; j < 8; j++) r[j] = rows + (size_t)std::min(u0 + j, last1) * ld;
  __m256 a[8], b[8];
  for (int j = 0; j < 8; j++) a[j] = b[j] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= D; i += 8) {
    const __m256 xa = _mm256_loadu_ps(x0 + i), xb = _mm256_loadu_ps(x1 + i);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      const __m256 rv = _mm256_loadu_ps(r[j] + i);
      a[j] = _mm256_fmadd_ps(xa, rv, a[j]);
      b[j] = _mm256_fmadd_ps(xb, rv, b[j]);
    }
  }
  if (i < D) {  // zero-padded last block, as in dot8
    const __m256i m = first_lanes(D - i);
    const __m256 xa = _mm256_maskload_ps(x0 + i, m), xb = _mm256_maskload_ps(x1 + i, m);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      const __m256 rv = _mm256_maskload_ps(r[j] + i, m);
      a[j] = _mm256_fmadd_ps(xa, rv, a[j]);
      b[j] = _mm256_fmadd_ps(xb, rv, b[j]);
    }
  }
  __m256 sa = reduce8x8(a), sb = reduce8x8(b);
  if (scaled) {
    sa = _mm256_mul_ps(_mm256_set1_ps(scale), sa);
    sb = _mm256_mul_ps(_mm256_set1_ps(scale), sb);
  }
  const int n0 = last0 - u0 + 1, n1 = n0 + 1;
  if (n0 >= 8) {
    _mm256_storeu_ps(out0 + u0, sa);
  } else if (n0 > 0) {
    _mm256_maskstore_ps(out0 + u0, first_lanes(n0), sa);
  }
  if (n1 >= 8) {
    _mm256_storeu_ps(out1 + u0, sb);
  } else {
    _mm256_maskstore_ps(out1 + u0, first_lanes(n1), sb);
  }
}

// The scores (scaled) or dot products of query rows t and t+1 against keys u <= t and u <= t+1.
LFMOE_TARGET_AVX512VL void dots_rows2(float* out0, float* out1, const float* x0, const float* x1, const float* rows,
                                      int t, int ld, int D, float scale, bool scaled) {
  for (int u0 = 0; u0 <= t + 1; u0 += 8) dots8x2(out0, out1, x0, x1, rows, u0, t, ld, D, scale, scaled);
}

// Rows t and t+1 (TWO) or t alone: o_r[d0 + i] (+)= sum_{u <= t_r} p_r[u] x[u*ld + d0 + i] for
// i < 16*NZ, from 0 in increasing u; ADD adds the sum to o_r at the end (dq), else stores it (out).
template <int NZ, bool ADD, bool TWO>
LFMOE_TARGET_AVX512 inline void wsum_512(float* o0, float* o1, const float* p0, const float* p1, const float* x,
                                         int t, int ld, int d0) {
  __m512 a0[NZ], a1[NZ];
  #pragma GCC unroll 2
  for (int c = 0; c < NZ; c++) a0[c] = a1[c] = _mm512_setzero_ps();
  for (int u = 0; u <= t; u++) {
    const float* xu = x + (size_t)u * ld + d0;
    const __m512 w0 = _mm512_set1_ps(p0[u]), w1 = _mm512_set1_ps(TWO ? p1[u] : 0.0f);
    #pragma GCC unroll 2
    for (int c = 0; c < NZ; c++) {
      const __m512 xv = _mm512_loadu_ps(xu + 16 * c);
      a0[c] = _mm512_fmadd_ps(w0, xv, a0[c]);
      if (TWO) a1[c] = _mm512_fmadd_ps(w1, xv, a1[c]);
    }
  }
  if (TWO) {  // row t+1's last term, u = t+1
    const float* xu = x + (size_t)(t + 1) * ld + d0;
    const __m512 w1 = _mm512_set1_ps(p1[t + 1]);
    #pragma GCC unroll 2
    for (int c = 0; c < NZ; c++) a1[c] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xu + 16 * c), a1[c]);
  }
  #pragma GCC unroll 2
  for (int c = 0; c < NZ; c++) {
    float* y0 = o0 + d0 + 16 * c;
    _mm512_storeu_ps(y0, ADD ? _mm512_add_ps(_mm512_loadu_ps(y0), a0[c]) : a0[c]);
    if (TWO) {
      float* y1 = o1 + d0 + 16 * c;
      _mm512_storeu_ps(y1, ADD ? _mm512_add_ps(_mm512_loadu_ps(y1), a1[c]) : a1[c]);
    }
  }
}

// Every column block of the row pair (blocks of 32, then one of 16).
template <bool ADD, bool TWO>
LFMOE_TARGET_AVX512 void wsum_rows_512(float* o0, float* o1, const float* p0, const float* p1, const float* x, int t,
                                       int ld, int D) {
  int d0 = 0;
  for (; d0 + 32 <= D; d0 += 32) wsum_512<2, ADD, TWO>(o0, o1, p0, p1, x, t, ld, d0);
  if (d0 < D) wsum_512<1, ADD, TWO>(o0, o1, p0, p1, x, t, ld, d0);
}

// Keys u and u+1 (TWO) or u alone, columns [d0, d0 + 16*NZ): dv_k += att[t][k] dout_t and
// dk_k += S[t][k] q_t for t = k .. T_-1 in increasing t, from the caller's values (kv_block's chain).
template <int NZ, bool DK, bool DV, bool TWO>
LFMOE_TARGET_AVX512 inline void kv_512(float* dk, float* dv, const float* dout, const float* q, const float* att,
                                       const float* S, int u, int T_, int ld, int d0) {
  __m512 v0[NZ], v1[NZ], k0[NZ], k1[NZ];
  const size_t off0 = (size_t)u * ld + d0, off1 = off0 + ld;
  #pragma GCC unroll 2
  for (int c = 0; c < NZ; c++) {
    v0[c] = v1[c] = k0[c] = k1[c] = _mm512_setzero_ps();
    if (DV) v0[c] = _mm512_loadu_ps(dv + off0 + 16 * c);
    if (DV && TWO) v1[c] = _mm512_loadu_ps(dv + off1 + 16 * c);
    if (DK) k0[c] = _mm512_loadu_ps(dk + off0 + 16 * c);
    if (DK && TWO) k1[c] = _mm512_loadu_ps(dk + off1 + 16 * c);
  }
  {  // t = u: key u only
    const __m512 pa = _mm512_set1_ps(att[(size_t)u * T_ + u]), ps = _mm512_set1_ps(S[(size_t)u * T_ + u]);
    #pragma GCC unroll 2
    for (int c = 0; c < NZ; c++) {
      if (DV) v0[c] = _mm512_fmadd_ps(pa, _mm512_loadu_ps(dout + off0 + 16 * c), v0[c]);
      if (DK) k0[c] = _mm512_fmadd_ps(ps, _mm512_loadu_ps(q + off0 + 16 * c), k0[c]);
    }
  }
  for (int t = u + 1; t < T_; t++) {
    const float* a = att + (size_t)t * T_ + u;
    const float* sr = S + (size_t)t * T_ + u;
    const __m512 pa0 = _mm512_set1_ps(a[0]), ps0 = _mm512_set1_ps(sr[0]);
    const __m512 pa1 = _mm512_set1_ps(TWO ? a[1] : 0.0f), ps1 = _mm512_set1_ps(TWO ? sr[1] : 0.0f);
    const float* g = dout + (size_t)t * ld + d0;
    const float* qt = q + (size_t)t * ld + d0;
    #pragma GCC unroll 2
    for (int c = 0; c < NZ; c++) {
      if (DV) {
        const __m512 gv = _mm512_loadu_ps(g + 16 * c);
        v0[c] = _mm512_fmadd_ps(pa0, gv, v0[c]);
        if (TWO) v1[c] = _mm512_fmadd_ps(pa1, gv, v1[c]);
      }
      if (DK) {
        const __m512 qv = _mm512_loadu_ps(qt + 16 * c);
        k0[c] = _mm512_fmadd_ps(ps0, qv, k0[c]);
        if (TWO) k1[c] = _mm512_fmadd_ps(ps1, qv, k1[c]);
      }
    }
  }
  #pragma GCC unroll 2
  for (int c = 0; c < NZ; c++) {
    if (DV) _mm512_storeu_ps(dv + off0 + 16 * c, v0[c]);
    if (DV && TWO) _mm512_storeu_ps(dv + off1 + 16 * c, v1[c]);
    if (DK) _mm512_storeu_ps(dk + off0 + 16 * c, k0[c]);
    if (DK && TWO) _mm512_storeu_ps(dk + off1 + 16 * c, k1[c]);
  }
}

// dk_u and dv_u for every key, two at a time, every column block.
template <bool DK, bool DV>
LFMOE_TARGET_AVX512 void kv_keys_512(float* dk, float* dv, const float* dout, const float* q, const float* att,
                                     const float* S, int T_, int ld, int D) {
  for (int u = 0; u < T_; u += 2) {
    const bool two = u + 1 < T_;
    int d0 = 0;
    for (; d0 + 32 <= D; d0 += 32) {
      if (two) kv_512<2, DK, DV, true>(dk, dv, dout, q, att, S, u, T_, ld, d0);
      else kv_512<2, DK, DV, false>(dk, dv, dout, q, att, S, u, T_, ld, d0);
    }
    if (d0 < D) {
      if (two) kv_512<1, DK, DV, true>(dk, dv, dout, q, att, S, u, T_, ld, d0);
      else kv_512<1, DK, DV, false>(dk, dv, dout, q, att, S, u, T_, ld, d0);
    }
  }
}

// head_backward_split_avx2 with the weighted sums above: ds rows two at a time, then dq for the
// pair; then dk and dv two keys at a time. Rows are ld = D apart (the packed head).
LFMOE_TARGET_AVX512 void head_backward_split_512(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                                 const float* k, const float* v, const float* att, int T_, int D,
                                                 float scale, float* S) {
  const int ld = D;
  for (int t = 0; t < T_; t += 2) {
    const bool two = t + 1 < T_;
    float* s0 = S + (size_t)t * T_;
    float* s1 = s0 + T_;
    const float* g0 = dout + (size_t)t * ld;
    if (two) {
      dots_rows2(s0, s1, g0, g0 + ld, v, t, ld, D, 0.0f, false);
      ds_row_avx2(s0, att + (size_t)t * T_, g0, v, t, ld, D, scale, true);
      ds_row_avx2(s1, att + (size_t)(t + 1) * T_, g0 + ld, v, t + 1, ld, D, scale, true);
    } else {
      ds_row_avx2(s0, att + (size_t)t * T_, g0, v, t, ld, D, scale);
    }
    if (!dq) continue;
    float* q0 = dq + (size_t)t * ld;
    if (two) wsum_rows_512<true, true>(q0, q0 + ld, s0, s1, k, t, ld, D);
    else wsum_rows_512<true, false>(q0, nullptr, s0, nullptr, k, t, ld, D);
  }
  if (dk && dv) kv_keys_512<true, true>(dk, dv, dout, q, att, S, T_, ld, D);
  else if (dk) kv_keys_512<true, false>(dk, dv, dout, q, att, S, T_, ld, D);
  else if (dv) kv_keys_512<false, true>(dk, dv, dout, q, att, S, T_, ld, D);
}
#endif  // LFMOE_X86_SIMD

#if LFMOE_X86_SIMD
constexpr bool HAVE_AVX2_CODE = true;
#else
constexpr bool HAVE_AVX2_CODE = false;
// never called: lets the dispatch below compile where there is no AVX2 code
inline void row_forward_avx2(float*, float*, const float*, const float*, const float*, int, int, int, int, float) {}
inline void head_backward_avx2(float*, float*, float*, const float*, const float*, const float*, const float*,
                               const float*, int, int, int, float, float*) {}
inline void head_backward_split_avx2(float*, float*, float*, const float*, const float*, const float*, const float*,
                                     const float*, int, int, int, float, float*) {}
inline void row_softmax_avx2(float*, const float*, const float*, int, int, int, int, float, bool = false) {}
inline void dots_rows2(float*, float*, const float*, const float*, const float*, int, int, int, float, bool) {}
template <bool ADD, bool TWO>
inline void wsum_rows_512(float*, float*, const float*, const float*, const float*, int, int, int) {}
inline void head_backward_split_512(float*, float*, float*, const float*, const float*, const float*, const float*,
                                    const float*, int, int, float, float*) {}
#endif

// rows x D values from src (row stride lds) to dst (row stride ldd): the per-head copies below.
template <typename T>
inline void copy_rows(T* dst, size_t ldd, const T* src, size_t lds, int rows, int D) {
  for (int r = 0; r < rows; r++) std::copy_n(src + (size_t)r * lds, D, dst + (size_t)r * ldd);
}

// Forward work items: ROW_BLOCK query rows of one (b,h); threads take them round-robin.
constexpr int ROW_BLOCK = 16;

}  // namespace

template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int C, int H) {
  check_shape("attention_forward", B, T_, C, H);
  const int D = C / H;
  const T scale = T(1.0 / std::sqrt((double)D));
  const bool simd = HAVE_AVX2_CODE && simd_enabled();
  const bool wide = simd && D % 16 == 0 && avx512_enabled();  // the AVX-512 weighted sums
  const int blocks = (T_ + ROW_BLOCK - 1) / ROW_BLOCK;
  const int64_t items = (int64_t)B * H * blocks;
  static std::atomic<uint64_t> calls{0};
  const uint64_t call = ++calls;  // tells a thread's packed rows from an earlier call's
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1)
#endif
  for (int64_t it = 0; it < items; it++) {
    const int bh = (int)(it / blocks), b = bh / H, h = bh % H;
    const int t0 = (int)(it % blocks) * ROW_BLOCK, t1 = std::min(t0 + ROW_BLOCK, T_);
    const size_t head = (size_t)b * T_ * C + (size_t)h * D;  // (b, t=0, head h)
    // For the vector rows: the head's key and value rows 0..t1-1 copied contiguously (row stride
    // D). Read in place, rows C floats apart (a power of two) fall into a few L1 sets and evict
    // each other. Data movement only: the sums are the same. A thread's work items of one head
    // come in increasing t, so it copies only the rows its last item of this head did not.
    static thread_local std::vector<T> kv;
    static thread_local uint64_t kv_call = 0;
    static thread_local int kv_bh = -1, kv_rows = 0;
    T* kp = nullptr;
    T* vp = nullptr;
    if (std::is_same<T, float>::value && simd) {
      if (kv.size() < (size_t)2 * T_ * D) kv.resize((size_t)2 * T_ * D);
      kp = kv.data();
      vp = kp + (size_t)T_ * D;
      if (kv_call != call || kv_bh != bh) kv_call = call, kv_bh = bh, kv_rows = 0;
      if (t1 > kv_rows) {
        const size_t r0 = (size_t)kv_rows;
        copy_rows(kp + r0 * D, D, k + head + r0 * C, C, t1 - kv_rows, D);
        copy_rows(vp + r0 * D, D, v + head + r0 * C, C, t1 - kv_rows, D);
        kv_rows = t1;
      }
    }
    for (int t = t0; t < t1; t++) {
      T* out_t = out + head + (size_t)t * C;
      T* att_row = att + ((size_t)bh * T_ + t) * T_;
      const T* q_t = q + head + (size_t)t * C;
      if constexpr (std::is_same<T, float>::value) {
        if (wide) {  // rows t and t+1: both softmax rows, then their weighted sums together
          if (t + 1 < t1) {
            dots_rows2(att_row, att_row + T_, q_t, q_t + C, kp, t, D, D, scale, true);
            row_softmax_avx2(att_row, q_t, kp, t, T_, D, D, scale, true);
            row_softmax_avx2(att_row + T_, q_t + C, kp, t + 1, T_, D, D, scale, true);
            wsum_rows_512<false, true>(out_t, out_t + C, att_row, att_row + T_, vp, t, D, D);
            t++;
          } else {
            row_softmax_avx2(att_row, q_t, kp, t, T_, D, D, scale);
            wsum_rows_512<false, false>(out_t, nullptr, att_row, nullptr, vp, t, D, D);
          }
          continue;
        }
        if (simd) {
          row_forward_avx2(out_t, att_row, q_t, kp, vp, t, T_, D, D, scale);
          continue;
        }
      }
      row_forward_portable(out_t, att_row, q_t, k + head, v + head, t, T_, C, D, scale);
    }
  }
}

// Heads own disjoint columns of dq/dk/dv, so (b,h) pairs run in parallel without races; within a
// head, dk and dv sum over query rows in order, so a head is one thread's work.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        int B, int T_, int C, int H) {
  check_shape("attention_backward", B, T_, C, H);
  const int D = C / H;
  const T scale = T(1.0 / std::sqrt((double)D));
  const bool simd = HAVE_AVX2_CODE && simd_enabled();
  // the key-major loop order (head_backward_split_avx2) needs dq, dk, dv in separate arrays
  const bool split = (!dq || (dq != dk && dq != dv)) && (!dk || dk != dv);
  const size_t need = simd && split ? (size_t)T_ * T_ : (size_t)(T_ + D);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int bh = 0; bh < B * H; bh++) {
    // ds (T_) and acc (D), or the head's ds rows (T_ x T_), grown once per thread
    static thread_local std::vector<T> scratch;
    if (scratch.size() < need) scratch.resize(need);
    const int b = bh / H, h = bh % H;
    const size_t head = (size_t)b * T_ * C + (size_t)h * D;
    T* dqh = dq ? dq + head : nullptr;
    T* dkh = dk ? dk + head : nullptr;
    T* dvh = dv ? dv + head : nullptr;
    const T* atth = att + (size_t)bh * T_ * T_;
    if constexpr (std::is_same<T, float>::value) {
      if (simd && split) {
        // The head's rows copied contiguously (stride D), as in the forward: rows C floats apart
        // share a few L1 sets. The gradients are copied in and added to there, then copied back.
        static thread_local std::vector<T> packed;
        const size_t TD = (size_t)T_ * D;
        if (packed.size() < 7 * TD) packed.resize(7 * TD);
        T* pq = packed.data();
        T* pk = pq + TD;
        T* pv = pk + TD;
        T* pd = pv + TD;
        T* gq = dqh ? pd + TD : nullptr;
        T* gk = dkh ? pd + 2 * TD : nullptr;
        T* gv = dvh ? pd + 3 * TD : nullptr;
        auto gather = [&](T* dst, const T* src) { copy_rows(dst, D, src, C, T_, D); };
        auto scatter = [&](T* dst, const T* src) { copy_rows(dst, C, src, D, T_, D); };
        gather(pq, q + head);
        gather(pk, k + head);
        gather(pv, v + head);
        gather(pd, dout + head);
        if (gq) gather(gq, dqh);
        if (gk) gather(gk, dkh);
        if (gv) gather(gv, dvh);
        if (D % 16 == 0 && avx512_enabled()) {
          head_backward_split_512(gq, gk, gv, pd, pq, pk, pv, atth, T_, D, scale, scratch.data());
        } else {
          head_backward_split_avx2(gq, gk, gv, pd, pq, pk, pv, atth, T_, D, D, scale, scratch.data());
        }
        if (gq) scatter(dqh, gq);
        if (gk) scatter(dkh, gk);
        if (gv) scatter(dvh, gv);
        continue;
      }
      if (simd) {
        head_backward_avx2(dqh, dkh, dvh, dout + head, q + head, k + head, v + head, atth, T_, C, D, scale,
                           scratch.data());
        continue;
      }
    }
    head_backward_portable(dqh, dkh, dvh, dout + head, q + head, k + head, v + head, atth, T_, C, D, scale,
                           scratch.data(), scratch.data() + T_);
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, int, int, int, int);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*, int, int, int,
                                        int);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, int, int, int, int);
template void attention_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int, int, int, int);

}  // namespace ref
