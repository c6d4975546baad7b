#!/usr/bin/env bash
# Checkpoints: resume identity and durability.
#
# 1. Resume identity, for every balance mode: a run of N steps straight is compared with the same
#    run interrupted after k steps (--stop-after k --save) and continued (--resume ... for N-k steps).
#    Every step record of the JSONL logs must be equal as text (the trainer writes the shortest
#    decimal that reads back to the same bits, so equal text = equal bits) except the timing
#    field tok_s, and the two final checkpoints must be equal byte for byte: parameters, AdamW
#    moments, loss-free biases, and the metadata (step, data position, config). The runs use
#    grad-accum 2, evaluations and periodic saves in between (neither may perturb training), and
#    cross an epoch of the data loader after the resume (its shuffle must be re-derived from the
#    position alone). The bias rate is 0.01 so that the biases actually move the routing within
#    a few steps.
# 2. Durability: a save that dies half-way (file size limit, i.e. a full disk) leaves the previous
#    checkpoint byte-identical and no temp file; a stale FILE.tmp.<pid> from a killed run neither
#    blocks the next save nor survives it.
# 3. Refusals: a truncated checkpoint, one with a stray byte appended, and resuming with another
#    model shape each stop with exit 1 and a message that names the problem.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
$PY -c 'import numpy' 2>/dev/null || { echo "FAIL: /usr/bin/python3 has no numpy (run make deps)"; exit 1; }
passive_threads
make_tmp

# 3459 training bytes = 108 windows of T+1 = 33; 8 windows per step, so the epoch ends in step 14.
N=16; K=7
COMMON="--preset tiny --data $DATA --seq 32 --batch 4 --grad-accum 2 --steps $N --warmup 3 --lr 3e-3
        --seed 5 --threads 2 --eval-every 5 --eval-batches 2 --save-every 5 --print-every 100"
MODES=(
  "none|--balance none"
  "aux-seq|--balance aux --aux-alpha 0.01"
  "aux-batch-softmax|--balance aux --aux-alpha 0.01 --aux-per-batch --gate softmax"
  "lossfree-add-sign|--balance lossfree --bias-kind add --update-rule sign --bias-rate 0.01"
  "lossfree-add-error|--balance lossfree --bias-kind add --update-rule error --bias-rate 0.01"
  "lossfree-mul-sign|--balance lossfree --bias-kind mul --update-rule sign --bias-rate 0.01"
  "lossfree-mul-error-normtopk|--balance lossfree --bias-kind mul --update-rule error --bias-rate 0.01 --norm-topk --route-scale 2"
  "expert-choice-shuffle|--balance none --routing expert --ec-chunk 64 --ec-shuffle"
)

# Compares the step and eval records of the straight log with those of the two halves, as text.
cat > "$TMP/cmp_logs.py" <<'EOF'
import json, sys
def records(path):
    out = {}
    for n, line in enumerate(open(path), 1):
        r = json.loads(line, parse_float=str, parse_int=str)  # keep numbers as the trainer wrote them
        if r["type"] in ("step", "eval"):
            r.pop("tok_s", None)
            out[(r["type"], r["step"])] = r
    return out
straight = records(sys.argv[1])
halves = records(sys.argv[2]); halves.update(records(sys.argv[3]))
n_steps = int(sys.argv[4])
bad = 0
for s in range(1, n_steps + 1):
    key = ("step", str(s))
    if key not in straight or key not in halves:
        print(f"  step {s}: record missing ({'straight' if key not in straight else 'resumed'} log)"); bad += 1; continue
    a, b = straight[key], halves[key]
    for f in sorted(set(a) | set(b)):
        if a.get(f) != b.get(f):
            print(f"  step {s}: {f} differs: straight {a.get(f)} vs resumed {b.get(f)}"); bad += 1
evals = [k for k in straight if k[0] == "eval"]
for k in evals:
    if k not in halves:
        print(f"  eval at step {k[1]}: missing from the resumed logs"); bad += 1
    elif straight[k] != halves[k]:
        print(f"  eval at step {k[1]} differs"); bad += 1
if len(evals) < 3: print(f"  expected >= 3 eval records in the straight log, got {len(evals)}"); bad += 1
print(f"  logs: {n_steps} step records and {len(evals)} evals compared, {bad} differences")
sys.exit(1 if bad else 0)
EOF

# Reads a checkpoint with numpy (an independent safetensors reader) and says what differs, and
# checks that the state compared is not trivially empty.
cat > "$TMP/st.py" <<'EOF'
import json, struct, sys
import numpy as np
DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    meta = head.pop("__metadata__", {})
    t = {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], DT[v["dtype"]]).reshape(v["shape"])
         for k, v in head.items()}
    return meta, t
