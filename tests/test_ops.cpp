// test_ops.cpp — the dense ops of ref/ops.h: gradients against central finite differences, forwards
// against hand-computed values, AdamW against torch.optim.AdamW, float vs double, determinism,
// and bad input.
//
// Gradient checks: every op's backward gets dout = R (fixed random) so its result is the gradient
// of the random linear functional L = sum(out * R); the budget is max_rel_error < 1e-6. That
// cannot pass by luck: inputs and R are random (not symmetric, no zeros), so a wrong term, sign,
// transpose or index gives a relative error of O(1) on some element, while the central
// difference in double is accurate to ~1e-10 (gradcheck.h). Gradient buffers are pre-filled
// with random values and the check uses (after - before), which fails unless backward ADDS.
#include <doctest/doctest.h>

#include <cmath>      // std::sqrt, std::log, std::exp, std::cos, std::sin, std::fabs
#include <cstdint>    // uint64_t
#include <cstring>    // std::memcmp (bitwise comparisons)
#include <algorithm>  // std::max
#include <utility>    // std::pair
#include <stdexcept>  // std::runtime_error
#include <vector>     // std::vector
#ifdef _OPENMP
#include <omp.h>  // omp_set_num_threads, omp_get_max_threads
#endif

#include "ref/ops.h"
#include "ref/gemm.h"   // set_gemm_kernel_cap: the AVX2 attention code on an AVX-512 CPU
#include "ref/vmath.h"  // simd_enabled, set_simd_enabled: both attention code paths
#include "tests/gradcheck.h"

namespace {

using Vec = std::vector<double>;

Vec rnd(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Vec v(n);
  gradcheck::fill_uniform(v, seed, lo, hi);
  return v;
}

std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

double dotv(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// What backward added to a pre-filled buffer.
Vec minus(const Vec& after, const Vec& before) {
  Vec d(after.size());
  for (size_t i = 0; i < d.size(); i++) d[i] = after[i] - before[i];
  return d;
}

// Worst |a - b| / max(|b|) over a tensor: float-vs-double agreement relative to the tensor's scale.
double max_scaled_diff(const std::vector<float>& a, const Vec& b) {
  double worst = 0, scale = 1e-30;
  for (double x : b) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < b.size(); i++) worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
  return worst;
}

// Sets the OpenMP thread count for a scope and restores it (no-op without OpenMP).
struct Threads {
#ifdef _OPENMP
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
#else
  explicit Threads(int) {}
#endif
};

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

}  // namespace

// =============================================================================================
// Gradient checks (double)

TEST_CASE("ops: embedding backward matches finite differences") {
  const int N = 6, C = 10, V = 11;
  const int tokens[N] = {3, 0, 3, 10, 7, 3};  // repeats: their rows must add up
  Vec wte = rnd(V * C, 1), R = rnd(N * C, 2), out(N * C);
  auto L = [&] {
    ref::embedding_forward(out.data(), tokens, wte.data(), N, C);
    return dotv(out, R);
  };
  const Vec d0 = rnd(V * C, 3);
  Vec d = d0;
  ref::embedding_backward(d.data(), R.data(), tokens, N, C);
  CHECK(gradcheck::max_rel_error(wte, minus(d, d0), L) < 1e-6);
}

TEST_CASE("ops: rmsnorm backward matches finite differences") {
  const int N = 6, C = 10;
  Vec x = rnd(N * C, 11), w = rnd(C, 12, 0.5, 1.5), R = rnd(N * C, 13), out(N * C), rstd(N);
  auto L = [&] {
    ref::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    return dotv(out, R);
  };
  L();
  const Vec dx0 = rnd(N * C, 14), dw0 = rnd(C, 15);
  Vec dx = dx0, dw = dw0;
  ref::rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  CHECK(gradcheck::max_rel_error(x, minus(dx, dx0), L) < 1e-6);
  CHECK(gradcheck::max_rel_error(w, minus(dw, dw0), L) < 1e-6);

  SUBCASE("nullptr gradients are skipped, the others unchanged") {
    Vec dx_only = dx0, dw_only = dw0;
    ref::rmsnorm_backward(dx_only.data(), (double*)nullptr, R.data(), x.data(), w.data(), rstd.data(), N, C);
    ref::rmsnorm_backward((double*)nullptr, dw_only.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
    CHECK(dx_only == dx);
    CHECK(dw_only == dw);
  }
}

TEST_CASE("ops: matmul backward matches finite differences") {
  const int N = 7, IC = 5, OC = 9;
  Vec x = rnd(N * IC, 21), w = rnd(OC * IC, 22), R = rnd(N * OC, 23), out(N * OC);
  auto L = [&] {
    ref::matmul_forward(out.data(), x.data(), w.data(), N, IC, OC);
    return dotv(out, R);
  };
  const Vec dx0 = rnd(N * IC, 24), dw0 = rnd(OC * IC, 25);
  Vec dx = dx0, dw = dw0;
  ref::matmul_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), N, IC, OC);
  CHECK(gradcheck::max_rel_error(x, minus(dx, dx0), L) < 1e-6);
  CHECK(gradcheck::max_rel_error(w, minus(dw, dw0), L) < 1e-6);

  SUBCASE("nullptr gradients are skipped, the others unchanged") {
    Vec dx_only = dx0, dw_only = dw0;
    ref::matmul_backward(dx_only.data(), (double*)nullptr, R.data(), x.data(), w.data(), N, IC, OC);
    ref::matmul_backward((double*)nullptr, dw_only.data(), R.data(), x.data(), w.data(), N, IC, OC);
    CHECK(dx_only == dx);
    CHECK(dw_only == dw);
  }
}

