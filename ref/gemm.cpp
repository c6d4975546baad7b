// gemm.cpp — packed, cache-blocked GEMM with AVX-512 and AVX2+FMA micro-kernels and a portable one
// that gives the same bits (ref/gemm.h states the summation order all of them follow).
//
// Structure (the Goto/BLIS layout). For each block of NC columns, and in it for each K-block of KC
// values of k, in increasing order:
//   1. pack A into row panels of MR rows: panel i holds A[i*MR + r][k] at [k*MR + r] (zero rows pad
//      the last panel), so the micro-kernel reads MR consecutive values per k. Row-major A (every
//      product but the weight gradients) is not packed: the kernel reads its MR rows in place;
//   2. pack B into column panels of NR columns: panel j holds B[k][j*NR + c] at [k*NR + c] (zero
//      columns pad the last one), NR consecutive values per k, i.e. one or two vectors;
//   3. for each (row block of MC_PANELS panels, column panel) task, the micro-kernel runs the MR x NR
//      tiles in registers over the K-block, continuing each element's running sum from the block
//      before (kept in C, or in a side buffer when C's old values are still to be added).
// Threads split the packing loops and step 3's tasks; every element is computed by one thread in
// one fixed order, so neither the thread count nor the blocking ever changes a bit.
//
// gemm_grouped (many small products, the routed experts) uses the same packing and kernels with a
// different split: a work item is one column panel of one product, which its thread packs and runs
// over all row panels and K-blocks on its own, so a group needs no barrier but the one at its end.
//
// Register tiles, by kernel (chosen at run time: the widest the CPU has, unless LFMOE_SIMD=0):
//   avx512    float 12 x 32 (24 zmm accumulators + 2 for B; A broadcast from memory)
//   avx2+fma  float 6 x 16, double 6 x 8 (12 ymm accumulators); double also under avx512
//   portable  float 6 x 16, double 6 x 8, std::fma
#include "ref/gemm.h"

#include "ref/vmath.h"  // simd_enabled: the run-time choice of vector code

#include <atomic>   // std::atomic (the kernel cap)
#include <cmath>    // std::fma
#include <cstdint>  // int64_t
#include <cstring>  // std::strcmp, std::memcpy
#include <type_traits>  // std::is_same
#include <vector>   // std::vector (per-thread packing buffers)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LFMOE_X86 1
#endif

#ifdef _OPENMP
#include <omp.h>
#define OMP_FOR _Pragma("omp for schedule(static)")
#else
#define OMP_FOR
#endif

