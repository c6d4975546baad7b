// ops.cpp — the dense ops of ref/ops.h on the CPU, forward and backward.
//
// Numerics (docs/MODEL.md section 9):
//  - plain IEEE arithmetic in T (float for training, double for gradient checks), no fast-math;
//  - matmuls go through ref/gemm.h: one fma per term in increasing k (attention, in
//    ref/attention.cpp, documents its own fixed order); vector and portable paths give the same bits;
//  - per-row statistics (RMSNorm's mean square, softmax normalisers, the loss) accumulate in
//    double: they are cheap, and it keeps the reference close to the exact value that the CUDA
//    tree reductions approximate from the other side;
//  - every output element is computed by one thread in an order that does not depend on the
//    schedule or on the thread count, so results are bitwise identical for any OMP_NUM_THREADS.
//    (Parallel loops only split work over independent outputs; there are no parallel reductions.)
#include "ref/ops.h"

#include "ref/gemm.h"   // gemm: every matmul; avx512_enabled
#include "ref/vmath.h"  // vexp, vexp8, simd_enabled

#include <type_traits>  // std::is_same

#include <cmath>      // std::exp, std::log, std::sqrt, std::pow, std::cos, std::sin
#include <cstdint>    // int64_t, SIZE_MAX
#include <initializer_list>  // std::initializer_list (require_shape)
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <vector>     // std::vector (scratch buffers)

// `#pragma omp` is only spelled out when OpenMP is on, so that builds without -fopenmp neither
// warn (-Wunknown-pragmas) nor change results (every loop is order-independent by construction).
#ifdef _OPENMP
#define PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
// For elementwise loops: also lets GCC vectorise at -O2 (it does not otherwise). Each element is
// the same operations in the same order whatever the vector width, so the bits are the same.
#define PARALLEL_FOR_SIMD _Pragma("omp parallel for simd schedule(static)")
#define SIMD _Pragma("omp simd")
#else
#define PARALLEL_FOR
#define PARALLEL_FOR_SIMD
#define SIMD
#endif

namespace ref {
namespace {

// Bad shapes are caller bugs; say which op and what is wrong instead of reading out of bounds.
void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string("ref::") + op + ": " + what);
}

void require_shape(const char* op, int n_rows, std::initializer_list<int> dims) {
  require(n_rows >= 0, op, "row count (N or B) must be >= 0, got " + std::to_string(n_rows));
  for (int d : dims) require(d > 0, op, "every width must be > 0, got " + std::to_string(d));
}

// ---------------------------------------------------------------------------------------------
// Small helpers shared by RoPE, the norms and the loss.

// Column blocks for loops that must sum over rows in order (embedding and RMSNorm weight
// gradients): threads split the columns, each one walks all rows in order.
constexpr int COL_BLOCK = 64;
inline int col_blocks(int C) { return (C + COL_BLOCK - 1) / COL_BLOCK; }

// cos/sin table (T_, D/2) of the RoPE angles t * theta^(-2i/D). The angle is computed in double
// and only the cos/sin are rounded to T, so float and CUDA agree to within one rounding.
template <typename T> void rope_table(std::vector<T>& cs, std::vector<T>& sn, int T_, int D, float theta) {
  const int P = D / 2;
  cs.resize((size_t)T_ * P);
  sn.resize((size_t)T_ * P);
  for (int i = 0; i < P; i++) {
    const double freq = std::pow((double)theta, -2.0 * i / D);
    for (int t = 0; t < T_; t++) {
      const double angle = t * freq;
      cs[(size_t)t * P + i] = (T)std::cos(angle);
      sn[(size_t)t * P + i] = (T)std::sin(angle);
    }
  }
}

// Rotates every pair of x (B*T_ rows of H heads of D) by +angle (sign = 1) or -angle (sign = -1).
template <typename T> void rope_rotate(T* x, int B, int T_, int H, int D, float theta, int sign, const char* op) {
  require_shape(op, B, {T_, H, D});
  require(D % 2 == 0, op, "head dim D must be even (RoPE rotates pairs), got " + std::to_string(D));
  require(theta > 0, op, "theta must be > 0");
  // the table of the last (T_, D, theta) is kept: every layer's q and k, forward and backward, use the same one
  static thread_local std::vector<T> cs, sn;
  static thread_local int key_t = -1, key_d = -1;
  static thread_local float key_theta = 0;
  if (T_ != key_t || D != key_d || theta != key_theta) {
    rope_table(cs, sn, T_, D, theta);
    key_t = T_;
    key_d = D;
    key_theta = theta;
  }
  const int P = D / 2, C = H * D, N = B * T_;
  const T *cos_t = cs.data(), *sin_t = sn.data();  // (inside the loop cs, sn would name each thread's own)
  PARALLEL_FOR
  for (int n = 0; n < N; n++) {
    const T* c = cos_t + (size_t)(n % T_) * P;  // position within the sequence
    const T* s = sin_t + (size_t)(n % T_) * P;
    for (int h = 0; h < H; h++) {
      T* xh = x + (size_t)n * C + (size_t)h * D;
      for (int i = 0; i < P; i++) {
        const T x0 = xh[2 * i], x1 = xh[2 * i + 1], si = sign * s[i];
        xh[2 * i] = x0 * c[i] - x1 * si;
        xh[2 * i + 1] = x0 * si + x1 * c[i];
      }
    }
  }
}

