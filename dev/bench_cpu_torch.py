#!/usr/bin/env python3
"""bench_cpu_torch.py -- the PyTorch side of `make bench-cpu` (docs/SPEED.md).

A fast PyTorch eager implementation of exactly lfmoe's model and training step, in float32, timed
the way `build/train --profile` times lfmoe, so that the two can be compared on the same machine,
config, batch and thread count. The math is docs/MODEL.md's (tests/torch_ref.py is the float64
correctness reference of the same model; this one is written for speed):

  embedding; per layer pre-norm RMSNorm, attention with interleaved RoPE (causal softmax, scale
  1/sqrt(D)), RMSNorm, then a dense SwiGLU (l < n_dense) or the DeepSeekMoE FFN: S shared SwiGLU
  experts plus K of E routed SwiGLU experts per token, picked by top-K of the sigmoid/softmax
  score plus the loss-free bias, gated by the unbiased score (optionally normalised); final
  RMSNorm, untied LM head, mean cross-entropy (+ the aux loss with --balance aux); then the global
  gradient-norm clip (only when the norm exceeds it), AdamW (decay on every tensor of >= 2 dims,
  torch's eps convention, which is lfmoe's), the lr schedule, and the loss-free bias update (sign
  or error rule) from the step's integer counts.

Speed choices, none of which changes the math: q/k/v are one (3C, C) matmul and w1/w3 of every
SwiGLU one (2F, C) matmul (the parameters are stored stacked, so the element count is unchanged);
the S shared experts are one SwiGLU of hidden width S*F (their sum is the same); routed experts
use a sorted token dispatch (argsort of the assignments by expert, one matmul per expert on its
contiguous segment, index_add_ back); attention is scaled_dot_product_attention with is_causal
where this torch has it; AdamW with foreach=True; gradients set to None instead of zeroed.
Routing ties are broken as torch.topk does (lfmoe: lower index), which does not matter for speed.

The config comes from lfmoe itself: everything after `--` is passed to `build/train ...
--print-config`, so the same flags give the same model. Tokens: the windows of --data (an llm.c
token shard, as make_shards and bench_cpu.sh write), drawn at random, or uniformly random tokens.
Expert choice routing is not implemented (token choice only).

  /usr/bin/python3 dev/bench_cpu_torch.py --steps 8 --warmup 2 --threads 1 --data rand.bin -- --preset cpu

Output: a banner, then one machine-readable line (per-step medians after the warm-up steps):
  torch: steps N warmup W threads T tokens_per_step X tok_s_median X step_ms_median X cpu_ms_median X fwd_ms X
         bwd_ms X update_ms X params P loss_first X ln_V X attention sdpa|manual peak_rss_mb R
(one line in the output). --op-profile adds a table of the ops that took the most time in one
extra step (torch.profiler, self CPU time).
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SHARD_MAGIC = 20240520


def fail(msg):
    print(f'bench_cpu_torch: error: {msg}', file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------- config
def load_config(args):
    if args.config:
        with open(args.config) as f:
            return json.load(f)
    cmd = [args.train] + args.train_flags + ['--print-config']
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        fail(f'{args.train} not found: build it first (make) or pass --train PATH or --config FILE')
    except subprocess.CalledProcessError as e:
        fail(f'{" ".join(cmd)} failed: {e.stderr.strip()}')
    return json.loads(out)


class Cfg:
    def __init__(self, d):
        for k, v in d.items():
            setattr(self, k, v)
        for k in ('init_std rope_theta norm_eps bias_rate aux_alpha route_scale lr lr_min lr_decay beta1 beta2 '
                  'adam_eps weight_decay grad_clip').split():
            setattr(self, k, float(np.float32(getattr(self, k))))  # lfmoe's config floats are fp32
        self.D = self.C // self.H
        self.N = self.B * self.T
        if self.routing != 'token_choice':
            fail(f'routing {self.routing} is not implemented here (token choice only)')


def learning_rate(c, s):
    """docs/MODEL.md section 7 (ref/config.cpp learning_rate), 0-based step s."""
    if s < c.warmup:
        return float(np.float32(np.float32(c.lr) * np.float32(s + 1) / np.float32(c.warmup)))
    if c.schedule == 'multistep':
        return float(np.float32(c.lr * c.lr_decay ** sum(1 for m in c.milestones if s >= m)))
    progress = 1.0 if c.steps <= c.warmup else min(1.0, (s - c.warmup) / (c.steps - c.warmup))
    return float(np.float32(c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * progress))))


# ----------------------------------------------------------------------------- the model
class Model:
    """Parameters (float32 leaf tensors) and the forward of one micro-batch."""

    def __init__(self, c, gen, dev=torch.device('cpu')):
        self.c, self.dev = c, dev
        self.params = {}   # name -> tensor, in lfmoe's table order (stacked where noted)
        self.decay = {}

        def mat(name, *shape):
            t = torch.empty(*shape).normal_(0.0, c.init_std, generator=gen).to(dev).requires_grad_()
            self.params[name], self.decay[name] = t, True
            return t

        def norm(name):
            t = torch.ones(c.C, device=dev).requires_grad_()
            self.params[name], self.decay[name] = t, False
            return t

        mat('tok_emb', c.V, c.C)
        self.layers = []
        for l in range(c.L):
            p, L = f'layers.{l}.', {}
            L['attn_norm'] = norm(p + 'attn_norm')
            L['wqkv'] = mat(p + 'attn.wq|wk|wv', 3 * c.C, c.C)       # wq, wk, wv stacked by rows
            L['wo'] = mat(p + 'attn.wo', c.C, c.C)
            L['ffn_norm'] = norm(p + 'ffn_norm')
            if l < c.n_dense:
                L['w13'] = mat(p + 'ffn.w1|w3', 2 * c.Fd, c.C)       # w1 rows, then w3 rows
                L['w2'] = mat(p + 'ffn.w2', c.C, c.Fd)
            else:
                L['router'] = mat(p + 'moe.router', c.E, c.C)
                if c.S > 0:  # S shared experts = one SwiGLU of width S*F: (w1 of all S | w3 of all S), w2 side by side
                    L['sw13'] = mat(p + 'moe.shared.w1|w3', 2 * c.S * c.F, c.C)
                    L['sw2'] = mat(p + 'moe.shared.w2', c.C, c.S * c.F)
                L['ew13'] = mat(p + 'moe.experts.w1|w3', c.E, 2 * c.F, c.C)
                L['ew2'] = mat(p + 'moe.experts.w2', c.E, c.C, c.F)
                L['bias'] = torch.full((c.E,), 1.0 if c.bias_kind == 'mul' else 0.0, device=dev)
                L['counts'] = torch.zeros(c.E, dtype=torch.int64, device=dev)
            self.layers.append(L)
        self.final_norm = norm('final_norm')
        self.lm_head = mat('lm_head', c.V, c.C)
        self.tok_emb = self.params['tok_emb']
        # RoPE as complex rotations of the interleaved pairs: angle t * theta^(-2i/D), in double
        inv = c.rope_theta ** (-np.arange(0, c.D, 2, dtype=np.float64) / c.D)
        ang = np.arange(c.T, dtype=np.float64)[:, None] * inv[None, :]
        self.rot = torch.complex(torch.from_numpy(np.cos(ang).astype(np.float32)),
                                 torch.from_numpy(np.sin(ang).astype(np.float32)))[None, :, None, :].to(dev)  # (1,T,1,D/2)
        if hasattr(F, 'scaled_dot_product_attention'):
            self.attn_kind = 'sdpa'
            self.sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif hasattr(F, '_scaled_dot_product_attention'):  # torch 1.13: (q, k, v, mask, dropout, need_weights, causal)
            self.attn_kind = 'sdpa'
            self.sdpa = lambda q, k, v: F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]
        else:
            self.attn_kind = 'manual'
            mask = torch.ones(c.T, c.T, dtype=torch.bool, device=dev).tril()
            scale = 1.0 / math.sqrt(c.D)

            def manual(q, k, v):
                a = (q @ k.transpose(-1, -2)) * scale
                return a.masked_fill(~mask, float('-inf')).softmax(-1) @ v
            self.sdpa = manual

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c.norm_eps) * w

    def rope(self, x):  # x (B,T,H,D) -> rotated, same shape
        B, T, H, D = x.shape
        z = torch.view_as_complex(x.reshape(B, T, H, D // 2, 2))
        return torch.view_as_real(z * self.rot).reshape(B, T, H, D)

    def attention(self, h, L):
        c = self.c
        B, T = c.B, c.T
        qkv = (h @ L['wqkv'].t()).view(B, T, 3, c.H, c.D)
        q = self.rope(qkv[:, :, 0]).transpose(1, 2)  # (B,H,T,D)
        k = self.rope(qkv[:, :, 1]).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        y = self.sdpa(q, k, v).transpose(1, 2).reshape(B * T, c.C)
        return y @ L['wo'].t()

    @staticmethod
    def swiglu(x, w13, w2):
        h = x @ w13.t()
        h1, h3 = h.chunk(2, dim=-1)
        return (F.silu(h1) * h3) @ w2.t()

    def moe(self, h, L, train):
        c = self.c
        N, E, K = h.shape[0], c.E, c.K
        out = self.swiglu(h, L['sw13'], L['sw2']) if c.S > 0 else torch.zeros_like(h)
        logits = h @ L['router'].t()
        s = torch.sigmoid(logits) if c.gate == 'sigmoid' else torch.softmax(logits, dim=-1)
        key = s.detach()
        if c.balance == 'lossfree':
            key = key + L['bias'] if c.bias_kind == 'add' else key * L['bias']
        idx = torch.topk(key, K, dim=1, sorted=True).indices            # (N,K), descending key
        g = s.gather(1, idx)                                             # unbiased scores
        if c.norm_topk:
            g = c.route_scale * g / g.sum(1, keepdim=True)
        flat = idx.reshape(-1)                                            # (A,) token-major
        counts = torch.bincount(flat, minlength=E)
        if train:
            L['counts'] += counts
        order = torch.argsort(flat)                                       # assignments grouped by expert
        tok = order // K
        xs = h.index_select(0, tok)                                       # (A,C) in expert order
        ys = []
        for e, seg in enumerate(torch.split(xs, counts.tolist())):
            if seg.shape[0]:
                ys.append(self.swiglu(seg, L['ew13'][e], L['ew2'][e]))
        y = torch.cat(ys) * g.reshape(-1).index_select(0, order)[:, None]
        out = out.index_add(0, tok, y)
        aux = None
        if c.balance == 'aux':  # paper eq. 2; f from integer counts (constant), gradient through P
            sp = s / s.sum(1, keepdim=True) if c.gate == 'sigmoid' else s
            Tg = N if c.aux_per_batch else c.T
            G = N // Tg
            grp = torch.arange(N, device=h.device).repeat_interleave(K) // Tg
            cnt = torch.zeros(G * E, dtype=torch.float32, device=h.device).index_add_(0, grp * E + flat,
                                                                                      torch.ones(N * K, device=h.device))
            f = cnt.view(G, E) * (E / (K * Tg))
            aux = c.aux_alpha * (f * sp.view(G, Tg, E).mean(1)).sum(1).mean()
        return out, aux

    def forward(self, tokens, targets, train=True):
        c = self.c
        x = self.tok_emb[tokens.reshape(-1)]  # (N,C)
        aux = None
        for l, L in enumerate(self.layers):
            x = x + self.attention(self.rmsnorm(x, L['attn_norm']), L)
            h = self.rmsnorm(x, L['ffn_norm'])
            if l < c.n_dense:
                y = self.swiglu(h, L['w13'], L['w2'])
            else:
                y, a = self.moe(h, L, train)
                if a is not None:
                    aux = a if aux is None else aux + a
            x = x + y
        logits = self.rmsnorm(x, self.final_norm) @ self.lm_head.t()
        ce = F.cross_entropy(logits, targets.reshape(-1))
        return ce, aux

    def update_bias(self):
        c = self.c
        if c.balance != 'lossfree':
            return
        u = float(c.bias_rate)
        for L in self.layers:
            if 'counts' not in L:
                continue
            cnt, tot = L['counts'], int(L['counts'].sum())
            if tot > 0:
                if c.update_rule == 'sign':  # decided in integers: E*c_i against sum c
                    L['bias'] += u * torch.sign(tot - c.E * cnt).to(torch.float32)
                else:
                    mean = tot / c.E
                    L['bias'] += (u * (mean - cnt.double()) / mean).to(torch.float32)


# ----------------------------------------------------------------------------- data
def read_shard(path):
    head = np.fromfile(path, dtype='<i4', count=256)
    if len(head) < 256 or head[0] != SHARD_MAGIC or head[1] not in (1, 2):
        fail(f'{path} is not a token shard (llm.c layout, magic {SHARD_MAGIC})')
    dt = '<u2' if head[1] == 1 else '<u4'
    tok = np.fromfile(path, dtype=dt, offset=1024)
    if len(tok) != head[2]:
        fail(f'{path}: header says {head[2]} tokens, file holds {len(tok)}')
    return tok.astype(np.int64)


class Batches:
    """Micro-batches of B windows of T+1 tokens (inputs, targets shifted by one), drawn at random."""

    def __init__(self, c, data, seed, dev=torch.device('cpu')):
        self.c, self.rng, self.dev = c, np.random.default_rng(seed), dev
        self.tok = data
        if data is not None and len(data) < c.T + 1:
            fail(f'--data holds {len(data)} tokens, fewer than one window of T+1 = {c.T + 1}')

    def next(self):
        c = self.c
        if self.tok is None:
            w = self.rng.integers(0, c.V, size=(c.B, c.T + 1))
        else:
            n_win = (len(self.tok) - 1) // c.T
            starts = self.rng.integers(0, n_win, size=c.B) * c.T
            w = np.stack([self.tok[s:s + c.T + 1] for s in starts])
        if w.max() >= c.V:
            fail(f'token id {w.max()} >= vocabulary {c.V}')
        w = torch.from_numpy(w).to(self.dev)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()


class DumpBatches:
    """The micro-batches recorded in step 0 of an lfmoe dump."""

    def __init__(self, tokens, targets):
        self.tok, self.tgt, self.i = tokens, targets, 0  # (G,B,T)

    def next(self):
        i, self.i = self.i, self.i + 1
        return torch.from_numpy(self.tok[i].astype(np.int64)), torch.from_numpy(self.tgt[i].astype(np.int64))


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    n = int.from_bytes(data[:8], 'little')
    header = json.loads(data[8:8 + n])
    meta = header.pop('__metadata__', {})
    dts = {'F32': '<f4', 'I32': '<i4', 'I64': '<i8', 'F64': '<f8'}
    out = {}
    for name, info in header.items():
        b, e = info['data_offsets']
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=dts[info['dtype']]).reshape(info['shape'])
    return out, meta


def load_dump_params(m, d, prefix):
    """Copies lfmoe's tensors (docs/FORMAT.md names) into the stacked parameters of this model."""
    c = m.c
    t = lambda n: torch.from_numpy(np.array(d[prefix + n], dtype=np.float32))
    P = {'tok_emb': t('tok_emb'), 'final_norm': t('final_norm'), 'lm_head': t('lm_head')}
    for l in range(c.L):
        p = f'layers.{l}.'
        P[p + 'attn_norm'], P[p + 'ffn_norm'], P[p + 'attn.wo'] = t(p + 'attn_norm'), t(p + 'ffn_norm'), t(p + 'attn.wo')
        P[p + 'attn.wq|wk|wv'] = torch.cat([t(p + 'attn.' + w) for w in ('wq', 'wk', 'wv')])
        if l < c.n_dense:
            P[p + 'ffn.w1|w3'] = torch.cat([t(p + 'ffn.w1'), t(p + 'ffn.w3')])
            P[p + 'ffn.w2'] = t(p + 'ffn.w2')
        else:
            P[p + 'moe.router'] = t(p + 'moe.router')
            if c.S > 0:
                P[p + 'moe.shared.w1|w3'] = torch.cat([t(p + 'moe.shared.w1').reshape(c.S * c.F, c.C),
                                                       t(p + 'moe.shared.w3').reshape(c.S * c.F, c.C)])
                P[p + 'moe.shared.w2'] = t(p + 'moe.shared.w2').permute(1, 0, 2).reshape(c.C, c.S * c.F)
            P[p + 'moe.experts.w1|w3'] = torch.cat([t(p + 'moe.experts.w1'), t(p + 'moe.experts.w3')], dim=1)
            P[p + 'moe.experts.w2'] = t(p + 'moe.experts.w2')
    if set(P) != set(m.params):
        fail(f'parameter names differ: {sorted(set(P) ^ set(m.params))}')
    with torch.no_grad():
        for n, v in P.items():
            if tuple(v.shape) != tuple(m.params[n].shape):
                fail(f'{n}: shape {tuple(v.shape)} from the dump, {tuple(m.params[n].shape)} here')
            m.params[n].copy_(v)


