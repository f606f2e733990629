#!/usr/bin/env bash
# scripts/gpu_attention_check.sh — builds and runs the fused-attention GPU checks in one go (for
# one call on a GPU machine): the CUDA-vs-CPU kernel test, the op tests, and the benchmark at the
# 125M config (B=8, H=12, T=2048, D=64, bf16) plus D=128 and a sliding window.
# Usage: bash scripts/gpu_attention_check.sh        (writes logs under $OUT when it is set)
# Prints a short summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$JOBS}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee "$OUT/commit.txt"

if [ ! -f build-gpu/CMakeCache.txt ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON >"$OUT/cmake.log" 2>&1 ||
    { tail -30 "$OUT/cmake.log"; echo "SUMMARY: cmake failed"; exit 1; }
fi
if ! cmake --build build-gpu -j "$JOBS" --target test_cuda_attention test_attention_op test_attention attention_bench \
    >"$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -30
  echo "SUMMARY: build failed (see $OUT/build.log)"
  exit 1
fi

status=()
run_test() {  # name
  local t=$1
  if timeout 300 ./build-gpu/tests/"$t" >"$OUT/$t.log" 2>&1; then
    if grep -q "test skipped" "$OUT/$t.log"; then status+=("$t: SKIPPED (no GPU visible)"); else status+=("$t: PASS"); fi
  else
    status+=("$t: FAIL (exit $?)"); grep -E "ERROR|FAIL|off; worst|relative error" "$OUT/$t.log" | head -40
  fi
  grep -E "test cases|skipped" "$OUT/$t.log" | tail -2
}
run_test test_cuda_attention
run_test test_attention_op
run_test test_attention

bench() {  # args...
  timeout 180 ./build-gpu/bin/attention_bench "$@" 2>&1 | tee -a "$OUT/attention_bench.log"
}
: >"$OUT/attention_bench.log"
bench --B 8 --H 12 --T 2048 --D 64
bench --B 8 --H 12 --T 2048 --D 64 --reps 30 --no-composite
bench --B 4 --H 16 --T 2048 --D 128 --no-composite
bench --B 8 --H 12 --T 2048 --D 64 --window 512 --no-composite
bench --B 8 --H 12 --T 2048 --D 64 --dtype f32 --reps 5 --no-composite

echo "SUMMARY:"
printf '  %s\n' "${status[@]}"
grep -E "^attention|^fused|^composite|error" "$OUT/attention_bench.log" | sed 's/^/  /'
