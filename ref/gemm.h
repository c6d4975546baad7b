// gemm.h — the one matrix product every matmul of the CPU reference goes through.
//
//   C (M,N) = A (M,K) @ B (K,N)          (accumulate = false)
//   C (M,N) = C + A (M,K) @ B (K,N)      (accumulate = true, like a BLAS GEMM with beta = 1)
//
// A and B are strided views, so transposed operands (w^T in a Linear layer, dout^T in its weight
// gradient) are read in place: nothing is transposed or allocated per call (the packing buffers are
// per-thread and only grow).
//
// Exact summation order (docs/MODEL.md section 9). Every element is
//     s = 0;  for k = 0, 1, ..., K-1:  s = fma(A[m][k], B[k][n], s);   C[m][n] = s  or  C[m][n] + s
// one fused multiply-add per term, in increasing k, in one accumulator per element. Blocking,
// packing, the register tile, the vector width and the thread count only decide which elements
// are computed together, never the order of a sum, so the result is bitwise identical
//   - for any number of threads (OpenMP splits independent output tiles),
//   - between the AVX-512, AVX2+FMA and portable micro-kernels (std::fma is the same operation as
//     a hardware FMA lane of any width), so a binary built with NATIVE=0, or run on a CPU without
//     AVX2, or with LFMOE_SIMD=0 in the environment (ref/vmath.h), gives the same bits as the
//     vector kernels;
//   - between gemm() called once per product and gemm_grouped() on the list of products.
#pragma once
#include <cstddef>  // ptrdiff_t

namespace ref {

// A strided read-only matrix view: element (r, c) is p[r * rs + c * cs].
template <typename T> struct MatView {
  const T* p;
  ptrdiff_t rs, cs;
};
template <typename T> MatView<T> row_major(const T* p, ptrdiff_t cols) { return {p, cols, 1}; }
template <typename T> MatView<T> transposed(const T* p, ptrdiff_t cols) { return {p, 1, cols}; }  // of a row-major (.., cols)

// C is row-major with leading dimension ldc (>= N). M, N, K >= 0 (K = 0 writes zeros / adds nothing).
template <typename T> void gemm(T* C, ptrdiff_t ldc, MatView<T> A, MatView<T> B, int M, int N, int K, bool accumulate);

// One product of a group: the arguments of one gemm() call.
template <typename T> struct GemmProblem {
  T* C;
  ptrdiff_t ldc;
  MatView<T> A, B;
  int M, N, K;
  bool accumulate;
};

// Runs count products that write DISJOINT outputs (no two problems may share an element of C, and
// no problem may read another's C) in one parallel region: the same bits as calling gemm() on each
// in turn. Meant for many small products (the routed experts: one per expert), where one parallel
// region per product and one packed B shared between threads cost more than the products: here a
// work item is one column panel of one problem, packed and computed by the thread that owns it, and
// threads take contiguous runs of items of about equal cost, with no barrier until the end.
template <typename T> void gemm_grouped(const GemmProblem<T>* problems, int count);

// The micro-kernel in use: "avx512", "avx2+fma" or "portable" (ref::simd_enabled() decides whether
// vector code runs at all, ref/vmath.h; then the widest one this CPU has, up to the cap below).
const char* gemm_kernel_name();

// Caps the kernel used by gemm and gemm_grouped (and the AVX-512 code of the loss, ref/ops.cpp) at
// "avx512" (no cap, the default), "avx2+fma" or "portable"; returns false (and changes nothing)
// for any other name. For tests and benchmarks (the bits never depend on it); not thread-safe
// against running products.
bool set_gemm_kernel_cap(const char* name);

// True when AVX-512 code may run: simd_enabled(), the CPU has AVX-512F, and the cap allows it.
bool avx512_enabled();

}  // namespace ref
