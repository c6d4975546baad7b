// test_model.cpp — the whole model (ref/model.h, ref/model_impl.h): a finite-difference gradient
// check of (loss + aux) in double over every tensor kind and every routing/balance variant, and the
// loss-free bias invariants at model level, each a named TEST_CASE:
//   eval forward does not count toward the bias; counts of a step sum over every micro-batch and the
//   bias moves once per optimizer step (torchtitan #1304); the bias never enters the gate (vLLM
//   #12002); the bias is saved and restored, and a checkpoint without it is refused (torchtitan #1222,
//   PaddleFormers #4391); the bias stays fp32 and AdamW / weight decay never touch it (Megatron
//   #1482); update_bias is a no-op without loss-free balancing.
//
// The gradient check needs exact double access to the parameters: Model::get/set go through float,
// which would make the perturbation itself round to float. ModelImpl<T>::arena() gives that access
// ("exact access for the double-precision gradient checks"); ModelImpl is only defined in
// ref/model_impl.h, which is written to be included inside a namespace, so this file includes it the
// same way ref/model.cpp does (the same template definition in two translation units is allowed).
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <algorithm>  // std::max, std::min
#include <cmath>      // std::fabs, std::sqrt, std::isfinite
#include <cstdint>    // int64_t, uint64_t
#include <cstdio>     // std::remove
#include <cstring>    // std::memcmp
#include <memory>     // std::unique_ptr
#include <string>     // std::string
#include <vector>     // std::vector

#ifdef _OPENMP
#include <omp.h>  // omp_get_max_threads, omp_set_num_threads
#endif

#include "ref/config.h"       // Config
#include "ref/data.h"         // Loader
#include "ref/memory.h"       // what model_impl.h calls: dev_alloc, to_host, ...
#include "ref/metrics.h"      // maxvio_per_layer
#include "ref/model.h"        // Model, make_model
#include "ref/moe.h"          // what model_impl.h calls: router, experts, aux loss, bias_update
#include "ref/ops.h"          // what model_impl.h calls: dense ops
#include "ref/profile.h"      // what model_impl.h calls: phase scopes
#include "ref/rng.h"          // Rng
#include "ref/io/safetensors.h"  // SafeTensorsFile, SafeTensorsWriter
#include "ref/tensors.h"      // TensorTable, bias_name
#include "ref/trainer.h"      // train_step, evaluate, save/load_checkpoint, chunk_order
#include "tests/test_util.h"  // error_of, contains

namespace ref {
#include "ref/model_impl.h"  // ModelImpl<T> with arena(): exact double parameters and gradients
}  // namespace ref

using ref::Arena;

