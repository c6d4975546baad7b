// test_simd_paths.cpp — every op with an AVX2 path gives the portable path's bits (ref/vmath.h:
// LFMOE_SIMD=0 / set_simd_enabled(false) selects the portable code). Sizes are chosen so that
// vector bodies, scalar tails and the cross-entropy's target column (in the body and in the tail)
// are all exercised.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "ref/ops.h"
#include "tests/test_util.h"  // randn, same
#include "ref/vmath.h"

namespace {


// Runs f with the vector code on and off; f fills its outputs into the vector it returns.
std::pair<std::vector<float>, std::vector<float>> both(const std::function<std::vector<float>()>& f) {
  ref::set_simd_enabled(true);
  auto v = f();
  ref::set_simd_enabled(false);
  auto p = f();
  ref::set_simd_enabled(true);
  return {v, p};
}

}  // namespace

TEST_CASE("simd paths: swiglu forward and backward give the portable bits") {
  if (!ref::simd_available()) MESSAGE("this CPU has no AVX2+FMA: both runs take the portable path");
  for (size_t n : {1u, 7u, 8u, 9u, 4096u, 4103u, 10000u}) {
    const auto a = randn(n, 1 + (unsigned)n, 4.f), b = randn(n, 2 + (unsigned)n, 1.f), d = randn(n, 3, 1.f);
    auto fwd = both([&] {
      std::vector<float> out(n);
      ref::swiglu_forward(out.data(), a.data(), b.data(), n);
      return out;
    });
    CHECK(same(fwd.first, fwd.second));
    auto bwd = both([&] {
      std::vector<float> da = randn(n, 5, 1.f), db = randn(n, 6, 1.f);  // backward accumulates
      ref::swiglu_backward(da.data(), db.data(), d.data(), a.data(), b.data(), n);
      da.insert(da.end(), db.begin(), db.end());
      return da;
    });
    CHECK(same(bwd.first, bwd.second));
  }
  // extreme inputs: exp overflows to inf or underflows to 0 in the sigmoid, never NaN
  const std::vector<float> a = {-200.f, -90.f, -50.f, 0.f, 50.f, 90.f, 200.f, -1e30f, 1e30f};
  const std::vector<float> b(a.size(), 1.f);
  auto fwd = both([&] {
    std::vector<float> out(a.size());
    ref::swiglu_forward(out.data(), a.data(), b.data(), a.size());
    return out;
  });
  CHECK(same(fwd.first, fwd.second));
  for (float y : fwd.first) CHECK(std::isfinite(y));
}

TEST_CASE("simd paths: cross-entropy forward and backward give the portable bits") {
  for (int V : {5, 8, 13, 256, 4096, 4099}) {
    const int N = 9;
    const auto logits = randn((size_t)N * V, 10 + V, 3.f);
    std::vector<int> targets(N);
    for (int n = 0; n < N; n++) targets[n] = (n * 997 + 3) % V;
    targets[0] = V - 1;  // in the scalar tail when V % 8 != 0
    targets[1] = 0;
    double loss_v = 0, loss_p = 0;
    auto fwd = both([&] {
      std::vector<float> losses(N);
      const double m = ref::crossentropy_forward(losses.data(), logits.data(), targets.data(), N, V);
      (ref::simd_enabled() ? loss_v : loss_p) = m;
      return losses;
    });
    CHECK(same(fwd.first, fwd.second));
    CHECK(loss_v == loss_p);
    auto bwd = both([&] {
      std::vector<float> dl = randn((size_t)N * V, 20, 0.1f);
      ref::crossentropy_backward(dl.data(), logits.data(), targets.data(), N, V, 0.75f);
      return dl;
    });
    CHECK(same(bwd.first, bwd.second));
  }
}

TEST_CASE("cross-entropy: the lane-ordered sum matches the exact loss and gradient") {
  // Independent oracle: log-sum-exp and softmax in long double, straight from the definition.
  const int N = 4, V = 1000;
  const auto logits = randn((size_t)N * V, 77, 5.f);
  const std::vector<int> targets = {0, 999, 500, 7};
  std::vector<float> losses(N), dl((size_t)N * V, 0.f);
  const double mean = ref::crossentropy_forward(losses.data(), logits.data(), targets.data(), N, V);
  ref::crossentropy_backward(dl.data(), logits.data(), targets.data(), N, V, 1.0f);
  long double want_mean = 0;
  for (int n = 0; n < N; n++) {
    const float* x = &logits[(size_t)n * V];
    long double mx = x[0], s = 0;
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++) s += std::exp((long double)x[v] - mx);
    const long double loss = mx + std::log(s) - x[targets[n]];
    CHECK(std::fabs((double)(losses[n] - loss)) <= 2e-6 * std::fabs((double)loss) + 1e-6);
    want_mean += loss / N;
    for (int v = 0; v < V; v++) {
      const long double p = std::exp((long double)x[v] - mx) / s - (v == targets[n] ? 1 : 0);
      CHECK(std::fabs((double)(dl[(size_t)n * V + v] - p / N)) <= 1e-6 * std::fabs((double)(p / N)) + 1e-12);
    }
  }
  CHECK(std::fabs(mean - (double)want_mean) <= 2e-6 * std::fabs((double)want_mean));
}
