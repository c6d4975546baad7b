#!/usr/bin/env bash
# Bad input to build/train: every case must stop with exit status 1 (not 0, not a crash: a signal
# gives >= 128) and an error message that names the problem (checked with a regex per case).
# Covered: damaged token shards (truncated, wrong magic, wrong version, negative or huge count,
# trailing bytes), empty, missing and too-short data, tokens outside the vocabulary, inconsistent
# configs (K > E, C % H, odd head dim, n_dense > L, expert-choice chunk), unknown flags and
# presets, bad numbers (abc, nan, inf, out of range, trailing junk, negative seed), bad paths for
# --save and --log, and a run that diverges (--lr 1e30): it stops naming the step, and an earlier
# checkpoint stays as it was. Issue 15 (reliability) added: values that used to crash (expert choice
# with batch 0, experts 0, B*T = 2^32) or pass silently (ec-chunk -5, --sample without --resume, a
# tokenizer larger than the model, resuming beyond --steps), sizes over the tensor limit, a run too
# big for memory (refused before allocating, naming the size), damaged or forged checkpoints
# (a flipped bit, a changed weight, a changed step, NaN in the AdamW state, overlapping tensors,
# missing checksums: tests/st_edit.py edits them independently of lfmoe), output paths that are not
# regular files (a symlink, a FIFO), directories given as --val or --resume, and a --dump path in a
# missing directory (refused before training). tests/check_interrupt.sh covers SIGINT/SIGTERM and
# concurrent saves.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp
n=0

# Shards written here by an independent writer (the llm.c layout of docs/FORMAT.md: 256 int32 header
# with magic 20240520, version, count; then uint16 tokens), damaged on purpose.
$PY - "$TMP" <<'EOF'
import struct, sys, os
d = sys.argv[1]
def shard(name, tokens, magic=20240520, version=1, count=None, extra=b"", cut=0):
    head = [0] * 256
    head[0], head[1], head[2] = magic, version, len(tokens) if count is None else count
    body = struct.pack("<256i", *head) + struct.pack(f"<{len(tokens)}H", *tokens) + extra
    open(os.path.join(d, name), "wb").write(body[:len(body) - cut] if cut else body)
toks = [i % 200 for i in range(3000)]
shard("good.bin", toks)
shard("truncated.bin", toks, cut=1001)          # killed while writing: 500.5 tokens short
shard("magic.bin", toks, magic=20240521)        # damaged header
shard("version.bin", toks, version=7)
shard("negcount.bin", toks, count=-5)
shard("hugecount.bin", toks, count=2**31 - 1)
shard("trailing.bin", toks, extra=b"\x01\x02\x03")
shard("bigtok.bin", toks[:2999] + [4000])        # token id beyond the raw-byte vocabulary
shard("one.bin", [7])
shard("v100.bin", [i % 90 for i in range(3000)])  # a model of vocabulary 100 trains on it
EOF
mkdir -p "$TMP/dir_without_shards"
: > "$TMP/empty.txt"
: > "$TMP/target.st"; ln -s "$TMP/target.st" "$TMP/link.st"  # --save onto a link: refused, target kept
mkfifo "$TMP/fifo"                                            # not a regular file (safe to test, unlike /dev/full)

