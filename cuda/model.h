// model.h (cuda) — the GPU model: the same call sequence as the CPU (ref/model_impl.h) compiled
// against cuda's ops. Include only in builds with LFMOE_CUDA.
#pragma once
#include <memory>  // std::unique_ptr
#include <string>  // std::string

#include "ref/model.h"  // ref::Model, ref::Config

namespace cuda {

bool device_available(std::string* why);                        // false (with a reason) when no GPU/driver
std::unique_ptr<ref::Model> make_model(const ref::Config& cfg);  // fp32 on the current device

}  // namespace cuda
