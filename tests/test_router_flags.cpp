// test_router_flags.cpp — the router semantics that other implementations use (docs/MODEL.md
// sections 5 and 6), each against a hand-computed case:
//   - gates scaled with and without renormalisation (route_scale, norm_topk), K = 1 included
//     (Megatron's softmax-after-top-K and norm_topk give gate 1; sigmoid without it gives the score);
//   - the centred bias update (torchtitan: the step's deltas minus their mean over the experts);
//   - the loss-free bias together with the sequence-wise aux loss (DeepSeek-V3, balance lossfree_aux):
//     the aux loss counts the unbiased top-K while the bias steers the routing;
//   - the config's refusals of combinations without meaning, and old configs read as they ran.
// The PyTorch reference (tests/torch_ref.py, tests/check_torch_dumps.sh) checks the same semantics on
// whole training steps; these cases pin the arithmetic down to exact values.
#include <doctest/doctest.h>  // TEST_CASE, CHECK

#include <algorithm>  // std::sort
#include <cmath>      // std::exp
#include <cstdint>    // int64_t
#include <numeric>    // std::iota
#include <string>     // std::string
#include <vector>     // std::vector

#include "ref/config.h"
#include "ref/model.h"
#include "ref/moe.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"  // error_of, contains

using ref::BiasKind;
using ref::UpdateRule;

namespace {

struct Gates {
  std::vector<int> tok_off, a_tok, a_exp;
  std::vector<float> gate;
};

Gates route(const std::vector<float>& s, int N, int E, int K, bool norm, float scale, const float* bias = nullptr) {
  Gates g{std::vector<int>(N + 1), std::vector<int>(N * K), std::vector<int>(N * K), std::vector<float>(N * K)};
  ref::route_token_choice(g.tok_off.data(), g.a_tok.data(), g.a_exp.data(), g.gate.data(), s.data(), bias,
                          BiasKind::add, N, E, K, norm, scale);
  return g;
}

}  // namespace

TEST_CASE("router flags: route_scale multiplies the plain gates, and the renormalised ones after the division") {
  // one token, scores 0.1 0.4 0.3 0.2: the top 2 are experts 1 (0.4) and 2 (0.3)
  const std::vector<float> s = {0.1f, 0.4f, 0.3f, 0.2f};
  SUBCASE("without norm_topk: gate = scale * s (HF DeepSeek-V2 without norm_topk_prob)") {
    const Gates g = route(s, 1, 4, 2, false, 2.0f);
    CHECK(g.a_exp == std::vector<int>{1, 2});
    CHECK(g.gate == std::vector<float>{0.8f, 0.6f});  // doubling is exact
    CHECK(route(s, 1, 4, 2, false, 1.0f).gate == std::vector<float>{0.4f, 0.3f});  // scale 1: the scores bit for bit
  }
  SUBCASE("with norm_topk: gate = scale * s / Z, Z = 0.7 (DeepSeek-V3, scale 2.5)") {
    const Gates g = route(s, 1, 4, 2, true, 2.5f);
    CHECK(g.gate[0] == doctest::Approx(2.5 * 0.4 / 0.7).epsilon(1e-6));
    CHECK(g.gate[1] == doctest::Approx(2.5 * 0.3 / 0.7).epsilon(1e-6));
    CHECK(g.gate[0] + g.gate[1] == doctest::Approx(2.5).epsilon(1e-6));
  }
}

