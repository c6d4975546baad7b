#!/usr/bin/env python3
"""format_doc.py -- checks that docs/FORMAT.md's tables say what lfmoe's files hold.

  format_doc.py FORMAT_MD CHECKPOINT DUMP [DUMP ...]

Reads the three name tables of FORMAT.md (the tensor table, the dump table, the checkpoint
section) and, for the files given (written by build/train), checks:
  - every tensor in a file matches exactly one documented name pattern, with the documented
    dtype and the documented shape evaluated with the file's own config;
  - every documented pattern is present in at least one of the files (so the table lists
    nothing that lfmoe does not write);
  - the documented metadata keys and values (format, version) are present.
Standard library only (no numpy, no torch), so it is independent of the C++ code and of the
PyTorch reference. Exit 0 when everything agrees, 1 on any disagreement (each one printed).
"""
import json
import re
import struct
import sys

PARAM = '<param>'


def read_header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    meta = header.pop('__metadata__', {})
    return header, meta


def section(text, title):
    """The text of the '## title' section, up to the next '## '."""
    m = re.search(r'^## ' + re.escape(title) + r'.*?$(.*?)(?=^## |\Z)', text, re.M | re.S)
    if not m:
        raise SystemExit(f'FORMAT.md has no section "## {title}"')
    return m.group(1)


def table_rows(sec):
    """Rows of the first markdown table in a section, as lists of cells."""
    rows = [l for l in sec.splitlines() if l.startswith('|')]
    return [[c.strip() for c in r.strip('|').split('|')] for r in rows[2:]]


def expand_names(cell):
    """'`a.b.wq`, `.wk` / `.w2`' -> groups of full names, split at ' / ' (one group per shape)."""
    groups = []
    for part in cell.split(' / '):
        names = []
        for tok in re.findall(r'`([^`]+)`', part):
            if tok.startswith('.'):  # shorthand: replaces the last component of the previous name
                prev = names[-1] if names else groups[-1][-1]
                tok = prev[:prev.rfind('.')] + tok
            names.append(tok)
        groups.append(names)
    return groups


def name_rows(sec):
    """(name, shape expr, dtype) for every name of a section's table (name | shape | dtype | ...)."""
    out = []
    for cells in table_rows(sec):
        groups, shapes = expand_names(cells[0]), cells[1].split(' / ')
        for gi, names in enumerate(groups):
            for n in names:
                out.append((n, shapes[gi] if len(shapes) == len(groups) else shapes[0], cells[2]))
    return out


def shape_of(expr, cfg):
    """'(B·T, E)' -> a tuple of ints with the config's symbols; None for 'table shape' or ''."""
    expr = expr.strip()
    if not expr.startswith('('):
        return None
    env = dict(cfg)
    env['D'] = cfg['C'] // cfg['H']
    dims = expr.strip('()').replace('·', '*').split(',')
    return tuple(int(eval(d, {'__builtins__': {}}, env)) for d in dims)


def layer_rx(name):
    return re.escape(name).replace(re.escape('layers.l.'), r'layers\.\d+\.')


def table_shape(table, param, cfg):
    """The documented shape of a concrete parameter name (e.g. layers.2.attn.wq)."""
    for n, shp, _ in table:
        if re.match('^' + layer_rx(n) + '$', param):
            return shape_of(shp, cfg)
    return None


def pattern(name, params):
    """A documented name as a regex: layers.l. -> any layer, {s}/{m} -> any index, <param> -> a table name."""
    rx = re.escape(name)
    rx = rx.replace(re.escape('layers.l.'), r'layers\.\d+\.')
    rx = rx.replace(re.escape('{s}'), r'(?P<s>\d+)').replace(re.escape('{m}'), r'(?P<m>\d+)')
    rx = rx.replace(re.escape(PARAM), '(?P<param>' + '|'.join(params) + ')')
    return re.compile('^' + rx + '$')


