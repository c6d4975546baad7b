// model_compare.cpp — see model_compare.h.
#include "tests/cuda/model_compare.h"

#include <algorithm>  // std::max, std::min, std::equal, std::any_of
#include <cmath>      // std::fabs, std::isnan
#include <cstdint>    // int64_t
#include <cstdio>     // std::snprintf
#include <sstream>    // std::ostringstream

#include "ref/data.h"         // Loader
#include "ref/io/safetensors.h"  // SafeTensorsFile (the checkpoint's metadata)
#include "ref/trainer.h"      // train_step, chunk_order, save_checkpoint, load_checkpoint

namespace mc {

namespace {

std::string fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", x);
  return b;
}
std::string fmt_short(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1e", x);
  return b;
}

// At most this many near-tie / failure lines per routing comparison; the rest are counted.
constexpr int kMaxLines = 4;

float selection_key(const ref::Config& c, float s, const std::vector<float>& bias, int mi, int i) {
  if (c.balance != ref::Balance::lossfree || bias.empty()) return s;
  const float b = bias[(size_t)mi * c.E + i];
  return c.bias_kind == ref::BiasKind::add ? s + b : s * b;
}

std::vector<float> slice(const std::vector<float>& v, const ref::TensorSpec& s) {
  return std::vector<float>(v.begin() + s.offset, v.begin() + s.offset + s.numel);
}

// Per-tensor comparison of two arenas (same table on both sides).
void compare_arena(Report& rep, const std::string& what, const ref::TensorTable& t, const std::vector<float>& got,
                   const std::vector<float>& want, const Budget& b, const std::string& cls) {
  if (got.size() != want.size() || got.size() != t.total) {
    rep.fail(what + ": arena sizes " + std::to_string(got.size()) + " vs " + std::to_string(want.size()));
    return;
  }
  for (const ref::TensorSpec& s : t.params) rep.floats(what + " " + s.name, slice(got, s), slice(want, s), b, cls);
}

// Token choice: is the backend's ordered choice `j` (K experts) what the reference's keys give when
// each key may move by at most tol? Returns the smallest margin by which it is violated (<= 0: fine).
double token_choice_violation(const std::vector<float>& key, const int* j, int K, int E) {
  double worst = -1e300;
  for (int a = 0; a + 1 < K; a++) worst = std::max(worst, double(key[j[a + 1]]) - key[j[a]]);
  std::vector<char> taken(E, 0);
  for (int a = 0; a < K; a++) taken[j[a]] = 1;
  for (int u = 0; u < E; u++)
    if (!taken[u]) worst = std::max(worst, double(key[u]) - key[j[K - 1]]);
  return worst;  // the largest amount by which a key the backend put lower is above one it put higher
}

// Assignments of a routing as a (N,E) 0/1 matrix; false when the arrays are inconsistent.
bool picked_matrix(const ref::RoutingTrace& r, int N, int E, std::vector<char>* p) {
  p->assign((size_t)N * E, 0);
  if ((int)r.tok_off.size() != N + 1 || r.tok_off[0] != 0 || r.tok_off[N] != (int)r.a_exp.size()) return false;
  for (int t = 0; t < N; t++) {
    if (r.tok_off[t + 1] < r.tok_off[t]) return false;
    for (int a = r.tok_off[t]; a < r.tok_off[t + 1]; a++) {
      const int e = r.a_exp[a];
      if (e < 0 || e >= E || (*p)[(size_t)t * E + e]) return false;
      (*p)[(size_t)t * E + e] = 1;
    }
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------ Report

void Report::floats(const std::string& name, const std::vector<float>& got, const std::vector<float>& want,
                    const Budget& b, const std::string& cls) {
  if (got.size() != want.size()) {
    fail(name + ": " + std::to_string(got.size()) + " elements, expected " + std::to_string(want.size()));
    return;
  }
  double mx = 0;
  for (float w : want) mx = std::max(mx, std::fabs(double(w)));
  size_t bad = 0, worst_i = 0;
  double worst_frac = 0, worst_rel = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double g = got[i], w = want[i], err = std::fabs(g - w);
    const double allowed = b.atol_rel * mx + b.rtol * std::fabs(w) + b.atol;
    bool ok;
    double frac;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
      frac = ok ? 0 : 1e300;
    } else {
      ok = err <= allowed;
      frac = allowed > 0 ? err / allowed : (err > 0 ? 1e300 : 0);
    }
    if (std::fabs(w) >= 1e-3 * mx && w != 0) worst_rel = std::max(worst_rel, err / std::fabs(w));
    if (frac > worst_frac) worst_frac = frac, worst_i = i;
    if (!ok) bad++;
  }
  auto& wc = worst[cls];
  wc.first = std::max(wc.first, worst_rel);
  wc.second = std::max(wc.second, worst_frac);
  if (bad)
    fail(name + ": " + std::to_string(bad) + " of " + std::to_string(want.size()) + " elements outside the " + cls +
         " budget (rtol " + fmt_short(b.rtol) + ", atol_rel " + fmt_short(b.atol_rel) +
         (b.atol > 0 ? ", atol " + fmt_short(b.atol) : std::string()) + "); worst at " + std::to_string(worst_i) +
         ": got " + fmt(got[worst_i]) + " expected " + fmt(want[worst_i]));
}

void Report::scalar(const std::string& name, double got, double want, const Budget& b, const std::string& cls) {
  // kept in double: losses and norms are accumulated in double by both backends
  const double err = std::fabs(got - want), allowed = b.atol_rel * std::fabs(want) + b.rtol * std::fabs(want) + b.atol;
  const bool ok = !std::isnan(got) && !std::isnan(want) && err <= allowed;
  auto& wc = worst[cls];
  wc.first = std::max(wc.first, want != 0 ? err / std::fabs(want) : err);
  wc.second = std::max(wc.second, allowed > 0 ? err / allowed : (err > 0 ? 1e300 : 0));
  if (!ok)
    fail(name + ": got " + fmt(got) + " expected " + fmt(want) + " (relative error " + fmt_short(err / std::fabs(want)) +
         ", " + cls + " budget rtol " + fmt_short(b.rtol) + ")");
}

template <typename I> void Report::ints(const std::string& name, const std::vector<I>& got, const std::vector<I>& want) {
  if (got.size() != want.size()) {
    fail(name + ": " + std::to_string(got.size()) + " entries, expected " + std::to_string(want.size()));
    return;
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (got[i] != want[i]) {
      if (!bad) first = i;
      bad++;
    }
  if (bad)
    fail(name + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) + " differ (must be exact); first at " +
         std::to_string(first) + ": got " + std::to_string(got[first]) + " expected " + std::to_string(want[first]));
}
template void Report::ints<int>(const std::string&, const std::vector<int>&, const std::vector<int>&);
template void Report::ints<int64_t>(const std::string&, const std::vector<int64_t>&, const std::vector<int64_t>&);

void Report::bits(const std::string& name, const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) {
    fail(name + ": " + std::to_string(got.size()) + " entries, expected " + std::to_string(want.size()));
    return;
  }
  for (size_t i = 0; i < got.size(); i++)
    if (!(got[i] == want[i]) && !(std::isnan(got[i]) && std::isnan(want[i]))) {
      fail(name + ": entry " + std::to_string(i) + " is " + fmt(got[i]) + ", expected exactly " + fmt(want[i]) +
           " (must be bit for bit)");
      return;
    }
}

