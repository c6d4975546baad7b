// test_gemm.cpp — the packed GEMM (ref/gemm.h) against its documented summation order, written out
// naively here: s = 0; for k in 0..K-1: s = fma(A[m][k], B[k][n], s). The packed kernel must give
// exactly these bits for every shape (edge tiles included), for strided (transposed) operands, with
// and without accumulation, for 1 and several threads, and with the vector and portable kernels.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
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

// ------------------------------------------------------------------------------------------------
// Every kernel this CPU has (AVX-512, AVX2+FMA, portable), against the naive order, and each other.

namespace {

// The kernels to try, widest first; set_gemm_kernel_cap selects each in turn (on a CPU without
// AVX-512 the "avx512" cap runs the AVX2 kernel, which is still checked against the naive order).
const char* const kCaps[] = {"avx512", "avx2+fma", "portable"};

struct CapGuard {
  ~CapGuard() { ref::set_gemm_kernel_cap("avx512"); }
};

}  // namespace

TEST_CASE("gemm: every kernel cap gives the documented fma order, wide and multi-block shapes included") {
  CapGuard guard;
  // N >= 1024 takes the short row blocks; N = 1100 > 32 panels of 32 makes two column blocks; K = 600
  // three K-blocks (packed A repacked per column block); M = 25 leaves partial row panels of 6 and 12
  const int shapes[][3] = {{25, 1100, 600}, {12, 32, 256}, {24, 64, 257}, {11, 31, 513}, {49, 1030, 17}};
  for (const char* cap : kCaps) {
    REQUIRE(ref::set_gemm_kernel_cap(cap));
    int bad = 0;
    unsigned seed = 500;
    for (auto& s : shapes) bad += check_shape<float>(s[0], s[1], s[2], seed += 3);
    for (auto& s : kShapes) bad += check_shape<float>(s[0], s[1], s[2], seed += 3);
    bad += check_shape<double>(25, 70, 300, seed += 3);
    MESSAGE("cap " << std::string(cap) << " runs kernel " << std::string(ref::gemm_kernel_name()));
    CHECK(bad == 0);
  }
  CHECK_FALSE(ref::set_gemm_kernel_cap("avx3"));
  CHECK(std::string(ref::gemm_kernel_name()) == "portable");  // a refused name changes nothing
}

// ------------------------------------------------------------------------------------------------
// gemm_grouped: the same bits as one gemm() per problem, for every kernel and thread count.

namespace {

struct GroupCase {
  std::vector<std::vector<float>> a, b, c0;
  std::vector<ref::GemmProblem<float>> probs;  // C pointers filled per run
  std::vector<int> m, n, k, ta, tb, acc;
};

// Problems of many sizes (the routed experts: few rows each, some empty, one with nothing to sum),
// every layout, with and without accumulation, some with K over one K-block (among them p = 12
// and 24 with a transposed A, which the group packs once for all its K-blocks; also p = 0).
GroupCase make_group(unsigned seed) {
  GroupCase g;
  std::mt19937 rng(seed);
  const int count = 25;
  for (int p = 0; p < count; p++) {
    const int M = p == 3 ? 0 : (int)(rng() % 40) + (p % 5 == 0 ? 60 : 1);
    const int N = p % 4 == 0 ? 64 : (int)(rng() % 70) + 1;
    const int K = p == 7 ? 0 : p % 6 == 0 ? 300 : (int)(rng() % 130) + 1;
    g.m.push_back(M);
    g.n.push_back(N);
    g.k.push_back(K);
    g.ta.push_back(p % 3 == 1 || p % 12 == 0);
    g.tb.push_back(p % 2 == 0);
    g.acc.push_back(p % 3 != 2);
    g.a.push_back(random_vec<float>((size_t)M * K + 1, seed + 10 * p + 1));
    g.b.push_back(random_vec<float>((size_t)K * N + 1, seed + 10 * p + 2));
    g.c0.push_back(random_vec<float>((size_t)M * N + 1, seed + 10 * p + 3));
  }
  return g;
}

// Runs the group with gemm_grouped (grouped = true) or one gemm() per problem; returns every C.
std::vector<std::vector<float>> run_group(const GroupCase& g, bool grouped) {
  std::vector<std::vector<float>> c = g.c0;
  std::vector<ref::GemmProblem<float>> probs;
  for (size_t p = 0; p < g.m.size(); p++) {
    const int M = g.m[p], N = g.n[p], K = g.k[p];
    const ref::MatView<float> A = g.ta[p] ? ref::transposed(g.a[p].data(), M) : ref::row_major(g.a[p].data(), K);
    const ref::MatView<float> B = g.tb[p] ? ref::transposed(g.b[p].data(), K) : ref::row_major(g.b[p].data(), N);
    probs.push_back({c[p].data(), N, A, B, M, N, K, (bool)g.acc[p]});
  }
  if (grouped) {
    ref::gemm_grouped(probs.data(), (int)probs.size());
  } else {
    for (const auto& q : probs) ref::gemm(q.C, q.ldc, q.A, q.B, q.M, q.N, q.K, q.accumulate);
  }
  return c;
}

}  // namespace

TEST_CASE("gemm_grouped: bitwise equal to one gemm per problem, any kernel, any thread count") {
  CapGuard guard;
  const GroupCase g = make_group(77);
  // the oracle: the naive order per problem
  std::vector<std::vector<float>> want = g.c0;
  for (size_t p = 0; p < g.m.size(); p++) {
    const int M = g.m[p], N = g.n[p], K = g.k[p];
    const ref::MatView<float> A = g.ta[p] ? ref::transposed(g.a[p].data(), M) : ref::row_major(g.a[p].data(), K);
    const ref::MatView<float> B = g.tb[p] ? ref::transposed(g.b[p].data(), K) : ref::row_major(g.b[p].data(), N);
    naive(want[p].data(), A, B, M, N, K, g.acc[p]);
  }
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  const int threads[] = {1, 2, 3};
#else
  const int threads[] = {1};
#endif
  int bad = 0, runs = 0;
  for (const char* cap : kCaps) {
    REQUIRE(ref::set_gemm_kernel_cap(cap));
    for (int t : threads) {
#ifdef _OPENMP
      omp_set_num_threads(t);
#endif
      const auto grouped = run_group(g, true), single = run_group(g, false);
      for (size_t p = 0; p < g.m.size(); p++) {
        if (!same_bits(grouped[p], want[p]) || !same_bits(single[p], want[p])) {
          ++bad;
          MESSAGE("mismatch: cap " << std::string(cap) << " threads " << t << " problem " << p << " M=" << g.m[p]
                                   << " N=" << g.n[p] << " K=" << g.k[p]);
        }
      }
      ++runs;
    }
  }
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
  CHECK(runs >= 3);
  CHECK(bad == 0);
}

TEST_CASE("gemm_grouped: an empty list and problems with nothing to do") {
  ref::gemm_grouped<float>(nullptr, 0);
  std::vector<float> c = {1, 2, 3, 4};
  const float dummy = 5;
  const ref::GemmProblem<float> probs[] = {
      {c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 2, 2, 0, true},  // adds nothing
      {c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 0, 2, 3, false},  // no rows
  };
  ref::gemm_grouped(probs, 2);
  CHECK(c == std::vector<float>{1, 2, 3, 4});
  const ref::GemmProblem<float> zero = {c.data(), 2, ref::row_major(&dummy, 1), ref::row_major(&dummy, 2), 2, 2, 0, false};
  ref::gemm_grouped(&zero, 1);
  CHECK(c == std::vector<float>{0, 0, 0, 0});
}
