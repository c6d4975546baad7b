#!/usr/bin/env bash
# The memory estimate (ref/footprint.h), printed in train's banner before anything is allocated,
# against the peak resident memory the kernel measured for the whole run (ru_maxrss of the child,
# read by Python's resource module: not lfmoe's own accounting). Runs where the model's memory
# dominates: parameters with a checkpoint save, activations (batch x seq), a resume (the load's
# copies), expert choice. Each estimate must lie within [0.9, 1.35] x the measured peak: never far
# below (it would let a run that cannot fit start), and not so far above that it refuses runs
# that fit. (The fixed allowances of the estimate, ~50 MiB, weigh most in these small runs.)
# Also: a run far beyond memory is refused before allocating; with --ignore-memory-limit it gets
# past that check and fails at the allocation with the estimate in the message (only where the
# kernel refuses impossible allocations, vm.overcommit_memory = 0, so that nothing grows).
. "$(dirname "$0")/lib.sh"  # set -u, the repository root, PY, BUILD, require_built, bad, ...
require_built "$BUILD/train"
require_tiny_data
passive_threads
make_tmp

cat > "$TMP/rss.py" <<'PYEOF'
import re, resource, subprocess, sys
lo, hi = float(sys.argv[1]), float(sys.argv[2])
p = subprocess.run(sys.argv[3:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
m = re.search(r'memory about ([0-9.]+) (GiB|MiB)', p.stdout)
if p.returncode != 0 or not m:
    print(f"run failed (exit {p.returncode}) or printed no estimate: {p.stderr[-300:]}"); sys.exit(1)
est = float(m.group(1)) * (2**30 if m.group(2) == 'GiB' else 2**20)
r = est / peak
print(f"estimate {est / 2**20:7.1f} MiB  peak RSS {peak / 2**20:7.1f} MiB  ratio {r:.3f}")
sys.exit(0 if lo <= r <= hi else 1)
PYEOF

T="--preset tiny --data $DATA --threads 2 --steps 2"
CASES=(
  "params + save|--experts 64 --expert-hidden 256 --save $TMP/f.st"
  "resume + save|--experts 64 --expert-hidden 256 --resume $TMP/f.st --steps 4 --save $TMP/g.st"
  "activations|--batch 32 --seq 128 --width 128 --experts 16"
  "vocab 4096|--vocab 4096 --batch 16 --seq 128"
  "expert choice|--batch 8 --seq 512 --routing expert --balance none"
)
for c in "${CASES[@]}"; do
  name=${c%%|*}; args=${c#*|}
  printf '%-16s ' "$name"
  $PY "$TMP/rss.py" 0.9 1.35 "$BUILD/train" $T $args || bad "$name: the estimate is outside [0.9, 1.35] x the peak RSS"
done

HUGE="--layers 100000 --experts 64 --expert-hidden 4096"  # ~20 TB per arena
out=$("$BUILD/train" $T $HUGE 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "this run needs about .* GiB.*MemAvailable" ||
  bad "a run far beyond memory was not refused with its size (exit $rc): $out"
if [ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null)" = 0 ]; then
  out=$("$BUILD/train" $T $HUGE --ignore-memory-limit 2>&1); rc=$?
  [ $rc -eq 1 ] && echo "$out" | grep -q "out of memory.*the run needs about .* GiB" ||
    bad "--ignore-memory-limit: expected the allocation to fail naming the estimate (exit $rc): $out"
else
  echo "(--ignore-memory-limit allocation check skipped: vm.overcommit_memory is not 0)"
fi

[ $fail -eq 0 ] && echo "check_footprint: PASS" || echo "check_footprint: FAIL"
exit $fail
