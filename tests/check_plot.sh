#!/usr/bin/env bash
# build/plot: every chart type on logs written by short build/train runs and on a hand-written
# log, each SVG parsed with python3's xml.etree (well-formed, root <svg>) and checked against the
# log by an independent reading:
#  - lines: one <g id="series-i"> per run, one path per series (two with --smooth: faint raw and
#    the moving average), as many vertices as records, and every vertex, mapped back through the
#    drawn axis ticks, equals the logged value (or the moving average computed here);
#  - scatter: one circle per run at (x, y) of its last eval record;
#  - bars: one rect per (label, category), its top at the mean of the last 20% of the step records;
#  - heatmap: one cell per (MoE layer, expert) whose tooltip holds the logged load, rows labelled
#    with the model's layer index;
#  - table: one markdown row per run with the last eval's values and the tail means of the training
#    loss and MaxVio_batch;
#  - axis labels and titles present.
# Then bad input: a missing file, a line that is not JSON, an unknown field/chart/option, a
# heatmap without eval records, an unwritable output: exit 1 and a message naming the problem.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train" "$BUILD/plot"
require_tiny_data
passive_threads
make_tmp
P="$BUILD/plot"

# ---- logs: four short runs (two balance modes x two EP sizes) and one written by hand
COMMON="--preset tiny --data $DATA --seq 32 --batch 2 --grad-accum 2 --steps 10 --warmup 2 --init-std 0.02
        --eval-every 5 --threads 2 --print-every 1000 --bias-rate 1e-2"
for run in "lf1|--balance lossfree --ep-dp 1" "lf2|--balance lossfree --ep-dp 2" \
           "none1|--balance none --ep-dp 1" "none2|--balance none --ep-dp 2"; do
  name=${run%%|*}; flags=${run#*|}
  # shellcheck disable=SC2086
  "$BUILD/train" $COMMON $flags --log "$TMP/$name.jsonl" > "$TMP/$name.out" 2>&1 ||
    { tail -n 3 "$TMP/$name.out"; echo "FAIL: training run $name failed"; exit 1; }
done
$PY - "$TMP/synth.jsonl" <<'EOF'
# A log written by hand: 12 steps with a loss that falls linearly, 2 evals, 2 MoE layers of 4 experts.
import json, sys
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"type": "config", "config": {"n_dense": 2, "E": 4, "K": 1, "balance": "none", "gate": "sigmoid",
                                                     "routing": "token_choice"}}) + "\n")
    for s in range(1, 13):
        f.write(json.dumps({"type": "step", "step": s, "loss": 6.0 - 0.25 * s, "maxvio_batch": 0.1 * (s % 4),
                            "maxvio_layers": [0.1 * (s % 4), 0.2]}) + "\n")
        if s in (6, 12):
            f.write(json.dumps({"type": "eval", "step": s, "val_loss": 4.0 - s / 12, "val_ppl": 50.0 - s,
                                "maxvio_global": 0.5, "loads": [[10, 20, 30, 40], [25, 25, 25, 25]]}) + "\n")
EOF

# ---- charts
run_plot() {  # run_plot OUT ARGS...: plot must succeed
  local out=$1; shift
  "$P" "$@" > "$TMP/plot.out" 2>&1 || { bad "plot $*: exit $? ($(tail -n 1 "$TMP/plot.out"))"; return 1; }
  [ "$out" = "-" ] || [ -s "$out" ] || bad "plot $*: no output file"
}
RUNS="$TMP/lf1.jsonl:lossfree $TMP/none1.jsonl:none"
run_plot "$TMP/lines.svg"   lines --y loss --out "$TMP/lines.svg" $RUNS
run_plot "$TMP/smooth.svg"  lines --y loss --smooth 3 --out "$TMP/smooth.svg" $RUNS
run_plot "$TMP/layer.svg"   lines --y "maxvio_layers[1]" --out "$TMP/layer.svg" $RUNS
run_plot "$TMP/evalppl.svg" lines --y val_ppl --source eval --logy --out "$TMP/evalppl.svg" $RUNS
run_plot "$TMP/synth.svg"   lines --y loss --out "$TMP/synth.svg" "$TMP/synth.jsonl"
run_plot "$TMP/scatter.svg" scatter --x maxvio_global --y val_ppl --out "$TMP/scatter.svg" $RUNS
run_plot "$TMP/bars.svg"    bars --x ep_dp --y maxvio_cb --out "$TMP/bars.svg" \
  "$TMP/lf1.jsonl:lossfree" "$TMP/lf2.jsonl:lossfree" "$TMP/none1.jsonl:none" "$TMP/none2.jsonl:none"
