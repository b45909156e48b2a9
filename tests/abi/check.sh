#!/usr/bin/env bash
# ABI checks (c-style §10): exports, SONAME, header hygiene, stack, abidiff.
#   bash tests/abi/check.sh build/libbarlow.so.X.Y.Z libbarlow.so.X
set -euo pipefail
so=$1
soname=$2
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
pass=0
fail=0
ok()  { echo "abi: ok   $*"; pass=$((pass + 1)); }
bad() { echo "abi: FAIL $*"; fail=$((fail + 1)); }

# 1. Only bt_* symbols are exported (the version node LIBBARLOW_0 is an absolute marker).
stray=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | grep -v '^bt_' || true)
count=$(nm -D --defined-only "$so" | awk '$2 != "A"' | wc -l)
if [[ -z "$stray" && $count -gt 0 ]]; then ok "exports: $count symbols, all bt_*"; else bad "exports outside bt_*: $stray"; fi

# 2. SONAME per major version.
got=$(readelf -dW "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [[ "$got" == "$soname" ]]; then ok "SONAME $got"; else bad "SONAME is '$got', want '$soname'"; fi

# 3. The header compiles alone, as C11 and as C++11, without warnings.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include "barlow.h"\nint main(void) { return bt_version_number() == BT_VERSION_NUMBER ? 0 : 1; }\n' > "$tmp/h.c"
if gcc -std=c11 -pedantic -Werror -Wall -Wextra -Wstrict-prototypes -I"$top/include" -c "$tmp/h.c" -o "$tmp/c.o"; then
  ok "header compiles alone as C11 (-pedantic -Werror)"; else bad "header as C11"; fi
cp "$tmp/h.c" "$tmp/h.cpp"
if g++ -std=c++11 -pedantic -Werror -Wall -Wextra -I"$top/include" -c "$tmp/h.cpp" -o "$tmp/cpp.o"; then
  ok "header compiles alone as C++11 (-pedantic -Werror)"; else bad "header as C++11"; fi
# ... and includes nothing but <stddef.h> and <stdint.h>.
incs=$(grep -E '^#include' "$top/include/barlow.h" | grep -v -E '<stddef.h>|<stdint.h>' || true)
if [[ -z "$incs" ]]; then ok "header includes only stddef.h and stdint.h"; else bad "header includes $incs"; fi

# 4. No executable stack.
stack=$(readelf -lW "$so" | awk '/GNU_STACK/ {print $7}')
if [[ "$stack" == "RW" ]]; then ok "stack is not executable ($stack)"; else bad "GNU_STACK flags '$stack'"; fi

# 5. abidiff against the committed baseline: any non-zero exit is a failure
#    (4 = an ABI change, 8 = an incompatible one, 12 = both).
if command -v abidiff >/dev/null; then
  set +e
  abidiff --no-added-syms --headers-dir2 "$top/include" --drop-private-types \
      "$here/barlow.abi" "$so" > "$tmp/abidiff.txt" 2>&1
  rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then ok "abidiff against tests/abi/barlow.abi"
  else bad "abidiff exit $rc:"; cat "$tmp/abidiff.txt"; fi
else
  bad "abidiff not found (Debian package abigail-tools)"
fi

echo "abi: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
