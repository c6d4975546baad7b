// gemm.cpp — packed, cache-blocked GEMM with an AVX2+FMA micro-kernel and a portable one that gives
// the same bits (ref/gemm.h states the summation order both follow).
//
// Structure (the Goto/BLIS layout). For each K-block of KC values of k, in increasing order:
//   1. pack A into row panels of MR rows: panel i holds A[i*MR + r][k] at [k*MR + r] (zero rows pad
//      the last panel), so the micro-kernel reads MR consecutive values per k;
//   2. pack B into column panels of NR columns: panel j holds B[k][j*NR + c] at [k*NR + c] (zero
//      columns pad the last one), NR consecutive values per k, i.e. two (float) vectors;
//   3. for each (row block of MC_PANELS panels, column panel) task, the micro-kernel runs the MR x NR
//      tiles in registers over the K-block, continuing each element's running sum from the block
//      before (kept in C, or in a side buffer when C's old values are still to be added).
// Threads split the packing loops and step 3's tasks; every element is computed by one thread in
// one fixed order, so neither the thread count nor the blocking ever changes a bit.
#include "ref/gemm.h"

#include "ref/vmath.h"  // simd_enabled: the run-time choice of vector code

#include <cmath>    // std::fma
#include <cstdint>  // int64_t
#include <vector>   // std::vector (per-thread packing buffers)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LFMOE_X86 1
#endif

#ifdef _OPENMP
#define OMP_FOR _Pragma("omp for schedule(static)")
#else
#define OMP_FOR
#endif

