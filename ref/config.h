// config.h — every setting of a run: model shape, routing, balance control, optimizer, schedule.
// One struct, one validation function, one JSON form (stored in checkpoints and dumps).
#pragma once
#include <cstdint>  // int64_t
#include <string>   // std::string
#include <vector>   // std::vector

namespace ref {

enum class Gate { sigmoid, softmax };                 // G in s = G(u . e)
enum class Routing { token_choice, expert_choice };   // who picks: tokens pick K experts, or experts pick tokens
// how load is balanced; lossfree_aux = the loss-free bias plus the sequence-wise aux loss (DeepSeek-V3)
enum class Balance { none, aux, lossfree, lossfree_aux };
enum class BiasKind { add, mul };                     // selection key s + b, or s * b
enum class UpdateRule { sign, error };                // b += u*sign(e), or b += u*e/mean(c)
enum class Schedule { cosine, multistep };

struct Config {
  // ---- model shape (symbols as in docs/MODEL.md section 1) ----
  int V = 256;        // vocab
  int C = 64;         // model width
  int H = 4;          // heads (head dim C/H, must be even for RoPE)
  int L = 4;          // layers
  int n_dense = 1;    // first n_dense layers use a dense SwiGLU FFN
  int Fd = 176;       // dense FFN hidden
  int E = 8;          // routed experts
  int K = 2;          // experts per token
  int S = 1;          // shared experts
  int F = 32;         // expert hidden size (shared experts have the same size)
  int T = 64;         // sequence length
  float init_std = 0.006f;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-6f;

  // ---- router and balance ----
  Gate gate = Gate::sigmoid;
  Routing routing = Routing::token_choice;
  Balance balance = Balance::lossfree;
  BiasKind bias_kind = BiasKind::add;
  UpdateRule update_rule = UpdateRule::sign;
  float bias_rate = 1e-3f;          // u
  float aux_alpha = 1e-3f;          // alpha (used when balance is aux or lossfree_aux)
  bool bias_center = false;         // subtract the mean over experts from each step's bias deltas (torchtitan)
  bool aux_per_batch = false;       // aux loss over the whole micro-batch instead of per sequence
  bool norm_topk = false;           // divide selected gates by their sum (DeepSeek-V3 style)
  float route_scale = 1.0f;         // multiplies every gate, with or without norm_topk
  int ec_chunk = 0;                 // expert choice: tokens per chunk (0 = the whole micro-batch)
  bool ec_shuffle = false;          // expert choice: shuffle tokens across the batch before chunking

  // ---- batch and optimizer ----
  int B = 4;                        // micro-batch (sequences)
  int grad_accum = 1;               // micro-batches per optimizer step
  int steps = 100;
  float lr = 1e-3f, lr_min = 1e-4f;
  int warmup = 10;
  Schedule schedule = Schedule::cosine;
  std::vector<int> milestones;      // multistep: steps where lr is multiplied by lr_decay
  float lr_decay = 0.316f;
  float beta1 = 0.9f, beta2 = 0.95f, adam_eps = 1e-8f, weight_decay = 0.1f;
  float grad_clip = 1.0f;
  uint64_t seed = 1234;

  int head_dim() const { return C / H; }
  bool is_moe_layer(int l) const { return l >= n_dense; }
  int n_moe() const { return L > n_dense ? L - n_dense : 0; }
  int tokens_per_step() const { return B * T * grad_accum; }
  // Whether the balance mode routes with (and updates) a loss-free bias / adds the aux loss.
  bool has_bias() const { return balance == Balance::lossfree || balance == Balance::lossfree_aux; }
  bool has_aux() const { return balance == Balance::aux || balance == Balance::lossfree_aux; }
};

// Throws std::runtime_error listing every inconsistency (K > E, C % H, odd head dim, ...) and how to fix it.
void validate(const Config& c);

// The settings the CUDA mirror does not implement yet (each a sentence naming the flag and what to
// use instead); empty when the config runs on --backend cuda. cuda::make_model refuses the others.
std::vector<std::string> cuda_unsupported(const Config& c);

// Named presets: "tiny" (tests), "cpu" (default), "gpu", "paper-1b", "paper-3b".
Config preset(const std::string& name);
std::vector<std::string> preset_names();

// JSON form used in checkpoint/dump metadata. from_json starts from defaults and requires every key it reads to be valid.
std::string to_json(const Config& c);
Config config_from_json(const std::string& text);

// Lists "key: a vs b" for every field that differs in the model shape or routing (used to refuse a checkpoint).
std::vector<std::string> shape_differences(const Config& a, const Config& b);

// enum <-> string, used by flags and JSON
const char* name(Gate g);
const char* name(Routing r);
const char* name(Balance b);
const char* name(BiasKind k);
const char* name(UpdateRule r);
const char* name(Schedule s);
Gate parse_gate(const std::string& s);
Routing parse_routing(const std::string& s);
Balance parse_balance(const std::string& s);
BiasKind parse_bias_kind(const std::string& s);
UpdateRule parse_update_rule(const std::string& s);
Schedule parse_schedule(const std::string& s);

// Learning rate at optimizer step `step` (0-based): linear warm-up to lr, then cosine to lr_min or multistep decay.
float learning_rate(const Config& c, int step);

}  // namespace ref