# case NAME REGEX ARGS...: train must exit 1 and print a message matching REGEX (one line or several).
case_() {
  local name=$1 re=$2; shift 2; n=$((n + 1))
  timeout 120 "$BUILD/train" "$@" > "$TMP/out" 2> "$TMP/err"; local rc=$?
  local msg; msg=$(tr '\n' ' ' < "$TMP/err")
  if [ $rc -ne 1 ]; then bad "$name: expected exit 1, got $rc${msg:+ ($msg)}"; return; fi
  echo "$msg" | grep -Eq -- "$re" || { bad "$name: message does not match /$re/: $msg"; return; }
  printf 'ok  %-34s %s\n' "$name" "$(echo "$msg" | cut -c1-150)"
}
# warn_ NAME REGEX ARGS...: train must succeed (exit 0) and say REGEX on stderr (a notice, not an error).
warn_() {
  local name=$1 re=$2; shift 2; n=$((n + 1))
  timeout 120 "$BUILD/train" "$@" > "$TMP/out" 2> "$TMP/err"; local rc=$?
  local msg; msg=$(tr '\n' ' ' < "$TMP/err")
  if [ $rc -ne 0 ]; then bad "$name: expected exit 0, got $rc${msg:+ ($msg)}"; return; fi
  echo "$msg" | grep -Eq -- "$re" || { bad "$name: stderr does not match /$re/: $msg"; return; }
  printf 'ok  %-34s %s\n' "$name" "$(echo "$msg" | cut -c1-150)"
}
T="--preset tiny --threads 1 --steps 2"
GOOD="$T --data $DATA"

echo "== data"
case_ "missing data file"        "nope\.txt: cannot open"                     $T --data "$TMP/nope.txt"
case_ "no --data"                "no --data given"                            $T
case_ "empty data file"          "empty\.txt: .*fewer than 2 tokens"          $T --data "$TMP/empty.txt"
case_ "truncated shard"          "truncated\.bin: .*truncated"                $T --data "$TMP/truncated.bin"
case_ "wrong magic"              "magic\.bin: bad magic 20240521"             $T --data "$TMP/magic.bin"
case_ "unknown shard version"    "version\.bin: unknown shard version 7"      $T --data "$TMP/version.bin"
case_ "negative token count"     "negcount\.bin: negative token count"        $T --data "$TMP/negcount.bin"
case_ "huge token count"         "hugecount\.bin: file size .* does not match" $T --data "$TMP/hugecount.bin"
case_ "trailing bytes"           "trailing\.bin: .*trailing bytes"            $T --data "$TMP/trailing.bin"
case_ "one-token shard"          "one\.bin: holds fewer than 2 tokens"        $T --data "$TMP/one.bin"
case_ "token beyond vocab"       "token id 4000 .*vocabulary has 256"         $T --data "$TMP/bigtok.bin" --vocab 256
case_ "raw bytes, vocab 100"     "token id [0-9]+ .*vocabulary has 100 .*--vocab" $GOOD --vocab 100
case_ "directory without shards" "dir_without_shards/train\.bin: cannot open" $T --data "$TMP/dir_without_shards"
case_ "damaged --val shard"      "truncated\.bin: .*truncated"                $T --data "$TMP/good.bin" --val "$TMP/truncated.bin"
case_ "data shorter than T+1"    "fewer than one window of T\+1 = 10001"      $GOOD --seq 10000
case_ "val too small for eval"   "validation data holds 182 tokens.*--val"    $GOOD --eval-every 1
case_ "--val is a directory"     "--val $TMP/dir_without_shards: is a directory" $GOOD --val "$TMP/dir_without_shards"
warn_ "--eval-batches beyond the split" "--eval-batches 1000: the validation data holds only [0-9]+ micro-batches" \
                                   $GOOD --batch 1 --seq 16 --eval-every 2 --eval-batches 1000

echo "== config"
case_ "K > E"                    "topk K=9 must be between 1 and experts E=8" $GOOD --topk 9
case_ "C not divisible by H"     "width C=64 is not divisible by heads H=3"   $GOOD --heads 3
case_ "odd head dim"             "head dim C/H must be even"                  $GOOD --heads 32 --width 96
case_ "n_dense > L"              "dense-layers must be between 0 and layers"  $GOOD --dense-layers 5
case_ "chunk not dividing B*T"   "ec-chunk 100 must divide .* 256 tokens"     $GOOD --routing expert --balance none --ec-chunk 100
case_ "chunk*K not multiple of E" "ec-chunk \* topk must be a multiple of experts" $GOOD --routing expert --balance none --ec-chunk 2 --topk 1
case_ "expert choice + lossfree" "expert choice has no bias to steer"         $GOOD --routing expert --balance lossfree
case_ "zero batch"               "must all be positive"                       $GOOD --batch 0
case_ "expert choice, batch 0"   "must all be positive .*B=0"                 $GOOD --routing expert --balance none --batch 0
case_ "expert choice, experts 0" "experts E and expert-hidden F must be positive.*E=0" $GOOD --routing expert --balance none --experts 0
case_ "expert choice, B*T = 2^32" "batch\*seq\*experts = 34359738368 elements exceeds the limit .*2\^31-1" \
                                   $GOOD --routing expert --balance none --batch 65536 --seq 65536
