// trainer.cpp — see trainer.h.
#include "ref/trainer.h"

#include <cerrno>     // errno
#include <climits>    // INT_MAX
#include <cmath>      // std::exp, std::isfinite
#include <cstdint>    // UINT64_MAX
#include <cstdio>     // std::fprintf (the version-1 warning)
#include <cstdlib>    // std::strtoull
#include <stdexcept>  // std::runtime_error

#include "ref/metrics.h"      // maxvio_per_layer
#include "ref/profile.h"      // phase scopes (train --profile)
#include "ref/rng.h"          // Rng
#include "ref/io/safetensors.h"  // SafeTensorsWriter, SafeTensorsFile

namespace ref {

std::vector<int> chunk_order(const Config& c, uint64_t micro_index) {
  if (c.routing != Routing::expert_choice || !c.ec_shuffle) return {};
  const int N = c.B * c.T;
  std::vector<int> order(N);
  for (int i = 0; i < N; ++i) order[i] = i;
  Rng rng(c.seed ^ (0xD1B54A32D192ED03ull * (micro_index + 1)));
  for (int i = N - 1; i > 0; --i) std::swap(order[i], order[rng.below((uint64_t)i + 1)]);
  return order;
}

static StepResult train_step_impl(Model& model, Loader& loader, int step, const MicroHook& hook) {
  const Config& c = model.config();
  StepResult r;
  std::vector<int> inputs, targets;
  model.zero_grad();
  for (int m = 0; m < c.grad_accum; ++m) {
    loader.next(inputs, targets);
    const std::vector<int> order = chunk_order(c, (uint64_t)step * c.grad_accum + m);
    MicroBatch mb{inputs.data(), targets.data(), order.empty() ? nullptr : order.data()};
    const ForwardStats st = model.forward_backward(mb, 1.0f / c.grad_accum);
    if (!std::isfinite(st.loss) || !std::isfinite(st.aux))
      throw std::runtime_error("loss is " + std::to_string(st.loss) + " (aux " + std::to_string(st.aux) +
                               "): training diverged (lower --lr or raise --warmup)");
    r.loss += st.loss / c.grad_accum;
    r.aux += st.aux / c.grad_accum;
    if (hook) hook(m, mb);
  }
  prof::StageScope stage(prof::Stage::update);
  {
    prof::Scope p(prof::Phase::optimizer);
    r.grad_norm = model.grad_norm();
    if (!std::isfinite(r.grad_norm))
      throw std::runtime_error("gradient norm is not finite: training diverged (lower --lr or raise --warmup)");
    if (c.grad_clip > 0 && r.grad_norm > c.grad_clip) model.scale_grads((float)(c.grad_clip / r.grad_norm));
    r.lr = learning_rate(c, step);
    model.adamw(r.lr, step + 1);
  }
  r.counts = model.step_counts();
  prof::Scope p(prof::Phase::router);
  model.update_bias();  // after the optimizer step, from the whole step's counts
  return r;
}

// Any failure inside a step (a NaN router score, a diverged loss) names the step, 1-based as in the log.
StepResult train_step(Model& model, Loader& loader, int step, const MicroHook& hook) {
  try {
    return train_step_impl(model, loader, step, hook);
  } catch (const std::runtime_error& e) {  // (std::bad_alloc passes through as it is)
    throw std::runtime_error("step " + std::to_string(step + 1) + ": " + e.what());
  }
}

static constexpr uint64_t kEvalSeed = 0x5EED5EED;

EvalResult evaluate(Model& model, const std::vector<uint32_t>& val, int max_batches) {
  const Config& c = model.config();
  // Windows in a fixed shuffled order (the same for every run and seed), so that a limited
  // evaluation (max_batches) is a sample of the whole split rather than its first documents (the
  // split is stored part by part), and computation batches mix the split like training batches do.
  Loader loader(&val, c.B, c.T, kEvalSeed, /*shuffle=*/true);
  const uint64_t available = loader.windows() / c.B;
  if (available == 0)
    throw std::runtime_error("validation data holds fewer than B*(T+1) tokens; use more data or a smaller --batch");
  EvalResult r;
  r.batches = (int)(max_batches > 0 ? std::min<uint64_t>(available, max_batches) : available);
  r.counts.assign((size_t)c.n_moe() * c.E, 0);
  const size_t n_seq = (size_t)r.batches * c.B;
  r.seq_counts.assign((size_t)c.n_moe() * n_seq * c.E, 0);
  std::vector<int> inputs, targets;
  for (int i = 0; i < r.batches; ++i) {
    loader.next(inputs, targets);
    const std::vector<int> order = chunk_order(c, ~0ull - i);
    MicroBatch mb{inputs.data(), targets.data(), order.empty() ? nullptr : order.data()};
    r.loss += model.forward(mb).loss / r.batches;
    for (int mi = 0; mi < c.n_moe(); ++mi) {
      const RoutingTrace t = model.routing(mi);
      for (int e : t.a_exp) r.counts[(size_t)mi * c.E + e]++;
      const std::vector<int64_t> sc = sequence_counts(t, c.B, c.T, c.E);  // (B, E) of this micro-batch
      std::copy(sc.begin(), sc.end(), r.seq_counts.begin() + ((size_t)mi * n_seq + (size_t)i * c.B) * c.E);
    }
  }
  r.ppl = std::exp(r.loss);
  r.maxvio = maxvio_per_layer(r.counts, c.E);
  return r;
}

// ---------------------------------------------------------------- checkpoints
// Version 2 adds the checksums (docs/FORMAT.md); version 1 files (without) still load, with a warning.
static const char* kCheckpointVersion = "2";

// The first non-finite value of a tensor, as " (nan at index 12)", or "" when all are finite.
static std::string first_non_finite(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return std::string(" (") + (std::isnan(x[i]) ? "nan" : "inf") + " at index " +
                                      std::to_string(i) + " of " + std::to_string(n) + ")";
  return "";
}

void save_checkpoint(const std::string& path, const Model& model, const TrainState& st) {
  const Config& c = model.config();
  const TensorTable& t = model.table();
  const std::vector<float> p = model.get(Arena::params), m = model.get(Arena::adam_m), v = model.get(Arena::adam_v);
  const std::vector<float> b = model.biases();
  // A checkpoint is the state to go back to: one holding NaN or inf could only be refused at load.
  // Nothing is written then, so that the file at `path` stays the last good checkpoint.
  auto refuse_non_finite = [&](const std::string& name, const float* x, size_t n) {
    const std::string where = first_non_finite(x, n);
    if (!where.empty())
      throw std::runtime_error("not saving " + path + ": '" + name + "' holds a non-finite value" + where +
                               ": training diverged (lower --lr or raise --warmup); " + path +
                               " keeps the last checkpoint saved before, if any");
  };
  SafeTensorsWriter w;
  for (const TensorSpec& s : t.params) {
    const std::vector<int64_t> shape(s.shape.begin(), s.shape.end());
    refuse_non_finite(s.name, p.data() + s.offset, s.numel);
    refuse_non_finite("adam.m/" + s.name, m.data() + s.offset, s.numel);
    refuse_non_finite("adam.v/" + s.name, v.data() + s.offset, s.numel);
    w.add_view(s.name, shape, p.data() + s.offset);  // p, m, v outlive w.write
    w.add_view("adam.m/" + s.name, shape, m.data() + s.offset);
    w.add_view("adam.v/" + s.name, shape, v.data() + s.offset);
  }
  for (int mi = 0; mi < c.n_moe(); ++mi) {
    refuse_non_finite(bias_name(c.n_dense + mi), b.data() + (size_t)mi * c.E, c.E);
    w.add(bias_name(c.n_dense + mi), {c.E}, b.data() + (size_t)mi * c.E);
  }
  w.meta("format", "lfmoe-checkpoint");
  w.meta("version", kCheckpointVersion);
  w.meta("config", to_json(c));
  w.meta("step", std::to_string(st.step));
  w.meta("data_pos", std::to_string(st.data_pos));
  w.meta("backend", model.backend());
  w.write(path);  // adds the checksums
}

static SafeTensorsFile read_checkpoint_file(const std::string& path, bool warn) {
  SafeTensorsFile f = SafeTensorsFile::read(path);  // verifies the checksums it finds
  if (f.meta_at("format") != "lfmoe-checkpoint")
    throw std::runtime_error(path + ": format '" + f.meta_at("format") + "' is not an lfmoe checkpoint");
  const std::string& version = f.meta_at("version");
  if (version != "1" && version != kCheckpointVersion)
    throw std::runtime_error(path + ": checkpoint version " + version + " is not supported (expected 1 or 2)");
  if (version != "1" && !f.checksummed)  // stripping the checksums must not pass for an old file
    throw std::runtime_error(path + ": checkpoint version " + version + " without its checksums (" +
                             kCrcHeaderKey + "): the file was altered; it cannot be verified");
  if (version == "1" && warn)
    std::fprintf(stderr, "train: warning: %s is a version-1 checkpoint without checksums: loaded unverified "
                         "(its next save writes version 2 with checksums)\n", path.c_str());
  return f;
}

static Config config_of(const SafeTensorsFile& f) {
  try {
    return config_from_json(f.meta_at("config"));
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).rfind(f.path + ":", 0) == 0) throw;  // already names the file
    throw std::runtime_error(f.path + ": the config in the metadata is corrupt (" + e.what() + ")");
  }
}

