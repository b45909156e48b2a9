#!/usr/bin/env bash
# Make sure the Debian packages a target needs are installed.
#   bash .ci/deps.sh check|bench|demo|golden
# As root, missing packages are installed with apt-get; otherwise the exact
# command is printed and the script fails.
set -euo pipefail

base=(build-essential pkg-config libopenblas-dev libblas-dev check abigail-tools python3 zlib1g-dev libstb-dev)
case "${1:-check}" in
  check)  want=("${base[@]}") ;;
  bench)  want=("${base[@]}" python3-torch python3-numpy) ;;
  demo)   want=("${base[@]}" dataset-fashion-mnist) ;;
  golden) want=("${base[@]}" python3-torch python3-torchvision python3-pil python3-numpy) ;;
  *) echo "deps.sh: unknown set '$1'" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps.sh: missing Debian packages; run:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