// The GEMM is tiled (4 rows x 128 columns); these shapes leave partial tiles in every product
// (N=7, OC=133 and IC=131 are not multiples of 4 or 128). Oracle: textbook triple loops in double.
TEST_CASE("ops: matmul forward and backward match naive loops on shapes with partial tiles") {
  const int N = 7, IC = 131, OC = 133;
  const Vec x = rnd(N * IC, 31), w = rnd(OC * IC, 32), dy = rnd(N * OC, 33);
  Vec y(N * OC), dx(N * IC, 0.0), dw(OC * IC, 0.0);
  ref::matmul_forward(y.data(), x.data(), w.data(), N, IC, OC);
  ref::matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), N, IC, OC);
  double worst = 0;
  for (int n = 0; n < N; n++) {
    for (int o = 0; o < OC; o++) {
      double s = 0;
      for (int i = 0; i < IC; i++) s += x[n * IC + i] * w[o * IC + i];
      worst = std::max(worst, std::fabs(y[n * OC + o] - s));
    }
    for (int i = 0; i < IC; i++) {
      double s = 0;
      for (int o = 0; o < OC; o++) s += dy[n * OC + o] * w[o * IC + i];
      worst = std::max(worst, std::fabs(dx[n * IC + i] - s));
    }
  }
  for (int o = 0; o < OC; o++) {
    for (int i = 0; i < IC; i++) {
      double s = 0;
      for (int n = 0; n < N; n++) s += dy[n * OC + o] * x[n * IC + i];
      worst = std::max(worst, std::fabs(dw[o * IC + i] - s));
    }
  }
  CHECK(worst < 1e-12);  // values are O(10); double rounding over 133 terms is ~1e-14
}

TEST_CASE("ops: rope backward matches finite differences") {
  const int B = 2, T = 3, H = 2, D = 6, C = H * D;
  for (float theta : {10000.0f, 3.0f}) {  // 3: large angles on every pair, not just the first
    Vec x = rnd(B * T * C, 41), R = rnd(B * T * C, 42);
    auto L = [&] {
      Vec y = x;
      ref::rope_forward(y.data(), B, T, H, D, theta);
      return dotv(y, R);
    };
    Vec dx = R;  // rope is in place: the gradient replaces dout
    ref::rope_backward(dx.data(), B, T, H, D, theta);
    CHECK(gradcheck::max_rel_error(x, dx, L) < 1e-6);
  }
}

TEST_CASE("ops: attention backward matches finite differences") {
  const int B = 2, T = 3, C = 12, H = 2;  // D = 6
  Vec q = rnd(B * T * C, 51), k = rnd(B * T * C, 52), v = rnd(B * T * C, 53), R = rnd(B * T * C, 54);
  Vec out(B * T * C), att(B * H * T * T);
  auto L = [&] {
    ref::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, C, H);
    return dotv(out, R);
  };
  L();
  const Vec dq0 = rnd(q.size(), 55), dk0 = rnd(k.size(), 56), dv0 = rnd(v.size(), 57);
  Vec dq = dq0, dk = dk0, dv = dv0;
  ref::attention_backward(dq.data(), dk.data(), dv.data(), R.data(), q.data(), k.data(), v.data(), att.data(), B, T,
                          C, H);
  CHECK(gradcheck::max_rel_error(q, minus(dq, dq0), L) < 1e-6);
  CHECK(gradcheck::max_rel_error(k, minus(dk, dk0), L) < 1e-6);
  CHECK(gradcheck::max_rel_error(v, minus(dv, dv0), L) < 1e-6);

  SUBCASE("nullptr gradients are skipped, the others unchanged") {
    Vec only_q = dq0, only_k = dk0, only_v = dv0;
    double* none = nullptr;
    ref::attention_backward(only_q.data(), none, none, R.data(), q.data(), k.data(), v.data(), att.data(), B, T, C, H);
    ref::attention_backward(none, only_k.data(), none, R.data(), q.data(), k.data(), v.data(), att.data(), B, T, C, H);
    ref::attention_backward(none, none, only_v.data(), R.data(), q.data(), k.data(), v.data(), att.data(), B, T, C, H);
    CHECK(only_q == dq);
    CHECK(only_k == dk);
    CHECK(only_v == dv);
  }
}

TEST_CASE("ops: swiglu backward matches finite differences") {
  const size_t n = 11;
  Vec a = rnd(n, 61, -4, 4), b = rnd(n, 62), R = rnd(n, 63), out(n);
  auto L = [&] {
    ref::swiglu_forward(out.data(), a.data(), b.data(), n);
    return dotv(out, R);
  };
  const Vec da0 = rnd(n, 64), db0 = rnd(n, 65);
  Vec da = da0, db = db0;
  ref::swiglu_backward(da.data(), db.data(), R.data(), a.data(), b.data(), n);
  CHECK(gradcheck::max_rel_error(a, minus(da, da0), L) < 1e-6);
  CHECK(gradcheck::max_rel_error(b, minus(db, db0), L) < 1e-6);

  SUBCASE("nullptr gradients are skipped, the others unchanged") {
    Vec da_only = da0, db_only = db0;
    ref::swiglu_backward(da_only.data(), (double*)nullptr, R.data(), a.data(), b.data(), n);
    ref::swiglu_backward((double*)nullptr, db_only.data(), R.data(), a.data(), b.data(), n);
    CHECK(da_only == da);
    CHECK(db_only == db);
  }
}

