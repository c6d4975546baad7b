#!/usr/bin/env python3
"""kit.py -- the lfmoe router conformance kit: checks another MoE implementation's router and
loss-free bias update against an lfmoe dump (docs/FORMAT.md), through a small adapter.

    /usr/bin/python3 tools/conformance/kit.py DUMP --adapter FILE.py[:Class] [--no-eval]
                     [--no-recompute] [--no-large-counts] [--router-only]

The kit drives the adapter the way a training loop drives a router: for every optimizer step of the
dump, an evaluation forward (must not count as load), then for every micro-batch and MoE layer a
training forward (counts) and an activation-recompute forward (must not count), then the optimizer
step boundary, where the adapter updates its bias. It compares, per quantity, what the adapter did
with what lfmoe recorded, and reports each as exact / within budget / near-tie / mismatch, with the
first (step, micro-batch, layer, token) that differs. When something mismatches it tests a list of
known implementation mistakes against the adapter's own outputs and names the one that explains
them (lines "DIAGNOSIS <name>: ..."). docs/PEERS.md has the adapter interface, the peers' settings
and the planted-bug suite (tools/conformance/bugs.py).

Quantities:
  routing       each token's set of K experts (order ignored: torch.topk(sorted=False) has none)
  gates         the gate of each selected expert, matched by expert
  aux_loss      per micro-batch and layer (only when the adapter has aux_loss and the dump one)
  load          the adapter's accumulated counts just before each update, against the counts of
                its own training forwards (exact integers or a mismatch)
  bias          the adapter's saved bias after each step against the dump's bias_after
  large_counts  a synthetic check: the adapter's count() fed the dump's routing tiled until the
                busiest expert holds more than 2^24 + 2^22 assignments (fp32 is exact only to 2^24),
                against exact int64 sums

A version 1 dump (no router logits) supports only a replay: the dump's own routing is fed to the
adapter's count(), then load, bias and large_counts are checked; routing, gates, aux loss and the
eval/recompute forwards need a version 2 dump (this build's `train --dump`).

Exit status: 0 nothing mismatched, 1 a mismatch, 2 a bad dump, adapter or usage.
Standard library and torch only.
"""
import argparse
import importlib.util
import json
import math
import os
import struct
import sys

import torch

# ----------------------------------------------------------------------------- budgets
# The adapter starts from the dump's fp32 router logits, so whatever it computes differs from lfmoe
# only by the rounding of a few fp32 operations (sigmoid/softmax, a sum of K gates, a division, a
# scale). 2e-6 relative is ~16 fp32 ulps: room for a different exp and summation order, far below
# any modelling difference (a bf16 rounding is 4e-3 relative, a missing normalisation is O(1)).
GATE_RTOL = 2e-6
# Two selection keys closer than this (relative) cannot be ordered reliably by two fp32
# implementations: a disagreement there is a near-tie, not a mismatch.
NEAR_TIE_RTOL = 1e-6
# The bias: lfmoe's arithmetic is fixed (FORMAT.md, "Bias arithmetic"); an implementation may form
# the same update in another order (torchtitan centres in fp32, lfmoe in double), which moves the
# result by an ulp or two. 4 fp32 ulps of max(|b|, u) is "within budget"; a bf16 bias is ~1e3 ulps.
BIAS_ULPS = 4
# The aux loss is a mean of many products; lfmoe accumulates it in double and stores fp32.
AUX_RTOL = 1e-5
FP32_EPS = 2.0 ** -23


class KitError(Exception):
    """A bad dump, adapter or usage (exit status 2)."""


# ----------------------------------------------------------------------------- safetensors
_DTYPES = {'F32': torch.float32, 'F64': torch.float64, 'I32': torch.int32, 'I64': torch.int64,
           'BF16': torch.bfloat16, 'F16': torch.float16}
_SIZES = {'F32': 4, 'F64': 8, 'I32': 4, 'I64': 8, 'BF16': 2, 'F16': 2}