cmd = sys.argv[1]
if cmd == "diff":
    (ma, ta), (mb, tb) = load(sys.argv[2]), load(sys.argv[3])
    for k in sorted(set(ma) | set(mb)):
        if ma.get(k) != mb.get(k): print(f"  metadata {k}: {ma.get(k)} vs {mb.get(k)}")
    for k in sorted(set(ta) | set(tb)):
        if k not in ta or k not in tb: print(f"  tensor {k} only in one file"); continue
        if ta[k].tobytes() != tb[k].tobytes():
            d = np.abs(ta[k].astype(np.float64) - tb[k].astype(np.float64))
            print(f"  tensor {k}: {int((d != 0).sum())} of {d.size} elements differ, max |diff| {d.max():.3e}")
elif cmd == "state":  # step, data position and non-trivial moments/biases of a finished run
    meta, t = load(sys.argv[2]); want_step, want_pos, balance = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    errs = []
    if meta.get("format") != "lfmoe-checkpoint": errs.append(f"format {meta.get('format')}")
    if int(meta.get("step", -1)) != want_step: errs.append(f"step {meta.get('step')} != {want_step}")
    if int(meta.get("data_pos", -1)) != want_pos: errs.append(f"data_pos {meta.get('data_pos')} != {want_pos}")
    params = [k for k in t if not k.startswith("adam.") and not k.endswith(".moe.bias")]
    for p in params:
        for m in ("adam.m/", "adam.v/"):
            if m + p not in t: errs.append(f"{m}{p} missing")
    if not any(np.any(t["adam.v/" + p] != 0) for p in params if "adam.v/" + p in t): errs.append("AdamW v is all zero")
    biases = [k for k in t if k.endswith(".moe.bias")]
    if not biases: errs.append("no loss-free bias tensors")
    if balance == "lossfree" and all(np.all(t[b] == t[b].flat[0]) for b in biases):
        errs.append("loss-free biases never moved: the comparison would not cover them")
    for e in errs: print("  " + e)
    sys.exit(1 if errs else 0)
EOF

