"""A Megatron-Core-style router for the conformance kit (tools/conformance/kit.py).

Our own torch implementation of the semantics of Megatron-Core's TopKRouter
(megatron/core/transformer/moe/router.py, moe_utils.py topk_routing_with_score_function,
get_updated_expert_bias; the update is called from
megatron/core/distributed/finalize_model_grads.py), written from its public code and docs; no
Megatron code is imported or copied. To check real Megatron, replace the bodies of route(), count()
and end_step() with calls into your TopKRouter (weight and expert_bias loaded from the kit's
inputs) and finalize_model_grads; docs/PEERS.md has the mapping and the worked example.

Megatron semantics reproduced here:
  * layout: the MoE layer sees [seq, batch, hidden], so token rows are n = t*B + b ("tb");
  * logits in fp32 (--moe-router-dtype fp32); sigmoid: selection on sigmoid(logits) + expert_bias,
    gates gathered from the unbiased scores and, for top-k > 1, always divided by their sum (+1e-20);
    softmax without --moe-router-pre-softmax: top-k of the logits, softmax over the k (= the
    renormalised softmax); with pre-softmax: softmax over all experts, no renormalisation; then
    * --moe-router-topk-scaling-factor;
  * load: routing_map.sum(0) added to local_tokens_per_expert only when grad is enabled
    (evaluation under no_grad and the no-grad pass of activation recompute do not count);
  * once per global batch (finalize_model_grads, after the backward of every micro-batch):
    bias += rate * sign(mean(load) - load), not centred, then the load is zeroed;
  * aux losses (--moe-router-load-balancing-type aux_loss / seq_aux_loss): scores = softmax, or
    sigmoid normalised over all experts; the routing map for f is the top-k of those *unbiased*
    scores; loss = coeff * E / (k * T^2) * sum_i (sum_t p_ti) * c_i per group of T tokens (the
    micro-batch, or each sequence with seq_aux_loss, then averaged over the batch).

Deviation, on purpose: Megatron-Core keeps local_tokens_per_expert in fp32, which is exact only up
to 2^24 assignments per expert per step; this adapter counts in int64 (count_dtype). Setting
count_dtype = torch.float32 reproduces Megatron exactly, and the kit's large_counts check reports it
(tools/conformance/bugs.py CountsFp32).
"""
import torch