TEST_CASE("router flags: K = 1 gates are the score, or exactly route_scale with norm_topk, whose gradient is 0") {
  // three tokens of sigmoid-like scores, and a softmax row (Megatron's default softmax router with K=1:
  // softmax over the single selected logit is 1, which is what norm_topk gives)
  const int N = 3, E = 4;
  std::vector<float> s = {0.2f, 0.7f, 0.4f, 0.1f, 0.55f, 0.5f, 0.45f, 0.6f, 0.3f, 0.2f, 0.1f, 0.25f};
  const std::vector<int> best = {1, 3, 0};
  SUBCASE("sigmoid without norm_topk: gate = s of the chosen expert") {
    const Gates g = route(s, N, E, 1, false, 1.0f);
    CHECK(g.a_exp == best);
    CHECK(g.gate == std::vector<float>{0.7f, 0.6f, 0.3f});
  }
  SUBCASE("norm_topk: gate = route_scale exactly, for sigmoid and for softmax scores") {
    CHECK(route(s, N, E, 1, true, 1.0f).gate == std::vector<float>{1.0f, 1.0f, 1.0f});
    CHECK(route(s, N, E, 1, true, 1.5f).gate == std::vector<float>{1.5f, 1.5f, 1.5f});
    std::vector<float> soft(E);  // a softmax row of logits 0.3 1.2 -0.5 0.1
    const double lg[4] = {0.3, 1.2, -0.5, 0.1};
    double z = 0;
    for (int i = 0; i < E; i++) z += std::exp(lg[i]);
    for (int i = 0; i < E; i++) soft[i] = float(std::exp(lg[i]) / z);
    const Gates g = route(soft, 1, E, 1, true, 1.0f);
    CHECK(g.a_exp == std::vector<int>{1});
    CHECK(g.gate == std::vector<float>{1.0f});
  }
  SUBCASE("gates_backward: K=1 with norm_topk passes exactly 0 to the scores; without it, scale * dgate") {
    const std::vector<float> dg = {0.3f, -1.25f, 2.0f};
    for (float scale : {1.0f, 1.5f}) {
      const Gates g = route(s, N, E, 1, true, scale);
      std::vector<float> ds(N * E, 0.0f);
      ref::gates_backward(ds.data(), dg.data(), s.data(), g.tok_off.data(), g.a_exp.data(), g.gate.data(), N, E, true,
                          scale);
      CHECK(ds == std::vector<float>(N * E, 0.0f));
    }
    const Gates g = route(s, N, E, 1, false, 2.0f);
    std::vector<float> ds(N * E, 0.0f);
    ref::gates_backward(ds.data(), dg.data(), s.data(), g.tok_off.data(), g.a_exp.data(), g.gate.data(), N, E, false,
                        2.0f);
    std::vector<float> want(N * E, 0.0f);
    for (int t = 0; t < N; t++) want[t * E + best[t]] = 2.0f * dg[t];
    CHECK(ds == want);
  }
}

TEST_CASE("router flags: gates_backward with a scale and no renormalisation matches finite differences") {
  const int N = 5, E = 6, K = 2;
  std::vector<double> s(N * E);
  gradcheck::fill_uniform(s, 71, 0.0, 0.01);
  for (int t = 0; t < N; t++)
    for (int i = 0; i < E; i++) s[t * E + i] += 0.1 * ((2 * i + 3 * t) % E);  // keys 0.09 apart: no flips
  std::vector<double> R(N * K);
  gradcheck::fill_uniform(R, 72);
  auto gates_of = [&](const std::vector<double>& sc) {
    std::vector<int> off(N + 1), tok(N * K), ex(N * K);
    std::vector<double> g(N * K);
    ref::route_token_choice(off.data(), tok.data(), ex.data(), g.data(), sc.data(), nullptr, BiasKind::add, N, E, K,
                            false, 2.5f);
    return std::make_pair(ex, g);
  };
  const auto base = gates_of(s);
  std::vector<int> off(N + 1);
  for (int t = 0; t <= N; t++) off[t] = t * K;
  std::vector<double> ds(N * E, 0.0);
  ref::gates_backward(ds.data(), R.data(), s.data(), off.data(), base.first.data(), base.second.data(), N, E, false,
                      2.5f);
  bool flipped = false;
  auto loss = [&] {
    const auto r = gates_of(s);
    flipped |= r.first != base.first;
    double acc = 0;
    for (int a = 0; a < N * K; a++) acc += r.second[a] * R[a];
    return acc;
  };
  CHECK(gradcheck::max_rel_error(s, ds, loss) < 1e-6);
  CHECK_FALSE(flipped);
}

