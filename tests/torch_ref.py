#!/usr/bin/env python3
"""torch_ref.py -- an independent PyTorch reference for lfmoe dump files.

Written from the math in docs/MODEL.md and docs/FORMAT.md only (nothing is imported from the
C++ side). It rebuilds the model in float64 from a dump's `init/*` tensors, recomputes what lfmoe
recorded and compares:

  check DUMP [--verbose]   step 0 of a dump: logits, CE and aux loss, router scores, routing, gates
                           (micro-batch 0), the step's gradients over every micro-batch (autograd),
                           grad norm, counts, bias update, and (1-step dumps) the parameters after
                           the step.
  trajectory DUMP          every step of a multi-step dump (--dump-steps n): per-step loss, aux
                           loss, grad norm, counts and biases, and the final parameters.
  selftest                 writes a float32 dump with this file's own model (a stand-in for another
                           implementation), checks that it passes, then corrupts it in several ways
                           and checks that each corruption is caught (and that an exact tie is
                           reported as a near-tie, not a failure).

Run with Debian's python3-torch: /usr/bin/python3 tests/torch_ref.py check x.safetensors
Exit status: 0 all within budget, 1 a mismatch, 2 a bad or unreadable file.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- budgets
# Every float comparison passes element-wise when |got - ref| <= atol_rel * max|ref| + rtol * |ref|.
# The reference is float64, lfmoe is plain fp32 (unit roundoff u = 6e-8), so the budgets measure
# fp32 rounding, not modelling choices. atol is scaled by the tensor's largest magnitude because
# fp32 rounding in a sum is proportional to the size of the terms, not of the (possibly cancelled)
# result. They were set before looking at lfmoe's numbers: a float32 run of this same model (written
# as a dump by `selftest`) uses at most ~2.5% of each budget against the float64 run (activations,
# gradients and 10-step parameters alike); the ~40x headroom is for a different order of summation
# (sequential fp32 loops instead of blocked BLAS sums), which can make rounding up to ~sqrt(n) worse.
BUDGETS = {
    # logits, router scores, gates of micro-batch 0: a few hundred fp32 roundings deep
    'activation': dict(rtol=1e-5, atol_rel=1e-5),
    # CE / aux loss / grad norm of step 0: means of many terms, accumulated in double by lfmoe
    'loss': dict(rtol=1e-5, atol_rel=0.0),
    # step-0 gradients, summed over micro-batches: backprop through softmax(CE) and attention
    # cancels terms, so small elements are only known to ~1e-5 of the tensor's scale
    'grad': dict(rtol=1e-4, atol_rel=2e-5),
    # parameters after one AdamW step recomputed from lfmoe's own gradient (see check_optimizer):
    # a few fp32 roundings of p and of lr*m/sqrt(v)
    'param': dict(rtol=1e-6, atol_rel=1e-6),
    # trajectory: per-step loss / aux loss / grad norm after the models drifted apart for a few steps
    'traj_loss': dict(rtol=1e-4, atol_rel=0.0),
    # trajectory: parameters after n steps. Adam normalises every update to ~lr * m/sqrt(v), so an
    # element's error is ~lr times the relative error of its gradient, per step: atol_lr (in units
    # of the run's largest lr) allows 5% of one step, i.e. gradients of small elements known to a
    # few 1e-3 relative. A gradient element that is ~0, its sign decided by rounding, could still
    # move by 2*lr in one implementation and not the other: that shows up as an isolated element
    # off by ~lr (the failure message prints it) and would need a look, not a wider budget.
    'traj_param': dict(rtol=1e-4, atol_rel=1e-4, atol_lr=0.05),
    # the learning rate against MODEL.md's schedule at the dump's optimizer step: the same formula on
    # the same fp32 inputs, rounded to fp32 once; the C library's cos and Python's may differ in the
    # last bit of a double, which can move the fp32 result by one ulp (1.2e-7) at a rounding boundary
    'lr': dict(rtol=2.4e-7, atol_rel=0.0),
}
# A gradient tensor that is zero in exact arithmetic (the router's with K = 1 and norm_topk and no aux
# loss: every gate is the constant route_scale, so dg/ds = (scale - g) dg / Z = 0) is rounding noise
# in both implementations, and a budget relative to its own largest element (itself noise) means
# nothing. Such a tensor is recognised by its float64 reference: at most ZERO_GRAD_REL of the step's
# largest gradient element G. float64 noise in a cancelling sum is ~1e-16 of its terms, and no
# gradient these models really have is below ~1e-7 G, so 1e-10 separates the two cases with 3
# orders of magnitude on either side. It is then compared against the absolute floor
# ZERO_GRAD_FLOOR * G: fp32 noise of a sum whose terms are of the step's gradient scale is ~u = 6e-8
# of it, so 1e-7 G admits that and nothing that a real gradient of the tensor could be. Every other
# tensor keeps the 'grad' budget unchanged.
ZERO_GRAD_REL = 1e-10
ZERO_GRAD_FLOOR = 1e-7
# Routing is decided on keys (s, s+b or s*b). Two keys closer than the score budget cannot be
# ordered reliably by an fp32 implementation: such a disagreement is a near-tie (reported, and the
# dump's routing is used from there on), anything farther apart is a failure. 1e-5 of the key's
# magnitude = the activation budget the scores themselves must meet (~150 fp32 roundings).
NEAR_TIE_RTOL = 1e-5
# In a trajectory the two models drift apart (the parameters differ by traj_param); keys after step
# 0 get a larger budget in proportion.
NEAR_TIE_RTOL_TRAJ = 1e-4

torch.set_default_dtype(torch.float64)

# ----------------------------------------------------------------------------- safetensors
_DTYPES = {'F32': np.float32, 'F64': np.float64, 'I32': np.int32, 'I64': np.int64}


class DumpError(Exception):
    """A file that is not a readable lfmoe dump (exit status 2)."""


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata dict). Checks sizes and bounds."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise DumpError(f'cannot read {path}: {e}')
    if len(data) < 8:
        raise DumpError(f'{path}: {len(data)} bytes, too short for a safetensors file (8-byte header length)')
    n = struct.unpack('<Q', data[:8])[0]
    if 8 + n > len(data):
        raise DumpError(f'{path}: header length {n} runs past the end of the file ({len(data)} bytes); truncated?')
    try:
        header = json.loads(data[8:8 + n].decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise DumpError(f'{path}: header is not JSON ({e})')
    meta = header.pop('__metadata__', {}) or {}
    base, tensors = 8 + n, {}
    for name, info in header.items():
        if info.get('dtype') not in _DTYPES:
            raise DumpError(f'{path}: tensor {name} has dtype {info.get("dtype")}, expected one of {list(_DTYPES)}')
        dt = np.dtype(_DTYPES[info['dtype']]).newbyteorder('<')
        shape = [int(d) for d in info['shape']]
        b, e = info['data_offsets']
        if e - b != int(np.prod(shape, dtype=np.int64)) * dt.itemsize or b < 0 or base + e > len(data):
            raise DumpError(f'{path}: tensor {name} shape {shape} does not fit its data_offsets {[b, e]}')
        tensors[name] = np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=base + b).reshape(shape)
    if 'crc32:__header__' in meta:  # lfmoe's checksums (docs/FORMAT.md, "Checksums"), verified with zlib
        _verify_checksums(path, data, base, header, meta)
    return tensors, meta


def _verify_checksums(path, data, base, header, meta):
    import zlib
    text = b''
    for k in sorted(meta, key=lambda k: k.encode()):
        if k != 'crc32:__header__':
            text += k.encode() + b'\0' + str(meta[k]).encode() + b'\0'
    for name in sorted(header, key=lambda k: k.encode()):
        t = header[name]
        text += (f"{name}\0{t['dtype']}\0{','.join(str(d) for d in t['shape'])}\0"
                 f"{t['data_offsets'][0]}\0{t['data_offsets'][1]}\0").encode()
    if '%08x' % zlib.crc32(text) != meta['crc32:__header__']:
        raise DumpError(f'{path}: header checksum mismatch: the metadata or the tensor table was changed or damaged')
    for name, t in header.items():
        b, e = t['data_offsets']
        if meta.get('crc32:' + name) != '%08x' % zlib.crc32(data[base + b:base + e]):
            raise DumpError(f'{path}: tensor {name}: checksum mismatch (or none): its data was changed or damaged')


def write_safetensors(path, tensors, meta):
    """Writes {name: np.ndarray} (F32/F64/I32/I64) with string metadata."""
    names = {np.dtype(v): k for k, v in _DTYPES.items()}
    header, off, blobs = {'__metadata__': meta}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': names[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)  # keep tensor data 8-byte aligned
    with open(path + '.tmp', 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
    os.replace(path + '.tmp', path)


# ----------------------------------------------------------------------------- config and table
class Cfg:
    """The dump's config (keys = ref::Config field names). Floats are fp32 in lfmoe, so they are
    rounded to fp32 here too (e.g. beta1 0.9f = 0.89999998)."""
    INTS = 'V C H L n_dense Fd E K S F T ec_chunk B grad_accum steps warmup'.split()
    FLOATS = ('init_std rope_theta norm_eps bias_rate aux_alpha route_scale lr lr_min lr_decay beta1 beta2 '
              'adam_eps weight_decay grad_clip').split()

    def __init__(self, d):
        try:
            for k in self.INTS:
                setattr(self, k, int(d[k]))
            for k in self.FLOATS:
                setattr(self, k, float(np.float32(d[k])))
            for k in ('aux_per_batch', 'norm_topk', 'ec_shuffle', 'bias_center'):
                setattr(self, k, bool(d[k]))
            for k in ('gate', 'routing', 'balance', 'bias_kind', 'update_rule', 'schedule'):
                setattr(self, k, str(d[k]))
            self.milestones = [int(m) for m in d['milestones']]
        except KeyError as e:
            raise DumpError(f'config metadata lacks key {e}; is this an lfmoe dump of a different version?')
        allowed = dict(gate=('sigmoid', 'softmax'), routing=('token_choice', 'expert_choice'),
                       balance=('none', 'aux', 'lossfree', 'lossfree_aux'), bias_kind=('add', 'mul'),
                       update_rule=('sign', 'error'), schedule=('cosine', 'multistep'))
        for k, vals in allowed.items():
            if getattr(self, k) not in vals:
                raise DumpError(f'config {k} = {getattr(self, k)!r}, expected one of {vals}')
        self.D = self.C // self.H
        self.N = self.B * self.T
        self.chunk = self.ec_chunk if self.ec_chunk > 0 else self.N
        # MODEL.md section 6: which balance modes route with a bias, which add the aux loss
        self.has_bias = self.balance in ('lossfree', 'lossfree_aux')
        self.has_aux = self.balance in ('aux', 'lossfree_aux')

    def moe_layers(self):
        return [l for l in range(self.L) if l >= self.n_dense]


def param_table(c):
    """[(name, shape)] in the order of FORMAT.md's tensor table."""
    t = [('tok_emb', (c.V, c.C))]
    for l in range(c.L):
        p = f'layers.{l}.'
        t += [(p + 'attn_norm', (c.C,))] + [(p + 'attn.' + w, (c.C, c.C)) for w in ('wq', 'wk', 'wv', 'wo')]
        t += [(p + 'ffn_norm', (c.C,))]
        if l < c.n_dense:
            t += [(p + 'ffn.w1', (c.Fd, c.C)), (p + 'ffn.w3', (c.Fd, c.C)), (p + 'ffn.w2', (c.C, c.Fd))]
        else:
            t += [(p + 'moe.router', (c.E, c.C))]
            for grp, n in (('shared', c.S), ('experts', c.E)):
                if n > 0:
                    t += [(p + f'moe.{grp}.w1', (n, c.F, c.C)), (p + f'moe.{grp}.w3', (n, c.F, c.C)),
                          (p + f'moe.{grp}.w2', (n, c.C, c.F))]
    return t + [('final_norm', (c.C,)), ('lm_head', (c.V, c.C))]


