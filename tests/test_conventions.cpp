// test_conventions.cpp — the statements of docs/MODEL.md and docs/FORMAT.md that can be tested, each
// a named TEST_CASE. The first one is the whole forward pass written out naively from MODEL.md (one
// loop per formula, double precision, nothing shared with ref/ but the parameter table's names), so
// that a layout or convention that the docs get wrong (head blocks, RoPE pairs, the attention scale,
// RMSNorm's eps, the selection key, the gates) fails here, not in a user's port.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE, SUBCASE

#include <algorithm>  // std::sort, std::max
#include <cmath>      // std::exp, std::sqrt, std::pow, std::cos, std::sin, std::log, std::fabs
#include <cstdint>    // int64_t, uint32_t
#include <cstdlib>    // std::strtof
#include <map>        // std::map
#include <memory>     // std::unique_ptr
#include <numeric>    // std::iota
#include <string>     // std::string
#include <vector>     // std::vector

#include "ref/config.h"    // Config, to_json, learning_rate
#include "ref/data.h"      // Loader
#include "ref/io/json.h"   // json::parse (the config's raw number text)
#include "ref/model.h"     // Model, make_model, make_model_double
#include "ref/moe.h"       // route_token_choice, route_expert_choice
#include "ref/rng.h"       // Rng
#include "ref/tensors.h"   // TensorTable
#include "ref/trainer.h"   // train_step

using ref::Arena;

namespace {

using Vec = std::vector<double>;

// ---------------------------------------------------------------------------------------------
// MODEL.md's forward pass, naively. Parameters are looked up by their FORMAT.md names and indexed
// with the documented (out, in) layout; every formula is one loop nest.
struct Naive {
  const ref::Config& c;
  std::map<std::string, Vec> P;  // name -> values, row-major in the documented shape
  std::vector<float> bias;       // (n_moe, E)
  std::vector<std::vector<int>> experts;  // per MoE layer, per token: the selected experts, in stored order
  std::vector<Vec> gates;
  double aux = 0;

  // W (out, in) applied to x (in): y_o = sum_i W[o][i] x_i
  static Vec linear(const Vec& W, size_t off, const Vec& x, int out, int in) {
    Vec y(out, 0.0);
    for (int o = 0; o < out; o++)
      for (int i = 0; i < in; i++) y[o] += W[off + (size_t)o * in + i] * x[i];
    return y;
  }
  Vec rmsnorm(const Vec& x, const Vec& w) const {
    double ms = 0;
    for (double v : x) ms += v * v;
    const double rstd = 1.0 / std::sqrt(ms / c.C + (double)c.norm_eps);  // eps inside the root
    Vec y(c.C);
    for (int i = 0; i < c.C; i++) y[i] = x[i] * rstd * w[i];
    return y;
  }
  static double sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }
  // SwiGLU expert `e` of stacked weights (w1, w3: (n, Fh, C); w2: (n, C, Fh))
  Vec swiglu(const std::string& p, int e, const Vec& x, int Fh) const {
    const Vec h1 = linear(P.at(p + "w1"), (size_t)e * Fh * c.C, x, Fh, c.C);
    const Vec h3 = linear(P.at(p + "w3"), (size_t)e * Fh * c.C, x, Fh, c.C);
    Vec act(Fh);
    for (int j = 0; j < Fh; j++) act[j] = h1[j] * sigmoid(h1[j]) * h3[j];
    return linear(P.at(p + "w2"), (size_t)e * c.C * Fh, act, c.C, Fh);
  }

