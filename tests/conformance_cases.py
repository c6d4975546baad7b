#!/usr/bin/env python3
"""The cases of tests/check_conformance.sh, run in one process (importing torch once per case would
be most of the test's time): each case calls tools/conformance/kit.py's main() with the arguments a
user would give on the command line and checks its exit status, its RESULT line and, for a planted
bug, that the bug's own DIAGNOSIS name is printed.

    conformance_cases.py DUMPDIR VERSION     (DUMPDIR holds plain/centred/aux/softmax.safetensors)

Prints one table row per case and exits 1 if any case did not do what it must.
"""
import contextlib
import io
import os
import re
import sys

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


def main():
    dumps, version = sys.argv[1], int(sys.argv[2])
    os.chdir(ROOT)
    cases = [('megatron-style', 'pass', 'plain', f'{AD}/megatron_style.py', []),
             ('hf-deepseek-v3-style', 'pass', 'plain', f'{AD}/hf_deepseek_v3_style.py', [])]
    if version >= 2:
        cases += [('megatron-style-seq-aux', 'pass', 'aux', f'{AD}/megatron_style.py', []),
                  ('megatron-style-softmax-aux', 'pass', 'softmax', f'{AD}/megatron_style.py', []),
                  ('torchtitan-style', 'pass', 'centred', f'{AD}/torchtitan_style.py', []),
                  ('deepseek-v3-inference', 'pass', 'plain', f'{AD}/deepseek_v3_inference_style.py',
                   ['--router-only'])]
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
        if expect == 'pass':
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
