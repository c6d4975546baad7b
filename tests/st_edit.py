"""tests/st_edit.py — reads, checks and damages lfmoe safetensors files, independently of lfmoe's
C++ reader and writer: its own parser, and the checksums of docs/FORMAT.md ("Checksums") computed
with Python's zlib.crc32. Used by tests/check_bad_input.sh.

  st_edit.py verify FILE                         recompute every checksum, check F32 values are finite;
                                                 exit 1 on a mismatch or a NaN/inf
  st_edit.py flipbit FILE OUT TENSOR             flip the lowest mantissa bit of element 0 (checksums kept)
  st_edit.py setval FILE OUT TENSOR VALUE [fix]  element 0 = VALUE (1e30, nan, inf)
  st_edit.py meta FILE OUT KEY VALUE [fix]       set a metadata entry (e.g. step)
  st_edit.py cfg FILE OUT KEY JSONTEXT [fix]     set one key of the config JSON to JSONTEXT, as written
  st_edit.py alias FILE OUT TENSOR OTHER [fix]   TENSOR's data_offsets = OTHER's (the bytes overlap)
  st_edit.py strip FILE OUT [VERSION]            drop every checksum (and set metadata version)
"fix" recomputes the checksums after the edit, as a careful forger would: then only the other
checks (finite values, tiling) can catch it.
"""
import array, json, math, struct, sys, zlib

def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    head = json.loads(b[8:8 + n])
    return head.pop('__metadata__', {}), head, bytearray(b[8 + n:])

def canonical(meta, table):
    out = b''
    for k in sorted(meta, key=lambda k: k.encode()):
        if k != 'crc32:__header__':
            out += k.encode() + b'\0' + meta[k].encode() + b'\0'
    for name in sorted(table, key=lambda k: k.encode()):
        t = table[name]
        out += (name + '\0' + t['dtype'] + '\0' + ','.join(str(d) for d in t['shape']) + '\0' +
                str(t['data_offsets'][0]) + '\0' + str(t['data_offsets'][1]) + '\0').encode()
    return out

def crc(b):
    return '%08x' % (zlib.crc32(bytes(b)) & 0xFFFFFFFF)

def fix(meta, table, data):
    for name, t in table.items():
        b, e = t['data_offsets']
        meta['crc32:' + name] = crc(data[b:e])
    meta['crc32:__header__'] = crc(canonical(meta, table))

def write(path, meta, table, data):
    head = dict(table)
    head['__metadata__'] = meta
    h = json.dumps(head).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + bytes(data))

def verify(path):
    meta, table, data = read(path)
    bad = 0
    for name, t in table.items():
        b, e = t['data_offsets']
        if meta.get('crc32:' + name) != crc(data[b:e]):
            print(f'{path}: tensor {name}: crc32 {crc(data[b:e])}, stored {meta.get("crc32:" + name)}'); bad += 1
        if t['dtype'] == 'F32':
            x = array.array('f', bytes(data[b:e]))
            n_bad = sum(1 for v in x if not math.isfinite(v))
            if n_bad:
                print(f'{path}: tensor {name}: {n_bad} non-finite values'); bad += 1
    if meta.get('crc32:__header__') != crc(canonical(meta, table)):
        print(f'{path}: header crc32 {crc(canonical(meta, table))}, stored {meta.get("crc32:__header__")}'); bad += 1
    print(f'{path}: {len(table)} tensor checksums and the header checksum recomputed, {bad} mismatches')
    return bad == 0

def main(a):
    if a[0] == 'verify':
        sys.exit(0 if verify(a[1]) else 1)
    meta, table, data = read(a[1])
    out, rest = a[2], a[3:]
    refix = rest and rest[-1] == 'fix'
    if a[0] == 'flipbit':
        b = table[rest[0]]['data_offsets'][0]
        data[b] ^= 1
    elif a[0] == 'setval':
        b = table[rest[0]]['data_offsets'][0]
        data[b:b + 4] = struct.pack('<f', float(rest[1]))
    elif a[0] == 'meta':
        meta[rest[0]] = rest[1]
    elif a[0] == 'cfg':  # text surgery, so that the value is exactly as given (json would reformat it)
        import re
        text, n = re.subn(r'("%s": )[^,}]*' % re.escape(rest[0]), lambda m: m.group(1) + rest[1], meta['config'])
        if n != 1: sys.exit(f'config has no key {rest[0]}')
        meta['config'] = text
    elif a[0] == 'alias':
        table[rest[0]]['data_offsets'] = list(table[rest[1]]['data_offsets'])
    elif a[0] == 'strip':
        meta = {k: v for k, v in meta.items() if not k.startswith('crc32:')}
        if rest: meta['version'] = rest[0]
    else:
        sys.exit(f'unknown command {a[0]}')
    if refix:
        fix(meta, table, data)
    write(out, meta, table, data)

if __name__ == '__main__':
    main(sys.argv[1:])
