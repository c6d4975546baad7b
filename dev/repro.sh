#!/usr/bin/env bash
# Reproductions of the paper's experiments at a scale a CPU can run (or a GPU, unchanged: pass
# BACKEND=cuda PRESET=gpu DATA=data/shards/tok32k VOCAB=32064 STEPS=...). Each target trains its runs,
# then writes a table (markdown), charts (SVG) and a short report into docs/results/<target>/.
#
#   dev/repro.sh table1|fig2|fig4|table2|table3|appc|fig5|leakage|seeds|all
#
# Environment (defaults in brackets): PRESET [cpu] DATA [data/shards/tok4k] VOCAB [4096]
# STEPS [400] SEED [1234] BACKEND [cpu] EVAL_BATCHES [0: the whole split] SAVE_EVERY [100] EXTRA (more flags for
# every run). An interrupted run resumes from its last checkpoint when the target is run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-cpu}; DATA=${DATA:-data/shards/tok4k}; VOCAB=${VOCAB:-4096}; STEPS=${STEPS:-400}
SEED=${SEED:-1234}; BACKEND=${BACKEND:-cpu}; EVAL_BATCHES=${EVAL_BATCHES:-0}; EXTRA=${EXTRA:-}
SAVE_EVERY=${SAVE_EVERY:-100}
if [ "$EVAL_BATCHES" -gt 0 ]; then EVAL_WHAT="$EVAL_BATCHES validation batches (a fixed sample of the split)"
else EVAL_WHAT="the whole validation split"; fi
make -s all
[ -f "$DATA/train.bin" ] || data/build_all.sh

RUNS=runs/repro  # shared by all targets: one run per distinct config (git-ignored; logs are copied into docs/)
mkdir -p "$RUNS"

# run OUTDIR NAME flags... : makes sure the run with these flags exists, then copies its log to
# OUTDIR/logs/NAME.jsonl. Runs are keyed by the full resolved config (train --print-config), so a
# config that several targets share (e.g. loss-free with u = 1e-3) is trained once. A run counts as
# done when its log ends with an eval record; its final checkpoint is $RUNS/<key>.ckpt.
run() {
  local out=$1 name=$2; shift 2
  mkdir -p "$out/logs"
  local args=(--preset "$PRESET" --data "$DATA" --vocab "$VOCAB" --steps "$STEPS" --seed "$SEED" $EXTRA "$@")
  local key
  key=$( { build/train "${args[@]}" --print-config; echo "$DATA $EVAL_BATCHES $BACKEND"; } | md5sum | cut -c1-12)
  local log="$RUNS/$key.jsonl"
  if [ -f "$log" ] && tail -n 1 "$log" | grep -q '"type":"eval"'; then
    echo "  $name: done ($log)"
  else
    local resume=() t0=$SECONDS ck="$RUNS/$key.ckpt" s=""
    # An interrupted run resumes from its last periodic checkpoint (bitwise identical to a straight
    # run); its log keeps only the records up to that step.
    [ -f "$ck" ] && s=$(head -c 65536 "$ck" | grep -a -o '"step": *"[0-9]*"' | grep -o '[0-9]*' | head -n 1)
    if [ -n "$s" ] && [ -f "$log" ]; then
      echo "  $name: resuming at step $s ($log)"
      awk -v s="$s" 'match($0, /"step":[0-9]+/) { if (substr($0, RSTART + 7, RLENGTH - 7) + 0 > s) next } { print }' \
        "$log" > "$log.tmp" && mv "$log.tmp" "$log"
      resume=(--resume "$ck")
    else
      rm -f "$log"
      echo "  $name: $* -> $log"
    fi
    build/train "${args[@]}" "${resume[@]}" --backend "$BACKEND" --eval-batches "$EVAL_BATCHES" \
      --print-every 100 --log "$log" --save "$ck" --save-every "$SAVE_EVERY" | tail -n 1
    echo "  $name: $((SECONDS - t0)) s"
  fi
  cp "$log" "$out/logs/$name.jsonl"
  RUN_CKPT="$RUNS/$key.ckpt"
}

header() {  # header OUTDIR TITLE PAPER_TEXT
  mkdir -p "$1"
  { echo "# $2"; echo; echo "Scale: preset \`$PRESET\`, $STEPS steps, data \`$DATA\`, seed $SEED, backend $BACKEND,"
    echo "run on $(date -u +%Y-%m-%d) by \`dev/repro.sh\`."
    echo; echo "Paper: $3"; echo; } > "$1/report.md"
}

table() {  # table OUTDIR logs...: appends the results table of the given runs (and the discussion) to the report
  local out=$1; shift
  build/plot table --out "$out/table.md" "$@"
  { echo "## Results"; echo; cat "$out/table.md"; echo
    echo "Validation perplexity and MaxVio_global come from the final evaluation on $EVAL_WHAT;"
    echo "MaxVio_batch is the mean over the last 20% of training steps. Logs: \`logs/\`."; echo
    if [ -f "$out/discussion.md" ]; then cat "$out/discussion.md"; echo; fi; } >> "$out/report.md"
}

