// model_compare.h — compares a whole model on a backend under test (the GPU) against the CPU
// reference (ref::make_model) on the same config, parameters and data: one optimizer step in detail,
// and multi-step trajectories through the trainer's own train_step.
//
// Budgets are tests/torch_ref.py's classes, the same numbers with the same meaning: a float element
// passes when |got - ref| <= atol_rel * max|ref| + rtol * |ref| (+ atol). torch_ref.py set them for
// fp32 against float64 with ~40x headroom over what fp32 rounding needs; here both sides are fp32,
// whose difference is at most the sum of the two sides' rounding errors, so the headroom is ~20x.
// The harness is itself checked on the CPU (tests/cuda/test_cuda_model.cpp, suite "harness (CPU)"):
// float against double stays far inside every budget, and injected faults are caught.
//
// Integers are exact: routing (tok_off, a_exp), counts; the biases are compared bit for bit (they
// come from integer counts). Routing can legitimately differ where two selection keys are within
// rounding of each other: such a difference is classified as a NEAR-TIE when the backend's decision
// is consistent with the reference's keys moved by at most the near-tie budget (the same 1e-5 / 1e-4
// relative as torch_ref.py), and as a FAILURE otherwise. A near-tie is reported, never counted as a
// pass or a failure: the float comparisons of that step are skipped (one token's different experts
// change everything downstream), and in a trajectory the backend under test is re-synchronised to
// the reference's state after that step, so the following steps are still compared.
#pragma once
#include <functional>  // std::function
#include <map>         // std::map
#include <memory>      // std::unique_ptr
#include <string>      // std::string
#include <utility>     // std::pair
#include <vector>      // std::vector

#include "ref/config.h"  // Config
#include "ref/model.h"   // Model, RoutingTrace

namespace mc {

struct Budget {
  double rtol, atol_rel, atol;
};
// tests/torch_ref.py BUDGETS
constexpr Budget kActivation{1e-5, 1e-5, 0};  // logits, router scores, gates of a micro-batch
constexpr Budget kLoss{1e-5, 0, 0};           // CE / aux loss / grad norm of one step
constexpr Budget kGrad{1e-4, 2e-5, 0};        // gradients of one step, summed over micro-batches
constexpr Budget kParam{1e-6, 1e-6, 0};       // params / Adam moments after one AdamW step on equal gradients
constexpr Budget kTrajLoss{1e-4, 0, 0};       // per-step loss / aux / grad norm within a trajectory
constexpr double kTrajParamRtol = 1e-4, kTrajParamAtolRel = 1e-4;
constexpr double kTrajParamAtolLr = 0.05;     // + 5% of one step of the largest lr (Adam moves ~lr per step)
constexpr double kNearTieRtol = 1e-5;         // keys closer than this (relative) at step 0: a near-tie
constexpr double kNearTieRtolTraj = 1e-4;     // after the models have drifted apart for a few steps

// What one comparison found. `failures` decide the test; `near_ties` are reported only.
struct Report {
  std::vector<std::string> failures, near_ties, notes;
  std::map<std::string, std::pair<double, double>> worst;  // class -> (worst relative error, worst budget fraction)
  int flipped_steps = 0;                                    // steps whose float comparisons a near-tie skipped

