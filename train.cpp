// train.cpp — the lfmoe trainer: flags, data, model, training loop, evaluation, logging,
// checkpoints, dumps for other implementations, and sampling.
//
//   build/train --preset cpu --data data/shards/tok4k            train the default model
//   build/train --preset tiny --data FILE --dump step.safetensors one step, everything recorded
//   build/train --help                                            every flag
#include <algorithm>  // std::min
#include <cerrno>     // errno
#include <cfloat>     // FLT_MAX
#include <charconv>   // std::to_chars (shortest round-trip numbers in the log)
#include <chrono>     // std::chrono::steady_clock
#include <climits>    // INT_MIN, INT_MAX
#include <cmath>      // std::exp
#include <csignal>    // sigaction (SIGINT, SIGTERM: stop after the step, save)
#include <cstdio>     // std::printf, std::fprintf
#include <cstdlib>    // std::strtoll, std::strtod
#include <cstring>    // std::strncmp
#include <fstream>    // std::ofstream
#include <functional> // std::function
#include <iostream>   // std::cerr
#include <map>        // std::map
#include <memory>     // std::unique_ptr
#include <new>        // std::bad_alloc
#include <set>        // std::set
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <fcntl.h>    // open, O_EXCL
#include <sys/stat.h> // stat
#include <time.h>     // clock_gettime (--profile: CPU time)
#include <unistd.h>   // isatty
#include <vector>     // std::vector

#include "ref/config.h"          // Config, presets, validate
#include "ref/data.h"            // load_tokens, Loader
#include "ref/footprint.h"       // estimate_footprint, mem_available_bytes
#include "ref/io/json.h"         // json::quote
#include "ref/metrics.h"         // maxvio_per_layer, bias_stats
#include "ref/model.h"           // Model
#include "ref/moe.h"             // maxvio
#include "ref/profile.h"         // --profile: phase timer
#include "ref/rng.h"             // Rng (sampling)
#include "ref/io/safetensors.h"  // SafeTensorsWriter (dumps)
#include "ref/text/tokenizer.h"  // Tokenizer (sampling, prompts)
#include "ref/trainer.h"         // train_step, evaluate, checkpoints
#ifdef _OPENMP
#include <omp.h>  // omp_set_num_threads
#endif
#ifdef LFMOE_CUDA
#include "cuda/model.h"  // cuda::make_model, cuda::device_available
#endif

using namespace ref;

// ---------------------------------------------------------------- flags
struct Options {
  std::string preset = "cpu", data, val, backend = "cpu", log, save, resume, dump, tokenizer, sample_prompt;
  int dump_steps = 1, eval_every = 0, eval_batches = 0, save_every = 0, print_every = 10, ep_dp = 0;
  int sample_tokens = 0, threads = 0, stop_after = 0, profile_warmup = 2;
  float temperature = 1.0f;
  bool vocab_set = false, print_config = false, profile = false, ignore_memory_limit = false;
  std::set<std::string> given;  // the flags on the command line (a flag without effect is refused)
};

// Strict number parsing: the whole text must be the number, in range and finite, so that
// "--steps 12abc", "--lr 1e99" or "--lr nan" stop with the flag named instead of training on a
// silently different value. Failures throw std::invalid_argument with the reason.
static int parse_int(const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  // (strtoll alone would also take " 12" and "+12")
  if (v.empty() || v.find_first_not_of("-0123456789") != std::string::npos || *end != '\0')
    throw std::invalid_argument("expected an integer");
  if (errno == ERANGE || x < INT_MIN || x > INT_MAX) throw std::invalid_argument("integer out of range");
  return (int)x;
}
static uint64_t parse_u64(const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || *end != '\0')
    throw std::invalid_argument("expected a non-negative integer");
  if (errno == ERANGE) throw std::invalid_argument("integer out of range (at most 2^64-1)");
  return x;
}
static float parse_float(const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') throw std::invalid_argument("expected a number");
  if (!std::isfinite(x) || std::fabs(x) > FLT_MAX) throw std::invalid_argument("expected a finite number within float range");
  // Decimal only: strtod alone would also take " 1e-3" and hex ("0x10" = 16).
  if (v.find_first_not_of("+-0123456789.eE") != std::string::npos) throw std::invalid_argument("expected a decimal number");
  return (float)x;
}

// Run-control values that have no place in Config, checked once after parsing.
static void check_options(const Options& o) {
  std::vector<std::string> errs;
  auto need = [&](bool ok, const std::string& msg) { if (!ok) errs.push_back(msg); };
  need(o.threads >= 0, "--threads must be >= 0 (0 = all cores)");
  need(o.print_every >= 1, "--print-every must be >= 1");
  need(o.eval_every >= 0 && o.eval_batches >= 0 && o.save_every >= 0 && o.ep_dp >= 0,
       "--eval-every, --eval-batches, --save-every and --ep-dp must be >= 0 (0 = off)");
  need(o.dump_steps >= 1, "--dump-steps must be >= 1");
  need(o.sample_tokens >= 0, "--sample must be >= 0");
  need(o.stop_after >= 0, "--stop-after must be >= 0 (0 = run to --steps)");
  need(o.temperature >= 0, "--temperature must be >= 0 (0 = greedy)");
  need(o.profile_warmup >= 0, "--profile-warmup must be >= 0");
  need(!o.profile || o.dump.empty(), "--profile times the training loop, which --dump does not run: drop one of them");
  need(o.sample_tokens == 0 || !o.resume.empty(),
       "--sample generates from a trained model: give it with --resume CHECKPOINT (without one the model is untrained)");
  need(o.sample_tokens == 0 || o.dump.empty(), "--sample and --dump are separate runs: drop one of them");
  if (errs.empty()) return;
  std::string msg = "bad option value:";
  for (auto& e : errs) msg += "\n  - " + e;
  throw std::runtime_error(msg);
}

struct Flag {
  const char* name;
  const char* arg;  // nullptr for switches
  const char* help;
  std::function<void(const std::string&)> set;
};

