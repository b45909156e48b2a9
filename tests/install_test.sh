#!/usr/bin/env bash
# make install / uninstall as a user meets them: into a DESTDIR, then built through
# pkg-config (shared and static, C and C++), the installed barlow program, a second
# install with another PREFIX (no stale barlow.pc), and CMake's find_package(barlow).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail() { echo "install: FAIL $*"; exit 1; }
ok() { pass=$((pass + 1)); }
inst() { make -s -C "$top" BUILD="$build" "$@" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make $*"; }; }

prefix=/opt/barlow-test
inst install DESTDIR="$tmp/root" PREFIX="$prefix"
root="$tmp/root$prefix"
for f in include/barlow.h include/barlow.hpp lib/libbarlow.a lib/libbarlow.so lib/libbarlow.so.0 \
         lib/pkgconfig/barlow.pc lib/cmake/barlow/barlowConfig.cmake \
         lib/cmake/barlow/barlowConfigVersion.cmake bin/barlow; do
  [[ -e "$root/$f" ]] || fail "$f missing"
done
ok

export PKG_CONFIG_PATH="$root/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cc -std=c11 -Wall -Werror "$top/examples/minimal.c" $(pkg-config --cflags --libs barlow) -o "$tmp/minimal"
LD_LIBRARY_PATH="$root/lib" "$tmp/minimal" > "$tmp/out.txt"
grep -q 'loss.lambda = 0.004' "$tmp/out.txt" || { cat "$tmp/out.txt"; fail "shared build output"; }
# the program really uses the installed shared library
LD_LIBRARY_PATH="$root/lib" ldd "$tmp/minimal" | grep "$root/lib/libbarlow.so.0" >/dev/null \
  || fail "not linked to the installed libbarlow.so.0"
ok
cc -std=c11 -Wall -Werror "$top/examples/minimal.c" $(pkg-config --cflags barlow) \
   "$root/lib/libbarlow.a" $(pkg-config --static --libs barlow | sed 's/-lbarlow//') -o "$tmp/minimal-static"
"$tmp/minimal-static" | grep -q 'loss.lambda = 0.004' || fail "static build"
ok
# the C++ header as installed, alone in a translation unit, through pkg-config
printf '#include <barlow.hpp>\nint main() { return barlow::version_number() > 0 ? 0 : 1; }\n' > "$tmp/hpp.cpp"
c++ -std=c++11 -Wall -Wextra -Werror "$tmp/hpp.cpp" $(pkg-config --cflags --libs barlow) -o "$tmp/hpp"
LD_LIBRARY_PATH="$root/lib" "$tmp/hpp" || fail "barlow.hpp program"
ok
"$root/bin/barlow" version | grep -q "^barlow $(sed -n 's/^Version: //p' "$root/lib/pkgconfig/barlow.pc")$" \
  || fail "installed barlow program"
ok

# A second install with another PREFIX ships its own paths, not the first one's.
inst install DESTDIR="$tmp/root2" PREFIX=/opt/other LIBDIR=/opt/other/lib64
grep -qx 'libdir=/opt/other/lib64' "$tmp/root2/opt/other/lib64/pkgconfig/barlow.pc" || fail "stale barlow.pc"
grep -q '"/opt/other/lib64/' "$tmp/root2/opt/other/lib64/cmake/barlow/barlowConfig.cmake" \
  || fail "stale barlowConfig.cmake"
ok

# CMake, against a real (non-DESTDIR) install: find_package gives both targets,
# a version check refuses another major version.
if command -v cmake >/dev/null; then
  inst install PREFIX="$tmp/prefix"
  mkdir -p "$tmp/cm"
  cp "$top/examples/minimal.c" "$tmp/cm/"
  cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.13)
project(use_barlow C CXX)
find_package(barlow 0.1 REQUIRED)
add_executable(minimal_shared minimal.c)
target_link_libraries(minimal_shared PRIVATE barlow::barlow)
add_executable(minimal_static minimal.c)
target_link_libraries(minimal_static PRIVATE barlow::barlow_static)
add_executable(hpp hpp.cpp)
target_link_libraries(hpp PRIVATE barlow::barlow)
CM
  cp "$tmp/hpp.cpp" "$tmp/cm/"
  (cd "$tmp/cm" && cmake -S . -B b -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/cmake.log" 2>&1 \
     && cmake --build b >>"$tmp/cmake.log" 2>&1) || { cat "$tmp/cmake.log"; fail "cmake build"; }
  "$tmp/cm/b/minimal_shared" | grep -q 'loss.lambda = 0.004' || fail "cmake shared build"
  ldd "$tmp/cm/b/minimal_shared" | grep -q "$tmp/prefix/lib/libbarlow.so.0" || fail "cmake shared: not the installed library"
  "$tmp/cm/b/minimal_static" | grep -q 'loss.lambda = 0.004' || fail "cmake static build"
  ! ldd "$tmp/cm/b/minimal_static" | grep -q libbarlow || fail "cmake static: links libbarlow.so"
  "$tmp/cm/b/hpp" || fail "cmake C++ build"
  sed -i 's/find_package(barlow 0.1 REQUIRED)/find_package(barlow 1.0 REQUIRED)/' "$tmp/cm/CMakeLists.txt"
  (cd "$tmp/cm" && cmake -S . -B b2 -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/cmake2.log" 2>&1) \
    && fail "cmake accepted version 1.0 of a 0.x install"
  ok
  inst uninstall PREFIX="$tmp/prefix"
  left=$(find "$tmp/prefix" -type f -o -type l | wc -l)
  [[ $left -eq 0 ]] || { find "$tmp/prefix" -type f -o -type l; fail "uninstall (prefix) left $left files"; }
else
  echo "install: cmake not installed, find_package(barlow) not tested"
fi

inst uninstall DESTDIR="$tmp/root" PREFIX="$prefix"
left=$(find "$tmp/root" -type f -o -type l | wc -l)
[[ $left -eq 0 ]] || { find "$tmp/root" -type f -o -type l; fail "uninstall left $left files"; }
ok
echo "install: $pass passed, 0 failed (DESTDIR install, pkg-config C shared and static, C++ header," \
     "barlow program, second PREFIX, CMake find_package, uninstall)"