// exp in T: float uses ref::vexp (< 1 ulp, and the same bits 8 lanes at a time; ref/vmath.h),
// double (the gradient checks) the libm exp.
inline float exp_t(float x) { return vexp(x); }
inline double exp_t(double x) { return std::exp(x); }

template <typename T> inline T sigmoid(T a) { return T(1) / (T(1) + exp_t(-a)); }

template <typename T> T row_max_portable(const T* x, int n) {
  T mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

#if LFMOE_X86_SIMD
// The same rule in 32 lanes (lane j takes i = j mod 32, each from x[0]), the lanes then combined by
// the scalar rule. The maximum of a set of numbers does not depend on the order it is taken in, so
// the value is the scalar loop's; only when the largest value is a zero can its sign differ (+0 or
// -0 first), and the max only enters the loss as x - mx and mx + log(sum), which give the same bits
// for either zero. A NaN x[0] gives NaN in both; a later NaN is skipped by both (and makes the sum,
// so the loss, NaN either way).
LFMOE_TARGET_AVX2 inline __m256 max_step(__m256 m, __m256 v) {
  return _mm256_blendv_ps(m, v, _mm256_cmp_ps(v, m, _CMP_GT_OQ));  // v > m ? v : m
}
LFMOE_TARGET_AVX2 float row_max_avx2(const float* x, int n) {
  // four independent accumulators (32 lanes) so that the compare-and-blend latency overlaps
  __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, m2 = m0, m3 = m0;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = max_step(m0, _mm256_loadu_ps(x + i));
    m1 = max_step(m1, _mm256_loadu_ps(x + i + 8));
    m2 = max_step(m2, _mm256_loadu_ps(x + i + 16));
    m3 = max_step(m3, _mm256_loadu_ps(x + i + 24));
  }
  for (; i + 8 <= n; i += 8) m0 = max_step(m0, _mm256_loadu_ps(x + i));
  alignas(32) float lanes[32];
  _mm256_store_ps(lanes, m0);
  _mm256_store_ps(lanes + 8, m1);
  _mm256_store_ps(lanes + 16, m2);
  _mm256_store_ps(lanes + 24, m3);
  float mx = lanes[0];
  for (int l = 1; l < 32; l++) mx = lanes[l] > mx ? lanes[l] : mx;
  for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  return mx;
}
#endif

template <typename T> T row_max(const T* x, int n) {
#if LFMOE_X86_SIMD
  if constexpr (std::is_same<T, float>::value)
    if (simd_enabled()) return row_max_avx2(x, n);
#endif
  return row_max_portable(x, n);
}

