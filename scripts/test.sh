#!/usr/bin/env bash
# scripts/test.sh — installs what is missing, builds, and runs the whole test suite (CTest).
# GPU tests skip themselves when no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
