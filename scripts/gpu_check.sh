#!/usr/bin/env bash
# scripts/gpu_check.sh — everything that needs a GPU, in one go (one call on the GPU machine):
#   1. configure and build with CUDA for sm_90 (build-gpu/),
#   2. `ttt bench` of the 125M Transformer++ and TTT-Linear at batch 8 x 2048, bf16 autocast,
#   5. the NCCL world-size-1 training check (scripts/gpu_ddp_check.sh, part 1).
# Usage: OUT=dir bash scripts/gpu_check.sh [steps...]   steps default to "build test attention bench ddp".
# Logs and JSON go to $OUT; a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
JOBS=${JOBS:-$(nproc)}
STEPS=${*:-build bench test attention ddp}
export NCCL_NVLS_ENABLE=0 OMP_WAIT_POLICY=PASSIVE
summary=()
has() { [[ " $STEPS " == *" $1 "* ]]; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
T0=$(date +%s)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
git log -1 --format='commit %h %s' 2>/dev/null | tee "$OUT/commit.txt"

if has build; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; echo "SUMMARY: cmake failed"; exit 1; }
  if ! cmake --build build-gpu -j "$JOBS" >"$OUT/build.log" 2>&1; then
    grep -E "error|Error" "$OUT/build.log" | head -30
    echo "SUMMARY: build failed (see $OUT/build.log)"
    exit 1
  fi
  summary+=("build: ok ($(elapsed))")
fi

if has test; then
  (cd build-gpu && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TTT_REQUIRE_MPI=1 \
     ctest -j 8 --timeout 300 --output-on-failure >"../$OUT/ctest.log" 2>&1)
  summary+=("ctest: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1) ($(elapsed))")
  grep -E "^\s*[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Exception)" "$OUT/ctest.log" | sed 's/^/  FAILED: /'
  grep -E "test_cuda|attention" "$OUT/ctest.log" | grep -E "Passed|Failed" | sed 's/^/  /'
fi

if has attention; then
  OUT="$OUT/attention" bash scripts/gpu_attention_check.sh >"$OUT/attention.log" 2>&1
  summary+=("attention: see attention.log ($(elapsed))")
  sed -n '/SUMMARY:/,$p' "$OUT/attention.log" | sed 's/^/  /' | head -20
fi

if has bench; then
  for m in transformer ttt_linear; do
    timeout "${BENCH_TIMEOUT:-150}" ./build-gpu/bin/ttt bench --config "configs/125m_${m}.yaml" --device cuda --batch 8 --seq-len 2048 \
      --dtype bf16 --warmup 1 --repeat 3 --decode-tokens 64 --out "$OUT/bench_125m_${m}.json" >"$OUT/bench_125m_${m}.log" 2>&1
    rc=$?
    summary+=("bench 125m_${m}: rc=$rc train $(grep -A3 '"train"' "$OUT/bench_125m_${m}.json" 2>/dev/null | grep -o '"tokens_per_s": [0-9.]*' | head -1) ($(elapsed))")
    [ $rc -eq 0 ] || tail -5 "$OUT/bench_125m_${m}.log"
  done
fi

if has ddp; then
  BUILD=build-gpu timeout 150 bash scripts/gpu_ddp_check.sh >"$OUT/ddp.log" 2>&1
  summary+=("ddp (NCCL, 1 GPU): rc=$? ($(elapsed))")
  tail -8 "$OUT/ddp.log" | sed 's/^/  /'
fi

echo "SUMMARY:"
printf '  %s\n' "${summary[@]}"
