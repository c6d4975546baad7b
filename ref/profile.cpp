// profile.cpp — see profile.h.
#include "ref/profile.h"

#include <sys/resource.h>  // getrusage

#include <stdexcept>  // std::logic_error

namespace ref {
namespace prof {

bool g_enabled = false;

namespace {

constexpr int kMaxDepth = 64;
Totals g_tot;
Phase g_stack[kMaxDepth];
int g_depth = 0;       // open scopes (may exceed kMaxDepth: deeper ones are charged to the deepest kept)
int64_t g_last = 0;    // when the innermost open scope last started being charged

}  // namespace

const char* name(Phase p) {
  switch (p) {
    case Phase::gemm: return "gemm";
    case Phase::attention: return "attention";
    case Phase::router: return "router";
    case Phase::optimizer: return "optimizer";
    default: return "other";
  }
}
const char* name(Stage s) {
  switch (s) {
    case Stage::fwd: return "fwd";
    case Stage::bwd: return "bwd";
    default: return "update";
  }
}

void enable(bool on) {
  g_enabled = on;
  reset();
}

void reset() {
  g_tot = Totals{};
  g_depth = 0;
}

Totals take() {
  if (g_depth != 0) throw std::logic_error("ref::prof::take called with a profile scope open");
  const Totals t = g_tot;
  g_tot = Totals{};
  return t;
}

void enter(Phase p, double flops) {
  const int64_t t = now_ns();
  if (g_depth > 0) g_tot.ns[(int)g_stack[g_depth < kMaxDepth ? g_depth - 1 : kMaxDepth - 1]] += t - g_last;
  if (g_depth < kMaxDepth) g_stack[g_depth] = p;
  ++g_depth;
  g_last = t;
  g_tot.flops[(int)p] += flops;
  ++g_tot.scopes;
}

void leave() {
  const int64_t t = now_ns();
  if (g_depth <= 0) return;  // a reset() while scopes were open: nothing to charge
  g_tot.ns[(int)g_stack[g_depth <= kMaxDepth ? g_depth - 1 : kMaxDepth - 1]] += t - g_last;
  --g_depth;
  g_last = t;
}

void add_stage(Stage s, int64_t ns) { g_tot.stage_ns[(int)s] += ns; }

double peak_rss_mb() {
  struct rusage u {};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return u.ru_maxrss / 1024.0;  // Linux reports KiB
}

}  // namespace prof
}  // namespace ref
