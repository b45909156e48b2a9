#!/usr/bin/env bash
# tests/omp_stale.sh - remove the registration files LLVM's OpenMP runtime (libomp) left in
# /dev/shm for processes that are gone (killed fuzzers, timed-out tests). libomp names the file
# after the pid; a new process that reuses the pid finds "its" file, takes it for a second
# OpenMP runtime and aborts (OMP: Error #15). Run before the targets that use libomp.
shopt -s nullglob
for f in /dev/shm/__KMP_REGISTERED_LIB_*; do
  pid=${f#/dev/shm/__KMP_REGISTERED_LIB_}
  pid=${pid%%_*}
  [[ $pid =~ ^[0-9]+$ ]] || continue
  kill -0 "$pid" 2>/dev/null || rm -f "$f"
done