namespace {

// Runs a block with one OpenMP thread (the gradient check does thousands of tiny forwards; on a busy
// machine every parallel region costs more than the work), restoring the previous setting.
struct OneThread {
#ifdef _OPENMP
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
#endif
};

// The gradient-check shape of the brief: V 13, C 8, H 2, L 3 (1 dense), E 6, K 2, S 1, F 4, T 5, B 2.
// init_std 0.3 spreads the router keys far apart, so +-h almost never changes the selection.
ref::Config grad_config() {
  ref::Config c;
  c.V = 13; c.C = 8; c.H = 2; c.L = 3; c.n_dense = 1; c.Fd = 12; c.E = 6; c.K = 2; c.S = 1; c.F = 4; c.T = 5;
  c.B = 2; c.init_std = 0.3f; c.seed = 77;
  return c;
}

struct Batch {
  std::vector<int> tokens, targets, order;
  ref::MicroBatch mb() const {
    return ref::MicroBatch{tokens.data(), targets.data(), order.empty() ? nullptr : order.data()};
  }
};

Batch random_batch(const ref::Config& c, uint64_t seed, uint64_t micro_index = 0) {
  Batch b;
  ref::Rng rng(seed);
  for (int i = 0; i < c.B * c.T; ++i) {
    b.tokens.push_back((int)rng.below(c.V));
    b.targets.push_back((int)rng.below(c.V));
  }
  b.order = ref::chunk_order(c, micro_index);
  return b;
}

// The routing of every MoE layer in the model's last forward (what must not change under +-h).
std::vector<std::vector<int>> routing_of(const ref::Model& m) {
  std::vector<std::vector<int>> r;
  for (int mi = 0; mi < m.config().n_moe(); ++mi) {
    const ref::RoutingTrace t = m.routing(mi);
    r.push_back(t.tok_off);
    r.push_back(t.a_exp);
  }
  return r;
}

// Budget of the gradient check, per entry: |analytic - numeric| <= kAbs + kRel * |numeric|.
// Both sides are computed in double. The central difference with h = 1e-5 has truncation error
// h^2/6 * |f'''| (f''' of this small, 0.3-std model is O(10): ~2e-10) and rounding error
// ~ eps * |f| * (a few hundred ops) / h ~ 1e-16 * 3 * 300 / 1e-5 ~ 1e-8. kAbs = 1e-7 sits above both;
// a real mistake (a missing term, a wrong sign or factor) is the size of the gradient itself,
// 1e-3 .. 1e-1 here. The measured worst errors are printed by the test (a few 1e-9).
constexpr double kH = 1e-5, kAbs = 1e-7, kRel = 1e-6;

struct GradCheck {
  int checked = 0, skipped = 0, tensors = 0;
  double worst = 0;  // worst |a - n| / (kAbs + kRel |n|): <= 1 passes
  std::string worst_at;
};

// Checks dL/dp for up to per_tensor random entries of every tensor of the table, where
// L = CE + aux of one micro-batch, against central differences of the model's own forward.
GradCheck check_gradients(const ref::Config& cfg, bool random_bias, int per_tensor = 7) {
  OneThread one;
  ref::ModelImpl<double> m(cfg);
  if (random_bias) {  // a bias that really changes the selection (zero would be a special case)
    std::vector<float> b = ref::initial_biases(cfg);
    ref::Rng rng(cfg.seed + 5);
    for (float& x : b) x += (float)(cfg.bias_kind == ref::BiasKind::mul ? 0.5 * rng.uniform() : 0.2 * rng.normal());
    m.set_biases(b);
  }
  const Batch batch = random_batch(cfg, cfg.seed + 1);
  m.zero_grad();
  const ref::ForwardStats st = m.forward_backward(batch.mb(), 1.0f);
  const std::vector<std::vector<int>> routing = routing_of(m);
  const ref::TensorTable& table = m.table();
  const std::vector<double> grads(m.arena(Arena::grads), m.arena(Arena::grads) + table.total);
  double* params = m.arena(Arena::params);
  auto loss = [&] {
    const ref::ForwardStats s = m.forward(batch.mb());
    return s.loss + s.aux;
  };
  // The function differentiated numerically is the one the training forward computed.
  REQUIRE(loss() == st.loss + st.aux);
  if (cfg.balance == ref::Balance::aux) REQUIRE(st.aux > 0);

  GradCheck r;
  ref::Rng pick(cfg.seed + 9);
  for (const ref::TensorSpec& s : table.params) {
    ++r.tensors;
    for (int k = 0; k < std::min<int>(per_tensor, (int)s.numel); ++k) {
      const size_t i = s.offset + pick.below(s.numel);
      const double keep = params[i];
      params[i] = keep + kH;
      const double fp = loss();
      const bool same_p = routing_of(m) == routing;
      params[i] = keep - kH;
      const double fm = loss();
      const bool same_m = routing_of(m) == routing;
      params[i] = keep;
      if (!same_p || !same_m) {  // the selection changed: L is not smooth across this step
        ++r.skipped;
        continue;
      }
      const double numeric = (fp - fm) / (2 * kH), err = std::fabs(grads[i] - numeric) / (kAbs + kRel * std::fabs(numeric));
      ++r.checked;
      if (err > r.worst) {
        r.worst = err;
        r.worst_at = s.name + "[" + std::to_string(i - s.offset) + "] analytic " + std::to_string(grads[i]) +
                     " numeric " + std::to_string(numeric);
      }
    }
  }
  return r;
}

void run_grad_check(const char* what, const ref::Config& cfg, bool random_bias) {
  const GradCheck r = check_gradients(cfg, random_bias);
  MESSAGE(what << ": " << r.checked << " entries of " << r.tensors << " tensors checked, " << r.skipped
               << " skipped (selection changed under +-h), worst error " << r.worst << " of budget at " << r.worst_at);
  CHECK_MESSAGE(r.worst <= 1.0, what << ": worst " << r.worst_at);
  CHECK(r.skipped <= r.checked / 20);  // a few skips are expected at most; many would hide a bug
  CHECK(r.checked >= 150);
}

}  // namespace