static std::vector<Flag> make_flags(Options& o, std::vector<std::function<void(Config&)>>& edits) {
  // Config edits are collected and applied after the preset, whatever the flag order.
  // Each edit also runs once on a scratch Config right away, so a bad value is reported with its flag.
  auto cfg = [&edits](std::function<void(Config&, const std::string&)> f) {
    return [&edits, f](const std::string& v) {
      Config probe;
      f(probe, v);
      edits.push_back([f, v](Config& c) { f(c, v); });
    };
  };
  auto I = [](const std::string& v) { return parse_int(v); };
  auto F = [](const std::string& v) { return parse_float(v); };
  return {
      {"preset", "NAME", "tiny | cpu (default) | gpu | paper-1b | paper-3b", [&o](auto& v) { o.preset = v; }},
      {"data", "PATH", "training tokens: a shard, a directory with train.bin/val.bin, or any file as raw bytes",
       [&o](auto& v) { o.data = v; }},
      {"val", "PATH", "validation tokens (default: DIR/val.bin, else the last 5% of --data)", [&o](auto& v) { o.val = v; }},
      {"backend", "cpu|cuda", "where to train (cuda needs a build with nvcc and a GPU)", [&o](auto& v) { o.backend = v; }},
      {"threads", "N", "OpenMP threads for the CPU backend (default: all cores)", [&o, I](auto& v) { o.threads = I(v); }},
      // model shape
      {"vocab", "V", "vocabulary size", cfg([I, &o](Config& c, auto& v) { c.V = I(v); o.vocab_set = true; })},
      {"width", "C", "model width", cfg([I](Config& c, auto& v) { c.C = I(v); })},
      {"heads", "H", "attention heads", cfg([I](Config& c, auto& v) { c.H = I(v); })},
      {"layers", "L", "layers", cfg([I](Config& c, auto& v) { c.L = I(v); })},
      {"dense-layers", "N", "leading layers with a dense FFN", cfg([I](Config& c, auto& v) { c.n_dense = I(v); })},
      {"dense-hidden", "Fd", "dense FFN hidden size", cfg([I](Config& c, auto& v) { c.Fd = I(v); })},
      {"experts", "E", "routed experts per MoE layer", cfg([I](Config& c, auto& v) { c.E = I(v); })},
      {"topk", "K", "experts per token", cfg([I](Config& c, auto& v) { c.K = I(v); })},
      {"shared", "S", "shared experts per MoE layer", cfg([I](Config& c, auto& v) { c.S = I(v); })},
      {"expert-hidden", "F", "expert hidden size", cfg([I](Config& c, auto& v) { c.F = I(v); })},
      {"seq", "T", "sequence length", cfg([I](Config& c, auto& v) { c.T = I(v); })},
      {"init-std", "X", "init standard deviation (paper: 0.006)", cfg([F](Config& c, auto& v) { c.init_std = F(v); })},
      // routing and balance
      {"gate", "sigmoid|softmax", "router gate function G", cfg([](Config& c, auto& v) { c.gate = parse_gate(v); })},
      {"routing", "token|expert", "token choice (top-K) or expert choice",
       cfg([](Config& c, auto& v) { c.routing = parse_routing(v); })},
      {"balance", "none|aux|lossfree|lossfree_aux", "load balancing (lossfree_aux: the bias plus the sequence-wise aux loss, DeepSeek-V3)",
       cfg([](Config& c, auto& v) { c.balance = parse_balance(v); })},
      {"bias-kind", "add|mul", "loss-free key s+b or s*b", cfg([](Config& c, auto& v) { c.bias_kind = parse_bias_kind(v); })},
      {"update-rule", "sign|error", "loss-free update b += u*sign(e) or u*e/mean(c)",
       cfg([](Config& c, auto& v) { c.update_rule = parse_update_rule(v); })},
      {"bias-rate", "U", "loss-free update rate u (paper: 1e-3)", cfg([F](Config& c, auto& v) { c.bias_rate = F(v); })},
      {"bias-center", nullptr, "subtract the mean over experts from each bias update (torchtitan)",
       cfg([](Config& c, auto&) { c.bias_center = true; })},
      {"aux-alpha", "A", "aux loss weight alpha (paper baseline: 1e-3; DeepSeek-V3 with lossfree_aux: 1e-4)",
       cfg([F](Config& c, auto& v) { c.aux_alpha = F(v); })},
      {"aux-per-batch", nullptr, "aux loss over the micro-batch instead of per sequence",
       cfg([](Config& c, auto&) { c.aux_per_batch = true; })},
      {"norm-topk", nullptr, "renormalise a token's selected gates to sum 1 (then * route-scale; K=1: gate 1)",
       cfg([](Config& c, auto&) { c.norm_topk = true; })},
      {"route-scale", "X", "multiply every gate by X (after --norm-topk's renormalisation, or the plain scores)",
       cfg([F](Config& c, auto& v) { c.route_scale = F(v); })},
      {"ec-chunk", "N", "expert choice: tokens per chunk (default: the micro-batch)",
       cfg([I](Config& c, auto& v) { c.ec_chunk = I(v); })},
      {"ec-shuffle", nullptr, "expert choice: shuffle tokens across the batch before chunking",
       cfg([](Config& c, auto&) { c.ec_shuffle = true; })},
      // optimisation
      {"batch", "B", "micro-batch size in sequences", cfg([I](Config& c, auto& v) { c.B = I(v); })},
      {"grad-accum", "N", "micro-batches per optimizer step", cfg([I](Config& c, auto& v) { c.grad_accum = I(v); })},
      {"steps", "N", "optimizer steps", cfg([I](Config& c, auto& v) { c.steps = I(v); })},
      {"lr", "X", "peak learning rate", cfg([F](Config& c, auto& v) { c.lr = F(v); })},
      {"lr-min", "X", "cosine floor", cfg([F](Config& c, auto& v) { c.lr_min = F(v); })},
      {"warmup", "N", "linear warm-up steps", cfg([I](Config& c, auto& v) { c.warmup = I(v); })},
      {"schedule", "cosine|multistep", "learning-rate schedule", cfg([](Config& c, auto& v) { c.schedule = parse_schedule(v); })},
      {"milestones", "A,B", "multistep: steps where lr *= lr-decay", cfg([](Config& c, auto& v) {
         c.milestones.clear();
         std::stringstream ss(v);
         for (std::string x; std::getline(ss, x, ',');) c.milestones.push_back(parse_int(x));
       })},
      {"lr-decay", "X", "multistep factor", cfg([F](Config& c, auto& v) { c.lr_decay = F(v); })},
      {"wd", "X", "AdamW weight decay on matrices", cfg([F](Config& c, auto& v) { c.weight_decay = F(v); })},
      {"clip", "X", "global gradient-norm clip (0 = off)", cfg([F](Config& c, auto& v) { c.grad_clip = F(v); })},
      {"seed", "N", "seed for init, data order and shuffles", cfg([](Config& c, auto& v) { c.seed = parse_u64(v); })},
      // run control
      {"eval-every", "N", "evaluate on the validation split every N steps (and at the end)",
       [&o, I](auto& v) { o.eval_every = I(v); }},
      {"eval-batches", "N", "evaluate on N micro-batches of windows drawn across the split (fixed order; default: all)",
       [&o, I](auto& v) { o.eval_batches = I(v); }},
      {"ep-dp", "N", "also log MaxVio_computation-batch for groups of batch*N sequences (steps: the micro-batches of a step; eval: the validation sequences)", [&o, I](auto& v) { o.ep_dp = I(v); }},
      {"print-every", "N", "print a line every N steps when not on a terminal", [&o, I](auto& v) { o.print_every = I(v); }},
      {"log", "FILE", "append JSONL records of every step and eval", [&o](auto& v) { o.log = v; }},
      {"save", "FILE", "write a checkpoint here (atomically) at the end and every --save-every steps",
       [&o](auto& v) { o.save = v; }},
      {"save-every", "N", "checkpoint interval in steps", [&o, I](auto& v) { o.save_every = I(v); }},
      {"resume", "FILE", "continue from a checkpoint (bitwise identical to an uninterrupted run)",
       [&o](auto& v) { o.resume = v; }},
      {"stop-after", "N", "stop (and save) after step N, as if interrupted; the schedule still ends at --steps",
       [&o, I](auto& v) { o.stop_after = I(v); }},
      {"dump", "FILE", "run --dump-steps optimizer steps and write everything to FILE (docs/FORMAT.md; with --resume: "
                       "the checkpoint's next steps, its schedule, AdamW state and bias continued)",
       [&o](auto& v) { o.dump = v; }},
      {"dump-steps", "N", "steps recorded by --dump (default 1)", [&o, I](auto& v) { o.dump_steps = I(v); }},
      {"tokenizer", "FILE", "tokenizer.json for --sample (default: raw bytes)", [&o](auto& v) { o.tokenizer = v; }},
      {"sample", "N", "generate N tokens from the model (after --resume) and exit", [&o, I](auto& v) { o.sample_tokens = I(v); }},
      {"prompt", "TEXT", "prompt for --sample", [&o](auto& v) { o.sample_prompt = v; }},
      {"print-config", nullptr, "print the resolved config as JSON and exit", [&o](auto&) { o.print_config = true; }},
      {"profile", nullptr,
       "time the phases of each step; at the end print one line 'profile: steps N warmup W ... peak_rss_mb R' "
       "of per-step medians after the warm-up steps (docs/SPEED.md has every field)",
       [&o](auto&) { o.profile = true; }},
      {"profile-warmup", "N", "--profile: leading steps left out of the medians (default 2)",
       [&o, I](auto& v) { o.profile_warmup = I(v); }},
      {"temperature", "X", "sampling temperature (0 = greedy)", [&o, F](auto& v) { o.temperature = F(v); }},
      {"ignore-memory-limit", nullptr,
       "start even when the memory estimate (printed in the banner) exceeds MemAvailable of /proc/meminfo",
       [&o](auto&) { o.ignore_memory_limit = true; }},
  };
}