def check_dump(path):
    """Step 0 of an lfmoe dump (train --dump, 1 step) run by this file's model from the dump's initial
    parameters and tokens: loss, gradient norm, expert counts, biases after the step and parameters
    after the step must agree with lfmoe's (float32 against float32, different summation orders)."""
    d, meta = read_safetensors(path)
    c = Cfg(json.loads(meta['config']))
    if int(meta.get('steps', 1)) != 1:
        fail('--check-dump needs a 1-step dump (train --dump FILE without --dump-steps)')
    m = Model(c, torch.Generator().manual_seed(0))
    load_dump_params(m, d, 'init/')
    moe = [l for l in range(c.L) if l >= c.n_dense]
    for l in moe:
        m.layers[l]['bias'] = torch.from_numpy(np.array(d[f'init/layers.{l}.moe.bias'], dtype=np.float32))
    opt = make_optimizer(m)
    loss, norm = train_step(m, opt, DumpBatches(d['step0/tokens'], d['step0/targets']), 0,
                            dict(fwd=0.0, bwd=0.0, update=0.0))
    ref_loss, ref_norm = float(d['step0/loss'][0]), float(d['step0/grad_norm'][0])
    lr = float(d['step0/lr'][0])
    after = Model(c, torch.Generator().manual_seed(0))
    load_dump_params(after, d, 'final/')
    worst, off = 0.0, 0
    total = 0
    for n, p in m.params.items():
        diff = (p.detach() - after.params[n]).abs()
        worst = max(worst, float(diff.max()))
        off += int((diff > 0.01 * lr).sum())
        total += diff.numel()
    problems = []
    if abs(loss - ref_loss) > 1e-5 * abs(ref_loss):
        problems.append(f'loss {loss:.7f} vs lfmoe {ref_loss:.7f}')
    if abs(norm - ref_norm) > 1e-4 * ref_norm:
        problems.append(f'grad norm {norm:.7g} vs lfmoe {ref_norm:.7g}')
    for l in moe:
        got = m.layers[l]['counts'].numpy()
        if not np.array_equal(got, d[f'step0/layers.{l}.counts']):
            problems.append(f'layer {l} expert counts {got.tolist()} vs lfmoe {d[f"step0/layers.{l}.counts"].tolist()}')
        elif c.balance == 'lossfree' and not np.allclose(m.layers[l]['bias'].numpy(), d[f'step0/layers.{l}.bias_after'],
                                                         rtol=0, atol=1e-7):
            problems.append(f'layer {l} bias after the step differs')
    if off > 1e-3 * total:  # Adam's first step is ~lr*sign(g): only gradients ~0 may land elsewhere
        problems.append(f'{off} of {total} parameters after the step differ by more than 1% of lr')
    print(f'check-dump {path}: loss {loss:.6f} (lfmoe {ref_loss:.6f}), grad norm {norm:.6g} (lfmoe {ref_norm:.6g}), '
          f'{off}/{total} parameters off by > 1% of lr (largest {worst / lr:.3g} lr): '
          + ('; '.join(problems) if problems else 'same model'))
    return 1 if problems else 0