table1() {
  local o=docs/results/table1
  header $o "Table 1: auxiliary loss vs loss-free balancing" \
    "1B: aux (alpha 1e-3) PPL 9.56, MaxVio_global 0.72; loss-free (u 1e-3) 9.50, 0.04. 3B: 7.97/0.52 vs 7.92/0.04."
  run $o aux --balance aux --aux-alpha 1e-3
  run $o lossfree --balance lossfree --bias-rate 1e-3
  run $o none --balance none
  table $o $o/logs/aux.jsonl:aux $o/logs/lossfree.jsonl:loss-free $o/logs/none.jsonl:none
  build/plot lines --y maxvio_batch --smooth 20 --out $o/maxvio_batch.svg \
    $o/logs/aux.jsonl:aux $o/logs/lossfree.jsonl:loss-free $o/logs/none.jsonl:none
  build/plot lines --y loss --smooth 20 --out $o/loss.svg \
    $o/logs/aux.jsonl:aux $o/logs/lossfree.jsonl:loss-free $o/logs/none.jsonl:none
  build/plot heatmap --out $o/loads_lossfree.svg $o/logs/lossfree.jsonl
  build/plot heatmap --out $o/loads_none.svg $o/logs/none.jsonl
}

fig2() {
  local o=docs/results/fig2
  header $o "Figure 2: the auxiliary-loss weight trades balance for perplexity" \
    "alpha in {1e-2, 1e-3, 1e-4, 0}: small alpha lets routing collapse (high MaxVio_global), large alpha hurts PPL."
  local logs=()
  for a in 1e-2 1e-3 1e-4 0; do run $o alpha_$a --balance aux --aux-alpha $a; logs+=($o/logs/alpha_$a.jsonl:alpha=$a); done
  run $o lossfree --balance lossfree; logs+=($o/logs/lossfree.jsonl:loss-free)
  table $o "${logs[@]}"
  build/plot scatter --x maxvio_global --y val_ppl --out $o/ppl_vs_maxvio.svg "${logs[@]}"
}

fig4() {
  local o=docs/results/fig4
  header $o "Figure 4: the bias update rate u" \
    "u = 1e-4 balances slowly early; u = 1e-2 fluctuates late; u = 1e-3 is best (1B: PPL 9.50)."
  local logs=()
  for u in 1e-4 1e-3 1e-2; do run $o u_$u --balance lossfree --bias-rate $u; logs+=($o/logs/u_$u.jsonl:u=$u); done
  table $o "${logs[@]}"
  build/plot lines --y maxvio_batch --smooth 20 --out $o/maxvio_batch.svg "${logs[@]}"
}

table2() {
  local o=docs/results/table2
  header $o "Table 2: sign rule vs error rule" \
    "sign, u 1e-3: 9.50 / 0.044; error rule u = 1e-2 / 1e-3 / 1e-4: 9.53 / 0.028, 9.51 / 0.036, 9.51 / 0.040."
  local logs=()
  run $o sign_1e-3 --balance lossfree --update-rule sign --bias-rate 1e-3; logs+=($o/logs/sign_1e-3.jsonl:sign,u=1e-3)
  for u in 1e-2 1e-3 1e-4; do
    run $o error_$u --balance lossfree --update-rule error --bias-rate $u; logs+=($o/logs/error_$u.jsonl:error,u=$u)
  done
  table $o "${logs[@]}"
  build/plot lines --y maxvio_batch --smooth 20 --out $o/maxvio_batch.svg "${logs[@]}"
}

table3() {
  local o=docs/results/table3
  header $o "Table 3: additive vs multiplicative bias" \
    "multiplicative u = 1e-2 / 1e-3 / 1e-4: 9.52 / 0.041, 9.52 / 0.036, 9.54 / 0.048; additive (9.50 / 0.044) preferred."
  local logs=()
  run $o add_1e-3 --balance lossfree --bias-kind add --bias-rate 1e-3; logs+=($o/logs/add_1e-3.jsonl:add,u=1e-3)
  for u in 1e-2 1e-3 1e-4; do
    run $o mul_$u --balance lossfree --bias-kind mul --bias-rate $u; logs+=($o/logs/mul_$u.jsonl:mul,u=$u)
  done
  table $o "${logs[@]}"
}

appc() {
  local o=docs/results/appc
  header $o "Appendix C: softmax gate" "aux alpha 3e-4: 9.604 / 0.937; loss-free (error rule, u 1e-3): 9.599 / 0.027."
  run $o aux --gate softmax --balance aux --aux-alpha 3e-4
  run $o lossfree --gate softmax --balance lossfree --update-rule error --bias-rate 1e-3
  table $o $o/logs/aux.jsonl:softmax-aux $o/logs/lossfree.jsonl:softmax-loss-free
}