void Report::merge(const Report& o, const std::string& prefix) {
  for (const auto& f : o.failures) failures.push_back(prefix + f);
  for (const auto& n : o.near_ties) near_ties.push_back(prefix + n);
  for (const auto& n : o.notes) notes.push_back(prefix + n);
  for (const auto& [k, v] : o.worst) {
    auto& w = worst[k];
    w.first = std::max(w.first, v.first);
    w.second = std::max(w.second, v.second);
  }
  flipped_steps += o.flipped_steps;
}

std::string Report::summary() const {
  std::ostringstream o;
  for (const auto& [k, v] : worst) o << k << "=" << fmt_short(v.first) << "/" << std::to_string(v.second).substr(0, 5) << " ";
  o << "near_ties=" << near_ties.size() << " result=" << (ok() ? "PASS" : "FAIL");
  return o.str();
}

// ----------------------------------------------------------------------------------------- routing

bool compare_routing(Report& rep, const std::string& where, const ref::Config& c, const ref::RoutingTrace& got,
                     const ref::RoutingTrace& want, const std::vector<float>& bias, const int* order, double rtol) {
  const int N = c.B * c.T, E = c.E;
  const int mi = 0;  // `bias` holds this layer's E entries (the caller slices it)
  int lines = 0, near = 0, real = 0;
  auto report = [&](bool is_near, const std::string& msg) {
    (is_near ? near : real)++;
    if (lines++ < kMaxLines) (is_near ? rep.near_ties : rep.failures).push_back(where + ": " + msg);
  };
  if (c.routing == ref::Routing::token_choice) {
    const int K = c.K;
    if (got.tok_off != want.tok_off || got.a_exp.size() != want.a_exp.size()) {
      rep.fail(where + ": token-choice tok_off or the number of assignments differ (must be exact)");
      return false;
    }
    for (int t = 0; t < N; t++) {
      const int* g = got.a_exp.data() + (size_t)t * K;
      const int* w = want.a_exp.data() + (size_t)t * K;
      if (std::equal(g, g + K, w)) continue;
      if (std::any_of(g, g + K, [E](int e) { return e < 0 || e >= E; })) {
        report(false, "token " + std::to_string(t) + " is assigned to an expert outside [0, E)");
        continue;
      }
      {
        std::vector<float> key(E);
        double mx = 1e-30;
        for (int i = 0; i < E; i++) {
          key[i] = selection_key(c, want.scores[(size_t)t * E + i], bias, mi, i);
          mx = std::max(mx, std::fabs(double(key[i])));
        }
        const double viol = token_choice_violation(key, g, K, E), tol = rtol * mx;
        std::string picks = "backend picked [";
        for (int a = 0; a < K; a++) picks += (a ? "," : "") + std::to_string(g[a]);
        picks += "], reference [";
        for (int a = 0; a < K; a++) picks += (a ? "," : "") + std::to_string(w[a]);
        picks += "]";
        if (viol <= tol)
          report(true, "near-tie at token " + std::to_string(t) + ": " + picks + "; the keys involved are within " +
                           fmt_short(std::max(viol, 0.0)) + " (near-tie budget " + fmt_short(tol) + ")");
        else
          report(false, "routing mismatch at token " + std::to_string(t) + ": " + picks + "; the backend's order " +
                            "contradicts the reference's keys by " + fmt_short(viol) + " > near-tie budget " +
                            fmt_short(tol));
      }
    }
  } else {
    std::vector<char> pg, pw;
    if (!picked_matrix(got, N, E, &pg) || !picked_matrix(want, N, E, &pw)) {
      rep.fail(where + ": expert-choice routing arrays are inconsistent (tok_off / a_exp)");
      return false;
    }
    const int chunk = c.ec_chunk > 0 ? c.ec_chunk : N, cap = (int)((int64_t)chunk * c.K / E);
    for (int c0 = 0; c0 < N; c0 += chunk)
      for (int e = 0; e < E; e++) {
        int n_got = 0, diff = 0;
        double min_in = 1e300, max_out = -1e300, mx = 1e-30;
        for (int p = c0; p < c0 + chunk; p++) {
          const int t = order ? order[p] : p;
          const double s = want.scores[(size_t)t * E + e];
          mx = std::max(mx, std::fabs(s));
          const bool in = pg[(size_t)t * E + e];
          n_got += in;
          diff += in != (bool)pw[(size_t)t * E + e];
          if (in) min_in = std::min(min_in, s);
          else max_out = std::max(max_out, s);
        }
        if (!diff) continue;
        const std::string at = "chunk " + std::to_string(c0 / chunk) + " expert " + std::to_string(e);
        if (n_got != cap) {
          report(false, at + ": the backend took " + std::to_string(n_got) + " tokens, the capacity is " +
                            std::to_string(cap));
          continue;
        }
        const double viol = max_out - min_in, tol = rtol * mx;
        if (viol <= tol)
          report(true, "near-tie at " + at + ": " + std::to_string(diff / 2) + " token(s) swapped; scores within " +
                           fmt_short(std::max(viol, 0.0)) + " (near-tie budget " + fmt_short(tol) + ")");
        else
          report(false, "routing mismatch at " + at + ": the backend left out a token scoring " +
                            fmt_short(viol) + " above one it took (> near-tie budget " + fmt_short(tol) + ")");
      }
  }
  if (lines > kMaxLines)
    (real ? rep.failures : rep.near_ties)
        .push_back(where + ": ... " + std::to_string(lines - kMaxLines) + " more (" + std::to_string(near) +
                   " near-ties, " + std::to_string(real) + " mismatches in all)");
  return near == 0 && real == 0;
}