static void print_help(const std::vector<Flag>& flags) {
  std::printf("usage: train [--flag value ...]\n\nTrains a DeepSeekMoE language model with auxiliary-loss-free load "
              "balancing.\nFlags (GNU long options; --flag=value also works):\n");
  for (const Flag& f : flags) {
    std::string lhs = std::string("--") + f.name + (f.arg ? std::string(" ") + f.arg : "");
    std::printf("  %-28s %s\n", lhs.c_str(), f.help);
  }
  std::printf("  %-28s %s\n", "--help", "this text");
}

// Returns the preset with the flags applied; `edits` keeps the flags' config edits, so that --resume
// can apply them to the checkpoint's config instead.
static Config parse_args(int argc, char** argv, Options& o, std::vector<std::function<void(Config&)>>& edits) {
  std::vector<Flag> flags = make_flags(o, edits);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], value;
    if (a == "--help" || a == "-h") {
      print_help(flags);
      std::exit(0);
    }
    if (a.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument '" + a + "' (flags start with --; see --help)");
    a = a.substr(2);
    const size_t eq = a.find('=');
    bool inline_value = eq != std::string::npos;
    if (inline_value) value = a.substr(eq + 1), a = a.substr(0, eq);
    const Flag* flag = nullptr;
    for (const Flag& f : flags)
      if (a == f.name) flag = &f;
    if (!flag) throw std::runtime_error("unknown flag --" + a + " (see --help)");
    if (flag->arg && !inline_value) {  // a value never starts with "--": that is the next flag
      if (i + 1 >= argc || std::strncmp(argv[i + 1], "--", 2) == 0)
        throw std::runtime_error("--" + a + " needs a value (" + flag->arg + ")");
      value = argv[++i];
    }
    if (!flag->arg && inline_value) throw std::runtime_error("--" + a + " takes no value");
    o.given.insert(flag->name);
    try {
      flag->set(value);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("--" + a + ": '" + value + "' is not valid (" + e.what() + ")");
    } catch (const std::exception& e) {
      throw std::runtime_error("--" + a + ": " + e.what());
    }
  }
  check_options(o);
  Config c = preset(o.preset);
  for (auto& e : edits) e(c);
  return c;
}

// A flag must act or be refused: the router and balance flags that mean nothing with the resolved
// config (preset, checkpoint and flags together), each named with the flag that makes it moot and
// what to use instead.
static void check_flag_effects(const Options& o, const Config& c) {
  std::vector<std::string> errs;
  auto given = [&](const char* f) { return o.given.count(f) > 0; };
  const std::string bal = std::string("--balance ") + name(c.balance);
  for (const char* f : {"aux-alpha", "aux-per-batch"})
    if (given(f) && !c.has_aux())
      errs.push_back(std::string("--") + f + " has no effect with " + bal +
                     ": the aux loss is on only with --balance aux or lossfree_aux; drop --" + f + " or choose one of those");
  for (const char* f : {"bias-rate", "update-rule", "bias-kind", "bias-center"})
    if (given(f) && !(c.has_bias() && c.routing == Routing::token_choice))
      errs.push_back(std::string("--") + f + " has no effect with " +
                     (c.routing == Routing::expert_choice ? std::string("--routing expert") : bal) +
                     ": only token choice with --balance lossfree or lossfree_aux has a loss-free bias; drop --" + f +
                     " or use those");
  for (const char* f : {"ec-chunk", "ec-shuffle"})
    if (given(f) && c.routing != Routing::expert_choice)
      errs.push_back(std::string("--") + f + " has no effect with --routing token: it sets how expert choice chunks the "
                     "batch; drop --" + f + " or add --routing expert");
  if (errs.empty()) return;
  std::string msg = "flags without effect:";
  for (auto& e : errs) msg += "\n  - " + e;
  throw std::runtime_error(msg);
}

// ---------------------------------------------------------------- data
static bool is_dir(const std::string& p) {
  struct stat s;
  return stat(p.c_str(), &s) == 0 && S_ISDIR(s.st_mode);
}