namespace ref {
namespace {

// Register tile: MR rows x NR columns. For float, 6 x 16 = 12 AVX2 accumulators (+ 2 for B and 1
// broadcast of A: 15 of the 16 ymm registers); for double, 6 x 8 (the same 12 registers).
constexpr int MR = 6;
template <typename T> constexpr int nr() { return 64 / (int)sizeof(T); }  // 16 floats, 8 doubles
// K-block: a packed B panel of KC x NR (16 KiB for float) stays in L1 while MC_PANELS row panels of
// packed A (MC_PANELS * MR x KC, 36 KiB) stream from L2 past it.
constexpr int KC = 256;
constexpr int MC_PANELS = 6;
// Below this many multiply-adds the product runs on the calling thread (a parallel region costs more).
constexpr int64_t kParallelMin = 1 << 16;

// ---------------------------------------------------------------------------------------- packing
// Packed A for one K-block [k0, k0+kc): panel i holds A[i*MR + r][k0 + k] at [i*MR*kc + k*MR + r].
template <typename T> void pack_a_panel(T* dst, MatView<T> A, int m0, int M, int k0, int kc) {
  const int rows = M - m0 < MR ? M - m0 : MR;
  for (int k = 0; k < kc; k++) {
    const T* src = A.p + (ptrdiff_t)m0 * A.rs + (ptrdiff_t)(k0 + k) * A.cs;
    int r = 0;
    for (; r < rows; r++) dst[r] = src[(ptrdiff_t)r * A.rs];
    for (; r < MR; r++) dst[r] = T(0);
    dst += MR;
  }
}

// Packed B for one K-block: panel j holds B[k0 + k][j*NR + c] at [j*NR*kc + k*NR + c].
template <typename T> void pack_b_panel(T* dst, MatView<T> B, int j0, int N, int k0, int kc) {
  constexpr int NR = nr<T>();
  const int cols = N - j0 < NR ? N - j0 : NR;
  if (B.cs == 1 && cols == NR) {  // row-major B: one contiguous run of NR per k
    for (int k = 0; k < kc; k++) {
      const T* src = B.p + (ptrdiff_t)(k0 + k) * B.rs + j0;
      for (int c = 0; c < NR; c++) dst[c] = src[c];
      dst += NR;
    }
    return;
  }
  if (B.rs == 1) {  // B stored transposed (w^T): each column is a contiguous source row
    for (int c = 0; c < NR; c++) {
      if (c < cols) {
        const T* src = B.p + (ptrdiff_t)(j0 + c) * B.cs + k0;
        for (int k = 0; k < kc; k++) dst[k * NR + c] = src[k];
      } else {
        for (int k = 0; k < kc; k++) dst[k * NR + c] = T(0);
      }
    }
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

template <typename T> inline void load_partial(T* s, const Tile<T>& t) {
  constexpr int NR = nr<T>();
  for (int i = 0; i < MR * NR; i++) s[i] = T(0);
  if (t.first) return;
  for (int r = 0; r < t.rows; r++)
    for (int c = 0; c < t.cols; c++) s[r * NR + c] = t.P[(ptrdiff_t)r * t.ldp + c];
}

template <typename T> inline void store_sums(const T* s, const Tile<T>& t) {
  constexpr int NR = nr<T>();
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

template <typename T>
void kernel_portable(int kc, const T* a, ptrdiff_t ars, ptrdiff_t acs, const T* b, const Tile<T>& t) {
  constexpr int NR = nr<T>();
  T s[MR * NR];
  load_partial(s, t);
  for (int k = 0; k < kc; k++) {
    for (int r = 0; r < MR; r++) {
      const T ar = a[r * ars];
      for (int c = 0; c < NR; c++) s[r * NR + c] = std::fma(ar, b[c], s[r * NR + c]);
    }
    a += acs;
    b += NR;
  }
  store_sums(s, t);
}

#ifdef LFMOE_X86
// 6 x 16 floats: per k two loads of B, six broadcasts of A, twelve FMAs in 12 accumulators.
__attribute__((target("avx2,fma"))) void kernel_avx2_f32(int kc, const float* a, ptrdiff_t ars, ptrdiff_t acs,
                                                         const float* b, const Tile<float>& t) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  const bool full = t.rows == MR && t.cols == 16;
  alignas(32) float s[MR * 16];
  if (t.first) {
    c00 = _mm256_setzero_ps(); c01 = c00; c10 = c00; c11 = c00; c20 = c00; c21 = c00;
    c30 = c00; c31 = c00; c40 = c00; c41 = c00; c50 = c00; c51 = c00;
  } else {
    const float* p = t.P;
    ptrdiff_t ld = t.ldp;
    if (!full) {
      load_partial(s, t);
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
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (full) {
    for (int r = 0; r < MR; r++) {
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
  for (int r = 0; r < MR; r++) {
    _mm256_store_ps(s + r * 16, acc[r][0]);
    _mm256_store_ps(s + r * 16 + 8, acc[r][1]);
  }
  store_sums(s, t);
}

// 6 x 8 doubles (the gradient checks' precision): the same loop, four lanes per register.
__attribute__((target("avx2,fma"))) void kernel_avx2_f64(int kc, const double* a, ptrdiff_t ars, ptrdiff_t acs,
                                                         const double* b, const Tile<double>& t) {
  alignas(32) double s[MR * 8];
  load_partial(s, t);
  __m256d acc[MR][2];
  for (int r = 0; r < MR; r++) {
    acc[r][0] = _mm256_load_pd(s + r * 8);
    acc[r][1] = _mm256_load_pd(s + r * 8 + 4);
  }
  for (int k = 0; k < kc; k++) {
    const __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const __m256d ar = _mm256_broadcast_sd(a + r * ars);
      acc[r][0] = _mm256_fmadd_pd(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_pd(ar, b1, acc[r][1]);
    }
    a += acs;
    b += 8;
  }
  for (int r = 0; r < MR; r++) {
    _mm256_store_pd(s + r * 8, acc[r][0]);
    _mm256_store_pd(s + r * 8 + 4, acc[r][1]);
  }
  store_sums(s, t);
}

#endif

bool use_vector() { return simd_enabled(); }  // ref/vmath.h: CPU has AVX2+FMA and LFMOE_SIMD != 0

template <typename T> struct Kernel;
template <> struct Kernel<float> {
  using Fn = void (*)(int, const float*, ptrdiff_t, ptrdiff_t, const float*, const Tile<float>&);
  static Fn get() {
#ifdef LFMOE_X86
    if (use_vector()) return kernel_avx2_f32;
#endif
    return kernel_portable<float>;
  }
};
template <> struct Kernel<double> {
  using Fn = void (*)(int, const double*, ptrdiff_t, ptrdiff_t, const double*, const Tile<double>&);
  static Fn get() {
#ifdef LFMOE_X86
    if (use_vector()) return kernel_avx2_f64;
#endif
    return kernel_portable<double>;
  }
};

// Per-thread packing buffers, grown on demand and kept: no allocation once the largest shape ran.
template <typename T> T* scratch(std::vector<T>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace

template <typename T> void gemm(T* C, ptrdiff_t ldc, MatView<T> A, MatView<T> B, int M, int N, int K, bool accumulate) {
  constexpr int NR = nr<T>();
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // empty sums: zeros, or nothing to add
    if (!accumulate)
      for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) C[(ptrdiff_t)m * ldc + j] = T(0);
    return;
  }
  const auto kernel = Kernel<T>::get();
  const int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;  // row panels, column panels
  const int kblocks = (K + KC - 1) / KC;
  const int kc_max = K < KC ? K : KC;
  static thread_local std::vector<T> abuf, bbuf, pbuf;
  // A in row-major order is read in place by the micro-kernel (MR row pointers); other layouts
  // (dout^T in a weight gradient) are packed, one K-block at a time.
  const bool direct_a = A.cs == 1;
  T* Ap = direct_a ? nullptr : scratch(abuf, (size_t)mp * MR * kc_max);
  T* Bp = scratch(bbuf, (size_t)np * NR * kc_max);
  // Partial sums between K-blocks: in C itself, unless C's old values are still needed.
  T* P = C;
  ptrdiff_t ldp = ldc;
  if (accumulate && kblocks > 1) {
    P = scratch(pbuf, (size_t)M * N);
    ldp = N;
  }
  const int mb = (mp + MC_PANELS - 1) / MC_PANELS;  // row blocks of MC_PANELS panels
  const int64_t tasks = (int64_t)mb * np;           // (row block, column panel)
  const bool par = (int64_t)M * N * K >= kParallelMin;
  (void)par;  // used by the OpenMP pragma only

#ifdef _OPENMP
#pragma omp parallel if (par)
#endif
  for (int kb = 0; kb < kblocks; kb++) {  // every thread runs this loop; the omp fors share the work
    const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
    if (!direct_a) {
      OMP_FOR
      for (int i = 0; i < mp; i++) pack_a_panel(Ap + (size_t)i * MR * kc, A, i * MR, M, k0, kc);
    }
    OMP_FOR
    for (int j = 0; j < np; j++) pack_b_panel(Bp + (size_t)j * NR * kc, B, j * NR, N, k0, kc);
    // a task: one column panel of B (kept in L1) against the row panels of one row block (in L2)
    alignas(64) T edge[MR * KC];  // this thread's copy of a partial row panel
    OMP_FOR
    for (int64_t task = 0; task < tasks; task++) {
      const int rb = (int)(task / np), j = (int)(task % np);
      const int j0 = j * NR, cols = N - j0 < NR ? N - j0 : NR;
      const int i_end = (rb + 1) * MC_PANELS < mp ? (rb + 1) * MC_PANELS : mp;
      for (int i = rb * MC_PANELS; i < i_end; i++) {
        const int m0 = i * MR, rows = M - m0 < MR ? M - m0 : MR;
        const Tile<T> t{C + (ptrdiff_t)m0 * ldc + j0, ldc, P + (ptrdiff_t)m0 * ldp + j0, ldp, rows, cols,
                        kb == 0, kb == kblocks - 1, accumulate};
        const T* ap = Ap + (size_t)i * MR * kc;  // packed: (r, k) at ap[k*MR + r]
        ptrdiff_t ars = 1, acs = MR;
        if (direct_a && rows == MR) {  // row-major A read in place: (r, k) at ap[r*lda + k]
          ap = A.p + (ptrdiff_t)m0 * A.rs + k0;
          ars = A.rs;
          acs = 1;
        } else if (direct_a) {  // the last, partial panel: packed with zero rows
          pack_a_panel(edge, A, m0, M, k0, kc);
          ap = edge;
        }
        kernel(kc, ap, ars, acs, Bp + (size_t)j * NR * kc, t);
      }
    }
  }
}

const char* gemm_kernel_name() { return use_vector() ? "avx2+fma" : "portable"; }

template void gemm<float>(float*, ptrdiff_t, MatView<float>, MatView<float>, int, int, int, bool);
template void gemm<double>(double*, ptrdiff_t, MatView<double>, MatView<double>, int, int, int, bool);

}  // namespace ref
