// model.cu — the GPU model: ref/model_impl.h compiled inside namespace cuda, so every op call
// resolves to the device implementation in cuda/ops.cu and cuda/moe.cu.
#include "cuda/model.h"

#include <algorithm>  // std::max
#include <cmath>      // std::sqrt
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <vector>     // std::vector

#include "cuda/memory.h"  // dev_alloc, to_host, ... (cudaMalloc/cudaMemcpy)
#include "cuda/moe.h"     // router, dispatch, experts, combine, aux loss, bias update
#include "cuda/ops.h"     // dense ops
#include "ref/profile.h"  // phase scopes (train --profile): host time here, kernels are asynchronous

namespace cuda {

#include "ref/model_impl.h"

std::unique_ptr<ref::Model> make_model(const ref::Config& cfg) {
  // Router semantics that only the CPU reference has yet (ref::cuda_unsupported names each one).
  const std::vector<std::string> missing = ref::cuda_unsupported(cfg);
  if (!missing.empty()) {
    std::string msg = "--backend cuda:";
    for (const std::string& m : missing) msg += "\n  - " + m;
    throw std::runtime_error(msg);
  }
  return std::make_unique<ModelImpl<float>>(cfg);
}

}  // namespace cuda