case_ "--ec-chunk -5"            "ec-chunk must be >= 0 .*got -5"             $GOOD --routing expert --balance none --ec-chunk -5
case_ "--experts 0 (token choice)" "experts E .* must be positive"            $GOOD --experts 0
case_ "--topk 0"                 "topk K=0 must be between 1 and experts"     $GOOD --topk 0
case_ "--shared -1"              "shared S >= 0 \(got .*S=-1\)"              $GOOD --shared -1
case_ "--grad-accum 0"           "grad-accum must be >= 1"                    $GOOD --grad-accum 0
case_ "--warmup -1"              "warmup non-negative"                        $GOOD --warmup -1
case_ "logits over 2^31 elements" "the logits batch\*seq\*vocab = [0-9]+ elements exceeds the limit" \
                                   $GOOD --vocab 65536 --batch 512 --seq 64
case_ "attention over 2^31"      "attention scores batch\*heads\*seq\*seq = [0-9]+ elements exceeds" $GOOD --seq 100000
case_ "--milestones 5,3"         "milestones must be increasing"              $GOOD --schedule multistep --milestones 5,3
# A model far beyond any machine's memory (about 1.6 TB): refused before anything is allocated,
# naming the size; the hint names the override. (--experts 100000 is ~42 GiB: refused on a smaller machine.)
case_ "model too big for memory" "this run needs about [0-9.]+ GiB \(parameters .*MemAvailable.*--ignore-memory-limit" \
                                   $GOOD --layers 2000 --experts 64 --expert-hidden 4096
case_ "unknown preset"           "unknown preset 'huge'"                      $GOOD --preset huge
case_ "unknown enum value"       "--balance: unknown Balance 'auxx' \(expected one of: none, aux, lossfree, lossfree_aux\)" $GOOD --balance auxx

echo "== flags and numbers"
case_ "unknown flag"             "unknown flag --learning-rate"               $GOOD --learning-rate 1e-3
case_ "stray argument"           "unexpected argument 'oops'"                 $GOOD oops
case_ "missing value"            "--lr needs a value"                         $GOOD --lr
case_ "flag as value"            "--lr needs a value"                         $GOOD --lr --steps 3
case_ "switch given a value"     "--aux-per-batch takes no value"             $GOOD --aux-per-batch=yes
case_ "--lr abc"                 "--lr: 'abc' is not valid \(expected a number\)" $GOOD --lr abc
case_ "--lr nan"                 "--lr: 'nan' is not valid .*finite"          $GOOD --lr nan
case_ "--lr inf"                 "--lr: 'inf' is not valid .*finite"          $GOOD --lr inf
case_ "--lr 1e99 (float range)"  "--lr: '1e99' is not valid"                  $GOOD --lr 1e99
case_ "--lr -1"                  "lr must be positive"                        $GOOD --lr -1
case_ "--steps 12abc"            "--steps: '12abc' is not valid \(expected an integer\)" $GOOD --steps 12abc
case_ "--steps 1e3"              "--steps: '1e3' is not valid"                $GOOD --steps 1e3
case_ "--steps out of range"     "--steps: '99999999999' is not valid \(integer out of range\)" $GOOD --steps 99999999999
case_ "--seed -1"                "--seed: '-1' is not valid"                  $GOOD --seed -1
case_ "--milestones 10,x"        "--milestones: '10,x' is not valid"          $GOOD --milestones 10,x
case_ "--threads -3"             "--threads must be >= 0"                     $GOOD --threads -3
case_ "--print-every 0"          "--print-every must be >= 1"                 $GOOD --print-every 0
case_ "--bias-rate -1"           "bias-rate and aux-alpha must be non-negative" $GOOD --bias-rate -1
case_ "--lr 0x10 (hex)"           "--lr: '0x10' is not valid \(expected a decimal number\)" $GOOD --lr 0x10
case_ "--steps ' 5' (space)"     "--steps: ' 5' is not valid \(expected an integer\)" $GOOD --steps " 5"
case_ "--batch +4"               "--batch: '\+4' is not valid \(expected an integer\)" $GOOD --batch +4
case_ "--temperature -1"         "--temperature must be >= 0"                 $GOOD --temperature -1
case_ "--eval-batches -1"        "--eval-batches.*must be >= 0"               $GOOD --eval-batches -1
case_ "--save-every x"           "--save-every: 'x' is not valid \(expected an integer\)" $GOOD --save-every x
case_ "--dump-steps 0"           "--dump-steps must be >= 1"                  $GOOD --dump-steps 0
case_ "--clip -1"                "clip and wd must be non-negative"           $GOOD --clip -1
case_ "--route-scale 0"          "route-scale .* must be positive"            $GOOD --route-scale 0