fig5() {
  local o=docs/results/fig5
  header $o "Figure 5: MaxVio over growing computation batches" \
    "as the computation batch (micro_batch x ep_dp) grows, loss-free's MaxVio keeps falling while the aux-loss one levels off."
  # The computation-batch grouping is a measurement, not a training setting: the trained aux-loss and
  # loss-free models of Table 1 are evaluated on the validation split, its sequences grouped into
  # computation batches of batch x ep_dp sequences (train --resume CKPT --ep-dp N: no further steps).
  local logs=() m d log
  declare -A ck
  run $o aux --balance aux --aux-alpha 1e-3; ck[aux]=$RUN_CKPT
  run $o lossfree --balance lossfree --bias-rate 1e-3; ck[lossfree]=$RUN_CKPT
  { echo "MaxVio_computation-batch on $EVAL_WHAT (mean over computation batches and MoE layers):"
    echo; echo "| computation batch (tokens) | aux-loss | loss-free |"; echo "|---|---|---|"; } > $o/table.md
  for d in 1 2 4 8 16 32; do
    local row=""
    for m in aux lossfree; do
      log=$o/logs/${m}_cb$d.jsonl
      if ! { [ "$log" -nt "${ck[$m]}" ] && grep -q '"type":"eval"' "$log"; }; then  # else: evaluated already
        rm -f $log
        build/train --resume "${ck[$m]}" --data "$DATA" --backend "$BACKEND" --eval-batches "$EVAL_BATCHES" \
          --ep-dp $d --log $log > /dev/null
      fi
      logs+=($log:$m)
      row="$row | $(grep '"type":"eval"' $log | tail -n 1 | grep -o '"maxvio_cb":[^,}]*' | cut -d: -f2 | xargs printf '%.3f')"
    done
    echo "| $(grep '"type":"eval"' $log | tail -n 1 | grep -o '"cb_tokens":[0-9]*' | cut -d: -f2)$row |" >> $o/table.md
  done
  build/plot bars --x cb_tokens --y maxvio_cb --source eval --out $o/maxvio_cb.svg "${logs[@]}"
  { echo "## Results"; echo; cat $o/table.md; echo; [ -f $o/discussion.md ] && cat $o/discussion.md; echo; } >> $o/report.md
}

leakage() {
  local o=docs/results/leakage
  header $o "Expert choice leaks future tokens" \
    "bound K*log2((1-R)/R) bits per token per layer; top-K chunks of 8192/2048/512 tokens on a 2B model: at 512 an abnormal ~10% loss drop that shuffling removes."
  local cfg E K
  cfg=$(build/train --preset "$PRESET" $EXTRA --print-config)
  E=$(echo "$cfg" | grep -o '"E": [0-9]*' | grep -o '[0-9]*$'); K=$(echo "$cfg" | grep -o '"K": [0-9]*' | grep -o '[0-9]*$')
  /usr/bin/env awk -v K=$K -v E=$E 'BEGIN { R = K / E; printf "Leakage bound for K=%d, E=%d (R=%.4f): %.2f bits per token per layer\n\n", K, E, R, K * log((1-R)/R) / log(2) }' >> $o/report.md
  local logs=()
  for c in 1024 64; do  # the whole micro-batch, and 64 tokens (8 per expert per chunk at K 2, E 16)
    run $o ec_$c --routing expert --balance none --ec-chunk $c; logs+=($o/logs/ec_$c.jsonl:chunk=$c)
    run $o ec_${c}_shuf --routing expert --balance none --ec-chunk $c --ec-shuffle; logs+=($o/logs/ec_${c}_shuf.jsonl:chunk=$c+shuffle)
  done
  run $o token_choice --balance lossfree; logs+=($o/logs/token_choice.jsonl:token-choice)
  table $o "${logs[@]}"
  build/plot lines --y loss --smooth 20 --out $o/loss.svg "${logs[@]}"
}

seeds() {
  local o=docs/results/seeds s
  header $o "Seed spread: how much of a difference between two runs is noise" \
    "(not in the paper; the paper reports one run per setting at a scale where run-to-run noise is small)"
  local logs=()
  for s in ${SEEDS:-1234 1235 1236}; do
    run $o aux_s$s --balance aux --aux-alpha 1e-3 --seed $s; logs+=($o/logs/aux_s$s.jsonl:aux,seed=$s)
    run $o lossfree_s$s --balance lossfree --bias-rate 1e-3 --seed $s; logs+=($o/logs/lossfree_s$s.jsonl:loss-free,seed=$s)
  done
  table $o "${logs[@]}"
}

case "${1:-}" in
  table1|fig2|fig4|table2|table3|appc|fig5|leakage|seeds) "$1" ;;
  all) for t in table1 fig2 fig4 table2 table3 appc fig5 leakage seeds; do $t; done ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
