#!/usr/bin/env bash
# dev/bench_tokenizer.sh — encode throughput of our tokenizer (build/bench_tokenizer) next to HF
# tokenizers (npm `tokenizers`, dev/bench_tokenizer_hf.js) on the same text, one thread each.
# Not a test: it prints a table (docs/TOKENIZER.md has the numbers of one run).
#
#   dev/bench_tokenizer.sh [--tokenizer data/tok32k/tokenizer.json] [--kb-per-part 512] [--repeat 3]
#
# Text: whole documents from the start of every corpus part (data/corpus/*.txt, built by
# data/build_all.sh), up to --kb-per-part KiB each; data/fixtures/*.txt when there is no corpus.
# Both sides encode the same bytes twice: as one string ("text") and one call per document
# ("docs", as build/make_shards does); "first" is the first pass on a fresh tokenizer (cold
# caches), "best" the fastest of --repeat more passes. The id hashes must agree, or it says so.
# Needs node + the npm oracle (cd tests/tokenizer_oracle && npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=data/tok32k/tokenizer.json; KB=512; REPEAT=3
while [ $# -gt 0 ]; do
  case $1 in
    --tokenizer) TOK=$2; shift 2 ;;
    --kb-per-part) KB=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    *) echo "usage: dev/bench_tokenizer.sh [--tokenizer T.json] [--kb-per-part N] [--repeat N]" >&2; exit 2 ;;
  esac
done
[ -f "$TOK" ] || { echo "bench_tokenizer: $TOK missing; build it with data/build_all.sh" >&2; exit 1; }
[ -d tests/tokenizer_oracle/node_modules/tokenizers ] ||
  { echo "bench_tokenizer: HF tokenizers missing; run: (cd tests/tokenizer_oracle && npm ci)" >&2; exit 1; }
make -s build/bench_tokenizer

T=$(mktemp -d /tmp/bench_tokenizer.XXXXXX)
trap 'rm -rf "$T"' EXIT
PARTS=(data/corpus/*.txt)
[ -f "${PARTS[0]}" ] || { PARTS=(data/fixtures/*.txt); echo "(no data/corpus: using data/fixtures)"; }
for p in "${PARTS[@]}"; do
  LC_ALL=C awk -v max=$((KB * 1024)) '{ doc = doc $0 "\n" }
    $0 == "\x1e" { if (total + length(doc) > max) exit; printf "%s", doc; total += length(doc); doc = "" }' "$p"
done >"$T/bench.txt"

# One thread each: no OpenMP in bench_tokenizer, no Rayon pool in HF; pinned to one core.
PIN=""; command -v taskset >/dev/null && PIN="taskset -c 0"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
$PIN build/bench_tokenizer --tokenizer "$TOK" --in "$T/bench.txt" --repeat "$REPEAT" >"$T/ours.tsv"
$PIN node dev/bench_tokenizer_hf.js "$TOK" "$T/bench.txt" "$REPEAT" >"$T/hf.tsv"

echo "tokenizer $TOK; text: $(wc -c <"$T/bench.txt") bytes from ${#PARTS[@]} parts; $(date -u +%F)"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$T/ours.tsv" "$T/hf.tsv" <<'EOF'
import sys
rows, hashes = {}, {}
for path in sys.argv[1:]:
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if line.startswith("# "):
            _, impl, what, _, _, h = line.split()
            hashes[(impl, what)] = h
        elif f[0] != "impl":
            rows[(f[0], f[1], f[2])] = f
print(f"| {'encode':<20} | {'MB':>5} | {'tokens':>9} | {'ours MB/s':>9} | {'HF MB/s':>8} | {'ours/HF':>7} |")
print(f"|{'-' * 22}|{'-' * 7}|{'-' * 11}|{'-' * 11}|{'-' * 10}|{'-' * 9}|")
for what, label in (("text", "one string"), ("docs", "per document")):
    for p in ("first", "best"):
        o, h = rows[("ours", what, p)], rows[("hf", what, p)]
        print(f"| {label + ', ' + p:<20} | {o[3]:>5} | {o[4]:>9} | {o[6]:>9} | {h[6]:>8} | {float(o[6]) / float(h[6]):>6.1f}x |")
o, h = rows[("ours", "decode", "first")], rows[("hf", "decode", "first")]
print(f"| {'decode (docs ids)':<20} | {o[3]:>5} | {o[4]:>9} | {o[6]:>9} | {h[6]:>8} | {float(o[6]) / float(h[6]):>6.1f}x |")
bad = [w for w in ("text", "docs") if hashes.get(("ours", w)) != hashes.get(("hf", w))]
if bad:
    print(f"WARNING: ids differ from HF's ({', '.join(bad)}): run tests/check_tokenizer_hf.sh")
    sys.exit(1)
print("ids identical to HF's in both modes (FNV-1a of the id sequences)")
EOF
