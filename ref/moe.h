// moe.h — the router, expert dispatch/combine, the auxiliary balance loss, the loss-free bias update
// and the load metrics. Same conventions as ops.h (templated on T, backward accumulates, shapes in
// comments); cuda/moe.h declares the same names on device memory.
//
// Routing is represented as a list of A assignments (token, expert, gate) in TOKEN-MAJOR order:
//   tok_off (N+1): token t owns assignments [tok_off[t], tok_off[t+1])
//   a_tok (A): the token of each assignment; a_exp (A): its expert; a_gate (A): its gate weight.
// Token choice: A = N*K, token t's assignments are its top-K experts in descending key order.
// Expert choice: A = N*K as well (each expert takes chunk*K/E tokens per chunk); a token owns 0..E
// assignments, in ascending expert order.
// Dispatch sorts assignments stably by expert (perm, exp_off); combine is a gather that sums each
// token's assignments in their token-major order, so no float atomics are ever needed.
#pragma once
#include <cstdint>  // int64_t

#include "ref/config.h"  // Gate, BiasKind, UpdateRule

namespace ref {

// ---- scores ----
// scores (N,E) = sigmoid(logits) elementwise, or softmax over the E experts of each token
template <typename T> void router_scores_forward(T* scores, const T* logits, int N, int E, Gate gate);
// dlogits (N,E) += dscores chained through G (uses the saved scores)
template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E, Gate gate);

// ---- selection ----
// Token choice. key_i = s_i (bias == nullptr), s_i + b_i (kind add) or s_i * b_i (kind mul).
// Each token takes the K experts of largest key; equal keys go to the lower expert index; the K
// are stored in descending key order (ties: lower index first). Gate = scale * the unbiased score
// s_i; with norm_topk, gate = scale * s_i / sum of the token's K selected s. The bias never enters a
// gate. (K = 1 with norm_topk: gate = scale exactly, and its gradient to the scores is 0.)
template <typename T>
void route_token_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const float* bias,
                        BiasKind kind, int N, int E, int K, bool norm_topk, float scale);

// Expert choice. Tokens are taken in the order `order` (N entries, a permutation of 0..N-1; nullptr
// = identity) and cut into consecutive chunks of `chunk` tokens (N % chunk == 0, chunk*K % E == 0).
// In each chunk every expert takes the cap = chunk*K/E tokens with the highest score; equal scores go
// to the token that comes first in `order`. Gate = s (norm_topk/scale as above over the token's set).
template <typename T>
void route_expert_choice(int* tok_off, int* a_tok, int* a_exp, T* a_gate, const T* scores, const int* order,
                         int N, int E, int K, int chunk, bool norm_topk, float scale);

// dscores (N,E) += gradient of the gates with respect to the scores (scale onto the selected
// entries, or through the normalisation when norm_topk).
template <typename T>
void gates_backward(T* dscores, const T* da_gate, const T* scores, const int* tok_off, const int* a_exp,
                    const T* a_gate, int N, int E, bool norm_topk, float scale);

// counts (E) += number of assignments of each expert (integers: exact on every backend)
void count_experts(int64_t* counts, const int* a_exp, int A, int E);

// ---- dispatch, experts, combine ----
// Stable counting sort by expert: perm (A) lists assignment ids grouped by expert, each group in
// ascending assignment order; exp_off (E+1) are the group boundaries.
void dispatch_sort(int* perm, int* exp_off, const int* a_exp, int A, int E);

// Routed SwiGLU experts. For expert e and each j in [exp_off[e], exp_off[e+1]), a = perm[j], t = a_tok[a]:
//   h1[j] = W1[e] x[t], h3[j] = W3[e] x[t], act[j] = silu(h1[j]) * h3[j]   (A,F), in perm order
//   y[a]  = W2[e] act[j]                                                   (A,C), in assignment order
// x (N,C); w1, w3 (E,F,C); w2 (E,C,F).
template <typename T>
void experts_forward(T* y, T* h1, T* h3, T* act, const T* x, const T* w1, const T* w3, const T* w2,
                     const int* perm, const int* exp_off, const int* a_tok, int E, int C, int F);
// dx (N,C) +=, dw1, dw3 (E,F,C) +=, dw2 (E,C,F) +=, from dy (A,C) in assignment order.
// scratch: at least A*(2F + C) elements (the per-assignment dx rows are summed per token in
// token-major order, so the result does not depend on the thread count).
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

// ---- auxiliary balance loss (paper eq. 2) ----
// Groups g are the sequences (T_ tokens each) or, with per_batch, the whole micro-batch of N tokens.
//   f_{g,i} = E/(K*Tg) * #tokens of g that selected i;  P_{g,i} = 1/Tg * sum_t s'_{t,i}
//   s' = s (softmax) or s / sum_j s_j (sigmoid);  L = alpha * mean_g sum_i f_{g,i} P_{g,i}
// f (G,E) is saved for backward (G = N/T_ or 1). The gradient flows through P only.
template <typename T>
double aux_loss_forward(T* f, const T* scores, const int* tok_off, const int* a_exp, int N, int T_, int E, int K,
                        Gate gate, bool per_batch, float alpha);
// dscores (N,E) += dloss * dL/dscores
template <typename T>
void aux_loss_backward(T* dscores, const T* f, const T* scores, int N, int T_, int E, Gate gate, bool per_batch,
                       float alpha, float dloss);

// ---- loss-free bias (no gradient; after the optimizer step) ----
// counts (E): integer loads summed over every micro-batch of the optimizer step.
// e_i = mean(c) - c_i; sign rule: b_i += u * sign(e_i); error rule: b_i += u * e_i / mean(c).
// The sign is decided in integers (E*c_i vs sum c), so it cannot flip through rounding.
// center (torchtitan): the deltas minus their mean over the experts are added instead, so the mean
// of the bias never moves (docs/FORMAT.md has the exact arithmetic).
void bias_update(float* bias, const int64_t* counts, int E, UpdateRule rule, float u, bool center = false);

// MaxVio = (max_i c_i - mean(c)) / mean(c); 0 when every count is 0.
double maxvio(const int64_t* counts, int E);

}  // namespace ref
