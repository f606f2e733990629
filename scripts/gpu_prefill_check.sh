#!/usr/bin/env bash
# scripts/gpu_prefill_check.sh — TTT-Linear prefill through the fused scan on a GPU (issue 14), in
# one go (one device call):
#   build    the GPU tests and `ttt` (build-gpu/, sm_90)
#   test     test_ttt_linear_scan (CUDA vs the CPU reference, poisoned outputs; the per-sequence
#            initial state of chunked prefill included) and test_ttt_layer, test_language_model,
#            test_trainer_generate (prefill + decode == forward) with TTT_REQUIRE_GPU=1
#   prefill  ttt bench of the 125M TTT-Linear: prefill (init_decode + decode of the prompt, leaving
#            the decode state) and decode latency at batch 1 × 16384, bf16
#   latency  the same at contexts 1k..32k for the 125M TTT-Linear and Transformer++ at batch 1,
#            then scripts/plot_latency.py (latency.png)
# Usage: OUT=dir bash scripts/gpu_prefill_check.sh [steps...]   (default: build test prefill)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STEPS=${*:-build test prefill}
has() { [[ " $STEPS " == *" $1 "* ]]; }
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s]"; }
TESTS="test_ttt_linear_scan test_ttt_layer test_language_model test_trainer_generate"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
git log -1 --format='commit %h %s' 2>/dev/null
if has build; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
  # shellcheck disable=SC2086
  cmake --build build-gpu -j "$(nproc)" --target $TESTS ttt >"$OUT/build.log" 2>&1 ||
    { grep -E "error" "$OUT/build.log" | head -20; exit 1; }
  echo "build ok $(el)"
fi
if has test; then
  for t in $TESTS; do
    TTT_REQUIRE_GPU=1 ./build-gpu/tests/$t >"$OUT/$t.log" 2>&1
    echo "$t rc=$? $(el)"; grep -E "ERROR|relative error|test cases|assertions" "$OUT/$t.log" | head -20
  done
fi
bench() {  # label config contexts
  timeout 500 ./build-gpu/bin/ttt bench --config "configs/$2.yaml" --device cuda --dtype bf16 --batch 1 \
    --phases prefill,decode --contexts "$3" --decode-tokens 64 --warmup 1 --repeat 3 --out "$OUT/$1.json" \
    >"$OUT/$1.log" 2>&1
  echo "$1 rc=$? $(el)"; grep -E "^context" "$OUT/$1.log"
}
if has prefill; then
  bench prefill_ttt_16k 125m_ttt_linear 16384
fi
if has latency; then
  bench latency_ttt_linear 125m_ttt_linear 1024,2048,4096,8192,16384,32768
  bench latency_transformer 125m_transformer 1024,2048,4096,8192,16384,32768
  python3 scripts/plot_latency.py "$OUT/latency_ttt_linear.json" "$OUT/latency_transformer.json" \
    --label "TTT-Linear (M) 125M" --label "Transformer++ 125M" --out "$OUT/latency.png"
fi
