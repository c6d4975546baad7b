#!/usr/bin/env bash
# check_corpus.sh — the data files are what data/README.md says they are. Checks sizes, UTF-8 and
# layout, never hashes (several source packages get security updates, so bytes change).
#   always:                  data/fixtures/<part>.txt, the committed slices of every corpus part
#   if data/corpus exists:   every part, MANIFEST (versions recorded, byte/document counts true)
#   if data/shards/* exist:  header, size, token range, EOT layout and stats.tsv of every shard pair
# Independent of the C++ code: python3 reads the files itself.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
command -v python3 >/dev/null || { echo "SKIP check_corpus: python3 not found"; exit 0; }

python3 - <<'EOF'
import json, os, struct, sys

PARTS = ["bible", "fortunes", "python_doc", "perl_doc", "pari_doc", "eigen", "linux", "manpages_zh", "manpages_fr"]
RS_LINE = b"\x1e\n"
errors = []

def err(msg):
    errors.append(msg)
    print("FAIL: " + msg)

def documents(path, data):
    """The part format: documents, each ending in '\\n' and followed by a line holding only 0x1E."""
    if not data.endswith(b"\n" + RS_LINE):
        err(f"{path}: does not end with a '\\n' + separator line (0x1E '\\n')")
        return []
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        err(f"{path}: not valid UTF-8 at byte {e.start}")
    for bad, name in ((b"\r", "CR"), (b"\x00", "NUL")):
        if bad in data:
            err(f"{path}: contains {name} at byte {data.index(bad)}")
    docs = data.split(b"\n" + RS_LINE)[:-1]
    docs = [d + b"\n" for d in docs]
    for i, d in enumerate(docs):
        if b"\x1e" in d:
            err(f"{path}: document {i} holds a stray 0x1E")
        if not d.strip():
            err(f"{path}: document {i} is empty")
    return docs

def read_parts(folder, how_to_make):
    """(part, path, bytes, documents) of every part file folder/<part>.txt; a missing one is reported."""
    for p in PARTS:
        path = f"{folder}/{p}.txt"
        if not os.path.isfile(path):
            err(f"{path} missing; {how_to_make}")
            continue
        data = open(path, "rb").read()
        yield p, path, data, documents(path, data)

# 1. fixtures: every part present, 16..80 KiB each, under 1 MB in all.
total = 0
for p, path, data, docs in read_parts("data/fixtures", "write it with data/build_corpus.sh --fixtures (needs data/corpus)"):
    total += len(data)
    if not 16 * 1024 <= len(data) <= 80 * 1024:
        err(f"{path}: {len(data)} bytes, expected 16..80 KiB")
    if len(docs) < 2:
        err(f"{path}: {len(docs)} documents, expected at least 2")
extra = sorted(set(f[:-4] for f in os.listdir("data/fixtures") if f.endswith(".txt")) - set(PARTS))
if extra:
    err(f"data/fixtures: unexpected slices {extra} (not a corpus part)")
if total > 1_000_000:
    err(f"data/fixtures: {total} bytes in all, expected under 1 MB")
print(f"fixtures: {len(PARTS)} parts, {total} bytes")

# 2. the built corpus.
if os.path.isdir("data/corpus"):
    sizes = {}
    for p, path, data, docs in read_parts("data/corpus", "run data/build_corpus.sh"):
        sizes[p] = (len(data), len(docs))
        if not 1_000_000 <= len(data) <= 11 * 1024 * 1024:
            err(f"{path}: {len(data)} bytes, expected 1 MB .. 11 MiB (the per-part cap is 10 MiB)")
    corpus_total = sum(s for s, _ in sizes.values())
    if not 50_000_000 <= corpus_total <= 100_000_000:
        err(f"data/corpus: {corpus_total} bytes in all, expected 50..100 MB")
    rows = {}
    try:
        lines = open("data/corpus/MANIFEST", encoding="utf-8").read().splitlines()
        head = lines[0].split("\t")
        for line in lines[1:]:
            row = dict(zip(head, line.split("\t")))
            rows[row["part"]] = row
    except (OSError, IndexError, KeyError) as e:
        err(f"data/corpus/MANIFEST unreadable ({e}); rerun data/build_corpus.sh")
    for p, (size, ndocs) in sizes.items():
        row = rows.get(p)
        if row is None:
            err(f"data/corpus/MANIFEST: no row for {p}")
            continue
        if int(row["bytes"]) != size or int(row["documents"]) != ndocs:
            err(f"data/corpus/MANIFEST: {p} says {row['bytes']} bytes / {row['documents']} documents, the file has {size} / {ndocs}")
        if len(row["versions"].split(",")) != len(row["packages"].split(",")) or not all(row["versions"].split(",")):
            err(f"data/corpus/MANIFEST: {p} lacks a version per package ({row['packages']} / {row['versions']})")
        if not row.get("licence"):
            err(f"data/corpus/MANIFEST: {p} has no licence")
    print(f"corpus: {len(sizes)} parts, {corpus_total} bytes, MANIFEST checked")