static void load_data(const Options& o, Config& c, TokenData& train, TokenData& val) {
  if (o.data.empty()) throw std::runtime_error("no --data given (a shard, a directory of shards, or a text file)");
  const bool dir = is_dir(o.data);
  train = load_tokens(dir ? o.data + "/train.bin" : o.data);
  if (!o.val.empty() && is_dir(o.val))
    throw std::runtime_error("--val " + o.val + ": is a directory; give a shard file (e.g. " + o.val +
                             "/val.bin), or drop --val to use --data's val.bin");
  if (!o.val.empty()) val = load_tokens(o.val);
  else if (dir) val = load_tokens(o.data + "/val.bin");
  else split_tail(train, val, 0.05);
  if (train.raw_bytes && !o.vocab_set) c.V = 256;  // plain text: one token per byte
  const uint32_t max_tok = std::max(train.max_token(), val.max_token());
  if (max_tok >= (uint32_t)c.V)
    throw std::runtime_error("data holds token id " + std::to_string(max_tok) + " but the vocabulary has " +
                             std::to_string(c.V) + " entries; set --vocab to the tokenizer's size");
}

// An evaluation needs one micro-batch of B windows of T+1 tokens. When it was asked for (--eval-every)
// too little validation data is an error; when only implied by --log, the run goes on without it.
static bool check_val_size(const Options& o, const Config& c, const TokenData& val) {
  const uint64_t n = val.tokens.size(), windows = n > 1 ? (n - 1) / c.T : 0;
  if (windows >= (uint64_t)c.B) {
    const uint64_t batches = windows / c.B;
    if ((uint64_t)o.eval_batches > batches)
      std::fprintf(stderr, "train: warning: --eval-batches %d: the validation data holds only %llu micro-batches of "
                           "batch %d windows of seq %d tokens; every evaluation uses those %llu\n", o.eval_batches,
                   (unsigned long long)batches, c.B, c.T, (unsigned long long)batches);
    return true;
  }
  const std::string why = "the validation data holds " + std::to_string(n) + " tokens, fewer than batch*(seq+1) = " +
                          std::to_string((uint64_t)c.B * (c.T + 1)) + " for one evaluation batch";
  if (o.eval_every > 0) throw std::runtime_error(why + "; pass a larger --val file, a smaller --batch, or drop --eval-every");
  std::fprintf(stderr, "train: warning: %s: the log gets no eval records (pass a larger --val file or a smaller --batch)\n",
               why.c_str());
  return false;
}

// An output path (--save, --dump) that cannot be written should stop the run now, not after hours of
// training: it must be a regular file or not exist yet, in a directory where this process can create
// its temp file (the name SafeTensorsWriter uses, PATH.tmp.<pid>).
static void check_writable(const std::string& flag, const std::string& path) {
  if (is_dir(path)) throw std::runtime_error(flag + " " + path + ": is a directory; give a file name");
  check_regular_target(path, flag);
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    throw std::runtime_error(flag + " " + path + ": cannot create " + tmp + ": " + std::strerror(errno) +
                             " (create the directory first, or check its permissions)");
  close(fd);
  std::remove(tmp.c_str());
}

static std::unique_ptr<Model> make_backend_model(const std::string& backend, const Config& c) {
  if (backend == "cpu") return make_model(c);
  if (backend == "cuda") {
    const std::vector<std::string> missing = cuda_unsupported(c);  // whatever this build or machine has
    if (!missing.empty()) {
      std::string msg = "--backend cuda:";
      for (const std::string& m : missing) msg += "\n  - " + m;
      throw std::runtime_error(msg);
    }
#ifdef LFMOE_CUDA
    std::string why;
    if (!cuda::device_available(&why)) throw std::runtime_error("--backend cuda: no usable GPU (" + why + ")");
    return cuda::make_model(c);
#else
    throw std::runtime_error("--backend cuda: this build has no CUDA (rebuild where nvcc is found: make CUDA=1)");
#endif
  }
  throw std::runtime_error("unknown --backend '" + backend + "' (cpu or cuda)");
}

// ---------------------------------------------------------------- logging
// Numbers are written in the shortest form that reads back to the same bits, so that logs of two
// runs can be compared exactly (resume tests) and nothing is lost to rounding. JSON has no NaN or
// Inf: they are written as null.
template <typename X>  // float or double: the shortest text of that type's value
static std::string num(X x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, x).ptr);
}
static std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + num(v[i]);
  return s + "]";
}
static std::string json_list(const std::vector<int64_t>& v, size_t from, size_t n) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < n; ++i) o << (i ? "," : "") << v[from + i];
  return o.str() + "]";
}

// ---------------------------------------------------------------- dump
static std::vector<int64_t> shape64(const std::vector<int>& s) { return std::vector<int64_t>(s.begin(), s.end()); }

static void add_params(SafeTensorsWriter& w, const std::string& prefix, const Model& m, Arena a) {
  const std::vector<float> p = m.get(a);
  for (const TensorSpec& s : m.table().params) w.add(prefix + s.name, shape64(s.shape), p.data() + s.offset);
}
static void add_biases(SafeTensorsWriter& w, const std::string& prefix, const Model& m, const std::string& suffix) {
  const Config& c = m.config();
  const std::vector<float> b = m.biases();
  for (int mi = 0; mi < c.n_moe(); ++mi) {
    const std::string name = suffix.empty() ? bias_name(c.n_dense + mi)
                                            : "layers." + std::to_string(c.n_dense + mi) + "." + suffix;
    w.add(prefix + name, {c.E}, b.data() + (size_t)mi * c.E);
  }
}