def bias_name(l):
    return f'layers.{l}.moe.bias'


# ----------------------------------------------------------------------------- the model
def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, c):
    """x (B,T,H,D): rotate the interleaved pairs (x[2i], x[2i+1]) by pos * theta^(-2i/D)."""
    B, T, H, D = x.shape
    inv = c.rope_theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)   # (D/2)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]        # (T, D/2)
    cos, sin = torch.cos(ang).to(x.dtype)[None, :, None, :], torch.sin(ang).to(x.dtype)[None, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(B, T, H, D)


def attention(h, P, l, c):
    B, T, C = h.shape
    p = f'layers.{l}.attn.'
    q = rope((h @ P[p + 'wq'].T).view(B, T, c.H, c.D), c).transpose(1, 2)  # (B,H,T,D)
    k = rope((h @ P[p + 'wk'].T).view(B, T, c.H, c.D), c).transpose(1, 2)
    v = (h @ P[p + 'wv'].T).view(B, T, c.H, c.D).transpose(1, 2)
    att = (q @ k.transpose(-1, -2)) / math.sqrt(c.D)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    att = torch.softmax(att.masked_fill(~mask, float('-inf')), dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    return y @ P[p + 'wo'].T


def swiglu(x, w1, w3, w2):
    """x (n,C), w1/w3 (F,C), w2 (C,F)."""
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


class Routing:
    """Token-major assignment list, as in ref/moe.h: token t owns a_exp[tok_off[t]:tok_off[t+1]]."""

    def __init__(self, tok_off, a_exp):
        self.tok_off = np.asarray(tok_off, dtype=np.int64)
        self.a_exp = np.asarray(a_exp, dtype=np.int64)
        self.a_tok = np.repeat(np.arange(len(self.tok_off) - 1), np.diff(self.tok_off))

    def same(self, other):
        return np.array_equal(self.tok_off, other.tok_off) and np.array_equal(self.a_exp, other.a_exp)

    def counts(self, E):
        return np.bincount(self.a_exp, minlength=E).astype(np.int64)


def selection_keys(s, bias, c):
    """s (N,E) scores as float64 numpy; the key the top-K is taken on."""
    if not c.has_bias:
        return s
    b = bias.astype(np.float64)[None, :]
    return s + b if c.bias_kind == 'add' else s * b


def route_token_choice(key, K):
    """Top-K per token by key, descending; equal keys: lower expert index first (stable sort)."""
    N = key.shape[0]
    top = np.argsort(-key, axis=1, kind='stable')[:, :K]
    return Routing(np.arange(N + 1) * K, top.reshape(-1))


def route_expert_choice(s, order, c):
    """Chunks of c.chunk tokens in `order`; each expert takes the cap tokens of highest score (equal
    scores: the token earlier in `order`). A token's assignments are in ascending expert order."""
    N, E = s.shape
    cap = c.chunk * c.K // E
    chosen = np.zeros((N, E), dtype=bool)
    for start in range(0, N, c.chunk):
        toks = order[start:start + c.chunk]
        for e in range(E):
            best = np.argsort(-s[toks, e], kind='stable')[:cap]
            chosen[toks[best], e] = True
    tok_off = np.concatenate([[0], np.cumsum(chosen.sum(1))])
    return Routing(tok_off, np.nonzero(chosen)[1])  # nonzero is row-major: token-major, experts ascending


def gates(s, r, c):
    """Gate of each assignment: route_scale times the unbiased score, or with norm_topk times the
    score divided by the sum of the token's selected scores (K = 1: exactly route_scale)."""
    a_tok = torch.from_numpy(r.a_tok)
    g = s[a_tok, torch.from_numpy(r.a_exp)]
    if c.norm_topk:
        tot = torch.zeros(s.shape[0], dtype=s.dtype).index_add(0, a_tok, g)
        g = g / tot[a_tok]
    return c.route_scale * g


def aux_loss(s, r, c):
    """alpha * mean_g sum_i f_gi P_gi over groups (sequences, or the micro-batch); f from integer
    counts (no gradient), P = mean of s' over the group (s' = s/sum_j s_j for sigmoid).
    lossfree_aux (DeepSeek-V3's sequence-wise loss next to the bias): f counts the top-K of the plain
    scores, not the biased routing r (the paper's formula; Megatron-Core does the same)."""
    N, E = s.shape
    if c.balance == 'lossfree_aux':
        r = route_token_choice(s.detach().double().numpy(), c.K)
    sp = s / s.sum(1, keepdim=True) if c.gate == 'sigmoid' else s
    Tg = N if c.aux_per_batch else c.T
    G = N // Tg
    grp = r.a_tok // Tg
    cnt = np.zeros((G, E), dtype=np.int64)
    np.add.at(cnt, (grp, r.a_exp), 1)
    f = torch.from_numpy(cnt).to(s.dtype) * (E / (c.K * Tg))
    Pm = sp.view(G, Tg, E).mean(1)
    return c.aux_alpha * (f * Pm).sum(1).mean()


def moe(u, P, l, c, bias, router):
    """u (N,C) normed input of MoE layer l. router(l, scores, bias) -> Routing to use."""
    p = f'layers.{l}.moe.'
    logits = u @ P[p + 'router'].T
    s = torch.sigmoid(logits) if c.gate == 'sigmoid' else torch.softmax(logits, dim=-1)
    r = router(l, s.detach().double().numpy(), bias)
    g = gates(s, r, c)
    out = torch.zeros_like(u)
    for i in range(c.S):
        out = out + swiglu(u, P[p + 'shared.w1'][i], P[p + 'shared.w3'][i], P[p + 'shared.w2'][i])
    a_tok = torch.from_numpy(r.a_tok)
    for e in range(c.E):
        sel = torch.from_numpy(np.nonzero(r.a_exp == e)[0])
        if len(sel) == 0:
            continue
        y = swiglu(u[a_tok[sel]], P[p + 'experts.w1'][e], P[p + 'experts.w3'][e], P[p + 'experts.w2'][e])
        out = out.index_add(0, a_tok[sel], g[sel, None] * y)
    aux = aux_loss(s, r, c) if c.has_aux else None
    return out, dict(u=u, logits=logits, scores=s, gates=g, routing=r, aux=aux)


def forward(P, biases, tokens, targets, c, router):
    """One micro-batch. tokens/targets (B,T) int. Returns (ce, aux, logits, {layer: moe info})."""
    B, T = tokens.shape
    x = P['tok_emb'][torch.from_numpy(tokens.astype(np.int64))]
    info, aux = {}, torch.zeros((), dtype=x.dtype)
    for l in range(c.L):
        p = f'layers.{l}.'
        x = x + attention(rmsnorm(x, P[p + 'attn_norm'], c.norm_eps), P, l, c)
        h = rmsnorm(x, P[p + 'ffn_norm'], c.norm_eps).reshape(B * T, c.C)
        if l < c.n_dense:
            y = swiglu(h, P[p + 'ffn.w1'], P[p + 'ffn.w3'], P[p + 'ffn.w2'])
        else:
            y, info[l] = moe(h, P, l, c, biases[l], router)
            if info[l]['aux'] is not None:
                aux = aux + info[l]['aux']
        x = x + y.view(B, T, c.C)
    logits = rmsnorm(x, P['final_norm'], c.norm_eps) @ P['lm_head'].T
    ce = F.cross_entropy(logits.view(B * T, c.V), torch.from_numpy(targets.astype(np.int64)).view(-1))
    return ce, aux, logits, info


# ----------------------------------------------------------------------------- bias update and optimizer
def bias_update(b, counts, c):
    """FORMAT.md's arithmetic: sign decided in integers; sign rule fp32(b + fp32(u*sign)); error rule
    delta = double(u) * (mean - c_i) / mean, mean = double(sum c)/E, then fp32(b + fp32(delta)).
    bias_center (torchtitan): the deltas (in double) minus their mean over the experts, mu summed in
    expert order, b = fp32(b + fp32(delta - mu)); the bias's mean then never moves."""
    b = b.astype(np.float32).copy()
    if not c.has_bias or c.routing != 'token_choice':
        return b
    u, tot, E = np.float32(c.bias_rate), int(counts.sum()), c.E
    if c.bias_center:
        if tot == 0:
            return b
        mean = float(tot) / E
        if c.update_rule == 'sign':
            delta = [float(u) * ((tot > E * int(k)) - (tot < E * int(k))) for k in counts]
        else:
            delta = [float(u) * (mean - float(k)) / mean for k in counts]
        mu = 0.0
        for x in delta:
            mu += x
        mu /= E
        for i in range(E):
            b[i] = np.float32(b[i] + np.float32(delta[i] - mu))
        return b
    for i in range(E):
        if c.update_rule == 'sign':
            sgn = (tot > E * int(counts[i])) - (tot < E * int(counts[i]))
            b[i] = np.float32(b[i] + np.float32(u * np.float32(sgn)))
        else:
            mean = float(tot) / E
            delta = (float(u) * (mean - float(counts[i])) / mean) if tot > 0 else 0.0
            b[i] = np.float32(b[i] + np.float32(delta))
    return b


def make_optimizer(params, c, moments=None, start_step=0):
    """torch.optim.AdamW, weight decay on matrices (ndim >= 2) only, as FORMAT.md's table says.
    moments: [(m, v)] per parameter (a dump's init/adam.m, init/adam.v) and start_step the
    optimizer steps already taken, so that a dump that continues a checkpoint continues AdamW's
    moments and bias correction (t = start_step + 1 at the first dumped step)."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=c.weight_decay),
                             dict(params=no_decay, weight_decay=0.0)],
                            lr=c.lr, betas=(c.beta1, c.beta2), eps=c.adam_eps, foreach=False)
    if moments is not None:
        for p, (m, v) in zip(params, moments):
            opt.state[p] = {'step': torch.tensor(float(start_step), dtype=torch.float32),
                            'exp_avg': m.detach().clone().to(p.dtype), 'exp_avg_sq': v.detach().clone().to(p.dtype)}
    return opt


def learning_rate(c, k):
    """MODEL.md section 7 at 0-based optimizer step k, written from the page: the warm-up line in
    fp32 arithmetic, cosine (with lr - lr_min an fp32 difference) and multistep in double from the
    fp32 config values, rounded once."""
    if k < c.warmup:
        return float(np.float32(np.float32(c.lr) * np.float32(k + 1)) / np.float32(c.warmup))
    if c.schedule == 'multistep':
        lr = c.lr
        for m in c.milestones:
            if k >= m:
                lr *= c.lr_decay
        return float(np.float32(lr))
    span = c.steps - c.warmup
    progress = min(1.0, (k - c.warmup) / span) if span > 0 else 1.0
    diff = float(np.float32(np.float32(c.lr) - np.float32(c.lr_min)))  # MODEL.md: an fp32 subtraction
    return float(np.float32(c.lr_min + 0.5 * diff * (1.0 + math.cos(math.pi * progress))))


def clip_and_step(opt, params, lr, c):
    """Global-norm clipping with the exact factor clip/norm (torch's clip_grad_norm_ adds 1e-6 to
    the norm; lfmoe does not), then one AdamW step at lr. Returns the norm before clipping."""
    norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))
    if c.grad_clip > 0 and norm > c.grad_clip:
        for p in params:
            p.grad.mul_(c.grad_clip / norm)
    for g in opt.param_groups:
        g['lr'] = lr
    opt.step()
    return norm


# ----------------------------------------------------------------------------- routing comparison
class RouteChecker:
    """Compares our routing with the dump's for every (step, micro-batch, layer); returns the dump's
    so that the rest of the computation follows lfmoe's decisions (identical unless a near-tie)."""

    def __init__(self, dump, c, rtol):
        self.d, self.c, self.rtol = dump, c, rtol
        self.near_ties, self.failures = [], []
        self.step = self.mb = 0
        self.order = None

    def at(self, step, mb):
        self.step, self.mb = step, mb
        N = self.c.N
        name = f'step{step}/mb{mb}/order'
        self.order = np.arange(N)
        if self.c.routing == 'expert_choice' and self.c.ec_shuffle:
            o = self.d.get(name)
            if o is None:
                self.failures.append(f'{name} missing (expert choice with shuffle must record its token order)')
            elif sorted(o.tolist()) != list(range(N)):
                self.failures.append(f'{name} is not a permutation of 0..{N - 1}')
            else:
                self.order = o.astype(np.int64)

    def __call__(self, l, s, bias):
        c, where = self.c, f'step {self.step} mb {self.mb} layer {l}'
        pre = f'step{self.step}/mb{self.mb}/layers.{l}.'
        if c.routing == 'token_choice':
            key = selection_keys(s, bias, c)
            mine = route_token_choice(key, c.K)
        else:
            key = s
            mine = route_expert_choice(s, self.order, c)
        if pre + 'tok_off' not in self.d or pre + 'a_exp' not in self.d:
            self.failures.append(f'{pre}tok_off / a_exp missing from the dump')
            return mine
        theirs = Routing(self.d[pre + 'tok_off'], self.d[pre + 'a_exp'])
        if mine.same(theirs):
            return mine
        problems = self.structure(theirs)
        if problems:
            self.failures.append(f'{where}: dump routing is malformed: {problems}')
            return mine
        if c.routing == 'token_choice':
            self.compare_token_choice(mine, theirs, key, l, where)
        else:
            self.compare_expert_choice(mine, theirs, key, l, where)
        return theirs

    def structure(self, r):
        c, N = self.c, self.c.N
        if len(r.tok_off) != N + 1 or r.tok_off[0] != 0 or np.any(np.diff(r.tok_off) < 0) or r.tok_off[-1] != N * c.K:
            return f'tok_off is not a non-decreasing offset list from 0 to N*K = {N * c.K}'
        if len(r.a_exp) != N * c.K or r.a_exp.min() < 0 or r.a_exp.max() >= c.E:
            return f'a_exp has {len(r.a_exp)} entries (expected {N * c.K}) or an expert outside 0..{c.E - 1}'
        for t in range(N):
            e = r.a_exp[r.tok_off[t]:r.tok_off[t + 1]]
            if len(set(e.tolist())) != len(e):
                return f'token {t} has a repeated expert {e.tolist()}'
        if c.routing == 'token_choice' and not np.array_equal(r.tok_off, np.arange(N + 1) * c.K):
            return 'token choice must give every token exactly K assignments'
        return ''

    def judge(self, gap, ka, kb, what, where):
        budget = self.rtol * max(abs(ka), abs(kb), 1e-30)
        if gap <= budget:
            self.near_ties.append(f'near-tie at {where} {what}: keys {ka:.9g} vs {kb:.9g} (gap {gap:.3g})')
        else:
            self.failures.append(f'routing mismatch at {where} {what}: keys {ka:.9g} vs {kb:.9g} '
                                 f'(gap {gap:.3g} > near-tie budget {budget:.3g})')

    def compare_token_choice(self, mine, theirs, key, l, where):
        K = self.c.K
        for t in np.nonzero((mine.a_exp != theirs.a_exp).reshape(-1, K).any(1))[0]:
            d = theirs.a_exp[t * K:(t + 1) * K]
            k = key[t]
            # The dump's list must be a descending top-K of our keys up to rounding: find the worst
            # violation, i.e. a key it ranks lower (or leaves out) that we find larger.
            worst = (-np.inf, None, None)
            for j in range(K - 1):  # order within the K
                worst = max(worst, (k[d[j + 1]] - k[d[j]], d[j], d[j + 1]), key=lambda w: w[0])
            rest = np.setdiff1d(np.arange(self.c.E), d)
            if len(rest):
                lo = d[np.argmin(k[d])]
                hi = rest[np.argmax(k[rest])]
                worst = max(worst, (k[hi] - k[lo], lo, hi), key=lambda w: w[0])
            gap, a, b = worst
            self.judge(max(gap, 0.0), k[a], k[b], f'token {t} (dump {d.tolist()}, ours '
                       f'{mine.a_exp[t * K:(t + 1) * K].tolist()}; experts {a} vs {b})', where)

    def compare_expert_choice(self, mine, theirs, s, l, where):
        c = self.c
        cap = c.chunk * c.K // c.E
        sel_m, sel_t = np.zeros((c.N, c.E), bool), np.zeros((c.N, c.E), bool)
        sel_m[mine.a_tok, mine.a_exp] = True
        sel_t[theirs.a_tok, theirs.a_exp] = True
        for ci, start in enumerate(range(0, c.N, c.chunk)):
            toks = self.order[start:start + c.chunk]
            for e in range(c.E):
                if np.array_equal(sel_m[toks, e], sel_t[toks, e]):
                    continue
                picked = toks[sel_t[toks, e]]
                if len(picked) != cap:
                    self.failures.append(f'{where}: expert {e} takes {len(picked)} tokens of chunk {ci}, '
                                         f'expected cap = chunk*K/E = {cap}')
                    continue
                left = np.setdiff1d(toks, picked)
                lo, hi = picked[np.argmin(s[picked, e])], left[np.argmax(s[left, e])]
                self.judge(max(s[hi, e] - s[lo, e], 0.0), s[lo, e], s[hi, e],
                           f'chunk {ci} expert {e} (dump takes token {lo}, ours token {hi})', where)


# ----------------------------------------------------------------------------- comparison table
class Report:
    def __init__(self, verbose=False):
        self.rows, self.failures, self.verbose = [], [], verbose
        self.worst = {}  # class -> worst relative error

    def floats(self, name, got, ref, cls, budget=None):
        got = np.asarray(got, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            self.failures.append(f'{name}: shape {list(got.shape)} but expected {list(ref.shape)}')
            self.rows.append((name, cls, 'shape', '', '', 'FAIL'))
            return
        b = budget or BUDGETS[cls]
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        err = np.abs(got - ref)
        allowed = b['atol_rel'] * scale + b['rtol'] * np.abs(ref) + b.get('atol', 0.0)
        bad = ~(err <= allowed)  # NaN counts as bad
        ratio = float(np.max(np.where(allowed > 0, err / np.maximum(allowed, 1e-300), np.where(err > 0, np.inf, 0))))
        # relative error on elements that are not tiny against the tensor's scale
        big = np.abs(ref) >= 1e-3 * scale
        rel = float(np.max(err[big] / np.abs(ref[big]))) if big.any() and scale > 0 else float(err.max(initial=0))
        if b['rtol'] == 0 and b['atol_rel'] == 0:  # an absolute budget (a zero tensor): no relative error
            rel = 0.0
        if not np.isfinite(got).all():
            rel = ratio = float('inf')
        w = self.worst.get(cls, (0.0, 0.0))
        self.worst[cls] = (max(w[0], rel), max(w[1], ratio))
        status = 'FAIL' if bad.any() else 'ok'
        self.rows.append((name, cls, f'{float(err.max(initial=0)):.2e}', f'{rel:.2e}', f'{ratio:.3f}', status))
        if self.verbose and ref.size:
            i = np.unravel_index(int(np.argmax(np.where(allowed > 0, err / np.maximum(allowed, 1e-300), err))), ref.shape)
            self.rows.append((f'  worst at {list(i)}: got {got[i]:.9g} ref {ref[i]:.9g} (max|ref| {scale:.3g})', '', '', '', '', ''))
        if bad.any():
            i = np.unravel_index(int(np.argmax(np.where(bad, err - allowed, -np.inf))), ref.shape)
            self.failures.append(f'{name}: {int(bad.sum())} of {ref.size} elements outside budget; worst at {list(i)}: '
                                 f'got {got[i]:.9g} expected {ref[i]:.9g}')

    def ints(self, name, got, ref):
        got, ref = np.asarray(got), np.asarray(ref)
        same = got.shape == ref.shape and np.array_equal(got, ref)
        self.rows.append((name, 'integer', '0' if same else 'differs', '', '', 'ok' if same else 'FAIL'))
        if not same:
            if got.shape != ref.shape:
                msg = f'shape {list(got.shape)} vs expected {list(ref.shape)}'
            else:
                i = np.nonzero(got.reshape(-1) != ref.reshape(-1))[0]
                msg = f'{len(i)} entries differ, first at flat index {i[0]}: got {got.reshape(-1)[i[0]]} expected {ref.reshape(-1)[i[0]]}'
            self.failures.append(f'{name}: {msg}')

    def exact_f32(self, name, got, ref):
        """Biases: fp32 arithmetic on integer counts, must match bit for bit."""
        got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
        same = got.shape == ref.shape and np.array_equal(got.view(np.int32), ref.view(np.int32))
        err = float(np.abs(got.astype(np.float64) - ref).max(initial=0)) if got.shape == ref.shape else float('nan')
        self.rows.append((name, 'exact', f'{err:.2e}', '', '', 'ok' if same else 'FAIL'))
        if not same:
            self.failures.append(f'{name}: not bit-identical (max diff {err:.3g}); got {got.tolist()} expected {ref.tolist()}')

    def print(self, only_fail=False):
        w = max([len(r[0]) for r in self.rows if r[1]] + [6])
        print(f'{"tensor":<{w}}  {"class":<10} {"max abs":>9} {"max rel":>9} {"err/budget":>10}  status')
        for r in self.rows:
            if only_fail and r[5] == 'ok':
                continue
            print(r[0] if r[1] == '' else f'{r[0]:<{w}}  {r[1]:<10} {r[2]:>9} {r[3]:>9} {r[4]:>10}  {r[5]}')


# ----------------------------------------------------------------------------- check
def mb_names(c, s, m, l):
    """Names of micro-batch m's tensors of MoE layer l in step s (FORMAT.md, dump version 2)."""
    pre = f'step{s}/mb{m}/layers.{l}.'
    return {k: pre + k for k in ('router_in', 'router_logits', 'scores', 'tok_off', 'a_exp', 'a_gate', 'aux_loss')}


def load(path):
    d, meta = read_safetensors(path)
    if meta.get('format') != 'lfmoe-dump':
        raise DumpError(f'{path}: metadata format is {meta.get("format")!r}, expected "lfmoe-dump" (write one with train --dump)')
    if str(meta.get('version')) != '2':
        hint = (' (version 1 recorded the router of step 0, micro-batch 0 only); regenerate it with this build\'s '
                'train --dump' if str(meta.get('version')) == '1' else '')
        raise DumpError(f'{path}: dump version {meta.get("version")!r}, this checker reads version 2 (docs/FORMAT.md){hint}')
    try:
        c = Cfg(json.loads(meta['config']))
    except (KeyError, ValueError) as e:
        raise DumpError(f'{path}: config metadata missing or not JSON ({e})')
    try:
        steps, start = int(meta['steps']), int(meta['start_step'])
    except (KeyError, ValueError) as e:
        raise DumpError(f'{path}: metadata steps / start_step missing or not integers ({e})')
    table = [n for n, _ in param_table(c)]
    need = [f'init/{n}' for n in table] + [f'init/adam.{x}/{n}' for x in 'mv' for n in table]
    need += [f'init/{bias_name(l)}' for l in c.moe_layers()]
    for s in range(steps):
        need += [f'step{s}/{k}' for k in ('tokens', 'targets', 'lr', 'loss', 'aux_loss', 'grad_norm')]
        for l in c.moe_layers():
            need += [f'step{s}/layers.{l}.{k}' for k in ('router', 'bias', 'counts', 'bias_after')]
            for m in range(c.grad_accum):
                need += list(mb_names(c, s, m, l).values())
    missing = [n for n in need if n not in d]
    if missing:
        raise DumpError(f'{path}: missing tensors {missing[:5]}{" ..." if len(missing) > 5 else ""} '
                        f'({len(missing)} of the names FORMAT.md version 2 requires)')
    for n, shape in param_table(c):
        for pre in ('init/', 'init/adam.m/', 'init/adam.v/'):
            if tuple(d[pre + n].shape) != shape:
                raise DumpError(f'{path}: {pre}{n} has shape {list(d[pre + n].shape)}, the config implies {list(shape)}')
    return d, meta, c, steps, start


def init_state(d, c, dtype=torch.float64):
    """Parameters, biases and AdamW moments before the first dumped step."""
    P = {n: torch.tensor(d[f'init/{n}'], dtype=dtype, requires_grad=True) for n, _ in param_table(c)}
    biases = {l: d[f'init/{bias_name(l)}'].astype(np.float32).copy() for l in c.moe_layers()}
    moments = [(torch.tensor(d[f'init/adam.m/{n}'], dtype=dtype), torch.tensor(d[f'init/adam.v/{n}'], dtype=dtype))
               for n, _ in param_table(c)]
    return P, biases, moments


def run_step(P, biases, d, c, s, router, keep=False):
    """Forward + backward of every micro-batch of step s (loss (CE + aux)/grad_accum each).
    Returns mean CE, mean aux, summed counts per layer, and (keep) every micro-batch's outputs:
    [(logits, {layer: info})]."""
    tokens, targets = d[f'step{s}/tokens'], d[f'step{s}/targets']
    ce_sum = aux_sum = 0.0
    counts = {l: np.zeros(c.E, dtype=np.int64) for l in c.moe_layers()}
    kept = []
    for m in range(c.grad_accum):
        if router is not None:
            router.at(s, m)
        ce, aux, logits, info = forward(P, biases, tokens[m], targets[m], c, router or own_router(c))
        ((ce + aux) / c.grad_accum).backward()
        ce_sum += float(ce)
        aux_sum += float(aux)
        for l in info:
            counts[l] += info[l]['routing'].counts(c.E)
        if keep:
            kept.append((logits.detach(), {l: {k: (v.detach() if torch.is_tensor(v) else v) for k, v in i.items()}
                                           for l, i in info.items()}))
    return ce_sum / c.grad_accum, aux_sum / c.grad_accum, counts, kept


def own_router(c):
    def route(l, s, bias):
        if c.routing == 'token_choice':
            return route_token_choice(selection_keys(s, bias, c), c.K)
        return route_expert_choice(s, np.arange(c.N), c)
    return route


def check_inputs(rep, d, c, steps):
    for s in range(steps):
        tk, tg = d[f'step{s}/tokens'], d[f'step{s}/targets']
        want = (c.grad_accum, c.B, c.T)
        if tk.shape != want or tg.shape != want:
            raise DumpError(f'step{s}/tokens/targets have shapes {list(tk.shape)}/{list(tg.shape)}, expected {list(want)}')
        if tk.min() < 0 or tk.max() >= c.V or tg.min() < 0 or tg.max() >= c.V:
            raise DumpError(f'step{s}: token ids outside 0..{c.V - 1}')
        # a (T+1)-token window: targets are the tokens shifted by one
        rep.ints(f'step{s}/targets[:, :, :-1] == tokens[:, :, 1:]', tg[:, :, :-1], tk[:, :, 1:])


def check_schedule(rep, d, c, steps, start):
    """Every step's learning rate is the schedule's at optimizer step start_step + s (a dump that
    continues a checkpoint continues its schedule)."""
    for s in range(steps):
        rep.floats(f'step{s}/lr', d[f'step{s}/lr'], [learning_rate(c, start + s)], 'lr')


def check_optimizer(rep, d, c, biases, counts, start):
    """1-step dumps: the parameters after the step, recomputed from the dump's own gradient.
    Adam's first update is lr * g/(|g| + eps), about lr * sign(g): recomputing it from our gradient
    would turn a rounding-level difference in a near-zero gradient element into a 2*lr difference.
    Our gradient is checked against lfmoe's separately, so this isolates clipping + AdamW (with the
    dump's initial moments and step count)."""
    P, _, moments = init_state(d, c)
    for n, p in P.items():
        p.grad = torch.tensor(d[f'step0/grad/{n}'], dtype=p.dtype)
    params = list(P.values())
    opt = make_optimizer(params, c, moments, start)
    clip_and_step(opt, params, float(d['step0/lr'][0]), c)
    for n, _ in param_table(c):
        if f'final/{n}' in d:
            rep.floats(f'final/{n}', d[f'final/{n}'], P[n].detach().numpy(), 'param')
        else:
            rep.failures.append(f'final/{n} missing')
    for l in c.moe_layers():
        if f'final/{bias_name(l)}' in d:
            rep.exact_f32(f'final/{bias_name(l)}', d[f'final/{bias_name(l)}'], bias_update(biases[l], counts[l], c))


def recompute_step0(d, c, dtype, router):
    """The first dumped step in `dtype`: {dump name: (array, budget class)}, the summed counts, the
    biases. Every micro-batch's router input, logits, scores, gates and per-layer aux loss."""
    P, biases, _ = init_state(d, c, dtype)
    ce, aux, counts, kept = run_step(P, biases, d, c, 0, router, keep=True)
    out = {'step0/logits': (kept[0][0].numpy(), 'activation'), 'step0/loss': ([ce], 'loss'),
           'step0/aux_loss': ([aux], 'loss')}
    for m, (_, info) in enumerate(kept):
        for l, i in info.items():
            nm = mb_names(c, 0, m, l)
            out[nm['router_in']] = (i['u'].numpy(), 'activation')
            out[nm['router_logits']] = (i['logits'].numpy(), 'activation')
            out[nm['scores']] = (i['scores'].numpy(), 'activation')
            out[nm['a_gate']] = (i['gates'].numpy(), 'activation')
            out[nm['aux_loss']] = ([float(i['aux']) if i['aux'] is not None else 0.0], 'loss')
    grads = {n: P[n].grad.numpy() for n, _ in param_table(c)}
    out['step0/grad_norm'] = ([math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))], 'loss')
    # A gradient tensor that is zero in exact arithmetic is judged against an absolute floor (BUDGETS)
    G = max(float(np.abs(g).max()) for g in grads.values())
    for n, g in grads.items():
        zero = float(np.abs(g).max()) <= ZERO_GRAD_REL * G
        out[f'step0/grad/{n}'] = (g, 'grad', dict(rtol=0.0, atol_rel=0.0, atol=ZERO_GRAD_FLOOR * G) if zero else None)
    return out, counts, biases


def router_replay(rep, d, c, steps, router):
    """Every step, micro-batch and MoE layer of the dump, from the dump's own router tensors alone
    (no model): logits = router_in routerᵀ, scores = G(logits), top-K of the keys with the step's
    bias (or expert choice), gates, the layer's aux loss, the step's counts, the bias chain
    init -> bias -> bias_after, and the step's aux_loss as the mean over micro-batches of the layer sum.
    This is the part of a dump another router implementation can be checked against on its own."""
    for s in range(steps):
        aux_mb = [0.0] * c.grad_accum
        for l in c.moe_layers():
            pre = f'step{s}/layers.{l}.'
            prev = d[f'init/{bias_name(l)}'] if s == 0 else d[f'step{s - 1}/layers.{l}.bias_after']
            rep.exact_f32(pre + 'bias', d[pre + 'bias'], prev)
            if s == 0:
                rep.exact_f32(pre + 'router', d[pre + 'router'], d[f'init/layers.{l}.moe.router'])
            W = torch.from_numpy(d[pre + 'router'].astype(np.float64))
            counts = np.zeros(c.E, dtype=np.int64)
            for m in range(c.grad_accum):
                nm = mb_names(c, s, m, l)
                u = torch.from_numpy(d[nm['router_in']].astype(np.float64))
                rep.floats(nm['router_logits'], d[nm['router_logits']], (u @ W.T).numpy(), 'activation')
                lg = torch.from_numpy(d[nm['router_logits']].astype(np.float64))
                sc = torch.sigmoid(lg) if c.gate == 'sigmoid' else torch.softmax(lg, dim=-1)
                rep.floats(nm['scores'], d[nm['scores']], sc.numpy(), 'activation')
                s_dump = torch.from_numpy(d[nm['scores']].astype(np.float64))
                router.at(s, m)
                r = router(l, s_dump.numpy(), d[pre + 'bias'].astype(np.float32))
                counts += r.counts(c.E)
                rep.floats(nm['a_gate'], d[nm['a_gate']], gates(s_dump, r, c).numpy(), 'activation')
                aux = float(aux_loss(s_dump, r, c)) if c.has_aux else 0.0
                rep.floats(nm['aux_loss'], d[nm['aux_loss']], [aux], 'loss')
                aux_mb[m] += float(d[nm['aux_loss']][0])
            rep.ints(pre + 'counts', d[pre + 'counts'], counts)
            rep.exact_f32(pre + 'bias_after', d[pre + 'bias_after'], bias_update(d[pre + 'bias'], counts, c))
        rep.floats(f'step{s}/aux_loss', d[f'step{s}/aux_loss'], [sum(aux_mb) / c.grad_accum], 'loss')


def cmd_check(path, verbose, fp32_floor=False):
    d, meta, c, steps, start = load(path)
    print(f'{path}: backend {meta.get("backend")}, steps {steps} from optimizer step {start}, gate {c.gate}, '
          f'routing {c.routing}, balance {c.balance}/{c.bias_kind}/{c.update_rule}{"/centred" if c.bias_center else ""}, '
          f'E {c.E} K {c.K} S {c.S} n_dense {c.n_dense} L {c.L} grad_accum {c.grad_accum} norm_topk {c.norm_topk} '
          f'route_scale {c.route_scale:g}')
    rep = Report(verbose)
    check_inputs(rep, d, c, 1)
    check_schedule(rep, d, c, steps, start)
    router = RouteChecker(d, c, NEAR_TIE_RTOL)
    ref, counts, biases = recompute_step0(d, c, torch.float64, router)
    for name, (val, cls, *budget) in ref.items():
        if budget and budget[0]:
            print(f'note: {name} is zero in exact arithmetic (float64 max |g| {float(np.abs(val).max()):.2e} <= '
                  f'{ZERO_GRAD_REL:g} of the step\'s largest gradient): compared with the absolute floor {budget[0]["atol"]:.2e}')
        rep.floats(name, d[name], val, cls, budget[0] if budget else None)
    for l in c.moe_layers():
        rep.ints(f'step0/layers.{l}.counts (model)', d[f'step0/layers.{l}.counts'], counts[l])
    # every step's router from the dump's own tensors (its own route checker: near-ties are reported once per checker)
    replay = RouteChecker(d, c, NEAR_TIE_RTOL)
    router_replay(rep, d, c, steps, replay)
    if steps == 1:
        check_optimizer(rep, d, c, biases, counts, start)
    else:
        print(f'note: {steps}-step dump: final/* is checked by the trajectory command')
    if fp32_floor:
        # The same step in float32 torch (following the dump's routing) against float64: how much of
        # each budget plain fp32 rounding needs on exactly these inputs. If lfmoe fails where this
        # passes comfortably, the error is lfmoe's; if this fails too, the inputs are ill-conditioned.
        floor = Report()
        r32 = RouteChecker(d, c, NEAR_TIE_RTOL)
        rec, _, _ = recompute_step0(d, c, torch.float32, r32)
        for name, (val, cls, *budget) in ref.items():
            floor.floats(name, rec[name][0], val, cls, budget[0] if budget else None)
        print('fp32 floor (float32 torch vs float64 on this dump):',
              ' '.join(f'{k}={v[0]:.1e}/{v[1]:.3f}' for k, v in floor.worst.items()))
    router.failures += replay.failures
    router.near_ties += [t for t in replay.near_ties if t not in router.near_ties]
    unchecked = [n for n in d if not checked_name(n, c, steps)]
    return finish(rep, router, unchecked)


def checked_name(n, c, steps):
    """Whether n is a name of FORMAT.md's dump version 2 (everything there is compared by check)."""
    if n.startswith('init/') or n.startswith('final/') or n == 'step0/logits' or n.startswith('step0/grad/'):
        return True
    parts = n.split('/')
    return parts[0].startswith('step') and parts[0][4:].isdigit() and int(parts[0][4:]) < steps


def finish(rep, router, unchecked):
    rep.failures = router.failures + rep.failures
    rep.print()
    for t in router.near_ties:
        print(t)
    for n in unchecked:
        print(f'warning: {n} is not a tensor of FORMAT.md version 2 and was not checked')
    # per class: worst relative error (elements >= 1e-3 of the tensor's scale) / worst fraction of budget
    cls = dict(activations=('activation',), loss=('loss', 'traj_loss', 'lr'), grads=('grad',),
               params=('param', 'traj_param'))
    parts = []
    for label, keys in cls.items():
        w = [rep.worst[k] for k in keys if k in rep.worst]
        if w:
            parts.append(f'{label}={max(x[0] for x in w):.1e}/{max(x[1] for x in w):.3f}')
    print(f'SUMMARY {" ".join(parts)} near_ties={len(router.near_ties)} result={"FAIL" if rep.failures else "PASS"}')
    for f in rep.failures:
        print('FAIL:', f)
    return 1 if rep.failures else 0


# ----------------------------------------------------------------------------- trajectory
def cmd_trajectory(path, verbose):
    """float64 throughout: the reference's own rounding stays far below lfmoe's fp32 rounding, so
    whatever drift appears over the steps is lfmoe's (a float32 reference would add its own)."""
    d, meta, c, steps, start = load(path)
    print(f'{path}: trajectory of {steps} steps from optimizer step {start}, balance {c.balance}/{c.bias_kind}/'
          f'{c.update_rule}{"/centred" if c.bias_center else ""}, routing {c.routing}, gate {c.gate}')
    rep = Report(verbose)
    check_inputs(rep, d, c, steps)
    check_schedule(rep, d, c, steps, start)
    P, biases, moments = init_state(d, c)
    params = list(P.values())
    opt = make_optimizer(params, c, moments, start)
    router = RouteChecker(d, c, NEAR_TIE_RTOL)
    lrs = [learning_rate(c, start + s) for s in range(steps)]
    budget = dict(BUDGETS['traj_param'])
    budget['atol'] = budget.pop('atol_lr') * max(lrs)
    print(f'{"step":>4} {"loss(dump)":>12} {"loss(ref)":>12} {"aux(dump)":>11} {"aux(ref)":>11} {"gnorm rel":>9}')
    for s in range(steps):
        router.rtol = NEAR_TIE_RTOL if s == 0 else NEAR_TIE_RTOL_TRAJ
        for l in c.moe_layers():  # the router weights the step used, as this run has them
            rep.floats(f'step{s}/layers.{l}.router', d[f'step{s}/layers.{l}.router'],
                       P[f'layers.{l}.moe.router'].detach().numpy(), 'traj_param', budget)
        for p in params:
            p.grad = None
        ce, aux, counts, _ = run_step(P, biases, d, c, s, router)
        norm = clip_and_step(opt, params, lrs[s], c)
        rep.floats(f'step{s}/loss', d[f'step{s}/loss'], [ce], 'traj_loss')
        rep.floats(f'step{s}/aux_loss', d[f'step{s}/aux_loss'], [aux], 'traj_loss')
        rep.floats(f'step{s}/grad_norm', d[f'step{s}/grad_norm'], [norm], 'traj_loss')
        gd = float(d[f'step{s}/grad_norm'][0])
        print(f'{s:>4} {float(d[f"step{s}/loss"][0]):>12.7f} {ce:>12.7f} {float(d[f"step{s}/aux_loss"][0]):>11.4e} '
              f'{aux:>11.4e} {abs(gd - norm) / max(norm, 1e-30):>9.2e}')
        for l in c.moe_layers():
            rep.ints(f'step{s}/layers.{l}.counts', d[f'step{s}/layers.{l}.counts'], counts[l])
            biases[l] = bias_update(biases[l], counts[l], c)
            rep.exact_f32(f'step{s}/layers.{l}.bias_after', d[f'step{s}/layers.{l}.bias_after'], biases[l])
    for n, _ in param_table(c):
        rep.floats(f'final/{n}', d[f'final/{n}'], P[n].detach().numpy(), 'traj_param', budget)
    for l in c.moe_layers():
        rep.exact_f32(f'final/{bias_name(l)}', d[f'final/{bias_name(l)}'], biases[l])
    unchecked = [n for n in d if not checked_name(n, c, steps)]
    return finish(rep, router, unchecked)


# ----------------------------------------------------------------------------- selftest
def selftest_config(**kw):
    base = dict(V=64, C=32, H=4, L=3, n_dense=1, Fd=48, E=6, K=2, S=1, F=16, T=16, init_std=0.05,
                rope_theta=10000.0, norm_eps=1e-6, gate='sigmoid', routing='token_choice', balance='lossfree',
                bias_kind='add', update_rule='sign', bias_rate=1e-3, aux_alpha=1e-2, aux_per_batch=False, bias_center=False,
                norm_topk=False, route_scale=1.0, ec_chunk=0, ec_shuffle=False, B=2, grad_accum=2, steps=1,
                lr=1e-3, lr_min=1e-4, warmup=2, schedule='cosine', milestones=[], lr_decay=0.316, beta1=0.9,
                beta2=0.95, adam_eps=1e-8, weight_decay=0.1, grad_clip=1.0, seed=1)
    base.update(kw)
    return base


def write_fake_dump(path, cfgd, steps=1, tie=False, seed=0, start=0):
    """A float32 run of this model written in the dump format (version 2): what another fp32
    implementation would produce. tie=True makes two router rows equal so that every token has an
    exact tie. start > 0 writes a dump that continues a run at optimizer step `start`: nonzero
    AdamW moments and bias in init/, the schedule from there."""
    c = Cfg(cfgd)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, shape in param_table(c):
        if n.endswith('norm'):
            out[f'init/{n}'] = np.ones(shape, np.float32)
        else:
            out[f'init/{n}'] = (torch.randn(shape, generator=g) * c.init_std).numpy().astype(np.float32)
    if tie:
        for l in c.moe_layers():
            out[f'init/layers.{l}.moe.router'][3] = out[f'init/layers.{l}.moe.router'][1]
    for l in c.moe_layers():
        b0 = 1.0 if c.bias_kind == 'mul' and c.has_bias else 0.0
        out[f'init/{bias_name(l)}'] = np.full(c.E, b0, np.float32)
        if start > 0 and c.has_bias:  # a bias that has been moving for `start` steps
            out[f'init/{bias_name(l)}'] += (torch.randn(c.E, generator=g) * 5 * c.bias_rate).numpy().astype(np.float32)
    for n, shape in param_table(c):
        m = torch.randn(shape, generator=g) * 1e-3 if start > 0 else torch.zeros(shape)
        v = torch.rand(shape, generator=g) * 1e-6 if start > 0 else torch.zeros(shape)
        out[f'init/adam.m/{n}'], out[f'init/adam.v/{n}'] = m.numpy().astype(np.float32), v.numpy().astype(np.float32)
    P = {n: torch.tensor(out[f'init/{n}'], dtype=torch.float32, requires_grad=True) for n, _ in param_table(c)}
    biases = {l: out[f'init/{bias_name(l)}'].copy() for l in c.moe_layers()}
    params = list(P.values())
    opt = make_optimizer(params, c, [(torch.tensor(out[f'init/adam.m/{n}']), torch.tensor(out[f'init/adam.v/{n}']))
                                     for n, _ in param_table(c)], start)
    data = torch.randint(0, c.V, (steps, c.grad_accum, c.B, c.T + 1), generator=g).numpy().astype(np.int32)
    for s in range(steps):
        tokens, targets = data[s, :, :, :-1], data[s, :, :, 1:]
        out[f'step{s}/tokens'], out[f'step{s}/targets'] = tokens.copy(), targets.copy()
        for l in c.moe_layers():
            out[f'step{s}/layers.{l}.router'] = P[f'layers.{l}.moe.router'].detach().numpy().copy()
            out[f'step{s}/layers.{l}.bias'] = biases[l].copy()
        for p in params:
            p.grad = None
        ce_sum = aux_sum = 0.0
        counts = {l: np.zeros(c.E, np.int64) for l in c.moe_layers()}
        for m in range(c.grad_accum):
            order = np.arange(c.N)
            if c.routing == 'expert_choice' and c.ec_shuffle:
                order = torch.randperm(c.N, generator=g).numpy()
                out[f'step{s}/mb{m}/order'] = order.astype(np.int32)

            def route(l, sc, bias):
                if c.routing == 'token_choice':
                    key = selection_keys(sc.astype(np.float32), bias, c).astype(np.float64)
                    if tie:  # resolve the exact ties between experts 1 and 3 the wrong way (3 first)
                        key[:, 3] *= 1 + 1e-12
                    return route_token_choice(key, c.K)
                return route_expert_choice(sc.astype(np.float32), order, c)
            ce, aux, logits, info = forward(P, biases, tokens[m], targets[m], c, route)
            ((ce + aux) / c.grad_accum).backward()
            ce_sum, aux_sum = ce_sum + float(ce), aux_sum + float(aux)
            for l, i in info.items():
                r, nm = i['routing'], mb_names(c, s, m, l)
                out[nm['router_in']] = i['u'].detach().numpy()
                out[nm['router_logits']] = i['logits'].detach().numpy()
                out[nm['scores']] = i['scores'].detach().numpy()
                out[nm['tok_off']] = r.tok_off.astype(np.int32)
                out[nm['a_exp']] = r.a_exp.astype(np.int32)
                out[nm['a_gate']] = i['gates'].detach().numpy()
                out[nm['aux_loss']] = np.array([float(i['aux']) if i['aux'] is not None else 0.0], np.float32)
                counts[l] += r.counts(c.E)
            if s == 0 and m == 0:
                out['step0/logits'] = logits.detach().numpy()
        lr = np.float32(learning_rate(c, start + s))
        if s == 0:
            for n, p in P.items():
                out[f'step0/grad/{n}'] = p.grad.numpy().copy()
        norm = clip_and_step(opt, params, float(lr), c)
        for k, v in (('lr', lr), ('loss', ce_sum / c.grad_accum), ('aux_loss', aux_sum / c.grad_accum), ('grad_norm', norm)):
            out[f'step{s}/{k}'] = np.array([v], np.float32)
        for l in c.moe_layers():
            biases[l] = bias_update(biases[l], counts[l], c)
            out[f'step{s}/layers.{l}.counts'] = counts[l]
            out[f'step{s}/layers.{l}.bias_after'] = biases[l].copy()
    for n, p in P.items():
        out[f'final/{n}'] = p.detach().numpy()
    for l in c.moe_layers():
        out[f'final/{bias_name(l)}'] = biases[l]
    out = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in out.items()}
    write_safetensors(path, out, {'format': 'lfmoe-dump', 'version': '2', 'config': json.dumps(cfgd),
                                  'steps': str(steps), 'start_step': str(start), 'data_pos': '0',
                                  'backend': 'torch-float32'})
    return out