TEST_CASE("router flags: the centred bias update subtracts the mean of the step's deltas (torchtitan)") {
  SUBCASE("sign rule, hand case: counts 3 1 1 1, u = 1/4") {
    // mean 1.5: expert 0 over (-u), the others under (+u); mean delta = 2u/4 = 1/8
    const std::vector<int64_t> c = {3, 1, 1, 1};
    std::vector<float> b(4, 0.0f);
    ref::bias_update(b.data(), c.data(), 4, UpdateRule::sign, 0.25f, /*center=*/true);
    CHECK(b == std::vector<float>{-0.375f, 0.125f, 0.125f, 0.125f});
    std::vector<float> plain(4, 0.0f);  // the paper's rule moves the mean
    ref::bias_update(plain.data(), c.data(), 4, UpdateRule::sign, 0.25f, false);
    CHECK(plain == std::vector<float>{-0.25f, 0.25f, 0.25f, 0.25f});
  }
  SUBCASE("sign rule with a balanced expert: counts 0 0 6 -> +u +u -u, mean u/3, u = 3/4") {
    const std::vector<int64_t> c = {0, 0, 6};
    std::vector<float> b = {1.0f, -2.0f, 0.5f};
    ref::bias_update(b.data(), c.data(), 3, UpdateRule::sign, 0.75f, true);
    CHECK(b == std::vector<float>{1.5f, -1.5f, -0.5f});  // deltas 0.5 0.5 -1
    const std::vector<int64_t> even = {2, 1, 0};  // sgn -1 0 +1: mean 0, the same as the paper's rule
    std::vector<float> be = {0.5f, 0.25f, -0.75f};
    ref::bias_update(be.data(), even.data(), 3, UpdateRule::sign, 0.125f, true);
    CHECK(be == std::vector<float>{0.375f, 0.25f, -0.625f});
  }
  SUBCASE("error rule: its deltas already sum to 0, so centring changes at most the last bits") {
    const std::vector<int64_t> c = {10, 20, 30, 40};
    std::vector<float> b(4, 0.0f);
    ref::bias_update(b.data(), c.data(), 4, UpdateRule::error, 0.01f, true);
    CHECK(b[0] == doctest::Approx(0.006).epsilon(1e-6));
    CHECK(b[3] == doctest::Approx(-0.006).epsilon(1e-6));
  }
  SUBCASE("over many steps the centred bias keeps mean 0; the paper's drifts") {
    std::vector<float> b(6, 0.0f), plain(6, 0.0f);
    uint64_t x = 12345;
    for (int step = 0; step < 200; ++step) {
      std::vector<int64_t> c(6);
      for (auto& v : c) v = int64_t((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 60);
      c[0] += 20;  // expert 0 always overloaded: the paper's rule lowers it, raising the mean for the rest
      ref::bias_update(b.data(), c.data(), 6, UpdateRule::sign, 1e-3f, true);
      ref::bias_update(plain.data(), c.data(), 6, UpdateRule::sign, 1e-3f, false);
    }
    double mean = 0, mean_plain = 0;
    for (int i = 0; i < 6; i++) mean += b[i] / 6.0, mean_plain += plain[i] / 6.0;
    CHECK(std::fabs(mean) < 1e-6);       // 200 steps of rounding at 1e-3 / 2^23 each
    CHECK(std::fabs(mean_plain) > 1e-2);  // the uncentred rule: mean u * (sum sgn)/E per step
  }
}

TEST_CASE("router flags: lossfree_aux routes with the bias but its aux loss counts the unbiased top-K") {
  ref::Config c = ref::preset("tiny");
  c.T = 8; c.B = 2; c.L = 2; c.n_dense = 1; c.E = 4; c.K = 2; c.S = 0; c.C = 16; c.H = 2; c.F = 8; c.Fd = 16;
  c.init_std = 0.05f;
  c.balance = ref::Balance::lossfree_aux;
  c.aux_alpha = 0.01f;
  std::unique_ptr<ref::Model> m = ref::make_model(c);
  m->set_biases({10.0f, 10.0f, 0.0f, 0.0f});  // every token is routed to experts 0 and 1
  const int N = c.B * c.T;
  std::vector<int> tokens(N), targets(N);
  for (int n = 0; n < N; n++) tokens[n] = (7 * n + 3) % c.V, targets[n] = (5 * n + 1) % c.V;
  m->forward(ref::MicroBatch{tokens.data(), targets.data(), nullptr});
  const ref::RoutingTrace r = m->routing(0);
  for (int n = 0; n < N; n++) {
    CHECK(r.a_exp[2 * n] <= 1);  // the bias decides which experts run
    CHECK(r.a_exp[2 * n + 1] <= 1);
  }
  // the paper's eq. 2 per sequence, written out: f from each token's top-2 of the plain scores,
  // P from the scores normalised over the experts (sigmoid)
  auto aux_with = [&](bool unbiased) {
    double total = 0;
    for (int b = 0; b < c.B; b++) {
      std::vector<double> f(c.E, 0.0), P(c.E, 0.0);
      for (int t = 0; t < c.T; t++) {
        const float* s = r.scores.data() + (size_t)(b * c.T + t) * c.E;
        std::vector<int> idx(c.E);
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](int i, int j) { return s[i] > s[j]; });
        for (int k = 0; k < c.K; k++) f[unbiased ? idx[k] : r.a_exp[(b * c.T + t) * c.K + k]] += 1;
        double Z = 0;
        for (int i = 0; i < c.E; i++) Z += s[i];
        for (int i = 0; i < c.E; i++) P[i] += s[i] / Z / c.T;
      }
      for (int i = 0; i < c.E; i++) total += double(float(c.E * f[i] / (c.K * c.T))) * P[i];
    }
    return c.aux_alpha * total / c.B;
  };
  const double got = m->router_trace(0).aux;
  CHECK(got == doctest::Approx(aux_with(true)).epsilon(1e-9));
  CHECK(std::fabs(aux_with(true) - aux_with(false)) > 1e-4 * aux_with(true));  // the two choices differ here
  // the step's counts (what the bias update uses) are those of the biased routing
  std::vector<int64_t> counts(c.E, 0);
  for (int e : r.a_exp) counts[e]++;
  CHECK(counts[2] + counts[3] == 0);
}

