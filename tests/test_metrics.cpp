// test_metrics.cpp — ref/metrics.h (MaxVio per layer, per-sequence counts, computation-batch MaxVio,
// bias statistics) and the learning-rate schedule of ref/config.h.
//
// Oracle: every expected value is worked out by hand in the comment next to it.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <cmath>      // std::sqrt
#include <cstdint>    // int64_t
#include <stdexcept>  // std::runtime_error
#include <vector>     // std::vector

#include "ref/config.h"   // Config, learning_rate
#include "ref/metrics.h"

using doctest::Approx;

// ---------------------------------------------------------------- MaxVio
TEST_CASE("metrics: maxvio_per_layer hand-computed") {
  // E = 4, two layers.
  // layer 0: loads 1 2 3 6, mean 3, max 6 -> (6 - 3) / 3 = 1
  // layer 1: loads 5 5 5 5 (perfectly balanced) -> 0
  const std::vector<int64_t> counts = {1, 2, 3, 6, 5, 5, 5, 5};
  const std::vector<double> mv = ref::maxvio_per_layer(counts, 4);
  REQUIRE(mv.size() == 2);
  CHECK(mv[0] == 1.0);
  CHECK(mv[1] == 0.0);
  CHECK(ref::mean(mv) == 0.5);
  // All tokens on one of E = 8 experts: mean = c/8, max = c -> (c - c/8) / (c/8) = E - 1 = 7
  const std::vector<int64_t> collapsed = {0, 0, 0, 40, 0, 0, 0, 0};
  CHECK(ref::maxvio_per_layer(collapsed, 8)[0] == 7.0);
  // E = 3: loads 0 1 2 -> mean 1, (2 - 1)/1 = 1; loads 1 1 4 -> mean 2, (4 - 2)/2 = 1
  // loads 2 3 4 -> mean 3, (4 - 3)/3 = 1/3
  const std::vector<double> mv3 = ref::maxvio_per_layer({0, 1, 2, 1, 1, 4, 2, 3, 4}, 3);
  REQUIRE(mv3.size() == 3);
  CHECK(mv3[0] == 1.0);
  CHECK(mv3[1] == 1.0);
  CHECK(mv3[2] == Approx(1.0 / 3).epsilon(1e-15));
  CHECK(ref::mean(mv3) == Approx(7.0 / 9).epsilon(1e-15));
  // No tokens at all: defined as 0 (not NaN).
  CHECK(ref::maxvio_per_layer({0, 0, 0, 0}, 4)[0] == 0.0);
  CHECK(ref::mean({}) == 0.0);
}

// A hand-built routing trace: B = 2 sequences of T = 3 tokens, E = 4, token-major assignments.
static ref::RoutingTrace hand_trace() {
  ref::RoutingTrace r;
  // token:        0      1      2   |  3      4      5
  // experts:    {0,1}  {0,2}  {0,1} | {3,2}  {3}    {1,2,3}   (expert choice may give 0..E per token)
  r.tok_off = {0, 2, 4, 6, 8, 9, 12};
  r.a_exp = {0, 1, 0, 2, 0, 1, 3, 2, 3, 1, 2, 3};
  return r;
}

TEST_CASE("metrics: sequence_counts hand-computed") {
  const std::vector<int64_t> c = ref::sequence_counts(hand_trace(), 2, 3, 4);
  // sequence 0: expert 0 x3, 1 x2, 2 x1, 3 x0; sequence 1: expert 0 x0, 1 x1, 2 x2, 3 x3
  const std::vector<int64_t> want = {3, 2, 1, 0, 0, 1, 2, 3};
  CHECK(c == want);
}

TEST_CASE("metrics: maxvio_computation_batch hand-computed") {
  // 4 sequences, E = 2:  s0 = (4, 0), s1 = (0, 4), s2 = (3, 1), s3 = (1, 1)
  const std::vector<int64_t> seq = {4, 0, 0, 4, 3, 1, 1, 1};
  // group 1 (each sequence alone): s0 mean 2 max 4 -> 1; s1 -> 1; s2 mean 2 max 3 -> 0.5; s3 -> 0
  //   mean over groups = 2.5 / 4 = 0.625
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 1) == 0.625);
  // group 2: (s0+s1) = (4,4) -> 0; (s2+s3) = (4,2) mean 3 max 4 -> 1/3; mean = 1/6
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 2) == Approx(1.0 / 6).epsilon(1e-15));
  // group 4: (8, 6), mean 7, max 8 -> 1/7
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 4) == Approx(1.0 / 7).epsilon(1e-15));
  // group 3: one full group (s0..s2) = (7, 5) mean 6 -> 1/6; the partial group (s3) is ignored
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 3) == Approx(1.0 / 6).epsilon(1e-15));
  // group larger than the data: no full group -> 0
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 5) == 0.0);
  CHECK_THROWS_AS(ref::maxvio_computation_batch(seq, 4, 2, 0), std::runtime_error);
  // Larger computation batches balance better here (the paper's Figure 5 trend on this toy case).
  CHECK(ref::maxvio_computation_batch(seq, 4, 2, 1) > ref::maxvio_computation_batch(seq, 4, 2, 2));
}