class Adapter:
    layout = 'tb'
    count_dtype = torch.int64
    bias_dtype = torch.float32       # Megatron keeps expert_bias in fp32 (_maintain_float32_expert_bias)

    def __init__(self, cfg, layers, init_bias, run):
        # ---- lfmoe config -> Megatron settings (docs/PEERS.md, the Megatron-Core table)
        self.topk, E = cfg['K'], cfg['E']
        self.score_function = cfg['gate']                      # --moe-router-score-function
        self.scaling_factor = cfg['route_scale']               # --moe-router-topk-scaling-factor
        self.enable_expert_bias = cfg['balance'] in ('lossfree', 'lossfree_aux')
        self.bias_update_rate = cfg['bias_rate']               # --moe-router-bias-update-rate
        self.pre_softmax = False                               # --moe-router-pre-softmax
        if self.score_function == 'sigmoid':
            if self.topk > 1 and not cfg['norm_topk']:
                raise ValueError('Megatron-Core divides sigmoid top-k gates by their sum whenever top-k > 1: '
                                 'make the dump with --norm-topk')
            if self.topk == 1 and cfg['norm_topk']:
                raise ValueError('Megatron-Core does not renormalise a sigmoid top-1 gate: make the dump '
                                 'without --norm-topk')
        else:
            if self.enable_expert_bias:
                raise ValueError('Megatron-Core allows the expert bias only with the sigmoid score function')
            self.pre_softmax = not cfg['norm_topk']
            if self.topk == 1 and not self.pre_softmax:
                raise ValueError('Megatron-Core needs --moe-router-pre-softmax at top-1 (no renormalisation): '
                                 'make the dump without --norm-topk')
        if self.enable_expert_bias:
            if cfg['update_rule'] != 'sign' or cfg.get('bias_center') or cfg['bias_kind'] != 'add':
                raise ValueError('Megatron-Core\'s expert bias is additive with the uncentred sign update: make '
                                 'the dump with --bias-kind add --update-rule sign and no --bias-center')
        self.aux_type = None                                   # --moe-router-load-balancing-type
        if cfg['balance'] in ('aux', 'lossfree_aux'):
            self.aux_type = 'aux_loss' if cfg['aux_per_batch'] else 'seq_aux_loss'
            self.aux_coeff = cfg['aux_alpha']                  # --moe-aux-loss-coeff
        self.B, self.T = run['B'], run['T']
        # ---- the router's buffers, as TopKRouter registers them
        self.expert_bias = {l: init_bias[l].to(self.bias_dtype).clone() for l in layers}
        self.local_tokens_per_expert = {l: torch.zeros(E, dtype=self.count_dtype) for l in layers}
        self.E = E

    # ---- the forward: topk_routing_with_score_function
    def route(self, layer, inp, mode):
        logits = inp['logits'].float()
        if self.score_function == 'sigmoid':
            scores = torch.sigmoid(logits)
            if self.enable_expert_bias:
                key = scores + self.expert_bias[layer].float()
                idx = torch.topk(key, self.topk, dim=1).indices
                top = scores.gather(1, idx)
            else:
                top, idx = torch.topk(scores, self.topk, dim=1)
            probs = top / (top.sum(-1, keepdim=True) + 1e-20) if self.topk > 1 else top
        elif self.pre_softmax:
            probs, idx = torch.topk(torch.softmax(logits, dim=-1), self.topk, dim=1)
        else:
            sel, idx = torch.topk(logits, self.topk, dim=1)
            probs = torch.softmax(sel, dim=-1)
        if self.scaling_factor:
            probs = probs * self.scaling_factor
        if mode != 'eval':
            self.count_if_grad(layer, idx)
        return idx, probs

    def count_if_grad(self, layer, idx):
        """Megatron's _apply_expert_bias: only forwards with grad enabled add to the load."""
        if self.enable_expert_bias and torch.is_grad_enabled():
            self.count(layer, idx)

    def count(self, layer, experts):
        with torch.no_grad():
            c = torch.bincount(experts.reshape(-1), minlength=self.E)
            self.local_tokens_per_expert[layer] += c.to(self.count_dtype)

    def load(self, layer):
        # without the expert bias Megatron keeps no load buffer (local_tokens_per_expert is None)
        return self.local_tokens_per_expert[layer] if self.enable_expert_bias else None

    # ---- finalize_model_grads: _update_router_expert_bias, then reset_model_temporary_tensors
    def end_step(self):
        if self.enable_expert_bias:
            for l, tokens in self.local_tokens_per_expert.items():
                self.expert_bias[l].copy_(self.updated_bias(tokens, self.expert_bias[l]))
        for tokens in self.local_tokens_per_expert.values():
            tokens.zero_()

    def updated_bias(self, tokens, bias):
        """get_updated_expert_bias, on one rank (the all-reduce over TPxCPxDP sums the ranks' loads)."""
        tokens = tokens.float()
        offset = tokens.sum(-1, keepdim=True) / tokens.shape[-1] - tokens
        return bias + torch.sign(offset) * self.bias_update_rate

    def saved_bias(self, layer):
        return self.expert_bias[layer]

    # ---- aux losses: compute_routing_scores_for_aux_loss + switch_load_balancing_loss_func
    def aux_loss(self, layer, inp, experts):
        logits = inp['logits'].float()
        if self.score_function == 'softmax':
            scores = torch.softmax(logits, dim=-1)
        else:
            scores = torch.sigmoid(logits)
            scores = scores / (scores.sum(-1, keepdim=True) + 1e-20)
        idx = torch.topk(scores, self.topk, dim=1).indices       # unbiased top-k, not `experts`
        routing_map = torch.zeros_like(scores).scatter(1, idx, 1.0)
        E, k = self.E, self.topk
        if self.aux_type == 'aux_loss':
            Tn = scores.shape[0]
            return float((scores.sum(0) * routing_map.sum(0)).sum() * (E * self.aux_coeff / (k * Tn * Tn)))
        # seq_aux_loss: [T*B, E] in tb order -> [T, B*E], each (sequence, expert) pair a column
        Tn, B = self.T, self.B
        s2, m2 = scores.reshape(Tn, B * E), routing_map.reshape(Tn, B * E)
        loss = (s2.sum(0) * m2.sum(0)).sum() * (E * self.aux_coeff / (k * Tn * Tn))
        return float(loss / B)