// ------------------------------------------------------------------------------------------- state

void copy_state(const ref::Model& from, ref::Model& to) {
  for (ref::Arena a : {ref::Arena::params, ref::Arena::adam_m, ref::Arena::adam_v}) to.set(a, from.get(a));
  to.set_biases(from.biases());
}

std::vector<uint32_t> synthetic_tokens(int V, size_t n, uint64_t seed) {
  std::vector<uint32_t> t(n);
  uint64_t s = seed, x = seed % V;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;  // LCG: only the stream's shape matters here
    x = (x * 5 + 3 + ((s >> 33) % 4)) % (uint64_t)V;
    t[i] = (uint32_t)x;
  }
  return t;
}

namespace {
std::vector<float> layer_bias(const ref::Config& c, const std::vector<float>& all, int mi) {
  if (c.balance != ref::Balance::lossfree) return {};
  return std::vector<float>(all.begin() + (size_t)mi * c.E, all.begin() + (size_t)(mi + 1) * c.E);
}
std::string layer_name(const ref::Config& c, int mi) { return "layers." + std::to_string(c.n_dense + mi); }
}  // namespace

// -------------------------------------------------------------------------------------------- step

Report compare_step(const ref::Config& c, ref::Model& test, ref::Model& refm, const std::vector<uint32_t>& data) {
  Report rep;
  const ref::TensorTable& table = refm.table();
  rep.bits("initial parameters", test.get(ref::Arena::params), refm.get(ref::Arena::params));
  rep.bits("initial biases", test.biases(), refm.biases());
  if (!rep.ok()) return rep;

  ref::Loader loader(&data, c.B, c.T, c.seed, /*shuffle=*/true);
  std::vector<int> inputs, targets;
  const std::vector<float> bias_before = refm.biases();
  test.zero_grad();
  refm.zero_grad();
  double loss_t = 0, loss_r = 0, aux_t = 0, aux_r = 0;
  bool flipped = false;
  for (int m = 0; m < c.grad_accum; m++) {  // ref::train_step's micro-batch loop, both models side by side
    loader.next(inputs, targets);
    const std::vector<int> order = ref::chunk_order(c, (uint64_t)m);
    const ref::MicroBatch mb{inputs.data(), targets.data(), order.empty() ? nullptr : order.data()};
    const ref::ForwardStats sr = refm.forward_backward(mb, 1.0f / c.grad_accum);
    const ref::ForwardStats st = test.forward_backward(mb, 1.0f / c.grad_accum);
    loss_r += sr.loss / c.grad_accum, aux_r += sr.aux / c.grad_accum;
    loss_t += st.loss / c.grad_accum, aux_t += st.aux / c.grad_accum;
    bool flip = false;  // a routing difference in this micro-batch: later layers see different inputs
    for (int mi = 0; mi < c.n_moe() && !flip; mi++) {
      const std::string where = "mb" + std::to_string(m) + " " + layer_name(c, mi);
      const ref::RoutingTrace want = refm.routing(mi), got = test.routing(mi);
      rep.floats(where + " scores", got.scores, want.scores, kActivation, "activation");
      if (!compare_routing(rep, "step 0 " + where, c, got, want, layer_bias(c, bias_before, mi), mb.order,
                           kNearTieRtol)) {
        flip = true;
        break;
      }
      rep.floats(where + " gates", got.a_gate, want.a_gate, kActivation, "activation");
    }
    if (!flip) rep.floats("mb" + std::to_string(m) + " logits", test.logits(), refm.logits(), kActivation, "activation");
    flipped = flipped || flip;
  }
  if (!flipped) {
    rep.scalar("step 0 loss", loss_t, loss_r, kLoss, "loss");
    rep.scalar("step 0 aux loss", aux_t, aux_r, kLoss, "loss");
    compare_arena(rep, "step 0 grad", table, test.get(ref::Arena::grads), refm.get(ref::Arena::grads), kGrad, "grad");
    rep.scalar("step 0 grad norm", test.grad_norm(), refm.grad_norm(), kLoss, "loss");
    rep.ints("step 0 counts", test.step_counts(), refm.step_counts());
  } else {
    rep.flipped_steps++;
    rep.notes.push_back("step 0: a near-tie changed the routing; the step's losses, gradients and counts were not compared");
  }

  // Clipping + AdamW on equal gradients (see model_compare.h), then the bias update from the counts.
  refm.set(ref::Arena::grads, test.get(ref::Arena::grads));
  const float lr = ref::learning_rate(c, 0);
  for (ref::Model* m : {&test, &refm}) {
    const double norm = m->grad_norm();
    if (c.grad_clip > 0 && norm > c.grad_clip) m->scale_grads((float)(c.grad_clip / norm));
    m->adamw(lr, 1);
  }
  compare_arena(rep, "after AdamW: param", table, test.get(ref::Arena::params), refm.get(ref::Arena::params), kParam, "param");
  compare_arena(rep, "after AdamW: adam.m", table, test.get(ref::Arena::adam_m), refm.get(ref::Arena::adam_m), kParam, "param");
  compare_arena(rep, "after AdamW: adam.v", table, test.get(ref::Arena::adam_v), refm.get(ref::Arena::adam_v), kParam, "param");
  test.update_bias();
  refm.update_bias();
  if (!flipped) rep.bits("biases after the step", test.biases(), refm.biases());
  return rep;
}