// ---------------------------------------------------------------- whole-model gradient check
TEST_CASE("model: gradient of loss + aux matches finite differences (double), every variant") {
  SUBCASE("sigmoid, loss-free additive bias") {
    ref::Config c = grad_config();
    run_grad_check("sigmoid lossfree add", c, true);
  }
  SUBCASE("sigmoid, loss-free multiplicative bias") {
    ref::Config c = grad_config();
    c.bias_kind = ref::BiasKind::mul;
    run_grad_check("sigmoid lossfree mul", c, true);
  }
  SUBCASE("softmax, aux loss per sequence") {
    ref::Config c = grad_config();
    c.gate = ref::Gate::softmax; c.balance = ref::Balance::aux; c.aux_alpha = 0.1f;  // large: its gradient shows
    run_grad_check("softmax aux per-sequence", c, false);
  }
  SUBCASE("sigmoid, aux loss per batch") {
    ref::Config c = grad_config();
    c.balance = ref::Balance::aux; c.aux_per_batch = true; c.aux_alpha = 0.1f;
    run_grad_check("sigmoid aux per-batch", c, false);
  }
  SUBCASE("sigmoid, aux loss per sequence") {
    ref::Config c = grad_config();
    c.balance = ref::Balance::aux; c.aux_alpha = 0.1f;
    run_grad_check("sigmoid aux per-sequence", c, false);
  }
  SUBCASE("norm_topk with a route scale") {
    ref::Config c = grad_config();
    c.norm_topk = true; c.route_scale = 2.5f;
    run_grad_check("norm_topk sigmoid", c, true);
  }
  SUBCASE("norm_topk, softmax") {
    ref::Config c = grad_config();
    c.norm_topk = true; c.gate = ref::Gate::softmax; c.balance = ref::Balance::none;
    run_grad_check("norm_topk softmax", c, false);
  }
  SUBCASE("expert choice with shuffled chunks") {
    ref::Config c = grad_config();
    c.T = 6;  // N = 12: chunks of 6 tokens, each expert takes 6*2/6 = 2
    c.routing = ref::Routing::expert_choice; c.balance = ref::Balance::none; c.ec_chunk = 6; c.ec_shuffle = true;
    run_grad_check("expert choice", c, false);
  }
  SUBCASE("no shared expert (S = 0)") {
    ref::Config c = grad_config();
    c.S = 0;
    run_grad_check("S=0", c, true);
  }
  SUBCASE("no dense layer (n_dense = 0)") {
    ref::Config c = grad_config();
    c.n_dense = 0;
    run_grad_check("n_dense=0", c, true);
  }
  SUBCASE("K = 1") {
    ref::Config c = grad_config();
    c.K = 1;
    run_grad_check("K=1", c, true);
  }
}

TEST_CASE("model: the gradient check detects a wrong gradient") {
  // The oracle must be able to fail: corrupt one analytic entry by 1% and the budget is exceeded.
  OneThread one;
  ref::Config cfg = grad_config();
  ref::ModelImpl<double> m(cfg);
  const Batch batch = random_batch(cfg, 3);
  m.zero_grad();
  m.forward_backward(batch.mb(), 1.0f);
  const size_t i = m.table().get("layers.1.moe.router").offset + 3;
  const double g = m.arena(Arena::grads)[i];
  double* p = m.arena(Arena::params);
  const double keep = p[i];
  p[i] = keep + kH;
  const double fp = m.forward(batch.mb()).loss;
  p[i] = keep - kH;
  const double fm = m.forward(batch.mb()).loss;
  p[i] = keep;
  const double numeric = (fp - fm) / (2 * kH);
  REQUIRE(std::fabs(numeric) > 1e-4);
  CHECK(std::fabs(g - numeric) <= kAbs + kRel * std::fabs(numeric));
  CHECK(std::fabs(g * 1.01 - numeric) > kAbs + kRel * std::fabs(numeric));
}