TEST_CASE("metrics: computation-batch MaxVio of the hand trace") {
  const std::vector<int64_t> c = ref::sequence_counts(hand_trace(), 2, 3, 4);
  // per sequence: (3,2,1,0) and (0,1,2,3): each mean 1.5, max 3 -> 1 each -> 1
  CHECK(ref::maxvio_computation_batch(c, 2, 4, 1) == 1.0);
  // together (3,3,3,3) -> 0
  CHECK(ref::maxvio_computation_batch(c, 2, 4, 2) == 0.0);
}

TEST_CASE("metrics: bias_stats hand-computed") {
  // b = (-1, 0, 1, 4): mean 1, deviations (-2, -1, 0, 3), squares 4+1+0+9 = 14, population std sqrt(14/4)
  const float b[] = {-1.0f, 0.0f, 1.0f, 4.0f};
  const ref::BiasStats s = ref::bias_stats(b, 4);
  CHECK(s.mean == 1.0);
  CHECK(s.std == Approx(std::sqrt(3.5)).epsilon(1e-15));
  CHECK(s.min == -1.0);
  CHECK(s.max == 4.0);
  const float c[] = {0.25f, 0.25f, 0.25f};
  const ref::BiasStats t = ref::bias_stats(c, 3);
  CHECK(t.mean == 0.25);
  CHECK(t.std == 0.0);
  CHECK(t.min == 0.25);
  CHECK(t.max == 0.25);
  const float neg[] = {-3.0f, -2.0f};  // min/max start from the data, not from 0
  CHECK(ref::bias_stats(neg, 2).max == -2.0);
  CHECK(ref::bias_stats(neg, 2).min == -3.0);
}

// ---------------------------------------------------------------- learning rate
TEST_CASE("metrics: learning_rate warm-up and cosine endpoints") {
  ref::Config c;
  c.lr = 1e-3f; c.lr_min = 1e-4f; c.warmup = 10; c.steps = 110; c.schedule = ref::Schedule::cosine;
  // warm-up: lr * (step + 1) / warmup
  CHECK(ref::learning_rate(c, 0) == Approx(1e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 4) == Approx(5e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 9) == Approx(1e-3).epsilon(1e-6));
  // cosine from step = warmup (progress 0: lr) to step = steps (progress 1: lr_min), span 100
  CHECK(ref::learning_rate(c, 10) == Approx(1e-3).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 60) == Approx(5.5e-4).epsilon(1e-6));  // halfway: (lr + lr_min) / 2
  // a quarter: lr_min + (lr - lr_min) * (1 + cos(pi/4)) / 2 = 1e-4 + 9e-4 * 0.853553 = 8.681981e-4
  CHECK(ref::learning_rate(c, 35) == Approx(8.681981e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 110) == Approx(1e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 500) == Approx(1e-4).epsilon(1e-6));  // past the end: stays at the floor
  // monotone non-increasing after warm-up
  for (int s = 10; s < 120; ++s) CHECK(ref::learning_rate(c, s + 1) <= ref::learning_rate(c, s));
  // no warm-up: the first step already runs at lr
  c.warmup = 0;
  CHECK(ref::learning_rate(c, 0) == Approx(1e-3).epsilon(1e-6));
}

TEST_CASE("metrics: learning_rate multistep milestones (the paper's 3B schedule)") {
  const ref::Config c = ref::preset("paper-3b");  // warm-up 2000, 7.8e-4, x0.3167 at 45211 and 50862
  CHECK(ref::learning_rate(c, 0) == Approx(7.8e-4 / 2000).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 1999) == Approx(7.8e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 2000) == Approx(7.8e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 45210) == Approx(7.8e-4).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 45211) == Approx(2.47e-4).epsilon(1e-6));  // the paper's second value
  CHECK(ref::learning_rate(c, 50861) == Approx(2.47e-4).epsilon(1e-6));
  // 7.8e-4 * (2.47/7.8)^2 = 7.8218e-5 (the paper rounds to 7.8e-5)
  CHECK(ref::learning_rate(c, 50862) == Approx(2.47e-4 * 2.47e-4 / 7.8e-4).epsilon(1e-5));
  CHECK(ref::learning_rate(c, 56513) == Approx(2.47e-4 * 2.47e-4 / 7.8e-4).epsilon(1e-5));
}

TEST_CASE("metrics: learning_rate of the paper's 1B schedule") {
  const ref::Config c = ref::preset("paper-1b");  // warm-up 1000, cosine 1e-3 -> 1e-4 over 40000 steps
  CHECK(ref::learning_rate(c, 999) == Approx(1e-3).epsilon(1e-6));
  CHECK(ref::learning_rate(c, 20500) == Approx(5.5e-4).epsilon(1e-6));  // midpoint of 1000..40000
  CHECK(ref::learning_rate(c, 40000) == Approx(1e-4).epsilon(1e-6));
}