// -------------------------------------------------------------------------------------- trajectory

Report compare_trajectory(const ref::Config& c, ref::Model& test, ref::Model& refm, const std::vector<uint32_t>& data,
                          int first_step, int steps, uint64_t data_pos, uint64_t* end_pos) {
  Report rep;
  const ref::TensorTable& table = refm.table();
  rep.bits("initial parameters", test.get(ref::Arena::params), refm.get(ref::Arena::params));
  rep.bits("initial biases", test.biases(), refm.biases());
  if (!rep.ok()) return rep;
  ref::Loader lt(&data, c.B, c.T, c.seed, true), lr(&data, c.B, c.T, c.seed, true);
  lt.seek(data_pos);
  lr.seek(data_pos);
  double max_lr = 0;
  for (int s = first_step; s < first_step + steps; s++) {
    const std::string step = "step " + std::to_string(s);
    const std::vector<float> bias_before = refm.biases();
    std::vector<std::vector<ref::RoutingTrace>> traces(c.grad_accum);
    const ref::StepResult rr = ref::train_step(refm, lr, s, [&](int m, const ref::MicroBatch&) {
      for (int mi = 0; mi < c.n_moe(); mi++) traces[m].push_back(refm.routing(mi));
    });
    bool flipped = false;
    const double rtol = s == 0 ? kNearTieRtol : kNearTieRtolTraj;
    const ref::StepResult rt = ref::train_step(test, lt, s, [&](int m, const ref::MicroBatch& mb) {
      for (int mi = 0; mi < c.n_moe(); mi++) {  // after a difference, later layers see other inputs: stop
        const std::string where = step + " mb" + std::to_string(m) + " " + layer_name(c, mi);
        if (!compare_routing(rep, where, c, test.routing(mi), traces[m][mi], layer_bias(c, bias_before, mi), mb.order,
                             rtol)) {
          flipped = true;
          break;
        }
      }
    });
    max_lr = std::max(max_lr, (double)rr.lr);
    if (flipped) {
      rep.flipped_steps++;
      rep.notes.push_back(step + ": a near-tie changed the routing; the step was not compared and the backend was "
                          "re-synchronised to the reference's state after it");
      copy_state(refm, test);
      continue;
    }
    rep.scalar(step + " loss", rt.loss, rr.loss, kTrajLoss, "traj_loss");
    rep.scalar(step + " aux loss", rt.aux, rr.aux, kTrajLoss, "traj_loss");
    rep.scalar(step + " grad norm", rt.grad_norm, rr.grad_norm, kTrajLoss, "traj_loss");
    rep.bits(step + " lr", {rt.lr}, {rr.lr});
    rep.ints(step + " counts", rt.counts, rr.counts);
    rep.bits(step + " biases after the step", test.biases(), refm.biases());
  }
  if (end_pos) *end_pos = lr.position();
  if (lt.position() != lr.position()) rep.fail("the two loaders ended at different positions");
  const Budget final_budget{kTrajParamRtol, kTrajParamAtolRel, kTrajParamAtolLr * max_lr};
  compare_arena(rep, "after " + std::to_string(steps) + " steps: param", table, test.get(ref::Arena::params),
                refm.get(ref::Arena::params), final_budget, "traj_param");
  rep.bits("final biases", test.biases(), refm.biases());
  return rep;
}

