#!/usr/bin/env bash
# Install the barlow Python package into a virtual environment, offline.
#
#   libbarlow/python/install.sh VENV [LIBDIR]
#
# VENV is created when missing (python3 -m venv --system-site-packages, so
# Debian's python3-numpy is visible); the package is pip-installed into it
# with no index and no build isolation (Debian's setuptools and wheel), and
# LIBDIR (the install prefix's library directory, e.g. /usr/local/lib) is
# recorded in the installed package as the place to find libbarlow.so.0
# after $BARLOW_LIBRARY. The build runs on a copy of this folder, so the
# source tree gets no build/ or *.egg-info. PYTHON picks the interpreter
# (default /usr/bin/python3, Debian's).
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 VENV [LIBDIR]" >&2
  exit 2
fi
venv=$1
libdir=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv --system-site-packages "$venv" || {
    echo "install.sh: cannot create a venv; on Debian: apt-get install -y python3-venv" >&2
    exit 1
  }
fi
"$venv/bin/python" -c "import numpy" 2>/dev/null || {
  echo "install.sh: numpy is not importable in $venv; on Debian: apt-get install -y python3-numpy" >&2
  exit 1
}

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp "$here/pyproject.toml" "$here/setup.py" "$here/README.md" "$src/"
mkdir "$src/barlow"
cp "$here"/barlow/*.py "$src/barlow/"
rm -f "$src/barlow/_install_paths.py"

BARLOW_LIBDIR="$libdir" PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$venv/bin/python" -m pip install --quiet --no-index --no-build-isolation --no-deps \
  --no-cache-dir --force-reinstall "$src"
echo "install.sh: barlow installed in $venv${libdir:+ (library directory $libdir)}"