// Runs dump_steps optimizer steps from the model's current state (the initial model, or a checkpoint
// with --resume: its schedule, AdamW moments and bias continue) and records them: dump version 2,
// docs/FORMAT.md.
static void run_dump(Model& model, Loader& loader, const Options& o, const TrainState& state) {
  const Config& c = model.config();
  const int N = c.B * c.T, A = N * c.K;
  SafeTensorsWriter w;
  add_params(w, "init/", model, Arena::params);
  add_biases(w, "init/", model, "");
  add_params(w, "init/adam.m/", model, Arena::adam_m);
  add_params(w, "init/adam.v/", model, Arena::adam_v);
  const uint64_t data_pos = loader.position();
  for (int s = 0; s < o.dump_steps; ++s) {
    const std::string p = "step" + std::to_string(s) + "/";
    {  // what every forward of the step routes with: the router weights and the bias before its update
      const std::vector<float> params = model.get(Arena::params);
      for (int mi = 0; mi < c.n_moe(); ++mi) {
        const TensorSpec& r = model.table().get("layers." + std::to_string(c.n_dense + mi) + ".moe.router");
        w.add(p + "layers." + std::to_string(c.n_dense + mi) + ".router", shape64(r.shape), params.data() + r.offset);
      }
      add_biases(w, p, model, "bias");
    }
    std::vector<int> tokens, targets;
    const MicroHook hook = [&](int m, const MicroBatch& mb) {
      tokens.insert(tokens.end(), mb.tokens, mb.tokens + N);
      targets.insert(targets.end(), mb.targets, mb.targets + N);
      const std::string pm = p + "mb" + std::to_string(m) + "/";
      if (mb.order) w.add(pm + "order", {N}, mb.order);
      for (int mi = 0; mi < c.n_moe(); ++mi) {
        const RoutingTrace r = model.routing(mi);
        const RouterTrace io = model.router_trace(mi);
        const std::string l = pm + "layers." + std::to_string(c.n_dense + mi) + ".";
        const float aux = (float)io.aux;
        w.add(l + "router_in", {N, c.C}, io.router_in.data());
        w.add(l + "router_logits", {N, c.E}, io.logits.data());
        w.add(l + "scores", {N, c.E}, r.scores.data());
        w.add(l + "tok_off", {N + 1}, r.tok_off.data());
        w.add(l + "a_exp", {A}, r.a_exp.data());
        w.add(l + "a_gate", {A}, r.a_gate.data());
        w.add(l + "aux_loss", {1}, &aux);
      }
      if (s == 0 && m == 0) w.add(p + "logits", {c.B, c.T, c.V}, model.logits().data());
    };
    const StepResult r = train_step(model, loader, state.step + s, hook);
    // Gradients are read after the step: AdamW does not modify them, and clipping's scale is undone
    // so the dump holds the raw gradient (grad_norm tells the checker what clipping did).
    if (s == 0) {
      std::vector<float> g = model.get(Arena::grads);
      if (c.grad_clip > 0 && r.grad_norm > c.grad_clip)
        for (float& x : g) x = (float)(x * (r.grad_norm / c.grad_clip));
      for (const TensorSpec& t : model.table().params) w.add(p + "grad/" + t.name, shape64(t.shape), g.data() + t.offset);
    }
    w.add(p + "tokens", {c.grad_accum, c.B, c.T}, tokens.data());
    w.add(p + "targets", {c.grad_accum, c.B, c.T}, targets.data());
    const float lr = r.lr, loss = (float)r.loss, aux = (float)r.aux, gn = (float)r.grad_norm;
    w.add(p + "lr", {1}, &lr);
    w.add(p + "loss", {1}, &loss);
    w.add(p + "aux_loss", {1}, &aux);
    w.add(p + "grad_norm", {1}, &gn);
    for (int mi = 0; mi < c.n_moe(); ++mi)
      w.add(p + "layers." + std::to_string(c.n_dense + mi) + ".counts", {c.E}, r.counts.data() + (size_t)mi * c.E);
    add_biases(w, p, model, "bias_after");
    std::printf("dump step %d (optimizer step %d): loss %.6f aux %.6f grad_norm %.4f\n", s, state.step + s + 1, r.loss,
                r.aux, r.grad_norm);
  }
  add_params(w, "final/", model, Arena::params);
  add_biases(w, "final/", model, "");
  w.meta("format", "lfmoe-dump");
  w.meta("version", "2");
  w.meta("config", to_json(c));
  w.meta("steps", std::to_string(o.dump_steps));
  w.meta("start_step", std::to_string(state.step));
  w.meta("data_pos", std::to_string(data_pos));
  w.meta("backend", model.backend());
  w.write(o.dump);
  std::printf("wrote %s\n", o.dump.c_str());
}

// ---------------------------------------------------------------- sampling
// Generates from a B=1 copy of the model: the context is the last T tokens, left-aligned.
static void run_sample(const Model& trained, const Options& o) {
  Config c = trained.config();
  c.B = 1;
  c.routing = Routing::token_choice;  // expert choice needs whole chunks; sample with the top-K router
  std::unique_ptr<Model> m = make_backend_model(o.backend, c);
  m->set(Arena::params, trained.get(Arena::params));
  m->set_biases(trained.biases());
  std::unique_ptr<Tokenizer> tok;
  if (!o.tokenizer.empty()) tok = std::make_unique<Tokenizer>(Tokenizer::load(o.tokenizer));
  if (tok && tok->vocab_size() > (uint32_t)c.V)
    throw std::runtime_error("--tokenizer " + o.tokenizer + " has " + std::to_string(tok->vocab_size()) +
                             " ids but the model's vocabulary has " + std::to_string(c.V) +
                             ": it is not the tokenizer the model was trained with (give that one)");
  std::vector<int> ids;
  if (tok)
    for (uint32_t id : tok->encode(o.sample_prompt)) ids.push_back((int)id);
  else
    for (unsigned char ch : o.sample_prompt) ids.push_back(ch);
  for (size_t i = 0; i < ids.size(); ++i)  // every id indexes the embedding table
    if (ids[i] < 0 || ids[i] >= c.V)
      throw std::runtime_error("--prompt: token " + std::to_string(i) + " has id " + std::to_string(ids[i]) +
                               ", outside the model's vocabulary of " + std::to_string(c.V) +
                               (tok ? "" : " (the prompt is read as raw bytes: give --tokenizer)"));
  if (ids.empty()) ids.push_back(0);
  Rng rng(c.seed + 7);
  std::vector<int> window(c.T), targets(c.T, 0);
  const size_t prompt_len = ids.size();
  for (int n = 0; n < o.sample_tokens; ++n) {
    const size_t start = ids.size() > (size_t)c.T ? ids.size() - c.T : 0, len = ids.size() - start;
    for (int t = 0; t < c.T; ++t) window[t] = t < (int)len ? ids[start + t] : 0;
    m->forward(MicroBatch{window.data(), targets.data(), nullptr});
    const std::vector<float> logits = m->logits();
    const float* row = logits.data() + (len - 1) * c.V;
    int next = 0;
    if (o.temperature <= 0) {
      for (int v = 1; v < c.V; ++v)
        if (row[v] > row[next]) next = v;
    } else {  // sample from softmax(row / temperature)
      double mx = row[0], z = 0;
      for (int v = 1; v < c.V; ++v) mx = std::max(mx, (double)row[v]);
      std::vector<double> p(c.V);
      for (int v = 0; v < c.V; ++v) z += p[v] = std::exp((row[v] - mx) / o.temperature);
      double u = rng.uniform() * z;
      for (next = 0; next < c.V - 1 && (u -= p[next]) > 0; ++next) {}
    }
    ids.push_back(next);
  }
  std::vector<uint32_t> out(ids.begin(), ids.end());
  std::string text;
  if (tok) text = tok->decode(out);
  else for (uint32_t b : out) text.push_back((char)b);
  std::printf("%s\n", text.c_str());
  (void)prompt_len;
}

// ---------------------------------------------------------------- --profile
// One optimizer step as the profiler saw it: wall time of train_step and the phase totals.
struct StepProfile {
  double step_ns = 0, cpu_ns = 0;  // wall time, and CPU time of the process (all threads)
  prof::Totals t;
};

