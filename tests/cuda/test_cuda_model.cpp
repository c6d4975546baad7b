// test_cuda_model.cpp — the whole model on the GPU against the CPU reference (tests/cuda/model_compare.h):
// one step in detail and 10-step trajectories for every balance mode with both gates (and expert
// choice, norm_topk, K=1, K=E), checkpoints moved between backends, run-to-run determinism, and the
// errors a diverged model raises.
//
// Suite "harness (CPU)" checks the comparison harness itself on the CPU, where it can run anywhere:
// the double-precision CPU model must pass every comparison (its difference from the float model is
// one side's fp32 rounding, about half of what two fp32 backends can differ by), and faults injected
// into a float model (a gradient 0.1% off, a bias one ulp off, a count moved, a real routing change)
// must be caught, while an exact tie decided the other way must be reported as a near-tie. It runs
// (quietly) even without a GPU; tests/cuda/main.cpp.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, INFO

#include <cmath>      // std::nextafter, NAN
#include <cstdio>     // std::printf
#include <cstdlib>    // mkdtemp
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <unistd.h>   // rmdir, unlink

#include "cuda/model.h"                // cuda::make_model
#include "ref/data.h"                  // Loader
#include "ref/model.h"                 // ref::make_model, ref::make_model_double
#include "ref/trainer.h"               // train_step
#include "tests/cuda/model_compare.h"  // the harness
#include "tests/test_util.h"           // error_of