TEST_CASE("ops: crossentropy backward matches finite differences") {
  const int N = 6, V = 11;
  const int targets[N] = {0, 10, 4, 4, 7, 1};
  const float dloss = 0.7f;
  Vec logits = rnd(N * V, 71, -3, 3), losses(N);
  auto L = [&] { return dloss * ref::crossentropy_forward(losses.data(), logits.data(), targets, N, V); };
  const Vec d0 = rnd(N * V, 72);
  Vec d = d0;
  ref::crossentropy_backward(d.data(), logits.data(), targets, N, V, dloss);
  CHECK(gradcheck::max_rel_error(logits, minus(d, d0), L) < 1e-6);
}

// =============================================================================================
// Forwards against hand-computed values

TEST_CASE("ops: embedding forward copies the token rows") {
  const double wte[3 * 2] = {1, 2, 3, 4, 5, 6};
  const int tokens[4] = {2, 0, 2, 1};
  double out[4 * 2];
  ref::embedding_forward(out, tokens, wte, 4, 2);
  const double want[8] = {5, 6, 1, 2, 5, 6, 3, 4};
  for (int i = 0; i < 8; i++) CHECK(out[i] == want[i]);
}

TEST_CASE("ops: rmsnorm forward of a 1x2 row") {
  // [3, 4]: mean square 12.5, rstd = 1/sqrt(12.5); w = [1, 2].
  const double x[2] = {3, 4}, w[2] = {1, 2};
  double out[2], rstd[1];
  ref::rmsnorm_forward(out, rstd, x, w, 1, 2, 0.0f);
  CHECK(rstd[0] == doctest::Approx(1 / std::sqrt(12.5)).epsilon(1e-15));
  CHECK(out[0] == doctest::Approx(3 / std::sqrt(12.5)).epsilon(1e-15));
  CHECK(out[1] == doctest::Approx(8 / std::sqrt(12.5)).epsilon(1e-15));
  // eps enters under the root: [1, 1] with eps 1 gives rstd 1/sqrt(2).
  const double ones[2] = {1, 1}, w1[2] = {1, 1};
  ref::rmsnorm_forward(out, rstd, ones, w1, 1, 2, 1.0f);
  CHECK(rstd[0] == doctest::Approx(1 / std::sqrt(2.0)).epsilon(1e-15));
}

TEST_CASE("ops: rope forward rotates pair i at position t by t * theta^(-2i/D)") {
  SUBCASE("D = 2: position 0 unchanged, position 1 rotated by 1 rad, in every sequence") {
    // B=2, T=2, H=1, D=2; every row is (1, 0), so the result is (cos a, sin a).
    double x[4 * 2] = {1, 0, 1, 0, 1, 0, 1, 0};
    ref::rope_forward(x, 2, 2, 1, 2, 10000.0f);
    for (int b = 0; b < 2; b++) {
      CHECK(x[b * 4 + 0] == 1.0);
      CHECK(x[b * 4 + 1] == 0.0);
      CHECK(x[b * 4 + 2] == doctest::Approx(std::cos(1.0)).epsilon(1e-15));
      CHECK(x[b * 4 + 3] == doctest::Approx(std::sin(1.0)).epsilon(1e-15));
    }
  }
  SUBCASE("D = 4, two heads: pair 1 turns by theta^(-1/2) = 0.01 rad per position") {
    // B=1, T=2, H=2, D=4, theta 10000. Row t=1: head 0 = (1, 0, 0, 1), head 1 = (0, 2, 3, 0).
    double x[2 * 8] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 2, 3, 0};
    ref::rope_forward(x, 1, 2, 2, 4, 10000.0f);
    const double c1 = std::cos(1.0), s1 = std::sin(1.0), c2 = std::cos(0.01), s2 = std::sin(0.01);
    // (x0, x1) -> (x0 c - x1 s, x0 s + x1 c)
    const double want[8] = {c1, s1, -s2, c2, -2 * s1, 2 * c1, 3 * c2, 3 * s2};
    for (int i = 0; i < 8; i++) CHECK(x[8 + i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}

TEST_CASE("ops: rope backward undoes rope forward") {
  const int B = 2, T = 5, H = 3, D = 4;
  const Vec x = rnd(B * T * H * D, 81);
  Vec y = x;
  ref::rope_forward(y.data(), B, T, H, D, 10000.0f);
  ref::rope_backward(y.data(), B, T, H, D, 10000.0f);
  for (size_t i = 0; i < x.size(); i++) CHECK(y[i] == doctest::Approx(x[i]).epsilon(1e-14));
}

TEST_CASE("ops: causal attention with T=2 by hand") {
  // B=1, H=1, C=2 (scale 1/sqrt 2). k0 = 0 and q1 . k1 / sqrt 2 = ln 3, so row 1 of att is
  // softmax(0, ln 3) = (1/4, 3/4). Row 0 sees only position 0: out0 = v0.
  const double l3 = std::log(3.0) * std::sqrt(2.0);
  const double q[4] = {0.3, -0.7, 1, 0}, k[4] = {0, 0, l3, 0}, v[4] = {2, -1, 6, 3};
  double out[4], att[4];
  ref::attention_forward(out, att, q, k, v, 1, 2, 2, 1);
  CHECK(out[0] == 2.0);
  CHECK(out[1] == -1.0);
  CHECK(att[0] == 1.0);
  CHECK(att[1] == 0.0);  // above the diagonal: exactly zero
  CHECK(att[2] == doctest::Approx(0.25).epsilon(1e-14));
  CHECK(att[3] == doctest::Approx(0.75).epsilon(1e-14));
  CHECK(out[2] == doctest::Approx(0.25 * 2 + 0.75 * 6).epsilon(1e-14));
  CHECK(out[3] == doctest::Approx(0.25 * -1 + 0.75 * 3).epsilon(1e-14));
}

TEST_CASE("ops: attention probabilities are causal and rows sum to 1") {
  const int B = 2, T = 5, C = 8, H = 2;
  const Vec q = rnd(B * T * C, 91, -3, 3), k = rnd(B * T * C, 92, -3, 3), v = rnd(B * T * C, 93);
  Vec out(B * T * C), att(B * H * T * T, 42.0);  // 42: stale values must be overwritten
  ref::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, C, H);
  for (int row = 0; row < B * H * T; row++) {
    const int t = row % T;
    double sum = 0;
    for (int u = 0; u < T; u++) {
      const double p = att[row * T + u];
      if (u > t) CHECK(p == 0.0);
      else CHECK(p > 0.0);
      sum += p;
    }
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-14));
  }
}

