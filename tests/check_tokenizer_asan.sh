#!/usr/bin/env bash
# check_tokenizer_asan.sh — the tokenizer, BPE trainer, shard and normalization code under AddressSanitizer +
# UndefinedBehaviorSanitizer, fed bad input. Builds build/asan/{tokenize,bpe_train,make_shards}
# (its own directory: build/ is left alone; rebuilt only when a source is newer). Every case must
# end with the expected exit status, its error message must contain the expected text (so the
# message names what is wrong), and stderr must hold no sanitizer report. Then a small fuzz:
# 200 random mutations of a tokenizer.json (bytes and JSON values) must each load and encode, or be
# refused with a message. Last, build/asan/normalize on random bytes and combining sequences.
# About a minute on 2 cores (most of it the first build).
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
CXX=${CXX:-g++}
OUT=build/asan
mkdir -p "$OUT"

# --- build ------------------------------------------------------------------------------------
LIB_SRCS="ref/io/json.cpp ref/io/file.cpp ref/text/regex.cpp ref/text/tokenizer.cpp ref/text/unicode_tables.cpp ref/text/normalize.cpp ref/text/unicode_norm_tables.cpp ref/text/bpe_train.cpp ref/text/corpus.cpp ref/io/shard.cpp"
HDRS="ref/io/json.h ref/io/file.h ref/text/regex.h ref/text/tokenizer.h ref/text/unicode_tables.h ref/text/normalize.h ref/text/unicode_norm_tables.h ref/text/bpe_train.h ref/text/corpus.h ref/io/shard.h"
# -fno-sanitize-recover: any UB report aborts, so it cannot go unnoticed. No OpenMP: the pragmas
# are ignored and the code runs single-threaded (libgomp is not instrumented).
FLAGS="-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -Wno-unknown-pragmas -I."
# An object is rebuilt when its source, a header or the flags changed (a tiny make).
[ "$(cat "$OUT/.flags" 2>/dev/null)" = "$CXX $FLAGS" ] || rm -f "$OUT"/*.o
newest_hdr=$(ls -t $HDRS | head -1)
# obj_name SRC: the object's name in $OUT, the source path with '/' as '_' (ref_text_bpe_train.o and
# tools_bpe_train.o: one directory, no clash between a library file and the tool of the same name)
obj_name() { local s=${1%.cpp}; echo "${s//\//_}.o"; }
pids=(); built=0
for src in $LIB_SRCS tools/tokenize.cpp tools/bpe_train.cpp tools/make_shards.cpp tools/normalize.cpp; do
  obj="$OUT/$(obj_name "$src")"
  [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$newest_hdr" ] && continue
  [ $built = 1 ] || echo "building $OUT (ASan + UBSan)"; built=1
  $CXX $FLAGS -c "$src" -o "$obj" & pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}" || { echo "FAIL: compile error in ${src}"; exit 1; }; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || { echo "FAIL: compile error"; exit 1; }; done
echo "$CXX $FLAGS" >"$OUT/.flags"
LIB_OBJS=$(for s in $LIB_SRCS; do printf '%s/%s ' "$OUT" "$(obj_name "$s")"; done)
for tool in tokenize bpe_train make_shards normalize; do
  if [ $built = 1 ] || [ ! -x "$OUT/$tool" ]; then
    $CXX $FLAGS "$OUT/$(obj_name "tools/$tool.cpp")" $LIB_OBJS -o "$OUT/$tool" || { echo "FAIL: link error ($tool)"; exit 1; }
  fi
done

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:exitcode=99
T=$(mktemp -d /tmp/check_tokenizer_asan.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0; n=0

# expect RC NEEDLE CMD... — runs CMD (stdin from $T/stdin if present), checks the exit status,
# that stdout+stderr contain NEEDLE, and that no sanitizer spoke.
expect() {
  local rc_want=$1 needle=$2; shift 2
  local rc
  n=$((n + 1))
  if [ -f "$T/stdin" ]; then "$@" <"$T/stdin" >"$T/out" 2>"$T/err"; rc=$?; rm -f "$T/stdin"
  else "$@" </dev/null >"$T/out" 2>"$T/err"; rc=$?; fi
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$T/err"; then
    echo "FAIL [$*]: sanitizer report:"; head -30 "$T/err"; fails=$((fails + 1)); return
  fi
  if [ "$rc" != "$rc_want" ] || { [ -n "$needle" ] && ! grep -qF -- "$needle" "$T/out" "$T/err"; }; then
    echo "FAIL [$*]: exit $rc (want $rc_want), message must contain '$needle'; got:"
    head -5 "$T/err" "$T/out" | sed 's/^/    /'; fails=$((fails + 1)); return
  fi
  echo "ok   $(cat "$T/err" "$T/out" | grep -m1 -F -- "$needle" | cut -c1-150)"
}
stdin() { printf "$@" >"$T/stdin"; }

TOK=$OUT/tokenize; TRAIN=$OUT/bpe_train; SHARDS=$OUT/make_shards
BASE=tests/fixtures/tokenizers/cl100k_style.json  # BPE + Split regex + added tokens

# A valid tokenizer and shards made by the sanitized tools themselves (also exercises them).
expect 0 "wrote" $TRAIN --quiet --vocab-size 600 --out "$T/tok.json" data/fixtures/bible.txt data/fixtures/manpages_zh.txt
expect 0 "wrote" $SHARDS --tokenizer "$T/tok.json" --out-dir "$T" --val-every 5 data/fixtures/bible.txt data/fixtures/fortunes.txt
expect 0 "ok" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T"

# --- tokenizer.json: malformed, unsupported, inconsistent -------------------------------------
# mutate NAME PYTHON: writes $T/NAME.json = the base tokenizer edited by a Python statement on t.
mutate() {
  python3 -c "import json,sys; t=json.load(open('$BASE')); $2; open('$T/$1.json','w').write(json.dumps(t))"
}
expect 1 "cannot open" $TOK info --tokenizer "$T/missing.json"
: >"$T/empty.json";                       expect 1 "JSON error at line 1 col 1" $TOK info --tokenizer "$T/empty.json"
printf '{"model": {"type": "BPE",}' >"$T/bad.json"; expect 1 "JSON error at line 1" $TOK info --tokenizer "$T/bad.json"
head -c 5000 "$BASE" >"$T/cut.json";       expect 1 "unexpected end of input" $TOK info --tokenizer "$T/cut.json"
printf '{"a": "\xff\xfe"}' >"$T/utf8.json"; expect 1 "invalid UTF-8" $TOK info --tokenizer "$T/utf8.json"
python3 -c "print('['*100000)" >"$T/deep.json"; expect 1 "nesting" $TOK info --tokenizer "$T/deep.json"
printf '[1, 2]' >"$T/array.json";           expect 1 "top level must be an object" $TOK info --tokenizer "$T/array.json"
mutate wordpiece "t['model']={'type':'WordPiece','unk_token':'[UNK]','continuing_subword_prefix':'##','max_input_chars_per_word':100,'vocab':{'[UNK]':0}}"
expect 1 "'WordPiece' is not supported" $TOK info --tokenizer "$T/wordpiece.json"
mutate unigram "t['model']={'type':'Unigram','unk_id':0,'vocab':[['<unk>',0.0]]}"
expect 1 "'Unigram' is not supported" $TOK info --tokenizer "$T/unigram.json"
mutate wordlevel "t['model']['type']='WordLevel'"
expect 1 "'WordLevel' is not supported" $TOK info --tokenizer "$T/wordlevel.json"
mutate bert "t['normalizer']={'type':'BertNormalizer','clean_text':True,'handle_chinese_chars':True,'strip_accents':None,'lowercase':True}"
expect 1 "normalizer: normalizer type 'BertNormalizer' is not supported" $TOK info --tokenizer "$T/bert.json"
mutate accents "t['normalizer']={'type':'Sequence','normalizers':[{'type':'NFD'},{'type':'StripAccents'}]}"
expect 1 "normalizer.normalizers[1]: normalizer type 'StripAccents' is not supported" $TOK info --tokenizer "$T/accents.json"
mutate version "t['version']='2.0'"
expect 1 "unknown tokenizer version '2.0'" $TOK info --tokenizer "$T/version.json"
mutate metabyte "t['pre_tokenizer']['pretokenizers'].append({'type':'Metaspace','replacement':'_','prepend_scheme':'always','split':True})"
expect 1 "both ByteLevel and Metaspace" $TOK info --tokenizer "$T/metabyte.json"
mutate metaprefix "t['pre_tokenizer']={'type':'Metaspace','replacement':'_','add_prefix_space':False}"
expect 1 "add_prefix_space: false contradicts prepend_scheme" $TOK info --tokenizer "$T/metaprefix.json"
mutate stripstop "t['decoder']={'type':'Sequence','decoders':[{'type':'ByteFallback'},{'type':'Strip','content':' ','start':1,'stop':1}]}"
expect 1 "decoder.decoders[1].stop: Strip with stop > 0" $TOK info --tokenizer "$T/stripstop.json"
mutate whitespace "t['pre_tokenizer']['pretokenizers'][0]={'type':'WhitespaceSplit'}"
expect 1 "pre-tokenizer type 'WhitespaceSplit' is not supported" $TOK info --tokenizer "$T/whitespace.json"
for case in "lookbehind|(?<=a)b" "backref|(a)\\\\1" "han|\\\\p{Han}+" "posix|[[:upper:]]+" "wordb|\\\\bx" "inline|(?i)abc" "classand|[a-z&&[^e]]" "unclosed|(ab" "badrep|a{2,1}"; do
  name=${case%%|*}; pat=${case#*|}
  mutate "re_$name" "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'$pat'}"
  expect 1 "pre_tokenizer.pretokenizers[0].pattern: regex /" $TOK info --tokenizer "$T/re_$name.json"
done
# The pattern errors name the construct, not only "bad regex".
mutate re_lb "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'(?<=a)b'}"
expect 1 "look-behind" $TOK info --tokenizer "$T/re_lb.json"
mutate re_han "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'\\\\p{Han}'}"
expect 1 "Han" $TOK info --tokenizer "$T/re_han.json"
mutate re_fold "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'(?i:ss)'}"
expect 1 "multi-character case folding" $TOK info --tokenizer "$T/re_fold.json"
mutate re_byte "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'\\\\xE9'}"
expect 1 "too short multibyte code string" $TOK info --tokenizer "$T/re_byte.json"
# A pattern that backtracks exponentially: the budget stops it with a message (HF aborts).
mutate re_budget "t['pre_tokenizer']['pretokenizers'][0]['pattern']={'Regex':'(?:a|aa)+b'}"
python3 -c "print('a'*3000)" >"$T/stdin"; expect 1 "backtracking limit exceeded" $TOK encode --tokenizer "$T/re_budget.json"
mutate twobytelevel "t['pre_tokenizer']['pretokenizers'].append(t['pre_tokenizer']['pretokenizers'][-1])"
expect 1 "more than one ByteLevel step" $TOK info --tokenizer "$T/twobytelevel.json"
mutate behavior "t['pre_tokenizer']['pretokenizers'][0]['behavior']='Sideways'"
expect 1 "unknown split behavior 'Sideways'" $TOK info --tokenizer "$T/behavior.json"
mutate merge "t['model']['merges'][5]=['zzzunknown','q']"
expect 1 "model.merges[5]" $TOK info --tokenizer "$T/merge.json"
mutate mergestr "t['model']['merges'][3]='a b c'"
expect 1 "exactly one space" $TOK info --tokenizer "$T/mergestr.json"
mutate negid "t['model']['vocab']['a']=-4"
expect 1 "out of range" $TOK info --tokenizer "$T/negid.json"
mutate dupid "k=list(t['model']['vocab']); t['model']['vocab'][k[1]]=t['model']['vocab'][k[2]]"
expect 1 "is used by two tokens" $TOK info --tokenizer "$T/dupid.json"
mutate dropout "t['model']['dropout']=0.1"
expect 1 "dropout" $TOK info --tokenizer "$T/dropout.json"
mutate unknownkey "t['model']['frobnicate']=1"
expect 1 "unknown key 'frobnicate'" $TOK info --tokenizer "$T/unknownkey.json"
mutate padding "t['padding']={'strategy':'BatchLongest'}"
expect 1 "padding: is set" $TOK info --tokenizer "$T/padding.json"
mutate addeddup "t['added_tokens'].append(dict(t['added_tokens'][0]))"
expect 1 "duplicate added token" $TOK info --tokenizer "$T/addeddup.json"

# --- encode / decode input ---------------------------------------------------------------------
stdin '12 99999999 3';        expect 1 "99999999" $TOK decode --tokenizer "$T/tok.json"
stdin '12 99999999999 3';     expect 1 "larger than 2^32-1" $TOK decode --tokenizer "$T/tok.json"
stdin '12 x7 3';              expect 1 "'x7' at byte 3 is not a token id" $TOK decode --tokenizer "$T/tok.json"
stdin '12 -3';                expect 1 "'-3' at byte 3 is not a token id" $TOK decode --tokenizer "$T/tok.json"
stdin '"ok"\n{"not": "a string"}\n'; expect 1 "line 2" $TOK encode --tokenizer "$T/tok.json" --jsonl
stdin '"unterminated\n';      expect 1 "line 1" $TOK encode --tokenizer "$T/tok.json" --jsonl
stdin '[1, 2, 99999999]\n';   expect 1 "99999999" $TOK decode --tokenizer "$T/tok.json" --jsonl
expect 1 "unknown" $TOK frobnicate --tokenizer "$T/tok.json"
# Invalid UTF-8 text is not an error: each bad byte is one character of its own (docs/TOKENIZER.md),
# and decode gives the exact bytes back.
printf 'ok \xff\xfe bad \xc3( lone \xe2\x82 cut \xf0\x9f\x98 \xed\xa0\x80 surrogate \xc0\xaf overlong end\n' >"$T/invalid.txt"
python3 -c "import random, sys; sys.stdout.buffer.write(random.Random(7).randbytes(20000))" >>"$T/invalid.txt"  # fixed seed
expect 0 "" $TOK encode --tokenizer "$T/tok.json" --in "$T/invalid.txt" --out "$T/invalid.ids"
expect 0 "" $TOK decode --tokenizer "$T/tok.json" --in "$T/invalid.ids" --out "$T/invalid.back"
n=$((n + 1))
if cmp -s "$T/invalid.txt" "$T/invalid.back"; then echo "ok   invalid UTF-8 + random bytes: decode(encode(x)) == x"
else echo "FAIL invalid UTF-8 text does not round-trip"; fails=$((fails + 1)); fi
: >"$T/empty.txt"; expect 0 "" $TOK encode --tokenizer "$T/tok.json" --in "$T/empty.txt"
# The same bytes through a SentencePiece-style BPE (no pre-tokenizer, byte_fallback, decoders
# ByteFallback + Fuse): every byte that is no character of the vocabulary is a <0xHH> token, so
# the round trip is exact too. Then with every normalizer and Metaspace (only: runs clean).
python3 - "$T" <<'EOF'
import json, sys
vocab = {'<unk>': 0}
for b in range(256): vocab['<0x%02X>' % b] = len(vocab)
for c in 'abcdefghijklmnopqrstuvwxyz \u2581\u00e9\u4e2d': vocab.setdefault(c, len(vocab))
vocab['\u2581a'] = len(vocab); vocab['ab'] = len(vocab)
t = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': [], 'normalizer': None, 'pre_tokenizer': None,
     'post_processor': None, 'decoder': {'type': 'Sequence', 'decoders': [{'type': 'ByteFallback'}, {'type': 'Fuse'}]},
     'model': {'type': 'BPE', 'dropout': None, 'unk_token': '<unk>', 'fuse_unk': True, 'byte_fallback': True, 'vocab': vocab,
               'merges': [['\u2581', 'a'], ['a', 'b']]}}
open(sys.argv[1] + '/sp.json', 'w').write(json.dumps(t))
t['normalizer'] = {'type': 'Sequence', 'normalizers': [{'type': 'NFKC'}, {'type': 'Lowercase'}, {'type': 'NFD'}, {'type': 'Strip', 'strip_left': True, 'strip_right': True},
                   {'type': 'Replace', 'pattern': {'Regex': '\\s+'}, 'content': ' '}, {'type': 'Prepend', 'prepend': '\u2581'}, {'type': 'NFKD'}, {'type': 'NFC'}]}
t['pre_tokenizer'] = {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'always', 'split': True}
t['decoder'] = {'type': 'Sequence', 'decoders': [{'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'always', 'split': True},
                {'type': 'Replace', 'pattern': {'String': 'ab'}, 'content': 'x'}, {'type': 'ByteFallback'}, {'type': 'Fuse'}, {'type': 'Strip', 'content': ' ', 'start': 3, 'stop': 0}]}
t['added_tokens'] = [{'id': len(vocab), 'content': '<X>', 'single_word': False, 'lstrip': True, 'rstrip': True, 'normalized': True, 'special': False}]
open(sys.argv[1] + '/sp_norm.json', 'w').write(json.dumps(t))
EOF
expect 0 "" $TOK encode --tokenizer "$T/sp.json" --in "$T/invalid.txt" --out "$T/sp.ids"
expect 0 "" $TOK decode --tokenizer "$T/sp.json" --in "$T/sp.ids" --out "$T/sp.back"
n=$((n + 1))
if cmp -s "$T/invalid.txt" "$T/sp.back"; then echo "ok   invalid UTF-8 + random bytes, byte_fallback BPE: decode(encode(x)) == x"
else echo "FAIL invalid UTF-8 text does not round-trip through the byte_fallback BPE"; fails=$((fails + 1)); fi
expect 0 "" $TOK encode --tokenizer "$T/sp_norm.json" --in "$T/invalid.txt" --out "$T/spn.ids"
expect 0 "" $TOK decode --tokenizer "$T/sp_norm.json" --in "$T/spn.ids" --out "$T/spn.back"

# --- shards ---------------------------------------------------------------------------------------
mkdir -p "$T/s"; cp "$T/val.bin" "$T/s/val.bin"
head -c 2000 "$T/train.bin" >"$T/s/train.bin"
expect 1 "truncated" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
head -c 100 "$T/train.bin" >"$T/s/train.bin"
expect 1 "shorter than the 1024-byte header" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
{ printf 'GPT2'; tail -c +5 "$T/train.bin"; } >"$T/s/train.bin"
expect 1 "bad magic" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
python3 - "$T/train.bin" "$T/s/train.bin" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<i', d, 4, 7)  # version 7
open(sys.argv[2], 'wb').write(d)
EOF
expect 1 "unknown shard version 7" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
python3 - "$T/train.bin" "$T/s/train.bin" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<i', d, 8, -5)  # negative count
open(sys.argv[2], 'wb').write(d)
EOF
expect 1 "negative token count" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
python3 - "$T/train.bin" "$T/s/train.bin" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
struct.pack_into('<H', d, 1024 + 2 * 10, 60000)  # a token outside the 600-token vocabulary
open(sys.argv[2], 'wb').write(d)
EOF
expect 1 ">= vocab 600" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/s"
expect 1 "cannot open" $SHARDS --check --tokenizer "$T/tok.json" --out-dir "$T/nowhere"
printf 'a document\n\x1e\ntext with no separator after it\n' >"$T/nosep.txt"
expect 1 "text after the last separator line" $SHARDS --tokenizer "$T/tok.json" --out-dir "$T/s" "$T/nosep.txt"
expect 1 "cannot open" $SHARDS --tokenizer "$T/tok.json" --out-dir "$T/s" "$T/missing.txt"
expect 1 "no validation document" $SHARDS --tokenizer "$T/tok.json" --out-dir "$T/s" --val-every 1000 data/fixtures/bible.txt
expect 1 "has no token <|nope|>" $SHARDS --tokenizer "$T/tok.json" --out-dir "$T/s" --eot '<|nope|>' data/fixtures/bible.txt

# --- bpe_train ------------------------------------------------------------------------------------
expect 1 "smaller than the special tokens plus the alphabet" $TRAIN --vocab-size 100 --out "$T/x.json" data/fixtures/bible.txt
expect 1 "--vocab-size 'abc': expected an integer in" $TRAIN --vocab-size abc --out "$T/x.json" data/fixtures/bible.txt
expect 1 "cannot open" $TRAIN --vocab-size 600 --out "$T/x.json" "$T/missing.txt"
expect 1 "cannot create" $TRAIN --quiet --vocab-size 300 --out "$T/no/such/dir/x.json" data/fixtures/bible.txt
expect 1 "has 600 tokens, expected 4096" $TRAIN --verify "$T/tok.json" --vocab-size 4096
# Training on raw bytes (invalid UTF-8) works: the byte-level alphabet covers every byte.
expect 0 "wrote" $TRAIN --quiet --vocab-size 400 --out "$T/bytes.json" "$T/invalid.txt"

# --- fuzz: random mutations of a tokenizer.json load or fail cleanly -----------------------------
python3 - "$BASE" "$T/fuzz" <<'EOF'
import json, os, random, sys
base = open(sys.argv[1], 'rb').read()
os.makedirs(sys.argv[2], exist_ok=True)
rng = random.Random(1234)
pieces = [b'{', b'}', b'[', b']', b'"', b',', b':', b'\\', b'\\u', b'\\ud800', b'null', b'-1', b'1e400',
          b'(?', b'\\p{', b'\xff', b'\xc3', b'4294967296', b'(', b'*', b'{9999999999}']
values = [None, True, 0, -1, 2**31, 2**40, 1.5, "", "a", "\u0120", "a b", "(?:", "\\p{L}+", "[^\\s]", "x{3,}",
          "(?i:k)", "\\s+(?!\\S)", "Isolated", "Removed", "Contiguous", "BPE", "Split", "ByteLevel", [], {},
          ["a", "b"], {"Regex": "\\d{1,3}"}, {"String": " "}, {"type": "Digits"}, {"type": "ByteLevel"}]

def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "vocab" and rng.random() < 0.9: continue  # keep the walk small
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i in rng.sample(range(len(node)), min(len(node), 8)):
            yield from paths(node[i], prefix + (i,))

def structural(t):  # replaces or deletes 1-3 random values of the JSON tree
    for _ in range(rng.randint(1, 3)):
        p = rng.choice([p for p in paths(t) if p])
        parent = t
        for k in p[:-1]: parent = parent[k]
        if rng.random() < 0.2 and isinstance(parent, dict): del parent[p[-1]]
        else: parent[p[-1]] = rng.choice(values)
    return json.dumps(t).encode()

def raw(d):  # flips, deletes, inserts bytes; rarely truncates
    d = bytearray(d)
    for _ in range(rng.randint(1, 4)):
        p = rng.randrange(len(d))
        op = rng.choices(range(4), weights=[40, 20, 35, 5])[0]
        if op == 0: d[p] = rng.randrange(256)
        elif op == 1: del d[p:p + rng.randint(1, 50)]
        elif op == 2: d[p:p] = rng.choice(pieces)
        else: d = d[:p]
    return bytes(d)

for i in range(200):
    d = structural(json.loads(base)) if i % 2 == 0 else raw(base)
    open(f"{sys.argv[2]}/{i}.json", 'wb').write(d)
EOF
fuzz_bad=0; fuzz_loaded=0
printf 'Hello wörld 123 <|fim|> 中文 \xff\n' >"$T/probe.txt"
for f in "$T"/fuzz/*.json; do
  $TOK encode --tokenizer "$f" --in "$T/probe.txt" >/dev/null 2>"$T/err"; rc=$?
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$T/err" || { [ $rc != 0 ] && [ $rc != 1 ]; } ||
     { [ $rc = 1 ] && ! grep -q "error" "$T/err"; }; then
    fuzz_bad=$((fuzz_bad + 1)); echo "FAIL fuzz $f: exit $rc"; head -20 "$T/err"; cp "$f" /tmp/ 2>/dev/null
  fi
  [ $rc = 0 ] && fuzz_loaded=$((fuzz_loaded + 1))
done
n=$((n + 1))
if [ $fuzz_bad = 0 ]; then echo "ok   fuzz: 200 mutated tokenizer.json files, $fuzz_loaded loaded, the rest refused with a message"
else fails=$((fails + 1)); fi

# --- normalize (ref/text/normalize.cpp): random bytes and combining sequences, every form ---------
python3 - "$T/norm.txt" <<'EOF'
import random, sys
rng = random.Random(99)
pieces = [b"a", b"e", b" ", b"\n", "\u0301\u0323\u0316\u05ae\u1100\u1161\u11a8\uac00\ufb01\u0958\u0344\u1e9b\u0130\u03a3".encode(),
          "\U000113c5\U0001138b\U000113c2\U00011938\U0001f600\u4e2d".encode(), b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]
out = bytearray()
for _ in range(20000):
    p = rng.choice(pieces)
    out += p[rng.randrange(len(p)):] if rng.random() < 0.3 else p  # cut pieces: truncated UTF-8
out += rng.randbytes(20000)
open(sys.argv[1], "wb").write(out)
EOF
for form in nfc nfd nfkc nfkd lower; do
  for data in unicode hf; do
    [ $form = lower ] && [ $data = hf ] && continue
    expect 0 "" $OUT/normalize --form $form --data $data --in "$T/norm.txt" --out "$T/norm.out"
  done
done
expect 1 "unknown --form 'nfx'" $OUT/normalize --form nfx --in "$T/norm.txt"

if [ $fails = 0 ]; then echo "PASS check_tokenizer_asan: $n cases, no sanitizer report"; exit 0; fi
echo "FAIL check_tokenizer_asan: $fails of $n cases failed"; exit 1