namespace {

using mc::Report;

// Prints a config's summary (and its near-ties and notes), then makes doctest fail with every failure.
void judge(const std::string& what, const Report& rep) {
  if (mc::print_summaries()) {
    std::printf("  %-52s %s\n", what.c_str(), rep.summary().c_str());
    for (const auto& n : rep.near_ties) std::printf("      %s\n", n.c_str());
    for (const auto& n : rep.notes) std::printf("      note: %s\n", n.c_str());
  }
  std::string all;
  for (const auto& f : rep.failures) all += "\n  " + f;
  INFO(what << ":" << all);
  CHECK(rep.ok());
}

std::vector<uint32_t> data_for(const ref::Config& c) { return mc::synthetic_tokens(c.V, 6000, c.seed); }

void every_step(const mc::Factory& test_backend, const std::vector<mc::NamedConfig>& cfgs) {
  for (const mc::NamedConfig& nc : cfgs) {
    std::unique_ptr<ref::Model> t = test_backend(nc.cfg), r = ref::make_model(nc.cfg);
    judge("step 0: " + nc.name, mc::compare_step(nc.cfg, *t, *r, data_for(nc.cfg)));
  }
}

void every_trajectory(const mc::Factory& test_backend, const std::vector<mc::NamedConfig>& cfgs) {
  for (const mc::NamedConfig& nc : cfgs) {
    std::unique_ptr<ref::Model> t = test_backend(nc.cfg), r = ref::make_model(nc.cfg);
    judge("10 steps: " + nc.name, mc::compare_trajectory(nc.cfg, *t, *r, data_for(nc.cfg), 0, 10, 0));
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/lfmoe_cuda_test_XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("cannot create a temporary directory in /tmp");
    path = tmpl;
  }
  ~TempDir() {
    for (const char* f : {"/a.safetensors", "/b.safetensors"}) unlink((path + f).c_str());
    rmdir(path.c_str());
  }
};

mc::NamedConfig config_named(const std::string& name) {
  for (const mc::NamedConfig& nc : mc::model_configs())
    if (nc.name == name) return nc;
  throw std::runtime_error("no model config named '" + name + "'");
}

void checkpoints(const mc::Factory& test_backend) {
  for (const char* name : {"sigmoid lossfree mul error", "softmax aux per sequence"}) {
    const mc::NamedConfig nc = config_named(name);
    TempDir dir;
    judge(std::string("checkpoint round trip: ") + name, mc::checkpoint_roundtrip(nc.cfg, test_backend, data_for(nc.cfg), dir.path));
  }
}


// One forward+backward of a fresh micro-batch of `c` on `m`.
ref::ForwardStats one_micro_batch(ref::Model& m, const ref::Config& c) {
  const std::vector<uint32_t> d = mc::synthetic_tokens(c.V, (size_t)c.B * (c.T + 1), 5);
  std::vector<int> in, tg;
  for (int b = 0; b < c.B; b++)
    for (int t = 0; t < c.T; t++) {
      in.push_back((int)d[(size_t)b * (c.T + 1) + t]);
      tg.push_back((int)d[(size_t)b * (c.T + 1) + t + 1]);
    }
  return m.forward_backward(ref::MicroBatch{in.data(), tg.data(), nullptr}, 1.0f);
}

// A diverged model must stop the step with the same error on every backend: a NaN router weight gives
// NaN scores; scores that all underflow to 0 leave norm_topk nothing to normalise. Afterwards the
// backend is usable again (its error record is cleared).
void bad_values(const mc::Factory& test_backend) {
  ref::Config c = mc::base_config();
  c.norm_topk = true;
  c.balance = ref::Balance::none;
  const ref::TensorTable table = ref::make_param_table(c);
  const size_t router = table.get("layers.1.moe.router").offset, emb = table.get("tok_emb").offset;

  std::vector<float> nan_params;
  ref::init_params(c, table, nan_params);
  nan_params[router + 5] = NAN;
  // Channel 0 of every embedding = 100 dominates the residual stream, so the MoE layer's normalised
  // input has u[0] ~ +sqrt(C) for every token; router column 0 = -1e4 makes every logit ~ -7e4 and
  // every sigmoid score exactly 0.
  std::vector<float> zero_params;
  ref::init_params(c, table, zero_params);
  for (int v = 0; v < c.V; v++) zero_params[emb + (size_t)v * c.C] = 100.0f;
  for (int e = 0; e < c.E; e++)
    for (int k = 0; k < c.C; k++) zero_params[router + (size_t)e * c.C + k] = k == 0 ? -1e4f : 0.0f;

  struct Case {
    const char* name;
    const std::vector<float>* params;
    const char* must_say;
  };
  for (const Case& k : {Case{"NaN router weight", &nan_params, "score at token"},
                        Case{"every score underflows to 0 under norm_topk", &zero_params, "norm_topk"}}) {
    INFO(std::string(k.name));
    std::unique_ptr<ref::Model> r = ref::make_model(c), t = test_backend(c);
    r->set(ref::Arena::params, *k.params);
    t->set(ref::Arena::params, *k.params);
    const std::string er = error_of([&] { one_micro_batch(*r, c); });
    const std::string et = error_of([&] { one_micro_batch(*t, c); });
    INFO("cpu: " << er);
    INFO(std::string(t->backend()) << ": " << et);
    CHECK(er.find(k.must_say) != std::string::npos);
    CHECK(et.find(k.must_say) != std::string::npos);
    std::unique_ptr<ref::Model> fresh = test_backend(c);
    CHECK(error_of([&] { one_micro_batch(*fresh, c); }) == "");
  }
}

// ------------------------------------------------------------------------------ injected faults
enum class Fault { grad_scale, bias_ulp, count_moved, routing_far, routing_tie };

// Forwards to a real model, with one fault.
class FaultyModel final : public ref::Model {
 public:
  FaultyModel(std::unique_ptr<ref::Model> m, Fault f) : m_(std::move(m)), f_(f) {}
  const ref::Config& config() const override { return m_->config(); }
  const ref::TensorTable& table() const override { return m_->table(); }
  const char* backend() const override { return "faulty"; }
  ref::ForwardStats forward_backward(const ref::MicroBatch& mb, float s) override {
    return m_->forward_backward(mb, f_ == Fault::grad_scale ? s * 1.001f : s);  // gradients 0.1% too large
  }
  ref::ForwardStats forward(const ref::MicroBatch& mb) override { return m_->forward(mb); }
  void zero_grad() override { m_->zero_grad(); }
  double grad_norm() override { return m_->grad_norm(); }
  void scale_grads(float s) override { m_->scale_grads(s); }
  void adamw(float lr, int t) override { m_->adamw(lr, t); }
  void update_bias() override {
    m_->update_bias();
    if (f_ != Fault::bias_ulp) return;
    std::vector<float> b = m_->biases();  // one bias one ulp off
    b[0] = std::nextafter(b[0], 1.0f);
    m_->set_biases(b);
  }
  std::vector<float> get(ref::Arena a) const override { return m_->get(a); }
  void set(ref::Arena a, const std::vector<float>& v) override { m_->set(a, v); }
  std::vector<float> biases() const override { return m_->biases(); }
  void set_biases(const std::vector<float>& b) override { m_->set_biases(b); }
  std::vector<int64_t> step_counts() const override {
    std::vector<int64_t> c = m_->step_counts();
    if (f_ == Fault::count_moved) c[0]++, c[1]--;  // same total, one assignment counted for another expert
    return c;
  }
  ref::RoutingTrace routing(int mi) const override {
    ref::RoutingTrace r = m_->routing(mi);
    const int K = config().K, E = config().E;
    if (f_ == Fault::routing_far) {  // token 0's last choice replaced by its lowest-scoring expert
      int lo = 0;
      for (int i = 1; i < E; i++)
        if (r.scores[i] < r.scores[lo]) lo = i;
      r.a_exp[K - 1] = lo;
    }
    if (f_ == Fault::routing_tie)  // experts 1 and 2 exchanged everywhere (the test gives them equal router rows)
      for (int& e : r.a_exp) e = e == 1 ? 2 : e == 2 ? 1 : e;
    return r;
  }
  std::vector<float> logits() const override { return m_->logits(); }
  ref::RouterTrace router_trace(int mi) const override { return m_->router_trace(mi); }