// A non-negative integer from the metadata, strictly (the whole text, in range).
static uint64_t meta_count(const SafeTensorsFile& f, const std::string& key, uint64_t max) {
  const std::string& v = f.meta_at(key);
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || errno == ERANGE || x > max)
    throw std::runtime_error(f.path + ": metadata '" + key + "' is '" + v + "', not a count; the file is corrupt");
  return x;
}

Config checkpoint_config(const std::string& path, TrainState* state) {
  const SafeTensorsFile f = read_checkpoint_file(path, /*warn=*/false);
  const Config c = config_of(f);
  if (state) {
    state->step = (int)meta_count(f, "step", INT_MAX);
    state->data_pos = meta_count(f, "data_pos", UINT64_MAX);
  }
  try {
    validate(c);  // before anything is built from it
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": the config in the metadata is not valid (" + e.what() + "); the file is corrupt");
  }
  return c;
}

TrainState load_checkpoint(const std::string& path, Model& model) {
  const SafeTensorsFile f = read_checkpoint_file(path, /*warn=*/true);
  const Config saved = config_of(f);
  const Config& c = model.config();
  const std::vector<std::string> diff = shape_differences(saved, c);
  if (!diff.empty()) {
    std::string msg = path + ": checkpoint was written for a different model; differences (checkpoint vs now):";
    for (auto& d : diff) msg += "\n  - " + d;
    throw std::runtime_error(msg + "\nresume with the checkpoint's settings, or start a new run");
  }
  const TensorTable& t = model.table();
  std::vector<float> p(t.total), m(t.total), v(t.total), b((size_t)c.n_moe() * c.E);
  // Every value must be finite: NaN or inf in a parameter or a moment would only poison training.
  auto finite = [&](const std::string& name, const std::vector<float>& x) {
    const std::string where = first_non_finite(x.data(), x.size());
    if (!where.empty())
      throw std::runtime_error(path + ": tensor '" + name + "' holds a non-finite value" + where +
                               "; the checkpoint is damaged (resume from an earlier one)");
  };
  for (const TensorSpec& s : t.params) {
    const std::vector<int64_t> shape(s.shape.begin(), s.shape.end());
    const auto copy = [&](const std::string& name, std::vector<float>& dst) {
      const std::vector<float> x = f.f32(name, shape);
      finite(name, x);
      std::copy(x.begin(), x.end(), dst.begin() + s.offset);
    };
    copy(s.name, p);
    copy("adam.m/" + s.name, m);
    copy("adam.v/" + s.name, v);
  }
  for (int mi = 0; mi < c.n_moe(); ++mi) {  // a checkpoint without its biases is refused, never zero-filled
    const std::vector<float> x = f.f32(bias_name(c.n_dense + mi), {c.E});
    finite(bias_name(c.n_dense + mi), x);
    std::copy(x.begin(), x.end(), b.begin() + (size_t)mi * c.E);
  }
  TrainState st;  // read before anything is set: a bad count leaves the model as it was
  st.step = (int)meta_count(f, "step", INT_MAX);
  st.data_pos = meta_count(f, "data_pos", UINT64_MAX);
  model.set(Arena::params, p);
  model.set(Arena::adam_m, m);
  model.set(Arena::adam_v, v);
  model.set_biases(b);
  return st;
}

}  // namespace ref
