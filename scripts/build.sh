#!/usr/bin/env bash
# scripts/build.sh — configures and builds ttt into build/ (Release). CUDA is built when nvcc is
# on the PATH (set TTT_CUDA=OFF to skip it). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cuda_flag=()
[ -n "${TTT_CUDA:-}" ] && cuda_flag=(-DTTT_CUDA="${TTT_CUDA}")
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${cuda_flag[@]}" "$@"
else
  cmake -S . -B build "${cuda_flag[@]}" "$@" >/dev/null
fi
cmake --build build -j "$JOBS"
