#!/usr/bin/env bash
# The barlow Python package's tests: a fresh venv, the package installed offline
# with libbarlow/python/install.sh, then pytest on tests/python/test_*.py against
# BUILD_DIR/libbarlow.so.0 (through BARLOW_LIBRARY).
#
#   tests/python/run.sh BUILD_DIR [pytest args...]
#
# Needs Debian's python3-numpy python3-pytest python3-setuptools python3-pip
# python3-venv, and BUILD_DIR/examples/train_loop (built here when missing) for
# the bit-for-bit comparison with C. PYTHON picks the interpreter (default
# /usr/bin/python3). Exits nonzero on any failure.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [pytest args...]" >&2
  exit 2
fi
top=$(cd "$(dirname "$0")/../.." && pwd)
build_arg=$1
shift
build=$(cd "$build_arg" 2>/dev/null && pwd) || { echo "python: no build directory $build_arg" >&2; exit 1; }
lib="$build/libbarlow.so.0"
[[ -e "$lib" ]] || { echo "python: $lib is missing (make BUILD=$build_arg lib)" >&2; exit 1; }
if [[ ! -x "$build/examples/train_loop" ]]; then
  make -s -C "$top" BUILD="$build" "$build/examples/train_loop" >&2
fi
python=${PYTHON:-/usr/bin/python3}
"$python" -c "import pytest, numpy" 2>/dev/null || {
  echo "python: $python lacks pytest or numpy; on Debian: apt-get install -y python3-numpy python3-pytest" \
       "python3-setuptools python3-pip python3-venv" >&2
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PYTHON="$python" bash "$top/libbarlow/python/install.sh" "$tmp/venv" "$build" >/dev/null
cd "$tmp"  # the installed package is imported, never the source folder
BARLOW_LIBRARY="$lib" BARLOW_BUILD_DIR="$build" PYTHONDONTWRITEBYTECODE=1 \
  "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$top/tests/python" \
  "$top/tests/python" "$@"