namespace ref {
namespace {

// Below this many multiply-adds the product runs on the calling thread (a parallel region costs more).
constexpr int64_t kParallelMin = 1 << 16;
// A column block packs at most about this many bytes of B (NC = this / (KC * NR * sizeof(T)) panels),
// so that the packed block stays in L2 while every row block of A passes it.
constexpr int64_t kPackedBBytes = 1 << 20;

// ---------------------------------------------------------------------------------------- packing
// Packed A for one K-block [k0, k0+kc): rows m0 .. m0+MR-1 at [k*MR + r] (rows past M are zero).
template <typename T, int MR> void pack_a_panel(T* dst, MatView<T> A, int m0, int M, int k0, int kc) {
  const int rows = M - m0 < MR ? M - m0 : MR;
  const T* base = A.p + (ptrdiff_t)m0 * A.rs + (ptrdiff_t)k0 * A.cs;
  if (A.rs == 1 && rows == MR) {  // A stored transposed (dout^T): MR consecutive values per k
    for (int k = 0; k < kc; k++) std::memcpy(dst + (size_t)k * MR, base + (ptrdiff_t)k * A.cs, MR * sizeof(T));
    return;
  }
  for (int k = 0; k < kc; k++) {
    const T* src = base + (ptrdiff_t)k * A.cs;
    int r = 0;
    for (; r < rows; r++) dst[r] = src[(ptrdiff_t)r * A.rs];
    for (; r < MR; r++) dst[r] = T(0);
    dst += MR;
  }
}

// The row panels i0 .. i1-1 of a transposed A (A.rs == 1: column k of A is a contiguous row of the
// source, dout^T in a weight gradient) for one K-block, into Ap (panel i at Ap + i*MR*kc). For each
// k one contiguous run of the source row is read and dealt to the panels: reading panel by panel
// instead would take 48 bytes of every source row, and a cache miss, per panel.
template <typename T, int MR> void pack_a_transposed(T* Ap, MatView<T> A, int i0, int i1, int M, int k0, int kc) {
  const int full_end = M / MR < i1 ? M / MR : i1;  // panels with MR real rows
  for (int k = 0; k < kc; k++) {
    const T* src = A.p + (ptrdiff_t)(k0 + k) * A.cs;
    for (int i = i0; i < full_end; i++)  // (memcpy: GCC at -O2 copies a plain loop one value at a time)
      std::memcpy(Ap + (size_t)i * MR * kc + (size_t)k * MR, src + (ptrdiff_t)i * MR, MR * sizeof(T));
  }
  for (int i = full_end > i0 ? full_end : i0; i < i1; i++) pack_a_panel<T, MR>(Ap + (size_t)i * MR * kc, A, i * MR, M, k0, kc);
}

#ifdef LFMOE_X86
// A full panel of a transposed float B (B.rs == 1, w^T: column c is the contiguous source row
// src + c*ld) by 8 x 8 transposes in registers: dst[k*NR + c] = src[c*ld + k]. Data movement only.
__attribute__((target("avx2"))) void pack_b_transposed_avx2(float* dst, const float* src, ptrdiff_t ld, int NR,
                                                            int kc) {
  const int k8 = kc / 8 * 8;
  for (int c0 = 0; c0 < NR; c0 += 8) {
    const float* s = src + (ptrdiff_t)c0 * ld;
    for (int k = 0; k < k8; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + (ptrdiff_t)i * ld + k);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      // u0..u3: k+0..k+3 of rows 0-3 (low half) and k+4..k+7 (high half); u4..u7 the same for rows 4-7
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + (size_t)k * NR + c0;
      _mm256_storeu_ps(d + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (int k = k8; k < kc; k++)
      for (int i = 0; i < 8; i++) dst[(size_t)k * NR + c0 + i] = s[(ptrdiff_t)i * ld + k];
  }
}
#endif

// Packed B for one K-block: columns j0 .. j0+NR-1 at [k*NR + c] (columns past N are zero).
template <typename T, int NR> void pack_b_panel(T* dst, MatView<T> B, int j0, int N, int k0, int kc) {
  const int cols = N - j0 < NR ? N - j0 : NR;
#ifdef LFMOE_X86
  if constexpr (std::is_same<T, float>::value && NR % 8 == 0)
    if (B.rs == 1 && cols == NR && simd_enabled()) {
      pack_b_transposed_avx2(dst, B.p + (ptrdiff_t)j0 * B.cs + k0, B.cs, NR, kc);
      return;
    }
#endif
  if (B.cs == 1 && cols == NR) {  // row-major B: one contiguous run of NR per k
    for (int k = 0; k < kc; k++) std::memcpy(dst + (size_t)k * NR, B.p + (ptrdiff_t)(k0 + k) * B.rs + j0, NR * sizeof(T));
    return;
  }
  if (B.rs == 1) {  // B stored transposed (w^T): each column is a contiguous source row
    // four columns at a time: four source streams, and each destination line is written in one go
    int c = 0;
    for (; c + 4 <= cols; c += 4) {
      const T* s0 = B.p + (ptrdiff_t)(j0 + c) * B.cs + k0;
      const T *s1 = s0 + B.cs, *s2 = s1 + B.cs, *s3 = s2 + B.cs;
      for (int k = 0; k < kc; k++) {
        T* d = dst + k * NR + c;
        d[0] = s0[k];
        d[1] = s1[k];
        d[2] = s2[k];
        d[3] = s3[k];
      }
    }
    for (; c < cols; c++) {
      const T* src = B.p + (ptrdiff_t)(j0 + c) * B.cs + k0;
      for (int k = 0; k < kc; k++) dst[k * NR + c] = src[k];
    }
    for (; c < NR; c++)
      for (int k = 0; k < kc; k++) dst[k * NR + c] = T(0);
    return;
  }
  for (int k = 0; k < kc; k++) {
    const T* src = B.p + (ptrdiff_t)(k0 + k) * B.rs + (ptrdiff_t)j0 * B.cs;
    int c = 0;
    for (; c < cols; c++) dst[c] = src[(ptrdiff_t)c * B.cs];
    for (; c < NR; c++) dst[c] = T(0);
    dst += NR;
  }
}

// ---------------------------------------------------------------------------------- micro-kernels
// One call computes an MR x NR tile over one K-block: the running sums start from zero (first
// block) or from the partial sums saved in P, take one fma per k in increasing k, and go back to P
// (not the last block) or into C (last block: C = s, or C = C + s when accumulating). Sums are
// stored as the T values they are, so splitting K into blocks never changes a bit.
template <typename T> struct Tile {
  T* C;
  ptrdiff_t ldc;
  T* P;  // partial sums between K-blocks (may be C itself when not accumulating)
  ptrdiff_t ldp;
  int rows, cols;
  bool first, last, accumulate;
};

template <typename T, int MR, int NR> inline void load_partial(T* s, const Tile<T>& t) {
  for (int i = 0; i < MR * NR; i++) s[i] = T(0);
  if (t.first) return;
  for (int r = 0; r < t.rows; r++)
    for (int c = 0; c < t.cols; c++) s[r * NR + c] = t.P[(ptrdiff_t)r * t.ldp + c];
}

template <typename T, int NR> inline void store_sums(const T* s, const Tile<T>& t) {
  for (int r = 0; r < t.rows; r++) {
    const T* src = s + r * NR;
    if (!t.last) {
      T* p = t.P + (ptrdiff_t)r * t.ldp;
      for (int c = 0; c < t.cols; c++) p[c] = src[c];
    } else if (t.accumulate) {
      T* c_ = t.C + (ptrdiff_t)r * t.ldc;
      for (int c = 0; c < t.cols; c++) c_[c] = c_[c] + src[c];
    } else {
      T* c_ = t.C + (ptrdiff_t)r * t.ldc;
      for (int c = 0; c < t.cols; c++) c_[c] = src[c];
    }
  }
}

template <typename T, int MR, int NR>
void kernel_portable(int kc, const T* a, ptrdiff_t ars, ptrdiff_t acs, const T* b, const Tile<T>& t) {
  T s[MR * NR];
  load_partial<T, MR, NR>(s, t);
  for (int k = 0; k < kc; k++) {
    for (int r = 0; r < MR; r++) {
      const T ar = a[r * ars];
      for (int c = 0; c < NR; c++) s[r * NR + c] = std::fma(ar, b[c], s[r * NR + c]);
    }
    a += acs;
    b += NR;
  }
  store_sums<T, NR>(s, t);
}

#ifdef LFMOE_X86
// 6 x 16 floats: per k two loads of B, six broadcasts of A, twelve FMAs in 12 accumulators.
__attribute__((target("avx2,fma"))) void kernel_avx2_f32(int kc, const float* a, ptrdiff_t ars, ptrdiff_t acs,
                                                         const float* b, const Tile<float>& t) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  const bool full = t.rows == 6 && t.cols == 16;
  alignas(32) float s[6 * 16];
  if (t.first) {
    c00 = _mm256_setzero_ps(); c01 = c00; c10 = c00; c11 = c00; c20 = c00; c21 = c00;
    c30 = c00; c31 = c00; c40 = c00; c41 = c00; c50 = c00; c51 = c00;
  } else {
    const float* p = t.P;
    ptrdiff_t ld = t.ldp;
    if (!full) {
      load_partial<float, 6, 16>(s, t);
      p = s;
      ld = 16;
    }
    c00 = _mm256_loadu_ps(p + 0 * ld); c01 = _mm256_loadu_ps(p + 0 * ld + 8);
    c10 = _mm256_loadu_ps(p + 1 * ld); c11 = _mm256_loadu_ps(p + 1 * ld + 8);
    c20 = _mm256_loadu_ps(p + 2 * ld); c21 = _mm256_loadu_ps(p + 2 * ld + 8);
    c30 = _mm256_loadu_ps(p + 3 * ld); c31 = _mm256_loadu_ps(p + 3 * ld + 8);
    c40 = _mm256_loadu_ps(p + 4 * ld); c41 = _mm256_loadu_ps(p + 4 * ld + 8);
    c50 = _mm256_loadu_ps(p + 5 * ld); c51 = _mm256_loadu_ps(p + 5 * ld + 8);
  }
  const float* a3 = a + 3 * ars;  // rows 0-2 at a + {0,1,2}*ars, rows 3-5 at a3 + {0,1,2}*ars
  for (int k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 ar = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(ar, b0, c00); c01 = _mm256_fmadd_ps(ar, b1, c01);
    ar = _mm256_broadcast_ss(a + ars);
    c10 = _mm256_fmadd_ps(ar, b0, c10); c11 = _mm256_fmadd_ps(ar, b1, c11);
    ar = _mm256_broadcast_ss(a + 2 * ars);
    c20 = _mm256_fmadd_ps(ar, b0, c20); c21 = _mm256_fmadd_ps(ar, b1, c21);
    ar = _mm256_broadcast_ss(a3);
    c30 = _mm256_fmadd_ps(ar, b0, c30); c31 = _mm256_fmadd_ps(ar, b1, c31);
    ar = _mm256_broadcast_ss(a3 + ars);
    c40 = _mm256_fmadd_ps(ar, b0, c40); c41 = _mm256_fmadd_ps(ar, b1, c41);
    ar = _mm256_broadcast_ss(a3 + 2 * ars);
    c50 = _mm256_fmadd_ps(ar, b0, c50); c51 = _mm256_fmadd_ps(ar, b1, c51);
    a += acs;
    a3 += acs;
    b += 16;
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (full) {
    for (int r = 0; r < 6; r++) {
      if (!t.last) {
        float* p = t.P + (ptrdiff_t)r * t.ldp;
        _mm256_storeu_ps(p, acc[r][0]);
        _mm256_storeu_ps(p + 8, acc[r][1]);
      } else if (t.accumulate) {
        float* c = t.C + (ptrdiff_t)r * t.ldc;
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), acc[r][0]));
        _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), acc[r][1]));
      } else {
        float* c = t.C + (ptrdiff_t)r * t.ldc;
        _mm256_storeu_ps(c, acc[r][0]);
        _mm256_storeu_ps(c + 8, acc[r][1]);
      }
    }
    return;
  }
  for (int r = 0; r < 6; r++) {
    _mm256_store_ps(s + r * 16, acc[r][0]);
    _mm256_store_ps(s + r * 16 + 8, acc[r][1]);
  }
  store_sums<float, 16>(s, t);
}

