// model_impl.h — the model's call sequence, written once for every backend.
//
// This file is included INSIDE a namespace: `namespace ref { #include "ref/model_impl.h" }` in
// ref/model.cpp and `namespace cuda { ... }` in cuda/model.cu. Every op and memory call below is
// unqualified, so it resolves to that namespace's implementation (ref/ops.h, ref/moe.h,
// ref/memory.h or their cuda/ twins). Hence no include guard, and no #include here: the including
// file brings the headers in first.
//
// Per layer:   x_mid = x + Wo Attn(RoPE(Wq n1), RoPE(Wk n1), Wv n1),  n1 = RMSNorm(x)
//              x_out = x_mid + FFN(n2),                                  n2 = RMSNorm(x_mid)
// FFN is a dense SwiGLU for l < n_dense, else the MoE: shared experts + gated routed experts.
//
// `train --profile` (ref/profile.h) times the phases here: every GEMM goes through gemm() /
// gemm_backward(), attention and RoPE, and the router/dispatch part of each MoE layer, open a
// ref::prof::Scope. Disabled, a scope costs one branch; it never changes a value.

template <typename T>
class ModelImpl final : public ref::Model {
 public:
  explicit ModelImpl(const ref::Config& cfg) : c_(cfg), table_(ref::make_param_table(cfg)) {
    ref::validate(c_);
    allocate();
    std::vector<float> init;
    ref::init_params(c_, table_, init);
    set(ref::Arena::params, init);
    set_biases(ref::initial_biases(c_));
  }
  ~ModelImpl() override {
    for (void* p : owned_) dev_free(p);
  }
  ModelImpl(const ModelImpl&) = delete;
  ModelImpl& operator=(const ModelImpl&) = delete;

  const ref::Config& config() const override { return c_; }
  const ref::TensorTable& table() const override { return table_; }
  const char* backend() const override { return kBackendName; }

  ref::ForwardStats forward_backward(const ref::MicroBatch& mb, float loss_scale) override {
    ref::ForwardStats st;
    {
      ref::prof::StageScope stage(ref::prof::Stage::fwd);
      st = run_forward(mb, /*train=*/true);
    }
    ref::prof::StageScope stage(ref::prof::Stage::bwd);
    run_backward(loss_scale);
    return st;
  }
  ref::ForwardStats forward(const ref::MicroBatch& mb) override { return run_forward(mb, /*train=*/false); }

  void zero_grad() override {
    dev_zero(grads_, table_.total);
    dev_zero(counts_, counts_len());
  }
  double grad_norm() override { return std::sqrt(sumsq(grads_, table_.total)); }
  void scale_grads(float s) override { scale_inplace(grads_, table_.total, s); }
  void adamw(float lr, int t) override {
    for (const ref::TensorSpec& s : table_.params)
      adamw_update(params_ + s.offset, grads_ + s.offset, m_ + s.offset, v_ + s.offset, s.numel, lr, c_.beta1,
                   c_.beta2, c_.adam_eps, s.decay ? c_.weight_decay : 0.0f, t);
  }
  // The loss-free update: after the optimizer step, from the integer counts of the whole step.
  void update_bias() override {
    if (!c_.has_bias() || c_.routing != ref::Routing::token_choice) return;
    for (int mi = 0; mi < c_.n_moe(); ++mi)
      bias_update(bias_ + (size_t)mi * c_.E, counts_ + (size_t)mi * c_.E, c_.E, c_.update_rule, c_.bias_rate,
                  c_.bias_center);
  }

  std::vector<float> get(ref::Arena a) const override {
    std::vector<T> host(table_.total);
    to_host(host.data(), arena(a), host.size());
    return std::vector<float>(host.begin(), host.end());
  }
  void set(ref::Arena a, const std::vector<float>& v) override {
    check_len(v.size(), table_.total, "arena");
    std::vector<T> host(v.begin(), v.end());
    to_device(arena(a), host.data(), host.size());
  }
  std::vector<float> biases() const override {
    std::vector<float> b(counts_len());
    to_host(b.data(), bias_, b.size());
    return b;
  }
  void set_biases(const std::vector<float>& b) override {
    check_len(b.size(), counts_len(), "bias");
    to_device(bias_, b.data(), b.size());
  }
  std::vector<int64_t> step_counts() const override {
    std::vector<int64_t> c(counts_len());
    to_host(c.data(), counts_, c.size());
    return c;
  }
  ref::RoutingTrace routing(int mi) const override {
    const Layer& a = layers_.at(c_.n_dense + mi);
    const int N = c_.B * c_.T, A = N * c_.K;
    ref::RoutingTrace r;
    r.tok_off.resize(N + 1);
    r.a_exp.resize(A);
    to_host(r.tok_off.data(), a.tok_off, r.tok_off.size());
    to_host(r.a_exp.data(), a.a_exp, r.a_exp.size());
    r.a_gate = host_floats(a.a_gate, A);
    r.scores = host_floats(a.scores, (size_t)N * c_.E);
    return r;
  }
  std::vector<float> logits() const override { return host_floats(logits_, (size_t)c_.B * c_.T * c_.V); }
  ref::RouterTrace router_trace(int mi) const override {
    const Layer& a = layers_.at(c_.n_dense + mi);
    const size_t N = (size_t)c_.B * c_.T;
    return ref::RouterTrace{host_floats(a.ln2, N * c_.C), host_floats(a.rlogits, N * c_.E), a.aux};
  }

