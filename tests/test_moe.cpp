// test_moe.cpp — the router, dispatch/experts/combine, aux loss, loss-free bias and MaxVio (ref/moe.h).
//
// Oracles: central finite differences in double (tests/gradcheck.h) for every backward; hand-computed
// cases for the aux loss, the bias update and MaxVio; a direct per-token computation for the experts;
// and the named MoE invariants (the bias changes selection only, gates equal unbiased scores, ...),
// each its own TEST_CASE. Inputs for gradient checks are built with well-separated keys, and every
// check asserts that no perturbation changed the routing (a change would make the function
// non-smooth there, not the gradient wrong).
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <cmath>      // std::isnan, std::ldexp, std::nextafter, std::fabs
#include <cstdint>    // int64_t, uint32_t
#include <cstring>    // std::memcpy
#include <string>     // std::string
#include <vector>     // std::vector

#ifdef _OPENMP
#include <omp.h>  // omp_set_num_threads, omp_get_max_threads
#endif

#include "ref/moe.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"  // error_of

using ref::BiasKind;
using ref::Gate;
using ref::UpdateRule;

namespace {

const double kBudget = 1e-6;  // max_rel_error budget for every gradient check (see gradcheck.h)

std::vector<double> rand_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::vector<double> v(n);
  gradcheck::fill_uniform(v, seed, lo, hi);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// One routing in the token-major form of ref/moe.h.
template <typename T> struct Route {
  std::vector<int> tok_off, a_tok, a_exp;
  std::vector<T> gate;
  int A() const { return tok_off.back(); }
};

template <typename T>
Route<T> token_choice(const std::vector<T>& s, const float* bias, BiasKind kind, int N, int E, int K,
                      bool norm = false, float scale = 1.0f) {
  Route<T> r;
  r.tok_off.resize(N + 1);
  r.a_tok.resize((size_t)N * K);
  r.a_exp.resize((size_t)N * K);
  r.gate.resize((size_t)N * K);
  ref::route_token_choice(r.tok_off.data(), r.a_tok.data(), r.a_exp.data(), r.gate.data(), s.data(), bias, kind, N,
                          E, K, norm, scale);
  return r;
}

template <typename T>
Route<T> expert_choice(const std::vector<T>& s, const int* order, int N, int E, int K, int chunk, bool norm = false,
                       float scale = 1.0f) {
  Route<T> r;
  r.tok_off.resize(N + 1);
  r.a_tok.resize((size_t)N * K);
  r.a_exp.resize((size_t)N * K);
  r.gate.resize((size_t)N * K);
  ref::route_expert_choice(r.tok_off.data(), r.a_tok.data(), r.a_exp.data(), r.gate.data(), s.data(), order, N, E,
                           K, chunk, norm, scale);
  return r;
}

template <typename T> bool same_selection(const Route<T>& a, const Route<T>& b) {
  return a.tok_off == b.tok_off && a.a_tok == b.a_tok && a.a_exp == b.a_exp;
}

// Scores far from any tie: ranks 0.1 apart plus noise below 0.01, so competing keys differ by >= 0.09.
// Token choice (by_expert false): token t ranks expert i at (3i + 5t) % E (E = 8), distinct over i.
// Expert choice (by_expert true, N = 8): expert i ranks token t at (5t + 3 (i/2)) % 8, distinct over t;
// pairs of experts share their favourites, so some tokens get more than K experts and some fewer.
std::vector<double> separated_scores(int N, int E, uint64_t seed, bool by_expert = false) {
  std::vector<double> s = rand_vec((size_t)N * E, seed, 0.0, 0.01);
  for (int t = 0; t < N; t++)
    for (int i = 0; i < E; i++)
      s[(size_t)t * E + i] += 0.05 + 0.1 * (by_expert ? (5 * t + 3 * (i / 2)) % 8 : (3 * i + 5 * t) % 8);
  return s;
}

// Routed SwiGLU experts' weights: w1, w3 (E,F,C), w2 (E,C,F).
template <typename T> struct Experts {
  int E, C, F;
  std::vector<T> w1, w3, w2;
};

Experts<double> random_experts(int E, int C, int F, uint64_t seed) {
  return {E, C, F, rand_vec((size_t)E * F * C, seed, -0.7, 0.7), rand_vec((size_t)E * F * C, seed + 1, -0.7, 0.7),
          rand_vec((size_t)E * C * F, seed + 2, -0.7, 0.7)};
}

// Saved activations of one MoE forward.
template <typename T> struct MoeActs {
  std::vector<int> perm, exp_off;
  std::vector<T> y, h1, h3, act, out;
};

// dispatch -> experts -> combine; out (N,C) starts at 0.
template <typename T>
MoeActs<T> moe_forward(const Route<T>& r, const std::vector<T>& x, const Experts<T>& w, int N) {
  const int A = r.A(), C = w.C, F = w.F;
  MoeActs<T> m;
  m.perm.resize(A);
  m.exp_off.resize(w.E + 1);
  ref::dispatch_sort(m.perm.data(), m.exp_off.data(), r.a_exp.data(), A, w.E);
  m.y.resize((size_t)A * C);
  m.h1.resize((size_t)A * F);
  m.h3.resize((size_t)A * F);
  m.act.resize((size_t)A * F);
  ref::experts_forward(m.y.data(), m.h1.data(), m.h3.data(), m.act.data(), x.data(), w.w1.data(), w.w3.data(),
                       w.w2.data(), m.perm.data(), m.exp_off.data(), r.a_tok.data(), w.E, C, F);
  m.out.assign((size_t)N * C, T(0));
  ref::combine_forward(m.out.data(), m.y.data(), r.gate.data(), r.tok_off.data(), N, C);
  return m;
}

double silu(double a) { return a / (1.0 + std::exp(-a)); }

double dot_sum(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0;
  for (size_t i = 0; i < a.size(); i++) acc += a[i] * b[i];
  return acc;
}

// Round a float to bfloat16 (nearest, ties to even) and back: what a bf16 bias or reduction would keep.
float to_bf16(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

}  // namespace

// =============================================================================================
// gradient checks (double)

TEST_CASE("moe: router_scores_backward matches finite differences (sigmoid and softmax)") {
  const int N = 5, E = 6;
  for (Gate gate : {Gate::sigmoid, Gate::softmax}) {
    const char* gate_name = gate == Gate::sigmoid ? "sigmoid" : "softmax";
    CAPTURE(gate_name);
    std::vector<double> logits = rand_vec(N * E, 11, -3, 3), R = rand_vec(N * E, 12);
    std::vector<double> scores(N * E), dlogits(N * E, 0.25);  // starts non-zero: backward must accumulate
    ref::router_scores_forward(scores.data(), logits.data(), N, E, gate);
    ref::router_scores_backward(dlogits.data(), R.data(), scores.data(), N, E, gate);
    for (double& d : dlogits) d -= 0.25;
    auto loss = [&] {
      std::vector<double> s(N * E);
      ref::router_scores_forward(s.data(), logits.data(), N, E, gate);
      return dot_sum(s, R);
    };
    CHECK(gradcheck::max_rel_error(logits, dlogits, loss) < kBudget);
  }
}

TEST_CASE("moe: router scores are finite and exact at large |logits|") {
  const int E = 4;
  std::vector<float> logits = {-1000.f, 1000.f, 0.f, 88.f}, s(E);
  ref::router_scores_forward(s.data(), logits.data(), 1, E, Gate::sigmoid);
  CHECK(s[0] == 0.0f);
  CHECK(s[1] == 1.0f);
  CHECK(s[2] == 0.5f);
  CHECK(s[3] == 1.0f);
  ref::router_scores_forward(s.data(), logits.data(), 1, E, Gate::softmax);  // without max-subtraction: inf/inf
  CHECK(s[1] == 1.0f);
  CHECK(s[0] == 0.0f);
  CHECK(s[2] == 0.0f);
  std::vector<float> l2 = {1.f, 2.f, 3.f, 4.f};
  ref::router_scores_forward(s.data(), l2.data(), 1, E, Gate::softmax);
  CHECK(double(s[0]) + s[1] + s[2] + s[3] == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(s[3] == doctest::Approx(std::exp(4.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0))));
}

TEST_CASE("moe: gates_backward matches finite differences (plain and norm_topk, token and expert choice)") {
  const int N = 8, E = 8, K = 3;  // expert choice: chunks of 8, cap 3
  std::vector<int> order = {4, 1, 5, 0, 7, 3, 2, 6};
  std::vector<float> bias = to_float(rand_vec(E, 21, -0.02, 0.02));  // too small to reorder gaps of 0.09
  for (int expert : {0, 1})
    for (bool norm : {false, true}) {
      CAPTURE(expert);
      CAPTURE(norm);
      const float scale = norm ? 2.5f : 1.0f;
      std::vector<double> s = separated_scores(N, E, 22, expert == 1);
      auto route = [&](const std::vector<double>& sc) {
        return expert ? expert_choice(sc, order.data(), N, E, K, 8, norm, scale)
                      : token_choice(sc, bias.data(), BiasKind::add, N, E, K, norm, scale);
      };
      const Route<double> base = route(s);
      const std::vector<double> R = rand_vec(base.A(), 23);
      if (expert) {  // tokens with other than K experts are part of the case
        int uneven = 0;
        for (int t = 0; t < N; t++) uneven += base.tok_off[t + 1] - base.tok_off[t] != K;
        CHECK(uneven > 0);
      }
      std::vector<double> ds(N * E, 0.0);
      ref::gates_backward(ds.data(), R.data(), s.data(), base.tok_off.data(), base.a_exp.data(), base.gate.data(), N,
                          E, norm, scale);
      bool flipped = false;
      auto loss = [&] {
        const Route<double> r = route(s);
        flipped |= !same_selection(r, base);
        return dot_sum(r.gate, R);
      };
      CHECK(gradcheck::max_rel_error(s, ds, loss) < kBudget);
      CHECK_FALSE(flipped);
    }
}

TEST_CASE("moe: experts_backward matches finite differences (dx, dw1, dw3, dw2)") {
  const int N = 5, E = 4, K = 2, C = 6, F = 5;
  // expert 3 is pushed out by the bias, so an empty group is part of the case
  std::vector<float> bias = {0.f, 0.f, 0.f, -10.f};
  const Route<double> r = token_choice(rand_vec(N * E, 31, 0, 1), bias.data(), BiasKind::add, N, E, K);
  std::vector<double> x = rand_vec(N * C, 32);
  Experts<double> w = random_experts(E, C, F, 33);
  const int A = r.A();
  const std::vector<double> R = rand_vec((size_t)A * C, 34);  // loss = sum(y * R)

  MoeActs<double> m = moe_forward(r, x, w, N);
  REQUIRE(m.exp_off[3] == m.exp_off[4]);
  // gradients start at 0.5 and the 0.5 is taken off afterwards: backward must accumulate
  std::vector<double> dx(N * C, 0.5), dw1(w.w1.size(), 0.5), dw3(w.w3.size(), 0.5), dw2(w.w2.size(), 0.5);
  std::vector<double> scratch((size_t)A * (2 * F + C), 1e30);  // garbage: must be fully overwritten
  ref::experts_backward(dx.data(), dw1.data(), dw3.data(), dw2.data(), scratch.data(), R.data(), x.data(),
                        m.h1.data(), m.h3.data(), m.act.data(), w.w1.data(), w.w3.data(), w.w2.data(), m.perm.data(),
                        m.exp_off.data(), r.tok_off.data(), r.a_tok.data(), N, E, C, F);
  for (auto* g : {&dx, &dw1, &dw3, &dw2})
    for (double& v : *g) v -= 0.5;
  auto loss = [&] { return dot_sum(moe_forward(r, x, w, N).y, R); };
  CHECK(gradcheck::max_rel_error(x, dx, loss) < kBudget);
  CHECK(gradcheck::max_rel_error(w.w1, dw1, loss) < kBudget);
  CHECK(gradcheck::max_rel_error(w.w3, dw3, loss) < kBudget);
  CHECK(gradcheck::max_rel_error(w.w2, dw2, loss) < kBudget);
  for (size_t i = (size_t)3 * F * C; i < dw1.size(); i++) CHECK(dw1[i] == 0.0);  // the empty expert gets nothing
}

TEST_CASE("moe: experts_forward matches a direct per-token computation") {
  const int N = 7, E = 5, K = 2, C = 4, F = 3;
  const Route<double> r = token_choice(rand_vec(N * E, 41, 0, 1), nullptr, BiasKind::add, N, E, K);
  const std::vector<double> x = rand_vec(N * C, 42);
  const Experts<double> w = random_experts(E, C, F, 43);
  const MoeActs<double> m = moe_forward(r, x, w, N);
  // out[t] = sum_k gate * W2[e] (silu(W1[e] x) * W3[e] x), written out with no dispatch at all
  for (int t = 0; t < N; t++)
    for (int c = 0; c < C; c++) {
      double want = 0;
      for (int a = t * K; a < (t + 1) * K; a++) {
        const int e = r.a_exp[a];
        for (int f = 0; f < F; f++) {
          double u1 = 0, u3 = 0;
          for (int k = 0; k < C; k++) {
            u1 += w.w1[((size_t)e * F + f) * C + k] * x[t * C + k];
            u3 += w.w3[((size_t)e * F + f) * C + k] * x[t * C + k];
          }
          want += r.gate[a] * w.w2[((size_t)e * C + c) * F + f] * silu(u1) * u3;
        }
      }
      CHECK(m.out[t * C + c] == doctest::Approx(want).epsilon(1e-12));
    }
}

TEST_CASE("moe: combine_backward matches finite differences") {
  const int N = 5, E = 5, K = 2, C = 3;
  const Route<double> r = expert_choice(rand_vec(N * E, 51, 0, 1), nullptr, N, E, K, 0);  // uneven tokens
  std::vector<double> y = rand_vec((size_t)r.A() * C, 52), gate = rand_vec(r.A(), 53);
  const std::vector<double> R = rand_vec(N * C, 54);
  std::vector<double> dy((size_t)r.A() * C, 1e30), dgate(r.A(), 1e30);  // combine_backward overwrites
  ref::combine_backward(dy.data(), dgate.data(), R.data(), y.data(), gate.data(), r.tok_off.data(), N, C);
  auto loss = [&] {
    std::vector<double> out(N * C, 0.0);
    ref::combine_forward(out.data(), y.data(), gate.data(), r.tok_off.data(), N, C);
    return dot_sum(out, R);
  };
  CHECK(gradcheck::max_rel_error(y, dy, loss) < kBudget);
  CHECK(gradcheck::max_rel_error(gate, dgate, loss) < kBudget);
}

TEST_CASE("moe: aux_loss_backward matches finite differences (sigmoid and softmax, per sequence and per batch)") {
  const int N = 6, T = 3, E = 5, K = 2;
  const float alpha = 0.3f;
  for (Gate gate : {Gate::sigmoid, Gate::softmax})
    for (bool per_batch : {false, true}) {
      const char* gate_name = gate == Gate::sigmoid ? "sigmoid" : "softmax";
    CAPTURE(gate_name);
      CAPTURE(per_batch);
      // through the scores, from the logits, so the sigmoid normalisation and softmax Jacobian are both exercised
      std::vector<double> logits = rand_vec(N * E, 61, -2, 2), s(N * E);
      ref::router_scores_forward(s.data(), logits.data(), N, E, gate);
      const Route<double> r = token_choice(s, nullptr, BiasKind::add, N, E, K);  // f is a constant
      const int G = per_batch ? 1 : N / T;
      std::vector<double> f((size_t)G * E), ds(N * E, 0.0), dl(N * E, 0.0);
      ref::aux_loss_forward(f.data(), s.data(), r.tok_off.data(), r.a_exp.data(), N, T, E, K, gate, per_batch, alpha);
      ref::aux_loss_backward(ds.data(), f.data(), s.data(), N, T, E, gate, per_batch, alpha, 1.5f);
      ref::router_scores_backward(dl.data(), ds.data(), s.data(), N, E, gate);
      auto loss = [&] {
        std::vector<double> sc(N * E), ff((size_t)G * E);
        ref::router_scores_forward(sc.data(), logits.data(), N, E, gate);
        return 1.5 * ref::aux_loss_forward(ff.data(), sc.data(), r.tok_off.data(), r.a_exp.data(), N, T, E, K, gate,
                                           per_batch, alpha);
      };
      CHECK(gradcheck::max_rel_error(logits, dl, loss) < kBudget);
    }
}

// The router chain of one MoE layer, as the model runs it:
//   logits = x Wr^T -> scores -> route -> experts -> combine -> L = sum(out * R) + aux
// Gradients reach x through the router and through the experts.
struct ChainCase {
  const char* name;
  Gate gate;
  bool expert;        // expert choice instead of token choice
  bool bias;          // a loss-free bias in the key (token choice)
  BiasKind kind;
  bool norm;
  float scale;
  float alpha;        // aux loss weight (0: none)
};

TEST_CASE("moe: the composed router chain matches finite differences") {
  const int N = 10, T = 5, C = 4, E = 5, K = 2, F = 3;  // expert choice: chunks of 5, cap 2
  const ChainCase cases[] = {
      {"sigmoid, additive bias, aux per sequence", Gate::sigmoid, false, true, BiasKind::add, false, 1.f, 0.3f},
      {"sigmoid, multiplicative bias, norm_topk", Gate::sigmoid, false, true, BiasKind::mul, true, 2.5f, 0.3f},
      {"softmax, no bias, aux", Gate::softmax, false, false, BiasKind::add, false, 1.f, 0.7f},
      {"expert choice, sigmoid, norm_topk", Gate::sigmoid, true, false, BiasKind::add, true, 1.5f, 0.f},
  };
  const std::vector<int> order = {3, 0, 5, 1, 4, 9, 2, 7, 8, 6};
  for (const ChainCase& cc : cases) {
    CAPTURE(cc.name);
    std::vector<double> x = rand_vec(N * C, 71), wr = rand_vec(E * C, 72, -2, 2);
    Experts<double> w = random_experts(E, C, F, 73);
    const std::vector<double> R = rand_vec(N * C, 74);
    std::vector<float> bias = cc.kind == BiasKind::add ? to_float(rand_vec(E, 75, -0.1, 0.1))
                                                       : to_float(rand_vec(E, 75, 0.8, 1.2));
    const float* b = cc.bias ? bias.data() : nullptr;

    // forward; fills the saved tensors when given
    struct Saved {
      std::vector<double> scores;
      Route<double> r;
      MoeActs<double> m;
      std::vector<double> f;
    };
    auto forward = [&](Saved& sv) {
      std::vector<double> logits(N * E, 0.0);
      for (int t = 0; t < N; t++)
        for (int i = 0; i < E; i++)
          for (int c = 0; c < C; c++) logits[t * E + i] += x[t * C + c] * wr[i * C + c];
      sv.scores.resize(N * E);
      ref::router_scores_forward(sv.scores.data(), logits.data(), N, E, cc.gate);
      sv.r = cc.expert ? expert_choice(sv.scores, order.data(), N, E, K, 5, cc.norm, cc.scale)
                       : token_choice(sv.scores, b, cc.kind, N, E, K, cc.norm, cc.scale);
      sv.m = moe_forward(sv.r, x, w, N);
      sv.f.resize((size_t)(N / T) * E);
      const double aux = ref::aux_loss_forward(sv.f.data(), sv.scores.data(), sv.r.tok_off.data(), sv.r.a_exp.data(),
                                               N, T, E, K, cc.gate, false, cc.alpha);
      return dot_sum(sv.m.out, R) + aux;
    };
    Saved base;
    forward(base);
    const Route<double>& r = base.r;
    const int A = r.A();

    // backward
    std::vector<double> dy((size_t)A * C), dgate(A), dx(N * C, 0.0), dw1(w.w1.size(), 0.0), dw3(w.w3.size(), 0.0),
        dw2(w.w2.size(), 0.0), scratch((size_t)A * (2 * F + C)), dscores(N * E, 0.0), dlogits(N * E, 0.0),
        dwr(E * C, 0.0);
    ref::combine_backward(dy.data(), dgate.data(), R.data(), base.m.y.data(), r.gate.data(), r.tok_off.data(), N, C);
    ref::experts_backward(dx.data(), dw1.data(), dw3.data(), dw2.data(), scratch.data(), dy.data(), x.data(),
                          base.m.h1.data(), base.m.h3.data(), base.m.act.data(), w.w1.data(), w.w3.data(),
                          w.w2.data(), base.m.perm.data(), base.m.exp_off.data(), r.tok_off.data(), r.a_tok.data(), N,
                          E, C, F);
    ref::gates_backward(dscores.data(), dgate.data(), base.scores.data(), r.tok_off.data(), r.a_exp.data(),
                        r.gate.data(), N, E, cc.norm, cc.scale);
    ref::aux_loss_backward(dscores.data(), base.f.data(), base.scores.data(), N, T, E, cc.gate, false, cc.alpha, 1.0f);
    ref::router_scores_backward(dlogits.data(), dscores.data(), base.scores.data(), N, E, cc.gate);
    for (int t = 0; t < N; t++)
      for (int i = 0; i < E; i++)
        for (int c = 0; c < C; c++) {
          dx[t * C + c] += dlogits[t * E + i] * wr[i * C + c];
          dwr[i * C + c] += dlogits[t * E + i] * x[t * C + c];
        }

    bool flipped = false;
    auto loss = [&] {
      Saved sv;
      const double l = forward(sv);
      flipped |= !same_selection(sv.r, r);
      return l;
    };
    CHECK(gradcheck::max_rel_error(x, dx, loss) < kBudget);
    CHECK(gradcheck::max_rel_error(wr, dwr, loss) < kBudget);
    CHECK(gradcheck::max_rel_error(w.w1, dw1, loss) < kBudget);
    CHECK(gradcheck::max_rel_error(w.w3, dw3, loss) < kBudget);
    CHECK(gradcheck::max_rel_error(w.w2, dw2, loss) < kBudget);
    CHECK_FALSE(flipped);
  }
}

// =============================================================================================
// named invariants

TEST_CASE("moe: bias changes selection only") {
  SUBCASE("a bias that flips the selection leaves the gates at the unbiased scores") {
    const std::vector<float> s = {0.9f, 0.8f, 0.1f, 0.2f};
    const Route<float> plain = token_choice(s, nullptr, BiasKind::add, 1, 4, 2);
    CHECK(plain.a_exp == std::vector<int>{0, 1});
    const std::vector<float> add = {0.f, 0.f, 1.f, 0.f};  // keys 0.9 0.8 1.1 0.2
    const Route<float> ra = token_choice(s, add.data(), BiasKind::add, 1, 4, 2);
    CHECK(ra.a_exp == std::vector<int>{2, 0});
    CHECK(ra.gate == std::vector<float>{0.1f, 0.9f});
    const std::vector<float> mul = {1.f, 1.f, 10.f, 1.f};  // keys 0.9 0.8 1.0 0.2
    const Route<float> rm = token_choice(s, mul.data(), BiasKind::mul, 1, 4, 2);
    CHECK(rm.a_exp == std::vector<int>{2, 0});
    CHECK(rm.gate == std::vector<float>{0.1f, 0.9f});
  }
  SUBCASE("outputs with a bias equal outputs of the same selection forced without one") {
    const int N = 12, E = 6, K = 2, C = 5, F = 4;
    const std::vector<float> s = to_float(rand_vec(N * E, 81, 0, 1));
    const std::vector<float> x = to_float(rand_vec(N * C, 82));
    const Experts<double> wd = random_experts(E, C, F, 83);
    const Experts<float> w = {E, C, F, to_float(wd.w1), to_float(wd.w3), to_float(wd.w2)};
    const std::vector<float> bias = to_float(rand_vec(E, 84, -0.5, 0.5));
    for (BiasKind kind : {BiasKind::add, BiasKind::mul}) {
      const char* kind_name = kind == BiasKind::add ? "add" : "mul";
      CAPTURE(kind_name);
      std::vector<float> b = bias;
      if (kind == BiasKind::mul)
        for (float& v : b) v += 1.0f;
      const Route<float> biased = token_choice(s, b.data(), kind, N, E, K);
      CHECK_FALSE(same_selection(biased, token_choice(s, nullptr, kind, N, E, K)));  // the bias does flip something
      Route<float> forced = biased;  // same experts, gates written down as the unbiased scores
      for (int a = 0; a < forced.A(); a++) forced.gate[a] = s[forced.a_tok[a] * E + forced.a_exp[a]];
      CHECK(moe_forward(biased, x, w, N).out == moe_forward(forced, x, w, N).out);
    }
  }
  SUBCASE("a bias that changes no selection changes nothing") {
    const int N = 9, E = 5, K = 3;
    const std::vector<float> s = to_float(rand_vec(N * E, 85, 0, 1));
    const std::vector<float> twice(E, 2.0f);  // s * 2 is exact: the order of the keys is the order of the scores
    const Route<float> a = token_choice(s, nullptr, BiasKind::mul, N, E, K);
    const Route<float> b = token_choice(s, twice.data(), BiasKind::mul, N, E, K);
    CHECK(same_selection(a, b));
    CHECK(a.gate == b.gate);
  }
}

TEST_CASE("moe: gates equal unbiased scores") {
  const int N = 40, E = 8, K = 3;
  const std::vector<float> s = to_float(rand_vec(N * E, 91, 0, 1));
  const std::vector<float> add = to_float(rand_vec(E, 92, -0.3, 0.3)), mul = to_float(rand_vec(E, 93, 0.5, 1.5));
  for (int c = 0; c < 3; c++) {
    CAPTURE(c);
    const Route<float> r = c == 0   ? token_choice(s, nullptr, BiasKind::add, N, E, K)
                           : c == 1 ? token_choice(s, add.data(), BiasKind::add, N, E, K)
                                    : token_choice(s, mul.data(), BiasKind::mul, N, E, K);
    for (int a = 0; a < r.A(); a++) CHECK(r.gate[a] == s[r.a_tok[a] * E + r.a_exp[a]]);
  }
  // norm_topk: the selected unbiased scores divided by their sum, times scale (still no bias)
  const Route<float> rn = token_choice(s, add.data(), BiasKind::add, N, E, K, true, 2.5f);
  const Route<float> rp = token_choice(s, add.data(), BiasKind::add, N, E, K);
  REQUIRE(same_selection(rn, rp));
  for (int t = 0; t < N; t++) {
    const double Z = double(rp.gate[t * K]) + rp.gate[t * K + 1] + rp.gate[t * K + 2];
    for (int a = t * K; a < (t + 1) * K; a++) CHECK(rn.gate[a] == doctest::Approx(2.5 * rp.gate[a] / Z).epsilon(1e-6));
  }
}

TEST_CASE("moe: sum of counts = N*K for token choice") {
  const int N = 37, E = 7, K = 3;
  const std::vector<float> s = to_float(rand_vec(N * E, 101, 0, 1)), bias = to_float(rand_vec(E, 102, -0.2, 0.2));
  const Route<float> r = token_choice(s, bias.data(), BiasKind::add, N, E, K);
  std::vector<int64_t> counts(E, 0);
  ref::count_experts(counts.data(), r.a_exp.data(), r.A(), E);
  int64_t sum = 0;
  for (int64_t c : counts) sum += c;
  CHECK(sum == N * K);
  ref::count_experts(counts.data(), r.a_exp.data(), r.A(), E);  // counts accumulate over micro-batches
  sum = 0;
  for (int64_t c : counts) sum += c;
  CHECK(sum == 2 * N * K);
  for (int t = 0; t <= N; t++) CHECK(r.tok_off[t] == t * K);
  for (int t = 0; t < N; t++)
    for (int k = 0; k < K; k++) {
      const int a = t * K + k;
      CHECK(r.a_tok[a] == t);
      if (k == 0) continue;
      const float prev = s[t * E + r.a_exp[a - 1]] + bias[r.a_exp[a - 1]], cur = s[t * E + r.a_exp[a]] + bias[r.a_exp[a]];
      CHECK(prev >= cur);                    // stored in descending key order
      CHECK(r.a_exp[a] != r.a_exp[a - 1]);  // (with the order, all K distinct)
    }
  // and they are the K largest keys: every unselected key is <= the smallest selected one
  for (int t = 0; t < N; t++) {
    const int last = r.a_exp[t * K + K - 1];
    const float kmin = s[t * E + last] + bias[last];
    for (int i = 0; i < E; i++) {
      bool sel = false;
      for (int k = 0; k < K; k++) sel |= r.a_exp[t * K + k] == i;
      if (!sel) CHECK(s[t * E + i] + bias[i] <= kmin);
    }
  }
}

TEST_CASE("moe: dispatch then combine is the identity when every token's gates sum to 1") {
  const int N = 16, E = 6, K = 4, C = 3;
  const Route<float> r0 = token_choice(to_float(rand_vec(N * E, 111, 0, 1)), nullptr, BiasKind::add, N, E, K);
  const int A = r0.A();
  std::vector<int> perm(A), exp_off(E + 1);
  ref::dispatch_sort(perm.data(), exp_off.data(), r0.a_exp.data(), A, E);
  // perm/exp_off partition the assignments: each exactly once, grouped by expert, each group ascending
  CHECK(exp_off[0] == 0);
  CHECK(exp_off[E] == A);
  std::vector<int> seen(A, 0);
  std::vector<int64_t> counts(E, 0);
  ref::count_experts(counts.data(), r0.a_exp.data(), A, E);
  for (int e = 0; e < E; e++) {
    CHECK(exp_off[e + 1] - exp_off[e] == counts[e]);
    for (int j = exp_off[e]; j < exp_off[e + 1]; j++) {
      CHECK(r0.a_exp[perm[j]] == e);
      if (j > exp_off[e]) CHECK(perm[j] > perm[j - 1]);
      seen[perm[j]]++;
    }
  }
  for (int a = 0; a < A; a++) CHECK(seen[a] == 1);
  // "experts" that copy their token: y[a] = x[a_tok[a]], gathered through perm as experts_forward does.
  // Gates 1/2, 1/4, 1/8, 1/8 and x = k/64 keep every product and partial sum exact in fp32.
  std::vector<float> x(N * C), y((size_t)A * C);
  for (int i = 0; i < N * C; i++) x[i] = float((i * 37) % 129 - 64) / 64.0f;
  for (int j = 0; j < A; j++)
    for (int c = 0; c < C; c++) y[(size_t)perm[j] * C + c] = x[r0.a_tok[perm[j]] * C + c];
  Route<float> r = r0;
  const float g[K] = {0.5f, 0.25f, 0.125f, 0.125f};
  for (int a = 0; a < A; a++) r.gate[a] = g[a % K];
  std::vector<float> out(N * C, 0.0f);
  ref::combine_forward(out.data(), y.data(), r.gate.data(), r.tok_off.data(), N, C);
  CHECK(out == x);
}

TEST_CASE("moe: ties go to the lower index") {
  const int E = 6, K = 3;
  SUBCASE("all scores equal") {
    const Route<float> r = token_choice(std::vector<float>(E, 0.5f), nullptr, BiasKind::add, 1, E, K);
    CHECK(r.a_exp == std::vector<int>{0, 1, 2});
  }
  SUBCASE("exact ties made by the additive bias") {
    const std::vector<float> s = {0.25f, 0.5f, 0.75f, 0.5f, 0.625f, 0.125f};
    const std::vector<float> b = {0.5f, 0.25f, 0.0f, 0.25f, 0.125f, 0.625f};  // every key is 0.75
    CHECK(token_choice(s, b.data(), BiasKind::add, 1, E, K).a_exp == std::vector<int>{0, 1, 2});
  }
  SUBCASE("exact ties made by the multiplicative bias") {
    const std::vector<float> s = {0.25f, 0.5f, 1.0f, 0.125f, 0.5f, 0.75f};
    const std::vector<float> b = {2.0f, 1.0f, 0.5f, 4.0f, 0.5f, 0.5f};  // keys 0.5 0.5 0.5 0.5 0.25 0.375
    CHECK(token_choice(s, b.data(), BiasKind::mul, 1, E, K).a_exp == std::vector<int>{0, 1, 2});
    CHECK(token_choice(s, b.data(), BiasKind::mul, 1, E, 5).a_exp == std::vector<int>{0, 1, 2, 3, 5});
  }
  SUBCASE("ties inside the order and at the boundary") {
    const std::vector<float> s = {0.3f, 0.7f, 0.3f, 0.7f, 0.5f, 0.3f};
    CHECK(token_choice(s, nullptr, BiasKind::add, 1, E, 3).a_exp == std::vector<int>{1, 3, 4});
    CHECK(token_choice(s, nullptr, BiasKind::add, 1, E, 4).a_exp == std::vector<int>{1, 3, 4, 0});
    CHECK(token_choice(s, nullptr, BiasKind::add, 1, E, 5).a_exp == std::vector<int>{1, 3, 4, 0, 2});
  }
  SUBCASE("expert choice: equal scores go to the token that comes first in the order") {
    const int N = 6;
    const std::vector<float> s(N * 2, 0.5f);
    const Route<float> r = expert_choice(s, nullptr, N, 2, 1, 0);  // cap = 3 per expert
    CHECK(r.tok_off == std::vector<int>{0, 2, 4, 6, 6, 6, 6});
    const std::vector<int> order = {5, 2, 4, 0, 1, 3};
    const Route<float> ro = expert_choice(s, order.data(), N, 2, 1, 0);
    CHECK(ro.tok_off == std::vector<int>{0, 0, 0, 2, 2, 4, 6});  // tokens 5, 2, 4 in both experts
  }
}

TEST_CASE("moe: K = 1 and K = E edge cases") {
  const int N = 5, E = 4;
  const std::vector<float> s = to_float(rand_vec(N * E, 121, 0, 1));
  SUBCASE("K = 1 is the argmax, and norm_topk makes the gate exactly scale") {
    const Route<float> r = token_choice(s, nullptr, BiasKind::add, N, E, 1);
    const Route<float> rn = token_choice(s, nullptr, BiasKind::add, N, E, 1, true, 2.5f);
    for (int t = 0; t < N; t++) {
      int best = 0;
      for (int i = 1; i < E; i++)
        if (s[t * E + i] > s[t * E + best]) best = i;
      CHECK(r.a_exp[t] == best);
      CHECK(r.gate[t] == s[t * E + best]);
      CHECK(rn.gate[t] == 2.5f);
    }
  }
  SUBCASE("K = E gives every token every expert, by descending key") {
    const Route<float> r = token_choice(s, nullptr, BiasKind::add, N, E, E);
    std::vector<int64_t> counts(E, 0);
    ref::count_experts(counts.data(), r.a_exp.data(), r.A(), E);
    for (int64_t c : counts) CHECK(c == N);
    for (int t = 0; t < N; t++)
      for (int k = 1; k < E; k++) CHECK(s[t * E + r.a_exp[t * E + k - 1]] >= s[t * E + r.a_exp[t * E + k]]);
    const Route<float> re = expert_choice(s, nullptr, N, E, E, 0);  // every expert takes every token
    for (int t = 0; t <= N; t++) CHECK(re.tok_off[t] == t * E);
    for (int a = 0; a < re.A(); a++) CHECK(re.a_exp[a] == a % E);
  }
}

TEST_CASE("moe: the sign rule moves every overloaded expert down and every underloaded expert up by exactly u") {
  const float u = 1e-3f;
  SUBCASE("from zero") {
    const std::vector<int64_t> c = {10, 30, 20, 20, 20, 0};  // mean 100/6: under {10, 0}, over {30, 20, 20, 20}
    std::vector<float> b(6, 0.0f);
    ref::bias_update(b.data(), c.data(), 6, UpdateRule::sign, u);
    CHECK(b == std::vector<float>{u, -u, -u, -u, -u, u});
  }
  SUBCASE("balanced experts do not move") {
    const std::vector<int64_t> c = {2, 1, 0};  // mean 1
    std::vector<float> b = {0.5f, 0.25f, -0.75f};
    ref::bias_update(b.data(), c.data(), 3, UpdateRule::sign, 0.125f);
    CHECK(b == std::vector<float>{0.375f, 0.25f, -0.625f});
  }
  SUBCASE("the decision is made in integers (mean = c + 1/3)") {
    // mean = 4/3: experts with 1 are under, the one with 2 over
    const std::vector<int64_t> small = {1, 1, 2};
    std::vector<float> b(3, 0.0f);
    ref::bias_update(b.data(), small.data(), 3, UpdateRule::sign, u);
    CHECK(b == std::vector<float>{u, u, -u});
    // c = 2^25: sum = 3*2^25 + 1 and c + 1 both round in fp32, so mean - c_i computed in float is 0 for all three
    const int64_t c = int64_t(1) << 25;
    const std::vector<int64_t> big = {c, c, c + 1};
    const float fmean = float(3 * c + 1) / 3.0f;
    CHECK(fmean - float(c) == 0.0f);       // a float decision would leave experts 0, 1 alone ...
    CHECK(fmean - float(c + 1) == 0.0f);   // ... and expert 2 too
    std::vector<float> bb(3, 0.0f);
    ref::bias_update(bb.data(), big.data(), 3, UpdateRule::sign, u);
    CHECK(bb == std::vector<float>{u, u, -u});
  }
  SUBCASE("all-zero counts change nothing") {
    const std::vector<int64_t> z(4, 0);
    std::vector<float> b = {0.1f, -0.2f, 0.3f, 0.0f};
    const std::vector<float> keep = b;
    ref::bias_update(b.data(), z.data(), 4, UpdateRule::sign, u);
    CHECK(b == keep);
    ref::bias_update(b.data(), z.data(), 4, UpdateRule::error, u);
    CHECK(b == keep);
  }
}

TEST_CASE("moe: error rule") {
  // mean 25: b_i += u (25 - c_i) / 25 = 0.01 * (0.6, 0.2, -0.2, -0.6)
  const std::vector<int64_t> c = {10, 20, 30, 40};
  std::vector<float> b(4, 0.0f);
  ref::bias_update(b.data(), c.data(), 4, UpdateRule::error, 0.01f);
  CHECK(b[0] == doctest::Approx(0.006).epsilon(1e-6));
  CHECK(b[1] == doctest::Approx(0.002).epsilon(1e-6));
  CHECK(b[2] == doctest::Approx(-0.002).epsilon(1e-6));
  CHECK(b[3] == doctest::Approx(-0.006).epsilon(1e-6));
  // from a non-zero bias: the step is added (balanced expert 1 of {25, 25, 50, 0}, mean 25, is unchanged)
  const std::vector<int64_t> c2 = {25, 25, 50, 0};
  std::vector<float> b2 = {1.0f, -0.5f, 0.25f, 0.0f};
  ref::bias_update(b2.data(), c2.data(), 4, UpdateRule::error, 0.5f);
  CHECK(b2 == std::vector<float>{1.0f, -0.5f, -0.25f, 0.5f});
}

TEST_CASE("moe: expert choice gives every expert exactly chunk*K/E tokens per chunk") {
  const int N = 24, E = 4, K = 2, chunk = 8, cap = chunk * K / E;
  const std::vector<float> s = to_float(rand_vec(N * E, 131, 0, 1));
  std::vector<int> perm(N);
  for (int p = 0; p < N; p++) perm[p] = (p * 7 + 3) % N;  // 7 is coprime with 24: a permutation
  for (const int* order : {(const int*)nullptr, (const int*)perm.data()}) {
    CAPTURE(order != nullptr);
    const Route<float> r = expert_choice(s, order, N, E, K, chunk);
    CHECK(r.A() == N * K);
    std::vector<int> chunk_of(N);
    for (int p = 0; p < N; p++) chunk_of[order ? order[p] : p] = p / chunk;
    std::vector<int> taken(N / chunk * E, 0);
    std::vector<char> sel(N * E, 0);
    for (int t = 0; t < N; t++)
      for (int a = r.tok_off[t]; a < r.tok_off[t + 1]; a++) {
        CHECK(r.a_tok[a] == t);
        if (a > r.tok_off[t]) CHECK(r.a_exp[a] > r.a_exp[a - 1]);  // ascending expert within a token
        CHECK(r.gate[a] == s[t * E + r.a_exp[a]]);
        taken[chunk_of[t] * E + r.a_exp[a]]++;
        sel[t * E + r.a_exp[a]] = 1;
      }
    for (int v : taken) CHECK(v == cap);
    // each expert took the highest scores of its chunk
    for (int e = 0; e < E; e++)
      for (int t = 0; t < N; t++)
        for (int t2 = 0; t2 < N; t2++)
          if (chunk_of[t] == chunk_of[t2] && sel[t * E + e] && !sel[t2 * E + e]) CHECK(s[t * E + e] >= s[t2 * E + e]);
  }
  SUBCASE("a token may get 0 or several experts") {
    std::vector<float> s2 = s;
    for (int i = 0; i < E; i++) {
      s2[0 * E + i] = 1.0f;  // every expert wants token 0
      s2[1 * E + i] = 0.0f;  // none wants token 1
    }
    const Route<float> r = expert_choice(s2, nullptr, N, E, K, 0);  // chunk 0 = the whole batch
    CHECK(r.tok_off[1] - r.tok_off[0] == E);
    CHECK(r.tok_off[2] - r.tok_off[1] == 0);
  }
}

TEST_CASE("moe: expert choice lets a later token change an earlier token's experts") {
  // The leakage of the paper's section 5.2: with K=1, E=2, one chunk of 4, each expert takes 2 tokens.
  // before: expert 0 takes tokens 1, 0 (0.6, 0.5); expert 1 takes tokens 2, 1 (0.7, 0.5)
  std::vector<float> s = {0.5f, 0.4f, 0.6f, 0.5f, 0.3f, 0.7f, 0.2f, 0.1f};
  const Route<float> before = expert_choice(s, nullptr, 4, 2, 1, 0);
  s[3 * 2 + 0] = 0.9f;  // only token 3's scores change
  const Route<float> after = expert_choice(s, nullptr, 4, 2, 1, 0);
  CHECK(before.tok_off[1] == 1);  // token 0 had expert 0
  CHECK(after.tok_off[1] == 0);   // now token 3 took its place
}

TEST_CASE("moe: counts are exact integers on huge counts") {
  // Loads summed over a long run reach 2^40 per expert; a float or bf16 reduction rounds c+1 to c
  // and the update's sign flips or vanishes (Megatron PR #7081).
  const int E = 4;
  const int64_t big = int64_t(1) << 40;
  std::vector<int64_t> counts(E, big);
  const std::vector<int> a_exp = {0, 0, 1, 2, 3, 3, 3};
  ref::count_experts(counts.data(), a_exp.data(), 7, E);
  CHECK(counts == std::vector<int64_t>{big + 2, big + 1, big + 1, big + 3});

  const std::vector<int64_t> c = {big + 1, big, big, big - 1};  // mean exactly 2^40
  CHECK(float(big + 1) == float(big));                          // what a float reduction would see
  CHECK(to_bf16(float(big - 1)) == to_bf16(float(big)));
  std::vector<float> b(E, 0.0f);
  ref::bias_update(b.data(), c.data(), E, UpdateRule::sign, 1e-3f);
  CHECK(b == std::vector<float>{-1e-3f, 0.0f, 0.0f, 1e-3f});
  CHECK(ref::maxvio(c.data(), E) == std::ldexp(1.0, -40));  // (max - mean) / mean = 1 / 2^40, exactly
}

TEST_CASE("moe: bias is fp32 and changes by u even when |b| is large-ish") {
  // A bf16 bias (Megatron #1482) has 8 significant bits: 4 + 1e-3 rounds back to 4 and the update is lost.
  const float u = 1e-3f;
  const std::vector<int64_t> c = {1, 3, 3, 1};  // 0 and 3 under, 1 and 2 over
  std::vector<float> b = {4.0f, 4.0f, -3.0f, 1.0f};
  const std::vector<float> old = b;
  ref::bias_update(b.data(), c.data(), 4, UpdateRule::sign, u);
  for (int i = 0; i < 4; i++) {
    const float step = (i == 0 || i == 3) ? u : -u;
    CHECK(b[i] == old[i] + step);
    const float ulp = std::nextafter(std::fabs(old[i]), 1e30f) - std::fabs(old[i]);
    CHECK(std::fabs(double(b[i]) - old[i] - step) <= 0.5 * ulp);
  }
  CHECK(to_bf16(old[0] + u) == old[0]);  // the bf16 failure this guards against
}

TEST_CASE("moe: aux loss hand-computed case") {
  // E=2, K=1, one sequence of T=2 tokens, alpha = 0.5, softmax scores
  //   token 0: (0.75, 0.25) -> expert 0;  token 1: (0.625, 0.375) -> expert 0
  //   f = E/(K T) * counts = 1 * (2, 0) = (2, 0);  P = mean over tokens = (0.6875, 0.3125)
  //   L = 0.5 * (2 * 0.6875 + 0 * 0.3125) = 0.6875
  //   dL/ds_{t,i} = alpha * f_i / T = (0.5, 0) for both tokens
  const float alpha = 0.5f;
  const std::vector<double> s = {0.75, 0.25, 0.625, 0.375};
  const Route<double> r = token_choice(s, nullptr, BiasKind::add, 2, 2, 1);
  REQUIRE(r.a_exp == std::vector<int>{0, 0});
  std::vector<double> f(2), ds(4, 0.0);
  CHECK(ref::aux_loss_forward(f.data(), s.data(), r.tok_off.data(), r.a_exp.data(), 2, 2, 2, 1, Gate::softmax, false,
                              alpha) == 0.6875);
  CHECK(f == std::vector<double>{2.0, 0.0});
  ref::aux_loss_backward(ds.data(), f.data(), s.data(), 2, 2, 2, Gate::softmax, false, alpha, 1.0f);
  CHECK(ds == std::vector<double>{0.5, 0.0, 0.5, 0.0});

  // sigmoid: scores (0.6, 0.2) and (0.5, 0.3) normalise to the same s' = (0.75, 0.25), (0.625, 0.375), so L = 0.6875.
  //   ds_j = w_j / S - (sum_i w_i s_i) / S^2 with w = (0.5, 0):
  //   token 0: S = 0.8, sum w s = 0.3: ds = (0.625 - 0.46875, -0.46875) = (0.15625, -0.46875)
  //   token 1: S = 0.8, sum w s = 0.25: ds = (0.625 - 0.390625, -0.390625) = (0.234375, -0.390625)
  const std::vector<double> sg = {0.6, 0.2, 0.5, 0.3};
  std::vector<double> dsg(4, 0.0);
  CHECK(ref::aux_loss_forward(f.data(), sg.data(), r.tok_off.data(), r.a_exp.data(), 2, 2, 2, 1, Gate::sigmoid, false,
                              alpha) == doctest::Approx(0.6875).epsilon(1e-14));
  ref::aux_loss_backward(dsg.data(), f.data(), sg.data(), 2, 2, 2, Gate::sigmoid, false, alpha, 1.0f);
  CHECK(dsg[0] == doctest::Approx(0.15625).epsilon(1e-14));
  CHECK(dsg[1] == doctest::Approx(-0.46875).epsilon(1e-14));
  CHECK(dsg[2] == doctest::Approx(0.234375).epsilon(1e-14));
  CHECK(dsg[3] == doctest::Approx(-0.390625).epsilon(1e-14));

  // per sequence vs per batch: two sequences of one token, (0.75, 0.25) -> 0 and (0.25, 0.75) -> 1
  //   per sequence: each has f = (2, 0) or (0, 2) and L_g = 0.5 * 2 * 0.75 = 0.75; mean 0.75
  //   per batch: f = (1, 1), P = (0.5, 0.5): L = 0.5 * 1 = 0.5
  const std::vector<double> s3 = {0.75, 0.25, 0.25, 0.75};
  const Route<double> r3 = token_choice(s3, nullptr, BiasKind::add, 2, 2, 1);
  REQUIRE(r3.a_exp == std::vector<int>{0, 1});
  std::vector<double> f3(4);
  CHECK(ref::aux_loss_forward(f3.data(), s3.data(), r3.tok_off.data(), r3.a_exp.data(), 2, 1, 2, 1, Gate::softmax,
                              false, alpha) == 0.75);
  CHECK(f3 == std::vector<double>{2.0, 0.0, 0.0, 2.0});
  CHECK(ref::aux_loss_forward(f3.data(), s3.data(), r3.tok_off.data(), r3.a_exp.data(), 2, 1, 2, 1, Gate::softmax,
                              true, alpha) == 0.5);

  // K = 2 of E = 2 (every token takes both), one token: f = E/(K T) * (1, 1) = (1, 1), L = alpha * (0.75 + 0.25)
  const std::vector<double> s4 = {0.75, 0.25};
  const Route<double> r4 = token_choice(s4, nullptr, BiasKind::add, 1, 2, 2);
  std::vector<double> f4(2);
  CHECK(ref::aux_loss_forward(f4.data(), s4.data(), r4.tok_off.data(), r4.a_exp.data(), 1, 1, 2, 2, Gate::softmax,
                              false, alpha) == 0.5);
  CHECK(f4 == std::vector<double>{1.0, 1.0});
}

TEST_CASE("moe: the aux loss of perfectly balanced routing is alpha") {
  // E = 4, K = 2, T = 4: uniform softmax scores (P_i = 1/4) and each expert chosen by 2 of the 4 tokens
  // (f_i = 4/(2*4) * 2 = 1), so sum_i f_i P_i = 1: the minimum of eq. 2, whatever E and K are.
  const int N = 4, E = 4, K = 2;
  const std::vector<double> s(N * E, 0.25);
  Route<double> r = token_choice(s, nullptr, BiasKind::add, N, E, K);  // ties: every token takes experts 0, 1
  r.a_exp = {0, 1, 2, 3, 0, 2, 1, 3};                                  // re-spread evenly by hand
  std::vector<double> f(E);
  CHECK(ref::aux_loss_forward(f.data(), s.data(), r.tok_off.data(), r.a_exp.data(), N, N, E, K, Gate::softmax, false,
                              0.01f) == doctest::Approx(double(0.01f)).epsilon(1e-15));
  CHECK(f == std::vector<double>{1.0, 1.0, 1.0, 1.0});
}

TEST_CASE("moe: maxvio hand-computed cases") {
  const std::vector<int64_t> a = {10, 20, 30, 40}, flat = {7, 7, 7}, zero = {0, 0, 0}, one = {0, 0, 0, 8};
  CHECK(ref::maxvio(a.data(), 4) == 0.6);  // mean 25, max 40: 15 / 25
  CHECK(ref::maxvio(flat.data(), 3) == 0.0);
  CHECK(ref::maxvio(zero.data(), 3) == 0.0);
  CHECK(ref::maxvio(one.data(), 4) == 3.0);  // all load on one expert: E - 1
}

TEST_CASE("moe: NaN scores and biases are refused with a clear message") {
  std::vector<float> s(2 * 4, 0.5f);
  s[1 * 4 + 2] = std::nanf("");
  const std::string m = error_of([&] { token_choice(s, nullptr, BiasKind::add, 2, 4, 2); });
  CHECK(m.find("NaN score at token 1 expert 2") != std::string::npos);
  CHECK(m.find("lower the lr") != std::string::npos);
  CHECK(error_of([&] { expert_choice(s, nullptr, 2, 4, 2, 0); }).find("NaN score at token 1 expert 2") !=
        std::string::npos);
  const std::vector<float> ok(2 * 4, 0.5f);
  std::vector<float> bias = {0.f, std::nanf(""), 0.f, 0.f};
  CHECK(error_of([&] { token_choice(ok, bias.data(), BiasKind::add, 2, 4, 2); }).find("bias of expert 1") !=
        std::string::npos);
  bias[1] = INFINITY;
  CHECK(error_of([&] { token_choice(ok, bias.data(), BiasKind::mul, 2, 4, 2); }).find("bias of expert 1") !=
        std::string::npos);
  std::vector<float> inf_s = ok;
  inf_s[5] = INFINITY;
  CHECK(error_of([&] { token_choice(inf_s, nullptr, BiasKind::add, 2, 4, 2); }).find("infinite score at token 1 expert 1") !=
        std::string::npos);
  // norm_topk over scores that underflowed to 0 would divide 0 by 0
  const std::vector<float> zero(4, 0.0f);
  CHECK(error_of([&] { token_choice(zero, nullptr, BiasKind::add, 1, 4, 2, true, 1.0f); }).find("sum to 0") !=
        std::string::npos);
}

TEST_CASE("moe: bad shapes and arguments are refused with a clear message") {
  const std::vector<float> s(6 * 4, 0.5f);
  CHECK(error_of([&] { token_choice(s, nullptr, BiasKind::add, 6, 4, 5); }).find("K must be in [1, E]") !=
        std::string::npos);
  CHECK(error_of([&] { token_choice(s, nullptr, BiasKind::add, 6, 4, 0); }).find("K must be in [1, E]") !=
        std::string::npos);
  CHECK(error_of([&] { expert_choice(s, nullptr, 6, 4, 2, 4); }).find("chunks of 4") != std::string::npos);
  CHECK(error_of([&] { expert_choice(s, nullptr, 6, 4, 1, 3); }).find("not a multiple of E") != std::string::npos);
  const std::vector<int> dup = {0, 1, 2, 3, 3, 5};
  CHECK(error_of([&] { expert_choice(s, dup.data(), 6, 4, 2, 0); }).find("not a permutation") != std::string::npos);
  const std::vector<int> bad_exp = {0, 4, 1};
  std::vector<int> perm(3), off(5);
  std::vector<int64_t> counts(4, 0);
  CHECK(error_of([&] { ref::dispatch_sort(perm.data(), off.data(), bad_exp.data(), 3, 4); }).find("expert 4") !=
        std::string::npos);
  CHECK(error_of([&] { ref::count_experts(counts.data(), bad_exp.data(), 3, 4); }).find("expert 4") !=
        std::string::npos);
  const Route<float> r = token_choice(s, nullptr, BiasKind::add, 6, 4, 2);
  std::vector<float> f(4 * 4);
  CHECK(error_of([&] {
          ref::aux_loss_forward(f.data(), s.data(), r.tok_off.data(), r.a_exp.data(), 6, 4, 4, 2, Gate::sigmoid, false,
                                1e-3f);
        }).find("sequences of length 4") != std::string::npos);
  const std::vector<int64_t> neg = {3, -1};
  std::vector<float> b(2, 0.0f);
  CHECK(error_of([&] { ref::bias_update(b.data(), neg.data(), 2, UpdateRule::sign, 1e-3f); }).find("load of expert 1") !=
        std::string::npos);
}

#ifdef _OPENMP
TEST_CASE("moe: results do not depend on the thread count") {
  const int N = 64, E = 8, K = 2, C = 16, F = 12;
  const std::vector<float> s = to_float(rand_vec(N * E, 141, 0, 1)), x = to_float(rand_vec(N * C, 142));
  const Experts<double> wd = random_experts(E, C, F, 143);
  const Experts<float> w = {E, C, F, to_float(wd.w1), to_float(wd.w3), to_float(wd.w2)};
  const std::vector<float> dout = to_float(rand_vec(N * C, 144));
  auto run = [&](int threads) {
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    const Route<float> r = token_choice(s, nullptr, BiasKind::add, N, E, K);
    const MoeActs<float> m = moe_forward(r, x, w, N);
    const int A = r.A();
    std::vector<float> dy((size_t)A * C), dg(A), dx(N * C, 0.f), dw1(w.w1.size(), 0.f), dw3(w.w3.size(), 0.f),
        dw2(w.w2.size(), 0.f), scratch((size_t)A * (2 * F + C));
    ref::combine_backward(dy.data(), dg.data(), dout.data(), m.y.data(), r.gate.data(), r.tok_off.data(), N, C);
    ref::experts_backward(dx.data(), dw1.data(), dw3.data(), dw2.data(), scratch.data(), dy.data(), x.data(),
                          m.h1.data(), m.h3.data(), m.act.data(), w.w1.data(), w.w3.data(), w.w2.data(),
                          m.perm.data(), m.exp_off.data(), r.tok_off.data(), r.a_tok.data(), N, E, C, F);
    omp_set_num_threads(keep);
    std::vector<float> all = m.out;
    for (auto* v : {&dg, &dx, &dw1, &dw3, &dw2}) all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  CHECK(run(1) == run(3));
}
#endif
