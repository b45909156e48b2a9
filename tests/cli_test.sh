#!/usr/bin/env bash
# The `barlow` command end to end, on small synthetic datasets in the three
# formats (made here with Python's standard library, so no dataset package is
# needed): pretrain, exact resume (after --max-steps and after Ctrl-C), eval,
# embed (.npy header), finetune (subsets, both inits, determinism), and the
# bad-input cases (one-line error naming the file or option, exit status 2, an
# existing checkpoint left untouched).
#   bash tests/cli_test.sh            (BUILD=build by default; `make` first)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
bin="$top/$build/examples/barlow"
py=${PYTHON:-python3}
[[ -x "$bin" ]] || { echo "cli: $bin not built (run make)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export BT_NUM_THREADS=${BT_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
pass=0
failed=0
ok() { pass=$((pass + 1)); }
bad() { failed=$((failed + 1)); echo "cli: FAIL $*"; }

# ---- synthetic data: 10 classes of noisy bars, as Fashion-MNIST idx (gzip), CIFAR-10 batches, PNG folders
"$py" - "$tmp" <<'EOF'
import gzip, os, random, struct, sys, zlib
out = sys.argv[1]
rng = random.Random(7)
def image(c, side, ch):
    px = bytearray(side * side * ch)
    for y in range(side):
        for x in range(side):
            on = (x // 3 + c) % 10 < 3 if c % 2 else (y // 3 + c) % 10 < 3
            v = (200 if on else 30) + rng.randint(-25, 25)
            for k in range(ch):
                px[(y * side + x) * ch + k] = max(0, min(255, v + 20 * k))
    return bytes(px)
def fmnist(d, split, n):
    os.makedirs(d, exist_ok=True)
    labels = [i % 10 for i in range(n)]
    with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        for c in labels:
            f.write(image(c, 28, 1))
    with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))
fmnist(f"{out}/fm", "train", 160)
fmnist(f"{out}/fm", "t10k", 60)
os.makedirs(f"{out}/cifar", exist_ok=True)
for name, n in [("data_batch_%d.bin" % b, 24) for b in range(1, 6)] + [("test_batch.bin", 30)]:
    with open(f"{out}/cifar/{name}", "wb") as f:
        for i in range(n):
            c = i % 10
            hwc = image(c, 32, 3)
            f.write(bytes([c]) + bytes(hwc[k::3][p] for k in range(3) for p in range(1024)))
def png(path, side, rgb):
    raw = b"".join(b"\0" + rgb[y * side * 3:(y + 1) * side * 3] for y in range(side))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for c in range(3):
    os.makedirs(f"{out}/folder/class{c}", exist_ok=True)
    for i in range(20):
        png(f"{out}/folder/class{c}/img{i:02d}.png", 20 + i % 5, image(c, 20 + i % 5, 3))
EOF
[[ -f "$tmp/fm/train-images-idx3-ubyte.gz" ]] || { echo "cli: FAIL could not make the synthetic data"; exit 1; }

tiny=(--set model.widths=4-8 --set model.blocks=1-1 --set model.projector=16-16 --batch 16
      --knn-bank 100 --knn-test 40 --probe-epochs 3 --progress lines)
fm=(--data "$tmp/fm")

# ---- pretrain, then the files a run leaves
"$bin" pretrain "${fm[@]}" "${tiny[@]}" --epochs 2 --eval --out "$tmp/run" >"$tmp/run.out" 2>&1
rc=$?
[[ $rc -eq 0 ]] && ok || { bad "pretrain exit $rc"; cat "$tmp/run.out"; }
for f in checkpoint.safetensors config.txt run.txt log.jsonl loss.png correlation.png; do
  [[ -s "$tmp/run/$f" ]] && ok || bad "pretrain left no $f"
