#!/usr/bin/env bash
# The C++ wrapper include/barlow.hpp: tests/cxx/test_barlow.cpp built with g++ as C++11
# and C++17 (-Wall -Wextra -Wpedantic -Wshadow -Werror), with -fno-exceptions, and with
# BARLOW_NO_EXCEPTIONS forcing the status-only form; each build is run. Then the header
# alone as C++11 and C++17 with clang++ when it is installed.
#   bash tests/cxx/run.sh [BUILD_DIR]    (default build; needs BUILD_DIR/libbarlow.a: `make`)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${BUILD:-build}}
[[ $build == /* ]] || build="$top/$build"
lib="$build/libbarlow.a"
[[ -f "$lib" ]] || { echo "cxx: $lib not built (run make)"; exit 1; }
CXX=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp" BT_NUM_THREADS=${BT_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
warn=(-Wall -Wextra -Wpedantic -Wshadow -Werror)
libs=(-fopenmp -lopenblas -lpthread -lm)

one() { # name, then compiler flags
  local name=$1; shift
  if ! "$CXX" "$@" "${warn[@]}" -O1 -I"$top/include" "$top/tests/cxx/test_barlow.cpp" -o "$tmp/$name" \
       "$lib" "${libs[@]}" 2>"$tmp/$name.log"; then
    echo "cxx: FAIL $name does not build"; cat "$tmp/$name.log"; exit 1
  fi
  if ! "$tmp/$name" >"$tmp/$name.out" 2>&1; then
    echo "cxx: FAIL $name"; cat "$tmp/$name.out"; exit 1
  fi
  echo "cxx [$name]: $(tail -1 "$tmp/$name.out")"
}

# the four builds compile two at a time, each then runs its test
one cxx11 -std=c++11 &
p1=$!
one cxx17 -std=c++17 &
p2=$!
wait $p1
wait $p2
one noexcept -std=c++11 -fno-exceptions &
p3=$!
one forced-status -std=c++17 -DBARLOW_NO_EXCEPTIONS &
p4=$!
wait $p3
wait $p4

# the header alone in a translation unit (g++, and clang++ when installed), and the
# test under clang++ (syntax only: every template of the header instantiated)
printf '#include <barlow.hpp>\n' > "$tmp/alone.cpp"
syntax() { # compiler, flags...: the header alone, then the test
  local cc=$1; shift
  "$cc" "$@" "${warn[@]}" -I"$top/include" -fsyntax-only "$tmp/alone.cpp" \
    && "$cc" "$@" "${warn[@]}" -I"$top/include" -fsyntax-only "$top/tests/cxx/test_barlow.cpp" \
    || { echo "cxx: FAIL $cc $* does not compile barlow.hpp cleanly"; exit 1; }
}
syntax "$CXX" -std=c++11
if command -v clang++ >/dev/null; then
  syntax clang++ -std=c++11
  syntax clang++ -std=c++17
  syntax clang++ -std=c++11 -fno-exceptions
  clang=", clang++ C++11, C++17 and -fno-exceptions"
else
  echo "cxx: clang++ not installed: skipped the clang++ builds of barlow.hpp"
  clang=""
fi
read -r total_pass total_fail < <(sed -n 's/^cxx: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$tmp"/*.out \
  | awk '{p += $1; f += $2} END {print p, f}')
echo "cxx: $total_pass passed, $total_fail failed (4 g++ builds: C++11, C++17, -fno-exceptions, BARLOW_NO_EXCEPTIONS; header alone$clang)"