  void floats(const std::string& name, const std::vector<float>& got, const std::vector<float>& want,
              const Budget& b, const std::string& cls);
  void scalar(const std::string& name, double got, double want, const Budget& b, const std::string& cls);
  template <typename I> void ints(const std::string& name, const std::vector<I>& got, const std::vector<I>& want);
  void bits(const std::string& name, const std::vector<float>& got, const std::vector<float>& want);
  void fail(const std::string& msg) { failures.push_back(msg); }
  void merge(const Report& other, const std::string& prefix);
  std::string summary() const;  // "activation=1e-07/0.01 ... near_ties=0 result=PASS"
  bool ok() const { return failures.empty(); }
};

using Factory = std::function<std::unique_ptr<ref::Model>(const ref::Config&)>;

// A token stream with some structure (a noisy affine walk over the vocabulary), so that gradients
// are not those of pure noise. Deterministic in (V, n, seed).
std::vector<uint32_t> synthetic_tokens(int V, size_t n, uint64_t seed);

// Routing of one MoE layer of one micro-batch: `got` (backend under test) against `want` (reference),
// with the reference's keys (scores from `want`, bias = the layer's bias before the step, may be
// empty). order: the micro-batch's token order for expert choice (nullptr = identity).
// Returns true when the decisions are identical; a difference is added to the report as a near-tie
// or a failure (see the top of this file).
bool compare_routing(Report& rep, const std::string& where, const ref::Config& c, const ref::RoutingTrace& got,
                     const ref::RoutingTrace& want, const std::vector<float>& bias, const int* order, double rtol);

// Step 0 in detail, both models freshly made from `c` (so with equal parameters, checked bitwise):
// per micro-batch routing, scores, gates and logits; the step's loss, aux loss, every gradient, grad
// norm and counts; then clipping + AdamW applied to EQUAL gradients (the test model's, copied into the
// reference: Adam's first update is ~lr*sign(g), so a gradient element that is zero up to rounding
// would otherwise move by 2*lr on one side only) and the loss-free bias update.
Report compare_step(const ref::Config& c, ref::Model& test, ref::Model& refm, const std::vector<uint32_t>& data);

// `steps` optimizer steps through ref::train_step on both models, each with its own loader positioned
// at data_pos, starting at step index first_step: per step loss, aux loss, grad norm (kTrajLoss),
// routing of every micro-batch, counts (exact) and biases (bit for bit); at the end every parameter
// (rtol/atol_rel 1e-4 + 5% of one lr step) and bias. Both models must start in the same state.
// *end_pos (optional) receives the loaders' position after the last step.
Report compare_trajectory(const ref::Config& c, ref::Model& test, ref::Model& refm, const std::vector<uint32_t>& data,
                          int first_step, int steps, uint64_t data_pos, uint64_t* end_pos = nullptr);

// Checkpoints across backends, through the trainer's save_checkpoint / load_checkpoint:
//   1. 3 steps on a `test_backend` model, saved to dir/a.safetensors;
//   2. loaded into a CPU model: config, step, data position and every tensor of the state (params,
//      Adam m and v, biases) equal to the saved model's, bit for bit; the file names its backend;
//   3. 3 more steps on both, compared as a trajectory (the CPU resumed from the other backend);
//   4. the CPU model saved to dir/b.safetensors and loaded into a fresh `test_backend` model: equal
//      bit for bit again, then 3 more steps on both, compared as a trajectory.
Report checkpoint_roundtrip(const ref::Config& c, const Factory& test_backend, const std::vector<uint32_t>& data,
                            const std::string& dir);

// Whether the model tests print a summary line per config (the CPU self-test run without a GPU is quiet).
inline bool& print_summaries() {
  static bool on = true;
  return on;
}

// Copies the whole training state (parameters, Adam moments, biases) of `from` into `to`.
void copy_state(const ref::Model& from, ref::Model& to);

// A named config for the comparisons and the config edits that make it.
struct NamedConfig {
  std::string name;
  ref::Config cfg;
};
// The shapes the model tests use: deliberately awkward (N = 72 tokens per micro-batch, V = 96, E = 6,
// head dim 12), grad_accum 2, init std 0.02 so that routing is decided by clear gaps (as in
// tests/check_torch_dumps.sh), bias rate 0.01 so that the bias changes selections within 10 steps.
ref::Config base_config();
// Every balance mode with both gates, plus expert choice (shuffled chunks), norm_topk with K=3 and
// S=2, K=1 and K=E.
std::vector<NamedConfig> model_configs();

}  // namespace mc