// Sum over i of exp(x[i] - mx), in double, in a fixed order that vectorises: lane j = i mod 8 sums
// its terms in increasing i, then the lanes are combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
constexpr int kSumLanes = 8;
inline double combine_lanes(const double* l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

template <typename T> double sum_exp_portable(const T* x, int n, T mx, int from, double* lanes) {
  for (int i = from; i < n; i++) lanes[i % kSumLanes] += (double)exp_t(T(x[i] - mx));
  return combine_lanes(lanes);
}
// The same sum, keeping every exp(x[i] - mx) in e (the loss gradient needs them again).
template <typename T> double sum_exp_keep_portable(T* e, const T* x, int n, T mx, int from, double* lanes) {
  for (int i = from; i < n; i++) {
    e[i] = exp_t(T(x[i] - mx));
    lanes[i % kSumLanes] += (double)e[i];
  }
  return combine_lanes(lanes);
}

#if LFMOE_X86_SIMD
LFMOE_TARGET_AVX2 double sum_exp_avx2(const float* x, int n, float mx) {
  __m256d lo = _mm256_setzero_pd(), hi = lo;  // lanes 0-3, 4-7
  const __m256 vmx = _mm256_set1_ps(mx);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = vexp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[kSumLanes];
  _mm256_store_pd(lanes, lo);
  _mm256_store_pd(lanes + 4, hi);
  return sum_exp_portable(x, n, mx, i, lanes);  // the tail: i is a multiple of 8, lanes line up
}
#endif

#if LFMOE_X86_SIMD
LFMOE_TARGET_AVX2 double sum_exp_keep_avx2(float* ex, const float* x, int n, float mx) {
  __m256d lo = _mm256_setzero_pd(), hi = lo;
  const __m256 vmx = _mm256_set1_ps(mx);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = vexp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    _mm256_storeu_ps(ex + i, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[kSumLanes];
  _mm256_store_pd(lanes, lo);
  _mm256_store_pd(lanes + 4, hi);
  return sum_exp_keep_portable(ex, x, n, mx, i, lanes);
}
#endif

#if LFMOE_X86_SIMD
#define LFMOE_TARGET_AVX512 __attribute__((target("avx512f")))
// GCC 12 warns inside its own AVX-512 intrinsics (their undefined pass-through operand) when the
// build is not -march'ed for AVX-512 (NATIVE=0): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// vexp (ref/vmath.h) 16 lanes at a time: vexp8's operations, one for one, on 512-bit registers
// (max/min return their second operand for a NaN as the 256-bit ones do), so the same bits.
LFMOE_TARGET_AVX512 inline __m512 vexp16(__m512 x) {
  using namespace vmath;
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
  const __m512 round = _mm512_set1_ps(ROUND);
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), round);
  const __m512 n = _mm512_sub_ps(t, round);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
  __m512 p = _mm512_set1_ps(C7);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(round));
  const __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  const __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, _mm512_add_ps(x, x));
}

// sum_exp(_keep) 16 at a time: elements i..i+7 go to lanes 0..7, then i+8..i+15 to lanes 0..7, so
// every lane still adds its terms (i = lane mod 8) in increasing i, as in the 8-wide code.
LFMOE_TARGET_AVX512 double sum_exp_avx512(float* ex, const float* x, int n, float mx) {
  __m512d acc = _mm512_setzero_pd();
  const __m512 vmx = _mm512_set1_ps(mx);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = vexp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
    if (ex) _mm512_storeu_ps(ex + i, e);
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  alignas(64) double lanes[kSumLanes];
  _mm512_store_pd(lanes, acc);
  if (ex) return sum_exp_keep_portable(ex, x, n, mx, i, lanes);
  return sum_exp_portable(x, n, mx, i, lanes);
}
#endif

template <typename T> double sum_exp_keep(T* e, const T* x, int n, T mx) {
#if LFMOE_X86_SIMD
  if constexpr (std::is_same<T, float>::value) {
    if (avx512_enabled()) return sum_exp_avx512(e, x, n, mx);
    if (simd_enabled()) return sum_exp_keep_avx2(e, x, n, mx);
  }
#endif
  double lanes[kSumLanes] = {};
  return sum_exp_keep_portable(e, x, n, mx, 0, lanes);
}

template <typename T> double sum_exp(const T* x, int n, T mx) {
#if LFMOE_X86_SIMD
  if constexpr (std::is_same<T, float>::value) {
    if (avx512_enabled()) return sum_exp_avx512(nullptr, x, n, mx);
    if (simd_enabled()) return sum_exp_avx2(x, n, mx);
  }
#endif
  double lanes[kSumLanes] = {};
  return sum_exp_portable(x, n, mx, 0, lanes);
}

}  // namespace

// =============================================================================================
// Embedding

template <typename T> void embedding_forward(T* out, const int* tokens, const T* wte, int N, int C) {
  require_shape("embedding_forward", N, {C});
  for (int n = 0; n < N; n++) {  // checked up front: throwing inside a parallel loop aborts
    require(tokens[n] >= 0, "embedding_forward", "token id " + std::to_string(tokens[n]) + " at row " +
                                                      std::to_string(n) + " is negative");
  }
  PARALLEL_FOR
  for (int n = 0; n < N; n++) {
    const T* row = wte + (size_t)tokens[n] * C;
    for (int c = 0; c < C; c++) out[(size_t)n * C + c] = row[c];
  }
}

// Threads split the columns; within its columns a thread adds rows in token order n = 0..N-1,
// so repeated tokens sum in a fixed order whatever the thread count.
template <typename T> void embedding_backward(T* dwte, const T* dout, const int* tokens, int N, int C) {
  require_shape("embedding_backward", N, {C});
  for (int n = 0; n < N; n++) {
    require(tokens[n] >= 0, "embedding_backward", "token id " + std::to_string(tokens[n]) + " at row " +
                                                       std::to_string(n) + " is negative");
  }
  const int nb = col_blocks(C);
  PARALLEL_FOR
  for (int b = 0; b < nb; b++) {
    const int c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
    for (int n = 0; n < N; n++) {
      T* drow = dwte + (size_t)tokens[n] * C;
      const T* g = dout + (size_t)n * C;
      SIMD
      for (int c = c0; c < c1; c++) drow[c] += g[c];
    }
  }
}