 private:
  std::unique_ptr<ref::Model> m_;
  Fault f_;
};

}  // namespace

// =================================================================================== on the GPU

TEST_CASE("cuda model: step 0 equals the CPU's for every balance mode, both gates, expert choice, norm_topk, K=1, K=E") {
  every_step([](const ref::Config& c) { return cuda::make_model(c); }, mc::model_configs());
}

TEST_CASE("cuda model: 10-step trajectories equal the CPU's for every config") {
  every_trajectory([](const ref::Config& c) { return cuda::make_model(c); }, mc::model_configs());
}

TEST_CASE("cuda model: checkpoints move between backends (GPU -> CPU -> GPU) and training continues equally") {
  checkpoints([](const ref::Config& c) { return cuda::make_model(c); });
}

TEST_CASE("cuda model: two runs are bitwise identical") {
  const mc::NamedConfig nc = config_named("sigmoid lossfree add sign");
  const std::vector<uint32_t> data = data_for(nc.cfg);
  std::vector<double> losses[2];
  std::vector<float> params[2], biases[2];
  for (int run = 0; run < 2; run++) {
    std::unique_ptr<ref::Model> m = cuda::make_model(nc.cfg);
    ref::Loader loader(&data, nc.cfg.B, nc.cfg.T, nc.cfg.seed, true);
    for (int s = 0; s < 4; s++) losses[run].push_back(ref::train_step(*m, loader, s).loss);
    params[run] = m->get(ref::Arena::params);
    biases[run] = m->biases();
  }
  CHECK(losses[0] == losses[1]);
  CHECK(params[0] == params[1]);
  CHECK(biases[0] == biases[1]);
}

TEST_CASE("cuda model: a diverged model raises the CPU's errors (NaN score, norm_topk with a zero sum)") {
  bad_values([](const ref::Config& c) { return cuda::make_model(c); });
}

// ============================================================================ harness (CPU)