echo "== output paths"
case_ "--save in a missing dir"  "--save $TMP/no/dir/x\.st: cannot create"     $GOOD --save "$TMP/no/dir/x.st"
case_ "--save is a directory"    "--save $TMP: is a directory"                $GOOD --save "$TMP"
case_ "--log in a missing dir"   "no/dir/x\.jsonl: cannot open the log"       $GOOD --batch 2 --log "$TMP/no/dir/x.jsonl"
# The checks above must come before training: no step line may have been printed.
grep -q "^step" "$TMP/out" && bad "--log in a missing dir: the error came only after training"

case_ "--save onto a symlink"    "--save $TMP/link\.st: is a symbolic link to .*target\.st" $GOOD --save "$TMP/link.st"
case_ "--save onto a FIFO"       "--save $TMP/fifo: is a FIFO, not a regular file" $GOOD --save "$TMP/fifo"
case_ "--dump in a missing dir"  "--dump $TMP/no/dir/d\.st: cannot create"     $GOOD --dump "$TMP/no/dir/d.st"
grep -q "^dump step" "$TMP/out" && bad "--dump in a missing dir: the error came only after the steps ran"
case_ "--dump onto a symlink"    "--dump $TMP/link\.st: is a symbolic link"   $GOOD --dump "$TMP/link.st"
[ -L "$TMP/link.st" ] && [ ! -s "$TMP/target.st" ] || bad "a refused --save/--dump changed the symlink or its target"

echo "== checkpoints: damaged, forged, misused"
# One good checkpoint at step 4; tests/st_edit.py (Python's own parser and zlib.crc32) first
# recomputes every checksum lfmoe wrote (the algorithm of docs/FORMAT.md), then damages copies.
"$BUILD/train" $GOOD --steps 4 --save "$TMP/c4.st" > "$TMP/c4.out" 2>&1 || bad "could not write c4.st: $(tail -n 1 "$TMP/c4.out")"
$PY tests/st_edit.py verify "$TMP/c4.st" > "$TMP/verify.out" || bad "checksums of c4.st do not verify independently: $(cat "$TMP/verify.out")"
"$BUILD/train" $T --data "$TMP/v100.bin" --vocab 100 --save "$TMP/v100.st" > "$TMP/v100.out" 2>&1 ||
  bad "could not write v100.st: $(tail -n 1 "$TMP/v100.out")"
