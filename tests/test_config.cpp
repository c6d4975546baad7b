// test_config.cpp — ref/config.h: validation messages, the JSON round trip of every preset,
// shape_differences and the enum parsers.
//
// Oracles: the expected messages and values are written by hand here. The JSON round trip is
// checked field by field (not by comparing to_json strings, which would agree even if a field
// were missing from the JSON), and once more on a config where EVERY field differs from its
// default, so that a key forgotten by to_json/config_from_json cannot hide behind the default.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <string>     // std::string
#include <vector>     // std::vector

#include "ref/config.h"
#include "tests/test_util.h"  // error_of, contains

namespace {

// Every field of ref::Config, compared one by one (floats bitwise-equal: the JSON keeps the shortest
// text that reads back to the same float). Returns the names of the fields that differ.
std::vector<std::string> differing_fields(const ref::Config& a, const ref::Config& b) {
  std::vector<std::string> d;
#define CMP(f) \
  if (!(a.f == b.f)) d.push_back(#f)
  CMP(V); CMP(C); CMP(H); CMP(L); CMP(n_dense); CMP(Fd); CMP(E); CMP(K); CMP(S); CMP(F); CMP(T);
  CMP(init_std); CMP(rope_theta); CMP(norm_eps);
  CMP(gate); CMP(routing); CMP(balance); CMP(bias_kind); CMP(update_rule);
  CMP(bias_rate); CMP(aux_alpha); CMP(aux_per_batch); CMP(norm_topk); CMP(route_scale); CMP(ec_chunk);
  CMP(ec_shuffle);
  CMP(B); CMP(grad_accum); CMP(steps); CMP(lr); CMP(lr_min); CMP(warmup); CMP(schedule); CMP(milestones);
  CMP(lr_decay); CMP(beta1); CMP(beta2); CMP(adam_eps); CMP(weight_decay); CMP(grad_clip); CMP(seed);
#undef CMP
  return d;
}

// A config where every field differs from ref::Config{} (and floats are not "round" numbers).
ref::Config all_fields_changed() {
  ref::Config c;
  c.V = 301; c.C = 48; c.H = 6; c.L = 5; c.n_dense = 2; c.Fd = 123; c.E = 12; c.K = 3; c.S = 2; c.F = 17; c.T = 33;
  c.init_std = 0.0123f; c.rope_theta = 5e5f; c.norm_eps = 1e-5f;
  c.gate = ref::Gate::softmax; c.routing = ref::Routing::expert_choice; c.balance = ref::Balance::aux;
  c.bias_kind = ref::BiasKind::mul; c.update_rule = ref::UpdateRule::error;
  c.bias_rate = 3.3e-4f; c.aux_alpha = 0.1f; c.aux_per_batch = true; c.norm_topk = true; c.route_scale = 2.5f;
  c.ec_chunk = 99; c.ec_shuffle = true;
  c.B = 7; c.grad_accum = 3; c.steps = 12345; c.lr = 7.77e-4f; c.lr_min = 1.1e-5f; c.warmup = 37;
  c.schedule = ref::Schedule::multistep; c.milestones = {5, 70, 900}; c.lr_decay = 2.47e-4f / 7.8e-4f;
  c.beta1 = 0.8f; c.beta2 = 0.999f; c.adam_eps = 1e-7f; c.weight_decay = 0.05f; c.grad_clip = 0.5f;
  c.seed = 18446744073709551557ull;  // above 2^63: must not go through a double or an int64
  return c;
}

}  // namespace

// ---------------------------------------------------------------- validate
TEST_CASE("config: every preset validates") {
  for (const std::string& p : ref::preset_names()) {
    CAPTURE(p);
    CHECK_NOTHROW(ref::validate(ref::preset(p)));
  }
}

TEST_CASE("config: validate names K > E") {
  ref::Config c;
  c.E = 8; c.K = 9;
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "topk K=9"));
  CHECK(contains(e, "experts E=8"));
}

TEST_CASE("config: validate names C not divisible by H") {
  ref::Config c;
  c.C = 10; c.H = 4;
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "width C=10 is not divisible by heads H=4"));
}

TEST_CASE("config: validate names an odd head dim") {
  ref::Config c;
  c.C = 12; c.H = 4;  // head dim 3: RoPE rotates pairs
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "head dim C/H must be even"));
  CHECK_FALSE(contains(e, "not divisible"));  // 12 % 4 == 0: only the real problem is named
}

TEST_CASE("config: validate names n_dense > L") {
  ref::Config c;
  c.L = 2; c.n_dense = 3;
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "dense-layers"));
  c.n_dense = 2;  // all dense, no MoE layer: allowed
  CHECK_NOTHROW(ref::validate(c));
}

TEST_CASE("config: validate names an expert-choice chunk that does not divide B*T") {
  ref::Config c;  // B 4, T 64: N = 256
  c.routing = ref::Routing::expert_choice;
  c.balance = ref::Balance::none;
  CHECK_NOTHROW(ref::validate(c));
  c.ec_chunk = 100;
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "ec-chunk 100 must divide"));
  CHECK(contains(e, "256"));
}