else:
    print("corpus: data/corpus not built, skipped (data/build_all.sh builds it)")

# 3. shards: header, size, range, EOT first, stats.tsv agrees.
def read_shard(path):
    data = open(path, "rb").read()
    if len(data) < 1024:
        err(f"{path}: {len(data)} bytes, shorter than the 1024-byte header")
        return None
    magic, version, count = struct.unpack_from("<3i", data, 0)
    if magic != 20240520 or version not in (1, 2):
        err(f"{path}: magic {magic} version {version}, expected 20240520 and 1 or 2")
        return None
    width = 2 if version == 1 else 4
    if len(data) != 1024 + width * count:
        err(f"{path}: {len(data)} bytes, header says {count} tokens of {width} bytes")
        return None
    fmt = "<%d%s" % (count, "H" if width == 2 else "I")
    return struct.unpack_from(fmt, data, 1024)

for name in sorted(os.listdir("data/shards")) if os.path.isdir("data/shards") else []:
    d = f"data/shards/{name}"
    tok_path = f"data/{name}/tokenizer.json"
    if not os.path.isfile(f"{d}/stats.tsv") or not os.path.isfile(tok_path):
        print(f"shards: {d} incomplete (no stats.tsv or {tok_path}), skipped")
        continue
    tok = json.load(open(tok_path, encoding="utf-8"))
    vocab = max(list(tok["model"]["vocab"].values()) + [a["id"] for a in tok["added_tokens"]]) + 1
    eot = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|endoftext|>")
    lines = open(f"{d}/stats.tsv").read().splitlines()
    head = lines[0].split("\t")
    stats = [dict(zip(head, l.split("\t"))) for l in lines[1:]]
    tot = stats[-1]
    for split in ("train", "val"):
        toks = read_shard(f"{d}/{split}.bin")
        if toks is None:
            continue
        if int(tot[f"{split}_tokens"]) != len(toks):
            err(f"{d}/{split}.bin: {len(toks)} tokens, stats.tsv says {tot[split + '_tokens']}")
        if toks[0] != eot:
            err(f"{d}/{split}.bin: first token {toks[0]}, expected <|endoftext|> = {eot}")
        if max(toks) >= vocab:
            err(f"{d}/{split}.bin: token {max(toks)} >= vocabulary {vocab}")
        ndocs = toks.count(eot)
        want = int(tot["documents"]) - int(tot["val_documents"]) if split == "train" else int(tot["val_documents"])
        if ndocs != want:
            err(f"{d}/{split}.bin: {ndocs} <|endoftext|> tokens, stats.tsv says {want} documents")
    if os.path.isdir("data/corpus"):
        for row in stats[:-1]:
            size = os.path.getsize(f"data/corpus/{row['part']}")
            if size != int(row["bytes"]):
                err(f"{d}/stats.tsv: {row['part']} {row['bytes']} bytes, the corpus file has {size}; rebuild the shards (data/build_all.sh)")
    print(f"shards: {d}: vocabulary {vocab}, {tot['train_tokens']} train + {tot['val_tokens']} val tokens checked")

sys.exit(1 if errors else 0)
EOF
rc=$?
[ $rc = 0 ] && echo "PASS check_corpus" || echo "FAIL check_corpus"
exit $rc
