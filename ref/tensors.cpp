// tensors.cpp — the one tensor table (see tensors.h for the order and shapes).
#include "ref/tensors.h"

#include <stdexcept>  // std::runtime_error

namespace ref {

namespace {
void add(TensorTable& t, const std::string& name, std::vector<int> shape) {
  TensorSpec s;
  s.name = name;
  s.numel = 1;
  for (int d : shape) s.numel *= (size_t)d;
  s.shape = std::move(shape);
  s.offset = t.total;
  s.decay = s.shape.size() >= 2;  // matrices decay, norm weights (vectors) do not
  t.total += s.numel;
  t.params.push_back(std::move(s));
}
}  // namespace

TensorTable make_param_table(const Config& c) {
  TensorTable t;
  add(t, "tok_emb", {c.V, c.C});
  for (int l = 0; l < c.L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(t, p + "attn_norm", {c.C});
    for (const char* w : {"wq", "wk", "wv", "wo"}) add(t, p + "attn." + w, {c.C, c.C});
    add(t, p + "ffn_norm", {c.C});
    if (!c.is_moe_layer(l)) {
      add(t, p + "ffn.w1", {c.Fd, c.C});
      add(t, p + "ffn.w3", {c.Fd, c.C});
      add(t, p + "ffn.w2", {c.C, c.Fd});
      continue;
    }
    add(t, p + "moe.router", {c.E, c.C});
    if (c.S > 0) {
      add(t, p + "moe.shared.w1", {c.S, c.F, c.C});
      add(t, p + "moe.shared.w3", {c.S, c.F, c.C});
      add(t, p + "moe.shared.w2", {c.S, c.C, c.F});
    }
    add(t, p + "moe.experts.w1", {c.E, c.F, c.C});
    add(t, p + "moe.experts.w3", {c.E, c.F, c.C});
    add(t, p + "moe.experts.w2", {c.E, c.C, c.F});
  }
  add(t, "final_norm", {c.C});
  add(t, "lm_head", {c.V, c.C});
  return t;
}

const TensorSpec* TensorTable::find(const std::string& name) const {
  for (const auto& s : params)
    if (s.name == name) return &s;
  return nullptr;
}

const TensorSpec& TensorTable::get(const std::string& name) const {
  const TensorSpec* s = find(name);
  if (!s) throw std::runtime_error("no tensor named '" + name + "' in the table");
  return *s;
}

std::string bias_name(int layer) { return "layers." + std::to_string(layer) + ".moe.bias"; }

}  // namespace ref