# ---------------------------------------------------------------- 1. resume identity
printf '%-30s %-8s %-8s %s\n' mode logs ckpt seconds
for m in "${MODES[@]}"; do
  name=${m%%|*}; flags=${m#*|}; d="$TMP/$name"; mkdir -p "$d"; t0=$(date +%s)
  balance=$(echo "$flags" | sed -E 's/.*--balance ([a-z]+).*/\1/')
  # shellcheck disable=SC2086
  if ! "$BUILD/train" $COMMON $flags --log "$d/straight.jsonl" --save "$d/straight.st" > "$d/straight.out" 2>&1 ||
     ! "$BUILD/train" $COMMON $flags --log "$d/part1.jsonl" --save "$d/split.st" --stop-after $K > "$d/part1.out" 2>&1 ||
     ! "$BUILD/train" $COMMON $flags --log "$d/part2.jsonl" --save "$d/split.st" --resume "$d/split.st" > "$d/part2.out" 2>&1; then
    tail -n 5 "$d"/*.out; bad "$name: a training run failed"; continue
  fi
  grep -q "stopped after step $K of $N" "$d/part1.out" || bad "$name: --stop-after $K did not report the interruption"
  logs=ok; ckpt=ok
  $PY "$TMP/cmp_logs.py" "$d/straight.jsonl" "$d/part1.jsonl" "$d/part2.jsonl" $N > "$d/logcmp" || { logs=DIFF; cat "$d/logcmp"; bad "$name: resumed log differs"; }
  if ! cmp -s "$d/straight.st" "$d/split.st"; then
    ckpt=DIFF; $PY "$TMP/st.py" diff "$d/straight.st" "$d/split.st"; bad "$name: final checkpoints differ"
  fi
  $PY "$TMP/st.py" state "$d/straight.st" $N $((N * 8)) "$balance" || { ckpt=BAD; bad "$name: checkpoint state incomplete"; }
  printf '%-30s %-8s %-8s %s\n' "$name" "$logs" "$ckpt" $(( $(date +%s) - t0 ))
done

# ---------------------------------------------------------------- 2. durability
# A save cut off by the file size limit (as on a full disk): the write fails, the message says the
# previous checkpoint is untouched, and it is. SIGXFSZ is ignored so that write() returns EFBIG
# instead of killing the process; a limit of 512 KiB is far below the ~3.6 MB checkpoint.
D="$TMP/lossfree-add-sign"
if [ -f "$D/split.st" ]; then
  cp "$D/split.st" "$TMP/good.st"
  out=$( (trap '' XFSZ; ulimit -f 512; "$BUILD/train" $COMMON --bias-rate 0.01 --resume "$TMP/good.st" --steps 18 \
          --save "$TMP/good.st" --save-every 0 --eval-every 0) 2>&1 ); rc=$?
  if [ $rc -ne 1 ]; then bad "cut-off save: expected exit 1, got $rc"; echo "$out" | tail -n 3
  else
    echo "$out" | grep -q "write failed.*untouched" || bad "cut-off save: message should say the write failed and the previous checkpoint is untouched: $(echo "$out" | tail -n 1)"
  fi
  cmp -s "$TMP/good.st" "$D/split.st" || bad "cut-off save changed the previous checkpoint"
  ls "$TMP"/good.st.tmp* > /dev/null 2>&1 && bad "cut-off save left a temp file behind: $(ls "$TMP"/good.st.tmp*)"
  # a stale temp file (a run killed mid-write) holding half a checkpoint: the writer names its temp
  # file FILE.tmp.<pid>; one whose process is gone is removed by the next successful save
  dead=$(sh -c 'echo $$')  # a process that has exited: its pid is free
  head -c 100000 "$D/split.st" > "$TMP/good.st.tmp.$dead"
  "$BUILD/train" $COMMON --bias-rate 0.01 --resume "$TMP/good.st" --steps 17 --save "$TMP/good.st" --eval-every 0 \
    > "$TMP/stale.out" 2>&1 || { tail -n 3 "$TMP/stale.out"; bad "a stale .tmp file blocked training or saving"; }
  [ ! -e "$TMP/good.st.tmp.$dead" ] || bad "the stale temp file of a dead process survived a successful save"
  $PY "$TMP/st.py" state "$TMP/good.st" 17 $((17 * 8)) lossfree >/dev/null || bad "the save after a stale .tmp is not a step-17 checkpoint"
  echo "durability: cut-off save and stale temp file checked"
else
  bad "durability checks skipped: no checkpoint from the lossfree-add-sign run"
fi

# ---------------------------------------------------------------- 3. refusals
# expect_refusal NAME REGEX ARGS...: exit 1 (not a crash, not success) and stderr matching REGEX
expect_refusal() {
  local name=$1 re=$2; shift 2
  "$BUILD/train" "$@" > "$TMP/ref.out" 2> "$TMP/ref.err"; local rc=$?
  if [ $rc -ne 1 ]; then bad "$name: expected exit 1, got $rc"; tail -n 3 "$TMP/ref.err"; return; fi
  tr '\n' ' ' < "$TMP/ref.err" | grep -Eq -- "$re" || bad "$name: message does not match /$re/: $(tr '\n' ' ' < "$TMP/ref.err")"
  echo "refused ($name): $(head -c 200 "$TMP/ref.err" | tr '\n' ' ')"
}
if [ -f "$D/split.st" ]; then
  size=$(stat -c %s "$D/split.st")
  head -c $((size / 2)) "$D/split.st" > "$TMP/half.st"
  expect_refusal "truncated checkpoint" "half\.st: .*truncated" $COMMON --resume "$TMP/half.st" --steps 20
  head -c 6 "$D/split.st" > "$TMP/stub.st"
  expect_refusal "6-byte checkpoint" "stub\.st: too short" $COMMON --resume "$TMP/stub.st" --steps 20
  { cat "$D/split.st"; printf 'x'; } > "$TMP/long.st"
  expect_refusal "checkpoint with a stray byte" "long\.st: .*(corrupt|stray)" $COMMON --resume "$TMP/long.st" --steps 20
  expect_refusal "other shape (experts)" "different model.*E: 8 vs 16" $COMMON --resume "$D/split.st" --experts 16
  expect_refusal "other shape (width, layers)" "C: 64 vs 96" $COMMON --resume "$D/split.st" --width 96 --layers 3
  grep -q "L: 4 vs 3" "$TMP/ref.err" || bad "other shape: the layer difference is not named"
  expect_refusal "other gate" "gate: sigmoid vs softmax" $COMMON --resume "$D/split.st" --gate softmax
  printf 'not a checkpoint at all, just text\n' > "$TMP/text.st"
  expect_refusal "text file as checkpoint" "text\.st: " $COMMON --resume "$TMP/text.st"
  expect_refusal "missing checkpoint" "nope\.st: cannot open" $COMMON --resume "$TMP/nope.st"
fi

[ $fail -eq 0 ] && echo "check_resume: PASS" || echo "check_resume: FAIL"
exit $fail
