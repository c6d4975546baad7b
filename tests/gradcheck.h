// gradcheck.h — central finite differences in double, shared by the gradient-check tests.
#pragma once
#include <algorithm>   // std::max
#include <cmath>       // std::fabs
#include <cstdint>     // uint64_t
#include <functional>  // std::function
#include <string>      // std::string
#include <vector>      // std::vector

namespace gradcheck {

// Deterministic pseudo-random fill in [lo, hi) (splitmix64), so every test has fixed inputs.
inline void fill_uniform(std::vector<double>& x, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  for (auto& v : x) {
    seed += 0x9E3779B97F4A7C15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v = lo + (hi - lo) * double(z >> 11) * (1.0 / 9007199254740992.0);
  }
}

// Worst |analytic - numeric| / max(1e-3, |numeric|) over x, where numeric = (f(x+h) - f(x-h)) / 2h.
// f must be a smooth scalar function of x (it may read x through a captured reference).
// The central difference in double has error O(h^2 f''') ~ 1e-10 here, so budgets of 1e-6 are
// far from both rounding and truncation error yet catch any real mistake (those are O(1)).
inline double max_rel_error(std::vector<double>& x, const std::vector<double>& analytic,
                            const std::function<double()>& f, double h = 1e-5) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f();
    x[i] = keep - h;
    const double fm = f();
    x[i] = keep;
    const double numeric = (fp - fm) / (2 * h);
    worst = std::max(worst, std::fabs(analytic[i] - numeric) / std::max(1e-3, std::fabs(numeric)));
  }
  return worst;
}

}  // namespace gradcheck