static double process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The --profile line (docs/SPEED.md): per-step medians over the steps after the warm-up, each field
// its own median (so the phase medians need not add up to step_ms_median exactly). other_ms is the
// step's wall time minus gemm, attention, router and optimizer.
static void print_profile(const std::vector<StepProfile>& all, int warmup, const Config& c) {
  if (all.empty()) return;
  warmup = std::min<int>(warmup, (int)all.size() - 1);  // at least one step is measured
  const std::vector<StepProfile> s(all.begin() + warmup, all.end());
  auto med = [&](const std::function<double(const StepProfile&)>& f) {
    std::vector<double> v;
    for (const StepProfile& p : s) v.push_back(f(p));
    return median(v);
  };
  auto ms = [](double ns) { return ns * 1e-6; };
  auto phase = [](const StepProfile& p, prof::Phase ph) { return (double)p.t.ns[(int)ph]; };
  using P = prof::Phase;
  const double tok = c.tokens_per_step();
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf(
      "profile: steps %zu warmup %d threads %d tokens_per_step %d tok_s_median %.1f step_ms_median %.3f cpu_ms_median %.3f "
      "fwd_ms %.3f bwd_ms %.3f update_ms %.3f gemm_ms %.3f gemm_gflop %.4f gemm_gflops %.3f attention_ms %.3f router_ms %.3f "
      "optimizer_ms %.3f other_ms %.3f scopes %.0f peak_rss_mb %.1f\n",
      s.size(), warmup, threads, c.tokens_per_step(), med([&](auto& p) { return tok / (p.step_ns * 1e-9); }),
      ms(med([](auto& p) { return p.step_ns; })), ms(med([](auto& p) { return p.cpu_ns; })),
      ms(med([](auto& p) { return (double)p.t.stage_ns[(int)prof::Stage::fwd]; })),
      ms(med([](auto& p) { return (double)p.t.stage_ns[(int)prof::Stage::bwd]; })),
      ms(med([](auto& p) { return (double)p.t.stage_ns[(int)prof::Stage::update]; })),
      ms(med([&](auto& p) { return phase(p, P::gemm); })), med([](auto& p) { return p.t.flops[(int)P::gemm] * 1e-9; }),
      med([&](auto& p) { return p.t.flops[(int)P::gemm] / std::max(1.0, phase(p, P::gemm)); }),
      ms(med([&](auto& p) { return phase(p, P::attention); })), ms(med([&](auto& p) { return phase(p, P::router); })),
      ms(med([&](auto& p) { return phase(p, P::optimizer); })),
      ms(med([&](auto& p) {
        return p.step_ns - phase(p, P::gemm) - phase(p, P::attention) - phase(p, P::router) - phase(p, P::optimizer);
      })),
      med([](auto& p) { return (double)p.t.scopes; }), prof::peak_rss_mb());
}

// The memory estimate of this run (ref/footprint.h), for the banner and an out-of-memory message.
static std::string g_footprint;

// ---------------------------------------------------------------- signals
// SIGINT (Ctrl-C) and SIGTERM stop the run between steps: the handler only records the signal (and
// says so on stderr, with write(), which is safe in a handler); the loop checks it before each step,
// then the checkpoint is written (--save), and the process exits with 128 + the signal (130, 143).
// SA_RESETHAND: a second signal finds the default action again and ends the process at once.
static volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  static const char msg_int[] = "\ntrain: SIGINT: stopping after the current step (Ctrl-C again to stop at once)\n";
  static const char msg_term[] = "\ntrain: SIGTERM: stopping after the current step\n";
  const ssize_t r = sig == SIGINT ? write(2, msg_int, sizeof msg_int - 1) : write(2, msg_term, sizeof msg_term - 1);
  (void)r;
}

static void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_RESETHAND;  // I/O in progress (a save) goes on; a second signal is fatal
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The command that continues this run from `checkpoint`: the same arguments, any --resume replaced.
static std::string resume_command(int argc, char** argv, const std::string& checkpoint) {
  auto quote = [](const std::string& a) {
    if (!a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                          std::string::npos)
      return a;
    std::string q = "'";
    for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
  };
  std::string cmd = quote(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--resume" && i + 1 < argc) { ++i; continue; }
    if (a.rfind("--resume=", 0) == 0) continue;
    cmd += " " + quote(a);
  }
  return cmd + " --resume " + quote(checkpoint);
}

