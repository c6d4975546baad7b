// footprint.h — how much memory a run needs, computed from its config before anything is allocated,
// so that a run too big for the machine is refused at once, naming the size, instead of starting
// and growing until the kernel kills it (calloc is lazy: pages are only taken when first touched).
#pragma once
#include <cstdint>  // uint64_t
#include <string>   // std::string

#include "ref/config.h"  // Config

namespace ref {

struct Footprint {
  uint64_t params = 0;       // the parameter arena
  uint64_t optimizer = 0;    // gradients and the two AdamW moments (3 arenas)
  uint64_t activations = 0;  // saved activations, backward scratch, router buffers, biases, counts
  uint64_t transient = 0;    // host copies of the arenas while initialising, saving or loading (the largest)
  uint64_t data = 0;         // the token arrays (train + val) as given by the caller
  uint64_t runtime = 0;      // the process itself: code, libraries, thread stacks (a fixed allowance)
  uint64_t total() const { return params + optimizer + activations + transient + data + runtime; }
};

// Mirrors the model's allocations (ref/model_impl.h, allocate) and the copies that init, save_checkpoint
// and load_checkpoint make, with 4-byte elements. `saving` / `resuming`: whether checkpoints are written /
// read (their copies are the transient peak). `data_tokens`: tokens held in memory. The config must
// have passed validate(). tests/check_footprint.sh compares the total with a measured peak RSS.
Footprint estimate_footprint(const Config& c, bool saving, bool resuming, uint64_t data_tokens);

// "1.23 GiB", "456.0 MiB", "12.0 KiB", "17 B".
std::string human_bytes(uint64_t n);

// One line: "about 1.2 GiB (parameters ..., gradients+AdamW ..., activations ..., ...)".
std::string describe(const Footprint& f);

// MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping out other
// processes), or 0 when it cannot be read (then no limit is applied).
uint64_t mem_available_bytes();

}  // namespace ref