E="$PY tests/st_edit.py"
R="$GOOD --steps 6"
$E flipbit "$TMP/c4.st" "$TMP/flip.st" layers.1.attn.wv
case_ "flipped mantissa bit"     "flip\.st: tensor 'layers\.1\.attn\.wv': checksum mismatch" $R --resume "$TMP/flip.st"
$E setval "$TMP/c4.st" "$TMP/big.st" tok_emb 1e30
case_ "weight set to 1e30"       "big\.st: tensor 'tok_emb': checksum mismatch" $R --resume "$TMP/big.st"
$E meta "$TMP/c4.st" "$TMP/step5.st" step 5
case_ "header step 4 -> 5"       "step5\.st: header checksum mismatch"        $R --resume "$TMP/step5.st"
$E setval "$TMP/c4.st" "$TMP/nan.st" adam.v/layers.2.moe.router nan fix
case_ "NaN in AdamW state (checksums forged)" "nan\.st: tensor 'adam\.v/layers\.2\.moe\.router' holds a non-finite value \(nan at index 0" \
                                   $R --resume "$TMP/nan.st"
$E setval "$TMP/c4.st" "$TMP/inf.st" lm_head inf fix
case_ "inf weight (checksums forged)" "inf\.st: tensor 'lm_head' holds a non-finite value \(inf" $R --resume "$TMP/inf.st"
$E alias "$TMP/c4.st" "$TMP/alias.st" adam.m/tok_emb tok_emb fix
case_ "overlapping tensor ranges" "alias\.st: tensor '(adam\.m/)?tok_emb' .*overlaps tensor" $R --resume "$TMP/alias.st"
$E strip "$TMP/c4.st" "$TMP/strip.st"
case_ "version 2 without checksums" "strip\.st: checkpoint version 2 without its checksums" $R --resume "$TMP/strip.st"
$E strip "$TMP/c4.st" "$TMP/v1.st" 1
warn_ "version-1 checkpoint loads, warned" "v1\.st is a version-1 checkpoint without checksums: loaded unverified" $R --resume "$TMP/v1.st"
$E meta "$TMP/c4.st" "$TMP/v9.st" version 9 fix
case_ "unknown checkpoint version" "v9\.st: checkpoint version 9 is not supported" $R --resume "$TMP/v9.st"
$E meta "$TMP/c4.st" "$TMP/badcfg.st" config '{"V": 256, "E": 0}' fix
case_ "forged config E 0"        "badcfg\.st: the config in the metadata is not valid .*experts E" $R --resume "$TMP/badcfg.st"
$E cfg "$TMP/c4.st" "$TMP/cfgE.st" E 4294967304 fix  # 2^32 + 8: a cast to int would read 8
case_ "forged config E 2^32+8"   "cfgE\.st: .*config key 'E': 4294967304 is out of range for a 32-bit integer" $R --resume "$TMP/cfgE.st"
$E cfg "$TMP/c4.st" "$TMP/cfgseed.st" seed -1 fix
case_ "forged config seed -1"    "cfgseed\.st: .*config key 'seed': expected an unsigned 64-bit integer, got -1" $R --resume "$TMP/cfgseed.st"
$E cfg "$TMP/c4.st" "$TMP/cfglr.st" lr 1e39 fix
case_ "forged config lr 1e39"    "cfglr\.st: .*config key 'lr': 1e39 is not a finite fp32 value" $R --resume "$TMP/cfglr.st"
case_ "resume beyond --steps"    "--resume $TMP/c4\.st is at step 4, beyond --steps 3: nothing to train" $GOOD --steps 3 --resume "$TMP/c4.st"
case_ "resume at --steps, nothing to do" "is at step 4, already --steps 4: nothing to do" $GOOD --steps 4 --resume "$TMP/c4.st"
case_ "--stop-after before the checkpoint" "is at step 4: --stop-after 2 would train nothing" $R --stop-after 2 --resume "$TMP/c4.st"
case_ "--resume a directory"     "--resume $TMP/dir_without_shards: is a directory" $R --resume "$TMP/dir_without_shards"
case_ "--resume a FIFO"          "fifo: is a FIFO, not a safetensors file"     $R --resume "$TMP/fifo"
case_ "--sample without --resume" "--sample generates from a trained model: give it with --resume" $GOOD --sample 5
case_ "--sample, tokenizer beyond V" "--tokenizer .*cl100k_style\.json has 3[0-9]+ ids but the model's vocabulary has 256" \
                                   --sample 5 --resume "$TMP/c4.st" --tokenizer tests/fixtures/tokenizers/cl100k_style.json --prompt hi
