#!/usr/bin/env bash
# Installs what the tests need, by Debian package name: doctest (the C++ test framework),
# python3-torch + OpenBLAS (the independent PyTorch reference), unicode-data (tokenizer tables),
# nodejs/npm for the tokenizer oracles. Skips whatever is already present.
set -euo pipefail
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
echo "test dependencies: ok"
