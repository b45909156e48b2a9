#!/usr/bin/env bash
# `mpirun -np W barlow pretrain` (the command built with make MPI=1, examples/barlow/dist.c)
# against one process, on a tiny synthetic Fashion-MNIST (made here with Python's standard
# library): (a) W=2 and (d) W=3 (uneven shards) give the per-step losses and the final
# checkpoint of one process, and only rank 0 writes; (b) a run stopped at W=4 and resumed at
# W=2 ends where one uninterrupted process ends; (c) SIGTERM to rank 1 alone stops every rank
# at one step, rank 0 saves once, exit 130 as a single-process Ctrl-C. Every run is under
# `timeout`: a hang is a failure. Also: the MPI build as one process is bitwise the plain build,
# --eval under mpirun (rank 0 evaluates), and bad input (too many ranks, eval under mpirun).
#   BUILD=build bash tests/cli_mpi_test.sh     (builds $BUILD/cli-mpi with make MPI=1 itself)
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
py=${PYTHON:-python3}
mbuild="$build/cli-mpi"
cd "$top" || exit 1
command -v mpirun >/dev/null || { echo "cli-mpi: mpirun missing"; exit 1; }
make -s -j2 MPI=1 BUILD="$mbuild" "$mbuild/examples/barlow" >/dev/null \
  || { echo "cli-mpi: FAIL make MPI=1 BUILD=$mbuild"; exit 1; }
bin="$top/$mbuild/examples/barlow"
plain="$top/$build/examples/barlow" # the plain build, compared when present
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export BT_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
mpi() { local np=$1; shift; timeout 60 mpirun --oversubscribe --bind-to none -np "$np" "$bin" "$@"; }
one() { timeout 60 "$bin" "$@"; }
pass=0
failed=0
ok() { pass=$((pass + 1)); }
bad() { failed=$((failed + 1)); echo "cli-mpi: FAIL $*"; }