TEST_CASE("ops: swiglu forward is silu(a) * b") {
  // silu(0) = 0; silu(ln 3) = ln 3 * sigmoid(ln 3) = 0.75 ln 3; silu(-ln 3) = -0.25 ln 3.
  const double l3 = std::log(3.0);
  const double a[3] = {0, l3, -l3}, b[3] = {5, 2, -4};
  double out[3];
  ref::swiglu_forward(out, a, b, 3);
  CHECK(out[0] == 0.0);
  CHECK(out[1] == doctest::Approx(0.75 * l3 * 2).epsilon(1e-15));
  CHECK(out[2] == doctest::Approx(-0.25 * l3 * -4).epsilon(1e-15));
  // Far in the tails exp overflows; the result must stay finite (0 and a*b).
  const double big[2] = {-1000, 1000}, one[2] = {1, 1};
  ref::swiglu_forward(out, big, one, 2);
  CHECK(out[0] == 0.0);
  CHECK(out[1] == 1000.0);
}

TEST_CASE("ops: crossentropy of uniform logits is log V, and a hand case") {
  const int V = 11;
  Vec logits(2 * V, 0.25), losses(2);
  const int targets[2] = {3, 10};
  CHECK(ref::crossentropy_forward(losses.data(), logits.data(), targets, 2, V) ==
        doctest::Approx(std::log(11.0)).epsilon(1e-15));
  CHECK(losses[0] == doctest::Approx(std::log(11.0)).epsilon(1e-15));
  // Logits (0, ln 3), target 1: p = 3/4, loss = ln(4/3). Huge logits must not overflow.
  const double two[4] = {0, std::log(3.0), 1000, 1000 + std::log(3.0)};
  const int t2[2] = {1, 0};
  double l2[2];
  const double mean = ref::crossentropy_forward(l2, two, t2, 2, 2);
  CHECK(l2[0] == doctest::Approx(std::log(4.0 / 3.0)).epsilon(1e-14));
  CHECK(l2[1] == doctest::Approx(std::log(4.0)).epsilon(1e-14));
  CHECK(mean == doctest::Approx((std::log(4.0 / 3.0) + std::log(4.0)) / 2).epsilon(1e-14));
}

TEST_CASE("ops: crossentropy backward by hand is (p - onehot) * dloss / N, added") {
  // One row (0, ln 3), target 1, dloss 2, N 1: p = (1/4, 3/4), gradient 2 * (1/4, -1/4).
  const double logits[2] = {0, std::log(3.0)};
  const int target[1] = {1};
  double d[2] = {10, 20};
  ref::crossentropy_backward(d, logits, target, 1, 2, 2.0f);
  CHECK(d[0] == doctest::Approx(10.5).epsilon(1e-15));
  CHECK(d[1] == doctest::Approx(19.5).epsilon(1e-15));
}

TEST_CASE("ops: add_inplace, scale_inplace and sumsq") {
  double x[3] = {1, 2, 3};
  const double y[3] = {0.5, -2, 4};
  ref::add_inplace(x, y, 3);
  CHECK(x[0] == 1.5);
  CHECK(x[1] == 0.0);
  CHECK(x[2] == 7.0);
  ref::scale_inplace(x, 3, 2.0f);
  CHECK(x[0] == 3.0);
  CHECK(x[2] == 14.0);
  const float g[3] = {1, -2, 3};
  CHECK(ref::sumsq(g, 3) == 14.0);
  CHECK(ref::sumsq(g, 0) == 0.0);
  // Many elements: every chunk counts, none twice. sum of i^2 for i < n = (n-1) n (2n-1) / 6.
  const size_t n = 1001;
  std::vector<float> h(n);
  for (size_t i = 0; i < n; i++) h[i] = (float)i;
  CHECK(ref::sumsq(h.data(), n) == (n - 1) * n * (2 * n - 1) / 6.0);
}

// =============================================================================================
// AdamW