  // Attention of one sequence (rows x[0..T)): heads are row blocks of wq/wk/wv, column blocks of wo.
  std::vector<Vec> attention(const std::string& p, const std::vector<Vec>& n1) const {
    const int T = c.T, C = c.C, H = c.H, D = C / H;
    std::vector<Vec> heads_out(T, Vec(C, 0.0));
    for (int h = 0; h < H; h++) {
      std::vector<Vec> q(T, Vec(D)), k(T, Vec(D)), v(T, Vec(D));
      for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
          const size_t row = (size_t)(h * D + d) * C;  // row h*D+d of the (out, in) matrix
          for (int i = 0; i < C; i++) {
            q[t][d] += P.at(p + "attn.wq")[row + i] * n1[t][i];
            k[t][d] += P.at(p + "attn.wk")[row + i] * n1[t][i];
            v[t][d] += P.at(p + "attn.wv")[row + i] * n1[t][i];
          }
        }
      for (int t = 0; t < T; t++)  // RoPE: interleaved pairs, angle t * theta^(-2i/D)
        for (int i = 0; i < D / 2; i++) {
          const double a = t * std::pow((double)c.rope_theta, -2.0 * i / D);
          for (Vec* z : {&q[t], &k[t]}) {
            const double z0 = (*z)[2 * i], z1 = (*z)[2 * i + 1];
            (*z)[2 * i] = z0 * std::cos(a) - z1 * std::sin(a);
            (*z)[2 * i + 1] = z0 * std::sin(a) + z1 * std::cos(a);
          }
        }
      for (int t = 0; t < T; t++) {  // causal softmax of q.k / sqrt(D)
        Vec s(t + 1);
        double mx = -1e300, Z = 0;
        for (int u = 0; u <= t; u++) {
          for (int d = 0; d < D; d++) s[u] += q[t][d] * k[u][d];
          s[u] /= std::sqrt((double)D);
          mx = std::max(mx, s[u]);
        }
        for (int u = 0; u <= t; u++) Z += std::exp(s[u] - mx);
        for (int u = 0; u <= t; u++)
          for (int d = 0; d < D; d++) heads_out[t][h * D + d] += std::exp(s[u] - mx) / Z * v[u][d];
      }
    }
    std::vector<Vec> out(T);
    for (int t = 0; t < T; t++) out[t] = linear(P.at(p + "attn.wo"), 0, heads_out[t], C, C);  // wo's columns: heads
    return out;
  }

  // Router and experts of one token: scores, keys, top-K (ties low, stored by descending key), gates.
  Vec moe(const std::string& p, int mi, const Vec& u, std::vector<int>& sel, Vec& g, Vec& s) const {
    const int E = c.E, K = c.K;
    Vec logit = linear(P.at(p + "moe.router"), 0, u, E, c.C);
    s.assign(E, 0.0);
    if (c.gate == ref::Gate::sigmoid) {
      for (int i = 0; i < E; i++) s[i] = sigmoid(logit[i]);
    } else {
      double mx = *std::max_element(logit.begin(), logit.end()), Z = 0;
      for (int i = 0; i < E; i++) Z += std::exp(logit[i] - mx);
      for (int i = 0; i < E; i++) s[i] = std::exp(logit[i] - mx) / Z;
    }
    Vec key = s;
    if (c.balance == ref::Balance::lossfree)
      for (int i = 0; i < E; i++)
        key[i] = c.bias_kind == ref::BiasKind::add ? s[i] + bias[(size_t)mi * E + i] : s[i] * bias[(size_t)mi * E + i];
    std::vector<int> idx(E);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return key[a] > key[b]; });  // ties: lower first
    if (K < E) REQUIRE_MESSAGE(key[idx[K - 1]] - key[idx[K]] > 1e-9, "near-tie in the test input: change the seed");
    sel.assign(idx.begin(), idx.begin() + K);
    g.assign(K, 0.0);
    double Zg = 0;
    for (int k = 0; k < K; k++) Zg += s[sel[k]];
    for (int k = 0; k < K; k++) g[k] = c.norm_topk ? c.route_scale * s[sel[k]] / Zg : s[sel[k]];
    Vec y(c.C, 0.0);
    for (int e = 0; e < c.S; e++) {
      const Vec h = swiglu(p + "moe.shared.", e, u, c.F);
      for (int i = 0; i < c.C; i++) y[i] += h[i];
    }
    for (int k = 0; k < K; k++) {
      const Vec h = swiglu(p + "moe.experts.", sel[k], u, c.F);
      for (int i = 0; i < c.C; i++) y[i] += g[k] * h[i];
    }
    return y;
  }

  // Logits (N, V) of tokens laid out n = b*T + t.
  Vec forward(const std::vector<int>& tokens) {
    const int B = c.B, T = c.T, C = c.C, N = B * T;
    std::vector<Vec> x(N);
    for (int n = 0; n < N; n++) x[n] = Vec(P["tok_emb"].begin() + (size_t)tokens[n] * C,
                                           P["tok_emb"].begin() + (size_t)(tokens[n] + 1) * C);
    experts.assign(c.n_moe(), std::vector<int>());
    gates.assign(c.n_moe(), Vec());
    aux = 0;
    for (int l = 0; l < c.L; l++) {
      const std::string p = "layers." + std::to_string(l) + ".";
      for (int b = 0; b < B; b++) {  // x_mid = x + Attn(RMSNorm(x))
        std::vector<Vec> n1(T);
        for (int t = 0; t < T; t++) n1[t] = rmsnorm(x[b * T + t], P[p + "attn_norm"]);
        const std::vector<Vec> a = attention(p, n1);
        for (int t = 0; t < T; t++)
          for (int i = 0; i < C; i++) x[b * T + t][i] += a[t][i];
      }
      const int mi = l - c.n_dense;
      std::vector<Vec> cnt(B, Vec(c.E, 0.0)), Psum(B, Vec(c.E, 0.0));  // aux loss pieces per sequence
      for (int n = 0; n < N; n++) {  // x = x_mid + FFN(RMSNorm(x_mid))
        const Vec u = rmsnorm(x[n], P[p + "ffn_norm"]);
        Vec y;
        if (!c.is_moe_layer(l)) {
          y = swiglu(p + "ffn.", 0, u, c.Fd);
        } else {
          std::vector<int> sel;
          Vec g, s;
          y = moe(p, mi, u, sel, g, s);
          experts[mi].insert(experts[mi].end(), sel.begin(), sel.end());
          gates[mi].insert(gates[mi].end(), g.begin(), g.end());
          double S = 0;
          for (double v : s) S += v;
          for (int e : sel) cnt[n / T][e] += 1;
          for (int i = 0; i < c.E; i++) Psum[n / T][i] += c.gate == ref::Gate::sigmoid ? s[i] / S : s[i];
        }
        for (int i = 0; i < C; i++) x[n][i] += y[i];
      }
      if (c.is_moe_layer(l) && c.balance == ref::Balance::aux) {  // alpha * mean_seq sum_i f_i P_i
        double layer = 0;
        for (int b = 0; b < B; b++)
          for (int i = 0; i < c.E; i++) layer += (double)c.E / (c.K * T) * cnt[b][i] * (Psum[b][i] / T);
        aux += (double)c.aux_alpha * layer / B;
      }
    }
    Vec logits((size_t)N * c.V);
    for (int n = 0; n < N; n++) {
      const Vec h = rmsnorm(x[n], P["final_norm"]);
      const Vec row = linear(P["lm_head"], 0, h, c.V, C);
      std::copy(row.begin(), row.end(), logits.begin() + (size_t)n * c.V);
    }
    return logits;
  }
};