// ---------------------------------------------------------------- named invariants
namespace {

// A small float model for the invariants (fast, several MoE layers).
ref::Config small_config() {
  ref::Config c;
  c.V = 32; c.C = 16; c.H = 2; c.L = 3; c.n_dense = 1; c.Fd = 24; c.E = 8; c.K = 2; c.S = 1; c.F = 8; c.T = 8;
  c.B = 2; c.init_std = 0.1f; c.seed = 11;
  c.warmup = 0; c.lr = 1e-2f;
  return c;
}

std::vector<int64_t> counts_of(const ref::Model& m) {
  const ref::Config& c = m.config();
  std::vector<int64_t> out((size_t)c.n_moe() * c.E, 0);
  for (int mi = 0; mi < c.n_moe(); ++mi)
    for (int e : m.routing(mi).a_exp) out[(size_t)mi * c.E + e]++;
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<uint32_t> random_stream(int V, size_t n, uint64_t seed) {
  ref::Rng rng(seed);
  std::vector<uint32_t> s(n);
  for (auto& x : s) x = (uint32_t)rng.below(V);
  return s;
}

// The bias after one step by the documented arithmetic (docs/FORMAT.md), from the step's counts.
std::vector<float> expected_bias(const ref::Config& c, std::vector<float> b, const std::vector<int64_t>& counts) {
  for (int mi = 0; mi < c.n_moe(); ++mi) {
    int64_t sum = 0;
    for (int e = 0; e < c.E; ++e) sum += counts[(size_t)mi * c.E + e];
    for (int e = 0; e < c.E; ++e) {
      float& x = b[(size_t)mi * c.E + e];
      const int64_t ci = counts[(size_t)mi * c.E + e];
      if (c.update_rule == ref::UpdateRule::sign) {
        const float step = sum > c.E * ci ? c.bias_rate : sum < c.E * ci ? -c.bias_rate : 0.0f;
        x = x + step;
      } else {
        const double mean = double(sum) / c.E;
        x = x + float(double(c.bias_rate) * (mean - double(ci)) / mean);
      }
    }
  }
  return b;
}

std::string tmp_path(const std::string& name) { return "/tmp/lfmoe_test_model_" + name; }

}  // namespace

TEST_CASE("model: eval forward does not count toward the bias") {
  ref::Config cfg = small_config();
  std::unique_ptr<ref::Model> m = ref::make_model(cfg);
  const Batch b1 = random_batch(cfg, 1), b2 = random_batch(cfg, 2);
  m->zero_grad();
  m->forward(b1.mb());
  for (int64_t x : m->step_counts()) CHECK(x == 0);
  const std::vector<float> bias0 = m->biases();
  m->update_bias();  // nothing counted: nothing to balance
  CHECK(bitwise_equal(m->biases(), bias0));

  m->forward_backward(b1.mb(), 1.0f);
  const std::vector<int64_t> after_train = m->step_counts();
  CHECK(after_train == counts_of(*m));
  m->forward(b2.mb());  // an eval forward between training micro-batches adds nothing
  CHECK(m->step_counts() == after_train);
  const std::vector<uint32_t> val = random_stream(cfg.V, 5 * cfg.B * (cfg.T + 1), 3);
  const ref::EvalResult e = ref::evaluate(*m, val, 0);
  CHECK(e.batches >= 2);
  CHECK(m->step_counts() == after_train);
  CHECK(bitwise_equal(m->biases(), bias0));  // evaluate never moves the bias
}

TEST_CASE("evaluate: the whole split in any window order; a limited evaluation samples all of it") {
  // The validation split is stored part by part, so a limited evaluation that read its first
  // windows would measure one part. Here the split's first half repeats token 0 and its second half
  // token V-1, so every window of a half has that half's loss: a prefix of the windows would give
  // exactly the first half's loss, a sample of the whole split a mix strictly between the two.
  ref::Config cfg = small_config();
  std::unique_ptr<ref::Model> m = ref::make_model(cfg);
  const int W = 64 * cfg.B;  // windows
  std::vector<uint32_t> val((size_t)W * cfg.T + 1, (uint32_t)cfg.V - 1);
  std::fill(val.begin(), val.begin() + (size_t)W / 2 * cfg.T, 0u);
  // Reference: mean cross-entropy of every window, read in order, B windows per micro-batch.
  double first = 0, second = 0;
  std::vector<int> in((size_t)cfg.B * cfg.T), tg((size_t)cfg.B * cfg.T);
  for (int w0 = 0; w0 < W; w0 += cfg.B) {
    for (int b = 0; b < cfg.B; ++b)
      for (int t = 0; t < cfg.T; ++t) {
        in[(size_t)b * cfg.T + t] = (int)val[(size_t)(w0 + b) * cfg.T + t];
        tg[(size_t)b * cfg.T + t] = (int)val[(size_t)(w0 + b) * cfg.T + t + 1];
      }
    const double l = m->forward(ref::MicroBatch{in.data(), tg.data(), nullptr}).loss;
    (w0 < W / 2 ? first : second) += l / (W / 2 / cfg.B);
  }
  const ref::EvalResult all = ref::evaluate(*m, val, 0);
  CHECK(all.batches == W / cfg.B);
  CHECK(all.loss == doctest::Approx((first + second) / 2).epsilon(1e-5));
  int64_t total = 0;
  for (int64_t c : all.counts) total += c;
  CHECK(total == (int64_t)cfg.n_moe() * W * cfg.T * cfg.K);  // every token of every window, once
  const ref::EvalResult part = ref::evaluate(*m, val, W / cfg.B / 2);
  CHECK(part.batches == W / cfg.B / 2);
  MESSAGE("first half " << first << ", second half " << second << ", half-size evaluation " << part.loss);
  REQUIRE(std::fabs(first - second) > 1e-3);  // the halves are distinguishable
  CHECK(part.loss > std::min(first, second) + 0.1 * std::fabs(first - second));
  CHECK(part.loss < std::max(first, second) - 0.1 * std::fabs(first - second));
}

TEST_CASE("model: counts of a step sum over every micro-batch; the bias moves once per optimizer step") {
  for (ref::UpdateRule rule : {ref::UpdateRule::sign, ref::UpdateRule::error}) {
    CAPTURE(ref::name(rule));
    ref::Config cfg = small_config();
    cfg.grad_accum = 3;
    cfg.update_rule = rule;
    cfg.bias_rate = 1e-3f;
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    const std::vector<uint32_t> data = random_stream(cfg.V, 40 * (cfg.T + 1), 4);
    ref::Loader loader(&data, cfg.B, cfg.T, cfg.seed, true);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> before = m->biases();
      std::vector<int64_t> summed((size_t)cfg.n_moe() * cfg.E, 0);
      int micro = 0;
      const ref::MicroHook hook = [&](int mi, const ref::MicroBatch&) {
        CHECK(mi == micro++);
        const std::vector<int64_t> c = counts_of(*m);
        for (size_t i = 0; i < c.size(); ++i) summed[i] += c[i];
        CHECK(m->step_counts() == summed);           // the step's counts accumulate micro-batch by micro-batch
        CHECK(bitwise_equal(m->biases(), before));   // and the bias does not move inside the step
      };
      const ref::StepResult r = ref::train_step(*m, loader, step, hook);
      CHECK(micro == 3);
      CHECK(r.counts == summed);
      for (int mi = 0; mi < cfg.n_moe(); ++mi) {  // every micro-batch's N*K assignments are there
        int64_t s = 0;
        for (int e = 0; e < cfg.E; ++e) s += r.counts[(size_t)mi * cfg.E + e];
        CHECK(s == (int64_t)cfg.grad_accum * cfg.B * cfg.T * cfg.K);
      }
      const std::vector<float> after = m->biases(), want = expected_bias(cfg, before, r.counts);
      CHECK(bitwise_equal(after, want));
      if (rule == ref::UpdateRule::sign) {
        int moved = 0;
        for (size_t i = 0; i < after.size(); ++i) {
          const float d = std::fabs((after[i] - before[i]));  // exactly 0 or u (b stays tiny: no rounding)
          CHECK((d == 0.0f || std::fabs(d - cfg.bias_rate) < 1e-9f));
          moved += d != 0.0f;
        }
        CHECK(moved > 0);
      }
    }
  }
}