// Expected values come from torch.optim.AdamW (torch 1.13, Debian python3-torch, float64) with
// lr 0.125, betas (0.75, 0.875), eps 2^-7, weight_decay 0.5, all exact in binary so the float
// arguments of adamw_update lose nothing. Element 0 at t=1 by hand: p = 1 * (1 - 0.125*0.5) =
// 0.9375; m = 0.25*0.5 = 0.125; v = 0.125*0.25 = 0.03125; bc1 = 0.25, bc2 = 0.125;
// p -= (0.125/0.25) * 0.125 / (sqrt(0.03125)/sqrt(0.125) + 2^-7) = 0.0625/0.5078125 = 8/65.
// Element 2 has g = 0 at t=1: only the weight decay moves it (0.5 * 0.9375).
TEST_CASE("ops: adamw matches torch.optim.AdamW for two steps") {
  Vec p = {1.0, -2.0, 0.5, 3.0}, m(4, 0.0), v(4, 0.0);
  const Vec g1 = {0.5, -0.25, 0.0, 2.0}, g2 = {-0.5, 1.0, 0.75, 2.0};
  auto step = [&](const Vec& g, int t) {
    ref::adamw_update(p.data(), g.data(), m.data(), v.data(), 4, 0.125f, 0.75f, 0.875f, 0.0078125f, 0.5f, t);
  };
  step(g1, 1);
  CHECK(p[0] == doctest::Approx(0.9375 - 8.0 / 65.0).epsilon(1e-15));
  CHECK(p[2] == 0.46875);
  const double p1[4] = {0.8144230769230769, -1.753787878787879, 0.46875, 2.687986381322957};
  const double m1[4] = {0.125, -0.0625, 0.0, 0.5}, v1[4] = {0.03125, 0.0078125, 0.0, 0.5};
  for (int i = 0; i < 4; i++) {
    CHECK(p[i] == doctest::Approx(p1[i]).epsilon(1e-15));
    CHECK(m[i] == m1[i]);
    CHECK(v[i] == v1[i]);
  }
  step(g2, 2);
  const double p2[4] = {0.7811040521978022, -1.7207593469674656, 0.3430209955642616, 2.3954736138132295};
  const double m2[4] = {-0.03125, 0.203125, 0.1875, 0.875}, v2[4] = {0.05859375, 0.1318359375, 0.0703125, 0.9375};
  for (int i = 0; i < 4; i++) {
    CHECK(p[i] == doctest::Approx(p2[i]).epsilon(1e-15));
    CHECK(m[i] == m2[i]);
    CHECK(v[i] == v2[i]);
  }
}

// =============================================================================================
// float vs double: both instantiations exist and agree to fp32 accuracy. Budget 1e-5 of the
// tensor's largest value: fp32 rounding is 6e-8 per operation and these sums have at most ~40
// terms, so honest float code lands near 1e-6; a float-only bug (overflow, wrong cast) is O(1).

// Runs rmsnorm -> rope -> attention (q = k = v) -> matmul -> crossentropy and back in type T.
template <typename T> struct Chain {
  static constexpr int B = 2, T_ = 5, H = 2, D = 4, C = H * D, N = B * T_, V = 7;
  std::vector<T> x, wn, w, h, rs, att, a, y, losses, dx, dwn, dw, dh, da, dy;
  double loss = 0;
  Chain(const Vec& x0, const Vec& wn0, const Vec& w0)
      : x(x0.begin(), x0.end()), wn(wn0.begin(), wn0.end()), w(w0.begin(), w0.end()), h(N * C), rs(N),
        att(B * H * T_ * T_), a(N * C), y(N * V), losses(N), dx(N * C), dwn(C), dw(V * C), dh(N * C), da(N * C),
        dy(N * V) {}
  void run(const int* targets) {
    ref::rmsnorm_forward(h.data(), rs.data(), x.data(), wn.data(), N, C, 1e-6f);
    ref::rope_forward(h.data(), B, T_, H, D, 10000.0f);
    ref::attention_forward(a.data(), att.data(), h.data(), h.data(), h.data(), B, T_, C, H);
    ref::matmul_forward(y.data(), a.data(), w.data(), N, C, V);
    loss = ref::crossentropy_forward(losses.data(), y.data(), targets, N, V);
    ref::crossentropy_backward(dy.data(), y.data(), targets, N, V, 1.0f);
    ref::matmul_backward(da.data(), dw.data(), dy.data(), a.data(), w.data(), N, C, V);
    ref::attention_backward(dh.data(), dh.data(), dh.data(), da.data(), h.data(), h.data(), h.data(), att.data(), B,
                            T_, C, H);
    ref::rope_backward(dh.data(), B, T_, H, D, 10000.0f);
    ref::rmsnorm_backward(dx.data(), dwn.data(), dh.data(), x.data(), wn.data(), rs.data(), N, C);
  }
};

TEST_CASE("ops: float and double instantiations agree on a random layer, forward and backward") {
  using CD = Chain<double>;
  const Vec x = rnd(CD::N * CD::C, 101, -2, 2), wn = rnd(CD::C, 102, 0.5, 1.5), w = rnd(CD::V * CD::C, 103);
  const int targets[CD::N] = {0, 6, 3, 2, 2, 1, 5, 4, 0, 6};
  Chain<double> d(x, wn, w);
  Chain<float> f(x, wn, w);
  d.run(targets);
  f.run(targets);
  CHECK(std::fabs(f.loss - d.loss) / d.loss < 1e-5);
  CHECK(max_scaled_diff(f.h, d.h) < 1e-5);
  CHECK(max_scaled_diff(f.att, d.att) < 1e-5);
  CHECK(max_scaled_diff(f.a, d.a) < 1e-5);
  CHECK(max_scaled_diff(f.y, d.y) < 1e-5);
  CHECK(max_scaled_diff(f.dy, d.dy) < 1e-5);
  CHECK(max_scaled_diff(f.dw, d.dw) < 1e-5);
  CHECK(max_scaled_diff(f.dh, d.dh) < 1e-5);
  CHECK(max_scaled_diff(f.dx, d.dx) < 1e-5);
  CHECK(max_scaled_diff(f.dwn, d.dwn) < 1e-5);
}

