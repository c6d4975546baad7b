"""A DeepSeek-V3-inference-style gate for the conformance kit, router only (kit.py --router-only).

Our own torch implementation of the semantics of the Gate class of DeepSeek-V3's inference code
(inference/model.py in the DeepSeek-V3 repository), written from the public code; nothing is
imported or copied. That code only routes: it has no load, no bias update and no aux loss, so the
kit runs it with --router-only, giving it each step's bias from the dump (set_bias) and checking
routing and gates alone. To check the real Gate, load the kit's router weight into Gate.weight and
the bias into Gate.bias and call it on the kit's router input.

Semantics reproduced here:
  * layout: x.view(-1, dim) of (batch, seq, dim): n = b*T + t ("bt");
  * scores = softmax(logits) in fp32, or sigmoid(logits) in the activation dtype (the model runs in
    bf16: score_dtype; fp32 here, the dump's precision, set torch.bfloat16 to see its near-ties);
  * selection on scores + bias (the checkpoint's e_score_correction_bias, renamed `bias` by
    inference/convert.py; the Gate only creates it when dim == 7168, i.e. for the 671B model),
    restricted to n_limited_groups of n_expert_groups groups (1 and 1 here: lfmoe has no groups);
  * gates gathered from the unbiased scores; with sigmoid always divided by their sum (no epsilon),
    even at top-1 where the gate becomes 1; with softmax never; then always * route_scale.
"""
import torch


class Adapter:
    layout = 'bt'
    score_dtype = torch.float32

    def __init__(self, cfg, layers, init_bias, run):
        self.topk, self.score_func = cfg['K'], cfg['gate']       # n_activated_experts, score_func
        self.route_scale = cfg['route_scale']                    # route_scale
        if (self.score_func == 'sigmoid') != bool(cfg['norm_topk']):
            raise ValueError('the inference Gate renormalises sigmoid gates and never softmax ones: make the dump '
                             'with --norm-topk for --gate sigmoid and without it for --gate softmax')
        if cfg['balance'] in ('lossfree', 'lossfree_aux') and cfg['bias_kind'] != 'add':
            raise ValueError('the Gate adds its bias to the scores: make the dump with --bias-kind add')
        self.use_bias = cfg['balance'] in ('lossfree', 'lossfree_aux')
        self.bias = {l: init_bias[l].float().clone() for l in layers}

    def set_bias(self, layer, bias):
        self.bias[layer] = bias.float().clone()

    def route(self, layer, inp, mode):
        logits = inp['logits']
        if self.score_func == 'softmax':
            scores = logits.softmax(dim=-1, dtype=torch.float32)
        else:
            scores = logits.to(self.score_dtype).sigmoid()
        original = scores
        if self.use_bias:
            scores = scores + self.bias[layer]
        idx = torch.topk(scores, self.topk, dim=-1).indices
        w = original.gather(1, idx).float()
        if self.score_func == 'sigmoid':
            w = w / w.sum(dim=-1, keepdim=True)
        return idx, w * self.route_scale

    # inference keeps no load and never updates the bias
    def load(self, layer):
        return None

    def end_step(self):
        pass

    def saved_bias(self, layer):
        return self.bias[layer]