// =============================================================================================
// RMSNorm: out = inp * rstd * w, rstd = 1/sqrt(mean(inp^2) + eps) (mean square in double).

// Row sums in double for 4 rows at once: 4 independent chains, each still one row's terms in
// increasing c, so the same bits as one row at a time; the chains overlap in the pipeline instead
// of each add waiting for the one before. term(row, c) gives a row's c-th term.
constexpr int kRowGroup = 4;
template <typename F> inline void row_sums4(double* s, int C, F term) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int c = 0; c < C; c++) {
    s0 += term(0, c);
    s1 += term(1, c);
    s2 += term(2, c);
    s3 += term(3, c);
  }
  s[0] = s0;
  s[1] = s1;
  s[2] = s2;
  s[3] = s3;
}

template <typename T> void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* w, int N, int C, float eps) {
  require_shape("rmsnorm_forward", N, {C});
  const int groups = (N + kRowGroup - 1) / kRowGroup;
  PARALLEL_FOR
  for (int gi = 0; gi < groups; gi++) {
    const int n0 = gi * kRowGroup, rows = N - n0 < kRowGroup ? N - n0 : kRowGroup;
    const T* x0 = inp + (size_t)n0 * C;
    double ss[kRowGroup];
    if (rows == kRowGroup) {
      row_sums4(ss, C, [&](int r, int c) { return (double)x0[(size_t)r * C + c] * x0[(size_t)r * C + c]; });
    } else {
      for (int r = 0; r < rows; r++) {
        const T* x = x0 + (size_t)r * C;
        ss[r] = 0;
        for (int c = 0; c < C; c++) ss[r] += (double)x[c] * x[c];
      }
    }
    for (int r = 0; r < rows; r++) {
      const int n = n0 + r;
      const T* x = x0 + (size_t)r * C;
      const T rs = T(1.0 / std::sqrt(ss[r] / C + eps));
      rstd[n] = rs;
      T* o = out + (size_t)n * C;
      SIMD
      for (int c = 0; c < C; c++) o[c] = x[c] * rs * w[c];
    }
  }
}

// With y_j = x_j r w_j and r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / C, so
//   dx_j = r w_j dy_j - x_j (r^3 / C) sum_k dy_k w_k x_k ;  dw_j = sum_n dy_nj x_nj r_n.
template <typename T>
void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const T* rstd, int N, int C) {
  require_shape("rmsnorm_backward", N, {C});
  if (dinp) {
    const int groups = (N + kRowGroup - 1) / kRowGroup;
    PARALLEL_FOR
    for (int gi = 0; gi < groups; gi++) {
      const int n0 = gi * kRowGroup, rows = N - n0 < kRowGroup ? N - n0 : kRowGroup;
      const T* x0 = inp + (size_t)n0 * C;
      const T* dy0 = dout + (size_t)n0 * C;
      double dyw_x[kRowGroup];
      if (rows == kRowGroup) {
        row_sums4(dyw_x, C, [&](int r, int c) {
          const size_t i = (size_t)r * C + c;
          return (double)dy0[i] * w[c] * x0[i];
        });
      } else {
        for (int r = 0; r < rows; r++) {
          dyw_x[r] = 0;
          for (int c = 0; c < C; c++) dyw_x[r] += (double)dy0[(size_t)r * C + c] * w[c] * x0[(size_t)r * C + c];
        }
      }
      for (int r = 0; r < rows; r++) {
        const int n = n0 + r;
        const T* x = x0 + (size_t)r * C;
        const T* dy = dy0 + (size_t)r * C;
        const double rr = rstd[n];
        const T coef = T(rr * rr * rr * dyw_x[r] / C);
        const T rs = rstd[n];
        T* di = dinp + (size_t)n * C;
        SIMD
        for (int c = 0; c < C; c++) di[c] += rs * (w[c] * dy[c]) - x[c] * coef;
      }
    }
  }
  if (dw) {  // a column reduction over rows: split columns, sum rows in order
    const int nb = col_blocks(C);
    PARALLEL_FOR
    for (int b = 0; b < nb; b++) {
      const int c0 = b * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
      T acc[COL_BLOCK] = {};
      for (int n = 0; n < N; n++) {
        const T* dy = dout + (size_t)n * C;
        const T* x = inp + (size_t)n * C;
        const T rs = rstd[n];
        SIMD
        for (int c = c0; c < c1; c++) acc[c - c0] += dy[c] * (x[c] * rs);
      }
      for (int c = c0; c < c1; c++) dw[c] += acc[c - c0];
    }
  }
}

