// metrics.h — load-balance metrics from integer expert counts (docs/MODEL.md section 8).
#pragma once
#include <cstdint>  // int64_t
#include <vector>   // std::vector

#include "ref/model.h"  // RoutingTrace

namespace ref {

// MaxVio of each MoE layer from counts laid out (n_moe, E), and their mean over layers.
std::vector<double> maxvio_per_layer(const std::vector<int64_t>& counts, int E);
double mean(const std::vector<double>& v);

// Per-sequence expert counts (B, E) of one layer's routing (token-major assignments, T tokens per sequence).
std::vector<int64_t> sequence_counts(const RoutingTrace& r, int B, int T, int E);

// MaxVio_computation-batch: sequences (rows of seq_counts, (n_seq, E)) are grouped into computation
// batches of `group` consecutive sequences (micro_batch * ep_dp); the MaxVio of each group's summed
// loads is averaged over the groups. A trailing partial group is ignored (n_seq % group sequences).
double maxvio_computation_batch(const std::vector<int64_t>& seq_counts, int n_seq, int E, int group);

// Bias statistics of one layer: mean, standard deviation, min, max.
struct BiasStats { double mean = 0, std = 0, min = 0, max = 0; };
BiasStats bias_stats(const float* b, int E);

}  // namespace ref
