// ops.h — the dense ops of the model, forward and backward, on plain row-major arrays.
//
// Conventions (shared with cuda/ops.h, which declares the same names on device memory):
//  - every op is a free function templated on the element type T (float for training, double for
//    gradient checks); both are explicitly instantiated in ops.cpp;
//  - forward ops overwrite their outputs; backward ops ACCUMULATE (+=) into every gradient they
//    write, so several consumers of one tensor can add their parts; a nullptr gradient is skipped;
//  - shapes are given in the comment of each op; N = B*T tokens, one token per row.
#pragma once
#include <cstddef>  // size_t

namespace ref {

// out (N,C) = wte[tokens[n]] ; wte (V,C)
template <typename T> void embedding_forward(T* out, const int* tokens, const T* wte, int N, int C);
// dwte (V,C) += scatter of dout (N,C) by tokens. Deterministic: rows are summed in token order.
template <typename T> void embedding_backward(T* dwte, const T* dout, const int* tokens, int N, int C);

// out (N,C) = inp / sqrt(mean(inp^2) + eps) * w ; rstd (N) saved for backward ; w (C)
template <typename T> void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* w, int N, int C, float eps);
// dinp (N,C) +=, dw (C) +=
template <typename T>
void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const T* rstd, int N, int C);

// out (N,OC) = inp (N,IC) @ w^T, w (OC,IC) as in torch.nn.Linear (no bias)
template <typename T> void matmul_forward(T* out, const T* inp, const T* w, int N, int IC, int OC);
// dinp (N,IC) += dout @ w ; dw (OC,IC) += dout^T @ inp
template <typename T>
void matmul_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, int N, int IC, int OC);

// Rotary embedding, in place on x (B,T,H,D) (= (N,C) with head h in columns [h*D,(h+1)*D)).
// Interleaved pairs (x[2i], x[2i+1]) of each head rotate by angle pos * theta^(-2i/D), pos = t.
template <typename T> void rope_forward(T* x, int B, int T_, int H, int D, float theta);
// In place: dx <- R^T dx (the rotation by -angle), which is the gradient of the rotation.
template <typename T> void rope_backward(T* dx, int B, int T_, int H, int D, float theta);

// Causal softmax attention. q, k, v, out: (B,T,C), head h in columns [h*D,(h+1)*D), D = C/H.
// att (B,H,T,T): softmax probabilities saved for backward (entries above the diagonal are 0).
// Scale 1/sqrt(D). Implemented in attention.cpp (summation order documented there).
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int C, int H);
// dq, dk, dv (B,T,C) +=
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        int B, int T_, int C, int H);

// out[i] = silu(a[i]) * b[i] = a / (1 + exp(-a)) * b
template <typename T> void swiglu_forward(T* out, const T* a, const T* b, size_t n);
// da, db +=
template <typename T> void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, size_t n);

// x[i] += y[i]
template <typename T> void add_inplace(T* x, const T* y, size_t n);

// losses (N) = -log softmax(logits[n])[targets[n]] ; logits (N,V). Returns the mean over N (in double).
template <typename T> double crossentropy_forward(T* losses, const T* logits, const int* targets, int N, int V);
// dlogits (N,V) += (softmax(logits) - onehot(target)) * dloss / N   (gradient of dloss * mean loss)
template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, float dloss);

// ---- optimizer pieces ----
// sum of squares of g (n), accumulated in double in a fixed order (deterministic for a given thread count)
template <typename T> double sumsq(const T* g, size_t n);
// x[i] *= s
template <typename T> void scale_inplace(T* x, size_t n, float s);
// One AdamW step on n elements, step t >= 1, in torch.optim.AdamW's order of operations:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                  int t);

}  // namespace ref