done
for f in loss.png correlation.png; do
  [[ $(head -c 8 "$tmp/run/$f" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] && ok || bad "$f is not a PNG"
done
n_steps=$(grep -c '"event":"step"' "$tmp/run/log.jsonl")
[[ $n_steps -eq 20 ]] && ok || bad "log has $n_steps step records, want 20 (2 epochs of 160/16)"
[[ $(grep -c '"event":"epoch".*"knn_top1"' "$tmp/run/log.jsonl") -eq 2 ]] && ok || bad "log lacks 2 epoch kNN records"
grep -q '"event":"eval".*"trained".*"random".*"pixels"' "$tmp/run/log.jsonl" && ok || bad "log lacks the eval record"
grep -q '^final evaluation (--no-eval skips it): about [0-9]* s of encoding 160 + 60 images twice' "$tmp/run.out" \
  && ok || { bad "pretrain did not say what the evaluation would do"; grep -i evaluat "$tmp/run.out"; }
grep -q '^Barlow Twins encoder .*%' "$tmp/run.out" && grep -q '^random-init encoder .*%' "$tmp/run.out" \
  && grep -q '^raw pixels .*%' "$tmp/run.out" && ok || bad "pretrain did not print the three probe rows"

# ---- a run under EVAL_MIN_STEPS (100) is not evaluated unless --eval asks
"$bin" pretrain "${fm[@]}" "${tiny[@]}" --steps 5 --out "$tmp/short" >"$tmp/short.out" 2>&1 \
  && grep -q '^no evaluation after 5 steps (under 100; --eval asks for it); later: barlow eval --checkpoint' \
     "$tmp/short.out" && ! grep -q '"event":"eval"' "$tmp/short/log.jsonl" && ok \
  || { bad "a 5-step run evaluated, or failed"; cat "$tmp/short.out"; }

# ---- --steps fixes the schedule length exactly (not a multiple of the epoch)
"$bin" pretrain "${fm[@]}" "${tiny[@]}" --steps 7 --no-eval --out "$tmp/steps" >"$tmp/steps.out" 2>&1 \
  && ok || bad "--steps run failed: $(tail -1 "$tmp/steps.out")"
n_steps=$(grep -c '"event":"step"' "$tmp/steps/log.jsonl")
[[ $n_steps -eq 7 ]] && ok || bad "--steps 7 logged $n_steps steps"
grep -q '^total_steps=7$' "$tmp/steps/run.txt" && ok || bad "--steps 7 not recorded in run.txt"

# ---- exact resume: an uninterrupted reference, a --max-steps stop, a Ctrl-C stop
ref=(pretrain "${fm[@]}" "${tiny[@]}" --epochs 6 --no-eval)
"$bin" "${ref[@]}" --out "$tmp/ref" >"$tmp/ref.out" 2>&1 || bad "reference run failed: $(tail -1 "$tmp/ref.out")"
"$bin" "${ref[@]}" --out "$tmp/stop" --max-steps 13 >"$tmp/stop.out" 2>&1 && ok || bad "--max-steps run failed"
grep -q 'stopped (--max-steps) at step 13' "$tmp/stop.out" && ok || bad "--max-steps did not stop at 13"
"$bin" pretrain --out "$tmp/stop" --resume --no-eval >>"$tmp/stop.out" 2>&1 && ok || bad "resume failed: $(tail -1 "$tmp/stop.out")"
cmp -s "$tmp/ref/checkpoint.safetensors" "$tmp/stop/checkpoint.safetensors" && ok \
  || bad "resumed after --max-steps: checkpoint differs from the uninterrupted run"
diff <(grep -o '"step":[0-9]*,"epoch":[0-9]*,"loss":[^,]*' "$tmp/ref/log.jsonl") \
     <(grep -o '"step":[0-9]*,"epoch":[0-9]*,"loss":[^,]*' "$tmp/stop/log.jsonl") >/dev/null && ok \
  || bad "resumed log's losses differ from the uninterrupted run"
# resuming at another CPU level says so, once
grep -q '^note: the checkpoint was trained' "$tmp/stop.out" && bad "a same-level resume printed the level note" || ok
"$bin" "${ref[@]}" --out "$tmp/lvl" --max-steps 3 >"$tmp/lvl0.out" 2>&1
level=$(sed -n 's/^barlow: cpu \([a-z0-9]*\) .*/\1/p' "$tmp/lvl0.out" | head -1)
BT_CPU=generic "$bin" pretrain --out "$tmp/lvl" --resume --no-eval --max-steps 4 >"$tmp/lvl.out" 2>&1 || bad "generic resume failed"
want=$([[ $level == generic ]] && echo 0 || echo 1) # an aarch64 build has only the generic level
[[ -n $level && $(grep -c "^note: the checkpoint was trained at CPU level $level and continues at generic" \
   "$tmp/lvl.out") -eq $want ]] && ok || { bad "resume at another level: want $want note(s) (level '$level')"; cat "$tmp/lvl.out"; }

"$bin" "${ref[@]}" --out "$tmp/int" >"$tmp/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q '"event":"step"' "$tmp/int/log.jsonl" 2>/dev/null && break
  sleep 0.05
done
kill -INT $pid
wait $pid
rc=$?
if [[ $rc -eq 130 ]]; then
  ok
  grep -q '"event":"interrupted"' "$tmp/int/log.jsonl" && ok || bad "Ctrl-C not logged"
  "$bin" pretrain --out "$tmp/int" --resume --no-eval >>"$tmp/int.out" 2>&1 && ok || bad "resume after Ctrl-C failed"
  cmp -s "$tmp/ref/checkpoint.safetensors" "$tmp/int/checkpoint.safetensors" && ok \
    || bad "resumed after Ctrl-C: checkpoint differs from the uninterrupted run"
elif [[ $rc -eq 0 ]]; then
  echo "cli: note: the run finished before Ctrl-C arrived; interrupt case not exercised"
else
  bad "Ctrl-C: exit $rc, want 130"; cat "$tmp/int.out"
fi

# ---- --resume with a new length extends a finished run (the schedule of the new length)
cp -r "$tmp/run" "$tmp/ext"
"$bin" pretrain --out "$tmp/ext" --resume --epochs 3 --no-eval >"$tmp/ext.out" 2>&1 \
  && grep -q '^extending the run from 20 to 30 steps' "$tmp/ext.out" \
  && [[ $(grep -c '"event":"step"' "$tmp/ext/log.jsonl") -eq 30 ]] && grep -q '^total_steps=30$' "$tmp/ext/run.txt" \
  && grep -q '^optim.total_steps=30$' "$tmp/ext/config.txt" && ok || { bad "--resume --epochs 3"; cat "$tmp/ext.out"; }
"$bin" pretrain --out "$tmp/ext" --resume --epochs 2 >/dev/null 2>"$tmp/ext.err"
[[ $? -eq 2 ]] && grep -q 'a new length of 20 steps does not extend it' "$tmp/ext.err" && ok \
  || { bad "--resume to a shorter length"; cat "$tmp/ext.err"; }

# ---- eval and embed
# a checkpoint copied alone says what model it holds
mkdir -p "$tmp/alone" && cp "$tmp/run/checkpoint.safetensors" "$tmp/alone/"
"$bin" eval --checkpoint "$tmp/alone/checkpoint.safetensors" --data "$tmp/fm" --probe-epochs 1 --no-baselines \
  >"$tmp/alone.out" 2>&1 && grep -q '^Barlow Twins encoder .*%' "$tmp/alone.out" && ok \
  || { bad "eval of a checkpoint without its config.txt"; cat "$tmp/alone.out"; }
"$bin" embed --checkpoint "$tmp/alone/checkpoint.safetensors" --data "$tmp/fm" --split test --out "$tmp/alone/f.npy" \
  >"$tmp/alone_embed.out" 2>&1 && [[ -s "$tmp/alone/f.npy" ]] && ok \
  || { bad "embed of a checkpoint without its config.txt"; cat "$tmp/alone_embed.out"; }
"$bin" eval --checkpoint "$tmp/run/checkpoint.safetensors" --probe-epochs 3 --no-baselines >"$tmp/eval.out" 2>&1 \
  && grep -q '^Barlow Twins encoder .*%' "$tmp/eval.out" && ok || { bad "eval"; cat "$tmp/eval.out"; }
"$bin" embed --checkpoint "$tmp/run/checkpoint.safetensors" --split test --out "$tmp/f.npy" --labels "$tmp/l.npy" \
  >"$tmp/embed.out" 2>&1 && ok || { bad "embed"; cat "$tmp/embed.out"; }
"$py" - "$tmp/f.npy" "$tmp/l.npy" <<'EOF' && ok || bad "embed: .npy files malformed"
import ast, os, struct, sys
def read(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x93NUMPY\x01\x00", "magic"
    n = struct.unpack("<H", b[8:10])[0]
    assert (10 + n) % 64 == 0 and b[10 + n - 1:10 + n] == b"\n", "header padding"
    h = ast.literal_eval(b[10:10 + n].decode("latin1"))
    count = 1
    for s in h["shape"]:
        count *= s
    assert len(b) == 10 + n + 4 * count, "data size"
    return h
f, l = read(sys.argv[1]), read(sys.argv[2])
assert f["descr"] == "<f4" and not f["fortran_order"] and f["shape"] == (60, 8), f
assert l["descr"] == "<i4" and l["shape"] == (60,), l
EOF

# ---- finetune: from the pretrain checkpoint and from scratch on the same class-balanced subset
ftck=(finetune --checkpoint "$tmp/run/checkpoint.safetensors" --epochs 2 --batch 16)
"$bin" "${ftck[@]}" --train-percent 100 --out "$tmp/ft" >"$tmp/ft.out" 2>&1 && ok || { bad "finetune"; cat "$tmp/ft.out"; }
for f in checkpoint.safetensors classifier.safetensors config.txt run.txt log.jsonl; do
  [[ -s "$tmp/ft/$f" ]] && ok || bad "finetune left no $f"
done
grep -q '"event":"subset","count":160,"per_class":\[16,16,16,16,16,16,16,16,16,16\]' "$tmp/ft/log.jsonl" && ok \
  || bad "finetune 100 %: log lacks the whole training split"
[[ $(grep -c '"event":"epoch".*"test_top1":[0-9.]*,"test_top5"' "$tmp/ft/log.jsonl") -eq 2 ]] \
  && grep -q '"event":"done","best_top1":[0-9.]*,"best_top5":[0-9.]*,"best_epoch":[12],"last_top1"' "$tmp/ft/log.jsonl" \
  && grep -q '^fine-tuning done: best top-1 [0-9.]*% (top-5 [0-9.]*%) at epoch [12], last top-1' "$tmp/ft.out" \
  && ok || { bad "finetune: no per-epoch test accuracy or best/last summary"; cat "$tmp/ft.out"; }
# the fine-tuned encoder is a checkpoint the other commands read
"$bin" eval --checkpoint "$tmp/ft/checkpoint.safetensors" --probe-epochs 1 --no-baselines >"$tmp/fteval.out" 2>&1 \
  && grep -q '^Barlow Twins encoder .*%' "$tmp/fteval.out" && ok || { bad "eval of a fine-tuned checkpoint"; cat "$tmp/fteval.out"; }
"$py" - "$tmp/ft/classifier.safetensors" <<'EOF3' && ok || bad "finetune: classifier.safetensors malformed"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["fc.weight"]["shape"] == [10, 8] and h["fc.bias"]["shape"] == [10], h
assert len(b) == 8 + n + 4 * (10 * 8 + 10)
EOF3
# 10 %: 1.6 images per class rounds to 2 (at least 1): 20 of 160, the same ones for both inits
"$bin" "${ftck[@]}" --train-percent 10 --out "$tmp/ft10" >"$tmp/ft10.out" 2>&1 \
  && "$bin" "${ftck[@]}" --train-percent 10 --from-scratch --out "$tmp/ft10s" >"$tmp/ft10s.out" 2>&1 \
  && grep -q '"event":"subset","count":20,"per_class":\[2,2,2,2,2,2,2,2,2,2\]' "$tmp/ft10/log.jsonl" \
  && grep -q '^subset per class: 2 2 2 2 2 2 2 2 2 2 (images hash [0-9a-f]*)$' "$tmp/ft10.out" \
  && grep -q '"init":"scratch"' "$tmp/ft10s/log.jsonl" && ok || { bad "finetune 10 %"; cat "$tmp/ft10.out" "$tmp/ft10s.out"; }
subset_of() { sed -n 's/.*"event":"subset",\(.*\)/\1/p' "$1"; }
[[ -n $(subset_of "$tmp/ft10/log.jsonl") && $(subset_of "$tmp/ft10/log.jsonl") == "$(subset_of "$tmp/ft10s/log.jsonl")" ]] \
  && ok || bad "finetune: the checkpoint and the scratch run chose different subsets"
cmp -s "$tmp/ft10/checkpoint.safetensors" "$tmp/ft10s/checkpoint.safetensors" && bad "finetune --from-scratch ignored" || ok
# from scratch without a checkpoint: the preset's network with --set, the same subset
"$bin" finetune "${fm[@]}" --from-scratch --set model.widths=4-8 --set model.blocks=1-1 --set model.projector=16-16 \
  --epochs 2 --batch 16 --train-percent 10 --out "$tmp/ft10p" >"$tmp/ft10p.out" 2>&1 \
  && [[ $(subset_of "$tmp/ft10p/log.jsonl") == "$(subset_of "$tmp/ft10/log.jsonl")" ]] && ok \
  || { bad "finetune --from-scratch without a checkpoint"; cat "$tmp/ft10p.out"; }
# determinism: the same run twice gives the same numbers and the same fine-tuned weights
"$bin" "${ftck[@]}" --train-percent 10 --out "$tmp/ft10b" >"$tmp/ft10b.out" 2>&1 \
  && diff <(grep '"event":"\(epoch\|done\)"' "$tmp/ft10/log.jsonl" | sed 's/"seconds":[0-9.]*//') \
          <(grep '"event":"\(epoch\|done\)"' "$tmp/ft10b/log.jsonl" | sed 's/"seconds":[0-9.]*//') >/dev/null \
  && cmp -s "$tmp/ft10/checkpoint.safetensors" "$tmp/ft10b/checkpoint.safetensors" && ok \
  || bad "finetune: two identical runs differ"
# another --subset-seed picks other images, still balanced
"$bin" "${ftck[@]}" --train-percent 10 --subset-seed 3 --epochs 1 >"$tmp/ft10c.out" 2>&1 \
  && grep -q '^subset per class: 2 2 2 2 2 2 2 2 2 2 (images hash [0-9a-f]*)$' "$tmp/ft10c.out" \
  && [[ $(grep -o 'images hash [0-9a-f]*' "$tmp/ft10c.out") != $(grep -o 'images hash [0-9a-f]*' "$tmp/ft10.out") ]] \
  && ok || bad "finetune --subset-seed 3"

# ---- the other two dataset formats
"$bin" pretrain --data "$tmp/cifar" "${tiny[@]}" --epochs 1 --no-eval --set model.arch=resnet --set model.projector=16 --out "$tmp/c10" \
  >"$tmp/c10.out" 2>&1 && grep -q 'pretraining cifar10: 120 train / 30 test' "$tmp/c10.out" && ok \
  || { bad "cifar10 pretrain"; cat "$tmp/c10.out"; }
"$bin" pretrain --data "$tmp/folder" "${tiny[@]}" --epochs 1 --set aug.size=16 --set model.arch=resnet \
  --set model.stem=cifar --probe-epochs 2 --eval --out "$tmp/fold" >"$tmp/fold.out" 2>&1 \
  && grep -q 'pretraining folder: 54 train / 6 test' "$tmp/fold.out" && ok || { bad "folder pretrain"; cat "$tmp/fold.out"; }

# a folder without class sub-folders: pretraining succeeds, no kNN and no evaluation
mkdir -p "$tmp/flat" && for c in 0 1 2; do for i in 00 01 02 03; do
  cp "$tmp/folder/class$c/img$i.png" "$tmp/flat/c$c-$i.png"; done; done
"$bin" pretrain --data "$tmp/flat" "${tiny[@]}" --batch 4 --epochs 1 --eval --set aug.size=16 --set model.arch=resnet \
  --set model.stem=cifar --out "$tmp/flat_run" >"$tmp/flat.out" 2>&1 \
  && grep -q '^epoch 1 done: mean loss [0-9.e-]*, [0-9]* s, checkpoint' "$tmp/flat.out" \
  && grep -q '^no evaluation: .*flat has no labels' "$tmp/flat.out" && ! grep -q 'kNN' "$tmp/flat.out" \
  && ! grep -q 'knn_top1' "$tmp/flat_run/log.jsonl" && ok || { bad "unlabelled folder run"; cat "$tmp/flat.out"; }

# ---- bad input: exit 2, one line naming the culprit, checkpoint untouched
sum_before=$(sha256sum "$tmp/run/checkpoint.safetensors")
expect2() { # name, pattern the message must contain, command...
  local name=$1 pat=$2
  shift 2
  "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
  local rc=$? lines
  lines=$(wc -l <"$tmp/bad.err")
  if [[ $rc -eq 2 && $lines -eq 1 ]] && grep -q -- "$pat" "$tmp/bad.err"; then ok; else
    bad "$name: exit $rc, $lines stderr lines, want 2 and one line with '$pat':"; cat "$tmp/bad.err"; fi
}
expect2 "missing dataset" "$tmp/nope" "$bin" pretrain --data "$tmp/nope" --dataset fmnist --out "$tmp/x1"
mkdir -p "$tmp/nolab" && cp "$tmp/fm/train-images-idx3-ubyte.gz" "$tmp/nolab/"
expect2 "missing labels file" "train-labels-idx1-ubyte" "$bin" pretrain --data "$tmp/nolab" --dataset fmnist --out "$tmp/x2"
mkdir -p "$tmp/trunc" && cp "$tmp/fm/train-labels-idx1-ubyte.gz" "$tmp/fm/t10k"* "$tmp/trunc/"
head -c 20000 "$tmp/fm/train-images-idx3-ubyte.gz" >"$tmp/trunc/train-images-idx3-ubyte.gz"
expect2 "truncated gzip" "trunc/train-images-idx3-ubyte.gz" "$bin" pretrain --data "$tmp/trunc" --dataset fmnist --out "$tmp/x3"
mkdir -p "$tmp/garb" && cp "$tmp/fm/"* "$tmp/garb/" && head -c 5000 /dev/urandom >"$tmp/garb/train-labels-idx1-ubyte.gz"
expect2 "garbage labels" "garb/train-labels-idx1-ubyte.gz" "$bin" pretrain --data "$tmp/garb" --dataset fmnist --out "$tmp/x4"
head -c 3000 "$tmp/cifar/data_batch_1.bin" >"$tmp/short.bin"
expect2 "corrupt cifar batch" "short.bin" "$bin" pretrain --data "$tmp/short.bin" --dataset cifar10 --out "$tmp/x5"
expect2 "unknown flag" "--bogus" "$bin" pretrain --bogus
expect2 "unknown option" "model.nope" "$bin" pretrain "${fm[@]}" --set model.nope=1 --out "$tmp/x6"
expect2 "misspelt option" "did you mean 'loss.lambda'" "$bin" pretrain "${fm[@]}" --set loss.lamda=1 --out "$tmp/x6"
expect2 "bad option value" "loss.lambda" "$bin" pretrain "${fm[@]}" --set loss.lambda=-1 --out "$tmp/x7"
expect2 "two schedule lengths" "--steps" "$bin" pretrain "${fm[@]}" --steps 5 --epochs 1 --out "$tmp/x10"
expect2 "bad flag value" "--epochs" "$bin" pretrain "${fm[@]}" --epochs ten --out "$tmp/x8"
expect2 "bad config line" "bad.cfg:2" bash -c "printf 'loss.lambda=0.1\nmodel.arch=vgg\n' >'$tmp/bad.cfg'; \
  '$bin' pretrain --data '$tmp/fm' --config '$tmp/bad.cfg' --out '$tmp/x9'"
expect2 "other architecture (eval)" "checkpoint" "$bin" eval --checkpoint "$tmp/run/checkpoint.safetensors" \
  --set model.widths=4-16
expect2 "finetune: bad percent" "--train-percent: '5'" "$bin" finetune --checkpoint "$tmp/run/checkpoint.safetensors" \
  --train-percent 5
expect2 "finetune: no percent" "--train-percent" "$bin" finetune --checkpoint "$tmp/run/checkpoint.safetensors"
expect2 "finetune: no checkpoint" "--from-scratch" "$bin" finetune --train-percent 1
expect2 "finetune: other architecture" "checkpoint" "$bin" finetune --checkpoint "$tmp/run/checkpoint.safetensors" \
  --train-percent 10 --set model.widths=4-16
expect2 "finetune: no such checkpoint" "$tmp/nope.safetensors" "$bin" finetune --checkpoint "$tmp/nope.safetensors" \
  --train-percent 10
expect2 "finetune: pretrain flag" "--steps" "$bin" finetune --checkpoint "$tmp/run/checkpoint.safetensors" \
  --train-percent 10 --steps 3
expect2 "finetune flag elsewhere" "--lr-backbone" "$bin" eval --checkpoint "$tmp/run/checkpoint.safetensors" \
  --lr-backbone 0.1
expect2 "finetune: existing output" "choose another --out" "$bin" finetune --checkpoint \
  "$tmp/run/checkpoint.safetensors" --train-percent 10 --out "$tmp/ft"
expect2 "existing checkpoint" "--resume" "$bin" pretrain "${fm[@]}" "${tiny[@]}" --epochs 1 --out "$tmp/run"
cp "$tmp/run/config.txt" "$tmp/config.keep"
sed -i 's/^model.widths=.*/model.widths=8-8/' "$tmp/run/config.txt"
expect2 "other architecture (resume)" "checkpoint" "$bin" pretrain --out "$tmp/run" --resume
cp "$tmp/config.keep" "$tmp/run/config.txt"
expect2 "resume with --set" "--resume" "$bin" pretrain --out "$tmp/run" --resume --set loss.lambda=0.1
head -c 300 "$tmp/run/checkpoint.safetensors" >"$tmp/cut.safetensors"
cp "$tmp/run/config.txt" "$tmp/run/run.txt" "$tmp/" 2>/dev/null
expect2 "corrupt checkpoint" "cut.safetensors" "$bin" eval --checkpoint "$tmp/cut.safetensors"
[[ $(sha256sum "$tmp/run/checkpoint.safetensors") == "$sum_before" ]] && ok || bad "a failed command changed the checkpoint"
for d in x1 x2 x3 x4 x5 x6 x7 x8 x9; do
  [[ ! -e "$tmp/$d/checkpoint.safetensors" ]] || bad "failed run $d wrote a checkpoint"
done

# ---- divergence: a run that explodes stops at once (exit 1, one line naming the step and the
# value), logs no non-finite step, and leaves the checkpoint saved before it byte for byte
"$bin" pretrain "${fm[@]}" "${tiny[@]}" --epochs 3 --no-eval --max-steps 10 --set optim.kind=sgd \
  --out "$tmp/nan" >"$tmp/nan0.out" 2>&1 || bad "divergence: the sane first 10 steps failed: $(tail -1 "$tmp/nan0.out")"
cp "$tmp/nan/checkpoint.safetensors" "$tmp/nan.keep"
# the same run, resumed with rates that blow up (config.txt is what --resume reads)
printf 'optim.lr=1000\noptim.lr_bias=1000\noptim.grad_scale=1e12\noptim.schedule=constant\n' >>"$tmp/nan/config.txt"
"$bin" pretrain --out "$tmp/nan" --resume --no-eval >"$tmp/nan.out" 2>"$tmp/nan.err"
rc=$?
[[ $rc -eq 1 && $(wc -l <"$tmp/nan.err") -eq 1 ]] \
  && grep -q "training diverged at step [0-9]*: .* is [-]*\(inf\|nan\).*; the last checkpoint (.*checkpoint.safetensors, step 10) is intact" \
     "$tmp/nan.err" && ok || { bad "divergence: exit $rc, want 1 and one line naming the step"; cat "$tmp/nan.err"; }
cmp -s "$tmp/nan.keep" "$tmp/nan/checkpoint.safetensors" && ok || bad "divergence: the checkpoint of step 10 changed"
grep '"event":"step"' "$tmp/nan/log.jsonl" | grep -qi 'nan\|inf' && bad "divergence: a non-finite step was logged" || ok
grep -q '"event":"diverged","step":[0-9]*' "$tmp/nan/log.jsonl" && ok || bad "divergence: no diverged record in log.jsonl"
"$bin" eval --checkpoint "$tmp/nan/checkpoint.safetensors" --data "$tmp/fm" --probe-epochs 1 --no-baselines \
  >"$tmp/nan_eval.out" 2>&1 && grep -q '^Barlow Twins encoder .*%' "$tmp/nan_eval.out" && ok \
  || { bad "divergence: the kept checkpoint does not evaluate"; cat "$tmp/nan_eval.out"; }

# a NaN weight (written into the checkpoint) reaches the embeddings: the loss's BT_E_NUMERIC stops the
# resumed run at its first step, naming the embedding and its index
"$bin" pretrain "${fm[@]}" "${tiny[@]}" --epochs 3 --no-eval --max-steps 10 --out "$tmp/nanw" >"$tmp/nanw0.out" 2>&1 \
  || bad "divergence (NaN weight): the first 10 steps failed: $(tail -1 "$tmp/nanw0.out")"
"$py" - "$tmp/nanw/checkpoint.safetensors" <<'EOF2' || bad "divergence (NaN weight): could not edit the checkpoint"
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
s = json.loads(b[8:8 + n])["projector.3.weight"]["data_offsets"][0]
b[8 + n + s:8 + n + s + 4] = struct.pack("<f", float("nan"))
open(sys.argv[1], "wb").write(b)
EOF2
cp "$tmp/nanw/checkpoint.safetensors" "$tmp/nanw.keep"
"$bin" pretrain --out "$tmp/nanw" --resume --no-eval >"$tmp/nanw.out" 2>"$tmp/nanw.err"
rc=$?
[[ $rc -eq 1 && $(wc -l <"$tmp/nanw.err") -eq 1 ]] \
  && grep -q "training diverged at step 11: bt_loss_forward: za\[[0-9]*, [0-9]*\] is nan; .*(.*checkpoint.safetensors, step 10) is intact" \
     "$tmp/nanw.err" && cmp -s "$tmp/nanw.keep" "$tmp/nanw/checkpoint.safetensors" \
  && ! grep '"event":"step"' "$tmp/nanw/log.jsonl" | grep -qi 'nan\|inf' && ok \
  || { bad "divergence (NaN weight): exit $rc, want 1, one line naming step 11 and za[.., ..]"; cat "$tmp/nanw.err"; }

echo "cli: $pass passed, $failed failed"
[[ $failed -eq 0 ]]
