// ops.h — the dense ops of the model on the GPU: the same names and signatures as ref/ops.h, with
// every pointer a DEVICE pointer (from cuda::dev_alloc). The model's call sequence (ref/model_impl.h)
// is compiled once against ref:: and once against cuda::.
//
// Conventions, as in ref: templated on T (float for training; double is instantiated too), forward
// ops overwrite, backward ops ACCUMULATE (+=), a nullptr gradient is skipped. All work is queued on
// the default stream; the ops that return a host value (crossentropy_forward, sumsq) wait for it.
// Determinism: no float atomics anywhere; every reduction has a fixed order, so two runs on the same
// GPU give bitwise identical results. GEMMs are cuBLAS in plain fp32 (TF32 off, see device.h).
#pragma once
#include <cstddef>  // size_t

namespace cuda {

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

// Rotary embedding, in place on x (B,T,H,D): interleaved pairs (x[2i], x[2i+1]) of each head rotate
// by angle pos * theta^(-2i/D), pos = t (angle computed in double, as in ref).
template <typename T> void rope_forward(T* x, int B, int T_, int H, int D, float theta);
// In place: dx <- R^T dx (rotation by -angle).
template <typename T> void rope_backward(T* dx, int B, int T_, int H, int D, float theta);

// Causal softmax attention. q, k, v, out: (B,T,C), head h in columns [h*D,(h+1)*D), D = C/H.
// att (B,H,T,T): softmax probabilities saved for backward (entries above the diagonal are 0).
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int C, int H);
// dq, dk, dv (B,T,C) +=
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        int B, int T_, int C, int H);

// out[i] = silu(a[i]) * b[i]
template <typename T> void swiglu_forward(T* out, const T* a, const T* b, size_t n);
// da, db +=
template <typename T> void swiglu_backward(T* da, T* db, const T* dout, const T* a, const T* b, size_t n);

// x[i] += y[i]
template <typename T> void add_inplace(T* x, const T* y, size_t n);

// losses (N) = -log softmax(logits[n])[targets[n]] ; logits (N,V). Returns the mean over N (summed in
// double in a fixed order on the GPU; the one host round-trip of this op). Being the end of every
// forward, it also raises the errors the router kernels recorded (cuda/device.h, raise_device_errors).
template <typename T> double crossentropy_forward(T* losses, const T* logits, const int* targets, int N, int V);
// dlogits (N,V) += (softmax(logits) - onehot(target)) * dloss / N
template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const int* targets, int N, int V, float dloss);

// ---- optimizer pieces ----
// sum of squares of g (n), accumulated in double in a fixed order (returns to the host)
template <typename T> double sumsq(const T* g, size_t n);
// x[i] *= s
template <typename T> void scale_inplace(T* x, size_t n, float s);
// One AdamW step on n elements, step t >= 1, in torch.optim.AdamW's order of operations (see ref/ops.h);
// the bias corrections 1 - beta^t are computed in double on the host.
template <typename T>
void adamw_update(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                  int t);

}  // namespace cuda
