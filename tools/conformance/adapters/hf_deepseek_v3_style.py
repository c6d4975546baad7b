"""An HF-transformers-DeepseekV3-style router for the conformance kit (tools/conformance/kit.py).

Our own torch implementation of the semantics of DeepseekV3TopkRouter
(transformers/models/deepseek_v3/modeling_deepseek_v3.py), written from the public code; nothing is
imported or copied. HF's model only *uses* e_score_correction_bias: it has no update and no aux loss.
Training it with loss-free balancing needs your own update, usually an optimizer-step hook; the one
here is the DeepSeek-V3 paper's (and lfmoe's): after each optimizer step, bias += gamma for an
underloaded expert and -= gamma for an overloaded one, not centred. To check your own training code,
load the kit's router weight into DeepseekV3TopkRouter.weight, call it on the kit's router input, and
put your hook's body into count()/end_step(); docs/PEERS.md has the mapping and a worked example.

HF semantics reproduced here:
  * layout: hidden_states (batch, seq, hidden).view(-1, hidden): n = b*T + t ("bt");
  * logits = linear in fp32, scores = sigmoid (no other score function); selection on
    scores + e_score_correction_bias, restricted to topk_group of n_group groups (lfmoe has no
    groups: n_group = topk_group = 1, which keeps every expert); torch.topk(sorted=False);
  * gates gathered from the unbiased scores, divided by their sum (+1e-20) with norm_topk_prob,
    then always multiplied by routed_scaling_factor;
  * the bias is a registered buffer created in the default dtype: model.to(torch.bfloat16) would
    turn it into bf16 (bugs.py BiasBf16); keep it in fp32.
The training-side part (ours): load counted from forwards with module.training and grad enabled,
so evaluation and the no-grad pass of activation recompute do not count; int64 counts.
"""
import torch


class Adapter:
    layout = 'bt'
    bias_dtype = torch.float32

    def __init__(self, cfg, layers, init_bias, run):
        # ---- lfmoe config -> DeepseekV3Config (docs/PEERS.md, the HF table)
        if cfg['gate'] != 'sigmoid':
            raise ValueError('DeepseekV3TopkRouter always uses sigmoid scores: make the dump with --gate sigmoid')
        if cfg['balance'] in ('aux', 'lossfree_aux'):
            raise ValueError('HF DeepseekV3 computes no auxiliary balance loss: make the dump with '
                             '--balance lossfree or none')
        if cfg['bias_kind'] != 'add':
            raise ValueError('e_score_correction_bias is added to the scores: make the dump with --bias-kind add')
        self.top_k, self.n_routed_experts = cfg['K'], cfg['E']          # num_experts_per_tok, n_routed_experts
        self.norm_topk_prob = cfg['norm_topk']                          # norm_topk_prob
        self.routed_scaling_factor = cfg['route_scale']                 # routed_scaling_factor
        self.n_group = self.topk_group = 1                              # n_group, topk_group
        # the training hook (ours): the DeepSeek-V3 paper's bias update speed gamma
        self.update = cfg['balance'] == 'lossfree'
        if self.update and (cfg['update_rule'] != 'sign' or cfg.get('bias_center')):
            raise ValueError('this hook is the paper\'s uncentred sign rule: make the dump with --update-rule sign '
                             'and no --bias-center')
        self.gamma = cfg['bias_rate']
        self.e_score_correction_bias = {l: init_bias[l].to(self.bias_dtype).clone() for l in layers}
        self.tokens = {l: torch.zeros(self.n_routed_experts, dtype=torch.int64) for l in layers}
        self.training = True

    def route(self, layer, inp, mode):
        self.training = mode != 'eval'
        scores = torch.sigmoid(inp['logits'].float())
        idx = self.topk_indices(scores, self.e_score_correction_bias[layer])
        w = self.gate_weights(scores, idx, layer)
        if self.training and torch.is_grad_enabled():
            self.count(layer, idx)
        return idx, w

    def topk_indices(self, scores, bias):
        E, G = self.n_routed_experts, self.n_group
        choice = scores + bias.unsqueeze(0)
        group_scores = choice.view(-1, G, E // G).topk(min(2, E // G), dim=-1).values.sum(-1)
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False).indices
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1.0)
        keep = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
        choice = choice.masked_fill(keep == 0, 0.0)      # HF fills left-out groups with 0.0, not -inf
        return torch.topk(choice, k=self.top_k, dim=-1, sorted=False).indices

    def gate_weights(self, scores, idx, layer):
        w = scores.gather(1, idx)
        if self.norm_topk_prob:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return w * self.routed_scaling_factor

    # ---- the training hook (not part of HF)
    def count(self, layer, experts):
        self.tokens[layer] += torch.bincount(experts.reshape(-1), minlength=self.n_routed_experts)

    def load(self, layer):
        return self.tokens[layer]

    def end_step(self):
        with torch.no_grad():
            for l, c in self.tokens.items():
                if self.update:
                    self.update_bias(l, c)
                c.zero_()

    def update_bias(self, l, c):
        E, tot = len(c), int(c.sum())
        sign = torch.tensor([(tot > E * int(ci)) - (tot < E * int(ci)) for ci in c], dtype=torch.float32)
        self.e_score_correction_bias[l].add_(sign * self.gamma)

    def saved_bias(self, layer):
        return self.e_score_correction_bias[layer]
