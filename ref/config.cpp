// config.cpp — presets, validation, JSON form and the learning-rate schedule.
#include "ref/config.h"

#include <cmath>      // std::cos
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error

#include "ref/io/json.h"  // json::parse, json::quote

namespace ref {

// ---------------------------------------------------------------- enum names
#define LFMOE_ENUM(Type, ...)                                                  \
  const char* name(Type v) {                                                   \
    static const char* names[] = {__VA_ARGS__};                                \
    return names[static_cast<int>(v)];                                         \
  }                                                                            \
  static Type parse_enum(const std::string& s, Type*) {                        \
    static const char* names[] = {__VA_ARGS__};                                \
    std::string all;                                                           \
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {           \
      if (s == names[i]) return static_cast<Type>(i);                          \
      all += (i ? ", " : "") + std::string(names[i]);                          \
    }                                                                          \
    throw std::runtime_error("unknown " #Type " '" + s + "' (expected one of: " + all + ")"); \
  }
LFMOE_ENUM(Gate, "sigmoid", "softmax")
LFMOE_ENUM(Routing, "token_choice", "expert_choice")
LFMOE_ENUM(Balance, "none", "aux", "lossfree", "lossfree_aux")
LFMOE_ENUM(BiasKind, "add", "mul")
LFMOE_ENUM(UpdateRule, "sign", "error")
LFMOE_ENUM(Schedule, "cosine", "multistep")
#undef LFMOE_ENUM

Gate parse_gate(const std::string& s) { return parse_enum(s, (Gate*)nullptr); }
Routing parse_routing(const std::string& s) {
  if (s == "token" ) return Routing::token_choice;   // short forms for the command line
  if (s == "expert") return Routing::expert_choice;
  return parse_enum(s, (Routing*)nullptr);
}
Balance parse_balance(const std::string& s) { return parse_enum(s, (Balance*)nullptr); }
BiasKind parse_bias_kind(const std::string& s) { return parse_enum(s, (BiasKind*)nullptr); }
UpdateRule parse_update_rule(const std::string& s) { return parse_enum(s, (UpdateRule*)nullptr); }
Schedule parse_schedule(const std::string& s) { return parse_enum(s, (Schedule*)nullptr); }

// ---------------------------------------------------------------- validation
void validate(const Config& c) {
  std::vector<std::string> errs;
  auto need = [&](bool ok, const std::string& msg) { if (!ok) errs.push_back(msg); };
  need(c.V > 0 && c.C > 0 && c.H > 0 && c.L > 0 && c.T > 0 && c.B > 0,
       "vocab, width, heads, layers, seq and batch must all be positive");
  need(c.H > 0 && c.C % c.H == 0, "width C=" + std::to_string(c.C) + " is not divisible by heads H=" +
                                      std::to_string(c.H) + " (choose C a multiple of H)");
  need(c.H > 0 && (c.C / c.H) % 2 == 0, "head dim C/H must be even for rotary embedding pairs");
  need(c.n_dense >= 0 && c.n_dense <= c.L, "dense-layers must be between 0 and layers");
  need(c.n_dense == 0 || c.Fd > 0, "dense-hidden Fd must be positive when there are dense layers");
  if (c.n_moe() > 0) {
    need(c.E > 0 && c.F > 0 && c.S >= 0, "experts E and expert-hidden F must be positive, shared S >= 0");
    need(c.K >= 1 && c.K <= c.E, "topk K=" + std::to_string(c.K) + " must be between 1 and experts E=" +
                                     std::to_string(c.E));
    if (c.routing == Routing::expert_choice) {
      const int N = c.B * c.T, chunk = c.ec_chunk > 0 ? c.ec_chunk : N;
      need(N % chunk == 0, "ec-chunk " + std::to_string(chunk) + " must divide the micro-batch's B*T = " +
                               std::to_string(N) + " tokens");
      need((int64_t)chunk * c.K % c.E == 0, "ec-chunk * topk must be a multiple of experts (each expert takes "
                                            "chunk*K/E tokens per chunk)");
      need(c.balance != Balance::aux, "expert choice is balanced by construction: use --balance none");
      need(c.balance != Balance::lossfree && c.balance != Balance::lossfree_aux,
           "expert choice has no bias to steer: use --balance none");
    }
  }
  // Router semantics that only mean something together (docs/MODEL.md sections 5 and 6).
  need(std::isfinite(c.route_scale) && c.route_scale > 0,
       "route-scale must be a positive number (it multiplies every gate; 1 = the plain gates)");
  need(!c.bias_center || c.has_bias(),
       std::string("--bias-center with --balance ") + name(c.balance) +
           ": there is no loss-free bias to centre; use --balance lossfree (or lossfree_aux), or drop --bias-center");
  need(c.balance != Balance::lossfree_aux || c.aux_alpha > 0,
       "--balance lossfree_aux with --aux-alpha 0 has no aux loss: use --balance lossfree, or a positive --aux-alpha "
       "(DeepSeek-V3: 1e-4)");
  need(c.grad_accum >= 1 && c.steps >= 0, "grad-accum must be >= 1 and steps >= 0");
  need(c.lr > 0 && c.lr_min >= 0 && c.warmup >= 0, "lr must be positive, lr-min and warmup non-negative");
  need(c.init_std > 0 && c.norm_eps > 0 && c.rope_theta > 0, "init-std, norm eps and rope theta must be positive");
  need(c.bias_rate >= 0 && c.aux_alpha >= 0, "bias-rate and aux-alpha must be non-negative");
  need(c.grad_clip >= 0 && c.weight_decay >= 0, "clip and wd must be non-negative");
  need(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, "betas must be in [0, 1)");
  for (size_t i = 1; i < c.milestones.size(); ++i)
    need(c.milestones[i] > c.milestones[i - 1], "milestones must be increasing");
  if (errs.empty()) return;
  std::string msg = "inconsistent config:";
  for (auto& e : errs) msg += "\n  - " + e;
  throw std::runtime_error(msg);
}

std::vector<std::string> cuda_unsupported(const Config& c) {
  std::vector<std::string> out;
  const std::string tail = " is not yet in the CUDA mirror; use --backend cpu";
  if (c.balance == Balance::lossfree_aux) out.push_back("--balance lossfree_aux (bias plus sequence-wise aux loss)" + tail);
  if (c.bias_center) out.push_back("--bias-center (centred bias update)" + tail);
  if (c.route_scale != 1.0f && !c.norm_topk)
    out.push_back("--route-scale without --norm-topk (gates scaled without renormalisation)" + tail +
                  " (or add --norm-topk)");
  return out;
}

// ---------------------------------------------------------------- presets
Config preset(const std::string& name) {
  Config c;  // the defaults are the "tiny" shape
  if (name == "tiny") return c;
  if (name == "cpu") {  // the default: learns real text in minutes on 2 cores
    c.V = 4096; c.C = 128; c.H = 4; c.L = 4; c.n_dense = 1; c.Fd = 352;
    c.E = 16; c.K = 2; c.S = 1; c.F = 64; c.T = 128; c.B = 8; c.steps = 300; c.warmup = 20;
    c.lr = 2e-3f; c.lr_min = 2e-4f;
    return c;
  }
  if (name == "gpu") {  // one GPU, the paper's router shape (E 64, K 6, S 2) at small width
    c.V = 32064; c.C = 512; c.H = 4; c.L = 8; c.n_dense = 1; c.Fd = 1376;
    c.E = 64; c.K = 6; c.S = 2; c.F = 256; c.T = 512; c.B = 16; c.steps = 5000; c.warmup = 200;
    c.lr = 1e-3f; c.lr_min = 1e-4f;
    return c;
  }
  if (name == "paper-1b" || name == "paper-3b") {  // the paper's Appendix A/B (docs/MODEL.md section 10)
    const bool big = name == "paper-3b";
    c.V = 32064; c.C = big ? 1280 : 1024; c.H = big ? 10 : 8; c.L = big ? 12 : 10; c.n_dense = 1;
    c.Fd = big ? 3413 : 2731;  // 8/3 * C, the dense FFN the experts are cut from
    c.E = 64; c.K = 6; c.S = 2; c.F = big ? 853 : 512; c.T = 2048; c.B = 8;
    c.grad_accum = big ? 216 : 144;  // 1728 / 1152 sequences per step at B = 8
    c.steps = big ? 56514 : 40000; c.warmup = big ? 2000 : 1000;
    if (big) {
      c.schedule = Schedule::multistep; c.lr = 7.8e-4f; c.lr_min = 7.8e-5f;
      c.milestones = {45211, 50862}; c.lr_decay = 2.47e-4f / 7.8e-4f;
    } else {
      c.lr = 1e-3f; c.lr_min = 1e-4f;
    }
    return c;
  }
  throw std::runtime_error("unknown preset '" + name + "' (expected tiny, cpu, gpu, paper-1b or paper-3b)");
}
std::vector<std::string> preset_names() { return {"tiny", "cpu", "gpu", "paper-1b", "paper-3b"}; }

// ---------------------------------------------------------------- JSON
// One list of (key, member) drives both directions, so a new field cannot be written but not read.
namespace {
struct Field {
  const char* key;
  enum Kind { I, F, B, U64, ENUM, LIST } kind;
  void* ptr;
  std::string (*get_enum)(const Config&);
  void (*set_enum)(Config&, const std::string&);
};
#define FI(k) Field{#k, Field::I, &c.k, nullptr, nullptr}
#define FF(k) Field{#k, Field::F, &c.k, nullptr, nullptr}
#define FB(k) Field{#k, Field::B, &c.k, nullptr, nullptr}
#define FE(k, parse) Field{#k, Field::ENUM, &c.k, [](const Config& x) { return std::string(name(x.k)); }, \
                           [](Config& x, const std::string& s) { x.k = parse(s); }}
std::vector<Field> fields(Config& c) {
  return {FI(V), FI(C), FI(H), FI(L), FI(n_dense), FI(Fd), FI(E), FI(K), FI(S), FI(F), FI(T),
          FF(init_std), FF(rope_theta), FF(norm_eps),
          FE(gate, parse_gate), FE(routing, parse_routing), FE(balance, parse_balance),
          FE(bias_kind, parse_bias_kind), FE(update_rule, parse_update_rule),
          FF(bias_rate), FF(aux_alpha), FB(aux_per_batch), FB(bias_center), FB(norm_topk), FF(route_scale),
          FI(ec_chunk), FB(ec_shuffle),
          FI(B), FI(grad_accum), FI(steps), FF(lr), FF(lr_min), FI(warmup), FE(schedule, parse_schedule),
          Field{"milestones", Field::LIST, &c.milestones, nullptr, nullptr}, FF(lr_decay),
          FF(beta1), FF(beta2), FF(adam_eps), FF(weight_decay), FF(grad_clip),
          Field{"seed", Field::U64, &c.seed, nullptr, nullptr}};
}
#undef FI
#undef FF
#undef FB
#undef FE

std::string float_text(float f) {  // shortest text that reads back to the same float
  char buf[32];
  for (int prec = 6; prec <= 9; ++prec) {
    snprintf(buf, sizeof buf, "%.*g", prec, f);
    if (std::strtof(buf, nullptr) == f) break;
  }
  return buf;
}
}  // namespace

std::string to_json(const Config& cfg) {
  Config c = cfg;
  std::ostringstream o;
  o << "{";
  bool first = true;
  for (const Field& f : fields(c)) {
    o << (first ? "" : ", ") << json::quote(f.key) << ": ";
    first = false;
    switch (f.kind) {
      case Field::I: o << *static_cast<int*>(f.ptr); break;
      case Field::F: o << float_text(*static_cast<float*>(f.ptr)); break;
      case Field::B: o << (*static_cast<bool*>(f.ptr) ? "true" : "false"); break;
      case Field::U64: o << *static_cast<uint64_t*>(f.ptr); break;
      case Field::ENUM: o << json::quote(f.get_enum(c)); break;
      case Field::LIST: {
        o << "[";
        auto& v = *static_cast<std::vector<int>*>(f.ptr);
        for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
        o << "]";
      }
    }
  }
  o << "}";
  return o.str();
}

Config config_from_json(const std::string& text) {
  const json::Value doc = json::parse(text);
  if (!doc.is(json::Value::Object)) throw std::runtime_error("config JSON must be an object");
  Config c;
  for (const Field& f : fields(c)) {
    const json::Value* v = doc.find(f.key);
    if (!v) continue;  // absent keys keep their defaults (older files)
    try {
      switch (f.kind) {
        case Field::I: *static_cast<int*>(f.ptr) = (int)v->as_int(); break;
        case Field::F: *static_cast<float*>(f.ptr) = (float)v->as_num(); break;
        case Field::B: *static_cast<bool*>(f.ptr) = v->as_bool(); break;
        case Field::U64: *static_cast<uint64_t*>(f.ptr) = std::stoull(v->raw); break;
        case Field::ENUM: f.set_enum(c, v->as_str()); break;
        case Field::LIST: {
          auto& out = *static_cast<std::vector<int>*>(f.ptr);
          out.clear();
          if (!v->is(json::Value::Array)) throw std::runtime_error("expected a list");
          for (auto& x : v->arr) out.push_back((int)x.as_int());
        }
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("config key '") + f.key + "': " + e.what());
    }
  }
  // A config without bias_center was written before route_scale acted without norm_topk: that
  // version computed plain gates, so read it as it ran (docs/FORMAT.md, the config).
  if (!doc.find("bias_center") && !c.norm_topk) c.route_scale = 1.0f;
  return c;
}

std::vector<std::string> shape_differences(const Config& a, const Config& b) {
  static const char* shape_keys[] = {"V", "C", "H", "L", "n_dense", "Fd", "E", "K", "S", "F",
                                     "gate", "routing", "bias_kind"};
  const json::Value ja = json::parse(to_json(a)), jb = json::parse(to_json(b));
  std::vector<std::string> out;
  for (const char* k : shape_keys) {
    const json::Value &x = ja.at(k), &y = jb.at(k);
    const std::string sx = x.is(json::Value::String) ? x.str : x.raw, sy = y.is(json::Value::String) ? y.str : y.raw;
    if (sx != sy) out.push_back(std::string(k) + ": " + sx + " vs " + sy);
  }
  return out;
}

// ---------------------------------------------------------------- schedule
float learning_rate(const Config& c, int step) {
  if (step < c.warmup) return c.lr * float(step + 1) / float(c.warmup);
  if (c.schedule == Schedule::multistep) {
    double lr = c.lr;
    for (int m : c.milestones)
      if (step >= m) lr *= c.lr_decay;
    return (float)lr;
  }
  const int span = c.steps - c.warmup;
  const double progress = span > 0 ? std::min(1.0, double(step - c.warmup) / span) : 1.0;
  return (float)(c.lr_min + 0.5 * (c.lr - c.lr_min) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace ref