// Parameters large enough that every piece of the forward matters (init 0.006 would make attention
// almost uniform and hide a RoPE or scale mistake): matrices N(0, 0.35), norm weights 1 + N(0, 0.3).
std::vector<float> lively_params(const ref::TensorTable& t, uint64_t seed) {
  std::vector<float> p(t.total);
  ref::Rng rng(seed);
  for (const ref::TensorSpec& s : t.params)
    for (size_t i = 0; i < s.numel; i++)
      p[s.offset + i] = s.shape.size() == 1 ? (float)(1.0 + 0.3 * rng.normal()) : (float)(0.35 * rng.normal());
  return p;
}

// n tokens drawn uniformly from [0, V): ints for a MicroBatch, uint32 for a Loader's stream.
template <typename I> std::vector<I> random_tokens(size_t n, uint32_t V, uint64_t seed) {
  ref::Rng rng(seed);
  std::vector<I> v(n);
  for (I& x : v) x = (I)rng.below(V);
  return v;
}

void check_forward_against_naive(ref::Config c, const std::vector<float>& bias) {
  c.B = 2; c.T = 7; c.V = 11; c.C = 16; c.H = 2; c.Fd = 12; c.F = 6;
  std::unique_ptr<ref::Model> m = ref::make_model_double(c);
  const std::vector<float> params = lively_params(m->table(), c.seed + 1);
  m->set(Arena::params, params);
  if (!bias.empty()) m->set_biases(bias);
  Naive nv{c, {}, bias.empty() ? m->biases() : bias, {}, {}, 0};
  for (const ref::TensorSpec& s : m->table().params)
    nv.P[s.name] = Vec(params.begin() + s.offset, params.begin() + s.offset + s.numel);

  const std::vector<int> tokens = random_tokens<int>(c.B * c.T, c.V, c.seed + 2),
                         targets = random_tokens<int>(c.B * c.T, c.V, 9);
  const ref::ForwardStats st = m->forward(ref::MicroBatch{tokens.data(), targets.data(), nullptr});
  const Vec want = nv.forward(tokens);
  const std::vector<float> got = m->logits();
  double scale = 0, worst = 0, ce = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  REQUIRE(scale > 0.5);  // the logits are not all tiny: the comparison below means something
  for (size_t i = 0; i < want.size(); i++) worst = std::max(worst, std::fabs(got[i] - want[i]));
  CAPTURE(worst);
  CAPTURE(scale);
  CHECK(worst <= 1e-6 * scale);  // the double model rounds its logits to float on the way out: ~6e-8

  for (int n = 0; n < c.B * c.T; n++) {  // CE_n = logsumexp - logit[target], mean over tokens
    double mx = -1e300, Z = 0;
    for (int v = 0; v < c.V; v++) mx = std::max(mx, want[(size_t)n * c.V + v]);
    for (int v = 0; v < c.V; v++) Z += std::exp(want[(size_t)n * c.V + v] - mx);
    ce += (mx + std::log(Z) - want[(size_t)n * c.V + targets[n]]) / (c.B * c.T);
  }
  CHECK(st.loss == doctest::Approx(ce).epsilon(1e-9));
  CHECK(st.aux == doctest::Approx(nv.aux).epsilon(1e-9));
  for (int mi = 0; mi < c.n_moe(); mi++) {  // the same experts in the same (descending key) order
    const ref::RoutingTrace r = m->routing(mi);
    CHECK(r.a_exp == nv.experts[mi]);
    for (size_t a = 0; a < r.a_gate.size(); a++) CHECK(r.a_gate[a] == doctest::Approx(nv.gates[mi][a]).epsilon(1e-6));
  }
}