// ------------------------------------------------------------------------------------- checkpoints

namespace {
// Every tensor of the training state of `got` equal, bit for bit, to that of `want`.
void same_state(Report& rep, const std::string& what, const ref::Model& got, const ref::Model& want) {
  rep.bits(what + ": params", got.get(ref::Arena::params), want.get(ref::Arena::params));
  rep.bits(what + ": adam.m", got.get(ref::Arena::adam_m), want.get(ref::Arena::adam_m));
  rep.bits(what + ": adam.v", got.get(ref::Arena::adam_v), want.get(ref::Arena::adam_v));
  rep.bits(what + ": biases", got.biases(), want.biases());
}

// Loads `path` into `into`, checking what the checkpoint says about itself.
void load_and_check(Report& rep, const std::string& path, ref::Model& into, const ref::Config& c, int step,
                    uint64_t pos, const std::string& backend) {
  if (ref::to_json(ref::checkpoint_config(path)) != ref::to_json(c)) rep.fail(path + ": the stored config differs");
  const ref::TrainState st = ref::load_checkpoint(path, into);
  if (st.step != step) rep.fail(path + ": step " + std::to_string(st.step) + ", expected " + std::to_string(step));
  if (st.data_pos != pos)
    rep.fail(path + ": data position " + std::to_string(st.data_pos) + ", expected " + std::to_string(pos));
  const std::string stored = ref::SafeTensorsFile::read(path).meta_at("backend");
  if (stored != backend) rep.fail(path + ": backend '" + stored + "', expected '" + backend + "'");
}
}  // namespace

