// metrics.cpp — see metrics.h.
#include "ref/metrics.h"

#include <algorithm>  // std::min, std::max
#include <cmath>      // std::sqrt
#include <stdexcept>  // std::runtime_error

#include "ref/moe.h"  // maxvio

namespace ref {

std::vector<double> maxvio_per_layer(const std::vector<int64_t>& counts, int E) {
  std::vector<double> out;
  for (size_t i = 0; i + E <= counts.size(); i += E) out.push_back(maxvio(counts.data() + i, E));
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / v.size();
}

std::vector<int64_t> sequence_counts(const RoutingTrace& r, int B, int T, int E) {
  std::vector<int64_t> c((size_t)B * E, 0);
  for (int b = 0; b < B; ++b)
    for (int a = r.tok_off[(size_t)b * T]; a < r.tok_off[(size_t)(b + 1) * T]; ++a) c[(size_t)b * E + r.a_exp[a]]++;
  return c;
}

double maxvio_computation_batch(const std::vector<int64_t>& seq_counts, int n_seq, int E, int group) {
  if (group < 1) throw std::runtime_error("computation batch must hold at least one sequence");
  const int groups = n_seq / group;
  if (groups == 0) return 0.0;
  double total = 0;
  std::vector<int64_t> load(E);
  for (int g = 0; g < groups; ++g) {
    std::fill(load.begin(), load.end(), 0);
    for (int s = g * group; s < (g + 1) * group; ++s)
      for (int e = 0; e < E; ++e) load[e] += seq_counts[(size_t)s * E + e];
    total += maxvio(load.data(), E);
  }
  return total / groups;
}

BiasStats bias_stats(const float* b, int E) {
  BiasStats s;
  if (E <= 0) return s;
  s.min = s.max = b[0];
  for (int i = 0; i < E; ++i) {
    s.mean += b[i];
    s.min = std::min(s.min, (double)b[i]);
    s.max = std::max(s.max, (double)b[i]);
  }
  s.mean /= E;
  for (int i = 0; i < E; ++i) s.std += (b[i] - s.mean) * (b[i] - s.mean);
  s.std = std::sqrt(s.std / E);
  return s;
}

}  // namespace ref
