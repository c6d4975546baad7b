// model.h — the model as the trainer sees it, whatever the backend.
//
// A Model owns its arenas (parameters, gradients, AdamW moments, activations) on its backend's
// memory, the loss-free biases and the expert counts of the current optimizer step. The call
// sequence (forward, backward, optimizer, bias update) is written once, in ref/model_impl.h, and
// compiled for each backend: ref::make_model (CPU, float or double) and cuda::make_model.
#pragma once
#include <cstdint>  // int64_t
#include <memory>   // std::unique_ptr
#include <string>   // std::string
#include <vector>   // std::vector

#include "ref/config.h"   // Config
#include "ref/tensors.h"  // TensorTable

namespace ref {

enum class Arena { params, grads, adam_m, adam_v };

// One micro-batch of B sequences of T tokens, host pointers (N = B*T entries each).
// order: expert choice with shuffle only, the token order used for chunking (else nullptr).
struct MicroBatch {
  const int* tokens = nullptr;
  const int* targets = nullptr;
  const int* order = nullptr;
};

struct ForwardStats {
  double loss = 0;  // mean cross-entropy of the micro-batch
  double aux = 0;   // aux loss summed over MoE layers (0 unless the balance has an aux loss)
};

// Routing of one MoE layer in the last forward, copied to the host (see ref/moe.h for the layout).
struct RoutingTrace {
  std::vector<int> tok_off, a_exp;
  std::vector<float> a_gate, scores;  // scores (N,E)
};

// Router input, logits and aux loss of one MoE layer in the last forward, on the host (dumps).
struct RouterTrace {
  std::vector<float> router_in, logits;  // u (N,C), the normalised FFN input; logits u routerᵀ (N,E)
  double aux = 0;                        // this layer's aux loss (alpha included; 0 without an aux loss)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const Config& config() const = 0;
  virtual const TensorTable& table() const = 0;
  virtual const char* backend() const = 0;

  // Training forward + backward of one micro-batch; gradients accumulate (scaled by loss_scale,
  // normally 1/grad_accum) and the micro-batch's expert counts are added to the step's counts.
  virtual ForwardStats forward_backward(const MicroBatch& mb, float loss_scale) = 0;
  // Evaluation forward: same routing as training (bias included), no gradient, no counts for the bias.
  virtual ForwardStats forward(const MicroBatch& mb) = 0;

  virtual void zero_grad() = 0;                 // gradients and the step's expert counts
  virtual double grad_norm() = 0;               // global L2 norm of all gradients
  virtual void scale_grads(float s) = 0;
  virtual void adamw(float lr, int t) = 0;      // t: 1-based optimizer step, for bias correction
  virtual void update_bias() = 0;               // loss-free rule from the step's counts (no-op otherwise)

  // Host copies of state (float whatever the backend's T, for checkpoints and dumps).
  virtual std::vector<float> get(Arena a) const = 0;
  virtual void set(Arena a, const std::vector<float>& v) = 0;
  virtual std::vector<float> biases() const = 0;            // (n_moe, E)
  virtual void set_biases(const std::vector<float>& b) = 0;
  virtual std::vector<int64_t> step_counts() const = 0;     // (n_moe, E), summed over the step's micro-batches
  virtual RoutingTrace routing(int moe_index) const = 0;    // of the last forward
  virtual RouterTrace router_trace(int moe_index) const = 0;  // of the last forward
  virtual std::vector<float> logits() const = 0;            // (N, V) of the last forward
};

// Parameters drawn N(0, init_std) from cfg.seed (norm weights 1); biases 0 (1 for multiplicative).
void init_params(const Config& cfg, const TensorTable& table, std::vector<float>& params);
std::vector<float> initial_biases(const Config& cfg);

std::unique_ptr<Model> make_model(const Config& cfg);         // CPU, float
std::unique_ptr<Model> make_model_double(const Config& cfg);  // CPU, double (gradient checks)

}  // namespace ref