// 6 x 8 doubles (the gradient checks' precision): the same loop, four lanes per register.
__attribute__((target("avx2,fma"))) void kernel_avx2_f64(int kc, const double* a, ptrdiff_t ars, ptrdiff_t acs,
                                                         const double* b, const Tile<double>& t) {
  alignas(32) double s[6 * 8];
  load_partial<double, 6, 8>(s, t);
  __m256d acc[6][2];
  for (int r = 0; r < 6; r++) {
    acc[r][0] = _mm256_load_pd(s + r * 8);
    acc[r][1] = _mm256_load_pd(s + r * 8 + 4);
  }
  for (int k = 0; k < kc; k++) {
    const __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
      const __m256d ar = _mm256_broadcast_sd(a + r * ars);
      acc[r][0] = _mm256_fmadd_pd(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_pd(ar, b1, acc[r][1]);
    }
    a += acs;
    b += 8;
  }
  for (int r = 0; r < 6; r++) {
    _mm256_store_pd(s + r * 8, acc[r][0]);
    _mm256_store_pd(s + r * 8 + 4, acc[r][1]);
  }
  store_sums<double, 8>(s, t);
}

// 12 x 32 floats: per k two loads of B, twelve broadcasts of A (from memory, folded into the FMAs)
// and 24 FMAs into 24 accumulators, named one by one so that they stay in registers.
#define LF_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define LF_DECL(r) __m512 c##r##a, c##r##b;
#define LF_ZERO(r) c##r##a = _mm512_setzero_ps(); c##r##b = c##r##a;
#define LF_LOAD(r) c##r##a = _mm512_loadu_ps(p + r * ld); c##r##b = _mm512_loadu_ps(p + r * ld + 16);
// row r's A value is at a + r*ars: through one of four row pointers (rows 0, 3, 6, 9) plus 0, 1 or 2 rows
#define LF_FMA(r, base, i)                                    \
  {                                                           \
    const __m512 ar = _mm512_set1_ps(base[i * ars]);          \
    c##r##a = _mm512_fmadd_ps(ar, b0, c##r##a);               \
    c##r##b = _mm512_fmadd_ps(ar, b1, c##r##b);               \
  }
