#!/usr/bin/env bash
# scripts/test.sh — installs what is missing, builds, and runs the whole test suite (CTest).
# GPU tests skip themselves when no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# setup.sh installs OpenMPI, so the multi-process tests (test_ddp_mpi*) must run, not skip.
export TTT_REQUIRE_MPI=${TTT_REQUIRE_MPI:-1}
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