"$py" - "$tmp/fm" <<'EOF'
import gzip, os, random, struct, sys
out = sys.argv[1]
rng = random.Random(7)
def image(c, side):
    px = bytearray(side * side)
    for y in range(side):
        for x in range(side):
            on = (x // 3 + c) % 10 < 3 if c % 2 else (y // 3 + c) % 10 < 3
            px[y * side + x] = max(0, min(255, (200 if on else 30) + rng.randint(-25, 25)))
    return bytes(px)
def fmnist(split, n):
    os.makedirs(out, exist_ok=True)
    labels = [i % 10 for i in range(n)]
    with gzip.open(f"{out}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        for c in labels:
            f.write(image(c, 28))
    with gzip.open(f"{out}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))
fmnist("train", 64)
fmnist("t10k", 20)
EOF
[[ -f "$tmp/fm/train-images-idx3-ubyte.gz" ]] || { echo "cli-mpi: FAIL could not make the synthetic data"; exit 1; }

# Two runs' per-step losses (relative 1e-5) or two checkpoints' tensors (1e-5 of each
# tensor's largest magnitude; the step and RNG state equal), read by hand (no numpy).
cat >"$tmp/cmp.py" <<'EOF'
import json, struct, sys
def losses(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r.get("event") == "step"}
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    fmt = {"F32": "f", "F64": "d", "I64": "q", "I32": "i"}
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        c = fmt[v["dtype"]]
        out[k] = struct.unpack("<%d%s" % (len(raw) // struct.calcsize(c), c), raw)
    return meta, out
kind, a, b = sys.argv[1:4]
if kind == "log":
    la, lb = losses(a), losses(b)
    if sorted(la) != sorted(lb) or not la:
        sys.exit("steps differ: %s vs %s" % (sorted(la), sorted(lb)))
    worst = max(abs(la[s] - lb[s]) / max(abs(la[s]), 1e-30) for s in la)
    print("%d steps, worst relative loss difference %.2e" % (len(la), worst))
    sys.exit(0 if worst <= 1e-5 else 1)
(ma, ta), (mb, tb) = tensors(a), tensors(b)
if sorted(ta) != sorted(tb):
    sys.exit("tensor names differ")
for key in ("libbarlow.step", "libbarlow.rng"):
    if ma.get(key) != mb.get(key):
        sys.exit("%s differs: %s vs %s" % (key, ma.get(key), mb.get(key)))
worst, name = 0.0, ""
for k in ta:
    big = max(max(abs(x) for x in ta[k]), 1e-30)
    d = max(abs(x - y) for x, y in zip(ta[k], tb[k])) / big
    if d > worst:
        worst, name = d, k
print("%d tensors, step %s, worst difference %.2e of the largest value (%s)"
      % (len(ta), ma.get("libbarlow.step"), worst, name))
sys.exit(0 if worst <= 1e-5 else 1)
EOF
cmp_log() { "$py" "$tmp/cmp.py" log "$1/log.jsonl" "$2/log.jsonl"; }
cmp_ckpt() { "$py" "$tmp/cmp.py" ckpt "$1/checkpoint.safetensors" "$2/checkpoint.safetensors"; }

tiny=(pretrain --data "$tmp/fm" --set model.widths=4-8 --set model.blocks=1-1 --set model.projector=16-16
      --batch 16 --knn-bank 20 --knn-test 10 --no-eval --progress lines --threads 1)

# ---- (a) one process against mpirun -np 2 (and -np 3: shards of 5, 5, 6)
one "${tiny[@]}" --steps 6 --out "$tmp/one" >"$tmp/one.out" 2>&1 && ok || { bad "one process failed"; cat "$tmp/one.out"; }
if [[ -x "$plain" ]] && ! ldd "$plain" | grep -q libmpi; then
  timeout 60 "$plain" "${tiny[@]}" --steps 6 --out "$tmp/plain" >"$tmp/plain.out" 2>&1 \
    && cmp -s "$tmp/plain/checkpoint.safetensors" "$tmp/one/checkpoint.safetensors" && ok \
    || bad "the MPI build as one process differs from the plain build (bitwise)"
fi
for np in 2 3; do
  mpi $np "${tiny[@]}" --steps 6 --out "$tmp/w$np" >"$tmp/w$np.out" 2>&1 && ok || { bad "-np $np failed"; cat "$tmp/w$np.out"; continue; }
  out=$(cmp_log "$tmp/one" "$tmp/w$np") && ok || bad "-np $np losses: $out"
  echo "cli-mpi: -np $np vs one process, losses: $out"
  out=$(cmp_ckpt "$tmp/one" "$tmp/w$np") && ok || bad "-np $np checkpoint: $out"
  echo "cli-mpi: -np $np vs one process, checkpoint: $out"
  files=$(cd "$tmp/w$np" && ls -A | tr '\n' ' ')
  [[ $files == "checkpoint.safetensors config.txt correlation.png knn.png log.jsonl loss.png run.txt " ]] && ok \
    || bad "-np $np left files: $files"
  [[ $(grep -c '"event":"step"' "$tmp/w$np/log.jsonl") -eq 6 && $(grep -c '"event":"start"' "$tmp/w$np/log.jsonl") -eq 1 \
     && $(grep -c '"event":"epoch"' "$tmp/w$np/log.jsonl") -eq 2 ]] && ok || bad "-np $np: duplicate or missing log lines"
  [[ $(grep -c '^pretraining done' "$tmp/w$np.out") -eq 1 && $(grep -c '^barlow: cpu' "$tmp/w$np.out") -eq 1 ]] && ok \
    || bad "-np $np: output not printed once (rank 0 only)"
done
diff <(sed 's/"images_per_s":[0-9.]*//; s/"seconds":[0-9.]*//; s/"loss[a-z_]*":[^,]*//g; s/"on_diag":[^,]*//; s/"off_diag":[^,]*//' "$tmp/one/log.jsonl") \
     <(sed 's/"images_per_s":[0-9.]*//; s/"seconds":[0-9.]*//; s/"loss[a-z_]*":[^,]*//g; s/"on_diag":[^,]*//; s/"off_diag":[^,]*//' "$tmp/w2/log.jsonl") >/dev/null \
  && ok || bad "-np 2 log records differ from one process beyond losses and timings"

# ---- (b) K = 8 steps: stopped at W=4 after 4, resumed at W=2, against one process
one "${tiny[@]}" --steps 8 --out "$tmp/ref" >"$tmp/ref.out" 2>&1 || bad "reference run failed"
mpi 4 "${tiny[@]}" --steps 8 --max-steps 4 --out "$tmp/res" >"$tmp/res.out" 2>&1 \
  && grep -q '^stopped (--max-steps) at step 4 of 8' "$tmp/res.out" && ok || { bad "-np 4 --max-steps 4"; cat "$tmp/res.out"; }
mpi 2 pretrain --out "$tmp/res" --resume --no-eval --progress lines --threads 1 >>"$tmp/res.out" 2>&1 \
  && grep -q '^continuing at step 4' "$tmp/res.out" && ok || { bad "-np 2 --resume"; cat "$tmp/res.out"; }
out=$(cmp_ckpt "$tmp/ref" "$tmp/res") && ok || bad "W=4 then W=2 checkpoint: $out"
echo "cli-mpi: W=4 4 steps + W=2 resume to 8 vs one process, checkpoint: $out"
out=$(cmp_log "$tmp/ref" "$tmp/res") && ok || bad "W=4 then W=2 losses: $out"
echo "cli-mpi: W=4 4 steps + W=2 resume to 8 vs one process, losses: $out"

# ---- (c) SIGTERM to rank 1 only
mpi 2 "${tiny[@]}" --steps 400 --out "$tmp/sig" >"$tmp/sig.out" 2>&1 &
job=$!
r1=
for _ in $(seq 1 400); do
  if [[ -z $r1 ]]; then
    for p in $(pgrep -f "examples/barlow pretrain .*--out $tmp/sig"); do
      tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && r1=$p
    done
  fi
  [[ -n $r1 ]] && grep -q '"event":"step","step":5,' "$tmp/sig/log.jsonl" 2>/dev/null && break
  sleep 0.05
done
if [[ -n $r1 ]]; then kill -TERM "$r1"; else bad "rank 1 of the SIGTERM run not found"; fi
wait $job
rc=$?
[[ $rc -eq 130 ]] && ok || { bad "SIGTERM to rank 1: exit $rc, want 130"; tail -5 "$tmp/sig.out"; }
n=$(sed -n 's/^interrupted at step \([0-9]*\) of 400; checkpoint .* saved.*/\1/p' "$tmp/sig.out")
[[ $(grep -c '^interrupted at step' "$tmp/sig.out") -eq 1 && -n $n && $n -lt 400 ]] && ok \
  || { bad "SIGTERM: not one 'interrupted' line from rank 0"; tail -5 "$tmp/sig.out"; }
[[ $(grep -c '"event":"interrupted","step":'"$n"'}' "$tmp/sig/log.jsonl") -eq 1 \
   && $(grep -c '"event":"step"' "$tmp/sig/log.jsonl") -eq "$n" ]] && ok || bad "SIGTERM: log does not end once at step $n"
step=$("$py" -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(json.loads(b[8:8+n])["__metadata__"]["libbarlow.step"])' \
       "$tmp/sig/checkpoint.safetensors" 2>/dev/null)
[[ -n $n && $step == "$n" ]] && ok || bad "SIGTERM: checkpoint at step '$step', the run stopped at '$n'"
echo "cli-mpi: SIGTERM to rank 1 (pid $r1): exit $rc, stopped at step $n, checkpoint at step $step"
# the interrupted run continues as one process to the same end as an uninterrupted one
if [[ -n $n ]]; then
  one "${tiny[@]}" --steps 400 --max-steps $((n + 2)) --out "$tmp/sigref" >/dev/null 2>&1
  one pretrain --out "$tmp/sig" --resume --no-eval --threads 1 --max-steps $((n + 2)) >>"$tmp/sig.out" 2>&1
  out=$(cmp_ckpt "$tmp/sigref" "$tmp/sig") && ok || bad "after SIGTERM, resumed as one process: $out"
fi

# ---- the final evaluation under mpirun: rank 0 evaluates, the others end
mpi 2 "${tiny[@]/--no-eval/--eval}" --probe-epochs 2 --steps 4 --out "$tmp/ev" >"$tmp/ev.out" 2>&1 \
  && [[ $(grep -c '"event":"eval"' "$tmp/ev/log.jsonl") -eq 1 && $(grep -c '^Barlow Twins encoder ' "$tmp/ev.out") -eq 1 ]] \
  && ok || { bad "-np 2 --eval"; tail -5 "$tmp/ev.out"; }

# ---- bad input under mpirun: more ranks than images per batch, --minutes, other commands
mpi 2 "${tiny[@]}" --batch 2 --steps 1 --out "$tmp/b2" >/dev/null 2>&1 && ok || bad "-np 2 --batch 2 failed"
mpi 3 "${tiny[@]}" --batch 2 --steps 1 --out "$tmp/b3" >"$tmp/b3.out" 2>&1
rc=$?
[[ $rc -eq 2 ]] && grep -q 'smaller than the 3 ranks' "$tmp/b3.out" && ok || bad "-np 3 --batch 2: exit $rc"
mpi 2 eval --checkpoint "$tmp/one/checkpoint.safetensors" >"$tmp/cmd.out" 2>&1
rc=$?
[[ $rc -eq 2 ]] && grep -q 'only `barlow pretrain` runs on several ranks' "$tmp/cmd.out" && ok || bad "-np 2 eval: exit $rc"

echo "cli-mpi: $pass passed, $failed failed"
[[ $failed -eq 0 ]]