TEST_CASE("config: validate names chunk*K not a multiple of E") {
  ref::Config c;
  c.routing = ref::Routing::expert_choice;
  c.balance = ref::Balance::none;
  c.E = 8; c.K = 1; c.ec_chunk = 4;  // 4 divides 256, but 4*1 % 8 != 0
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "ec-chunk * topk must be a multiple of experts"));
  CHECK_FALSE(contains(e, "must divide"));
  c.ec_chunk = 8;
  CHECK_NOTHROW(ref::validate(c));
}

TEST_CASE("config: validate lists every problem at once") {
  ref::Config c;
  c.E = 4; c.K = 5; c.C = 10; c.H = 4; c.warmup = -1;
  const std::string e = error_of([&] { ref::validate(c); });
  CHECK(contains(e, "inconsistent config"));
  CHECK(contains(e, "topk K=5"));
  CHECK(contains(e, "not divisible by heads"));
  CHECK(contains(e, "warmup non-negative"));
}

TEST_CASE("config: validate refuses expert choice with a balance control") {
  ref::Config c;
  c.routing = ref::Routing::expert_choice;  // default balance is lossfree
  CHECK(contains(error_of([&] { ref::validate(c); }), "--balance none"));
  c.balance = ref::Balance::aux;
  CHECK(contains(error_of([&] { ref::validate(c); }), "--balance none"));
}

// ---------------------------------------------------------------- JSON
TEST_CASE("config: to_json / config_from_json round trip every preset, all fields equal") {
  for (const std::string& p : ref::preset_names()) {
    CAPTURE(p);
    const ref::Config a = ref::preset(p);
    const ref::Config b = ref::config_from_json(ref::to_json(a));
    const std::vector<std::string> d = differing_fields(a, b);
    CHECK_MESSAGE(d.empty(), "differing fields: " << (d.empty() ? "" : d[0]));
  }
}

TEST_CASE("config: round trip of a config with every field changed from its default") {
  const ref::Config a = all_fields_changed();
  // The oracle for "every field changed": if a field were left at its default here, this would say so.
  const std::vector<std::string> changed = differing_fields(a, ref::Config{});
  CHECK(changed.size() == 41);  // the number of fields of ref::Config listed in differing_fields
  const ref::Config b = ref::config_from_json(ref::to_json(a));
  const std::vector<std::string> d = differing_fields(a, b);
  for (const std::string& f : d) CHECK_MESSAGE(false, "field lost in the JSON round trip: " << f);
  CHECK(b.seed == 18446744073709551557ull);
  // The comparison would catch a key that the JSON lost: drop "lr_decay" from the text by hand.
  std::string j = ref::to_json(a);
  const size_t at = j.find("\"lr_decay\"");
  REQUIRE(at != std::string::npos);
  j.erase(at, j.find(',', at) + 2 - at);
  const std::vector<std::string> lost = differing_fields(a, ref::config_from_json(j));
  REQUIRE(lost.size() == 1);
  CHECK(lost[0] == "lr_decay");
}

TEST_CASE("config: to_json writes every key of the struct") {
  const std::string j = ref::to_json(ref::Config{});
  for (const char* k : {"V", "C", "H", "L", "n_dense", "Fd", "E", "K", "S", "F", "T", "init_std", "rope_theta",
                        "norm_eps", "gate", "routing", "balance", "bias_kind", "update_rule", "bias_rate", "aux_alpha",
                        "aux_per_batch", "norm_topk", "route_scale", "ec_chunk", "ec_shuffle", "B", "grad_accum",
                        "steps", "lr", "lr_min", "warmup", "schedule", "milestones", "lr_decay", "beta1", "beta2",
                        "adam_eps", "weight_decay", "grad_clip", "seed"}) {
    CAPTURE(k);
    CHECK(contains(j, std::string("\"") + k + "\":"));
  }
}

TEST_CASE("config: config_from_json refuses bad values, naming the key") {
  CHECK(contains(error_of([] { ref::config_from_json("{\"gate\": \"relu\"}"); }), "config key 'gate'"));
  CHECK(contains(error_of([] { ref::config_from_json("{\"E\": 2.5}"); }), "config key 'E'"));
  CHECK(contains(error_of([] { ref::config_from_json("{\"E\": \"8\"}"); }), "config key 'E'"));
  CHECK(contains(error_of([] { ref::config_from_json("{\"milestones\": 5}"); }), "config key 'milestones'"));
  CHECK(contains(error_of([] { ref::config_from_json("{\"norm_topk\": 1}"); }), "config key 'norm_topk'"));
  CHECK_FALSE(error_of([] { ref::config_from_json("[1, 2]"); }).empty());
  CHECK_FALSE(error_of([] { ref::config_from_json("{\"E\": 8"); }).empty());  // not JSON
}

