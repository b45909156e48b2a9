#!/usr/bin/env bash
# Install into a temporary DESTDIR, then build examples/minimal.c through
# pkg-config against the installed library (shared and static) and run it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/barlow-test
make -s -C "$top" install DESTDIR="$tmp/root" PREFIX="$prefix" BUILD="$build" >/dev/null
root="$tmp/root$prefix"
for f in include/barlow.h lib/libbarlow.a lib/libbarlow.so lib/pkgconfig/barlow.pc; do
  [[ -e "$root/$f" ]] || { echo "install: FAIL $f missing"; exit 1; }
done
export PKG_CONFIG_PATH="$root/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cc -std=c11 -Wall -Werror "$top/examples/minimal.c" $(pkg-config --cflags --libs barlow) -o "$tmp/minimal"
LD_LIBRARY_PATH="$root/lib" "$tmp/minimal" > "$tmp/out.txt"
grep -q 'loss.lambda = 0.004' "$tmp/out.txt" || { echo "install: FAIL shared build output"; cat "$tmp/out.txt"; exit 1; }
# the program really uses the installed shared library
LD_LIBRARY_PATH="$root/lib" ldd "$tmp/minimal" | grep "$root/lib/libbarlow.so.0" >/dev/null \
  || { echo "install: FAIL not linked to the installed libbarlow.so.0"; exit 1; }
cc -std=c11 -Wall -Werror "$top/examples/minimal.c" $(pkg-config --cflags barlow) \
   "$root/lib/libbarlow.a" $(pkg-config --static --libs barlow | sed 's/-lbarlow//') -o "$tmp/minimal-static"
"$tmp/minimal-static" | grep -q 'loss.lambda = 0.004' || { echo "install: FAIL static build"; exit 1; }
make -s -C "$top" uninstall DESTDIR="$tmp/root" PREFIX="$prefix" BUILD="$build" >/dev/null
left=$(find "$tmp/root" -type f | wc -l)
[[ $left -eq 0 ]] || { echo "install: FAIL uninstall left $left files"; exit 1; }
echo "install: 3 passed, 0 failed (DESTDIR install, pkg-config shared and static builds, uninstall)"
