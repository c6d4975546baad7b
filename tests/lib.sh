# tests/lib.sh — the preamble that the tests/check_*.sh scripts share. Each sources it first:
#   . "$(dirname "$0")/lib.sh"
# Not executable and not named check_*: tests/run_all.sh runs every executable tests/check_*.sh as
# a test, and this file is none.
#
# Sourcing it stops the script on an unset variable (set -u), moves to the repository root (the
# scripts use paths from there), and sets
#   PY     the system python3: the test dependencies are Debian packages (make deps), not a venv
#   BUILD  the build directory under test: build, or another one (make BUILD=DIR) with BUILD=DIR
#   fail   0; bad() sets it to 1
# The functions below do the rest, where a script needs it.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PY=/usr/bin/python3
BUILD=${BUILD:-build}

# require_built TARGET...: brings the targets up to date (e.g. "$BUILD/train" "$BUILD/plot"), or
# fails the check.
require_built() {
  make -s BUILD="$BUILD" "$@" >/dev/null || { echo "FAIL: make $* failed"; exit 1; }
}

# require_tiny_data: DATA = the raw-byte training fixture (vocabulary 256), or fails the check.
require_tiny_data() {
  DATA=tests/fixtures/tiny.txt
  [ -f "$DATA" ] || { echo "FAIL: $DATA missing (the raw-byte training fixture)"; exit 1; }
}

# require_torch: fails the check unless $PY has torch (the independent reference of the torch checks).
require_torch() {
  $PY -c 'import torch' 2>/dev/null || { echo "FAIL: python3-torch missing: run make deps (installs Debian's python3-torch)"; exit 1; }
}

# passive_threads: OpenMP threads sleep when idle instead of spinning. The test machine is shared
# (and run_all.sh runs one check after another): spinning would only slow the other processes.
passive_threads() { export OMP_WAIT_POLICY=PASSIVE; }

# make_tmp: TMP = a new private directory, removed when the script exits.
make_tmp() {
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
}

# bad MESSAGE...: reports a failed check and goes on (the script ends with exit $fail), so that one
# run lists every failure.
fail=0
bad() { echo "FAIL: $*"; fail=1; }
