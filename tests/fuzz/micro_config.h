// micro_config.h — the model configuration of the checkpoint fuzz harness and its seeds: every
// kind of layer (one dense, one MoE with a shared expert) at the smallest sizes validate() allows,
// so that a checkpoint is a few KB.
#pragma once
#include "ref/config.h"

inline ref::Config fuzz_micro_config() {
  ref::Config c;
  c.V = 8; c.C = 4; c.H = 2; c.L = 2; c.n_dense = 1; c.Fd = 4;
  c.E = 2; c.K = 1; c.S = 1; c.F = 2; c.T = 4; c.B = 1;
  return c;
}