#define LF_SPILL(r) _mm512_store_ps(s + r * 32, c##r##a); _mm512_store_ps(s + r * 32 + 16, c##r##b);
#define LF_STORE(r) _mm512_storeu_ps(t.P + r * t.ldp, c##r##a); _mm512_storeu_ps(t.P + r * t.ldp + 16, c##r##b);
#define LF_ADD(r)                                                                         \
  {                                                                                       \
    float* c = t.C + r * t.ldc;                                                           \
    _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), c##r##a));                      \
    _mm512_storeu_ps(c + 16, _mm512_add_ps(_mm512_loadu_ps(c + 16), c##r##b));            \
  }
#define LF_PUT(r) _mm512_storeu_ps(t.C + r * t.ldc, c##r##a); _mm512_storeu_ps(t.C + r * t.ldc + 16, c##r##b);

__attribute__((target("avx512f"))) void kernel_avx512_f32(int kc, const float* a, ptrdiff_t ars, ptrdiff_t acs,
                                                           const float* b, const Tile<float>& t) {
  LF_ROWS(LF_DECL)
  const bool full = t.rows == 12 && t.cols == 32;
  alignas(64) float s[12 * 32];
  if (t.first) {
    LF_ROWS(LF_ZERO)
  } else {
    const float* p = t.P;
    ptrdiff_t ld = t.ldp;
    if (!full) {
      load_partial<float, 12, 32>(s, t);
      p = s;
      ld = 32;
    }
    LF_ROWS(LF_LOAD)
  }
  if (t.last && full)  // the tile's 24 lines of C, requested now so that the misses overlap the FMAs
    for (int r = 0; r < 12; r++) {
      _mm_prefetch((const char*)(t.C + r * t.ldc), _MM_HINT_T0);
      _mm_prefetch((const char*)(t.C + r * t.ldc + 16), _MM_HINT_T0);
    }
  const float *a0 = a, *a3 = a + 3 * ars, *a6 = a + 6 * ars, *a9 = a + 9 * ars;
  for (int k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    LF_FMA(0, a0, 0) LF_FMA(1, a0, 1) LF_FMA(2, a0, 2)
    LF_FMA(3, a3, 0) LF_FMA(4, a3, 1) LF_FMA(5, a3, 2)
    LF_FMA(6, a6, 0) LF_FMA(7, a6, 1) LF_FMA(8, a6, 2)
    LF_FMA(9, a9, 0) LF_FMA(10, a9, 1) LF_FMA(11, a9, 2)
    a0 += acs;
    a3 += acs;
    a6 += acs;
    a9 += acs;
    b += 32;
  }
  if (full) {
    if (!t.last) {
      LF_ROWS(LF_STORE)
    } else if (t.accumulate) {
      LF_ROWS(LF_ADD)
    } else {
      LF_ROWS(LF_PUT)
    }
    return;
  }
  LF_ROWS(LF_SPILL)
  store_sums<float, 32>(s, t);
}
#undef LF_ROWS
#undef LF_DECL
#undef LF_ZERO
#undef LF_LOAD
#undef LF_FMA
#undef LF_SPILL
#undef LF_STORE
#undef LF_ADD
#undef LF_PUT

#endif  // LFMOE_X86

// ------------------------------------------------------------------------------- kernel selection
enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2 };