// =============================================================================================
// Matmul (torch.nn.Linear without bias): all three products are one row-major GEMM.

template <typename T> void matmul_forward(T* out, const T* inp, const T* w, int N, int IC, int OC) {
  require_shape("matmul_forward", N, {IC, OC});
  gemm(out, OC, row_major(inp, IC), transposed(w, IC), N, OC, IC, false);  // (N,IC) @ (OC,IC)^T
}

template <typename T>
void matmul_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, int N, int IC, int OC) {
  require_shape("matmul_backward", N, {IC, OC});
  if (N == 0) return;
  if (dinp) gemm(dinp, IC, row_major(dout, OC), row_major(w, IC), N, IC, OC, true);  // (N,OC) @ (OC,IC)
  // each dw[o][i] sums n = 0..N-1 in order: (N,OC)^T @ (N,IC)
  if (dw) gemm(dw, IC, transposed(dout, OC), row_major(inp, IC), OC, IC, N, true);
}

// =============================================================================================
// RoPE

template <typename T> void rope_forward(T* x, int B, int T_, int H, int D, float theta) {
  rope_rotate(x, B, T_, H, D, theta, +1, "rope_forward");
}

// The rotation is orthogonal, so its gradient is the rotation by -angle.
template <typename T> void rope_backward(T* dx, int B, int T_, int H, int D, float theta) {
  rope_rotate(dx, B, T_, H, D, theta, -1, "rope_backward");
}

// =============================================================================================
// SwiGLU gate and elementwise ops

// Both have an AVX2 path for float that runs the same operations in the same order as the plain
// loop (sigmoid = 1 / (1 + vexp(-a)); products left to right), so the bits are the same.
#if LFMOE_X86_SIMD
LFMOE_TARGET_AVX2 inline __m256 sigmoid8(__m256 a) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, vexp8(_mm256_xor_ps(a, _mm256_set1_ps(-0.0f)))));
}
LFMOE_TARGET_AVX2 void swiglu_forward_avx2(float* out, const float* a, const float* b, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(x, sigmoid8(x)), _mm256_loadu_ps(b + i)));
  }
}
LFMOE_TARGET_AVX2 void swiglu_backward_avx2(float* da, float* db, const float* dout, const float* a, const float* b,
                                            int64_t i0, int64_t i1) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i), s = sigmoid8(x), g = _mm256_loadu_ps(dout + i);
    const __m256 xs = _mm256_mul_ps(x, s);
    if (da) {
      const __m256 dsilu = _mm256_add_ps(s, _mm256_mul_ps(xs, _mm256_sub_ps(one, s)));
      const __m256 d = _mm256_mul_ps(_mm256_mul_ps(g, _mm256_loadu_ps(b + i)), dsilu);
      _mm256_storeu_ps(da + i, _mm256_add_ps(_mm256_loadu_ps(da + i), d));
    }
    if (db) _mm256_storeu_ps(db + i, _mm256_add_ps(_mm256_loadu_ps(db + i), _mm256_mul_ps(g, xs)));
  }
}
#endif

// Elementwise loops are split into chunks of kChunk elements over threads (vector code inside).
constexpr int64_t kChunk = 4096;

template <typename T> void swiglu_forward(T* out, const T* a, const T* b, size_t n) {
  const int64_t chunks = ((int64_t)n + kChunk - 1) / kChunk;
  PARALLEL_FOR
  for (int64_t c = 0; c < chunks; c++) {
    int64_t i = c * kChunk;
    const int64_t end = i + kChunk < (int64_t)n ? i + kChunk : (int64_t)n;
#if LFMOE_X86_SIMD
    if constexpr (std::is_same<T, float>::value)
      if (simd_enabled()) {
        const int64_t v_end = i + (end - i) / 8 * 8;
        swiglu_forward_avx2(out, a, b, i, v_end);
        i = v_end;
      }
#endif
    for (; i < end; i++) out[i] = a[i] * sigmoid(a[i]) * b[i];
  }
}
template <typename T> void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, size_t n) {
  const int64_t chunks = ((int64_t)n + kChunk - 1) / kChunk;
  PARALLEL_FOR
  for (int64_t c = 0; c < chunks; c++) {
    int64_t i = c * kChunk;
    const int64_t end = i + kChunk < (int64_t)n ? i + kChunk : (int64_t)n;
#if LFMOE_X86_SIMD
    if constexpr (std::is_same<T, float>::value)
      if (simd_enabled()) {
        const int64_t v_end = i + (end - i) / 8 * 8;
        swiglu_backward_avx2(da, db, dout, a, b, i, v_end);
        i = v_end;
      }
#endif
    for (; i < end; i++) {
      const T s = sigmoid(a[i]), as = a[i] * s;
      if (da) da[i] += dout[i] * b[i] * (s + as * (T(1) - s));
      if (db) db[i] += dout[i] * as;
    }
  }
}