TEST_CASE("model: bias never enters the gate (large bias: gates equal the unbiased scores)") {
  for (ref::BiasKind kind : {ref::BiasKind::add, ref::BiasKind::mul}) {
    CAPTURE(ref::name(kind));
    ref::Config cfg = small_config();
    cfg.bias_kind = kind;
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    std::vector<float> b = ref::initial_biases(cfg);
    for (int mi = 0; mi < cfg.n_moe(); ++mi) b[(size_t)mi * cfg.E + 5] = kind == ref::BiasKind::add ? 10.0f : 1000.0f;
    m->set_biases(b);
    const Batch batch = random_batch(cfg, 5);
    m->forward(batch.mb());
    for (int mi = 0; mi < cfg.n_moe(); ++mi) {
      const ref::RoutingTrace r = m->routing(mi);
      const int N = cfg.B * cfg.T;
      int took5 = 0;
      for (int t = 0; t < N; ++t)
        for (int a = r.tok_off[t]; a < r.tok_off[t + 1]; ++a) {
          took5 += r.a_exp[a] == 5;
          CHECK(r.a_gate[a] == r.scores[(size_t)t * cfg.E + r.a_exp[a]]);  // s, not s + b or s * b
          CHECK(r.a_gate[a] < 1.0f);
        }
      CHECK(took5 == N);  // the bias did steer the selection: every token took expert 5
    }
  }
}

