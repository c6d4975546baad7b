// tensors.h — the one tensor table. It names every parameter (and the per-layer loss-free bias),
// gives its shape and offset in the arena, and whether weight decay applies. The same names are
// used in checkpoints, dumps, the PyTorch reference and test messages.
#pragma once
#include <cstddef>  // size_t
#include <string>   // std::string
#include <vector>   // std::vector

#include "ref/config.h"

namespace ref {

struct TensorSpec {
  std::string name;          // e.g. "layers.1.moe.experts.w1"
  std::vector<int> shape;    // row-major, PyTorch order: Linear weights are (out, in)
  size_t offset = 0;         // in elements, into the params (or grads, m, v) arena
  size_t numel = 0;
  bool decay = false;        // AdamW weight decay: matrices yes, norm weights no
};

// Parameter table, in arena order:
//   tok_emb (V,C)
//   per layer l: layers.l.attn_norm (C); layers.l.attn.wq/wk/wv/wo (C,C); layers.l.ffn_norm (C);
//     dense l <  n_dense: layers.l.ffn.w1 (Fd,C), layers.l.ffn.w3 (Fd,C), layers.l.ffn.w2 (C,Fd)
//     MoE   l >= n_dense: layers.l.moe.router (E,C);
//                         layers.l.moe.shared.w1 (S,F,C), .w3 (S,F,C), .w2 (S,C,F)   [absent when S == 0]
//                         layers.l.moe.experts.w1 (E,F,C), .w3 (E,F,C), .w2 (E,C,F)
//   final_norm (C); lm_head (V,C)
struct TensorTable {
  std::vector<TensorSpec> params;
  size_t total = 0;  // elements in the params arena
  const TensorSpec& get(const std::string& name) const;  // throws if absent
  const TensorSpec* find(const std::string& name) const;
};
TensorTable make_param_table(const Config& c);

// Name of the loss-free bias buffer of MoE layer l (fp32, E entries; not a parameter, no gradient).
std::string bias_name(int layer);

}  // namespace ref