def corrupt(src, dst, fn):
    d, meta = read_safetensors(src)
    d = {k: v.copy() for k, v in d.items()}
    fn(d)
    write_safetensors(dst, d, meta)


def quiet(fn, *a):
    """Runs a command, capturing its table; returns (status, output)."""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        st = fn(*a)
    return st, buf.getvalue()


def cmd_selftest():
    torch.set_num_threads(1)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [('sigmoid lossfree add sign', selftest_config(), 1),
                 ('softmax aux per-seq, S=0, n_dense=0, K=1', selftest_config(gate='softmax', balance='aux', S=0, n_dense=0, K=1), 1),
                 ('sigmoid aux per-batch, norm_topk', selftest_config(balance='aux', aux_per_batch=True, norm_topk=True, route_scale=2.0), 1),
                 ('lossfree mul error', selftest_config(bias_kind='mul', update_rule='error'), 1),
                 ('expert choice shuffle chunk 8', selftest_config(routing='expert_choice', ec_shuffle=True, ec_chunk=8, balance='none'), 1),
                 ('lossfree error, 4 steps', selftest_config(update_rule='error'), 4),
                 # the peers' semantics (docs/MODEL.md sections 5 and 6)
                 ('centred sign update (torchtitan), 2 steps', selftest_config(bias_center=True), 2),
                 ('centred error update, mul', selftest_config(bias_center=True, update_rule='error', bias_kind='mul'), 1),
                 ('lossfree_aux (DeepSeek-V3), norm_topk x2.5, 2 steps',
                  selftest_config(balance='lossfree_aux', aux_alpha=1e-3, norm_topk=True, route_scale=2.5), 2),
                 ('softmax K=1 norm_topk (Megatron: gate 1, zero router gradient)',
                  selftest_config(gate='softmax', K=1, norm_topk=True, balance='none'), 1),
                 ('sigmoid K=1 x2 without norm_topk', selftest_config(K=1, route_scale=2.0), 1),
                 ('continues at optimizer step 5, 3 steps', selftest_config(update_rule='error', steps=20, warmup=4), 3, 5)]
        for name, cfgd, steps, *start in cases:
            p = os.path.join(tmp, 'ok.safetensors')
            write_fake_dump(p, cfgd, steps, start=start[0] if start else 0)
            st, txt = quiet(cmd_check, p, False)
            if steps > 1:
                st2, txt2 = quiet(cmd_trajectory, p, False)
                st, txt = max(st, st2), txt + txt2
            summary = [x for x in txt.splitlines() if x.startswith('SUMMARY')]
            print(f'selftest float32 dump [{name}]: {"PASS" if st == 0 else "FAIL"}  {summary[-1] if summary else ""}')
            if st != 0:
                print(txt)
                bad += 1
        # every corruption must be caught
        base = os.path.join(tmp, 'base.safetensors')
        cfgd = selftest_config(balance='aux')
        write_fake_dump(base, cfgd)
        lf = os.path.join(tmp, 'lf.safetensors')
        write_fake_dump(lf, selftest_config(update_rule='error'))
        two = os.path.join(tmp, 'two.safetensors')  # 2 steps, loss-free with the aux loss
        write_fake_dump(two, selftest_config(balance='lossfree_aux'), 2)
        cen = os.path.join(tmp, 'cen.safetensors')
        write_fake_dump(cen, selftest_config(bias_center=True))
        res_cfg = selftest_config(steps=20, warmup=4)
        res = os.path.join(tmp, 'res.safetensors')  # continues a run at optimizer step 5
        write_fake_dump(res, res_cfg, 1, start=5)

        def swap_route(d):  # token 0 of layer 1 takes its worst expert instead of its best
            s = d['step0/mb0/layers.1.scores'][0]
            a = d['step0/mb0/layers.1.a_exp']
            a[0] = int(np.argmin(s))

        def uncentred(d):  # the bias updated without centring the deltas
            c = Cfg(selftest_config())
            for l in c.moe_layers():
                d[f'step0/layers.{l}.bias_after'][:] = bias_update(d[f'init/{bias_name(l)}'], d[f'step0/layers.{l}.counts'], c)
                d[f'final/{bias_name(l)}'][:] = d[f'step0/layers.{l}.bias_after']

        def scale(name, i, f):
            return lambda d: d[name].reshape(-1).__setitem__(i, d[name].reshape(-1)[i] * f)

        corruptions = [
            ('logit +1e-3 relative', base, lambda d: d['step0/logits'].__setitem__((0, 3, 5), d['step0/logits'][0, 3, 5] * 1.001 + 1e-4)),
            ('router grad element x1.01', base, lambda d: d['step0/grad/layers.1.moe.router'].__setitem__((2, 7), d['step0/grad/layers.1.moe.router'][2, 7] * 1.01 + 1e-6)),
            ('aux loss x1.001', base, lambda d: d['step0/aux_loss'].__setitem__(0, d['step0/aux_loss'][0] * 1.001)),
            ('routing: a far-from-tie expert', base, swap_route),
            ('count off by one', lf, lambda d: d['step0/layers.1.counts'].__setitem__(0, d['step0/layers.1.counts'][0] + 1)),
            ('bias_after one ulp', lf, lambda d: d['step0/layers.2.bias_after'].__setitem__(1, np.nextafter(d['step0/layers.2.bias_after'][1], np.float32(1)))),
            ('final param: no weight decay', base, lambda d: d['final/lm_head'].__setitem__(slice(None), d['final/lm_head'] / np.float32(1 - 1e-3 * 0.5 * 0.1))),
            ('gate x1.0001', base, lambda d: d['step0/mb0/layers.2.a_gate'].__setitem__(4, d['step0/mb0/layers.2.a_gate'][4] * 1.0001)),
            # dump version 2: later steps and micro-batches, the bias chain, the resumed state
            ('step 1 mb 1 router input x1.001', two, scale('step1/mb1/layers.2.router_in', 37, 1.001)),
            ('step 1 mb 0 gate x1.0001', two, scale('step1/mb0/layers.1.a_gate', 5, 1.0001)),
            ('step 0 mb 1 layer aux loss x1.001', two, scale('step0/mb1/layers.2.aux_loss', 0, 1.001)),
            ('step 1 routed with a bias one ulp off', two, lambda d: d['step1/layers.1.bias'].__setitem__(
                2, np.nextafter(d['step1/layers.1.bias'][2], np.float32(1)))),
            ('step 1 mb 1 routing: a far-from-tie expert', two, lambda d: d['step1/mb1/layers.2.a_exp'].__setitem__(
                0, int(np.argmin(d['step1/mb1/layers.2.scores'][0])))),
            ('centred update done uncentred', cen, uncentred),
            ('resumed dump: schedule restarted at step 0', res, lambda d: d['step0/lr'].__setitem__(
                0, np.float32(learning_rate(Cfg(res_cfg), 0)))),
            ('resumed dump: AdamW moments dropped', res, lambda d: [d[k].__setitem__(slice(None), 0)
                                                                   for k in d if k.startswith('init/adam.m/')]),
        ]
        for name, src, fn in corruptions:
            p = os.path.join(tmp, 'bad.safetensors')
            corrupt(src, p, fn)
            st, txt = quiet(cmd_check, p, False)
            ok = st != 0
            fails = [x for x in txt.splitlines() if x.startswith('FAIL:')]
            print(f'selftest corruption [{name}]: {"caught" if ok else "NOT CAUGHT"}  {fails[0] if fails else ""}')
            bad += not ok
        # a version 1 dump (step 0 / micro-batch 0 routers only) is refused, saying what to do
        d1, meta1 = read_safetensors(base)
        v1 = os.path.join(tmp, 'v1.safetensors')
        write_safetensors(v1, {k: v for k, v in d1.items() if '/mb' not in k}, dict(meta1, version='1'))
        try:
            quiet(cmd_check, v1, False)
            msg = 'accepted'
        except DumpError as e:
            msg = str(e)
        ok = 'this checker reads version 2' in msg and 'regenerate' in msg
        print(f'selftest version 1 dump: {"refused, PASS" if ok else "WRONG"}  {msg}')
        bad += not ok
        # an exact tie (two equal router rows) resolved the other way is a near-tie, not a failure
        tie = os.path.join(tmp, 'tie.safetensors')
        write_fake_dump(tie, selftest_config(balance='none', L=2), tie=True)

        p = tie
        st, txt = quiet(cmd_check, p, False)
        nt = [x for x in txt.splitlines() if x.startswith('near-tie')]
        ok = st == 0 and len(nt) > 0 and all('experts 3 vs 1' in x and '(gap 0)' in x for x in nt)
        print(f'selftest exact ties taken the other way: {f"{len(nt)} near-ties reported, PASS" if ok else "WRONG"}  {nt[0] if nt else ""}')
        if not ok:
            print(txt)
        bad += not ok
    print('selftest:', 'PASS' if bad == 0 else f'FAIL ({bad} problems)')
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    for name in ('check', 'trajectory'):
        sp = sub.add_parser(name)
        sp.add_argument('dump')
        sp.add_argument('--verbose', action='store_true', help='print the worst element of every tensor')
    sub.choices['check'].add_argument('--fp32-floor', action='store_true',
                                      help='also run step 0 in float32 torch and print how much of each budget it uses')
    sub.add_parser('selftest')
    a = ap.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and contend with make -j)
    try:
        if a.cmd == 'check':
            return cmd_check(a.dump, a.verbose, a.fp32_floor)
        if a.cmd == 'trajectory':
            return cmd_trajectory(a.dump, a.verbose)
        return cmd_selftest()
    except DumpError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
