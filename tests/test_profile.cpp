// test_profile.cpp — ref/profile.h, the phase timer behind `train --profile`.
//
// Oracles: the exclusive accounting is checked against busy waits of known length; the GEMM flop
// count of a whole training step against the shapes of docs/MODEL.md, summed by hand in the test;
// "profiling changes no value" against the same step run with the profiler off.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <cstdint>  // int64_t
#include <vector>   // std::vector

#include "ref/config.h"   // Config, preset
#include "ref/model.h"    // make_model, MicroBatch
#include "ref/profile.h"

namespace prof = ref::prof;

namespace {

void busy_wait_ns(int64_t ns) {
  const int64_t end = prof::now_ns() + ns;
  while (prof::now_ns() < end) {
  }
}

int64_t sum_ns(const prof::Totals& t) {
  int64_t s = 0;
  for (int64_t x : t.ns) s += x;
  return s;
}

// Profiling is global state: every test leaves it off.
struct ProfilerOn {
  ProfilerOn() { prof::enable(true); }
  ~ProfilerOn() { prof::enable(false); }
};

}  // namespace

TEST_CASE("profile: disabled scopes record nothing") {
  prof::enable(false);
  {
    prof::Scope a(prof::Phase::gemm, 123.0);
    prof::StageScope s(prof::Stage::fwd);
    busy_wait_ns(200000);
  }
  const prof::Totals t = prof::take();
  CHECK(sum_ns(t) == 0);
  CHECK(t.flops[(int)prof::Phase::gemm] == 0);
  CHECK(t.stage_ns[(int)prof::Stage::fwd] == 0);
  CHECK(t.scopes == 0);
}

TEST_CASE("profile: nested scopes charge exclusive time, never twice") {
  ProfilerOn on;
  const int64_t ms = 1000000;
  const int64_t t0 = prof::now_ns();
  {
    prof::Scope router(prof::Phase::router);
    busy_wait_ns(3 * ms);                           // router's own
    {
      prof::Scope gemm(prof::Phase::gemm, 100.0);
      busy_wait_ns(3 * ms);                         // gemm's, not router's
      prof::Scope inner(prof::Phase::gemm, 20.0);   // nested same phase: time once, flops added
      busy_wait_ns(1 * ms);
    }
    {
      prof::Scope other(prof::Phase::other);        // stops time going to router
      busy_wait_ns(2 * ms);
    }
  }
  const int64_t wall = prof::now_ns() - t0;
  const prof::Totals t = prof::take();
  const auto ns = [&](prof::Phase p) { return t.ns[(int)p]; };
  CHECK(ns(prof::Phase::router) >= 3 * ms);
  CHECK(ns(prof::Phase::gemm) >= 4 * ms);
  CHECK(ns(prof::Phase::other) >= 2 * ms);
  CHECK(ns(prof::Phase::attention) == 0);
  CHECK(ns(prof::Phase::optimizer) == 0);
  // The intervals partition the outer scope's life: their sum is at most the wall time around it
  // (and it covers the 9 ms of busy waits), so nothing was counted twice.
  CHECK(sum_ns(t) <= wall);
  CHECK(sum_ns(t) >= 9 * ms);
  CHECK(t.flops[(int)prof::Phase::gemm] == 120.0);
  CHECK(t.scopes == 4);
  // take() resets
  const prof::Totals again = prof::take();
  CHECK(sum_ns(again) == 0);
  CHECK(again.scopes == 0);
}

TEST_CASE("profile: a training step's GEMM flops match the model's shapes; values are unchanged") {
  ref::Config c = ref::preset("tiny");
  c.B = 2;
  c.T = 16;
  c.S = 2;
  const int N = c.B * c.T;
  std::vector<int> tokens(N), targets(N);
  for (int n = 0; n < N; ++n) tokens[n] = (n * 37 + 11) % c.V, targets[n] = (n * 53 + 5) % c.V;
  const ref::MicroBatch mb{tokens.data(), targets.data(), nullptr};

  auto step = [&](bool profiled, prof::Totals* out) {
    std::unique_ptr<ref::Model> m = ref::make_model(c);
    prof::enable(profiled);
    m->zero_grad();
    const ref::ForwardStats st = m->forward_backward(mb, 1.0f);
    if (out) *out = prof::take();
    prof::enable(false);
    std::vector<float> g = m->get(ref::Arena::grads);
    g.push_back((float)st.loss);
    return g;
  };
  prof::Totals t;
  const std::vector<float> plain = step(false, nullptr), profiled = step(true, &t);
  CHECK(plain == profiled);  // bitwise: the profiler never touches a value

  // Forward GEMMs, 2*rows*in*out each (docs/MODEL.md section 4): per layer q, k, v, o (C x C);
  // dense layers w1, w3 (C -> Fd) and w2 (Fd -> C); MoE layers the router (C -> E), S shared experts
  // and K routed assignments per token, each three C x F products; the LM head (C -> V).
  // The backward computes both the input and the weight gradient of every product: twice that.
  const double C = c.C, Fd = c.Fd, F = c.F, E = c.E, V = c.V, Nn = N;
  double fwd = 2 * Nn * C * V;
  for (int l = 0; l < c.L; ++l) {
    fwd += 2 * Nn * 4 * C * C;
    if (c.is_moe_layer(l))
      fwd += 2 * Nn * C * E + 2 * Nn * c.S * 3 * C * F + 2 * (Nn * c.K) * 3 * C * F;
    else
      fwd += 2 * Nn * 3 * C * Fd;
  }
  CHECK(t.flops[(int)prof::Phase::gemm] == 3 * fwd);
  CHECK(t.ns[(int)prof::Phase::gemm] > 0);
  CHECK(t.ns[(int)prof::Phase::attention] > 0);
  CHECK(t.ns[(int)prof::Phase::router] > 0);
  CHECK(t.stage_ns[(int)prof::Stage::fwd] > 0);
  CHECK(t.stage_ns[(int)prof::Stage::bwd] > 0);
  CHECK(t.stage_ns[(int)prof::Stage::update] == 0);  // forward_backward alone: no optimizer step
  CHECK(t.ns[(int)prof::Phase::optimizer] == 0);
}
