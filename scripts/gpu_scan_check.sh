#!/usr/bin/env bash
# scripts/gpu_scan_check.sh — the fused TTT-Linear scan on a GPU, in one go (one device call):
#   build   the scan's GPU test, its op benchmark and `ttt` (build-gpu/, sm_90)
#   test    test_ttt_linear_scan, test_ttt_mlp_scan, test_causal_conv, test_remat_io with TTT_REQUIRE_GPU=1 (CUDA vs the CPU reference, poisoned outputs)
#   op      bench/ttt_scan_bench (one layer, 125M shapes 8x2048 and 2x8192, bf16 and fp32 products)
#           beside fla's chunk_ttt_linear at the same shapes (scripts/bench_fla_ttt.py; fla's source
#           on PYTHONPATH from $FLA, default .fla/)
#   plans   ttt_scan_bench at both shapes under each backward plan (TTT_LINEAR_SCAN_PLAN=walk|chunks|chunks-serial)
#   model   ttt bench of the 125M TTT-Linear training step at 8x2048 and 2x8192 (bf16)
#   tf      the same for our 125M Transformer++ (the issue's other reference)
#   fla     scripts/bench_reference.py's same 125M TTT-Linear in PyTorch with fla's chunk_ttt_linear
#           as the scan (RUNS ttt_fla, ttt_fla_8k of scripts/bench_reference.sh)
# Usage: OUT=dir bash scripts/gpu_scan_check.sh [steps...]   (default: build test op model)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STEPS=${*:-build test op model}
FLA=${FLA:-.fla}
has() { [[ " $STEPS " == *" $1 "* ]]; }
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
git log -1 --format='commit %h %s' 2>/dev/null
if has build; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
  cmake --build build-gpu -j "$(nproc)" --target test_ttt_linear_scan test_ttt_mlp_scan test_causal_conv test_remat_io ttt_scan_bench ttt >"$OUT/build.log" 2>&1 ||
    { grep -E "error" "$OUT/build.log" | head -20; exit 1; }
  echo "build ok $(el)"
fi
if has test; then
  for t in test_ttt_linear_scan test_ttt_mlp_scan test_causal_conv test_remat_io; do
    TTT_REQUIRE_GPU=1 ./build-gpu/tests/$t >"$OUT/$t.log" 2>&1
    echo "$t rc=$? $(el)"; grep -E "ERROR|relative error|test cases|assertions" "$OUT/$t.log" | head -20
  done
fi
if has op; then
  for bt in "8 2048" "2 8192"; do
    set -- $bt
    ./build-gpu/bin/ttt_scan_bench --B "$1" --T "$2" --G 4
  done
  [ -n "${QUICK:-}" ] || ./build-gpu/bin/ttt_scan_bench --B 8 --T 2048 --G 1
  [ -n "${QUICK:-}" ] || ./build-gpu/bin/ttt_scan_bench --B 8 --T 2048 --G 4 --precision fp32 --reps 3
  PYTHONPATH="$FLA" python3 scripts/bench_fla_ttt.py --shapes 8x2048,2x8192 2>&1 | grep -v Warning
  echo "op $(el)"
fi
if has plans; then
  for plan in walk chunks chunks-serial; do
    for bt in "8 2048" "2 8192"; do
      set -- $bt
      echo "TTT_LINEAR_SCAN_PLAN=$plan"
      TTT_LINEAR_SCAN_PLAN=$plan timeout 60 ./build-gpu/bin/ttt_scan_bench --B "$1" --T "$2" --G 4
    done
  done
  echo "plans $(el)"
fi
if has model; then
  for bt in "8 2048" "2 8192"; do
    set -- $bt
    timeout 200 ./build-gpu/bin/ttt bench --config configs/125m_ttt_linear.yaml --device cuda --batch "$1" \
      --seq-len "$2" --dtype bf16 --warmup 1 --repeat 3 --phases train --out "$OUT/ttt_${1}x${2}.json" \
      >"$OUT/ttt_${1}x${2}.log" 2>&1
    echo "ttt bench ${1}x${2} rc=$? $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/ttt_${1}x${2}.json" | head -1) $(grep -o '"peak_memory_bytes": [0-9]*' "$OUT/ttt_${1}x${2}.json") $(el)"
  done
  # Where the step's time goes (each backend call synchronized and timed alone).
  [ -n "${QUICK:-}" ] || timeout 200 ./build-gpu/bin/ttt bench --config configs/125m_ttt_linear.yaml --device cuda --batch 8 --seq-len 2048 \
    --dtype bf16 --warmup 1 --repeat 1 --phases train --profile --out "$OUT/ttt_profile.json" >"$OUT/ttt_profile.log" 2>&1
  echo "profile rc=$? $(el)"
fi
if has tf; then
  for bt in "8 2048" "2 8192"; do
    set -- $bt
    timeout 200 ./build-gpu/bin/ttt bench --config configs/125m_transformer.yaml --device cuda --batch "$1" \
      --seq-len "$2" --dtype bf16 --warmup 1 --repeat 3 --phases train --out "$OUT/tf_${1}x${2}.json" \
      >/dev/null 2>&1
    echo "transformer bench ${1}x${2} rc=$? $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/tf_${1}x${2}.json" | head -1) $(grep -o '"peak_memory_bytes": [0-9]*' "$OUT/tf_${1}x${2}.json") $(el)"
  done
fi
if has fla; then
  FLA=$FLA RUNS="ttt_fla ttt_fla_8k" bash scripts/bench_reference.sh /tmp/fla_ref >/tmp/fla_ref.log 2>&1
  echo "fla reference rc=$? $(el)"; cat /tmp/fla_ref/summary.txt 2>/dev/null || tail -20 /tmp/fla_ref.log
fi
