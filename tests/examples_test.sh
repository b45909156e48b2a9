#!/usr/bin/env bash
# The examples users copy from must build and run: C training loop, C++ and Python ctypes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
run() { local what=$1; shift; if "$@" > "$tmp/out.txt" 2>&1; then pass=$((pass + 1)); else
  echo "examples: FAIL $what"; cat "$tmp/out.txt"; exit 1; fi; }
pushd "$tmp" >/dev/null
run "train_loop" "$top/$build/examples/train_loop" 3
popd >/dev/null
[[ -s "$tmp/train_loop.safetensors" ]] || { echo "examples: FAIL train_loop wrote no checkpoint"; exit 1; }
run "cxx_embed (resuming the checkpoint)" "$top/$build/examples/cxx_embed"
run "python_ctypes" "${PYTHON:-python3}" "$top/examples/python_ctypes.py" "$top/$build/libbarlow.so"
grep -q "errors arrive as exceptions" "$tmp/out.txt" || { echo "examples: FAIL python output"; exit 1; }
echo "examples: $pass passed, 0 failed (train_loop, cxx_embed, python_ctypes)"