TEST_SUITE("harness (CPU)") {
  // double vs float: a subset of the configs keeps this quick enough to run on every `make test`
  std::vector<mc::NamedConfig> harness_configs() {
    std::vector<mc::NamedConfig> out;
    for (const char* n : {"sigmoid lossfree add sign", "softmax aux per sequence", "softmax lossfree norm_topk scale 2.5 K=3 S=2",
                          "sigmoid expert choice chunks of 24 shuffled", "sigmoid lossfree mul error"})
      out.push_back(config_named(n));
    return out;
  }
  const mc::Factory cpu_double = [](const ref::Config& c) { return ref::make_model_double(c); };

  TEST_CASE("harness: the CPU double model passes every comparison against the float model") {
    every_step(cpu_double, harness_configs());
    every_trajectory(cpu_double, harness_configs());
  }

  TEST_CASE("harness: checkpoint round trip and bad values on the CPU double model") {
    checkpoints(cpu_double);
    bad_values(cpu_double);
  }

  TEST_CASE("harness: injected faults are caught; an exact tie decided the other way is a near-tie") {
    struct Case {
      const char* name;
      Fault fault;
      const char* config;
      const char* must_fail_with;  // nullptr: must pass, with near-ties reported
    };
    const Case cases[] = {
        {"gradients 0.1% too large", Fault::grad_scale, "sigmoid none", "grad"},
        {"a bias one ulp off", Fault::bias_ulp, "sigmoid lossfree add sign", "biases"},
        {"an assignment counted for another expert", Fault::count_moved, "softmax lossfree mul error", "counts"},
        {"a token routed to its worst expert", Fault::routing_far, "sigmoid none", "routing mismatch"},
        // step 0 only: once a step has trained experts 1 and 2 on different tokens their rows differ
        {"exact ties decided for the higher index", Fault::routing_tie, "sigmoid none", nullptr},
    };
    const bool print = mc::print_summaries();
    mc::print_summaries() = false;
    for (const Case& k : cases) {
      INFO("fault: " << std::string(k.name));
      const mc::NamedConfig nc = config_named(k.config);
      const mc::Factory faulty = [&](const ref::Config& c) -> std::unique_ptr<ref::Model> {
        return std::make_unique<FaultyModel>(ref::make_model(c), k.fault);
      };
      std::vector<float> tied;
      if (k.fault == Fault::routing_tie) {  // router rows of experts 1 and 2 equal in every MoE layer
        std::unique_ptr<ref::Model> m = ref::make_model(nc.cfg);
        tied = m->get(ref::Arena::params);
        for (int l = nc.cfg.n_dense; l < nc.cfg.L; l++) {
          const size_t r = m->table().get("layers." + std::to_string(l) + ".moe.router").offset;
          for (int k2 = 0; k2 < nc.cfg.C; k2++) tied[r + 2 * nc.cfg.C + k2] = tied[r + 1 * nc.cfg.C + k2];
        }
      }
      for (const bool trajectory : {false, true}) {
        if (trajectory && k.fault == Fault::routing_tie) continue;
        INFO(std::string(trajectory ? "10-step trajectory" : "step 0"));
        std::unique_ptr<ref::Model> t = faulty(nc.cfg), r = ref::make_model(nc.cfg);
        if (!tied.empty()) t->set(ref::Arena::params, tied), r->set(ref::Arena::params, tied);
        const std::vector<uint32_t> data = data_for(nc.cfg);
        const Report rep = trajectory ? mc::compare_trajectory(nc.cfg, *t, *r, data, 0, 10, 0)
                                      : mc::compare_step(nc.cfg, *t, *r, data);
        std::string all;
        for (const auto& f : rep.failures) all += "\n  " + f;
        INFO("failures:" << all);
        if (k.must_fail_with) {
          bool named = false;
          for (const auto& f : rep.failures) named = named || f.find(k.must_fail_with) != std::string::npos;
          CHECK(named);
          if (k.fault == Fault::routing_far) CHECK(rep.near_ties.empty());  // a far difference is never a near-tie
        } else {
          CHECK(rep.ok());
          CHECK(!rep.near_ties.empty());
          CHECK(rep.flipped_steps > 0);
        }
      }
    }
    mc::print_summaries() = print;
  }
}
