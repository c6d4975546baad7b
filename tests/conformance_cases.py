#!/usr/bin/env python3
"""The cases of tests/check_conformance.sh, run in one process (importing torch once per case would
be most of the test's time): each case calls tools/conformance/kit.py's main() with the arguments a
user would give on the command line and checks its exit status, its RESULT line and, for a planted
bug, that the bug's own DIAGNOSIS name is printed.

    conformance_cases.py DUMPDIR VERSION     (DUMPDIR holds plain/centred/aux/softmax.safetensors)

Prints one table row per case and exits 1 if any case did not do what it must.
"""
import contextlib
import ctypes
import io
import json
import os
import re
import struct
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
KIT_DIR = os.path.join(ROOT, 'tools', 'conformance')
AD = os.path.join('tools', 'conformance', 'adapters')
sys.path.insert(0, KIT_DIR)
sys.path.insert(0, os.path.join(KIT_DIR, 'adapters'))
import kit  # noqa: E402
from bugs import BUGS  # noqa: E402


def run(dump, adapter, flags):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = kit.main([dump, '--adapter', adapter] + flags)
    return rc, out.getvalue()


TIE_ADAPTER = """import torch
import megatron_style


class Adapter(megatron_style.Adapter):
    \"\"\"Megatron-style, but equal keys go to the higher expert index (torch.topk promises no rule).\"\"\"

    def route(self, layer, inp, mode):
        rev = dict(inp, logits=inp['logits'].flip(1))
        idx, probs = super().route(layer, rev, mode)
        return self.E - 1 - idx, probs

    def count_if_grad(self, layer, idx):
        super().count_if_grad(layer, self.E - 1 - idx)
"""


def write_safetensors(path, tensors, meta):
    names = {torch.float32: 'F32', torch.float64: 'F64', torch.int32: 'I32', torch.int64: 'I64'}
    header, blobs, off = {'__metadata__': meta}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())  # standard library and torch only
        header[name] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def make_tie_dump(src, dst):
    """A 1-step dump in which one token of the last micro-batch has an exact tie between lfmoe's
    weaker pick a and the best expert h it left out (a < h, so lfmoe's lower-index rule still picks
    a): both get a's logit and score. Returns the token."""
    t, meta = kit.read_safetensors(src)
    t = {k: v.clone() for k, v in t.items()}
    cfg = json.loads(meta['config'])
    l, m, K, E = cfg['n_dense'], cfg['grad_accum'] - 1, cfg['K'], cfg['E']
    pre = f'step0/mb{m}/layers.{l}.'
    sc, lg, ex = t[pre + 'scores'], t[pre + 'router_logits'], t[pre + 'a_exp'].view(-1, K)
    for n in range(sc.shape[0]):
        chosen = ex[n].tolist()
        a = min(chosen, key=lambda i: float(sc[n, i]))
        h = max((i for i in range(E) if i not in chosen), key=lambda i: float(sc[n, i]))
        if a < h:
            sc[n, h], lg[n, h] = sc[n, a], lg[n, a]
            write_safetensors(dst, t, meta)
            return n
    raise RuntimeError('no token with a < h in the 1-step dump')


def main():
    dumps, version = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)   # small tensors; the test machine's cores are shared
    os.chdir(ROOT)
    cases = [('megatron-style', 'pass', 'plain', f'{AD}/megatron_style.py', []),
             ('hf-deepseek-v3-style', 'pass', 'plain', f'{AD}/hf_deepseek_v3_style.py', [])]
    if version >= 2:
        cases += [('megatron-style-seq-aux', 'pass', 'aux', f'{AD}/megatron_style.py', []),
                  ('megatron-style-softmax-aux', 'pass', 'softmax', f'{AD}/megatron_style.py', []),
                  ('torchtitan-style', 'pass', 'centred', f'{AD}/torchtitan_style.py', []),
                  ('deepseek-v3-inference', 'pass', 'plain', f'{AD}/deepseek_v3_inference_style.py',
                   ['--router-only'])]
        # an exact tie broken the other way is a near-tie, not a failure
        n = make_tie_dump(os.path.join(dumps, 'onestep.safetensors'), os.path.join(dumps, 'tie.safetensors'))
        with open(os.path.join(dumps, 'tie_adapter.py'), 'w') as f:
            f.write(TIE_ADAPTER)
        sys.path.insert(0, os.path.join(ROOT, AD))
        cases.append((f'tie-higher-index (token {n})', 'near-tie', 'tie', os.path.join(dumps, 'tie_adapter.py'), []))
    for cls, (diag, dump, v1, extra) in BUGS.items():
        if version < 2 and not v1:
            print(f'SKIP: {cls} needs a version 2 dump (router logits of every step)')
            continue
        # the synthetic large-count check costs most of a run: only the count bugs need it
        flags = ([] if diag.startswith('counts-') else ['--no-large-counts']) + extra
        cases.append((cls, diag, dump, f'{AD}/bugs.py:{cls}', flags))

    fail = 0
    rows = []
    for name, expect, dump, adapter, flags in cases:
        rc, out = run(os.path.join(dumps, dump + '.safetensors'), adapter, flags)
        diags = re.findall(r'^DIAGNOSIS ([a-z0-9-]+):', out, re.M)
        mism = [m.group(1) for m in re.finditer(r'^(\w+) +\d+ +\d+ +\d+ +([1-9]\d*)', out, re.M)]
        if expect == 'near-tie':
            ok = rc == 0 and 'RESULT: PASS' in out and re.search(r'^routing +\d+ +0 +1 +0 ', out, re.M) is not None
        elif expect == 'pass':
            ok = rc == 0 and 'RESULT: PASS' in out
            if version >= 2:  # a faithful run on a version 2 dump must have checked the router itself
                ok = ok and re.search(r'^routing +[1-9]', out, re.M) is not None
        else:
            ok = rc == 1 and expect in diags
        if not ok:
            fail = 1
            print(out)
            print(f'FAIL: {name}: expected {expect}, got exit {rc}, diagnoses {diags}')
        msg = ''
        if expect != 'pass' and expect in diags:
            msg = re.search(rf'^DIAGNOSIS {expect}: (.*)$', out, re.M).group(1)
        rows.append((name, dump, f'exit {rc}; mismatch in: {",".join(mism) or "none"}', ' '.join(diags) or 'none',
                     'ok' if ok else 'WRONG', msg))
    print(f'{"case":<27} {"dump":<8} {"verdict":<42} {"diagnosis":<26} check')
    for r in rows:
        print(f'{r[0]:<27} {r[1]:<8} {r[2]:<42} {r[3]:<26} {r[4]}')
    if os.environ.get('CONFORMANCE_MESSAGES'):
        for r in rows:
            if r[5]:
                print(f'{r[0]}: {r[5]}')
    return fail


if __name__ == '__main__':
    sys.exit(main())
