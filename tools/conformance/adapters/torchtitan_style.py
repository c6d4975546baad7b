"""A torchtitan-style router for the conformance kit (tools/conformance/kit.py).

Our own torch implementation of the semantics of torchtitan's TokenChoiceTopKRouter and MoE
(torchtitan/models/common/moe.py) and of its bias update, an optimizer step pre-hook
(_update_expert_bias in torchtitan/components/optimizer/optimizer.py), written from the public
code; nothing is imported or copied. To check real torchtitan, call your MoE's router with the kit's
logits (or gate weight and input), add to moe.tokens_per_expert_E the way MoE.forward does, and
run the pre-hook in end_step(); docs/PEERS.md has the mapping and a worked example.

torchtitan semantics reproduced here:
  * layout: tokens flattened batch-major, n = b*T + t ("bt", lfmoe's order);
  * gate in fp32; scores = sigmoid or softmax (score_func) over all experts; selection on
    scores + expert_bias_E (torch.topk, sorted=False: no order, ties not to the lower index);
    gates gathered from the unbiased scores, divided by their sum (+1e-20) when route_norm, then
    always multiplied by route_scale (also without route_norm);
  * load: tokens_per_expert_E grows in every forward with module.training (not in eval), so
    activation checkpointing counts a micro-batch twice; the update divides by 2 when the block is
    wrapped for recompute (the kit's recompute forward is such a second pass);
  * once per optimizer step (a step pre-hook, after every micro-batch's backward):
    delta = load_balance_coeff * sign(mean(load) - load), centred: delta - mean(delta), added in
    place to expert_bias_E; tokens_per_expert_E is zeroed;
  * no auxiliary loss.

Deviation, on purpose: torchtitan keeps tokens_per_expert_E in fp32 (exact up to 2^24 per expert
per step); this adapter counts in int64 (count_dtype); set torch.float32 to reproduce torchtitan.
"""
import torch


class Adapter:
    layout = 'bt'
    count_dtype = torch.int64

    def __init__(self, cfg, layers, init_bias, run):
        # ---- lfmoe config -> torchtitan settings (docs/PEERS.md, the torchtitan table)
        self.top_k, self.E = cfg['K'], cfg['E']
        self.score_func = cfg['gate']                  # TokenChoiceTopKRouter.Config.score_func
        self.route_norm = cfg['norm_topk']             # .route_norm
        self.route_scale = cfg['route_scale']          # .route_scale
        self.load_balance_coeff = None                 # MoE.Config.load_balance_coeff
        if cfg['balance'] in ('aux', 'lossfree_aux'):
            raise ValueError('torchtitan has no auxiliary balance loss: make the dump with --balance lossfree or none')
        if cfg['balance'] == 'lossfree':
            if cfg['update_rule'] != 'sign' or cfg['bias_kind'] != 'add' or not cfg.get('bias_center'):
                raise ValueError('torchtitan\'s update is the centred, additive sign rule: make the dump with '
                                 '--bias-kind add --update-rule sign --bias-center')
            self.load_balance_coeff = cfg['bias_rate']
        self.recompute = run['recompute']              # activation checkpointing wraps the blocks
        # ---- the MoE module's buffers
        self.expert_bias_E = {l: init_bias[l].float().clone() for l in layers}
        self.tokens_per_expert_E = {l: torch.zeros(self.E, dtype=self.count_dtype) for l in layers}
        self.training = True

    def route(self, layer, inp, mode):
        self.training = mode != 'eval'                 # model.eval() for evaluation
        logits = inp['logits'].float()
        scores = torch.sigmoid(logits) if self.score_func == 'sigmoid' else torch.softmax(logits, dim=-1)
        bias = self.expert_bias_E[layer] if self.load_balance_coeff is not None else None
        choice = scores if bias is None else scores + bias
        idx = torch.topk(choice, self.top_k, dim=-1, sorted=False).indices
        top = scores.gather(-1, idx)
        if self.route_norm:
            top = top / (top.sum(-1, keepdim=True) + 1e-20)
        top = top * self.route_scale
        if self.training:
            self.count(layer, idx)
        return idx, top

    def count(self, layer, experts):
        with torch.no_grad():
            c = torch.zeros(experts.shape[0], self.E, dtype=torch.bool).scatter_(-1, experts, True).sum(0)
            self.tokens_per_expert_E[layer] += c.to(self.count_dtype)

    def load(self, layer):
        t = self.tokens_per_expert_E[layer]
        return t // 2 if self.recompute else t     # the pre-hook's correction for the recompute pass

    def end_step(self):
        """_update_expert_bias, registered with optimizers.register_step_pre_hook."""
        if self.load_balance_coeff is None:
            return
        with torch.no_grad():
            for l in self.expert_bias_E:
                tokens = self.load(l).float()
                delta = self.load_balance_coeff * torch.sign(tokens.mean() - tokens)
                delta = delta - delta.mean()
                self.expert_bias_E[l].add_(delta)
                self.tokens_per_expert_E[l].zero_()

    def saved_bias(self, layer):
        return self.expert_bias_E[layer]