std::vector<float> random_bias(const ref::Config& c, double center, double spread, uint64_t seed) {
  ref::Rng rng(seed);
  std::vector<float> b((size_t)c.n_moe() * c.E);
  for (float& x : b) x = (float)(center + spread * (2 * rng.uniform() - 1));
  return b;
}

}  // namespace

TEST_CASE("conventions: MODEL.md's forward, written out naively, gives the model's logits") {
  ref::Config c;
  c.L = 3; c.n_dense = 1; c.seed = 5;
  SUBCASE("sigmoid gate, additive loss-free bias that reorders the keys, one shared expert") {
    c.E = 6; c.K = 2; c.S = 1; c.balance = ref::Balance::lossfree;
    check_forward_against_naive(c, random_bias(c, 0.0, 0.3, 11));
  }
  SUBCASE("softmax gate, aux loss, norm_topk with a route scale, two shared experts") {
    c.E = 5; c.K = 3; c.S = 2; c.gate = ref::Gate::softmax; c.balance = ref::Balance::aux; c.aux_alpha = 0.25f;
    c.norm_topk = true; c.route_scale = 2.5f;
    check_forward_against_naive(c, {});
  }
  SUBCASE("multiplicative bias, K = 1, no shared expert, no dense layer") {
    c.L = 2; c.n_dense = 0; c.E = 4; c.K = 1; c.S = 0; c.balance = ref::Balance::lossfree;
    c.bias_kind = ref::BiasKind::mul;
    check_forward_against_naive(c, random_bias(c, 1.0, 0.5, 12));
  }
}