TEST_CASE("router flags: combinations without meaning are refused, naming both settings and what to use") {
  ref::Config c = ref::preset("tiny");
  c.bias_center = true;
  c.balance = ref::Balance::aux;
  std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "--bias-center with --balance aux"));
  CHECK(contains(e, "use --balance lossfree"));
  c.balance = ref::Balance::lossfree_aux;
  CHECK(error_of([&] { ref::validate(c); }) == "");
  c.aux_alpha = 0;
  e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "--balance lossfree_aux with --aux-alpha 0"));
  CHECK(contains(e, "use --balance lossfree"));
  c = ref::preset("tiny");
  c.route_scale = 0;
  CHECK(contains(error_of([&] { ref::validate(c); }), "route-scale must be a positive number"));
  c = ref::preset("tiny");
  c.routing = ref::Routing::expert_choice;
  c.balance = ref::Balance::lossfree_aux;
  CHECK(contains(error_of([&] { ref::validate(c); }), "expert choice has no bias to steer"));
}

TEST_CASE("router flags: the CUDA mirror's missing semantics are listed, each with what to use") {
  ref::Config c = ref::preset("tiny");
  CHECK(ref::cuda_unsupported(c).empty());
  c.norm_topk = true;
  c.route_scale = 2.5f;  // DeepSeek-V3's scaled renormalised gates: in the mirror
  CHECK(ref::cuda_unsupported(c).empty());
  c.norm_topk = false;  // scale without renormalisation: not yet
  REQUIRE(ref::cuda_unsupported(c).size() == 1);
  CHECK(contains(ref::cuda_unsupported(c)[0], "--route-scale without --norm-topk"));
  CHECK(contains(ref::cuda_unsupported(c)[0], "not yet in the CUDA mirror"));
  c.route_scale = 1;
  c.bias_center = true;
  c.balance = ref::Balance::lossfree_aux;
  const std::vector<std::string> m = ref::cuda_unsupported(c);
  REQUIRE(m.size() == 2);
  CHECK(contains(m[0], "--balance lossfree_aux"));
  CHECK(contains(m[1], "--bias-center"));
}

TEST_CASE("router flags: configs of earlier versions read as they ran; the new keys round-trip") {
  // before bias_center existed, route_scale without norm_topk was ignored: read with scale 1
  const ref::Config old = ref::config_from_json(R"({"route_scale": 2.5, "norm_topk": false})");
  CHECK(old.route_scale == 1.0f);
  CHECK(ref::config_from_json(R"({"route_scale": 2.5, "norm_topk": true})").route_scale == 2.5f);
  CHECK(ref::config_from_json(R"({"route_scale": 2.5, "norm_topk": false, "bias_center": false})").route_scale == 2.5f);
  ref::Config c = ref::preset("tiny");
  c.balance = ref::Balance::lossfree_aux;
  c.bias_center = true;
  c.route_scale = 2.0f;
  const ref::Config back = ref::config_from_json(ref::to_json(c));
  CHECK(back.balance == ref::Balance::lossfree_aux);
  CHECK(back.bias_center);
  CHECK(back.route_scale == 2.0f);
  CHECK(back.has_bias());
  CHECK(back.has_aux());
}