  // Exact access for the double-precision gradient checks.
  T* arena(ref::Arena a) const {
    switch (a) {
      case ref::Arena::params: return params_;
      case ref::Arena::grads: return grads_;
      case ref::Arena::adam_m: return m_;
      default: return v_;
    }
  }

 private:
  // Offsets of one layer's weights in the arenas (the same offsets index params, grads, m and v).
  struct LayerW {
    size_t attn_norm, wq, wk, wv, wo, ffn_norm;
    size_t w1 = 0, w3 = 0, w2 = 0;                 // dense FFN
    size_t router = 0, sw1 = 0, sw3 = 0, sw2 = 0;  // MoE: router, shared experts
    size_t ew1 = 0, ew3 = 0, ew2 = 0;              // MoE: routed experts
  };
  // Saved activations of one layer (N = B*T tokens, A = N*K assignments).
  struct Layer {
    T *x_in, *ln1, *rstd1, *q, *k, *v, *att, *attn_out, *x_mid, *ln2, *rstd2;
    T *h1 = nullptr, *h3 = nullptr, *act = nullptr;  // dense (N,Fd), or shared experts (S,N,F)
    T *rlogits = nullptr, *scores = nullptr, *eh1 = nullptr, *eh3 = nullptr, *eact = nullptr, *y = nullptr;
    T *a_gate = nullptr, *auxf = nullptr;
    int *tok_off = nullptr, *a_tok = nullptr, *a_exp = nullptr, *perm = nullptr, *exp_off = nullptr;
    double aux = 0;  // the layer's aux loss in the last forward
  };

  size_t counts_len() const { return (size_t)c_.n_moe() * c_.E; }
  static void check_len(size_t got, size_t want, const char* what) {
    if (got != want)
      throw std::runtime_error(std::string(what) + " size " + std::to_string(got) + " != expected " +
                               std::to_string(want));
  }
  std::vector<float> host_floats(const T* p, size_t n) const {
    std::vector<T> h(n);
    to_host(h.data(), p, n);
    return std::vector<float>(h.begin(), h.end());
  }
  template <typename U> U* alloc(size_t n) {
    U* p = dev_alloc<U>(n);
    owned_.push_back(p);
    return p;
  }

