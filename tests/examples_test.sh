#!/usr/bin/env bash
# The examples users copy from must build and run: the C training loop and C++ on checkpoints
# (examples/train_numpy.py is run by tests/python/test_train_loop.py).
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
# own_encoder: the host's Linear + ReLU in front of a model.arch none projector; the loss of
# each step is printed, and 8 steps must lower it.
run "own_encoder" "$top/$build/examples/own_encoder" 8
[[ $(grep -c '^step [1-8]: loss [0-9.]* (on-diag' "$tmp/out.txt") -eq 8 ]] \
  && awk '/^step 1:/ {a = $4} /^step 8:/ {b = $4} END {exit !(b < a)}' "$tmp/out.txt" \
  || { echo "examples: FAIL own_encoder output (8 steps, a lower loss at the end)"; cat "$tmp/out.txt"; exit 1; }
# cxx_embed builds whatever model a checkpoint records: train_loop's small one, and the
# default architecture of `barlow pretrain` (one step on 32 synthetic Fashion-MNIST images).
# Each printed model.* option must be the run's own, and the widths must follow from them.
cxx_check() { # what, checkpoint, feature-dim, embed-dim, then name=value pairs the output must show
  local what=$1 ckpt=$2 fdim=$3 edim=$4; shift 4
  run "cxx_embed ($what)" "$top/$build/examples/cxx_embed" "$ckpt"
  local head; head=$(head -1 "$tmp/out.txt")
  for kv in "$@"; do [[ " $head " == *" $kv "* ]] || { echo "examples: FAIL cxx_embed ($what) shows no $kv"; cat "$tmp/out.txt"; exit 1; }; done
  grep -q "^model: [0-9]* tensors, $fdim-d features, $edim-d embeddings$" "$tmp/out.txt" \
    && [[ $(grep -c "^image [0-7]: $fdim-d feature, norm [0-9.]*$" "$tmp/out.txt") -eq 8 ]] \
    && grep -q '^training step on 8 images x 2 views: loss [0-9.]* (on-diag' "$tmp/out.txt" \
    || { echo "examples: FAIL cxx_embed ($what) output"; cat "$tmp/out.txt"; exit 1; }
}
cxx_check "train_loop's checkpoint" "$tmp/train_loop.safetensors" 64 256 \
  model.widths=16-32-64 model.projector=256-256 aug.view1.size=32
run "cxx_embed (no checkpoint: built-in model)" "$top/$build/examples/cxx_embed"
"${PYTHON:-python3}" - "$tmp/fm" <<'PY'
import gzip, os, struct, sys
d = sys.argv[1]; os.makedirs(d)
for split, n in (("train", 32), ("t10k", 16)):
    with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        f.write(bytes((x * 9 + y * (i % 10)) % 256 for i in range(n) for y in range(28) for x in range(28)))
    with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
PY
run "barlow pretrain (default architecture, 1 step)" env BT_NUM_THREADS="${BT_NUM_THREADS:-2}" \
  "$top/$build/examples/barlow" pretrain --data "$tmp/fm" --batch 16 --steps 1 --no-eval \
  --knn-bank 16 --knn-test 16 --progress lines --out "$tmp/pretrain"
opts=$(grep '^model\.' "$tmp/pretrain/config.txt") # the options the run chose: all must come back
grep -q '^model\.widths=' <<<"$opts" && grep -q '^model\.projector=' <<<"$opts" \
  || { echo "examples: FAIL pretrain's config.txt lacks model.widths or model.projector"; exit 1; }
fdim=$(sed -n 's/^model\.widths=\(.*-\)*//p' <<<"$opts")
grep -qx 'model\.block=bottleneck' <<<"$opts" && fdim=$((fdim * 4))
edim=$(sed -n 's/^model\.projector=\(.*-\)*//p' <<<"$opts")
# shellcheck disable=SC2086 # one name=value per word
cxx_check "barlow pretrain's default checkpoint" "$tmp/pretrain/checkpoint.safetensors" "$fdim" "$edim" $opts
echo "examples: $pass passed, 0 failed (train_loop, own_encoder, cxx_embed x3, barlow pretrain)"