template <typename T> void add_inplace(T* x, const T* y, size_t n) {
  PARALLEL_FOR_SIMD
  for (int64_t i = 0; i < (int64_t)n; i++) x[i] += y[i];
}

// =============================================================================================
// Cross-entropy: loss_n = logsumexp(logits_n) - logits_n[target_n], in double from T logits.

namespace {
void check_targets(const char* op, const int* targets, int N, int V) {
  require(N > 0, op, "needs at least one row (the loss is a mean over N)");
  require(V > 0, op, "V must be > 0, got " + std::to_string(V));
  for (int n = 0; n < N; n++) {
    require(targets[n] >= 0 && targets[n] < V, op, "target " + std::to_string(targets[n]) + " at row " +
                                                       std::to_string(n) + " is outside [0, V=" +
                                                       std::to_string(V) + ")");
  }
}
}  // namespace

// Per row: mx = max, sum = sum_exp (lanes, above), loss = mx + log(sum) - x[target] in double;
// the gradient p - onehot with p = exp(x - mx) * (1 / sum), all but the exp in double.
template <typename T> double crossentropy_forward(T* losses, const T* logits, const int* targets, int N, int V) {
  check_targets("crossentropy_forward", targets, N, V);
  PARALLEL_FOR
  for (int n = 0; n < N; n++) {
    const T* row = logits + (size_t)n * V;
    const T mx = row_max(row, V);
    const double sum = sum_exp(row, V, mx);
    losses[n] = T((double)mx + std::log(sum) - (double)row[targets[n]]);
  }
  double total = 0;  // serial: the mean sums rows in order
  for (int n = 0; n < N; n++) total += losses[n];
  return total / N;
}

namespace {
// dl[v] += T(((double)e[v] * inv - [v == target]) * g) for v in [from, V), e[v] = exp(x[v] - mx)
template <typename T>
void ce_grad_row_portable(T* dl, const T* e, int from, int V, double inv, double g, int target) {
  for (int v = from; v < V; v++) {
    const double p = (double)e[v] * inv;
    dl[v] += T((p - (v == target ? 1.0 : 0.0)) * g);
  }
}

#if LFMOE_X86_SIMD
// The same arithmetic 8 columns at a time; the target column is redone in scalar code (p - 1).
LFMOE_TARGET_AVX2 void ce_grad_row_avx2(float* dl, const float* ex, int V, double inv, double g, int target) {
  const float keep = dl[target];
  const __m256d vinv = _mm256_set1_pd(inv), vg = _mm256_set1_pd(g);
  int v = 0;
  for (; v + 8 <= V; v += 8) {
    const __m256 e = _mm256_loadu_ps(ex + v);
    // (p - 0) * g == p * g exactly, so the non-target columns skip the subtraction
    const __m256d lo = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), vinv), vg);
    const __m256d hi = _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), vinv), vg);
    const __m256 d = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    _mm256_storeu_ps(dl + v, _mm256_add_ps(_mm256_loadu_ps(dl + v), d));
  }
  ce_grad_row_portable(dl, ex, v, V, inv, g, target);
  if (target < v) {
    dl[target] = keep;
    ce_grad_row_portable(dl + target, ex + target, 0, 1, inv, g, 0);
  }
}

// The same, 16 columns at a time.
LFMOE_TARGET_AVX512 void ce_grad_row_avx512(float* dl, const float* ex, int V, double inv, double g, int target) {
  const float keep = dl[target];
  const __m512d vinv = _mm512_set1_pd(inv), vg = _mm512_set1_pd(g);
  int v = 0;
  for (; v + 16 <= V; v += 16) {
    const __m512 e = _mm512_loadu_ps(ex + v);
    const __m512d lo = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)), vinv), vg);
    const __m512d hi = _mm512_mul_pd(
        _mm512_mul_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))), vinv), vg);
    const __m512 d = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(lo))),
                                                         _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
    _mm512_storeu_ps(dl + v, _mm512_add_ps(_mm512_loadu_ps(dl + v), d));
  }
  ce_grad_row_portable(dl, ex, v, V, inv, g, target);
  if (target < v) {
    dl[target] = keep;
    ce_grad_row_portable(dl + target, ex + target, 0, 1, inv, g, 0);
  }
}
#endif
}  // namespace

