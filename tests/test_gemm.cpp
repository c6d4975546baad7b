// test_gemm.cpp — the packed GEMM (ref/gemm.h) against its documented summation order, written out
// naively here: s = 0; for k in 0..K-1: s = fma(A[m][k], B[k][n], s). The packed kernel must give
// exactly these bits for every shape (edge tiles included), for strided (transposed) operands, with
// and without accumulation, for 1 and several threads, and with the vector and portable kernels.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ref/gemm.h"
#include "ref/vmath.h"  // set_simd_enabled

namespace {

template <typename T> std::vector<T> random_vec(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = (T)d(g);
  return v;
}

// The order ref/gemm.h documents, one element at a time.
template <typename T>
void naive(T* C, const ref::MatView<T>& A, const ref::MatView<T>& B, int M, int N, int K, bool acc) {
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      T s = 0;
      for (int k = 0; k < K; k++) s = std::fma(A.p[m * A.rs + k * A.cs], B.p[k * B.rs + n * B.cs], s);
      C[(size_t)m * N + n] = acc ? C[(size_t)m * N + n] + s : s;
    }
}

template <typename T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs one shape in all four operand layouts, both accumulate modes; returns the number of mismatches.
template <typename T> int check_shape(int M, int N, int K, unsigned seed) {
  int bad = 0;
  const auto a = random_vec<T>((size_t)M * K, seed), b = random_vec<T>((size_t)K * N, seed + 1);
  const auto c0 = random_vec<T>((size_t)M * N, seed + 2);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int acc = 0; acc < 2; acc++) {
        // the same logical A (M,K) stored row-major (ta = 0) or as the transpose of a (K,M) array
        const ref::MatView<T> A = ta ? ref::transposed(a.data(), M) : ref::row_major(a.data(), K);
        const ref::MatView<T> B = tb ? ref::transposed(b.data(), K) : ref::row_major(b.data(), N);
        std::vector<T> want = c0, got = c0;
        naive(want.data(), A, B, M, N, K, acc);
        ref::gemm(got.data(), N, A, B, M, N, K, acc);
        if (!same_bits(want, got)) {
          ++bad;
          MESSAGE("mismatch M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " acc=" << acc);
        }
      }
  return bad;
}

const int kShapes[][3] = {{1, 1, 1},   {5, 7, 3},    {6, 16, 8},    {7, 17, 9},    {12, 32, 128},
                          {13, 33, 1}, {37, 100, 64}, {64, 16, 128}, {130, 70, 352}, {3, 600, 40}};

}  // namespace

TEST_CASE("gemm: float, every layout and edge tile, bitwise equal to the documented fma order") {
  int bad = 0;
  unsigned seed = 1;
  for (auto& s : kShapes) bad += check_shape<float>(s[0], s[1], s[2], seed += 3);
  CHECK(bad == 0);
}

TEST_CASE("gemm: double, bitwise equal to the documented fma order") {
  int bad = 0;
  unsigned seed = 100;
  for (auto& s : kShapes) bad += check_shape<double>(s[0], s[1], s[2], seed += 3);
  CHECK(bad == 0);
}

TEST_CASE("gemm: the portable kernel gives the vector kernel's bits") {
  const int M = 50, N = 75, K = 200;
  const auto a = random_vec<float>((size_t)M * K, 7), b = random_vec<float>((size_t)K * N, 8);
  std::vector<float> vec((size_t)M * N), por((size_t)M * N);
  ref::set_simd_enabled(true);
  const std::string name = ref::gemm_kernel_name();
  ref::gemm(vec.data(), N, ref::row_major(a.data(), K), ref::transposed(b.data(), K), M, N, K, false);
  ref::set_simd_enabled(false);
  CHECK(std::string(ref::gemm_kernel_name()) == "portable");
  ref::gemm(por.data(), N, ref::row_major(a.data(), K), ref::transposed(b.data(), K), M, N, K, false);
  CHECK(check_shape<float>(23, 41, 77, 9) == 0);  // the portable kernel against the naive order too
  ref::set_simd_enabled(true);
  MESSAGE("best float kernel on this CPU: " << name);
  CHECK(same_bits(vec, por));
}

TEST_CASE("gemm: results do not depend on the thread count") {
#ifdef _OPENMP
  const int M = 300, N = 200, K = 150;
  const auto a = random_vec<float>((size_t)M * K, 11), b = random_vec<float>((size_t)K * N, 12);
  std::vector<float> one((size_t)M * N), many((size_t)M * N);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  ref::gemm(one.data(), N, ref::row_major(a.data(), K), ref::row_major(b.data(), N), M, N, K, false);
  omp_set_num_threads(3);  // more threads than tiles per thread divide evenly
  ref::gemm(many.data(), N, ref::row_major(a.data(), K), ref::row_major(b.data(), N), M, N, K, false);
  omp_set_num_threads(saved);
  CHECK(same_bits(one, many));
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("gemm: K = 0 writes zeros or adds nothing; M or N = 0 touches nothing") {
  std::vector<float> c = {1, 2, 3, 4};
  const float dummy = 5;
  ref::gemm(c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 2, 2, 0, true);
  CHECK(c == std::vector<float>{1, 2, 3, 4});
  ref::gemm(c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 2, 2, 0, false);
  CHECK(c == std::vector<float>{0, 0, 0, 0});
  c = {1, 2, 3, 4};
  ref::gemm(c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 0, 2, 3, false);
  CHECK(c == std::vector<float>{1, 2, 3, 4});
}
