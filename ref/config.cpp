// config.cpp — presets, validation, JSON form and the learning-rate schedule.
#include "ref/config.h"

#include <cerrno>     // errno
#include <cmath>      // std::cos, std::isfinite
#include <cstdint>    // INT32_MIN, INT32_MAX
#include <cstdlib>    // std::strtoull
#include <cstdio>     // std::snprintf
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
// Every value is checked before anything divides, allocates or indexes by it: the range checks come
// first, and a check that divides or multiplies runs only when the values it uses passed theirs.
// Products are formed in double (exact far beyond 2^31), never in int, so that a huge value cannot
// wrap around to a small or zero one. The limit on sizes: every tensor the model holds (a parameter
// or an activation) has at most kMaxTensorElems = 2^31-1 elements, because the kernels index one
// tensor with an int; the same holds for a step's B*T*grad_accum tokens. What fits in memory is
// checked separately (ref/footprint.h), from the same config, before anything is allocated.
static constexpr double kMaxTensorElems = 2147483647.0;  // INT_MAX

void validate(const Config& c) {
  std::vector<std::string> errs;
  auto need = [&](bool ok, const std::string& msg) { if (!ok) errs.push_back(msg); };
  auto s = [](double x) { char b[32]; std::snprintf(b, sizeof b, "%.0f", x); return std::string(b); };
  need(c.V > 0 && c.C > 0 && c.H > 0 && c.L > 0 && c.T > 0 && c.B > 0,
       "vocab, width, heads, layers, seq and batch must all be positive (got V=" + std::to_string(c.V) + " C=" +
           std::to_string(c.C) + " H=" + std::to_string(c.H) + " L=" + std::to_string(c.L) + " T=" +
           std::to_string(c.T) + " B=" + std::to_string(c.B) + ")");
  need(c.H <= 0 || c.C % c.H == 0, "width C=" + std::to_string(c.C) + " is not divisible by heads H=" +
                                       std::to_string(c.H) + " (choose C a multiple of H)");
  need(c.H <= 0 || c.C % c.H != 0 || (c.C / c.H) % 2 == 0, "head dim C/H must be even for rotary embedding pairs");
  need(c.n_dense >= 0 && c.n_dense <= c.L, "dense-layers must be between 0 and layers");
  need(c.n_dense == 0 || c.Fd > 0, "dense-hidden Fd must be positive when there are dense layers");
  const bool moe = c.n_moe() > 0;
  bool moe_ok = true;
  if (moe) {
    moe_ok = c.E > 0 && c.F > 0 && c.S >= 0 && c.K >= 1 && c.K <= c.E;
    need(c.E > 0 && c.F > 0 && c.S >= 0, "experts E and expert-hidden F must be positive, shared S >= 0 (got E=" +
                                            std::to_string(c.E) + " F=" + std::to_string(c.F) + " S=" +
                                            std::to_string(c.S) + ")");
    need(c.K >= 1 && c.K <= c.E, "topk K=" + std::to_string(c.K) + " must be between 1 and experts E=" +
                                     std::to_string(c.E));
  }
  need(c.ec_chunk >= 0, "ec-chunk must be >= 0 (0 = the whole micro-batch), got " + std::to_string(c.ec_chunk));
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
  const bool dims_ok = errs.empty();

  // Sizes: only once every dimension is known to be in range.
  if (dims_ok) {
    const double N = double(c.B) * c.T, C = c.C, V = c.V;
    struct Size { double elems; const char* what; const char* fix; };
    std::vector<Size> sizes = {
        {N * c.grad_accum, "tokens per step batch*seq*grad-accum", "--batch, --seq or --grad-accum"},
        {N * C, "the activations batch*seq*width", "--batch, --seq or --width"},
        {N * V, "the logits batch*seq*vocab", "--batch, --seq or --vocab"},
        {V * C, "the embedding vocab*width", "--vocab or --width"},
        {double(c.B) * c.H * c.T * c.T, "the attention scores batch*heads*seq*seq", "--batch, --heads or --seq"},
    };
    if (c.n_dense > 0) {
      sizes.push_back({double(c.Fd) * C, "the dense FFN weights dense-hidden*width", "--dense-hidden or --width"});
      sizes.push_back({N * c.Fd, "the dense FFN activations batch*seq*dense-hidden", "--batch, --seq or --dense-hidden"});
    }
    if (moe && moe_ok) {
      const double A = N * c.K;  // assignments of a micro-batch
      sizes.push_back({double(c.E) * c.F * C, "the routed expert weights experts*expert-hidden*width",
                       "--experts, --expert-hidden or --width"});
      sizes.push_back({double(c.S) * c.F * C, "the shared expert weights shared*expert-hidden*width",
                       "--shared, --expert-hidden or --width"});
      sizes.push_back({double(c.S) * N * c.F, "the shared expert activations shared*batch*seq*expert-hidden",
                       "--shared, --batch, --seq or --expert-hidden"});
      sizes.push_back({N * c.E, "the router scores batch*seq*experts", "--batch, --seq or --experts"});
      sizes.push_back({A * (2.0 * c.F + c.C), "the expert activations batch*seq*topk*(2*expert-hidden+width)",
                       "--batch, --seq, --topk, --expert-hidden or --width"});
    }
    for (const Size& z : sizes)
      need(z.elems <= kMaxTensorElems, std::string(z.what) + " = " + s(z.elems) +
                                           " elements exceeds the limit of one tensor, 2^31-1 = 2147483647; lower " +
                                           z.fix);
  }
  if (dims_ok && errs.empty() && moe && c.routing == Routing::expert_choice) {
    const int64_t N = int64_t(c.B) * c.T, chunk = c.ec_chunk > 0 ? c.ec_chunk : N;  // both >= 1 here
    need(N % chunk == 0, "ec-chunk " + std::to_string(chunk) + " must divide the micro-batch's B*T = " +
                             std::to_string(N) + " tokens");
    need(chunk * c.K % c.E == 0, "ec-chunk * topk must be a multiple of experts (each expert takes "
                                 "chunk*K/E tokens per chunk)");
  }
  if (moe && c.routing == Routing::expert_choice) {
    need(c.balance != Balance::aux, "expert choice is balanced by construction: use --balance none");
    need(c.balance != Balance::lossfree && c.balance != Balance::lossfree_aux,
         "expert choice has no bias to steer: use --balance none");
  }
  need(c.lr > 0 && c.lr_min >= 0 && c.warmup >= 0, "lr must be positive, lr-min and warmup non-negative");
  need(c.init_std > 0 && c.norm_eps > 0 && c.rope_theta > 0, "init-std, norm eps and rope theta must be positive");
  need(c.bias_rate >= 0 && c.aux_alpha >= 0, "bias-rate and aux-alpha must be non-negative");
  need(c.grad_clip >= 0 && c.weight_decay >= 0, "clip and wd must be non-negative");
  need(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, "betas must be in [0, 1)");
  need(c.adam_eps > 0 && c.route_scale > 0 && c.lr_decay > 0, "adam eps, route-scale and lr-decay must be positive");
  // A config read from a file (checkpoint, dump) can hold values the flag parser refuses.
  bool finite = true;
  for (float x : {c.init_std, c.rope_theta, c.norm_eps, c.bias_rate, c.aux_alpha, c.route_scale, c.lr, c.lr_min,
                  c.lr_decay, c.beta1, c.beta2, c.adam_eps, c.weight_decay, c.grad_clip})
    finite = finite && std::isfinite(x);
  need(finite, "every float setting must be finite (one is inf or nan)");
  for (size_t i = 0; i < c.milestones.size(); ++i) {
    need(c.milestones[i] >= 0, "milestones must be >= 0");
    if (i > 0) need(c.milestones[i] > c.milestones[i - 1], "milestones must be increasing");
  }
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

// An int field, range-checked: a cast would turn 4294967304 into 8 without a word.
static int json_int(const json::Value& v) {
  const int64_t x = v.as_int();
  if (x < INT32_MIN || x > INT32_MAX) throw std::runtime_error(v.raw + " is out of range for a 32-bit integer");
  return (int)x;
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
        case Field::I: *static_cast<int*>(f.ptr) = json_int(*v); break;
        case Field::F: {  // an fp32 value (docs/FORMAT.md): one beyond float range is not silently inf
          const double x = v->as_num();
          if (!std::isfinite(x) || std::fabs(x) > 3.4028234663852886e38)
            throw std::runtime_error(v->raw + " is not a finite fp32 value");
          *static_cast<float*>(f.ptr) = (float)x;
          break;
        }
        case Field::B: *static_cast<bool*>(f.ptr) = v->as_bool(); break;
        case Field::U64: {  // strictly digits: std::stoull alone takes "-1" as 2^64-1 and "1.5" as 1
          if (!v->is(json::Value::Number) || v->raw.empty() ||
              v->raw.find_first_not_of("0123456789") != std::string::npos || v->raw.size() > 20)
            throw std::runtime_error("expected an unsigned 64-bit integer, got " + v->raw);
          errno = 0;
          const unsigned long long x = std::strtoull(v->raw.c_str(), nullptr, 10);
          if (errno == ERANGE) throw std::runtime_error(v->raw + " is out of range for an unsigned 64-bit integer");
          *static_cast<uint64_t*>(f.ptr) = x;
          break;
        }
        case Field::ENUM: f.set_enum(c, v->as_str()); break;
        case Field::LIST: {
          auto& out = *static_cast<std::vector<int>*>(f.ptr);
          out.clear();
          if (!v->is(json::Value::Array)) throw std::runtime_error("expected a list");
          for (auto& x : v->arr) out.push_back(json_int(x));
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
