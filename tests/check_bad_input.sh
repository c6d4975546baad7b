#!/usr/bin/env bash
# Bad input to build/train: every case must stop with exit status 1 (not 0, not a crash: a signal
# gives >= 128) and an error message that names the problem (checked with a regex per case).
# Covered: damaged token shards (truncated, wrong magic, wrong version, negative or huge count,
# trailing bytes), empty, missing and too-short data, tokens outside the vocabulary, inconsistent
# configs (K > E, C % H, odd head dim, n_dense > L, expert-choice chunk), unknown flags and
# presets, bad numbers (abc, nan, inf, out of range, trailing junk, negative seed), bad paths for
# --save and --log, and a run that diverges (--lr 1e30): it stops naming the step, and an earlier
# checkpoint stays as it was.
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
EOF
mkdir -p "$TMP/dir_without_shards"
: > "$TMP/empty.txt"

# case NAME REGEX ARGS...: train must exit 1 and print a message matching REGEX (one line or several).
case_() {
  local name=$1 re=$2; shift 2; n=$((n + 1))
  timeout 120 "$BUILD/train" "$@" > "$TMP/out" 2> "$TMP/err"; local rc=$?
  local msg; msg=$(tr '\n' ' ' < "$TMP/err")
  if [ $rc -ne 1 ]; then bad "$name: expected exit 1, got $rc${msg:+ ($msg)}"; return; fi
  echo "$msg" | grep -Eq -- "$re" || { bad "$name: message does not match /$re/: $msg"; return; }
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
case_ "data shorter than T+1"    "fewer than one window of T\+1 = 100001"     $GOOD --seq 100000
case_ "val too small for eval"   "validation data holds 182 tokens.*--val"    $GOOD --eval-every 1

echo "== config"
case_ "K > E"                    "topk K=9 must be between 1 and experts E=8" $GOOD --topk 9
case_ "C not divisible by H"     "width C=64 is not divisible by heads H=3"   $GOOD --heads 3
case_ "odd head dim"             "head dim C/H must be even"                  $GOOD --heads 32 --width 96
case_ "n_dense > L"              "dense-layers must be between 0 and layers"  $GOOD --dense-layers 5
case_ "chunk not dividing B*T"   "ec-chunk 100 must divide .* 256 tokens"     $GOOD --routing expert --balance none --ec-chunk 100
case_ "chunk*K not multiple of E" "ec-chunk \* topk must be a multiple of experts" $GOOD --routing expert --balance none --ec-chunk 2 --topk 1
case_ "expert choice + lossfree" "expert choice has no bias to steer"         $GOOD --routing expert --balance lossfree
case_ "zero batch"               "must all be positive"                       $GOOD --batch 0
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

echo "== output paths"
case_ "--save in a missing dir"  "--save $TMP/no/dir/x\.st: cannot create"     $GOOD --save "$TMP/no/dir/x.st"
case_ "--save is a directory"    "--save $TMP: is a directory"                $GOOD --save "$TMP"
case_ "--log in a missing dir"   "no/dir/x\.jsonl: cannot open the log"       $GOOD --batch 2 --log "$TMP/no/dir/x.jsonl"
# The checks above must come before training: no step line may have been printed.
grep -q "^step" "$TMP/out" && bad "--log in a missing dir: the error came only after training"

echo "== divergence"
# --lr 1e30 blows the weights up in step 1; step 2 meets NaN. The run must stop there, naming the
# step, and not train on. With --save-every 1 the step-1 checkpoint stays, whole and loadable.
case_ "diverging run"            "step 2: .*(NaN|nan|not finite).*(diverged)" $GOOD --batch 2 --steps 20 --warmup 1 --lr 1e30 \
                                   --save "$TMP/div.st" --save-every 1 --log "$TMP/div.jsonl"
[ -f "$TMP/div.st" ] || bad "diverging run: the step-1 checkpoint is missing"
[ ! -e "$TMP/div.st.tmp" ] || bad "diverging run: left a temp file"
grep -q '"step":2' "$TMP/div.jsonl" && bad "diverging run: logged a record for the failed step 2"
"$BUILD/train" $GOOD --resume "$TMP/div.st" --steps 1 > "$TMP/resume.out" 2>&1 ||
  bad "diverging run: the step-1 checkpoint does not load: $(tail -n 1 "$TMP/resume.out")"
# Without MoE layers the router cannot notice; the loss check must (L = n_dense = 1).
case_ "diverging dense model"    "step [0-9]+: .*(loss is|not finite).*diverged" $GOOD --layers 1 --dense-layers 1 --steps 30 \
                                   --warmup 1 --lr 1e30 --clip 0
# A good checkpoint at the --save path is not replaced by a run that diverges before its end.
"$BUILD/train" $GOOD --save "$TMP/keep.st" > /dev/null 2>&1 || bad "could not write keep.st"
cp "$TMP/keep.st" "$TMP/keep.orig"
case_ "diverging run, no save-every" "step 2: .*diverged.*keep\.st keeps the last checkpoint" $GOOD --steps 20 --warmup 1 \
                                   --lr 1e30 --save "$TMP/keep.st"
cmp -s "$TMP/keep.st" "$TMP/keep.orig" || bad "a diverged run replaced the checkpoint at its --save path"

echo "== control: the same data and flags without the damage train"
"$BUILD/train" $T --data "$TMP/good.bin" --vocab 256 > "$TMP/ok.out" 2>&1 || bad "good.bin does not train: $(tail -n 2 "$TMP/ok.out")"
grep -q "^step     2/2" "$TMP/ok.out" || bad "control run printed no step 2"

[ $fail -eq 0 ] && echo "check_bad_input: PASS ($n cases)" || echo "check_bad_input: FAIL"
exit $fail