// =============================================================================================
// Determinism: fp32 results are bitwise identical run to run and for 1, 2 or 3 threads (the ops
// never let the schedule pick the order of a sum). Shapes are large enough that the work is
// really split: 75 row blocks of the GEMM, 4 column blocks of the embedding, 64 sumsq chunks.

namespace {
struct Fp32Run {
  std::vector<float> y, dx, dw, dwte, dq, dk, dv, att, dxn, dwn;
  double ss = 0;
};

Fp32Run run_fp32_ops(int threads) {
  Threads scope(threads);
  const int N = 300, IC = 40, OC = 70, C = 200, V = 9, B = 2, T = 24, H = 4, CA = 32;
  const std::vector<float> x = to_float(rnd(N * IC, 111)), w = to_float(rnd(OC * IC, 112)),
                           dy = to_float(rnd(N * OC, 113)), demb = to_float(rnd(N * C, 114)),
                           q = to_float(rnd(B * T * CA, 115, -2, 2)), k = to_float(rnd(B * T * CA, 116, -2, 2)),
                           v = to_float(rnd(B * T * CA, 117)), dout = to_float(rnd(B * T * CA, 118)),
                           wn = to_float(rnd(C, 119, 0.5, 1.5)), g = to_float(rnd(100003, 120));
  std::vector<int> tokens(N);
  for (int n = 0; n < N; n++) tokens[n] = (n * 7 + n / 3) % V;  // many repeats
  Fp32Run r;
  r.y.resize(N * OC);
  r.dx.assign(N * IC, 0.5f);
  r.dw.assign(OC * IC, 0.25f);
  ref::matmul_forward(r.y.data(), x.data(), w.data(), N, IC, OC);
  ref::matmul_backward(r.dx.data(), r.dw.data(), dy.data(), x.data(), w.data(), N, IC, OC);
  r.dwte.assign(V * C, 0.125f);
  ref::embedding_backward(r.dwte.data(), demb.data(), tokens.data(), N, C);
  std::vector<float> out(B * T * CA), xn(N * C), rs(N);
  r.att.resize(B * H * T * T);
  r.dq.assign(B * T * CA, 0.f);
  r.dk = r.dq;
  r.dv = r.dq;
  ref::attention_forward(out.data(), r.att.data(), q.data(), k.data(), v.data(), B, T, CA, H);
  ref::attention_backward(r.dq.data(), r.dk.data(), r.dv.data(), dout.data(), q.data(), k.data(), v.data(),
                          r.att.data(), B, T, CA, H);
  ref::rmsnorm_forward(xn.data(), rs.data(), demb.data(), wn.data(), N, C, 1e-6f);
  r.dxn.assign(N * C, 0.f);
  r.dwn.assign(C, 0.f);
  ref::rmsnorm_backward(r.dxn.data(), r.dwn.data(), demb.data(), demb.data(), wn.data(), rs.data(), N, C);
  r.ss = ref::sumsq(g.data(), g.size());
  return r;
}

void check_same(const Fp32Run& a, const Fp32Run& b) {
  CHECK(bitwise_equal(a.y, b.y));
  CHECK(bitwise_equal(a.dx, b.dx));
  CHECK(bitwise_equal(a.dw, b.dw));
  CHECK(bitwise_equal(a.dwte, b.dwte));
  CHECK(bitwise_equal(a.att, b.att));
  CHECK(bitwise_equal(a.dq, b.dq));
  CHECK(bitwise_equal(a.dk, b.dk));
  CHECK(bitwise_equal(a.dv, b.dv));
  CHECK(bitwise_equal(a.dxn, b.dxn));
  CHECK(bitwise_equal(a.dwn, b.dwn));
  CHECK(std::memcmp(&a.ss, &b.ss, sizeof(double)) == 0);
}
}  // namespace

TEST_CASE("ops: fp32 results are bitwise identical run to run") {
  const Fp32Run a = run_fp32_ops(2), b = run_fp32_ops(2);
  check_same(a, b);
}

TEST_CASE("ops: fp32 results do not depend on the thread count") {
#ifndef _OPENMP
  MESSAGE("built without OpenMP: only one thread count to compare");
#endif
  const Fp32Run one = run_fp32_ops(1), two = run_fp32_ops(2), three = run_fp32_ops(3);
  check_same(one, two);
  check_same(one, three);
}

// =============================================================================================
// fp32 attention (ref/attention.cpp): its 8-lane SIMD code and its portable code must give the
// same bits, for any thread count, on shapes that exercise every code path: head dims with and
// without a tail past a multiple of 8 and with several 32-column blocks, sequence lengths that are
// not multiples of 8 or of the 16-row work items, probabilities that underflow, and gradients
// that share memory. A naive double attention written here is the accuracy oracle.