TEST_CASE("conventions: a token's assignments are in descending key order, not score order") {
  // token 0: s = (0.5, 0.6, 0.1, 0.2), b = (0.3, 0, 0, 0): keys (0.8, 0.6, 0.1, 0.2) -> experts 0, 1
  //          in that order (by key), while by score expert 1 would come first; gates stay (0.5, 0.6).
  // token 1: s = (0.1, 0.7, 0.7, 0.4): keys (0.4, 0.7, 0.7, 0.4), equal keys 0.7 -> expert 1 before 2.
  const std::vector<float> s = {0.5f, 0.6f, 0.1f, 0.2f, 0.1f, 0.7f, 0.7f, 0.4f}, b = {0.3f, 0, 0, 0};
  std::vector<int> tok_off(3), a_tok(4), a_exp(4);
  std::vector<float> a_gate(4);
  ref::route_token_choice(tok_off.data(), a_tok.data(), a_exp.data(), a_gate.data(), s.data(), b.data(),
                          ref::BiasKind::add, 2, 4, 2, false, 1.0f);
  CHECK(tok_off == std::vector<int>{0, 2, 4});
  CHECK(a_tok == std::vector<int>{0, 0, 1, 1});
  CHECK(a_exp == std::vector<int>{0, 1, 1, 2});
  CHECK(a_gate == std::vector<float>{0.5f, 0.6f, 0.7f, 0.7f});
}

TEST_CASE("conventions: expert choice breaks equal scores by position in the chunk order") {
  // 4 tokens, E = 2, K = 1, one chunk of 4: cap = 4*1/2 = 2 tokens per expert. All scores equal, so
  // each expert takes the first two positions of the order: tokens 3 and 1 get both experts (listed
  // in ascending expert order), tokens 0 and 2 none.
  const std::vector<float> s(8, 0.5f);
  const std::vector<int> order = {3, 1, 0, 2};
  std::vector<int> tok_off(5), a_tok(4), a_exp(4);
  std::vector<float> a_gate(4);
  ref::route_expert_choice(tok_off.data(), a_tok.data(), a_exp.data(), a_gate.data(), s.data(), order.data(), 4, 2,
                           1, 4, false, 1.0f);
  CHECK(tok_off == std::vector<int>{0, 0, 2, 2, 4});
  CHECK(a_tok == std::vector<int>{1, 1, 3, 3});
  CHECK(a_exp == std::vector<int>{0, 1, 0, 1});
  // the identity order: tokens 0 and 1
  ref::route_expert_choice(tok_off.data(), a_tok.data(), a_exp.data(), a_gate.data(), s.data(), nullptr, 4, 2, 1, 4,
                           false, 1.0f);
  CHECK(tok_off == std::vector<int>{0, 2, 4, 4, 4});
  CHECK(a_tok == std::vector<int>{0, 0, 1, 1});
}

namespace {
ref::Config step_config() {
  ref::Config c;
  c.V = 32; c.C = 16; c.H = 2; c.L = 2; c.n_dense = 1; c.Fd = 16; c.E = 6; c.K = 2; c.S = 1; c.F = 8; c.T = 8;
  c.B = 2; c.grad_accum = 2; c.steps = 4; c.warmup = 0; c.seed = 3;
  return c;
}
}  // namespace

