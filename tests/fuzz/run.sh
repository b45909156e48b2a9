#!/usr/bin/env bash
# tests/fuzz/run.sh - what `make fuzz` and `make check-fuzz` run (tests/fuzz/fuzz.mk).
#   run.sh run   BUILD SECONDS "FLAGS" TARGET...   fuzz each target SECONDS on BUILD/corpus/<t>
#   run.sh check BUILD SECONDS ""      TARGET...   replay the committed corpus and regressions,
#                                                  then fuzz each target a fixed number of runs
#                                                  from seed 1 (at most SECONDS); fail on any crash
# Per target a line: "fuzz <t>: <execs> execs in <s> s (<cpu> s CPU), <n> crashes".
set -uo pipefail
mode=$1 build=$2 seconds=$3 flags=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)

# One thread per fuzzer (libgomp, OpenBLAS): reproducible, and fair to a shared machine.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
common=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=25 -print_final_stats=1 -max_len=131072)

# check mode: a fixed, seeded run per target (about 15 s each on 2 cores of an EPYC): the same
# mutations on every machine, so a CI run fails only on what this run would find here too (a
# run cut short by SECONDS is a prefix of it). New findings belong to make fuzz.
check_runs() {
  case $1 in
    safetensors) echo 200000 ;; checkpoint) echo 10000 ;; config) echo 20000 ;;
    idx) echo 60000 ;; cifar) echo 100000 ;; folder) echo 30000 ;; *) echo 10000 ;;
  esac
}

status=0
for t in "$@"; do
  bash "$here/../omp_stale.sh" # the targets link libomp (tests/omp_stale.sh)
  bin=$build/fuzz_$t
  dict=()
  [[ -f $here/$t.dict ]] && dict=(-dict="$here/$t.dict")
  if [[ $mode == check ]]; then
    # every committed input, one run each, no mutation
    inputs=()
    for d in "$here/corpus/$t" "$here/regress/$t"; do
      [[ -d $d ]] || continue
      while IFS= read -r -d '' f; do inputs+=("$f"); done < <(find "$d" -type f ! -name '.*' -print0 | sort -z)
    done
    if [[ ${#inputs[@]} -gt 0 ]]; then
      if ! "$bin" "${common[@]}" "${inputs[@]}" > "$build/replay_$t.log" 2>&1; then
        echo "check-fuzz: $t: a committed input fails (log: $build/replay_$t.log)"; tail -30 "$build/replay_$t.log"
        status=1; continue
      fi
    fi
    echo "check-fuzz: $t: ${#inputs[@]} committed inputs pass"
    work=$build/check-corpus/$t
    rm -rf "$work"
    flags="-seed=1 -runs=$(check_runs "$t")"
  else
    work=$build/corpus/$t
  fi
  crashes=$build/crashes/$t
  mkdir -p "$work" "$crashes"
  [[ -d $here/corpus/$t ]] && cp -n "$here/corpus/$t"/* "$work"/ 2>/dev/null
  # crash-, leak-, timeout-, oom- files (slow-unit- ones are only reported)
  count() { find "$crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l; }
  before=$(count)
  log=$build/fuzz_$t.log
  t0=$(date +%s)
  # shellcheck disable=SC2086
  /usr/bin/time -f '%U %S' -o "$build/time_$t" nice -n 19 "$bin" "${common[@]}" "${dict[@]}" \
      -max_total_time="$seconds" -artifact_prefix="$crashes/" $flags "$work" > "$log" 2>&1
  rc=$?
  t1=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cpu=$(tail -1 "$build/time_$t" | awk '{printf "%.0f", $1 + $2}')
  found=$(( $(count) - before ))
  echo "fuzz $t: ${execs:-?} execs in $((t1 - t0)) s (${cpu:-?} s CPU), $found crashes (log: $log)"
  if [[ $rc -ne 0 || $found -gt 0 ]]; then
    grep -m3 -E 'ERROR: |runtime error|fuzz: check failed' "$log"
    ls -t "$crashes" | grep -v '^slow-unit-' | head -3
    status=1
  fi
done
exit $status