namespace {
struct AttnShape {
  int B, T, C, H;
  double range;  // q, k uniform in [-range, range]
};

// Straight from the formulas: s = q.k / sqrt(D), p = softmax over u <= t, out = p v; backward by
// the chain rule. Gradients are returned (not accumulated).
struct NaiveAttention {
  Vec out, dq, dk, dv;
  NaiveAttention(const Vec& q, const Vec& k, const Vec& v, const Vec& dout, int B, int T, int C, int H)
      : out(q.size()), dq(q.size()), dk(q.size()), dv(q.size()) {
    const int D = C / H;
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        auto at = [&](const Vec& x, int t, int d) { return x[((size_t)b * T + t) * C + h * D + d]; };
        auto ref_of = [&](Vec& x, int t, int d) -> double& { return x[((size_t)b * T + t) * C + h * D + d]; };
        for (int t = 0; t < T; t++) {
          Vec p(t + 1), dp(t + 1);
          double mx = -1e300, z = 0, pdp = 0;
          for (int u = 0; u <= t; u++) {
            double s = 0;
            for (int d = 0; d < D; d++) s += at(q, t, d) * at(k, u, d);
            p[u] = s / std::sqrt((double)D);
            mx = std::max(mx, p[u]);
          }
          for (int u = 0; u <= t; u++) z += p[u] = std::exp(p[u] - mx);
          for (int u = 0; u <= t; u++) {
            p[u] /= z;
            for (int d = 0; d < D; d++) {
              ref_of(out, t, d) += p[u] * at(v, u, d);
              dp[u] += at(dout, t, d) * at(v, u, d);
              ref_of(dv, u, d) += p[u] * at(dout, t, d);
            }
            pdp += p[u] * dp[u];
          }
          for (int u = 0; u <= t; u++) {
            const double ds = p[u] * (dp[u] - pdp) / std::sqrt((double)D);
            for (int d = 0; d < D; d++) {
              ref_of(dq, t, d) += ds * at(k, u, d);
              ref_of(dk, u, d) += ds * at(q, t, d);
            }
          }
        }
      }
    }
  }
};

struct AttnRun {
  std::vector<float> out, att, dq, dk, dv, dshared;
};

// Forward and backward in fp32 with `threads` threads, SIMD code on or off. dq, dk, dv start from
// random values (backward adds); dshared is one gradient buffer passed as dq, dk and dv at once,
// with q = k = v (the aliasing that the layer test Chain uses).
AttnRun run_attention(const AttnShape& s, int threads, bool simd) {
  Threads scope(threads);
  const bool was = ref::simd_enabled();
  ref::set_simd_enabled(simd);
  const size_t n = (size_t)s.B * s.T * s.C;
  const std::vector<float> q = to_float(rnd(n, 131, -s.range, s.range)), k = to_float(rnd(n, 132, -s.range, s.range)),
                           v = to_float(rnd(n, 133)), dout = to_float(rnd(n, 134));
  AttnRun r;
  r.out.resize(n);
  r.att.assign((size_t)s.B * s.H * s.T * s.T, 42.0f);
  r.dq = to_float(rnd(n, 135));
  r.dk = to_float(rnd(n, 136));
  r.dv = to_float(rnd(n, 137));
  ref::attention_forward(r.out.data(), r.att.data(), q.data(), k.data(), v.data(), s.B, s.T, s.C, s.H);
  ref::attention_backward(r.dq.data(), r.dk.data(), r.dv.data(), dout.data(), q.data(), k.data(), v.data(),
                          r.att.data(), s.B, s.T, s.C, s.H);
  std::vector<float> out2(n), att2(r.att.size());
  r.dshared = to_float(rnd(n, 138));
  ref::attention_forward(out2.data(), att2.data(), q.data(), q.data(), q.data(), s.B, s.T, s.C, s.H);
  ref::attention_backward(r.dshared.data(), r.dshared.data(), r.dshared.data(), dout.data(), q.data(), q.data(),
                          q.data(), att2.data(), s.B, s.T, s.C, s.H);
  ref::set_simd_enabled(was);
  return r;
}

const AttnShape ATTN_SHAPES[] = {
    {2, 37, 60, 3, 1.5},   // D = 20: two 8-column chunks and a tail of 4
    {1, 70, 128, 2, 1.5},  // D = 64: two 32-column blocks; T past 4 work items
    {3, 19, 52, 4, 1.5},   // D = 13
    {1, 9, 160, 4, 1.5},   // D = 40: a 32-column block and one chunk
    {2, 33, 128, 4, 12.0}, // D = 32 (the presets' head size); large scores: many p underflow
    {1, 5, 12, 4, 1.5},    // D = 3: no full chunk at all
    {1, 21, 96, 2, 1.5},   // D = 48: AVX-512 blocks of 32 and 16; an odd T (a last unpaired row and key)
};
}  // namespace

TEST_CASE("ops: fp32 attention is bitwise identical for 1, 2, 3 threads and for the SIMD and portable code") {
  if (!ref::simd_available()) MESSAGE("this CPU/build has no AVX2 code: only the portable code is compared");
#ifndef _OPENMP
  MESSAGE("built without OpenMP: only one thread count to compare");
#endif
  for (const AttnShape& s : ATTN_SHAPES) {
    CAPTURE(s.T);
    CAPTURE(s.C);
    CAPTURE(s.H);
    const AttnRun base = run_attention(s, 1, false);
    for (const auto& [threads, simd] : {std::pair{2, false}, {1, true}, {2, true}, {3, true}}) {
      CAPTURE(threads);
      CAPTURE(simd);
      const AttnRun r = run_attention(s, threads, simd);
      // the AVX2 code alone, where the AVX-512 code would otherwise run (ref/gemm.h's cap)
      REQUIRE(ref::set_gemm_kernel_cap("avx2+fma"));
      const AttnRun r2 = run_attention(s, threads, simd);
      REQUIRE(ref::set_gemm_kernel_cap("avx512"));
      CHECK(bitwise_equal(r2.out, base.out));
      CHECK(bitwise_equal(r2.att, base.att));
      CHECK(bitwise_equal(r2.dq, base.dq));
      CHECK(bitwise_equal(r2.dk, base.dk));
      CHECK(bitwise_equal(r2.dv, base.dv));
      CHECK(bitwise_equal(r2.dshared, base.dshared));
      CHECK(bitwise_equal(r.out, base.out));
      CHECK(bitwise_equal(r.att, base.att));
      CHECK(bitwise_equal(r.dq, base.dq));
      CHECK(bitwise_equal(r.dk, base.dk));
      CHECK(bitwise_equal(r.dv, base.dv));
      CHECK(bitwise_equal(r.dshared, base.dshared));
    }
  }
}