Isa detect_best() {
#ifdef LFMOE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  return Isa::avx2;  // vector code runs at all only where simd_enabled(): AVX2 and FMA are there
#else
  return Isa::portable;
#endif
}
const Isa g_best = detect_best();
std::atomic<int> g_cap{(int)Isa::avx512};

Isa active_isa() {
  if (!simd_enabled()) return Isa::portable;
  const int cap = g_cap.load(std::memory_order_relaxed);
  return (Isa)((int)g_best < cap ? (int)g_best : cap);
}

template <typename T> using KernelFn = void (*)(int, const T*, ptrdiff_t, ptrdiff_t, const T*, const Tile<T>&);

// Per-thread buffers, grown on demand and kept: no allocation once the largest shape ran.
template <typename T> T* scratch(std::vector<T>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Products with nothing to sum: zeros, or nothing to add. Returns true when the product is done.
template <typename T> bool trivial(T* C, ptrdiff_t ldc, int M, int N, int K, bool accumulate) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0) return false;
  if (!accumulate)
    for (int m = 0; m < M; m++)
      for (int j = 0; j < N; j++) C[(ptrdiff_t)m * ldc + j] = T(0);
  return true;
}

// ------------------------------------------------------------------------------------ one product
template <typename T, int MR, int NR, int KC, KernelFn<T> KERNEL>
void gemm_impl(T* C, ptrdiff_t ldc, MatView<T> A, MatView<T> B, int M, int N, int K, bool accumulate) {
  // A row block: about 72 rows of A pass each B panel (in L1). A wide C (the LM head's 4096 columns)
  // takes 24: a task writes a line of C in each of its rows, and 72 rows of scattered store misses at
  // once cost a third of the speed there (measured), while with few columns C stays in cache.
  const int MC_PANELS = N >= 1024 ? 24 / MR : 72 / MR;
  constexpr int NC_PANELS = kPackedBBytes / ((int64_t)KC * NR * sizeof(T)) > 0
                                ? (int)(kPackedBBytes / ((int64_t)KC * NR * sizeof(T)))
                                : 1;
  const int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;  // row panels, column panels
  const int kblocks = (K + KC - 1) / KC;
  const int kc_max = K < KC ? K : KC;
  const int nblocks = (np + NC_PANELS - 1) / NC_PANELS;
  const int np_max = np < NC_PANELS ? np : NC_PANELS;
  static thread_local std::vector<T> abuf, bbuf, pbuf;
  // A in row-major order is read in place by the micro-kernel (MR row pointers); other layouts
  // (dout^T in a weight gradient) are packed, one K-block at a time.
  const bool direct_a = A.cs == 1;
  T* Ap = direct_a ? nullptr : scratch(abuf, (size_t)mp * MR * kc_max);
  T* Bp = scratch(bbuf, (size_t)np_max * NR * kc_max);
  // Partial sums between K-blocks: in C itself, unless C's old values are still needed.
  T* P = C;
  ptrdiff_t ldp = ldc;
  if (accumulate && kblocks > 1) {
    P = scratch(pbuf, (size_t)M * N);
    ldp = N;
  }
  const int mb = (mp + MC_PANELS - 1) / MC_PANELS;  // row blocks of MC_PANELS panels
  const bool par = (int64_t)M * N * K >= kParallelMin;
  (void)par;  // used by the OpenMP pragma only

#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
  for (int nb = 0; nb < nblocks; nb++) {  // every thread runs these loops; the omp fors share the work
    const int jb0 = nb * NC_PANELS, jb1 = jb0 + NC_PANELS < np ? jb0 + NC_PANELS : np;
    const int64_t tasks = (int64_t)mb * (jb1 - jb0);  // (row block, column panel)
    for (int kb = 0; kb < kblocks; kb++) {
      const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
      // packed A holds every row panel of one K-block: with a single K-block the later column blocks reuse it
      if (!direct_a && (nb == 0 || kblocks > 1)) {
        if (A.rs == 1) {  // groups of 8 panels: 8*MR consecutive values of each source row at a time
          const int groups = (mp + 7) / 8;
          OMP_FOR
          for (int g = 0; g < groups; g++) pack_a_transposed<T, MR>(Ap, A, g * 8, g * 8 + 8 < mp ? g * 8 + 8 : mp, M, k0, kc);
        } else {
          OMP_FOR
          for (int i = 0; i < mp; i++) pack_a_panel<T, MR>(Ap + (size_t)i * MR * kc, A, i * MR, M, k0, kc);
        }
      }
      OMP_FOR
      for (int j = jb0; j < jb1; j++) pack_b_panel<T, NR>(Bp + (size_t)(j - jb0) * NR * kc, B, j * NR, N, k0, kc);
      // a task: one column panel of B (kept in L1) against the row panels of one row block (in L2)
      alignas(64) T edge[MR * KC];  // this thread's copy of a partial row panel
      int edge_m0 = -1;             // ... of rows edge_m0.. of this K-block (its tasks reuse it)
      OMP_FOR
      for (int64_t task = 0; task < tasks; task++) {
        const int rb = (int)(task / (jb1 - jb0)), j = jb0 + (int)(task % (jb1 - jb0));
        const int j0 = j * NR, cols = N - j0 < NR ? N - j0 : NR;
        const int i_end = (rb + 1) * MC_PANELS < mp ? (rb + 1) * MC_PANELS : mp;
        for (int i = rb * MC_PANELS; i < i_end; i++) {
          const int m0 = i * MR, rows = M - m0 < MR ? M - m0 : MR;
          const Tile<T> t{C + (ptrdiff_t)m0 * ldc + j0, ldc, P + (ptrdiff_t)m0 * ldp + j0, ldp, rows, cols,
                          kb == 0, kb == kblocks - 1, accumulate};
          const T* ap = direct_a ? nullptr : Ap + (size_t)i * MR * kc;  // packed: (r, k) at ap[k*MR + r]
          ptrdiff_t ars = 1, acs = MR;
          if (direct_a && rows == MR) {  // row-major A read in place: (r, k) at ap[r*lda + k]
            ap = A.p + (ptrdiff_t)m0 * A.rs + k0;
            ars = A.rs;
            acs = 1;
          } else if (direct_a) {  // the last, partial panel: packed with zero rows, once per thread
            if (edge_m0 != m0) pack_a_panel<T, MR>(edge, A, m0, M, k0, kc);
            edge_m0 = m0;
            ap = edge;
          }
          KERNEL(kc, ap, ars, acs, Bp + (size_t)(j - jb0) * NR * kc, t);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ a group of products
// Work item: (problem, column panel). Its thread packs that panel of B one K-block at a time and runs
// it against every row panel of the problem's A, so no packed data is shared and no thread waits
// for another until the end. A is read in place when row-major, else packed; a thread packs a
// problem's A once (all K-blocks, pack_problem_a) for the run of that problem's items it owns.
struct Item {
  int p, j;
};

// What of q's A the kernel cannot read in place, packed into buf for every K-block: all row panels
// (block kb's panel i at mp*MR*k0 + i*MR*kc) when A is not row-major, else only the partial last
// row panel (block kb's at kb*MR*KC) when M is not a multiple of MR.
template <typename T, int MR, int KC> void pack_problem_a(const GemmProblem<T>& q, std::vector<T>& buf) {
  const int M = q.M, K = q.K, mp = (M + MR - 1) / MR, kblocks = (K + KC - 1) / KC;
  if (q.A.cs != 1) {
    T* a = scratch(buf, (size_t)mp * MR * K);
    for (int kb = 0; kb < kblocks; kb++) {
      const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
      for (int i = 0; i < mp; i++) pack_a_panel<T, MR>(a + (size_t)mp * MR * k0 + (size_t)i * MR * kc, q.A, i * MR, M, k0, kc);
    }
  } else if (M % MR != 0) {
    T* a = scratch(buf, (size_t)kblocks * MR * KC);
    for (int kb = 0; kb < kblocks; kb++) {
      const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
      pack_a_panel<T, MR>(a + (size_t)kb * MR * KC, q.A, (mp - 1) * MR, M, k0, kc);
    }
  }
}

template <typename T, int MR, int NR, int KC, KernelFn<T> KERNEL>
void run_item(const GemmProblem<T>& q, int j, T* bpanel, const T* apacked, std::vector<T>& pbuf) {
  const int M = q.M, N = q.N, K = q.K;
  const int j0 = j * NR, cols = N - j0 < NR ? N - j0 : NR;
  const int kblocks = (K + KC - 1) / KC;
  const bool direct_a = q.A.cs == 1;
  T* P = q.C + j0;  // partial sums between K-blocks: in C, unless C's old values are still needed
  ptrdiff_t ldp = q.ldc;
  if (q.accumulate && kblocks > 1) {
    P = scratch(pbuf, (size_t)M * NR);
    ldp = NR;
  }
  for (int kb = 0; kb < kblocks; kb++) {
    const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
    pack_b_panel<T, NR>(bpanel, q.B, j0, N, k0, kc);
    const int mp = (M + MR - 1) / MR;
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int rows = M - m0 < MR ? M - m0 : MR;
      const Tile<T> t{q.C + (ptrdiff_t)m0 * q.ldc + j0, q.ldc, P + (ptrdiff_t)m0 * ldp, ldp, rows, cols,
                      kb == 0, kb == kblocks - 1, q.accumulate};
      const T* ap;  // see pack_problem_a
      ptrdiff_t ars = 1, acs = MR;
      if (direct_a && rows == MR) {
        ap = q.A.p + (ptrdiff_t)m0 * q.A.rs + k0;
        ars = q.A.rs;
        acs = 1;
      } else if (direct_a) {
        ap = apacked + (size_t)kb * MR * KC;
      } else {
        ap = apacked + (size_t)mp * MR * k0 + (size_t)(m0 / MR) * MR * kc;
      }
      KERNEL(kc, ap, ars, acs, bpanel, t);
    }
  }
}

template <typename T, int MR, int NR, int KC, KernelFn<T> KERNEL>
void gemm_grouped_impl(const GemmProblem<T>* probs, int count) {
  static thread_local std::vector<Item> items;  // the calling thread's list, kept between calls
  static thread_local std::vector<double> cost_end;
  items.clear();
  cost_end.clear();
  double total = 0;
  for (int p = 0; p < count; p++) {
    const GemmProblem<T>& q = probs[p];
    if (trivial(q.C, q.ldc, q.M, q.N, q.K, q.accumulate)) continue;
    const int np = (q.N + NR - 1) / NR;
    const double c = (double)q.M * q.K * NR + (double)q.K * NR * 4;  // multiply-adds, plus packing B
    for (int j = 0; j < np; j++) {
      items.push_back({p, j});
      total += c;
      cost_end.push_back(total);
    }
  }
  const int n_items = (int)items.size();
  if (n_items == 0) return;
  // (inside the parallel region the names items and cost_end would be each thread's own, empty, lists)
  const Item* item = items.data();
  const double* ends = cost_end.data();
  const bool par = total * 1.0 >= (double)kParallelMin && n_items > 1;
  (void)par;
#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
  {
#ifdef _OPENMP
    const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
#else
    const int nth = 1, tid = 0;
#endif
    static thread_local std::vector<T> bbuf, abuf, pbuf;
    T* bpanel = scratch(bbuf, (size_t)KC * NR);
    // thread tid runs the items whose cost interval ends in (total*tid/nth, total*(tid+1)/nth]: a
    // contiguous run of about equal cost (the split changes the speed only, never a bit)
    const double lo = total * tid / nth, hi = total * (tid + 1) / nth;
    int packed_p = -1;  // the problem whose A is in abuf (this call only: buffers get reused)
    for (int it = 0; it < n_items; it++) {
      const double e = ends[it];
      if (e <= lo || (e > hi && tid + 1 < nth)) continue;
      const int p = item[it].p;
      if (p != packed_p) {
        pack_problem_a<T, MR, KC>(probs[p], abuf);
        packed_p = p;
      }
      run_item<T, MR, NR, KC, KERNEL>(probs[p], item[it].j, bpanel, abuf.data(), pbuf);
    }
  }
}

// ------------------------------------------------------------------------------------------ dispatch
// K-block of the AVX-512 kernel: a packed B panel of 256 x 32 floats (32 KiB) and an A panel of
// 12 x 256 (12 KiB) share the 48 KiB L1 (512 and 1024 measured no faster, sometimes slower).
constexpr int kKc512 = 256;
template <typename T> struct Dispatch;
template <> struct Dispatch<float> {
  static void one(Isa isa, float* C, ptrdiff_t ldc, MatView<float> A, MatView<float> B, int M, int N, int K,
                  bool acc) {
#ifdef LFMOE_X86
    if (isa == Isa::avx512) return gemm_impl<float, 12, 32, kKc512, kernel_avx512_f32>(C, ldc, A, B, M, N, K, acc);
    if (isa == Isa::avx2) return gemm_impl<float, 6, 16, 256, kernel_avx2_f32>(C, ldc, A, B, M, N, K, acc);
#endif
    (void)isa;
    gemm_impl<float, 6, 16, 256, kernel_portable<float, 6, 16>>(C, ldc, A, B, M, N, K, acc);
  }
  static void group(Isa isa, const GemmProblem<float>* p, int n) {
#ifdef LFMOE_X86
    if (isa == Isa::avx512) return gemm_grouped_impl<float, 12, 32, kKc512, kernel_avx512_f32>(p, n);
    if (isa == Isa::avx2) return gemm_grouped_impl<float, 6, 16, 256, kernel_avx2_f32>(p, n);
#endif
    (void)isa;
    gemm_grouped_impl<float, 6, 16, 256, kernel_portable<float, 6, 16>>(p, n);
  }
};
template <> struct Dispatch<double> {  // the gradient checks' precision: AVX2 at most
  static void one(Isa isa, double* C, ptrdiff_t ldc, MatView<double> A, MatView<double> B, int M, int N, int K,
                  bool acc) {
#ifdef LFMOE_X86
    if (isa != Isa::portable) return gemm_impl<double, 6, 8, 256, kernel_avx2_f64>(C, ldc, A, B, M, N, K, acc);
#endif
    (void)isa;
    gemm_impl<double, 6, 8, 256, kernel_portable<double, 6, 8>>(C, ldc, A, B, M, N, K, acc);
  }
  static void group(Isa isa, const GemmProblem<double>* p, int n) {
#ifdef LFMOE_X86
    if (isa != Isa::portable) return gemm_grouped_impl<double, 6, 8, 256, kernel_avx2_f64>(p, n);
#endif
    (void)isa;
    gemm_grouped_impl<double, 6, 8, 256, kernel_portable<double, 6, 8>>(p, n);
  }
};

}  // namespace

template <typename T> void gemm(T* C, ptrdiff_t ldc, MatView<T> A, MatView<T> B, int M, int N, int K, bool accumulate) {
  if (trivial(C, ldc, M, N, K, accumulate)) return;
  Dispatch<T>::one(active_isa(), C, ldc, A, B, M, N, K, accumulate);
}

template <typename T> void gemm_grouped(const GemmProblem<T>* problems, int count) {
  Dispatch<T>::group(active_isa(), problems, count);
}

const char* gemm_kernel_name() {
  switch (active_isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2+fma";
    default: return "portable";
  }
}

bool avx512_enabled() { return active_isa() == Isa::avx512; }

bool set_gemm_kernel_cap(const char* name) {
  Isa cap;
  if (!std::strcmp(name, "avx512")) cap = Isa::avx512;
  else if (!std::strcmp(name, "avx2+fma")) cap = Isa::avx2;
  else if (!std::strcmp(name, "portable")) cap = Isa::portable;
  else return false;
  g_cap.store((int)cap, std::memory_order_relaxed);
  return true;
}

template void gemm<float>(float*, ptrdiff_t, MatView<float>, MatView<float>, int, int, int, bool);
template void gemm<double>(double*, ptrdiff_t, MatView<double>, MatView<double>, int, int, int, bool);
template void gemm_grouped<float>(const GemmProblem<float>*, int);
template void gemm_grouped<double>(const GemmProblem<double>*, int);

}  // namespace ref