// ---------------------------------------------------------------- main loop
int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear at once in a pipe or a file
  try {
    Options o;
    std::vector<std::function<void(Config&)>> edits;
    Config c = parse_args(argc, argv, o, edits);
#ifdef _OPENMP
    if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
    TokenData train, val;
    TrainState state, saved_state;
    if (!o.resume.empty()) {  // the checkpoint's config with this command's flags on top (--steps, --lr, ...)
      if (is_dir(o.resume))
        throw std::runtime_error("--resume " + o.resume + ": is a directory; give the checkpoint file (--save's FILE)");
      const Config saved = checkpoint_config(o.resume, &saved_state);
      Config wanted = saved;
      for (auto& e : edits) e(wanted);
      const std::vector<std::string> diff = shape_differences(saved, wanted);
      if (!diff.empty()) {
        std::string msg = o.resume + ": checkpoint was written for a different model; differences (checkpoint vs flags):";
        for (auto& d : diff) msg += "\n  - " + d;
        throw std::runtime_error(msg + "\ndrop these flags to resume, or start a new run without --resume");
      }
      c = wanted;
      o.vocab_set = true;
    }
    if (o.print_config) {
      std::printf("%s\n", to_json(c).c_str());
      return 0;
    }
    if (o.sample_tokens == 0 || o.resume.empty()) load_data(o, c, train, val);  // (plain text sets V = 256)
    validate(c);  // before anything divides, allocates or indexes by the config
    check_flag_effects(o, c);
    const bool training = o.sample_tokens == 0;
    bool eval_at_end = training && o.dump.empty() && (o.eval_every > 0 || !o.log.empty());
    std::unique_ptr<Loader> loader;
    if (training) {  // checks of the data and the output paths, before anything slow or big
      if (!o.resume.empty() && o.dump.empty() && saved_state.step > c.steps)
        throw std::runtime_error("--resume " + o.resume + " is at step " + std::to_string(saved_state.step) +
                                 ", beyond --steps " + std::to_string(c.steps) + ": nothing to train; give --steps above " +
                                 std::to_string(saved_state.step) + " (the schedule runs over --steps)");
      if (!o.resume.empty() && o.dump.empty() && o.stop_after > 0 && o.stop_after <= saved_state.step)
        throw std::runtime_error("--resume " + o.resume + " is at step " + std::to_string(saved_state.step) +
                                 ": --stop-after " + std::to_string(o.stop_after) + " would train nothing; give "
                                 "--stop-after above " + std::to_string(saved_state.step) + " or drop it");
      loader = std::make_unique<Loader>(&train.tokens, c.B, c.T, c.seed, /*shuffle=*/true);
      if (eval_at_end) eval_at_end = check_val_size(o, c, val);
      if (!o.resume.empty() && o.dump.empty() && saved_state.step == c.steps && !eval_at_end)
        throw std::runtime_error("--resume " + o.resume + " is at step " + std::to_string(saved_state.step) +
                                 ", already --steps " + std::to_string(c.steps) + ": nothing to do; give --steps above " +
                                 std::to_string(saved_state.step) + " to train on, or --eval-every to evaluate it");
      if (!o.save.empty()) check_writable("--save", o.save);
      if (!o.dump.empty()) check_writable("--dump", o.dump);
    }
    // Memory, from the config alone, before the first allocation (calloc is lazy: without this a run
    // too big would start and grow until the kernel kills it).
    const Footprint fp = estimate_footprint(c, training && (!o.save.empty() || !o.dump.empty()), !o.resume.empty(),
                                            resident_bytes());
    const uint64_t available = mem_available_bytes();
    g_footprint = describe(fp);
    // On the CPU everything is host memory; on CUDA the arenas and activations are device memory
    // (the device allocator reports what does not fit) and the host holds the copies.
    const uint64_t host = o.backend == "cpu" ? fp.total() : fp.transient + fp.resident + fp.runtime;
    if (available > 0 && host > available && !o.ignore_memory_limit)
      throw std::runtime_error("this run needs " + describe(fp) + (o.backend == "cpu" ? "" : ", of it on the host " +
                               human_bytes(host)) + ", but only " + human_bytes(available) +
                               " are available (MemAvailable in /proc/meminfo); lower --batch, --seq, --experts, "
                               "--expert-hidden, --width or --layers, or pass --ignore-memory-limit to try anyway");
    std::unique_ptr<Model> model = make_backend_model(o.backend, c);
    if (!o.resume.empty()) state = load_checkpoint(o.resume, *model);
    if (!training) {
      run_sample(*model, o);
      return 0;
    }
    loader->seek(state.data_pos);
    std::printf("lfmoe: preset %s, backend %s, %zu parameters, V %d C %d L %d (dense %d) E %d K %d S %d F %d T %d\n"
                "       gate %s, routing %s, balance %s%s, %d x %d x %d tokens per step, %zu train / %zu val tokens\n",
                (o.resume.empty() ? o.preset : "of " + o.resume + " (step " + std::to_string(state.step) + ")").c_str(),
                model->backend(), model->table().total, c.V, c.C, c.L, c.n_dense, c.E, c.K, c.S,
                c.F, c.T, name(c.gate), name(c.routing), name(c.balance),
                c.has_bias() ? (std::string(" (") + name(c.bias_kind) + ", " + name(c.update_rule) +
                                (c.bias_center ? ", centred" : "") + ", u " + num(c.bias_rate) +
                                (c.has_aux() ? ", alpha " + num(c.aux_alpha) : "") + ")").c_str()
                : c.has_aux() ? (" (alpha " + num(c.aux_alpha) + ")").c_str() : "",
                c.grad_accum, c.B, c.T, train.tokens.size(), val.tokens.size());
    std::printf("       memory %s%s; MemAvailable %s\n", o.backend == "cpu" ? "" : "(device arenas and host copies) ",
                g_footprint.c_str(), available ? human_bytes(available).c_str() : "unknown");
    const int last = o.stop_after > 0 ? std::min(c.steps, o.stop_after) : c.steps;  // --stop-after: an interruption
    if (o.ep_dp > c.grad_accum && state.step < last)  // (an evaluation-only call groups validation sequences)
      std::fprintf(stderr, "train: warning: --ep-dp %d groups %d micro-batches into a computation batch, but a step has "
                           "only %d (--grad-accum): step records get maxvio_cb null; evaluations group the validation "
                           "sequences instead\n", o.ep_dp, o.ep_dp, c.grad_accum);
    if (c.routing == Routing::expert_choice) {  // paper section 5.2: what expert choice can leak
      const double R = double(c.K) / c.E;
      std::printf("       expert choice leaks more than K*log2((1-R)/R) = %.2f bits per token per layer (R = K/E = %.4f)\n",
                  c.K * std::log2((1 - R) / R), R);
    }
    if (!o.dump.empty()) {
      run_dump(*model, *loader, o, state);
      return 0;
    }
    std::ofstream log;
    if (!o.log.empty()) {
      log.open(o.log, std::ios::app);
      if (!log) throw std::runtime_error(o.log + ": cannot open the log for writing");
      log << "{\"type\":\"config\",\"config\":" << to_json(c) << ",\"backend\":\"" << model->backend() << "\"}\n";
    }
    const bool tty = isatty(1);
    const auto t_start = std::chrono::steady_clock::now();
    auto run_eval = [&](int step) {
      const EvalResult e = evaluate(*model, val.tokens, o.eval_batches);
      std::printf("%seval step %d: val loss %.4f ppl %.3f MaxVio_global %.4f\n", tty ? "\n" : "", step, e.loss, e.ppl,
                  mean(e.maxvio));
      if (log) {
        log << "{\"type\":\"eval\",\"step\":" << step << ",\"val_loss\":" << num(e.loss) << ",\"val_ppl\":" << num(e.ppl)
            << ",\"maxvio_global\":" << num(mean(e.maxvio)) << ",\"maxvio_global_layers\":" << json_list(e.maxvio)
            << ",\"loads\":[";
        for (int mi = 0; mi < c.n_moe(); ++mi) log << (mi ? "," : "") << json_list(e.counts, (size_t)mi * c.E, c.E);
        log << "]";
        if (o.ep_dp > 0 && c.n_moe() > 0) {  // the evaluated sequences grouped into computation batches
          const int n_seq = e.batches * c.B;
          double cb = n_seq < c.B * o.ep_dp ? NAN : 0;  // no whole computation batch: undefined (null), not 0
          for (int mi = 0; mi < c.n_moe(); ++mi) {
            const std::vector<int64_t> layer(e.seq_counts.begin() + (size_t)mi * n_seq * c.E,
                                             e.seq_counts.begin() + (size_t)(mi + 1) * n_seq * c.E);
            cb += maxvio_computation_batch(layer, n_seq, c.E, c.B * o.ep_dp) / c.n_moe();
          }
          log << ",\"ep_dp\":" << o.ep_dp << ",\"cb_tokens\":" << (int64_t)c.B * o.ep_dp * c.T
              << ",\"maxvio_cb\":" << num(cb);
        }
        log << "}\n" << std::flush;
      }
    };
    std::vector<StepProfile> profile;
    if (o.profile) prof::enable(true);
    int last_saved = -1;  // the step of the checkpoint at --save written by this run (-1: none yet)
    // A failed save (NaN state, full disk) stops the run naming the step; the file keeps the last good one.
    auto save = [&]() {
      try {
        save_checkpoint(o.save, *model, state);
      } catch (const std::exception& e) {
        throw std::runtime_error("step " + std::to_string(state.step) + ": " + e.what() +
                                 (last_saved >= 0 ? " (it holds step " + std::to_string(last_saved) + ")" : ""));
      }
      last_saved = state.step;
    };
    install_stop_handlers();
    for (int step = state.step; step < last; ++step) {
      if (g_stop_signal) break;  // between steps: the state is that of a finished step
      if (o.profile) prof::reset();  // drops what an evaluation between steps recorded
      const double cpu0 = o.profile ? process_cpu_ns() : 0;
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<int64_t> seq_counts;  // (sequences of the step, n_moe, E) for the computation-batch metric
      MicroHook hook = nullptr;
      if (o.ep_dp > 0 && c.n_moe() > 0)
        hook = [&](int, const MicroBatch&) {
          for (int mi = 0; mi < c.n_moe(); ++mi) {
            std::vector<int64_t> sc = sequence_counts(model->routing(mi), c.B, c.T, c.E);
            seq_counts.insert(seq_counts.end(), sc.begin(), sc.end());
          }
        };
      StepResult r;
      try {
        r = train_step(*model, *loader, step, hook);
      } catch (const std::exception& e) {  // nothing is saved from a failed step
        throw std::runtime_error(std::string(e.what()) +
                                 (o.save.empty() ? "" : "; " + o.save + " keeps the last checkpoint saved before it, if any"));
      }
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (o.profile) profile.push_back({dt * 1e9, process_cpu_ns() - cpu0, prof::take()});
      const double tok_s = c.tokens_per_step() / dt;
      const std::vector<double> mv = maxvio_per_layer(r.counts, c.E);
      double mv_cb = 0;  // layers were appended per micro-batch: (micro, n_moe, B, E) -> per layer
      if (!seq_counts.empty()) {
        const int n_seq = c.B * c.grad_accum, per_mb = c.n_moe() * c.B * c.E;
        if (n_seq < c.B * o.ep_dp) mv_cb = NAN;  // no whole computation batch in a step: undefined (null), not 0
        for (int mi = 0; mi < c.n_moe(); ++mi) {
          std::vector<int64_t> layer((size_t)n_seq * c.E);
          for (int m = 0; m < c.grad_accum; ++m)
            std::copy_n(seq_counts.begin() + (size_t)m * per_mb + (size_t)mi * c.B * c.E, c.B * c.E,
                        layer.begin() + (size_t)m * c.B * c.E);
          mv_cb += maxvio_computation_batch(layer, n_seq, c.E, c.B * o.ep_dp) / c.n_moe();
        }
      }
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      const double eta = elapsed / (step + 1 - state.step) * (last - step - 1);
      if (tty) {
        std::printf("\rstep %5d/%d  loss %.4f  aux %.5f  MaxVio_batch %.3f  lr %.2e  %.0f tok/s  ETA %.0fs   ", step + 1,
                    c.steps, r.loss, r.aux, mean(mv), r.lr, tok_s, eta);
        std::fflush(stdout);
      } else if ((step + 1) % o.print_every == 0 || step == state.step || step + 1 == last) {
        std::printf("step %5d/%d loss %.4f aux %.5f MaxVio_batch %.3f lr %.2e grad_norm %.3f %.0f tok/s\n", step + 1,
                    c.steps, r.loss, r.aux, mean(mv), r.lr, r.grad_norm, tok_s);
      }
      if (log) {
        log << "{\"type\":\"step\",\"step\":" << step + 1 << ",\"loss\":" << num(r.loss) << ",\"aux\":" << num(r.aux)
            << ",\"lr\":" << num(r.lr) << ",\"grad_norm\":" << num(r.grad_norm) << ",\"tok_s\":" << num(tok_s)
            << ",\"maxvio_batch\":" << num(mean(mv)) << ",\"maxvio_layers\":" << json_list(mv);
        if (!seq_counts.empty()) log << ",\"maxvio_cb\":" << num(mv_cb) << ",\"ep_dp\":" << o.ep_dp;
        const std::vector<float> b = model->biases();
        std::vector<double> bstd;
        for (int mi = 0; mi < c.n_moe(); ++mi) bstd.push_back(bias_stats(b.data() + (size_t)mi * c.E, c.E).std);
        log << ",\"bias_std\":" << json_list(bstd) << "}\n" << std::flush;  // readable while it runs
      }
      state.step = step + 1;
      state.data_pos = loader->position();
      if (o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < last) run_eval(step + 1);
      if (!o.save.empty() && o.save_every > 0 && (step + 1) % o.save_every == 0) save();
    }
    const int stop_signal = g_stop_signal;
    if (tty) std::printf("\n");
    if (o.profile && !stop_signal) {
      if (o.backend != "cpu")
        std::printf("profile: note: on --backend %s the phase times are host time (kernels run asynchronously); "
                    "step_ms and tok/s are exact\n", o.backend.c_str());
      print_profile(profile, o.profile_warmup, c);
      prof::enable(false);
    }
    if (!o.save.empty()) {  // before the final evaluation, so that nothing there can cost the checkpoint
      if (last_saved != state.step) save();
      std::printf("saved %s (step %d)\n", o.save.c_str(), state.step);
    }
    if (stop_signal) {
      if (log) log.flush();
      const char* sig = stop_signal == SIGINT ? "SIGINT" : "SIGTERM";
      if (o.save.empty())
        std::fprintf(stderr, "train: interrupted by %s after step %d of %d; nothing saved (no --save): pass --save FILE "
                             "to keep the finished steps next time\n", sig, state.step, c.steps);
      else if (state.step < c.steps)
        std::fprintf(stderr, "train: interrupted by %s after step %d of %d; saved %s (step %d); continue with:\n  %s\n",
                     sig, state.step, c.steps, o.save.c_str(), state.step,
                     resume_command(argc, argv, o.save).c_str());
      else
        std::fprintf(stderr, "train: interrupted by %s after the last step %d; saved %s (final evaluation skipped)\n",
                     sig, state.step, o.save.c_str());
      return 128 + stop_signal;
    }
    if (state.step < c.steps)
      std::printf("stopped after step %d of %d (--stop-after)%s\n", state.step, c.steps,
                  o.save.empty() ? "" : "; continue with --resume");
    if (eval_at_end) run_eval(state.step);
    return 0;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "train: error: out of memory: the model or its activations (batch x seq) do not fit%s%s; "
                         "lower --batch, --seq or the model size\n",
                 g_footprint.empty() ? "" : "; the run needs ", g_footprint.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return 1;
  }
}