class Checker:
    def __init__(self):
        self.errors = 0

    def fail(self, msg):
        print('FAIL:', msg)
        self.errors += 1

    def match_file(self, path, header, rows, table, cfg, used):
        """rows: (regex, dtype, shape expr, row id). Each tensor must match exactly one row; a
        'table shape' is the tensor table's shape of the parameter the name embeds."""
        for name, t in header.items():
            hits = [r for r in rows if r[0].match(name)]
            if len(hits) != 1:
                self.fail(f'{path}: tensor {name} matches {len(hits)} documented names (expected 1)')
                continue
            rx, dtype, shape_expr, rid = hits[0]
            used.add(rid)
            if dtype and t['dtype'] != dtype:
                self.fail(f'{path}: {name} has dtype {t["dtype"]}, FORMAT.md says {dtype}')
            want = shape_of(shape_expr, cfg)
            if shape_expr == 'table shape':
                want = table_shape(table, rx.match(name).group('param'), cfg)
            if want is not None and tuple(t['shape']) != want:
                self.fail(f'{path}: {name} has shape {tuple(t["shape"])}, FORMAT.md says {shape_expr} = {want}')


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    doc = open(argv[1], encoding='utf-8').read()
    ck = Checker()

    # 1. the tensor table
    tensor_rows = name_rows(section(doc, 'Tensor names and layouts'))
    params_rx = [layer_rx(n) for n, _, _ in tensor_rows if not n.endswith('.moe.bias')]

    # 2. the dump table
    dump_rows = name_rows(section(doc, 'Dump'))
    dump_meta = dict(re.findall(r'`(\w+)` = `([^`]+)`', section(doc, 'Dump')))
    # the keys of the paragraph that starts with `__metadata__`: (format, version, config, steps, ...)
    meta_par = re.search(r'^`__metadata__`:(.*?)(?:\n\n|\Z)', section(doc, 'Dump'), re.M | re.S)
    dump_keys = re.findall(r'`(\w+)` = ', meta_par.group(1)) if meta_par else []
    if len(dump_keys) < 5:
        ck.fail(f'FORMAT.md dump section: the __metadata__ paragraph names only {dump_keys}')

    # 3. the checkpoint section (prose): params, adam.m/<param>, adam.v/<param>, layers.l.moe.bias
    ckpt_sec = section(doc, 'Checkpoint')
    ckpt_names = ['<param>'] + re.findall(r'`(adam\.[mv]/<param>)`', ckpt_sec) + ['layers.l.moe.bias']
    if len(ckpt_names) != 4:
        ck.fail(f'FORMAT.md checkpoint section: expected adam.m/<param> and adam.v/<param>, found {ckpt_names}')
    ckpt_meta = dict(re.findall(r'`(\w+)` = `([^`]+)`', ckpt_sec))
    ckpt_keys = re.findall(r'`(\w+)` \(', ckpt_sec)  # `config` (JSON...), `step` (...), ...

    # the checkpoint: every documented name, shapes from the tensor table
    header, meta = read_header(argv[2])
    cfg = json.loads(meta['config'])
    rows = [(pattern(n, params_rx), 'F32', '(E)' if n.endswith('bias') else 'table shape', n) for n in ckpt_names]
    used = set()
    ck.match_file(argv[2], header, rows, tensor_rows, cfg, used)
    if len(used) != 4:
        ck.fail(f'{argv[2]}: only {sorted(used)} of the documented checkpoint names were found')
    for n, shp, dt in tensor_rows:  # every tensor of the table is in the checkpoint, with its dtype
        hits = [h for h in header if re.match('^' + layer_rx(n) + '$', h)]
        if not hits:
            ck.fail(f'{argv[2]}: FORMAT.md documents {n} but the checkpoint has no such tensor')
        for h in hits:
            if header[h]['dtype'] != dt:
                ck.fail(f'{argv[2]}: {h} has dtype {header[h]["dtype"]}, the tensor table says {dt}')
            if tuple(header[h]['shape']) != shape_of(shp, cfg):
                ck.fail(f'{argv[2]}: {h} has shape {tuple(header[h]["shape"])}, the tensor table says {shp}')
    for k, v in ckpt_meta.items():
        if meta.get(k) != v:
            ck.fail(f'{argv[2]}: metadata {k} = {meta.get(k)!r}, FORMAT.md says {v!r}')
    for k in ckpt_keys:
        if k not in meta:
            ck.fail(f'{argv[2]}: metadata has no {k!r}, which FORMAT.md documents')

    # the dumps: every tensor matches one row; every row is seen in some dump
    rows = [(pattern(n, params_rx), dt, shp, n) for n, shp, dt in dump_rows]
    used = set()
    for path in argv[3:]:
        header, meta = read_header(path)
        cfg = json.loads(meta['config'])
        ck.match_file(path, header, rows, tensor_rows, cfg, used)
        # {s} and {m} mean every step of the dump and every micro-batch of a step: a row written for
        # one step only (step0/...) must say so, not {s}
        for rx, _, _, n in rows:
            for group, count in (('s', int(meta.get('steps', '1'))), ('m', cfg['grad_accum'])):
                if group not in rx.groupindex:
                    continue
                seen = {int(m.group(group)) for h in header for m in [rx.match(h)] if m}
                if seen and seen != set(range(count)):
                    ck.fail(f'{path}: {n} is written for {group} in {sorted(seen)}, not for every one of 0..{count - 1}')
        for k in ('format', 'version'):
            if meta.get(k) != dump_meta.get(k):
                ck.fail(f'{path}: metadata {k} = {meta.get(k)!r}, FORMAT.md says {dump_meta.get(k)!r}')
        for k in dump_keys:  # every key of the documented __metadata__ paragraph
            if k not in meta:
                ck.fail(f'{path}: metadata has no {k!r}, which FORMAT.md documents')
    for n, _, _ in dump_rows:
        if n not in used:
            ck.fail(f'FORMAT.md documents dump tensor {n}, but no dump given holds it')

    print(f'format_doc: {len(tensor_rows)} table tensors, {len(dump_rows)} dump names, 4 checkpoint names, '
          f'{len(argv) - 3} dumps: {ck.errors} disagreement(s)')
    return 1 if ck.errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