case_ "--sample, prompt byte beyond V" "--prompt: token 0 has id 104, outside the model's vocabulary of 100" \
                                   --sample 5 --resume "$TMP/v100.st" --prompt hi

echo "== divergence"
# --lr 1e30 blows the weights up in step 1; step 2 meets NaN. The run must stop there, naming the
# step, and not train on. With --save-every 1 the step-1 checkpoint stays, whole and loadable.
case_ "diverging run"            "step 2: .*(NaN|nan|not finite).*(diverged)" $GOOD --batch 2 --steps 20 --warmup 1 --lr 1e30 \
                                   --save "$TMP/div.st" --save-every 1 --log "$TMP/div.jsonl"
[ -f "$TMP/div.st" ] || bad "diverging run: the step-1 checkpoint is missing"
[ ! -e "$TMP/div.st.tmp" ] || bad "diverging run: left a temp file"
grep -q '"step":2' "$TMP/div.jsonl" && bad "diverging run: logged a record for the failed step 2"
# (Whole: every checksum and the finiteness that the loader checks, recomputed independently.)
$PY tests/st_edit.py verify "$TMP/div.st" > "$TMP/verify.out" || bad "diverging run: the step-1 checkpoint is not whole: $(cat "$TMP/verify.out")"
# Without MoE layers the router cannot notice; the loss check must (L = n_dense = 1).
case_ "diverging dense model"    "step [0-9]+: .*(loss is|not finite).*diverged" $GOOD --layers 1 --dense-layers 1 --steps 30 \
                                   --warmup 1 --lr 1e30 --clip 0
# A good checkpoint at the --save path is not replaced by a run that diverges before its end.
"$BUILD/train" $GOOD --save "$TMP/keep.st" > /dev/null 2>&1 || bad "could not write keep.st"
cp "$TMP/keep.st" "$TMP/keep.orig"
case_ "diverging run, no save-every" "step 2: .*diverged.*keep\.st keeps the last checkpoint" $GOOD --steps 20 --warmup 1 \
                                   --lr 1e30 --save "$TMP/keep.st"
cmp -s "$TMP/keep.st" "$TMP/keep.orig" || bad "a diverged run replaced the checkpoint at its --save path"

# A step whose loss and gradient are finite but whose update is not (weight decay lr*wd = 1e39
# overflows fp32): the save after it refuses to write inf/NaN parameters, names the step, and the
# checkpoint at --save (from an earlier good run) stays as it was.
"$BUILD/train" $GOOD --save "$TMP/keep2.st" > /dev/null 2>&1 || bad "could not write keep2.st"
cp "$TMP/keep2.st" "$TMP/keep2.orig"
case_ "non-finite update, no NaN save" "step 1: not saving .*keep2\.st: '[a-z_.0-9]+' holds a non-finite value .*diverged.*keep2\.st keeps the last checkpoint" \
                                   $GOOD --steps 5 --warmup 1 --lr 1e38 --wd 10 --save "$TMP/keep2.st" --save-every 1
cmp -s "$TMP/keep2.st" "$TMP/keep2.orig" || bad "a run with non-finite parameters replaced the checkpoint at its --save path"

echo "== control: the same data and flags without the damage train"
"$BUILD/train" $T --data "$TMP/good.bin" --vocab 256 > "$TMP/ok.out" 2>&1 || bad "good.bin does not train: $(tail -n 2 "$TMP/ok.out")"
grep -q "^step     2/2" "$TMP/ok.out" || bad "control run printed no step 2"

[ $fail -eq 0 ] && echo "check_bad_input: PASS ($n cases)" || echo "check_bad_input: FAIL"
exit $fail
