"""The planted-bug suite of the conformance kit: each class is one of the example adapters with one
mistake that users of Megatron-Core, torchtitan or HF DeepseekV3 have reported or that the peers'
code comments warn about. tests/check_conformance.sh runs every one and requires the kit to report
it with the DIAGNOSIS line named in BUGS; docs/PEERS.md has the table of bugs and verdicts.

    /usr/bin/python3 tools/conformance/kit.py DUMP --adapter tools/conformance/adapters/bugs.py:BiasBf16
"""
import torch

import deepseek_v3_inference_style as ds_inference
import hf_deepseek_v3_style as hf_deepseek_v3
import megatron_style as megatron
import torchtitan_style as torchtitan


class BiasBf16(hf_deepseek_v3.Adapter):
    """model.to(torch.bfloat16) also casts the e_score_correction_bias buffer: the bias is stored and
    updated in bf16 (Megatron guards against this with _maintain_float32_expert_bias)."""
    bias_dtype = torch.bfloat16


class CountsBf16(megatron.Adapter):
    """The load accumulated in bf16 (a counts buffer created in the model's dtype): exact only up to
    256 assignments per expert."""
    count_dtype = torch.bfloat16


class CountsFp32(megatron.Adapter):
    """The load accumulated in fp32, as Megatron-Core's local_tokens_per_expert and torchtitan's
    tokens_per_expert_E are: exact only up to 2^24 assignments per expert per step."""
    count_dtype = torch.float32


class UpdateEveryMicroBatch(hf_deepseek_v3.Adapter):
    """The bias update placed in a per-micro-batch hook (after each backward) instead of once per
    optimizer step: with gradient accumulation it runs grad_accum times per step, each time on one
    micro-batch's load."""

    def end_micro_batch(self):
        super().end_step()

    def end_step(self):
        pass


class BiasInGates(hf_deepseek_v3.Adapter):
    """The gate weights gathered from the biased selection scores instead of the plain scores, so the
    bias changes how much an expert contributes, not only which experts are chosen."""

    def gate_weights(self, scores, idx, layer):
        return super().gate_weights(scores + self.e_score_correction_bias[layer], idx, layer)


class BiasNeverUpdated(megatron.Adapter):
    """The update never runs (the router was not in training mode at the optimizer step, a frozen
    bias, or a hook that was never registered); the load is still reset every step."""

    def end_step(self):
        for tokens in self.local_tokens_per_expert.values():
            tokens.zero_()


class OutOfPlaceUpdate(torchtitan.Adapter):
    """`bias = bias + delta` instead of `bias.add_(delta)`: routing follows the new tensor, but the
    registered buffer that checkpoints save is another object and stays at its initial value."""

    def __init__(self, cfg, layers, init_bias, run):
        super().__init__(cfg, layers, init_bias, run)
        self.registered = dict(self.expert_bias_E)      # what state_dict() would hold

    def end_step(self):
        if self.load_balance_coeff is None:
            return
        for l in list(self.expert_bias_E):
            tokens = self.load(l).float()
            delta = self.load_balance_coeff * torch.sign(tokens.mean() - tokens)
            self.expert_bias_E[l] = self.expert_bias_E[l] + (delta - delta.mean())
            self.tokens_per_expert_E[l].zero_()

    def saved_bias(self, layer):
        return self.registered[layer]


class EvalCounted(torchtitan.Adapter):
    """Evaluation forwards counted as load (evaluation run without model.eval(), or a count that
    does not look at the training flag)."""

    def route(self, layer, inp, mode):
        idx, top = super().route(layer, inp, mode)
        if mode == 'eval':
            self.count(layer, idx)
        return idx, top


class RecomputeCounted(megatron.Adapter):
    """The load counted in every training-mode forward, so activation checkpointing's recompute
    forward counts each micro-batch twice (torchtitan's comment describes this double count; it
    halves the load for it)."""

    def count_if_grad(self, layer, idx):
        if self.enable_expert_bias:
            self.count(layer, idx)


class CentredWhenNot(megatron.Adapter):
    """torchtitan's centred update (delta - mean(delta)) in a run whose update is not centred."""

    def updated_bias(self, tokens, bias):
        tokens = tokens.float()
        delta = torch.sign(tokens.mean() - tokens) * self.bias_update_rate
        return bias + (delta - delta.mean())


class UncentredWhenCentred(torchtitan.Adapter):
    """The plain sign update in a run whose update is centred (torchtitan's): the mean of the deltas
    is not subtracted."""

    def end_step(self):
        if self.load_balance_coeff is None:
            return
        with torch.no_grad():
            for l in self.expert_bias_E:
                tokens = self.load(l).float()
                self.expert_bias_E[l].add_(self.load_balance_coeff * torch.sign(tokens.mean() - tokens))
                self.tokens_per_expert_E[l].zero_()


class ScoresBf16(ds_inference.Adapter):
    """Sigmoid scores computed in bf16, as DeepSeek-V3's inference Gate does when the model runs in
    bf16: keys that differ in fp32 collapse or swap, and the gates carry bf16 rounding."""
    score_dtype = torch.bfloat16


# class name -> (the DIAGNOSIS name the kit must print, the dump it runs on: a key of the dumps in
# tests/check_conformance.sh, whether a version 1 dump (no router logits: replay only) shows it,
# extra kit flags)
BUGS = {
    'BiasBf16': ('bias-bf16', 'plain', True, []),
    'CountsBf16': ('counts-bf16', 'plain', True, []),
    'CountsFp32': ('counts-fp32', 'plain', True, []),
    'UpdateEveryMicroBatch': ('update-every-micro-batch', 'plain', True, []),
    'BiasInGates': ('bias-in-gates', 'plain', False, []),
    'BiasNeverUpdated': ('bias-never-updated', 'plain', True, []),
    'OutOfPlaceUpdate': ('out-of-place-update', 'centred', False, []),
    'EvalCounted': ('eval-counted', 'centred', False, []),
    'RecomputeCounted': ('recompute-counted', 'plain', False, []),
    'CentredWhenNot': ('update-centred', 'plain', True, []),
    'UncentredWhenCentred': ('update-not-centred', 'centred', False, []),
    'ScoresBf16': ('scores-bf16', 'plain', False, ['--router-only']),
}

if __name__ == '__main__':   # one line per bug, for tests/check_conformance.sh
    for name, (diag, dump, v1, flags) in BUGS.items():
        print(name, diag, dump, 'v1' if v1 else 'v2', *flags)
