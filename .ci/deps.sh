#!/usr/bin/env bash
# Make sure the Debian packages a target needs are installed.
#   bash .ci/deps.sh check|bench|demo|golden|clang|tsan|fuzz|mpi|valgrind|coverage|aarch64
# As root, missing packages are installed with apt-get; otherwise the exact
# command is printed and the script fails.
set -euo pipefail

base=(build-essential pkg-config libopenblas-dev libblas-dev check abigail-tools python3 zlib1g-dev libstb-dev
      cmake python3-numpy python3-pytest python3-setuptools python3-pip python3-venv)
case "${1:-check}" in
  check)  want=("${base[@]}") ;;
  bench)  want=("${base[@]}" python3-torch python3-numpy) ;;
  demo)   want=("${base[@]}" dataset-fashion-mnist) ;;
  golden) want=("${base[@]}" python3-torch python3-torchvision python3-pil python3-numpy) ;;
  clang)  want=("${base[@]}" clang libomp-14-dev) ;;
  # make check-tsan: clang's TSan runtime is in libclang-rt-14-dev (only recommended by clang-14);
  # libomp-14-dev has LLVM's OpenMP and Archer (libarcher.so); libblas-dev the netlib CBLAS.
  tsan)   want=("${base[@]}" clang libclang-rt-14-dev libomp-14-dev libblas-dev) ;;
  # make fuzz / check-fuzz (tests/fuzz/fuzz.mk): libFuzzer and the sanitizers' runtimes are in
  # libclang-rt-14-dev; clang's -fopenmp links libomp-14-dev; time(1) measures each run's CPU.
  fuzz)   want=("${base[@]}" clang libclang-rt-14-dev libomp-14-dev time) ;;
  mpi)    want=("${base[@]}" libopenmpi-dev openmpi-bin) ;;
  valgrind) want=("${base[@]}" valgrind) ;;
  # make coverage: gcc's gcov is in build-essential; lcov has lcov and genhtml.
  coverage) want=("${base[@]}" lcov) ;;
  # Cross build + run under qemu (make check-aarch64): the cross gcc, qemu-aarch64-static,
  # and the arm64 libraries as multiarch :arm64 packages, which co-install with the amd64
  # ones. pkgconf:arm64 gives aarch64-linux-gnu-pkg-config. The runner runs on libc6:arm64's
  # ld.so and libc, so it needs libgomp1:arm64 too: the cross gcc's own libgomp sits in its
  # sysroot (/usr/aarch64-linux-gnu), whose older libc build hangs beside libc6:arm64's.
  aarch64) want=(make gcc-aarch64-linux-gnu qemu-user-static pkgconf:arm64 check:arm64
                 libsubunit-dev:arm64 libopenblas-dev:arm64 zlib1g-dev:arm64 libgomp1:arm64)
           foreign=arm64 ;;
  *) echo "deps.sh: unknown set '$1'" >&2; exit 2 ;;
esac

# A foreign architecture has to be known to dpkg before its packages can be looked up.
foreign=${foreign:-}
add_arch=()
if [[ -n "$foreign" ]] && ! dpkg --print-foreign-architectures | grep -qx "$foreign"; then
  add_arch=(dpkg --add-architecture "$foreign")
fi

# An unqualified name also matches a :arm64 copy installed beside it (two statuses): ask
# for the native one first, then the name alone (Architecture: all packages).
native=$(dpkg --print-architecture)
missing=()
for p in "${want[@]}"; do
  status=""
  [[ $p == *:* ]] || status=$(dpkg-query -W -f='${Status}' "$p:$native" 2>/dev/null || true)
  [[ -n $status ]] || status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
  if [[ ${#add_arch[@]} -gt 0 ]]; then
    echo "deps.sh: ${add_arch[*]}"
    "${add_arch[@]}"
  fi
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps.sh: missing Debian packages; run:" >&2
  [[ ${#add_arch[@]} -gt 0 ]] && echo "  sudo ${add_arch[*]} && sudo apt-get update" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