template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, float dloss) {
  check_targets("crossentropy_backward", targets, N, V);
  const double g = (double)dloss / N;  // d(dloss * mean)/d(loss_n)
  // The row's exponentials are computed once, kept in a per-thread row (V values, in L1/L2) for
  // the sum and then the gradient: the same values as computing them twice.
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    static thread_local std::vector<T> ebuf;
    if (ebuf.size() < (size_t)V) ebuf.resize(V);
    T* e = ebuf.data();
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int n = 0; n < N; n++) {
      const T* row = logits + (size_t)n * V;
      T* dl = dlogits + (size_t)n * V;
      const T mx = row_max(row, V);
      const double inv = 1.0 / sum_exp_keep(e, row, V, mx);
#if LFMOE_X86_SIMD
      if constexpr (std::is_same<T, float>::value) {
        if (avx512_enabled()) {
          ce_grad_row_avx512(dl, e, V, inv, g, targets[n]);
          continue;
        }
        if (simd_enabled()) {
          ce_grad_row_avx2(dl, e, V, inv, g, targets[n]);
          continue;
        }
      }
#endif
      ce_grad_row_portable(dl, e, 0, V, inv, g, targets[n]);
    }
  }
}

// =============================================================================================
// Optimizer pieces

namespace {
constexpr int kSumsqChunks = 64;
inline size_t sumsq_chunk_start(size_t n, int c) { return n * c / kSumsqChunks; }

// Chunks c0 .. c0+7 of sumsq: each s_c = sum over its range in order of (double)g[i] * g[i].
template <typename T> void sumsq_group_portable(const T* g, size_t n, int c0, double* partial) {
  for (int c = c0; c < c0 + 8; c++) {
    const size_t i0 = sumsq_chunk_start(n, c), i1 = sumsq_chunk_start(n, c + 1);
    double s = 0;
    for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
    partial[c] = s;
  }
}

#if LFMOE_X86_SIMD
// r[k] (k = 0..7) becomes column k of the 8 x 8 matrix whose rows were r[0..7]: lane l of the
// result r[k] is lane k of the input r[l].
LFMOE_TARGET_AVX2 inline void transpose8x8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// The same eight sums, one per lane: step t adds the t-th term of every chunk, so each lane still
// sums its own chunk in order. Eight terms of each chunk are loaded contiguously and transposed
// (one vector per step); chunks longer than the shortest finish in scalar code.
LFMOE_TARGET_AVX2 void sumsq_group_avx2(const float* g, size_t n, int c0, double* partial) {
  size_t start[8], len[8], common = SIZE_MAX;
  for (int l = 0; l < 8; l++) {
    start[l] = sumsq_chunk_start(n, c0 + l);
    len[l] = sumsq_chunk_start(n, c0 + l + 1) - start[l];
    common = len[l] < common ? len[l] : common;
  }
  __m256d lo = _mm256_setzero_pd(), hi = lo;  // chunks c0..c0+3, c0+4..c0+7
  auto add_step = [&](__m256 x) {
    const __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), xh = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    lo = _mm256_add_pd(lo, _mm256_mul_pd(xl, xl));
    hi = _mm256_add_pd(hi, _mm256_mul_pd(xh, xh));
  };
  size_t t = 0;
  for (; t + 8 <= common; t += 8) {
    __m256 r[8];
    for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(g + start[l] + t);
    transpose8x8(r);
    for (int k = 0; k < 8; k++) add_step(r[k]);
  }
  for (; t < common; t++) {
    add_step(_mm256_setr_ps(g[start[0] + t], g[start[1] + t], g[start[2] + t], g[start[3] + t], g[start[4] + t],
                            g[start[5] + t], g[start[6] + t], g[start[7] + t]));
  }
  alignas(32) double s[8];
  _mm256_store_pd(s, lo);
  _mm256_store_pd(s + 4, hi);
  for (int l = 0; l < 8; l++) {
    for (size_t i = start[l] + common; i < start[l] + len[l]; i++) s[l] += (double)g[i] * g[i];
    partial[c0 + l] = s[l];
  }
}
#endif
}  // namespace

// 64 fixed chunks, each summed in order in double, combined in chunk order: the result is the
// same for any thread count (the chunking depends on n only).
template <typename T> double sumsq(const T* g, size_t n) {
  double partial[kSumsqChunks];
  PARALLEL_FOR
  for (int c0 = 0; c0 < kSumsqChunks; c0 += 8) {
#if LFMOE_X86_SIMD
    if constexpr (std::is_same<T, float>::value)
      if (simd_enabled()) {
        sumsq_group_avx2(g, n, c0, partial);
        continue;
      }
#endif
    sumsq_group_portable(g, n, c0, partial);
  }
  double total = 0;
  for (int c = 0; c < kSumsqChunks; c++) total += partial[c];
  return total;
}