TEST_CASE("model: bias is saved and restored; a checkpoint without it is refused") {
  ref::Config cfg = small_config();
  cfg.bias_rate = 1e-2f;
  std::unique_ptr<ref::Model> m = ref::make_model(cfg);
  const std::vector<uint32_t> data = random_stream(cfg.V, 30 * (cfg.T + 1), 6);
  ref::Loader loader(&data, cfg.B, cfg.T, cfg.seed, true);
  std::vector<float> want = m->biases();
  for (int step = 0; step < 3; ++step) {
    const ref::StepResult r = ref::train_step(*m, loader, step);
    want = expected_bias(cfg, want, r.counts);
  }
  const std::vector<float> trained = m->biases();
  CHECK(bitwise_equal(trained, want));  // the update really happened in place (torchtitan #1222)
  int nonzero = 0;
  for (float x : trained) nonzero += x != 0.0f;
  CHECK(nonzero > 0);

  const std::string path = tmp_path("bias.st");
  ref::save_checkpoint(path, *m, ref::TrainState{3, loader.position()});
  const ref::SafeTensorsFile f = ref::SafeTensorsFile::read(path);
  for (int mi = 0; mi < cfg.n_moe(); ++mi) {
    const std::string name = ref::bias_name(cfg.n_dense + mi);
    REQUIRE(f.has(name));
    CHECK(f.tensors.at(name).dtype == "F32");  // fp32 on disk, never a lower precision
  }
  ref::Config other = cfg;
  other.seed = 999;  // different initial parameters, initial biases 0
  std::unique_ptr<ref::Model> m2 = ref::make_model(other);
  const ref::TrainState st = ref::load_checkpoint(path, *m2);
  CHECK(st.step == 3);
  CHECK(bitwise_equal(m2->biases(), trained));
  CHECK(bitwise_equal(m2->get(Arena::params), m->get(Arena::params)));

  // The same file without layers.2.moe.bias: refused, naming the tensor (never zero-filled).
  ref::SafeTensorsWriter w;
  const std::string dropped = ref::bias_name(cfg.n_dense + 1);
  for (const auto& [name, t] : f.tensors)
    if (name != dropped) w.add(name, t.shape, reinterpret_cast<const float*>(t.bytes.data()));
  for (const auto& [k, v] : f.meta) w.meta(k, v);
  const std::string no_bias = tmp_path("no_bias.st");
  w.write(no_bias);
  std::unique_ptr<ref::Model> m3 = ref::make_model(other);
  const std::string e = error_of([&] { ref::load_checkpoint(no_bias, *m3); });
  CHECK(contains(e, "missing tensor '" + dropped + "'"));
  std::remove(path.c_str());
  std::remove(no_bias.c_str());
}

