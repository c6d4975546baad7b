// moe.h — the router, expert dispatch/combine, the auxiliary balance loss and the loss-free bias
// update on the GPU: the same names and signatures as ref/moe.h (read that file for the routing
// representation and the exact rules), with every array a DEVICE pointer, except maxvio (host).
//
// What stays on the GPU: scores, top-K, gates, counts and the bias never travel to the host.
// The host round-trips are: experts_forward/experts_backward copy exp_off (E+1 ints) to the host to
// loop over experts with cuBLAS; aux_loss_forward returns its loss (one double).
// Shape and config checks are made on the host, with ref's messages. Checks on array CONTENTS that
// ref makes while routing (a non-finite score or bias, a norm_topk sum that is not positive, an
// expert-choice selection that does not add up) are recorded by the kernels and raised as the same
// exception at the end of the forward (cuda/device.h, raise_device_errors; a host round-trip per
// layer would cost too much). Corrupt expert ids or counts passed in by a caller are not checked.
//
// NOTE for code that sees both ref/moe.h and cuda/moe.h: the functions taking a ref enum (Gate,
// BiasKind, UpdateRule) are found in BOTH namespaces by argument-dependent lookup, so an unqualified
// call from inside namespace cuda is ambiguous there. Qualify (cuda::bias_update) in such files, or
// keep ref/moe.h out of the translation unit (this header does not include it).
#pragma once
#include <cstdint>  // int64_t

#include "ref/config.h"  // Gate, BiasKind, UpdateRule (the config enums are shared, not duplicated)

namespace cuda {

using ref::Balance;
using ref::BiasKind;
using ref::Gate;
using ref::Routing;
using ref::UpdateRule;

// ---- scores ----
// scores (N,E) = sigmoid(logits) elementwise, or softmax over the E experts of each token
template <typename T> void router_scores_forward(T* scores, const T* logits, int N, int E, Gate gate);
// dlogits (N,E) += dscores chained through G (uses the saved scores)
template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E, Gate gate);

// ---- selection ----
// Token choice: top-K by key (s, s + b or s * b), descending, equal keys -> lower expert index;
// gate = the unbiased score (optionally normalised over the K and scaled). One thread per token.
template <typename T>
void route_token_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const float* bias,
                        BiasKind kind, int N, int E, int K, bool norm_topk, float scale);

// Expert choice: per chunk of `chunk` tokens (taken in `order`, nullptr = identity; chunk <= 0 means
// the whole batch), every expert takes the chunk*K/E tokens of highest score, equal scores -> the
// token that comes first in `order`. A token's assignments are in ascending expert order.
template <typename T>
void route_expert_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const int* order,
                         int N, int E, int K, int chunk, bool norm_topk, float scale);

// dscores (N,E) += gradient of the gates with respect to the scores
template <typename T>
void gates_backward(T* dscores, const T* da_gate, const T* scores, const int* tok_off, const int* a_exp,
                    const T* a_gate, int N, int E, bool norm_topk, float scale);

// counts (E) += number of assignments of each expert (integer atomics: exact)
void count_experts(int64_t* counts, const int* a_exp, int A, int E);

// ---- dispatch, experts, combine ----
// Stable counting sort by expert: perm (A) grouped by expert, each group in ascending assignment
// order (identical to ref); exp_off (E+1) the group boundaries.
void dispatch_sort(int* perm, int* exp_off, const int* a_exp, int A, int E);

// Routed SwiGLU experts (see ref/moe.h): h1, h3, act (A,F) in perm order, y (A,C) in assignment order.
template <typename T>
void experts_forward(T* y, T* h1, T* h3, T* act, const T* x, const T* w1, const T* w3, const T* w2,
                     const int* perm, const int* exp_off, const int* a_tok, int E, int C, int F);
// dx (N,C) +=, dw1, dw3 (E,F,C) +=, dw2 (E,C,F) +=, from dy (A,C). scratch: at least A*(2F + C).
// dx sums each token's assignment rows in token-major order (a gather, no atomics).
template <typename T>
void experts_backward(T* dx, T* dw1, T* dw3, T* dw2, T* scratch, const T* dy, const T* x, const T* h1, const T* h3,
                      const T* act, const T* w1, const T* w3, const T* w2, const int* perm, const int* exp_off,
                      const int* tok_off, const int* a_tok, int N, int E, int C, int F);

// out (N,C) += sum over the token's assignments a (in order) of a_gate[a] * y[a]
template <typename T> void combine_forward(T* out, const T* y, const T* a_gate, const int* tok_off, int N, int C);
// dy (A,C) = a_gate[a] * dout[t] (overwrite); da_gate (A) = dout[t] . y[a] (overwrite)
template <typename T>
void combine_backward(T* dy, T* da_gate, const T* dout, const T* y, const T* a_gate, const int* tok_off, int N,
                      int C);

// ---- auxiliary balance loss (paper eq. 2; see ref/moe.h) ----
// f (G,E) saved for backward. Returns the loss to the host (computed in ref's order: identical sums).
template <typename T>
double aux_loss_forward(T* f, const T* scores, const int* tok_off, const int* a_exp, int N, int T_, int E, int K,
                        Gate gate, bool per_batch, float alpha);
// dscores (N,E) += dloss * dL/dscores
template <typename T>
void aux_loss_backward(T* dscores, const T* f, const T* scores, int N, int T_, int E, Gate gate, bool per_batch,
                       float alpha, float dloss);

// ---- loss-free bias (no gradient; after the optimizer step), on the GPU ----
// Sign decided in integers (E*c_i vs sum c); error rule arithmetic exactly as docs/FORMAT.md.
// center (ref's centred update) is not in the CUDA mirror yet: true is refused with a message.
void bias_update(float* bias, const int64_t* counts, int E, UpdateRule rule, float u, bool center = false);

// MaxVio of HOST counts (E): the same function as ref::maxvio (it forwards to it).
double maxvio(const int64_t* counts, int E);

}  // namespace cuda