TEST_CASE("ops: fp32 attention (SIMD and portable) matches a naive double attention") {
  // Budget 1e-5 of each tensor's largest value, as for the float/double layer test above; the
  // sums here have up to 70 terms of fp32 rounding (6e-8 each), honest code lands near 1e-6.
  for (const AttnShape& s : ATTN_SHAPES) {
    CAPTURE(s.T);
    CAPTURE(s.C);
    const size_t n = (size_t)s.B * s.T * s.C;
    const Vec q = rnd(n, 131, -s.range, s.range), k = rnd(n, 132, -s.range, s.range), v = rnd(n, 133),
              dout = rnd(n, 134);
    // the fp32 inputs, widened: the oracle sees exactly what the float code sees
    auto widen = [](const Vec& x) {
      const std::vector<float> f = to_float(x);
      return Vec(f.begin(), f.end());
    };
    const NaiveAttention want(widen(q), widen(k), widen(v), widen(dout), s.B, s.T, s.C, s.H);
    const Vec dq0 = widen(rnd(n, 135)), dk0 = widen(rnd(n, 136)), dv0 = widen(rnd(n, 137));
    for (bool simd : {false, true}) {
      CAPTURE(simd);
      const AttnRun r = run_attention(s, 2, simd);
      const Vec got_dq = minus(Vec(r.dq.begin(), r.dq.end()), dq0), got_dk = minus(Vec(r.dk.begin(), r.dk.end()), dk0),
                got_dv = minus(Vec(r.dv.begin(), r.dv.end()), dv0);
      CHECK(max_scaled_diff(r.out, want.out) < 1e-5);
      CHECK(max_scaled_diff(to_float(got_dq), want.dq) < 1e-5);
      CHECK(max_scaled_diff(to_float(got_dk), want.dk) < 1e-5);
      CHECK(max_scaled_diff(to_float(got_dv), want.dv) < 1e-5);
    }
  }
}

// =============================================================================================
// Bad input: a clear std::runtime_error, never a crash or a read out of bounds.

TEST_CASE("ops: bad shapes and ids throw std::runtime_error with a message") {
  float buf[64] = {};
  const int bad_target[2] = {0, 5}, neg_token[2] = {1, -1};
  CHECK_THROWS_WITH_AS(ref::crossentropy_forward(buf, buf, bad_target, 2, 5), doctest::Contains("outside [0, V=5)"),
                       std::runtime_error);
  CHECK_THROWS_AS(ref::crossentropy_backward(buf, buf, bad_target, 2, 5, 1.0f), std::runtime_error);
  CHECK_THROWS_AS(ref::crossentropy_forward(buf, buf, bad_target, 0, 5), std::runtime_error);  // mean of nothing
  CHECK_THROWS_WITH_AS(ref::embedding_forward(buf, neg_token, buf, 2, 4), doctest::Contains("negative"),
                       std::runtime_error);
  CHECK_THROWS_AS(ref::embedding_backward(buf, buf, neg_token, 2, 4), std::runtime_error);
  CHECK_THROWS_WITH_AS(ref::rope_forward(buf, 1, 2, 2, 3, 10000.0f), doctest::Contains("even"), std::runtime_error);
  CHECK_THROWS_AS(ref::rope_backward(buf, 1, 2, 2, 3, 10000.0f), std::runtime_error);
  CHECK_THROWS_WITH_AS(ref::attention_forward(buf, buf, buf, buf, buf, 1, 2, 10, 3), doctest::Contains("multiple of H"),
                       std::runtime_error);
  CHECK_THROWS_AS(ref::matmul_forward(buf, buf, buf, 2, 0, 3), std::runtime_error);
  CHECK_THROWS_AS(ref::matmul_forward(buf, buf, buf, -1, 2, 3), std::runtime_error);
  CHECK_THROWS_AS(ref::rmsnorm_forward(buf, buf, buf, buf, 2, 0, 1e-6f), std::runtime_error);
  CHECK_THROWS_WITH_AS(ref::adamw_update(buf, buf, buf, buf, 4, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0),
                       doctest::Contains("t must be >= 1"), std::runtime_error);
}

TEST_CASE("ops: zero rows is a no-op for matmul (an expert that received no tokens)") {
  float out[4] = {7, 7, 7, 7}, w[6] = {1, 2, 3, 4, 5, 6};
  ref::matmul_forward(out, (const float*)nullptr, w, 0, 2, 3);
  ref::matmul_backward((float*)nullptr, w, (const float*)nullptr, (const float*)nullptr, w, 0, 2, 3);
  CHECK(out[0] == 7);
  CHECK(w[5] == 6);
}