  void allocate() {
    const size_t N = (size_t)c_.B * c_.T, C = c_.C, A = N * c_.K, E = c_.E, F = c_.F;
    const size_t P = table_.total;
    params_ = alloc<T>(P); grads_ = alloc<T>(P); m_ = alloc<T>(P); v_ = alloc<T>(P);
    bias_ = alloc<float>(std::max<size_t>(1, counts_len()));
    counts_ = alloc<int64_t>(std::max<size_t>(1, counts_len()));
    size_t hidden = 0;  // widest SwiGLU hidden activation, for the backward scratch
    for (int l = 0; l < c_.L; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      LayerW w;
      w.attn_norm = off(p + "attn_norm"); w.wq = off(p + "attn.wq"); w.wk = off(p + "attn.wk");
      w.wv = off(p + "attn.wv"); w.wo = off(p + "attn.wo"); w.ffn_norm = off(p + "ffn_norm");
      Layer a;
      for (T** buf : {&a.x_in, &a.ln1, &a.q, &a.k, &a.v, &a.attn_out, &a.x_mid, &a.ln2}) *buf = alloc<T>(N * C);
      a.rstd1 = alloc<T>(N); a.rstd2 = alloc<T>(N);
      a.att = alloc<T>((size_t)c_.B * c_.H * c_.T * c_.T);
      if (!c_.is_moe_layer(l)) {
        w.w1 = off(p + "ffn.w1"); w.w3 = off(p + "ffn.w3"); w.w2 = off(p + "ffn.w2");
        for (T** buf : {&a.h1, &a.h3, &a.act}) *buf = alloc<T>(N * c_.Fd);
        hidden = std::max(hidden, N * c_.Fd);
      } else {
        w.router = off(p + "moe.router");
        if (c_.S > 0) {
          w.sw1 = off(p + "moe.shared.w1"); w.sw3 = off(p + "moe.shared.w3"); w.sw2 = off(p + "moe.shared.w2");
          for (T** buf : {&a.h1, &a.h3, &a.act}) *buf = alloc<T>(c_.S * N * F);
        }
        w.ew1 = off(p + "moe.experts.w1"); w.ew3 = off(p + "moe.experts.w3"); w.ew2 = off(p + "moe.experts.w2");
        a.rlogits = alloc<T>(N * E); a.scores = alloc<T>(N * E);
        for (T** buf : {&a.eh1, &a.eh3, &a.eact}) *buf = alloc<T>(A * F);
        a.y = alloc<T>(A * C); a.a_gate = alloc<T>(A); a.auxf = alloc<T>(N / c_.T * E);
        a.tok_off = alloc<int>(N + 1); a.a_tok = alloc<int>(A); a.a_exp = alloc<int>(A);
        a.perm = alloc<int>(A); a.exp_off = alloc<int>(E + 1);
        hidden = std::max(hidden, N * F);
      }
      lw_.push_back(w);
      layers_.push_back(a);
    }
    w_emb_ = off("tok_emb"); w_fnorm_ = off("final_norm"); w_head_ = off("lm_head");
    x_final_ = alloc<T>(N * C); lnf_ = alloc<T>(N * C); rstdf_ = alloc<T>(N);
    logits_ = alloc<T>(N * c_.V); losses_ = alloc<T>(N); tmp_ = alloc<T>(N * C);
    tokens_ = alloc<int>(N); targets_ = alloc<int>(N); order_ = alloc<int>(N);
    // backward scratch, reused by every layer
    for (T** buf : {&dresid_, &dln_, &dattn_, &dq_, &dk_, &dv_}) *buf = alloc<T>(N * C);
    for (T** buf : {&dh1_, &dh3_, &dact_}) *buf = alloc<T>(std::max<size_t>(1, hidden));
    dlogits_ = alloc<T>(N * c_.V);
    if (c_.n_moe() > 0) {
      dscores_ = alloc<T>(N * E); drl_ = alloc<T>(N * E); dy_ = alloc<T>(A * C); dgate_ = alloc<T>(A);
      escratch_ = alloc<T>(A * (2 * F + C));
    }
    if (c_.balance == ref::Balance::lossfree_aux && c_.n_moe() > 0) {  // the aux loss's unbiased top-K
      aux_tok_off_ = alloc<int>(N + 1); aux_a_tok_ = alloc<int>(A); aux_a_exp_ = alloc<int>(A);
      aux_a_gate_ = alloc<T>(A);
    }
  }
  size_t off(const std::string& name) const { return table_.get(name).offset; }

