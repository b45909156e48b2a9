#!/usr/bin/env bash
# tests/mpi/run.sh - data-parallel training under mpirun (make check-mpi).
#
#   BUILD=build bash tests/mpi/run.sh
#
# Builds tests/mpi/check_mpi.c and examples/mpi_train.c with mpicc against
# $BUILD/libbarlow.a, then runs W = 1..4 ranks (oversubscribed: the runs are tiny) and
# compares them with one process. Every run is under `timeout 60`: a hang is a failure.
# Environment: BUILD (required), MPICC, CFLAGS, LIB_LIBS (the library's link flags;
# default OpenBLAS as the Makefile's BLAS=openblas).
set -u
cd "$(dirname "$0")/../.."
: "${BUILD:?set BUILD to the build folder holding libbarlow.a}"
MPICC=${MPICC:-mpicc}
CFLAGS=${CFLAGS:--O2 -g}
LIB_LIBS=${LIB_LIBS:-"$(pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -fopenmp -lpthread -lm"}
OUT=$BUILD/tests/mpi
WARN="-Wall -Wextra -Wpedantic -Wstrict-prototypes -Wmissing-prototypes -Wshadow"
mkdir -p "$OUT"

# Open MPI as root, on a small shared box, over shared memory only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 BT_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)

if ! command -v "$MPICC" >/dev/null || ! command -v mpirun >/dev/null; then
    echo "mpi: mpicc or mpirun missing (bash .ci/deps.sh mpi)"; exit 1
fi
[ -f "$BUILD/libbarlow.a" ] || { echo "mpi: $BUILD/libbarlow.a missing (make BUILD=$BUILD lib)"; exit 1; }

# shellcheck disable=SC2086
$MPICC -std=c11 -D_POSIX_C_SOURCE=200809L $WARN -Iinclude -Iexamples $CFLAGS \
    tests/mpi/check_mpi.c -o "$OUT/check_mpi" "$BUILD/libbarlow.a" $LIB_LIBS || exit 1
# shellcheck disable=SC2086
$MPICC -std=c11 -D_POSIX_C_SOURCE=200809L $WARN -Iinclude $CFLAGS \
    examples/mpi_train.c -o "$OUT/mpi_train" "$BUILD/libbarlow.a" $LIB_LIBS || exit 1

pass=0 fail=0
CHECK=$OUT/check_mpi
LOG=$OUT/last.log

# run NAME W CMD...: one mpirun under timeout; exit 0 pass, 124 a hang
run() {
    local name=$1 w=$2 rc
    shift 2
    timeout 60 "${MPIRUN[@]}" -n "$w" "$@" >"$LOG" 2>&1
    rc=$?
    grep -E '^(ok |FAIL |  fault: )' "$LOG"
    if [ $rc = 0 ]; then
        pass=$((pass + 1))
    else
        [ $rc = 124 ] && echo "FAIL $name: no answer within 60 s (a hang)"
        echo "FAIL $name (W=$w, exit $rc):"; sed 's/^/    /' "$LOG" | head -40
        fail=$((fail + 1))
    fi
}

run adapter 2 "$CHECK" adapter
run adapter 3 "$CHECK" adapter

for kind in model full; do
    ref=$OUT/ref_$kind.bin
    rm -f "$ref"
    run "ref $kind" 1 "$CHECK" ref "$ref" $kind
    if [ -f "$ref" ]; then
        for w in 1 2 3 4; do
            run "train $kind" $w "$CHECK" train "$ref" $kind
        done
        run "train $kind skew" 2 "$CHECK" train "$ref" $kind skew
        run "train $kind skew" 4 "$CHECK" train "$ref" $kind skew
    fi
    run "bad $kind" 3 "$CHECK" bad $kind
    run "fault $kind" 2 "$CHECK" fault $kind
    run "fault $kind" 3 "$CHECK" fault $kind
done

# The example: the loss of W ranks is the loss of one process; a failing callback ends
# the job (MPI_Abort) with a message, without hanging.
ok=1
for w in 1 3; do
    timeout 60 "${MPIRUN[@]}" -n $w "$OUT/mpi_train" 4 >"$OUT/train_$w.log" 2>&1 || ok=0
done
if [ $ok = 1 ] && grep -q 'identical on 3 ranks' "$OUT/train_3.log" &&
   ! grep -q DIFFERENT "$OUT/train_3.log" &&
   paste <(grep '^step' "$OUT/train_1.log") <(grep '^step' "$OUT/train_3.log") |
   awk 'BEGIN { n = 0; e = 0 } { n++; d = $4 - $12; if (d < 0) d = -d; r = d / ($4 < 0 ? -$4 : $4);
        if (r > e) e = r } END { printf "  mpi_train: 4 steps, max rel loss difference W=3 vs W=1 %.2g\n", e;
        exit !(n == 4 && e <= 1e-5) }'; then
    echo "ok mpi_train W=3: the loss of one process, weights bitwise identical on the ranks"
    pass=$((pass + 1))
else
    echo "FAIL mpi_train W=3:"; sed 's/^/    /' "$OUT/train_1.log" "$OUT/train_3.log" | head -30
    fail=$((fail + 1))
fi
BARLOW_MPI_FAIL_AT=1:5 timeout 60 "${MPIRUN[@]}" -x BARLOW_MPI_FAIL_AT -n 3 "$OUT/mpi_train" 4 \
    >"$OUT/train_fault.log" 2>&1
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q 'communication failed' "$OUT/train_fault.log"; then
    echo "ok mpi_train fault: rank 1's 5th callback failing ends the job (exit $rc) with its message"
    pass=$((pass + 1))
else
    echo "FAIL mpi_train fault (exit $rc):"; sed 's/^/    /' "$OUT/train_fault.log" | head -30
    fail=$((fail + 1))
fi
echo "mpi: $pass passed, $fail failed"
[ $fail = 0 ]