def read_safetensors(path):
    """({name: tensor}, metadata) of a safetensors file; checks sizes and bounds."""
    try:
        with open(path, 'rb') as f:
            data = bytearray(f.read())
    except OSError as e:
        raise KitError(f'cannot read {path}: {e}')
    if len(data) < 8:
        raise KitError(f'{path}: {len(data)} bytes, too short for a safetensors file')
    n = struct.unpack('<Q', bytes(data[:8]))[0]
    if 8 + n > len(data):
        raise KitError(f'{path}: not a safetensors file (its header length {n} runs past the end of the file, '
                       f'{len(data)} bytes; truncated?): give an lfmoe dump (train --dump FILE)')
    try:
        header = json.loads(bytes(data[8:8 + n]).decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise KitError(f'{path}: not a safetensors file (its header is not JSON: {e}): give an lfmoe dump '
                       '(train --dump FILE)')
    meta = header.pop('__metadata__', {}) or {}
    tensors, base = {}, 8 + n
    for name, info in header.items():
        dt = info.get('dtype')
        if dt not in _DTYPES:
            raise KitError(f'{path}: tensor {name} has dtype {dt}, expected one of {list(_DTYPES)}')
        shape = [int(d) for d in info['shape']]
        b, e = info['data_offsets']
        count = math.prod(shape)
        if e - b != count * _SIZES[dt] or b < 0 or base + e > len(data):
            raise KitError(f'{path}: tensor {name} shape {shape} does not fit its data_offsets {[b, e]}')
        t = torch.frombuffer(data, dtype=_DTYPES[dt], count=count, offset=base + b) if count else \
            torch.zeros(0, dtype=_DTYPES[dt])
        tensors[name] = t.reshape(shape)
    return tensors, meta


# ----------------------------------------------------------------------------- the dump
def f32(x):
    """The fp32 value of a config float (lfmoe's config floats are fp32: FORMAT.md)."""
    return float(torch.tensor(float(x), dtype=torch.float32))


class Dump:
    """What the kit needs from an lfmoe dump, version 1 or 2, under one set of accessors."""

    def __init__(self, path):
        self.path = path
        self.t, meta = read_safetensors(path)
        if meta.get('format') != 'lfmoe-dump':
            raise KitError(f'{path}: metadata format is {meta.get("format")!r}, not an lfmoe dump (train --dump FILE)')
        self.version = int(meta.get('version', 0))
        if self.version not in (1, 2):
            raise KitError(f'{path}: dump version {self.version}; this kit reads versions 1 and 2')
        try:
            cfg = json.loads(meta['config'])
            self.steps = int(meta['steps'])
        except (KeyError, ValueError) as e:
            raise KitError(f'{path}: metadata lacks a readable config/steps ({e})')
        for k in ('init_std', 'rope_theta', 'norm_eps', 'bias_rate', 'aux_alpha', 'route_scale', 'lr',
                  'lr_min', 'lr_decay', 'beta1', 'beta2', 'adam_eps', 'weight_decay', 'grad_clip'):
            if k in cfg:
                cfg[k] = f32(cfg[k])
        # Dumps written before route_scale acted without norm_topk (no bias_center key) computed
        # plain gates then: read them as they ran (FORMAT.md, the config).
        if 'bias_center' not in cfg and not cfg.get('norm_topk', False):
            cfg['route_scale'] = 1.0
        cfg.setdefault('bias_center', False)
        self.cfg = cfg
        if cfg.get('routing') != 'token_choice':
            raise KitError(f'{path}: routing {cfg.get("routing")!r}; the kit checks token-choice routers '
                           '(make the dump with --routing token)')
        self.B, self.T, self.E, self.K = cfg['B'], cfg['T'], cfg['E'], cfg['K']
        self.G, self.N = cfg['grad_accum'], cfg['B'] * cfg['T']
        self.layers = [l for l in range(cfg['L']) if l >= cfg['n_dense']]
        self.start_step = int(meta.get('start_step', 0))
        self.need('init/' + self.bias_name(self.layers[0]))

    @staticmethod
    def bias_name(l):
        return f'layers.{l}.moe.bias'

    def need(self, name):
        if name not in self.t:
            raise KitError(f'{self.path}: tensor {name} missing (dump version {self.version})')
        return self.t[name]

    def get(self, name):
        return self.t.get(name)

    def has_logits(self):
        return self.version >= 2

    def init_bias(self, l):
        return self.need('init/' + self.bias_name(l)).clone()

    def step_bias(self, s, l):
        """The bias step s routed with."""
        if self.version >= 2:
            return self.need(f'step{s}/layers.{l}.bias')
        return self.init_bias(l) if s == 0 else self.bias_after(s - 1, l)

    def bias_after(self, s, l):
        return self.need(f'step{s}/layers.{l}.bias_after')

    def counts(self, s, l):
        return self.need(f'step{s}/layers.{l}.counts').to(torch.int64)

    def experts(self, s, m, l):
        """(N, K) experts of each token, in the dump's order (descending key)."""
        off = self.need(f'step{s}/mb{m}/layers.{l}.tok_off').to(torch.int64)
        a = self.need(f'step{s}/mb{m}/layers.{l}.a_exp').to(torch.int64)
        if not torch.equal(off, torch.arange(self.N + 1) * self.K):
            raise KitError(f'{self.path}: step {s} mb {m} layer {l}: tok_off is not n*K (token choice)')
        return a.view(self.N, self.K)

    def logits(self, s, m, l):
        return self.need(f'step{s}/mb{m}/layers.{l}.router_logits')

    def scores(self, s, m, l):
        return self.need(f'step{s}/mb{m}/layers.{l}.scores')

    def gates(self, s, m, l):
        return self.need(f'step{s}/mb{m}/layers.{l}.a_gate').view(self.N, self.K)

    def router_in(self, s, m, l):
        return self.get(f'step{s}/mb{m}/layers.{l}.router_in')

    def router_weight(self, s, l):
        return self.get(f'step{s}/layers.{l}.router')

    def aux(self, s, m, l):
        t = self.get(f'step{s}/mb{m}/layers.{l}.aux_loss')
        return None if t is None else float(t.reshape(-1)[0])

    def has_aux(self):
        return self.cfg.get('balance') in ('aux', 'lossfree_aux')

    def has_bias(self):
        return self.cfg.get('balance') in ('lossfree', 'lossfree_aux')


# ----------------------------------------------------------------------------- lfmoe's rules (the oracle)
# Written from docs/FORMAT.md "Bias arithmetic" and docs/MODEL.md section 6; used to explain what an
# adapter did (diagnosis) and to judge an update made from counts that differ from lfmoe's after a
# near-tie. The verdicts themselves compare with the dump.
def lfmoe_update(b, c, cfg, center=None):
    """lfmoe's bias after one update of fp32 bias b (E) from integer counts c (E)."""
    center = cfg['bias_center'] if center is None else center
    u, E = f32(cfg['bias_rate']), len(c)
    tot = int(c.sum())
    out = b.to(torch.float32).clone()
    if tot == 0:
        return out
    deltas = []
    for i in range(E):
        ci = int(c[i])
        if cfg['update_rule'] == 'sign':
            deltas.append(u * ((tot > E * ci) - (tot < E * ci)))
        else:
            mean = tot / E
            deltas.append(u * (mean - ci) / mean)
    if center:
        mu = 0.0
        for d in deltas:  # summed in double in expert order
            mu += d
        mu /= E
        deltas = [d - mu for d in deltas]
    for i in range(E):
        out[i] = out[i] + torch.tensor(deltas[i], dtype=torch.float32)
    return out


def lfmoe_gates(scores_sel, cfg):
    """Gates of the selected experts (N, K) from their unbiased scores, lfmoe's formula."""
    g = scores_sel.double()
    if cfg.get('norm_topk'):
        g = g / g.sum(1, keepdim=True)
    return g * cfg['route_scale']


def bf16_exact(t):
    t = t.to(torch.float32)
    return bool(torch.equal(t.to(torch.bfloat16).to(torch.float32), t))


def bias_close(a, b, u):
    """Per element: exact, or within BIAS_ULPS fp32 ulps of max(|b|, u)."""
    a, b = a.double(), b.double()
    tol = BIAS_ULPS * FP32_EPS * torch.maximum(b.abs(), torch.full_like(b, abs(u) if u else 1e-30))
    return (a - b).abs() <= tol


# ----------------------------------------------------------------------------- the adapter
def load_adapter(spec):
    """'path/to/file.py' (class Adapter) or 'path/to/file.py:ClassName'."""
    path, _, cls = spec.partition(':')
    cls = cls or 'Adapter'
    if not os.path.isfile(path):
        raise KitError(f'--adapter {spec}: no file {path} (give a Python file, optionally :ClassName)')
    name = 'kit_adapter_' + os.path.splitext(os.path.basename(path))[0]
    sp = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(sp)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        sp.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    if not hasattr(mod, cls):
        raise KitError(f'--adapter {spec}: {path} has no class {cls}')
    return getattr(mod, cls), f'{path}:{cls}'


REQUIRED = ('route', 'end_step', 'saved_bias', 'load')


class Refused(Exception):
    pass


def make_adapter(klass, dump, recompute, evaluate):
    run = dict(B=dump.B, T=dump.T, grad_accum=dump.G, recompute=recompute, eval=evaluate)
    try:
        a = klass(dict(dump.cfg), list(dump.layers), {l: dump.init_bias(l) for l in dump.layers}, run)
    except ValueError as e:  # adapters refuse configs they cannot express with ValueError
        raise Refused(str(e))
    missing = [m for m in REQUIRED if not callable(getattr(a, m, None))]
    if missing:
        raise KitError(f'adapter {klass.__name__} lacks {missing} (docs/PEERS.md, the adapter interface)')
    layout = getattr(a, 'layout', 'bt')
    if layout not in ('bt', 'tb'):
        raise KitError(f'adapter layout {layout!r}: use "bt" (row n = b*T + t) or "tb" (row n = t*B + b)')
    return a


def to_long_2d(x, N, K, what):
    x = torch.as_tensor(x)
    if tuple(x.shape) != (N, K):
        raise KitError(f'adapter {what} has shape {tuple(x.shape)}, expected (N, K) = ({N}, {K})')
    return x


# ----------------------------------------------------------------------------- the report
class Quantity:
    """Verdict counts of one quantity, the first non-exact item and the first mismatch."""

    def __init__(self, name):
        self.name, self.n = name, {'exact': 0, 'within budget': 0, 'near-tie': 0, 'mismatch': 0}
        self.first, self.items = {}, []   # items: every non-exact one (capped), for --verbose
        self.ran = False

    def add(self, verdict, where=None, detail='', count=1):
        self.ran = True
        self.n[verdict] += count
        if verdict != 'exact' and verdict not in self.first:
            self.first[verdict] = (where, detail)
        if verdict != 'exact' and len(self.items) < 200:
            self.items.append((verdict, where, detail))

    def row(self):
        if not self.ran:
            return f'{self.name:<13} {"not checked":>44}'
        cells = ' '.join(f'{self.n[k]:>10}' for k in ('exact', 'within budget', 'near-tie', 'mismatch'))
        for k in ('mismatch', 'near-tie', 'within budget'):
            if k in self.first:
                where, detail = self.first[k]
                return f'{self.name:<13} {cells}   first {k}: {where}{": " + detail if detail else ""}'
        return f'{self.name:<13} {cells}'


def where(s, m=None, l=None, tok=None, dump=None):
    w = f'step {s}'
    if m is not None:
        w += f' mb {m}'
    if l is not None:
        w += f' layer {l}'
    if tok is not None:
        w += f' token {tok}' + (f' (b {tok // dump.T}, t {tok % dump.T})' if dump else '')
    return w


# ----------------------------------------------------------------------------- the run
class Run:
    def __init__(self, dump, klass, recompute=True, evaluate=True, verbose=False, router_only=False):
        self.d, self.klass, self.verbose, self.router_only = dump, klass, verbose, router_only
        self.recompute, self.evaluate = recompute, evaluate
        self.q = {k: Quantity(k) for k in ('routing', 'gates', 'aux_loss', 'load', 'bias', 'large_counts')}
        self.notes, self.diagnoses = [], []
        self.bias_near_ties = set()   # (step, layer) whose bias differs only through a near-tie
        # Records for the diagnosis: per step, the adapter's training routing (dump order), its
        # eval routing, its load, its saved bias; per (s, m, l), its gates.
        self.rec = {}

    def note(self, text):
        self.notes.append(text)

    # --- layout
    def perm(self, layout):
        """perm[r] = the dump row of adapter row r."""
        d = self.d
        if layout == 'bt':
            return torch.arange(d.N)
        r = torch.arange(d.N)
        t, b = r // d.B, r % d.B
        return b * d.T + t

    def call_route(self, a, l, s, m, mode):
        """Runs the adapter's router on the dump's micro-batch in the adapter's layout; returns
        (experts, gates) in the dump's token order."""
        d, p = self.d, self.perm(a.layout)
        x = d.router_in(s, m, l)
        inp = dict(logits=d.logits(s, m, l)[p].clone(), x=None if x is None else x[p].clone(),
                   weight=d.router_weight(s, l))
        ctx = torch.no_grad() if mode in ('eval', 'recompute') else torch.enable_grad()
        with ctx:
            out = a.route(l, inp, mode)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise KitError('adapter route() must return (experts, gates), each (N, K)')
        e = to_long_2d(out[0], d.N, d.K, 'route() experts').to(torch.int64)
        g = to_long_2d(out[1], d.N, d.K, 'route() gates')
        inv = torch.empty_like(p)
        inv[p] = torch.arange(d.N)
        return e[inv], g[inv]

    def main(self):
        d = self.d
        try:
            a = make_adapter(self.klass, d, self.recompute and d.has_logits(), self.evaluate and d.has_logits())
        except Refused as e:
            raise KitError(f'the adapter refuses this dump\'s config: {e}')
        self.layout = a.layout
        replay = not d.has_logits()
        if replay:
            self.note(f'dump version {d.version} has no router logits: replaying its routing into the adapter\'s '
                      'count() (routing, gates, aux loss, eval and recompute forwards need a version 2 dump)')
            if not callable(getattr(a, 'count', None)):
                raise KitError('a version 1 dump can only be replayed through the adapter\'s count(); '
                               'this adapter has none (make a version 2 dump)')
        if self.recompute and not replay:
            self.note('each training forward is followed by a recompute forward (no grad), as activation '
                      'checkpointing runs one; --no-recompute turns it off')
        if self.evaluate and not replay:
            self.note('each step starts with an evaluation forward (no grad) on its first micro-batch; --no-eval '
                      'turns it off')
        check_aux = (not replay) and d.has_aux() and callable(getattr(a, 'aux_loss', None))
        if d.has_aux() and not replay and not check_aux:
            self.note('the dump has an aux loss but the adapter no aux_loss(): not checked')
        if self.router_only:
            if replay:
                raise KitError('--router-only needs a version 2 dump (router logits of every step)')
            if not callable(getattr(a, 'set_bias', None)):
                raise KitError('--router-only gives the adapter each step\'s bias through set_bias(layer, bias); '
                               'this adapter has none')
            self.note('router only: each step\'s bias comes from the dump (set_bias); load, bias and large counts '
                      'are not checked')
        for s in range(d.steps):
            r = self.rec[s] = dict(train={}, eval={}, gates={}, load={}, saved={})
            if self.router_only:
                for l in d.layers:
                    a.set_bias(l, d.step_bias(s, l).clone())
            if self.evaluate and not replay:
                for l in d.layers:
                    r['eval'][l], _ = self.call_route(a, l, s, 0, 'eval')
            for m in range(d.G):
                for l in d.layers:
                    if replay:
                        e = d.experts(s, m, l)
                        with torch.enable_grad():
                            a.count(l, e[self.perm(a.layout)])
                    else:
                        e, g = self.call_route(a, l, s, m, 'train')
                        self.check_routing(s, m, l, e)
                        self.check_gates(s, m, l, e, g)
                        r['gates'][(m, l)] = g
                        if check_aux:
                            self.check_aux(a, s, m, l, e)
                        if self.recompute:
                            self.call_route(a, l, s, m, 'recompute')
                    r['train'][(m, l)] = e
                if callable(getattr(a, 'end_micro_batch', None)):
                    a.end_micro_batch()
            if self.router_only:
                continue
            for l in d.layers:
                ld = a.load(l)
                r['load'][l] = None if ld is None else torch.as_tensor(ld).detach().clone()
                self.check_load(s, l, r)
            a.end_step()
            for l in d.layers:
                r['saved'][l] = torch.as_tensor(a.saved_bias(l)).detach().clone()
                self.check_bias(s, l, r)
        if self.router_only:
            self.diagnose()
            return
        if not d.has_bias():
            self.note(f'balance {d.cfg.get("balance")!r}: the dump\'s bias never changes')
        self.large_counts()
        self.diagnose()

    # --- checks
    def check_routing(self, s, m, l, e):
        d, q = self.d, self.q['routing']
        ref = d.experts(s, m, l)
        mine, theirs = e.sort(1).values, ref.sort(1).values
        diff = (mine != theirs).any(1)
        q.add('exact', count=int((~diff).sum()))
        if not diff.any():
            return
        key = self.keys(s, m, l)
        for n in diff.nonzero().flatten().tolist():
            k = key[n]
            got, want = set(e[n].tolist()), set(ref[n].tolist())
            if len(got) != d.K or min(got) < 0 or max(got) >= d.E:
                q.add('mismatch', where(s, m, l, n, d),
                      f'adapter experts {e[n].tolist()} are not K distinct experts of 0..{d.E - 1}')
                continue
            # the adapter's worst pick against the best expert it left out, by lfmoe's keys
            lo = min(got, key=lambda i: float(k[i]))
            hi = max(set(range(d.E)) - got, key=lambda i: float(k[i]))
            gap = float(k[hi] - k[lo])
            budget = NEAR_TIE_RTOL * max(abs(float(k[hi])), abs(float(k[lo])), 1e-30)
            detail = (f'adapter {sorted(got)}, lfmoe {sorted(want)}; keys of experts {lo} / {hi}: '
                      f'{float(k[lo]):.9g} / {float(k[hi]):.9g} (gap {gap:.3g})')
            if gap <= budget:
                q.add('near-tie', where(s, m, l, n, d), detail + (' exact tie: lfmoe takes the lower index'
                                                                   if gap == 0 else ''))
            else:
                q.add('mismatch', where(s, m, l, n, d), detail)

    def keys(self, s, m, l):
        """lfmoe's selection keys (float64 of the fp32 key: s + b, s * b or s)."""
        d = self.d
        sc = d.scores(s, m, l)
        if not d.has_bias():
            return sc.double()
        b = d.step_bias(s, l)
        k = sc + b if d.cfg.get('bias_kind', 'add') == 'add' else sc * b
        return k.double()

    def check_gates(self, s, m, l, e, g):
        d, q = self.d, self.q['gates']
        ref_e, ref_g = d.experts(s, m, l), d.gates(s, m, l)
        same = (e.sort(1).values == ref_e.sort(1).values).all(1)
        # match the adapter's gates to lfmoe's by expert
        order_a, order_r = e.argsort(1), ref_e.argsort(1)
        ga = g.double().gather(1, order_a)
        gr = ref_g.double().gather(1, order_r)
        exact = (ga == gr).all(1) & same
        tol = GATE_RTOL * gr.abs().amax(1, keepdim=True).clamp_min(1e-30)
        close = ((ga - gr).abs() <= tol).all(1) & same & ~exact
        bad = same & ~exact & ~close
        q.add('exact', count=int(exact.sum()))
        if close.any():
            n = int(close.nonzero()[0])
            q.add('within budget', where(s, m, l, n, d), f'max rel diff {self.rel(ga[n], gr[n]):.2g}',
                  count=int(close.sum()))
        for n in bad.nonzero().flatten().tolist():
            q.add('mismatch', where(s, m, l, n, d), f'adapter {self.fmt(ga[n])} vs lfmoe {self.fmt(gr[n])} '
                  f'(experts {sorted(e[n].tolist())})')

    @staticmethod
    def rel(a, b):
        return float(((a - b).abs() / b.abs().clamp_min(1e-30)).max())

    @staticmethod
    def fmt(v):
        return '[' + ', '.join(f'{float(x):.8g}' for x in v) + ']'

    def check_aux(self, a, s, m, l, e):
        d, q = self.d, self.q['aux_loss']
        ref = d.aux(s, m, l)
        if ref is None:
            return
        p = self.perm(a.layout)
        with torch.enable_grad():
            got = a.aux_loss(l, dict(logits=d.logits(s, m, l)[p].clone()), e[p])
        got = float(got)
        if got == ref:
            q.add('exact')
        elif abs(got - ref) <= AUX_RTOL * abs(ref):
            q.add('within budget', where(s, m, l), f'{got:.9g} vs {ref:.9g}')
        else:
            q.add('mismatch', where(s, m, l), f'adapter {got:.9g} vs lfmoe {ref:.9g}')

    def own_counts(self, s, l, r):
        c = torch.zeros(self.d.E, dtype=torch.int64)
        for m in range(self.d.G):
            c += torch.bincount(r['train'][(m, l)].reshape(-1), minlength=self.d.E)
        return c

    def check_load(self, s, l, r):
        d, q = self.d, self.q['load']
        ld = r['load'][l]
        if ld is None:
            return
        want = self.own_counts(s, l, r)
        got = ld.double()
        if torch.equal(got, want.double()):
            q.add('exact')
        else:
            i = int((got != want.double()).nonzero()[0])
            q.add('mismatch', where(s, None, l), f'expert {i}: adapter load {float(got[i]):.10g}, its training '
                  f'forwards routed {int(want[i])} (lfmoe: {int(d.counts(s, l)[i])})')

    def check_bias(self, s, l, r):
        d, q = self.d, self.q['bias']
        got = r['saved'][l].to(torch.float64)
        ref = d.bias_after(s, l)
        if got.shape != ref.shape:
            raise KitError(f'adapter saved_bias({l}) has shape {tuple(got.shape)}, expected ({d.E},)')
        if torch.equal(got, ref.double()):
            q.add('exact')
            return
        close = bias_close(got, ref, d.cfg['bias_rate'])
        if close.all():
            q.add('within budget', where(s, None, l), f'max diff {float((got - ref.double()).abs().max()):.3g}')
            return
        # After a near-tie the adapter's own counts differ from lfmoe's: judge its update by lfmoe's
        # rule applied to its own counts and its own previous bias.
        prev = self.rec[s - 1]['saved'][l].double() if s > 0 else d.init_bias(l).double()
        if self.q['routing'].n['near-tie'] and not torch.equal(self.own_counts(s, l, r), d.counts(s, l)):
            own = lfmoe_update(prev.float(), self.own_counts(s, l, r), d.cfg)
            if bias_close(got, own, d.cfg['bias_rate']).all():
                self.bias_near_ties.add((s, l))
                q.add('near-tie', where(s, None, l), 'differs from lfmoe only through the counts of a near-tie')
                return
        i = int((~close).nonzero()[0])
        q.add('mismatch', where(s, None, l), f'expert {i}: adapter {float(got[i]):.9g}, lfmoe {float(ref[i]):.9g} '
              f'(before the step: {float(prev[i]):.9g})')

    def large_counts(self):
        """count() fed the dump's routing tiled many times, against exact int64 sums."""
        d, q = self.d, self.q['large_counts']
        if not callable(getattr(self.klass, 'count', None)):
            self.note('large_counts: the adapter has no count(): not checked')
            return
        if not self.do_large:
            return
        a = make_adapter(self.klass, d, False, False)
        l = d.layers[0]
        if a.load(l) is None:
            self.note('large_counts: the adapter keeps no load with this config (load() is None): not checked')
            return
        base = d.experts(0, 0, l)                       # (N, K): real token rows
        # Each call adds R copies of the micro-batch's rows, then a second call a varying prefix of
        # them, so that the increments are not all multiples of a power of two (those would add
        # exactly in fp32). R: the busiest expert gains about 2^21 per round, ~9 rounds pass 2^24.
        busiest = int(torch.bincount(base.reshape(-1), minlength=d.E).max())
        R = max(1, (1 << 21) // busiest) | 1
        tiled = base.repeat(R, 1)
        tiled_counts = torch.bincount(tiled.reshape(-1), minlength=d.E)
        want = torch.zeros(d.E, dtype=torch.int64)
        calls, limit, first_bad = 0, (1 << 24) + (1 << 22), None
        while int(want.max()) <= limit:
            prefix = base[:(calls * 37) % d.N + 1]
            for e, c in ((tiled, tiled_counts), (prefix, None)):
                a.count(l, e)
                want += torch.bincount(e.reshape(-1), minlength=d.E) if c is None else c
                calls += 1
                got = torch.as_tensor(a.load(l)).double()
                if first_bad is None and not torch.equal(got, want.double()):
                    i = int((got != want.double()).nonzero()[0])
                    first_bad = (calls, i, float(got[i]), int(want[i]))
        self.large_info = dict(calls=calls, max=int(want.max()), first_bad=first_bad)
        if first_bad is None:
            q.add('exact')
            self.note(f'large_counts: {calls} count() calls, the busiest expert at {int(want.max())} assignments '
                      '(> 2^24), exact')
        else:
            c, i, g, w = first_bad
            q.add('mismatch', f'layer {l} call {c}', f'expert {i}: adapter load {g:.10g}, exact {w}')

    # --- diagnosis
    def diagnose(self):
        if not any(k.n['mismatch'] for k in self.q.values()):
            return                    # near-ties and rounding need no explanation
        from diagnose import diagnose as run_diagnosis  # noqa: E402 (a sibling file of this one)
        self.diagnoses = run_diagnosis(self)

    def report(self):
        d = self.d
        print(f'conformance: adapter {self.name} (layout {self.layout}) on {d.path}')
        start = f' (continuing a checkpoint: optimizer steps {d.start_step}..{d.start_step + d.steps - 1})' \
            if d.start_step else ''
        print(f'  dump version {d.version}, {d.steps} steps{start} x {d.G} micro-batches, MoE layers {d.layers}, '
              f'B {d.B} T {d.T} E {d.E} K {d.K}, gate {d.cfg.get("gate")}, balance {d.cfg.get("balance")}, '
              f'update {d.cfg.get("update_rule")}{" centred" if d.cfg.get("bias_center") else ""}, '
              f'norm_topk {d.cfg.get("norm_topk")}, route_scale {d.cfg.get("route_scale"):g}')
        for n in self.notes:
            print('  note: ' + n)
        print(f'{"quantity":<13} {"exact":>10} {"within":>10} {"near-tie":>10} {"mismatch":>10}')
        for k in self.q.values():
            print(k.row())
        if self.verbose:
            for k in self.q.values():
                for verdict, w, detail in k.items:
                    print(f'  {k.name} {verdict} at {w}: {detail}')
        for name, text in self.diagnoses:
            print(f'DIAGNOSIS {name}: {text}')
        bad = any(k.n['mismatch'] for k in self.q.values())
        if bad and not self.diagnoses:
            print('DIAGNOSIS unexplained: no known mistake reproduces the adapter\'s outputs; start from the '
                  'first mismatch above')
        print('RESULT: ' + ('FAIL' if bad else 'PASS'))
        return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('dump', help='an lfmoe dump (train --dump FILE --dump-steps N)')
    ap.add_argument('--adapter', required=True, help='FILE.py[:Class] (default class: Adapter)')
    ap.add_argument('--no-eval', action='store_true', help='no evaluation forwards between steps')
    ap.add_argument('--no-recompute', action='store_true', help='no activation-recompute forwards')
    ap.add_argument('--no-large-counts', action='store_true', help='skip the synthetic large-count check')
    ap.add_argument('--router-only', action='store_true',
                    help='check routing and gates only, the adapter given each step\'s bias (set_bias): for '
                         'inference code without a bias update')
    ap.add_argument('--verbose', action='store_true', help='list every non-exact item (up to 200 per quantity)')
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        dump = Dump(args.dump)
        klass, name = load_adapter(args.adapter)
        run = Run(dump, klass, recompute=not args.no_recompute, evaluate=not args.no_eval, verbose=args.verbose,
                  router_only=args.router_only)
        run.name, run.do_large = name, not args.no_large_counts
        run.main()
    except KitError as e:
        print(f'kit: {e}', file=sys.stderr)
        return 2
    return run.report()


if __name__ == '__main__':
    sys.exit(main())