TEST_CASE("config: absent keys keep their defaults") {
  const ref::Config c = ref::config_from_json("{\"E\": 16}");
  CHECK(c.E == 16);
  ref::Config want;
  want.E = 16;
  CHECK(differing_fields(c, want).empty());
}

// ---------------------------------------------------------------- shape_differences
TEST_CASE("config: shape_differences names the changed fields") {
  const ref::Config a = ref::preset("tiny");
  CHECK(ref::shape_differences(a, a).empty());
  ref::Config b = a;
  b.E = 16;
  b.gate = ref::Gate::softmax;
  const std::vector<std::string> d = ref::shape_differences(a, b);
  REQUIRE(d.size() == 2);
  CHECK(d[0] == "E: 8 vs 16");
  CHECK(d[1] == "gate: sigmoid vs softmax");
  // Run-control and balance settings are not part of the shape: a resume may change them.
  ref::Config r = a;
  r.lr = 0.5f; r.steps = 7; r.B = 1; r.T = 5; r.seed = 1; r.bias_rate = 0.1f;
  CHECK(ref::shape_differences(a, r).empty());
  // Every shape field is named.
  ref::Config s = a;
  s.V += 1; s.C += 4; s.H = 2; s.L += 1; s.n_dense = 2; s.Fd += 1; s.K = 3; s.S = 0; s.F += 1;
  s.routing = ref::Routing::expert_choice; s.bias_kind = ref::BiasKind::mul;
  const std::vector<std::string> all = ref::shape_differences(a, s);
  std::string joined;
  for (auto& x : all) joined += "\n" + x;
  for (const char* k : {"V: ", "C: ", "H: ", "L: ", "n_dense: ", "Fd: ", "K: ", "S: ", "F: ", "routing: ", "bias_kind: "}) {
    CAPTURE(k);
    CHECK(contains(joined, std::string("\n") + k));
  }
  CHECK(all.size() == 11);
}

// ---------------------------------------------------------------- enums
TEST_CASE("config: unknown enum strings are refused with the allowed values") {
  CHECK(contains(error_of([] { ref::parse_gate("relu"); }), "expected one of: sigmoid, softmax"));
  CHECK(contains(error_of([] { ref::parse_routing("random"); }), "token_choice, expert_choice"));
  CHECK(contains(error_of([] { ref::parse_balance("both"); }), "none, aux, lossfree"));
  CHECK(contains(error_of([] { ref::parse_bias_kind("sub"); }), "add, mul"));
  CHECK(contains(error_of([] { ref::parse_update_rule("adam"); }), "sign, error"));
  CHECK(contains(error_of([] { ref::parse_schedule("linear"); }), "cosine, multistep"));
  CHECK(contains(error_of([] { ref::parse_gate(""); }), "''"));      // the bad value is quoted
  CHECK(contains(error_of([] { ref::parse_gate("Sigmoid"); }), "'Sigmoid'"));  // case matters
  CHECK(contains(error_of([] { ref::preset("huge"); }), "unknown preset 'huge'"));
}

TEST_CASE("config: enum names and parsers are inverse") {
  for (auto g : {ref::Gate::sigmoid, ref::Gate::softmax}) CHECK(ref::parse_gate(ref::name(g)) == g);
  for (auto r : {ref::Routing::token_choice, ref::Routing::expert_choice}) CHECK(ref::parse_routing(ref::name(r)) == r);
  for (auto b : {ref::Balance::none, ref::Balance::aux, ref::Balance::lossfree}) CHECK(ref::parse_balance(ref::name(b)) == b);
  for (auto k : {ref::BiasKind::add, ref::BiasKind::mul}) CHECK(ref::parse_bias_kind(ref::name(k)) == k);
  for (auto u : {ref::UpdateRule::sign, ref::UpdateRule::error}) CHECK(ref::parse_update_rule(ref::name(u)) == u);
  for (auto s : {ref::Schedule::cosine, ref::Schedule::multistep}) CHECK(ref::parse_schedule(ref::name(s)) == s);
  CHECK(ref::parse_routing("token") == ref::Routing::token_choice);    // command-line short forms
  CHECK(ref::parse_routing("expert") == ref::Routing::expert_choice);
}

TEST_CASE("config: presets have the paper's shapes") {
  const ref::Config p1 = ref::preset("paper-1b"), p3 = ref::preset("paper-3b");
  CHECK(p1.V == 32064); CHECK(p1.C == 1024); CHECK(p1.H == 8); CHECK(p1.L == 10); CHECK(p1.n_dense == 1);
  CHECK(p1.E == 64); CHECK(p1.K == 6); CHECK(p1.S == 2); CHECK(p1.T == 2048);
  CHECK(p1.B * p1.grad_accum == 1152); CHECK(p1.steps == 40000);
  CHECK(p3.C == 1280); CHECK(p3.H == 10); CHECK(p3.L == 12); CHECK(p3.B * p3.grad_accum == 1728);
  CHECK(p3.head_dim() == 128); CHECK(p1.head_dim() == 128);
  CHECK(p3.milestones == std::vector<int>{45211, 50862});
}