Report checkpoint_roundtrip(const ref::Config& c, const Factory& test_backend, const std::vector<uint32_t>& data,
                            const std::string& dir) {
  Report rep;
  const std::string a = dir + "/a.safetensors", b = dir + "/b.safetensors";
  std::unique_ptr<ref::Model> t1 = test_backend(c);
  ref::Loader loader(&data, c.B, c.T, c.seed, true);
  for (int s = 0; s < 3; s++) ref::train_step(*t1, loader, s);
  ref::save_checkpoint(a, *t1, ref::TrainState{3, loader.position()});

  std::unique_ptr<ref::Model> cpu = ref::make_model(ref::checkpoint_config(a));
  load_and_check(rep, a, *cpu, c, 3, loader.position(), t1->backend());
  same_state(rep, std::string(t1->backend()) + " -> checkpoint -> cpu", *cpu, *t1);
  uint64_t pos = 0;
  rep.merge(compare_trajectory(c, *t1, *cpu, data, 3, 3, loader.position(), &pos), "resumed on the cpu: ");

  ref::save_checkpoint(b, *cpu, ref::TrainState{6, pos});
  std::unique_ptr<ref::Model> t2 = test_backend(c);
  load_and_check(rep, b, *t2, c, 6, pos, "cpu");
  same_state(rep, std::string("cpu -> checkpoint -> ") + t2->backend(), *t2, *cpu);
  rep.merge(compare_trajectory(c, *t2, *cpu, data, 6, 3, pos), std::string("resumed on ") + t2->backend() + ": ");
  return rep;
}