template <typename T> void scale_inplace(T* x, size_t n, float s) {
  PARALLEL_FOR_SIMD
  for (int64_t i = 0; i < (int64_t)n; i++) x[i] *= s;
}

#if LFMOE_X86_SIMD
// adamw_update's elementwise part, 8 at a time: the same IEEE operations in the same order (sqrt and
// the division are exactly rounded in both), so the same bits.
LFMOE_TARGET_AVX2 void adamw_avx2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, float decay,
                                  float b1, float omb1, float b2, float omb2, float step_size, float bc2_sqrt, float e) {
  const __m256 vdecay = _mm256_set1_ps(decay), vb1 = _mm256_set1_ps(b1), vomb1 = _mm256_set1_ps(omb1),
               vb2 = _mm256_set1_ps(b2), vomb2 = _mm256_set1_ps(omb2), vstep = _mm256_set1_ps(step_size),
               vbc2 = _mm256_set1_ps(bc2_sqrt), ve = _mm256_set1_ps(e);
  for (int64_t i = i0; i < i1; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), vdecay);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vomb1, gi));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(vomb2, gi), gi));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc2), ve);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(vstep, mi), denom)));
  }
}
#endif

// Scalars are formed in double as torch forms them from Python floats (1 - lr*wd, lr/bc1,
// sqrt(bc2)) and rounded to T once; the elementwise part then runs in T in torch's order:
// decay, moments, denom = sqrt(v)/sqrt(bc2) + eps, p -= step_size * m / denom.
template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                  int t) {
  require(t >= 1, "adamw_update", "step t must be >= 1 (bias correction divides by 1 - beta^t), got " +
                                      std::to_string(t));
  const double bc1 = 1.0 - std::pow((double)beta1, t), bc2 = 1.0 - std::pow((double)beta2, t);
  const T decay = T(1.0 - (double)lr * wd);
  const T step_size = T((double)lr / bc1);
  const T bc2_sqrt = T(std::sqrt(bc2));
  const T b1 = beta1, b2 = beta2, e = eps;
  const T omb1 = T(1) - b1, omb2 = T(1) - b2;
  const int64_t chunks = ((int64_t)n + kChunk - 1) / kChunk;
  PARALLEL_FOR
  for (int64_t c = 0; c < chunks; c++) {
    int64_t i = c * kChunk;
    const int64_t end = i + kChunk < (int64_t)n ? i + kChunk : (int64_t)n;
#if LFMOE_X86_SIMD
    if constexpr (std::is_same<T, float>::value)
      if (simd_enabled()) {
        const int64_t v_end = i + (end - i) / 8 * 8;
        adamw_avx2(p, g, m, v, i, v_end, decay, b1, omb1, b2, omb2, step_size, bc2_sqrt, e);
        i = v_end;
      }
#endif
    for (; i < end; i++) {
      p[i] *= decay;
      m[i] = b1 * m[i] + omb1 * g[i];
      v[i] = b2 * v[i] + omb2 * g[i] * g[i];
      const T denom = std::sqrt(v[i]) / bc2_sqrt + e;
      p[i] -= step_size * m[i] / denom;
    }
  }
}

// =============================================================================================
// Explicit instantiations: float for training, double for gradient checks.

#define INSTANTIATE_OPS(T)                                                                                    \
  template void embedding_forward<T>(T*, const int*, const T*, int, int);                                    \
  template void embedding_backward<T>(T*, const T*, const int*, int, int);                                   \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, float);                             \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int);               \
  template void matmul_forward<T>(T*, const T*, const T*, int, int, int);                                    \
  template void matmul_backward<T>(T*, T*, const T*, const T*, const T*, int, int, int);                     \
  template void rope_forward<T>(T*, int, int, int, int, float);                                              \
  template void rope_backward<T>(T*, int, int, int, int, float);                                             \
  template void swiglu_forward<T>(T*, const T*, const T*, size_t);                                           \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, size_t);                            \
  template void add_inplace<T>(T*, const T*, size_t);                                                        \
  template double crossentropy_forward<T>(T*, const T*, const int*, int, int);                               \
  template void crossentropy_backward<T>(T*, const T*, const int*, int, int, float);                         \
  template double sumsq<T>(const T*, size_t);                                                                \
  template void scale_inplace<T>(T*, size_t, float);                                                         \
  template void adamw_update<T>(T*, const T*, T*, T*, size_t, float, float, float, float, float, int);

INSTANTIATE_OPS(float)
INSTANTIATE_OPS(double)

}  // namespace ref