  // matmul_forward / matmul_backward (ops.h), each timed as the profiler's gemm phase with its flops.
  static void gemm(T* out, const T* inp, const T* w, int N, int IC, int OC) {
    ref::prof::Scope p(ref::prof::Phase::gemm, ref::prof::matmul_flops(N, IC, OC));
    matmul_forward(out, inp, w, N, IC, OC);
  }
  static void gemm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, int N, int IC, int OC) {
    ref::prof::Scope p(ref::prof::Phase::gemm, ref::prof::matmul_backward_flops(dinp, dw, N, IC, OC));
    matmul_backward(dinp, dw, dout, inp, w, N, IC, OC);
  }

  // ---------------------------------------------------------------- forward
  ref::ForwardStats run_forward(const ref::MicroBatch& mb, bool train) {
    const int N = c_.B * c_.T, C = c_.C;
    to_device(tokens_, mb.tokens, N);
    to_device(targets_, mb.targets, N);
    has_order_ = mb.order != nullptr;
    if (has_order_) to_device(order_, mb.order, N);
    ref::ForwardStats st;
    embedding_forward(layers_[0].x_in, tokens_, params_ + w_emb_, N, C);
    for (int l = 0; l < c_.L; ++l) {
      T* x_out = l + 1 < c_.L ? layers_[l + 1].x_in : x_final_;
      attention_block_forward(l);
      if (c_.is_moe_layer(l))
        st.aux += moe_forward(l, x_out, train);
      else
        swiglu_ffn_forward(x_out, layers_[l].h1, layers_[l].h3, layers_[l].act, layers_[l].ln2, lw_[l].w1,
                           lw_[l].w3, lw_[l].w2, c_.Fd);
      add_inplace(x_out, layers_[l].x_mid, (size_t)N * C);
    }
    rmsnorm_forward(lnf_, rstdf_, x_final_, params_ + w_fnorm_, N, C, c_.norm_eps);
    gemm(logits_, lnf_, params_ + w_head_, N, C, c_.V);
    st.loss = crossentropy_forward(losses_, logits_, targets_, N, c_.V);
    return st;
  }

  // x_mid = x + Wo Attn(...); then ln2 = RMSNorm(x_mid), the FFN's input.
  void attention_block_forward(int l) {
    Layer& a = layers_[l];
    const LayerW& w = lw_[l];
    const int N = c_.B * c_.T, C = c_.C, D = c_.head_dim();
    rmsnorm_forward(a.ln1, a.rstd1, a.x_in, params_ + w.attn_norm, N, C, c_.norm_eps);
    gemm(a.q, a.ln1, params_ + w.wq, N, C, C);
    gemm(a.k, a.ln1, params_ + w.wk, N, C, C);
    gemm(a.v, a.ln1, params_ + w.wv, N, C, C);
    {
      ref::prof::Scope p(ref::prof::Phase::attention);
      rope_forward(a.q, c_.B, c_.T, c_.H, D, c_.rope_theta);  // q, k are kept rotated: attention's inputs
      rope_forward(a.k, c_.B, c_.T, c_.H, D, c_.rope_theta);
      attention_forward(a.attn_out, a.att, a.q, a.k, a.v, c_.B, c_.T, C, c_.H);
    }
    gemm(a.x_mid, a.attn_out, params_ + w.wo, N, C, C);
    add_inplace(a.x_mid, a.x_in, (size_t)N * C);
    rmsnorm_forward(a.ln2, a.rstd2, a.x_mid, params_ + w.ffn_norm, N, C, c_.norm_eps);
  }

  // out (N,C) = W2 (silu(W1 in) * W3 in), hidden width Fh; w* are arena offsets.
  void swiglu_ffn_forward(T* out, T* h1, T* h3, T* act, const T* in, size_t w1, size_t w3, size_t w2, int Fh) {
    const int N = c_.B * c_.T, C = c_.C;
    gemm(h1, in, params_ + w1, N, C, Fh);
    gemm(h3, in, params_ + w3, N, C, Fh);
    swiglu_forward(act, h1, h3, (size_t)N * Fh);
    gemm(out, act, params_ + w2, N, Fh, C);
  }

  // out (N,C) = shared experts + sum of gated routed experts. Returns this layer's aux loss.
  double moe_forward(int l, T* out, bool train) {
    Layer& a = layers_[l];
    const LayerW& w = lw_[l];
    const int N = c_.B * c_.T, C = c_.C, E = c_.E, K = c_.K, F = c_.F, A = N * K, mi = l - c_.n_dense;
    dev_zero(out, (size_t)N * C);
    for (int s = 0; s < c_.S; ++s) {  // shared experts see every token
      const size_t h = (size_t)s * N * F, wi = (size_t)s * F * C;
      swiglu_ffn_forward(tmp_, a.h1 + h, a.h3 + h, a.act + h, a.ln2, w.sw1 + wi, w.sw3 + wi, w.sw2 + wi, F);
      add_inplace(out, tmp_, (size_t)N * C);
    }
    ref::prof::Scope p(ref::prof::Phase::router);  // the rest: router, dispatch, experts, combine, aux
    gemm(a.rlogits, a.ln2, params_ + w.router, N, C, E);
    router_scores_forward(a.scores, a.rlogits, N, E, c_.gate);
    if (c_.routing == ref::Routing::token_choice) {
      const float* bias = c_.has_bias() ? bias_ + (size_t)mi * E : nullptr;
      route_token_choice(a.tok_off, a.a_tok, a.a_exp, a.a_gate, a.scores, bias, c_.bias_kind, N, E, K, c_.norm_topk,
                         c_.route_scale);
    } else {
      route_expert_choice(a.tok_off, a.a_tok, a.a_exp, a.a_gate, a.scores, has_order_ ? order_ : nullptr, N, E, K,
                          c_.ec_chunk > 0 ? c_.ec_chunk : N, c_.norm_topk, c_.route_scale);
    }
    if (train) count_experts(counts_ + (size_t)mi * E, a.a_exp, A, E);  // only training forwards steer the bias
    dispatch_sort(a.perm, a.exp_off, a.a_exp, A, E);
    experts_forward(a.y, a.eh1, a.eh3, a.eact, a.ln2, params_ + w.ew1, params_ + w.ew3, params_ + w.ew2, a.perm,
                    a.exp_off, a.a_tok, E, C, F);
    combine_forward(out, a.y, a.a_gate, a.tok_off, N, C);
    a.aux = 0.0;
    if (!c_.has_aux()) return 0.0;
    if (c_.balance == ref::Balance::lossfree_aux) {
      // DeepSeek-V3's sequence-wise loss next to the bias: its counts f are the top-K of the plain
      // scores (what the router would pick without the bias), as in the paper's formula and
      // Megatron-Core; the biased routing above only decides which experts run.
      route_token_choice(aux_tok_off_, aux_a_tok_, aux_a_exp_, aux_a_gate_, a.scores, nullptr, c_.bias_kind, N, E, K,
                         false, 1.0f);
      a.aux = aux_loss_forward(a.auxf, a.scores, aux_tok_off_, aux_a_exp_, N, c_.T, E, K, c_.gate, c_.aux_per_batch,
                               c_.aux_alpha);
      return a.aux;
    }
    a.aux = aux_loss_forward(a.auxf, a.scores, a.tok_off, a.a_exp, N, c_.T, E, K, c_.gate, c_.aux_per_batch,
                             c_.aux_alpha);
    return a.aux;
  }

  // ---------------------------------------------------------------- backward
  // Gradient of loss_scale * (CE + aux) with respect to every parameter, accumulated into grads_.
  void run_backward(float loss_scale) {
    const int N = c_.B * c_.T, C = c_.C, V = c_.V;
    dev_zero(dlogits_, (size_t)N * V);
    crossentropy_backward(dlogits_, logits_, targets_, N, V, loss_scale);
    dev_zero(dln_, (size_t)N * C);
    gemm_backward(dln_, grads_ + w_head_, dlogits_, lnf_, params_ + w_head_, N, C, V);
    dev_zero(dresid_, (size_t)N * C);
    rmsnorm_backward(dresid_, grads_ + w_fnorm_, dln_, x_final_, params_ + w_fnorm_, rstdf_, N, C);
    for (int l = c_.L - 1; l >= 0; --l) {  // dresid_ holds dL/d(layer output)
      Layer& a = layers_[l];
      const LayerW& w = lw_[l];
      dev_zero(dln_, (size_t)N * C);
      if (c_.is_moe_layer(l))
        moe_backward(l, loss_scale);
      else
        swiglu_ffn_backward(dln_, a.h1, a.h3, a.act, a.ln2, w.w1, w.w3, w.w2, c_.Fd);
      rmsnorm_backward(dresid_, grads_ + w.ffn_norm, dln_, a.x_mid, params_ + w.ffn_norm, a.rstd2, N, C);
      attention_block_backward(l);  // dresid_ becomes dL/d(layer input)
    }
    embedding_backward(grads_ + w_emb_, dresid_, tokens_, N, C);
  }

  void attention_block_backward(int l) {
    Layer& a = layers_[l];
    const LayerW& w = lw_[l];
    const int N = c_.B * c_.T, C = c_.C, D = c_.head_dim();
    const size_t NC = (size_t)N * C;
    dev_zero(dattn_, NC);
    gemm_backward(dattn_, grads_ + w.wo, dresid_, a.attn_out, params_ + w.wo, N, C, C);
    dev_zero(dq_, NC); dev_zero(dk_, NC); dev_zero(dv_, NC);
    {
      ref::prof::Scope p(ref::prof::Phase::attention);
      attention_backward(dq_, dk_, dv_, dattn_, a.q, a.k, a.v, a.att, c_.B, c_.T, C, c_.H);
      rope_backward(dq_, c_.B, c_.T, c_.H, D, c_.rope_theta);
      rope_backward(dk_, c_.B, c_.T, c_.H, D, c_.rope_theta);
    }
    dev_zero(dln_, NC);
    gemm_backward(dln_, grads_ + w.wq, dq_, a.ln1, params_ + w.wq, N, C, C);
    gemm_backward(dln_, grads_ + w.wk, dk_, a.ln1, params_ + w.wk, N, C, C);
    gemm_backward(dln_, grads_ + w.wv, dv_, a.ln1, params_ + w.wv, N, C, C);
    rmsnorm_backward(dresid_, grads_ + w.attn_norm, dln_, a.x_in, params_ + w.attn_norm, a.rstd1, N, C);
  }

  // din (N,C) += gradient of the SwiGLU FFN with output gradient dresid_.
  void swiglu_ffn_backward(T* din, const T* h1, const T* h3, const T* act, const T* in, size_t w1, size_t w3,
                           size_t w2, int Fh) {
    const int N = c_.B * c_.T, C = c_.C;
    const size_t NF = (size_t)N * Fh;
    dev_zero(dact_, NF);
    gemm_backward(dact_, grads_ + w2, dresid_, act, params_ + w2, N, Fh, C);
    dev_zero(dh1_, NF); dev_zero(dh3_, NF);
    swiglu_backward(dh1_, dh3_, dact_, h1, h3, NF);
    gemm_backward(din, grads_ + w1, dh1_, in, params_ + w1, N, C, Fh);
    gemm_backward(din, grads_ + w3, dh3_, in, params_ + w3, N, C, Fh);
  }

  void moe_backward(int l, float loss_scale) {
    Layer& a = layers_[l];
    const LayerW& w = lw_[l];
    const int N = c_.B * c_.T, C = c_.C, E = c_.E, F = c_.F;
    for (int s = 0; s < c_.S; ++s) {
      const size_t h = (size_t)s * N * F, wi = (size_t)s * F * C;
      swiglu_ffn_backward(dln_, a.h1 + h, a.h3 + h, a.act + h, a.ln2, w.sw1 + wi, w.sw3 + wi, w.sw2 + wi, F);
    }
    ref::prof::Scope p(ref::prof::Phase::router);  // the rest: combine, experts, gates, aux, router
    combine_backward(dy_, dgate_, dresid_, a.y, a.a_gate, a.tok_off, N, C);
    experts_backward(dln_, grads_ + w.ew1, grads_ + w.ew3, grads_ + w.ew2, escratch_, dy_, a.ln2, a.eh1, a.eh3,
                     a.eact, params_ + w.ew1, params_ + w.ew3, params_ + w.ew2, a.perm, a.exp_off, a.tok_off,
                     a.a_tok, N, E, C, F);
    dev_zero(dscores_, (size_t)N * E);
    gates_backward(dscores_, dgate_, a.scores, a.tok_off, a.a_exp, a.a_gate, N, E, c_.norm_topk, c_.route_scale);
    if (c_.has_aux())
      aux_loss_backward(dscores_, a.auxf, a.scores, N, c_.T, E, c_.gate, c_.aux_per_batch, c_.aux_alpha, loss_scale);
    dev_zero(drl_, (size_t)N * E);
    router_scores_backward(drl_, dscores_, a.scores, N, E, c_.gate);
    gemm_backward(dln_, grads_ + w.router, drl_, a.ln2, params_ + w.router, N, C, E);
  }

  ref::Config c_;
  ref::TensorTable table_;
  std::vector<void*> owned_;
  T *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr;
  float* bias_ = nullptr;      // (n_moe, E) fp32 whatever T is: the bias never takes a lower precision
  int64_t* counts_ = nullptr;  // (n_moe, E) integer loads of the current optimizer step
  std::vector<LayerW> lw_;
  std::vector<Layer> layers_;
  size_t w_emb_ = 0, w_fnorm_ = 0, w_head_ = 0;
  T *x_final_ = nullptr, *lnf_ = nullptr, *rstdf_ = nullptr, *logits_ = nullptr, *losses_ = nullptr, *tmp_ = nullptr;
  int *tokens_ = nullptr, *targets_ = nullptr, *order_ = nullptr;
  bool has_order_ = false;
  T *dresid_ = nullptr, *dln_ = nullptr, *dattn_ = nullptr, *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr;
  T *dh1_ = nullptr, *dh3_ = nullptr, *dact_ = nullptr, *dlogits_ = nullptr;
  T *dscores_ = nullptr, *drl_ = nullptr, *dy_ = nullptr, *dgate_ = nullptr, *escratch_ = nullptr;
  int *aux_tok_off_ = nullptr, *aux_a_tok_ = nullptr, *aux_a_exp_ = nullptr;  // lossfree_aux: unbiased top-K
  T* aux_a_gate_ = nullptr;
};