// ----------------------------------------------------------------------------------------- configs

ref::Config base_config() {
  ref::Config c = ref::preset("tiny");
  c.V = 96; c.C = 48; c.H = 4; c.L = 3; c.n_dense = 1; c.Fd = 80;
  c.E = 6; c.K = 2; c.S = 1; c.F = 24; c.T = 24; c.B = 3; c.grad_accum = 2;
  c.init_std = 0.02f; c.lr = 3e-3f; c.lr_min = 3e-4f; c.warmup = 2; c.steps = 10;
  c.bias_rate = 0.01f; c.aux_alpha = 0.01f; c.seed = 11;
  return c;
}

std::vector<NamedConfig> model_configs() {
  std::vector<NamedConfig> out;
  auto add = [&](const std::string& name, const std::function<void(ref::Config&)>& edit) {
    ref::Config c = base_config();
    edit(c);
    ref::validate(c);
    out.push_back({name, c});
  };
  for (ref::Gate g : {ref::Gate::sigmoid, ref::Gate::softmax}) {
    const std::string gn = g == ref::Gate::sigmoid ? "sigmoid" : "softmax";
    add(gn + " none", [g](ref::Config& c) { c.gate = g; c.balance = ref::Balance::none; });
    add(gn + " aux per sequence", [g](ref::Config& c) { c.gate = g; c.balance = ref::Balance::aux; });
    add(gn + " lossfree add sign", [g](ref::Config& c) {
      c.gate = g; c.balance = ref::Balance::lossfree; c.bias_kind = ref::BiasKind::add; c.update_rule = ref::UpdateRule::sign;
    });
    add(gn + " lossfree mul error", [g](ref::Config& c) {
      c.gate = g; c.balance = ref::Balance::lossfree; c.bias_kind = ref::BiasKind::mul; c.update_rule = ref::UpdateRule::error;
    });
  }
  add("sigmoid aux per batch K=1 S=0 no dense layer", [](ref::Config& c) {
    c.balance = ref::Balance::aux; c.aux_per_batch = true; c.K = 1; c.S = 0; c.n_dense = 0;
  });
  add("softmax lossfree norm_topk scale 2.5 K=3 S=2", [](ref::Config& c) {
    c.gate = ref::Gate::softmax; c.balance = ref::Balance::lossfree; c.norm_topk = true; c.route_scale = 2.5f;
    c.K = 3; c.S = 2;
  });
  add("sigmoid lossfree add error K=E", [](ref::Config& c) {
    c.balance = ref::Balance::lossfree; c.update_rule = ref::UpdateRule::error; c.K = c.E;
  });
  add("sigmoid expert choice chunks of 24 shuffled", [](ref::Config& c) {
    c.balance = ref::Balance::none; c.routing = ref::Routing::expert_choice; c.ec_chunk = 24; c.ec_shuffle = true;
  });
  add("softmax expert choice whole micro-batch", [](ref::Config& c) {
    c.gate = ref::Gate::softmax; c.balance = ref::Balance::none; c.routing = ref::Routing::expert_choice; c.ec_chunk = 0;
  });
  return out;
}

}  // namespace mc