run_plot "$TMP/heatmap.svg" heatmap --out "$TMP/heatmap.svg" "$TMP/lf1.jsonl"
run_plot "$TMP/heat5.svg"   heatmap --step 5 --out "$TMP/heat5.svg" "$TMP/lf1.jsonl"
run_plot "$TMP/hsynth.svg"  heatmap --out "$TMP/hsynth.svg" "$TMP/synth.jsonl"
run_plot "$TMP/table.md"    table --out "$TMP/table.md" $RUNS

$PY - "$TMP" <<'EOF' || fail=1
import json, math, re, sys
import xml.etree.ElementTree as ET
tmp = sys.argv[1]
NS = "{http://www.w3.org/2000/svg}"
errors = []
def err(m): errors.append(m)

def log(name):
    recs = [json.loads(l) for l in open(f"{tmp}/{name}.jsonl")]
    return ([r for r in recs if r["type"] == "step"], [r for r in recs if r["type"] == "eval"])

def svg(name):
    try: root = ET.parse(f"{tmp}/{name}").getroot()
    except ET.ParseError as e: err(f"{name}: not well-formed XML: {e}"); return None
    if root.tag != NS + "svg": err(f"{name}: root element is {root.tag}, not svg"); return None
    return root

def group(root, gid):
    return next((g for g in root.iter(NS + "g") if g.get("id") == gid), None)

def texts(el): return [t.text or "" for t in el.iter(NS + "text")]

def axis_map(root, which):
    """Pixel -> value of a linear axis from its tick labels (size 11 texts of the axis group)."""
    g = group(root, which + "-axis")
    ticks = []
    for t in g.iter(NS + "text"):
        if t.get("font-size") != "11": continue
        p = float(t.get("y")) - 4 if which == "y" else float(t.get("x"))
        ticks.append((p, float(t.text)))
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    return (lambda p: v0 + (p - p0) * (v1 - v0) / (p1 - p0)), abs((v1 - v0) / (p1 - p0))

def vertices(path):
    nums = [float(x) for x in re.findall(r"-?[0-9.]+", path.get("d"))]
    return list(zip(nums[0::2], nums[1::2]))

def check_axis_labels(root, name, want):
    for w in want:
        if not any(w in t for t in texts(root)): err(f"{name}: no text '{w}' (axis label or title)")

def check_lines(name, runs, field, want_paths=1, smooth=0, eval_source=False, mapped=True):
    root = svg(name)
    if root is None: return
    fy, yscale = axis_map(root, "y") if mapped else (None, 0)
    fx, xscale = axis_map(root, "x")
    for i, (logname, label) in enumerate(runs):
        g = group(root, f"series-{i}")
        if g is None: err(f"{name}: no series-{i}"); continue
        if (g.find(NS + "title").text or "") != label: err(f"{name}: series-{i} is titled {g.find(NS + 'title').text}, not {label}")
        paths = g.findall(NS + "path")
        if len(paths) != want_paths: err(f"{name}: series-{i} has {len(paths)} paths, want {want_paths}"); continue
        steps, evals = log(logname)
        recs = evals if eval_source else steps
        def get(r):
            m = re.match(r"(\w+)\[(\d+)\]$", field)
            return r[m.group(1)][int(m.group(2))] if m else r[field]
        xs, ys = [r["step"] for r in recs], [get(r) for r in recs]
        if smooth:
            ys = [sum(ys[max(0, k - smooth + 1):k + 1]) / len(ys[max(0, k - smooth + 1):k + 1]) for k in range(len(ys))]
        vs = vertices(paths[-1])  # the moving average is drawn last, over the raw values
        if len(vs) != len(recs): err(f"{name}: series-{i} has {len(vs)} vertices for {len(recs)} records"); continue
        for (px, py), x, y in zip(vs, xs, ys):
            if abs(fx(px) - x) > 0.15 * xscale: err(f"{name}: series-{i}: vertex x {px} reads {fx(px):.4f}, want step {x}")
            if mapped and abs(fy(py) - y) > 0.15 * yscale: err(f"{name}: series-{i}: vertex y {py} reads {fy(py):.5f}, want {y:.5f}")
    legend = group(root, "legend")
    if legend is None or texts(legend) != [l for _, l in runs]: err(f"{name}: legend {texts(legend) if legend is not None else None}")
    return root

