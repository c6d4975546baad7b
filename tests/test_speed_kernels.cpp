// test_speed_kernels.cpp — the faster kernels give exactly the bits of the plain code they replace:
//  - the routed experts through gemm_grouped (all experts of a stage at once) against the
//    per-expert algorithm written out here with one matmul_forward / matmul_backward per expert;
//  - AdamW, sumsq and the cross-entropy's vector paths against the portable code and against
//    oracles written out here in their documented order;
// each for 1, 2 and 3 threads, and with the vector code on and off.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ref/gemm.h"
#include "ref/moe.h"
#include "ref/ops.h"
#include "tests/test_util.h"  // randn, same
#include "ref/vmath.h"

namespace {


// Thread counts to try, and a guard that restores the count and the kernel settings.
struct Settings {
#ifdef _OPENMP
  int saved = omp_get_max_threads();
  ~Settings() {
    omp_set_num_threads(saved);
    ref::set_simd_enabled(true);
    ref::set_gemm_kernel_cap("avx512");
  }
  static void threads(int t) { omp_set_num_threads(t); }
#else
  ~Settings() {
    ref::set_simd_enabled(true);
    ref::set_gemm_kernel_cap("avx512");
  }
  static void threads(int) {}
#endif
};

// ------------------------------------------------------------------------------- routed experts
// moe.cpp's logistic function, as the experts' SwiGLU uses it.
float sigmoid(float x) {
  if (x >= 0.f) return 1.f / (1.f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.f + e);
}

// A token-choice routing of N tokens to K distinct experts each out of E; experts >= E/2 + 1 get
// few or no tokens (so that empty experts and one-token experts occur).
struct Routing {
  int N, E, K, A;
  std::vector<int> tok_off, a_tok, a_exp, perm, exp_off;
};

Routing make_routing(int N, int E, int K, unsigned seed) {
  Routing r{N, E, K, N * K, {}, {}, {}, {}, {}};
  std::mt19937 g(seed);
  r.tok_off.resize(N + 1);
  for (int t = 0; t < N; t++) {
    r.tok_off[t] = t * K;
    std::vector<int> picked;
    while ((int)picked.size() < K) {
      // mostly the lower half of the experts; the upper half rarely (some stay empty)
      int e = (g() % 10 < 9) ? (int)(g() % (E / 2 + 1)) : (int)(g() % E);
      if (e == E - 1) e = 0;  // the last expert never gets a token
      if (std::find(picked.begin(), picked.end(), e) == picked.end()) picked.push_back(e);
    }
    for (int e : picked) {
      r.a_tok.push_back(t);
      r.a_exp.push_back(e);
    }
  }
  r.tok_off[N] = N * K;
  r.perm.resize(r.A);
  r.exp_off.resize(E + 1);
  ref::dispatch_sort(r.perm.data(), r.exp_off.data(), r.a_exp.data(), r.A, E);
  return r;
}

struct ExpertOut {
  std::vector<float> y, h1, h3, act, dx, dw1, dw3, dw2;
  std::vector<float> all() const {
    std::vector<float> v;
    for (const auto* p : {&y, &h1, &h3, &act, &dx, &dw1, &dw3, &dw2}) v.insert(v.end(), p->begin(), p->end());
    return v;
  }
};

struct ExpertIn {
  int C, F;
  std::vector<float> x, w1, w3, w2, dy, dx0, dw10, dw30, dw20;
};

ExpertIn make_expert_inputs(const Routing& r, int C, int F, unsigned seed) {
  ExpertIn in{C, F, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  in.x = randn((size_t)r.N * C, seed, 1.f);
  in.w1 = randn((size_t)r.E * F * C, seed + 1, 0.1f);
  in.w3 = randn((size_t)r.E * F * C, seed + 2, 0.1f);
  in.w2 = randn((size_t)r.E * C * F, seed + 3, 0.1f);
  in.dy = randn((size_t)r.A * C, seed + 4, 1.f);
  in.dx0 = randn((size_t)r.N * C, seed + 5, 1.f);  // the gradients accumulate onto these
  in.dw10 = randn((size_t)r.E * F * C, seed + 6, 1.f);
  in.dw30 = randn((size_t)r.E * F * C, seed + 7, 1.f);
  in.dw20 = randn((size_t)r.E * C * F, seed + 8, 1.f);
  return in;
}

// The per-expert algorithm (the code before gemm_grouped): gather, three matmuls, scatter, per expert.
ExpertOut experts_oracle(const Routing& r, const ExpertIn& in) {
  const int C = in.C, F = in.F, A = r.A;
  ExpertOut o;
  o.y.assign((size_t)A * C, 0.f);
  o.h1.assign((size_t)A * F, 0.f);
  o.h3 = o.h1;
  o.act = o.h1;
  o.dx = in.dx0;
  o.dw1 = in.dw10;
  o.dw3 = in.dw30;
  o.dw2 = in.dw20;
  std::vector<float> dh1((size_t)A * F), dh3((size_t)A * F), dxa((size_t)A * C);
  for (int e = 0; e < r.E; e++) {
    const int j0 = r.exp_off[e], n = r.exp_off[e + 1] - j0;
    if (n == 0) continue;
    std::vector<float> xe((size_t)n * C), ye((size_t)n * C), dye((size_t)n * C), dxe((size_t)n * C, 0.f);
    for (int i = 0; i < n; i++) {
      const int a = r.perm[j0 + i];
      std::copy_n(in.x.data() + (size_t)r.a_tok[a] * C, C, xe.data() + (size_t)i * C);
      std::copy_n(in.dy.data() + (size_t)a * C, C, dye.data() + (size_t)i * C);
    }
    float *h1 = o.h1.data() + (size_t)j0 * F, *h3 = o.h3.data() + (size_t)j0 * F, *act = o.act.data() + (size_t)j0 * F;
    const float* w1 = in.w1.data() + (size_t)e * F * C;
    const float* w3 = in.w3.data() + (size_t)e * F * C;
    const float* w2 = in.w2.data() + (size_t)e * C * F;
    ref::matmul_forward(h1, xe.data(), w1, n, C, F);
    ref::matmul_forward(h3, xe.data(), w3, n, C, F);
    for (size_t i = 0; i < (size_t)n * F; i++) act[i] = h1[i] * sigmoid(h1[i]) * h3[i];
    ref::matmul_forward(ye.data(), act, w2, n, F, C);
    for (int i = 0; i < n; i++) std::copy_n(ye.data() + (size_t)i * C, C, o.y.data() + (size_t)r.perm[j0 + i] * C);
    float *d1 = dh1.data() + (size_t)j0 * F, *d3 = dh3.data() + (size_t)j0 * F;
    std::fill_n(d1, (size_t)n * F, 0.f);
    ref::matmul_backward(d1, o.dw2.data() + (size_t)e * C * F, dye.data(), act, w2, n, F, C);
    for (size_t i = 0; i < (size_t)n * F; i++) {
      const float a = h1[i], b = h3[i], sg = sigmoid(a), dact = d1[i];
      d1[i] = dact * b * sg * (1.f + a * (1.f - sg));
      d3[i] = dact * a * sg;
    }
    ref::matmul_backward(dxe.data(), o.dw1.data() + (size_t)e * F * C, d1, xe.data(), w1, n, C, F);
    ref::matmul_backward(dxe.data(), o.dw3.data() + (size_t)e * F * C, d3, xe.data(), w3, n, C, F);
    for (int i = 0; i < n; i++) std::copy_n(dxe.data() + (size_t)i * C, C, dxa.data() + (size_t)r.perm[j0 + i] * C);
  }
  for (int t = 0; t < r.N; t++)
    for (int a = r.tok_off[t]; a < r.tok_off[t + 1]; a++)
      for (int c = 0; c < C; c++) o.dx[(size_t)t * C + c] += dxa[(size_t)a * C + c];
  return o;
}

ExpertOut experts_run(const Routing& r, const ExpertIn& in) {
  const int C = in.C, F = in.F, A = r.A;
  ExpertOut o;
  o.y.assign((size_t)A * C, 0.f);
  o.h1.assign((size_t)A * F, 0.f);
  o.h3 = o.h1;
  o.act = o.h1;
  o.dx = in.dx0;
  o.dw1 = in.dw10;
  o.dw3 = in.dw30;
  o.dw2 = in.dw20;
  std::vector<float> scratch((size_t)A * (2 * F + C), std::numeric_limits<float>::quiet_NaN());
  ref::experts_forward(o.y.data(), o.h1.data(), o.h3.data(), o.act.data(), in.x.data(), in.w1.data(), in.w3.data(),
                       in.w2.data(), r.perm.data(), r.exp_off.data(), r.a_tok.data(), r.E, C, F);
  ref::experts_backward(o.dx.data(), o.dw1.data(), o.dw3.data(), o.dw2.data(), scratch.data(), in.dy.data(),
                        in.x.data(), o.h1.data(), o.h3.data(), o.act.data(), in.w1.data(), in.w3.data(),
                        in.w2.data(), r.perm.data(), r.exp_off.data(), r.tok_off.data(), r.a_tok.data(), r.N, r.E,
                        C, F);
  return o;
}

}  // namespace

TEST_CASE("speed: grouped experts give the per-expert matmuls' bits (every kernel, 1/2/3 threads)") {
  Settings guard;
  struct Shape {
    int N, E, K, C, F;
  };
  // E 64 with 100 tokens: most experts have 0-10 rows; C 300 spans two K-blocks in dx's product,
  // N 300 gives one expert more than 256 rows (two K-blocks in its weight gradients)
  const Shape shapes[] = {{100, 64, 2, 48, 20}, {300, 8, 2, 300, 40}, {64, 16, 4, 32, 64}};
  int runs = 0, bad = 0;
  for (const Shape& s : shapes) {
    const Routing r = make_routing(s.N, s.E, s.K, 11 + s.E);
    const ExpertIn in = make_expert_inputs(r, s.C, s.F, 100 + s.C);
    ref::set_simd_enabled(true);
    ref::set_gemm_kernel_cap("avx512");
    Settings::threads(1);
    const std::vector<float> want = experts_oracle(r, in).all();
    int empty = 0;
    for (int e = 0; e < s.E; e++) empty += r.exp_off[e] == r.exp_off[e + 1];
    CHECK(empty >= 1);  // the case of an expert without tokens is in every shape
    for (const char* cap : {"avx512", "avx2+fma", "portable"})
      for (int t : {1, 2, 3}) {
        ref::set_gemm_kernel_cap(cap);
        ref::set_simd_enabled(std::strcmp(cap, "portable") != 0);
        Settings::threads(t);
        const std::vector<float> got = experts_run(r, in).all();
        ++runs;
        if (!same(got, want)) {
          ++bad;
          MESSAGE("mismatch N=" << s.N << " E=" << s.E << " C=" << s.C << " cap " << std::string(cap) << " threads " << t);
        }
      }
  }
  CHECK(runs == 27);
  CHECK(bad == 0);
}

TEST_CASE("speed: experts_backward without dx or weight gradients leaves them alone") {
  Settings guard;
  const Routing r = make_routing(40, 8, 2, 5);
  const ExpertIn in = make_expert_inputs(r, 16, 12, 9);
  const ExpertOut full = experts_run(r, in);
  std::vector<float> scratch((size_t)r.A * (2 * 12 + 16));
  std::vector<float> dw1 = in.dw10;
  ref::experts_backward<float>(nullptr, dw1.data(), nullptr, nullptr, scratch.data(), in.dy.data(), in.x.data(),
                               full.h1.data(), full.h3.data(), full.act.data(), in.w1.data(), in.w3.data(),
                               in.w2.data(), r.perm.data(), r.exp_off.data(), r.tok_off.data(), r.a_tok.data(), r.N,
                               r.E, 16, 12);
  CHECK(same(dw1, full.dw1));  // the same dW1 as with every gradient wanted
}

// ------------------------------------------------------------------------------------- optimizer
namespace {

// AdamW in torch's order, written out (ref/ops.h), one element at a time.
void adamw_oracle(std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v,
                  float lr, float b1, float b2, float eps, float wd, int t) {
  const double bc1 = 1.0 - std::pow((double)b1, t), bc2 = 1.0 - std::pow((double)b2, t);
  const float decay = float(1.0 - (double)lr * wd), step = float((double)lr / bc1), bc2s = float(std::sqrt(bc2));
  for (size_t i = 0; i < p.size(); i++) {
    p[i] = p[i] * decay;
    m[i] = b1 * m[i] + (1.f - b1) * g[i];
    v[i] = b2 * v[i] + ((1.f - b2) * g[i]) * g[i];
    const float denom = std::sqrt(v[i]) / bc2s + eps;
    p[i] = p[i] - (step * m[i]) / denom;
  }
}

// sumsq's documented order: 64 chunks [n*c/64, n*(c+1)/64), each summed in order in double, then
// the chunks in order.
double sumsq_oracle(const std::vector<float>& g) {
  const size_t n = g.size();
  double total = 0;
  for (int c = 0; c < 64; c++) {
    double s = 0;
    for (size_t i = n * c / 64; i < n * (c + 1) / 64; i++) s += (double)g[i] * (double)g[i];
    total += s;
  }
  return total;
}

}  // namespace

TEST_CASE("speed: adamw and sumsq give their documented order's bits (vector and portable, 1/2/3 threads)") {
  Settings guard;
  int bad = 0;
  for (size_t n : {1u, 7u, 63u, 64u, 65u, 1000u, 4099u, 40000u}) {
    const auto g = randn(n, 3 + (unsigned)n, 0.01f);
    const auto p0 = randn(n, 4, 1.f), m0 = randn(n, 5, 0.01f);
    auto v0 = randn(n, 6, 1e-4f);
    for (auto& x : v0) x = x * x;  // second moments are >= 0
    for (int t : {1, 2, 3}) {
      Settings::threads(t);
      for (bool simd : {true, false}) {
        ref::set_simd_enabled(simd);
        // three steps, so that m and v carry over
        std::vector<float> p = p0, m = m0, v = v0, po = p0, mo = m0, vo = v0;
        for (int step = 1; step <= 3; step++) {
          ref::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
          adamw_oracle(po, g, mo, vo, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
        }
        if (!same(p, po) || !same(m, mo) || !same(v, vo)) {
          ++bad;
          MESSAGE("adamw mismatch n=" << n << " threads " << t << " simd " << simd);
        }
        const double s = ref::sumsq(g.data(), n), so = sumsq_oracle(g);
        if (std::memcmp(&s, &so, sizeof s) != 0) {
          ++bad;
          MESSAGE("sumsq mismatch n=" << n << " threads " << t << " simd " << simd << ": " << s << " vs " << so);
        }
      }
    }
  }
  CHECK(bad == 0);
}

// ---------------------------------------------------------------------------------- cross-entropy
TEST_CASE("speed: cross-entropy rows with a zero or infinite maximum, and NaN, take the same path both ways") {
  Settings guard;
  const int V = 37, N = 5;
  std::vector<float> logits((size_t)N * V, -3.f);
  for (int v = 0; v < V; v++) logits[v] = v % 2 ? -0.f : -1.f;                 // row 0: max is -0 (and +0 below)
  logits[20] = 0.f;
  for (int v = 0; v < V; v++) logits[V + v] = v == 9 ? 0.f : -0.f;          // row 1: +0 and -0 only
  logits[2 * V + 30] = -std::numeric_limits<float>::infinity();             // row 2: a -inf logit
  for (int v = 0; v < V; v++) logits[3 * V + v] = (float)(v % 7) - 100.f;   // row 3: max reached 6 times
  const std::vector<int> targets = {20, 0, 30, 36, 4};
  for (int t : {1, 2}) {
    Settings::threads(t);
    std::vector<float> lv(N), lp(N), dv((size_t)N * V, 0.5f), dp((size_t)N * V, 0.5f);
    ref::set_simd_enabled(true);
    const double mv = ref::crossentropy_forward(lv.data(), logits.data(), targets.data(), N, V);
    ref::crossentropy_backward(dv.data(), logits.data(), targets.data(), N, V, 1.f);
    ref::set_simd_enabled(false);
    const double mp = ref::crossentropy_forward(lp.data(), logits.data(), targets.data(), N, V);
    ref::crossentropy_backward(dp.data(), logits.data(), targets.data(), N, V, 1.f);
    CHECK(same(lv, lp));
    CHECK(same(dv, dp));
    CHECK(std::memcmp(&mv, &mp, sizeof mv) == 0);
    // row 1: every logit is a zero, so the loss is exactly log(V)
    CHECK(lv[1] == doctest::Approx(std::log((double)V)).epsilon(1e-6));
  }
  // a NaN anywhere in a row makes its loss and its gradient NaN on both paths
  std::vector<float> bad = logits;
  bad[3 * V + 17] = std::numeric_limits<float>::quiet_NaN();
  for (bool simd : {true, false}) {
    ref::set_simd_enabled(simd);
    std::vector<float> l(N), d((size_t)N * V, 0.f);
    ref::crossentropy_forward(l.data(), bad.data(), targets.data(), N, V);
    ref::crossentropy_backward(d.data(), bad.data(), targets.data(), N, V, 1.f);
    CHECK(std::isnan(l[3]));
    CHECK(std::isnan(d[3 * V]));
    CHECK(!std::isnan(l[0]));
  }
}

// ------------------------------------------------------------------------------------------ RMSNorm
TEST_CASE("speed: RMSNorm's rows in groups give one row at a time's bits (every N mod 4, 1/2/3 threads)") {
  Settings guard;
  const int C = 37;
  const float eps = 1e-5f;
  for (int N : {1, 3, 4, 5, 8, 11}) {
    const auto x = randn((size_t)N * C, 40 + N, 2.f), w = randn(C, 41, 1.f), dy = randn((size_t)N * C, 42, 1.f);
    const auto din0 = randn((size_t)N * C, 43, 1.f), dw0 = randn(C, 44, 1.f);
    // the oracle: ref/ops.cpp's formulas, one row at a time, sums in increasing c, dw over rows in order
    std::vector<float> out_o((size_t)N * C), rstd_o(N), din_o = din0, dw_o = dw0;
    for (int n = 0; n < N; n++) {
      double ss = 0;
      for (int c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
      rstd_o[n] = float(1.0 / std::sqrt(ss / C + eps));
      for (int c = 0; c < C; c++) out_o[n * C + c] = x[n * C + c] * rstd_o[n] * w[c];
      double s = 0;
      for (int c = 0; c < C; c++) s += (double)dy[n * C + c] * w[c] * x[n * C + c];
      const double r = rstd_o[n];
      const float coef = float(r * r * r * s / C);
      for (int c = 0; c < C; c++) din_o[n * C + c] += rstd_o[n] * (w[c] * dy[n * C + c]) - x[n * C + c] * coef;
    }
    for (int c = 0; c < C; c++) {
      float acc = 0;
      for (int n = 0; n < N; n++) acc += dy[n * C + c] * (x[n * C + c] * rstd_o[n]);
      dw_o[c] += acc;
    }
    for (int t : {1, 2, 3}) {
      Settings::threads(t);
      std::vector<float> out((size_t)N * C), rstd(N), din = din0, dw = dw0;
      ref::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
      ref::rmsnorm_backward(din.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
      CHECK(same(out, out_o));
      CHECK(same(rstd, rstd_o));
      CHECK(same(din, din_o));
      CHECK(same(dw, dw_o));
    }
  }
}

TEST_CASE("speed: the loss's AVX-512, AVX2 and portable code give the same bits") {
  Settings guard;
  for (int V : {5, 15, 16, 17, 33, 4096, 4099}) {
    const int N = 6;
    const auto logits = randn((size_t)N * V, 60 + V, 3.f);
    std::vector<int> targets(N);
    for (int n = 0; n < N; n++) targets[n] = (n * 131 + 7) % V;
    targets[0] = V - 1;  // in a scalar tail when V % 16 != 0
    std::vector<std::vector<float>> losses, grads;
    std::vector<double> means;
    for (const char* cap : {"avx512", "avx2+fma", "portable"}) {
      ref::set_gemm_kernel_cap(cap);
      ref::set_simd_enabled(std::strcmp(cap, "portable") != 0);
      std::vector<float> l(N), d = randn((size_t)N * V, 61, 0.1f);
      means.push_back(ref::crossentropy_forward(l.data(), logits.data(), targets.data(), N, V));
      ref::crossentropy_backward(d.data(), logits.data(), targets.data(), N, V, 0.5f);
      losses.push_back(l);
      grads.push_back(d);
    }
    for (int i = 1; i < 3; i++) {
      CHECK(same(losses[i], losses[0]));
      CHECK(same(grads[i], grads[0]));
      CHECK(std::memcmp(&means[i], &means[0], sizeof(double)) == 0);
    }
  }
}
