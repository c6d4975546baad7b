// profile.h — a phase timer for `train --profile` (docs/SPEED.md): where a training step's wall
// time goes, and how fast its GEMMs run.
//
// Two independent accountings, both off unless enable(true) was called:
//
//  - Phases, EXCLUSIVE time. A Scope charges the wall time while it is the innermost open scope to
//    its phase, so nested scopes never double count: a router scope around experts_forward gets
//    the gather/scatter, while the GEMMs inside it (their own gemm scopes) get theirs.
//      gemm       every matmul_forward / matmul_backward call (dense, attention projections, router
//                 logits, shared and routed experts, LM head), with its flop count
//      attention  attention forward/backward including RoPE
//      router     router scores, top-K / expert choice, gates, counts, dispatch, gather/scatter to
//                 and from the experts, combine, the aux loss, the loss-free bias update
//      optimizer  gradient norm, clipping, AdamW
//      other      everything else (embedding, RMSNorm, residual adds, SwiGLU activations, loss,
//                 zeroing); a step's "other" is its wall time minus the four phases above, and an
//                 explicit other scope only stops time from going to the scope around it.
//  - Stages, plain (inclusive) wall time of the three parts of a step: fwd (the training forward),
//    bwd (the backward), update (gradient norm, clipping, AdamW, the bias update).
//
// Cost: disabled, a Scope is one load and branch of a global flag (no clock read). Enabled, two
// steady_clock reads per scope (tens of ns; a step has a few hundred to a few thousand scopes).
// Profiling never touches a value of the model.
//
// Scopes must be opened on the thread that drives the model (the call sites in ref/model_impl.h,
// ref/moe.cpp and ref/trainer.cpp), never inside an OpenMP parallel region. On the CUDA backend the
// times are host time: kernels run asynchronously, so the phase split says little there.
#pragma once
#include <chrono>   // std::chrono::steady_clock
#include <cstdint>  // int64_t

namespace ref {
namespace prof {

enum class Phase : int { gemm, attention, router, optimizer, other };
constexpr int kPhases = 5;
enum class Stage : int { fwd, bwd, update };
constexpr int kStages = 3;
const char* name(Phase p);
const char* name(Stage s);

// What was accumulated since the last take()/reset().
struct Totals {
  int64_t ns[kPhases] = {};         // exclusive wall ns per phase (Phase::other: explicit other scopes only)
  double flops[kPhases] = {};       // flops reported by the scopes of each phase (gemm: 2*M*N*K per product)
  int64_t stage_ns[kStages] = {};   // inclusive wall ns per stage
  int64_t scopes = 0;               // number of phase scopes opened
};

extern bool g_enabled;  // read inline by every Scope; set through enable()
void enable(bool on);
inline bool enabled() { return g_enabled; }

void reset();    // drops everything accumulated so far (e.g. an evaluation between two steps)
Totals take();   // returns the totals and resets them; must be called with no scope open

// Phase bookkeeping behind Scope (not for direct use).
void enter(Phase p, double flops);
void leave();
void add_stage(Stage s, int64_t ns);

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ref::prof::Scope s(ref::prof::Phase::gemm, 2.0 * M * N * K);
class Scope {
 public:
  explicit Scope(Phase p, double flops = 0) : active_(g_enabled) {
    if (active_) enter(p, flops);
  }
  ~Scope() {
    if (active_) leave();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool active_;
};

// ref::prof::StageScope s(ref::prof::Stage::fwd);
class StageScope {
 public:
  explicit StageScope(Stage s) : s_(s), t0_(g_enabled ? now_ns() : -1) {}
  ~StageScope() {
    if (t0_ >= 0) add_stage(s_, now_ns() - t0_);
  }
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

 private:
  Stage s_;
  int64_t t0_;
};

// Flops of the GEMMs of ref/ops.h: out (N,OC) = inp (N,IC) w^T is 2*N*IC*OC; the backward does one
// such product for dinp and one for dw, each only when that gradient is wanted (non-null).
inline double matmul_flops(int N, int IC, int OC) { return 2.0 * N * IC * OC; }
inline double matmul_backward_flops(const void* dinp, const void* dw, int N, int IC, int OC) {
  return ((dinp ? 1 : 0) + (dw ? 1 : 0)) * matmul_flops(N, IC, OC);
}

// Peak resident set size of this process so far, in MiB (getrusage's ru_maxrss).
double peak_rss_mb();

}  // namespace prof
}  // namespace ref
