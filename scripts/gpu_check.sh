#!/usr/bin/env bash
# scripts/gpu_check.sh — everything that needs a GPU, in one go (one call on the GPU machine):
#   build      configure and build with CUDA for sm_90 (build-gpu/),
#   bench      `ttt bench --profile` of the 125M Transformer++ and TTT-Linear, batch 8 x 2048, bf16 autocast,
#   test       the whole test suite (the GPU tests run instead of skipping: TTT_REQUIRE_GPU=1),
#   attention  the fused-attention checks and benchmark (scripts/gpu_attention_check.sh),
#   ddp        the NCCL world-size-1 training check (scripts/gpu_ddp_check.sh, part 1),
#   reference  the PyTorch reference (scripts/bench_reference.sh; RUNS selects its runs).
# Usage: OUT=dir bash scripts/gpu_check.sh [steps...]   (default: build bench test attention ddp)
# Few files go to $OUT (the device tool returns at most 8): summary.txt, ctest.log, attention.log,
# bench JSONs, ddp.log, reference.log; everything else stays under build-gpu/logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT" build-gpu/logs
OUT=$(cd "$OUT" && pwd)
JOBS=${JOBS:-$(nproc)}
STEPS=${*:-build bench test attention ddp}
LOGS=$(pwd)/build-gpu/logs
export NCCL_NVLS_ENABLE=0 OMP_WAIT_POLICY=PASSIVE
summary=()
has() { [[ " $STEPS " == *" $1 "* ]]; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
T0=$(date +%s)

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  git log -1 --format='commit %h %s' 2>/dev/null; } | tee "$OUT/summary.txt"

if has build; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$LOGS/cmake.log" 2>&1 || { tail -30 "$LOGS/cmake.log"; echo "SUMMARY: cmake failed"; exit 1; }
  if ! cmake --build build-gpu -j "$JOBS" >"$LOGS/build.log" 2>&1; then
    grep -E "error|Error" "$LOGS/build.log" | head -30
    echo "SUMMARY: build failed"
    exit 1
  fi
  summary+=("build: ok ($(elapsed))")
fi

if has test; then
  # TTT_REQUIRE_GPU=1: a GPU test that finds no GPU fails instead of skipping.
  (cd build-gpu && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TTT_REQUIRE_MPI=1 TTT_REQUIRE_GPU=1 \
     ctest -j 8 --timeout 300 --output-on-failure >"$OUT/ctest.log" 2>&1)
  summary+=("ctest: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1) ($(elapsed))")
  grep -E "^\s*[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Exception)" "$OUT/ctest.log" | sed 's/^/  FAILED: /'
  grep -E "test_cuda|attention" "$OUT/ctest.log" | grep -E "Passed|Failed" | sed 's/^/  /'
fi

if has attention; then
  OUT="$LOGS/attention" bash scripts/gpu_attention_check.sh >"$OUT/attention.log" 2>&1
  summary+=("attention: see attention.log ($(elapsed))")
  sed -n '/SUMMARY:/,$p' "$OUT/attention.log" | sed 's/^/  /' | head -20
fi

if has bench; then
  for m in transformer ttt_linear; do
    timeout "${BENCH_TIMEOUT:-150}" ./build-gpu/bin/ttt bench --config "configs/125m_${m}.yaml" --device cuda --batch 8 --seq-len 2048 \
      --dtype bf16 --warmup 1 --repeat 3 --decode-tokens 64 --profile --out "$OUT/bench_125m_${m}.json" \
      >"$LOGS/bench_125m_${m}.out" 2>"$OUT/bench_125m_${m}.log"
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

if has reference; then
  RUNS=${RUNS:-tf_eager ttt_eager tf_compile ttt_compile} bash scripts/bench_reference.sh "$LOGS/reference" \
    >"$OUT/reference.log" 2>&1
  summary+=("reference: rc=$? ($(elapsed))")
  cat "$LOGS/reference/summary.txt" 2>/dev/null | sed 's/^/  /'
fi

{ echo "SUMMARY:"; printf '  %s\n' "${summary[@]}"; } | tee -a "$OUT/summary.txt"