runs = [("lf1", "lossfree"), ("none1", "none")]
r = check_lines("lines.svg", runs, "loss")
if r is not None: check_axis_labels(r, "lines.svg", ["training loss", "step"])
check_lines("smooth.svg", runs, "loss", want_paths=2, smooth=3)
r = check_lines("layer.svg", runs, "maxvio_layers[1]")
if r is not None: check_axis_labels(r, "layer.svg", ["MaxVio_batch, MoE layer 1"])
r = check_lines("evalppl.svg", runs, "val_ppl", eval_source=True, mapped=False)
if r is not None: check_axis_labels(r, "evalppl.svg", ["validation PPL (log scale)"])
check_lines("synth.svg", [("synth", "synth")], "loss")

# scatter: one circle per run at (maxvio_global, val_ppl) of its last eval
root = svg("scatter.svg")
if root is not None:
    fx, xs = axis_map(root, "x"); fy, ys = axis_map(root, "y")
    for i, (logname, label) in enumerate(runs):
        circles = group(root, f"series-{i}").findall(NS + "circle")
        e = log(logname)[1][-1]
        if len(circles) != 1: err(f"scatter.svg: series-{i} has {len(circles)} circles"); continue
        cx, cy = float(circles[0].get("cx")), float(circles[0].get("cy"))
        if abs(fx(cx) - e["maxvio_global"]) > 0.15 * xs or abs(fy(cy) - e["val_ppl"]) > 0.15 * ys:
            err(f"scatter.svg: {label} drawn at ({fx(cx):.4f}, {fy(cy):.4f}), want ({e['maxvio_global']:.4f}, {e['val_ppl']:.4f})")
        if label not in texts(group(root, f"series-{i}")): err(f"scatter.svg: point of {label} is not labelled")
    check_axis_labels(root, "scatter.svg", ["MaxVio_global", "validation PPL"])

# bars: series = labels, categories = ep_dp; the bar top is the mean of the last 20% of step records
root = svg("bars.svg")
if root is not None:
    fy, ys = axis_map(root, "y")
    for i, (label, logs) in enumerate([("lossfree", ["lf1", "lf2"]), ("none", ["none1", "none2"])]):
        rects = group(root, f"series-{i}").findall(NS + "rect")
        if len(rects) != 2: err(f"bars.svg: series {label} has {len(rects)} bars, want 2"); continue
        for rect, logname in zip(rects, logs):
            steps = log(logname)[0]
            k = max(1, math.ceil(0.2 * len(steps) - 1e-9))
            want = sum(r["maxvio_cb"] for r in steps[-k:]) / k
            top = float(rect.get("y"))
            if abs(fy(top) - want) > 0.15 * ys: err(f"bars.svg: {label} {logname} bar top reads {fy(top):.4f}, want {want:.4f}")
    cats = [t for t in texts(group(root, "x-axis"))]
    if cats[:2] != ["1", "2"]: err(f"bars.svg: categories {cats}")
    check_axis_labels(root, "bars.svg", ["MaxVio_computation-batch", "EP data-parallel size"])

# heatmap: one cell per (layer, expert) with the logged load; rows named by model layer
for name, logname, step, n_dense in [("heatmap.svg", "lf1", None, 1), ("heat5.svg", "lf1", 5, 1), ("hsynth.svg", "synth", None, 2)]:
    root = svg(name)
    if root is None: continue
    evals = log(logname)[1]
    e = evals[-1] if step is None else next(x for x in evals if x["step"] == step)
    loads = e["loads"]
    cells = [rc for rc in group(root, "cells").iter(NS + "rect")]
    want = [(l, x, loads[l][x]) for l in range(len(loads)) for x in range(len(loads[0]))]
    if len(cells) != len(want): err(f"{name}: {len(cells)} cells, want {len(want)}"); continue
    for rc, (l, x, n) in zip(cells, want):
        tip = rc.find(NS + "title").text
        m = re.match(r"layer (\d+), expert (\d+): (\d+) tokens", tip)
        if not m or (int(m.group(1)), int(m.group(2)), int(m.group(3))) != (l + n_dense, x, n):
            err(f"{name}: cell says '{tip}', want layer {l + n_dense} expert {x}: {n} tokens")
    rows = [t for t in texts(group(root, "y-axis")) if t.startswith("layer")]
    if rows != [f"layer {l + n_dense}" for l in range(len(loads))]: err(f"{name}: row labels {rows}")
    if group(root, "colorbar") is None: err(f"{name}: no colour bar")
    check_axis_labels(root, name, ["expert", "MoE layer", f"step {e['step']}"])

