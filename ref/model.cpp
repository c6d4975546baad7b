// model.cpp — the CPU model: the shared call sequence (model_impl.h) compiled against ref's ops.
#include "ref/model.h"

#include <algorithm>  // std::max
#include <cmath>      // std::sqrt
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string

#include "ref/memory.h"  // dev_alloc, to_host, ... (host memory)
#include "ref/moe.h"     // router, dispatch, experts, combine, aux loss, bias update
#include "ref/ops.h"     // dense ops
#include "ref/profile.h"  // phase scopes (train --profile)
#include "ref/rng.h"     // Rng

namespace ref {

void init_params(const Config& cfg, const TensorTable& table, std::vector<float>& params) {
  params.assign(table.total, 0.0f);
  Rng rng(cfg.seed);
  for (const TensorSpec& s : table.params) {
    const bool norm_weight = s.shape.size() == 1;  // RMSNorm weights start at 1
    for (size_t i = 0; i < s.numel; ++i)
      params[s.offset + i] = norm_weight ? 1.0f : (float)(cfg.init_std * rng.normal());
  }
}

std::vector<float> initial_biases(const Config& cfg) {
  return std::vector<float>((size_t)cfg.n_moe() * cfg.E, cfg.bias_kind == BiasKind::mul ? 1.0f : 0.0f);
}

#include "ref/model_impl.h"

std::unique_ptr<Model> make_model(const Config& cfg) { return std::make_unique<ModelImpl<float>>(cfg); }
std::unique_ptr<Model> make_model_double(const Config& cfg) { return std::make_unique<ModelImpl<double>>(cfg); }

}  // namespace ref