TEST_CASE("model: the bias stays fp32 and is not touched by AdamW or weight decay") {
  SUBCASE("AdamW with weight decay leaves the bias alone") {
    ref::Config cfg = small_config();
    cfg.weight_decay = 0.5f;
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    std::vector<float> b = m->biases();
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25f - 0.01f * (float)i;
    m->set_biases(b);
    const std::vector<float> p0 = m->get(Arena::params);
    m->zero_grad();
    m->forward_backward(random_batch(cfg, 7).mb(), 1.0f);
    m->adamw(0.1f, 1);
    CHECK_FALSE(bitwise_equal(m->get(Arena::params), p0));  // the optimizer did run
    CHECK(bitwise_equal(m->biases(), b));
  }
  SUBCASE("the double model keeps the bias in fp32: b = fp32(b + fp32(u * sign))") {
    ref::Config cfg = small_config();
    cfg.bias_kind = ref::BiasKind::mul;  // b starts at 1, where bf16 (ulp 2^-7) would lose u = 1e-3
    cfg.bias_rate = 1e-3f;
    std::unique_ptr<ref::Model> m = ref::make_model_double(cfg);
    const Batch batch = random_batch(cfg, 8);
    m->zero_grad();
    m->forward_backward(batch.mb(), 1.0f);
    const std::vector<int64_t> counts = m->step_counts();
    m->update_bias();
    const std::vector<float> b = m->biases(), want = expected_bias(cfg, ref::initial_biases(cfg), counts);
    CHECK(bitwise_equal(b, want));
    int up = 0, down = 0;
    for (float x : b) {
      up += x == 1.0f + 1e-3f;
      down += x == 1.0f - 1e-3f;
    }
    CHECK(up > 0);
    CHECK(down > 0);
    // u = 1e-8 is below half an fp32 ulp of 1: an fp32 bias stays exactly 1 however often it is
    // updated; a bias kept in double would drift to 1 -+ 1e-7 in 10 steps and round away from 1.
    cfg.bias_rate = 1e-8f;
    std::unique_ptr<ref::Model> d = ref::make_model_double(cfg);
    for (int step = 0; step < 10; ++step) {
      d->zero_grad();
      d->forward_backward(batch.mb(), 1.0f);
      CHECK(ref::mean(ref::maxvio_per_layer(d->step_counts(), cfg.E)) > 0);  // the update has a direction
      d->update_bias();
    }
    for (float x : d->biases()) CHECK(x == 1.0f);
  }
}

TEST_CASE("model: update_bias is a no-op for balance none and aux, and their selection ignores the bias") {
  for (ref::Balance bal : {ref::Balance::none, ref::Balance::aux}) {
    CAPTURE(ref::name(bal));
    ref::Config cfg = small_config();
    cfg.balance = bal;
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    const Batch batch = random_batch(cfg, 9);
    m->forward(batch.mb());
    const std::vector<std::vector<int>> plain = routing_of(*m);
    std::vector<float> b = m->biases();
    for (size_t i = 0; i < b.size(); ++i) b[i] = (i % cfg.E == 3) ? 10.0f : 0.0f;
    m->set_biases(b);
    m->zero_grad();
    m->forward_backward(batch.mb(), 1.0f);
    CHECK(routing_of(*m) == plain);  // a huge bias changes nothing when balance is not loss-free
    m->update_bias();
    CHECK(bitwise_equal(m->biases(), b));
  }
  SUBCASE("expert choice") {
    ref::Config cfg = small_config();
    cfg.routing = ref::Routing::expert_choice; cfg.balance = ref::Balance::none;
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    const std::vector<float> b = m->biases();
    m->zero_grad();
    m->forward_backward(random_batch(cfg, 10).mb(), 1.0f);
    m->update_bias();
    CHECK(bitwise_equal(m->biases(), b));
  }
}