# table: header, separator, one row per run with the last eval and the tail means of maxvio_batch and loss
lines = open(f"{tmp}/table.md").read().splitlines()
if len(lines) != 2 + len(runs): err(f"table.md: {len(lines)} lines, want {2 + len(runs)}")
else:
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    for line, (logname, label) in zip(lines[2:], runs):
        row = dict(zip(head, [c.strip() for c in line.strip("|").split("|")]))
        steps, evals = log(logname)
        k = max(1, math.ceil(0.2 * len(steps) - 1e-9))
        want = {"run": label, "step": str(evals[-1]["step"]), "val loss": f"{evals[-1]['val_loss']:.4f}",
                "val PPL": f"{evals[-1]['val_ppl']:.3f}", "MaxVio_global": f"{evals[-1]['maxvio_global']:.4f}",
                "MaxVio_batch (last 20%)": f"{sum(r['maxvio_batch'] for r in steps[-k:]) / k:.4f}",
                "train loss (last 20%)": f"{sum(r['loss'] for r in steps[-k:]) / k:.4f}"}
        for kk, v in want.items():
            if row.get(kk) != v: err(f"table.md: {label} column '{kk}' is {row.get(kk)}, want {v}")

for e in errors: print("FAIL: " + e)
print(f"charts: {'all checks passed' if not errors else str(len(errors)) + ' problems'}")
sys.exit(1 if errors else 0)
EOF

# ---- bad input: exit 1 and a message naming the problem
expect_error() {  # expect_error NAME REGEX ARGS...
  local name=$1 re=$2; shift 2
  "$P" "$@" > "$TMP/out" 2> "$TMP/err"; local rc=$?
  local msg; msg=$(tr '\n' ' ' < "$TMP/err")
  if [ $rc -ne 1 ]; then bad "$name: expected exit 1, got $rc ($msg)"; return; fi
  echo "$msg" | grep -Eq -- "$re" || { bad "$name: message does not match /$re/: $msg"; return; }
  printf 'ok  %-28s %s\n' "$name" "$(echo "$msg" | cut -c1-140)"
}
{ head -n 2 "$TMP/lf1.jsonl"; echo '{"type":"step","step":3,"loss":'; tail -n +3 "$TMP/lf1.jsonl"; } > "$TMP/broken.jsonl"
{ head -n 2 "$TMP/lf1.jsonl"; echo '[1, 2, 3]'; } > "$TMP/array.jsonl"
{ cat "$TMP/lf1.jsonl"; printf '{"type":"step","step":11,"lo'; } > "$TMP/partial.jsonl"
grep -v '"type":"eval"' "$TMP/lf1.jsonl" > "$TMP/noeval.jsonl"
expect_error "missing file"           "nope\.jsonl: cannot open the log"       lines --y loss --out "$TMP/x.svg" "$TMP/nope.jsonl"
expect_error "line that is not JSON"  "broken\.jsonl:3: not a valid JSON record" lines --y loss --out "$TMP/x.svg" "$TMP/broken.jsonl"
expect_error "line that is an array"  "array\.jsonl:3: expected a JSON object"  lines --y loss --out "$TMP/x.svg" "$TMP/array.jsonl"
expect_error "unknown field"          "no step record has the field 'bogus'.*fields there: .*loss" lines --y bogus --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "index out of range"     "maxvio_layers\[7\] is out of range"    lines --y "maxvio_layers[7]" --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "unknown chart"          "unknown chart 'pie'"                     pie --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "unknown option"         "unknown option --colour"                lines --y loss --colour red --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "option of another chart" "--smooth does not apply to 'plot heatmap'" heatmap --smooth 3 --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "bad number"             "--smooth '0': .*expected an integer in \[1, "  lines --y loss --smooth 0 --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "missing --out"          "needs --out"                             lines --y loss "$TMP/lf1.jsonl"
expect_error "no log files"           "no log files given"                      lines --y loss --out "$TMP/x.svg"
expect_error "heatmap without eval"   "noeval\.jsonl: no eval record"           heatmap --out "$TMP/x.svg" "$TMP/noeval.jsonl"
expect_error "heatmap at a missing step" "no eval record at step 7 \(eval steps: 5 10\)" heatmap --step 7 --out "$TMP/x.svg" "$TMP/lf1.jsonl"
expect_error "output in a missing dir" "no/dir/x\.svg: cannot open for writing" lines --y loss --out "$TMP/no/dir/x.svg" "$TMP/lf1.jsonl"
# A log that is still being written: its incomplete last line is skipped with a warning.
"$P" lines --y loss --out "$TMP/partial.svg" "$TMP/partial.jsonl" 2> "$TMP/err" || bad "a log with an incomplete last line was refused"
grep -q "skipping the incomplete last line" "$TMP/err" || bad "no warning for the incomplete last line"

[ $fail -eq 0 ] && echo "check_plot: PASS" || echo "check_plot: FAIL"
exit $fail