# ----------------------------------------------------------------------------- the step
def make_optimizer(m):
    c = m.c
    dec = [t for n, t in m.params.items() if m.decay[n]]
    nodec = [t for n, t in m.params.items() if not m.decay[n]]
    groups = [dict(params=dec, weight_decay=c.weight_decay), dict(params=nodec, weight_decay=0.0)]
    try:
        return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.adam_eps, foreach=True)
    except TypeError:  # a torch without foreach
        return torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.adam_eps)


def clock(dev):
    """perf_counter after the device has finished its queued work (a no-op wait on the CPU)."""
    if dev.type == 'cuda':
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def train_step(m, opt, batches, step, times):
    """One optimizer step; adds its fwd/bwd/update seconds to `times`. Returns the mean loss."""
    c = m.c
    params = list(m.params.values())
    for p in params:
        p.grad = None
    for L in m.layers:  # the step's expert counts, which the bias update uses
        if 'counts' in L:
            L['counts'].zero_()
    loss_sum = 0.0
    for _ in range(c.grad_accum):
        tokens, targets = batches.next()
        t0 = clock(m.dev)
        ce, aux = m.forward(tokens, targets)
        loss = ce if aux is None else ce + aux
        t1 = clock(m.dev)
        (loss / c.grad_accum).backward()
        t2 = clock(m.dev)
        times['fwd'] += t1 - t0
        times['bwd'] += t2 - t1
        loss_sum += float(ce) / c.grad_accum
        if not math.isfinite(loss_sum):
            fail(f'step {step + 1}: loss is {loss_sum}')
    t0 = clock(m.dev)
    with torch.no_grad():
        grads = [p.grad for p in params if p.grad is not None]
        if hasattr(torch, '_foreach_norm'):
            norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        else:
            norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
        if c.grad_clip > 0 and norm > c.grad_clip:
            s = float(np.float32(c.grad_clip / norm))
            if hasattr(torch, '_foreach_mul_'):
                torch._foreach_mul_(grads, s)
            else:
                for g in grads:
                    g.mul_(s)
        lr = learning_rate(c, step)
        for grp in opt.param_groups:
            grp['lr'] = lr
        opt.step()
        m.update_bias()
    times['update'] += clock(m.dev) - t0
    return loss_sum, norm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='Flags after -- go to build/train --print-config (e.g. -- --preset cpu --experts 64).')
    ap.add_argument('--steps', type=int, default=8, help='optimizer steps (default 8)')
    ap.add_argument('--warmup', type=int, default=2, help='leading steps left out of the medians (default 2)')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (default: OMP_NUM_THREADS, else all cores)')
    ap.add_argument('--data', help='token shard to draw windows from (default: uniformly random tokens)')
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--train', default='build/train', help='the lfmoe trainer whose --print-config gives the config')
    ap.add_argument('--config', help='a config JSON (build/train ... --print-config) instead of running --train')
    ap.add_argument('--op-profile', action='store_true', help='after the timed steps, profile one more step and '
                    'print the ops with the most self CPU time')
    ap.add_argument('--check-dump', metavar='DUMP', nargs='+', help='instead of timing: run step 0 of each 1-step '
                    'lfmoe dump (train --dump) from its initial parameters and compare loss, grad norm, counts, '
                    'biases and parameters after the step (one line per dump; exit 1 if any differs)')
    ap.add_argument('--device', default='cpu', help='torch device: cpu (default) or cuda (the GPU benchmark of '
                    'dev/gpu_check.sh; timings then wait for the GPU at every phase boundary)')
    ap.add_argument('--compile', action='store_true', help='wrap the forward in torch.compile (torch >= 2.0); the '
                    'first steps compile, so give --warmup enough steps')
    ap.add_argument('train_flags', nargs='*', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check_dump:
        torch.set_num_threads(args.threads or 1)
        sys.exit(max(check_dump(d) for d in args.check_dump))
    if args.steps < 1 or args.warmup < 0:
        fail('--steps must be >= 1 and --warmup >= 0')
    threads = args.threads or int(os.environ.get('OMP_NUM_THREADS', '0') or 0) or os.cpu_count()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.set_default_dtype(torch.float32)
    c = Cfg(load_config(args))
    dev = torch.device(args.device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        fail(f'--device {args.device}: this torch ({torch.__version__}) sees no CUDA device')
    gen = torch.Generator().manual_seed(args.seed)
    m = Model(c, gen, dev)
    if args.compile:
        if not hasattr(torch, 'compile'):
            fail(f'--compile needs torch >= 2.0 (this is {torch.__version__})')
        m.forward = torch.compile(m.forward)
    opt = make_optimizer(m)
    batches = Batches(c, read_shard(args.data) if args.data else None, args.seed, dev)
    n_params = sum(p.numel() for p in m.params.values())
    print(f'torch {torch.__version__}: {n_params} parameters, V {c.V} C {c.C} L {c.L} (dense {c.n_dense}) '
          f'E {c.E} K {c.K} S {c.S} F {c.F} T {c.T} B {c.B} x {c.grad_accum}, gate {c.gate}, balance {c.balance}, '
          f'{threads} threads, attention {m.attn_kind}, device {dev}{" (torch.compile)" if args.compile else ""}',
          flush=True)
    steps, losses = [], []
    for s in range(args.steps):
        times = dict(fwd=0.0, bwd=0.0, update=0.0)
        c0, t0 = time.process_time(), clock(dev)
        losses.append(train_step(m, opt, batches, s, times)[0])
        dt, cpu = clock(dev) - t0, time.process_time() - c0
        steps.append((dt, times, cpu))
        print(f'step {s + 1}/{args.steps} loss {losses[-1]:.4f} {c.B * c.T * c.grad_accum / dt:.0f} tok/s', flush=True)
    w = min(args.warmup, len(steps) - 1)
    meas = steps[w:]
    med = lambda f: statistics.median(f(x) for x in meas)
    tok = c.B * c.T * c.grad_accum
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f'torch: steps {len(meas)} warmup {w} threads {threads} tokens_per_step {tok} '
          f'tok_s_median {med(lambda x: tok / x[0]):.1f} step_ms_median {med(lambda x: x[0]) * 1e3:.3f} '
          f'cpu_ms_median {med(lambda x: x[2]) * 1e3:.3f} '
          f'fwd_ms {med(lambda x: x[1]["fwd"]) * 1e3:.3f} bwd_ms {med(lambda x: x[1]["bwd"]) * 1e3:.3f} '
          f'update_ms {med(lambda x: x[1]["update"]) * 1e3:.3f} params {n_params} loss_first {losses[0]:.4f} '
          f'ln_V {math.log(c.V):.4f} attention {m.attn_kind} device {dev.type} compile {int(args.compile)} '
          f'peak_rss_mb {rss:.1f}', flush=True)
    if args.op_profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(m, opt, batches, args.steps, dict(fwd=0.0, bwd=0.0, update=0.0))
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))


if __name__ == '__main__':
    main()
