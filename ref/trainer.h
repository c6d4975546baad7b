// trainer.h — one optimizer step, evaluation, checkpoints: the pieces train.cpp strings together,
// kept here so tests can drive them without a process.
#pragma once
#include <cstdint>     // int64_t, uint64_t
#include <functional>  // std::function
#include <string>      // std::string
#include <vector>      // std::vector

#include "ref/data.h"   // Loader
#include "ref/model.h"  // Model, MicroBatch

namespace ref {

// Token order for expert choice with shuffle: a permutation drawn from (seed, micro-batch index),
// so it needs no state of its own and resumes exactly. Empty when not shuffling.
std::vector<int> chunk_order(const Config& c, uint64_t micro_index);

struct StepResult {
  double loss = 0, aux = 0;     // means over the step's micro-batches
  double grad_norm = 0;         // before clipping
  float lr = 0;
  std::vector<int64_t> counts;  // (n_moe, E) loads of the step: what the bias update used
};

// Called after each micro-batch's forward+backward (m = index within the step), e.g. to record
// routing for dumps or computation-batch metrics.
using MicroHook = std::function<void(int m, const MicroBatch& mb)>;

// One optimizer step: grad_accum micro-batches, clip, AdamW, then the loss-free bias update.
StepResult train_step(Model& model, Loader& loader, int step, const MicroHook& hook = nullptr);

struct EvalResult {
  double loss = 0, ppl = 0;
  std::vector<int64_t> counts;   // (n_moe, E) loads summed over the evaluated windows
  std::vector<double> maxvio;    // MaxVio_global per MoE layer
  std::vector<int64_t> seq_counts;  // (n_moe, n_seq, E) loads of each evaluated sequence, in order
  int batches = 0;
};
// Mean cross-entropy and summed loads over the validation split: its T-token windows in one fixed
// shuffled order (independent of the run's seed), all of them, or the first max_batches
// micro-batches of that order when max_batches > 0. Never touches the bias or its counts.
EvalResult evaluate(Model& model, const std::vector<uint32_t>& val, int max_batches);

// ---- checkpoints (docs/FORMAT.md) ----
struct TrainState {
  int step = 0;            // optimizer steps done
  uint64_t data_pos = 0;   // loader position
};
// Writes the training state to `path` (atomically, with checksums: docs/FORMAT.md). Refuses, writing
// nothing, when a parameter, moment or bias is NaN or inf (the error names the tensor), so that the
// file at `path` stays the last good checkpoint.
void save_checkpoint(const std::string& path, const Model& model, const TrainState& st);
// Reads and validates the config stored in a checkpoint (to build a model for it), and its step and
// data position into *state when given. The whole file is verified (checksums, layout).
Config checkpoint_config(const std::string& path, TrainState* state = nullptr);
// Loads parameters, AdamW moments and biases into `model`; refuses a checkpoint whose model shape
// or routing differs from the model's, naming every difference, one whose checksums do not match,
// and one holding a NaN or inf. A version-1 checkpoint (no checksums) loads with a warning on stderr.
TrainState load_checkpoint(const std::string& path, Model& model);

}  // namespace ref