TEST_CASE("conventions: step s routes with the bias after step s-1's update") {
  ref::Config c = step_config();
  c.balance = ref::Balance::lossfree;
  c.bias_rate = 0.05f;  // large, so that one update visibly changes the selection
  std::unique_ptr<ref::Model> m = ref::make_model(c);
  const std::vector<uint32_t> data = random_tokens<uint32_t>(4000, c.V, 1);
  ref::Loader loader(&data, c.B, c.T, c.seed, true);
  const std::vector<float> b0 = m->biases();
  ref::train_step(*m, loader, 0);
  const std::vector<float> b1 = m->biases();  // bias_after of step 0
  REQUIRE(b1 != b0);
  int checked = 0, differs_from_b0 = 0;
  const int N = c.B * c.T, A = N * c.K;
  const ref::MicroHook hook = [&](int, const ref::MicroBatch&) {  // every micro-batch of step 1
    const ref::RoutingTrace r = m->routing(0);
    std::vector<int> tok_off(N + 1), a_tok(A), a_exp(A);
    std::vector<float> a_gate(A);
    ref::route_token_choice(tok_off.data(), a_tok.data(), a_exp.data(), a_gate.data(), r.scores.data(), b1.data(),
                            c.bias_kind, N, c.E, c.K, c.norm_topk, c.route_scale);
    CHECK(a_exp == r.a_exp);
    ref::route_token_choice(tok_off.data(), a_tok.data(), a_exp.data(), a_gate.data(), r.scores.data(), b0.data(),
                            c.bias_kind, N, c.E, c.K, c.norm_topk, c.route_scale);
    differs_from_b0 += a_exp != r.a_exp;
    checked++;
  };
  ref::train_step(*m, loader, 1, hook);
  CHECK(checked == c.grad_accum);
  CHECK(differs_from_b0 > 0);  // the test can tell the two biases apart
}

TEST_CASE("conventions: windows are T+1 tokens, targets are the inputs shifted by one") {
  std::vector<uint32_t> data(100);
  std::iota(data.begin(), data.end(), 0u);  // token value = its position in the stream
  const int B = 2, T = 8;
  ref::Loader plain(&data, B, T, 7, false);
  CHECK(plain.windows() == (100 - 1) / T);
  std::vector<int> in, tg;
  plain.next(in, tg);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      CHECK(in[b * T + t] == b * T + t);      // window b starts at token b*T
      CHECK(tg[b * T + t] == b * T + t + 1);  // and its targets are the next T tokens
    }
  ref::Loader shuffled(&data, B, T, 7, true);
  std::vector<int> seen;
  for (uint64_t i = 0; i < shuffled.windows() / B; i++) {
    shuffled.next(in, tg);
    for (int b = 0; b < B; b++) {
      CHECK(in[b * T] % T == 0);
      seen.push_back(in[b * T] / T);
      for (int t = 0; t < T; t++) CHECK(tg[b * T + t] == in[b * T + t] + 1);
    }
  }
  std::sort(seen.begin(), seen.end());
  std::vector<int> all((size_t)shuffled.windows() / B * B);
  std::iota(all.begin(), all.end(), 0);
  CHECK(seen == all);  // one epoch visits each window once
}

TEST_CASE("conventions: weight decay applies to every tensor of two or more dimensions") {
  ref::Config c = step_config();
  c.S = 1;
  std::unique_ptr<ref::Model> m = ref::make_model(c);
  m->set(Arena::params, lively_params(m->table(), 4));
  const std::vector<float> before = m->get(Arena::params);
  m->zero_grad();                // g = 0, m = v = 0: the AdamW update term is 0 / (0 + eps) = 0,
  const float lr = 0.5f;         // so the step is the decay alone
  m->adamw(lr, 1);
  const std::vector<float> after = m->get(Arena::params);
  const float decay = (float)(1.0 - (double)lr * c.weight_decay);
  std::vector<std::string> decayed, kept;
  for (const ref::TensorSpec& s : m->table().params) {
    bool all_decayed = true, all_kept = true;
    for (size_t i = s.offset; i < s.offset + s.numel; i++) {
      all_decayed = all_decayed && after[i] == before[i] * decay;
      all_kept = all_kept && after[i] == before[i];
    }
    REQUIRE_MESSAGE(all_decayed != all_kept, s.name);
    (all_decayed ? decayed : kept).push_back(s.name);
    CHECK_MESSAGE(all_decayed == (s.shape.size() >= 2), s.name);
  }
  CHECK(kept == std::vector<std::string>{"layers.0.attn_norm", "layers.0.ffn_norm", "layers.1.attn_norm",
                                         "layers.1.ffn_norm", "final_norm"});
  for (const char* name : {"tok_emb", "lm_head", "layers.1.moe.router", "layers.1.moe.experts.w2", "layers.1.moe.shared.w1"})
    CHECK(std::find(decayed.begin(), decayed.end(), name) != decayed.end());
}

TEST_CASE("conventions: clipping multiplies the gradients by fp32(clip / norm)") {
  ref::Config c = step_config();
  c.grad_clip = 0;  // off: the raw gradient
  std::unique_ptr<ref::Model> raw = ref::make_model(c);
  c.grad_clip = 0.01f;
  std::unique_ptr<ref::Model> clipped = ref::make_model(c);
  const std::vector<uint32_t> data = random_tokens<uint32_t>(4000, c.V, 2);
  ref::Loader l1(&data, c.B, c.T, c.seed, true), l2(&data, c.B, c.T, c.seed, true);
  const ref::StepResult r1 = ref::train_step(*raw, l1, 0), r2 = ref::train_step(*clipped, l2, 0);
  CHECK(r1.grad_norm == r2.grad_norm);  // the reported norm is the one before clipping
  REQUIRE(r1.grad_norm > c.grad_clip);
  const std::vector<float> g1 = raw->get(Arena::grads), g2 = clipped->get(Arena::grads);  // AdamW leaves grads
  const float factor = (float)(c.grad_clip / r1.grad_norm);
  double ss = 0, ss_clipped = 0;
  size_t bad = 0;
  for (size_t i = 0; i < g1.size(); i++) {
    bad += g2[i] != g1[i] * factor;
    ss += (double)g1[i] * g1[i];
    ss_clipped += (double)g2[i] * g2[i];
  }
  CHECK(bad == 0);
  CHECK(std::sqrt(ss) == doctest::Approx(r1.grad_norm).epsilon(1e-12));  // the global L2 norm of every gradient
  CHECK(std::sqrt(ss_clipped) == doctest::Approx(c.grad_clip).epsilon(1e-6));
}

TEST_CASE("conventions: config floats are fp32 and their JSON decimal reads back to the same bits") {
  ref::Config c;
  c.bias_rate = 1e-3f;
  const json::Value j = json::parse(ref::to_json(c));
  CHECK(j.at("bias_rate").raw == "0.001");
  CHECK(std::strtof("0.001", nullptr) == c.bias_rate);
  CHECK(0.001 != (double)c.bias_rate);  // why readers must parse as fp32: the double differs
  ref::Rng rng(8);
  for (int trial = 0; trial < 200; trial++) {  // every float field, random values
    ref::Config r;
    float* fields[] = {&r.init_std, &r.rope_theta, &r.norm_eps, &r.bias_rate, &r.aux_alpha, &r.route_scale, &r.lr,
                       &r.lr_min, &r.lr_decay, &r.beta1, &r.beta2, &r.adam_eps, &r.weight_decay, &r.grad_clip};
    for (float* f : fields) *f = (float)(std::pow(10.0, -8 + 9 * rng.uniform()) * (1 + rng.uniform()));
    const json::Value jr = json::parse(ref::to_json(r));
    const char* keys[] = {"init_std", "rope_theta", "norm_eps", "bias_rate", "aux_alpha", "route_scale", "lr",
                          "lr_min", "lr_decay", "beta1", "beta2", "adam_eps", "weight_decay", "grad_clip"};
    for (int k = 0; k < 14; k++) {
      const std::string text = jr.at(keys[k]).raw;
      CAPTURE(text);
      CHECK(std::strtof(text.c_str(), nullptr) == *fields[k]);  // reads back to the same fp32 bits
      CHECK(text.find_first_of("0123456789") != std::string::npos);
    }
  }
}
