#!/usr/bin/env bash
# scripts/gpu_mlp_check.sh — the fused TTT-MLP scan on a GPU, in one go (one device call):
#   build   the scan's GPU test, its op benchmark and `ttt` (build-gpu/, sm_90)
#   test    test_ttt_mlp_scan with TTT_REQUIRE_GPU=1 (CUDA vs the CPU reference, poisoned outputs,
#           a bit-for-bit rerun, clusters of 2 and 4 blocks a head, their exchanges through cluster
#           and through transaction barriers, the layer's impl=auto against the dual form)
#   op      bench/ttt_mlp_scan_bench (one layer, 125M shapes 8x2048 and 2x8192, G 32 (the configs')
#           and 1, bf16), each with one block a head and clusters of 2 and 4 (--cluster 1,2,4); at
#           2x8192 again with TTT_MLP_SCAN_EXCHANGE=barrier (the default is async)
#   model   ttt bench of the 125M TTT-MLP training step at 8x2048 and 2x8192 (bf16), tok/s and peak
#           memory, with model.ttt.mlp_cluster auto (the config), 1 and 4 (2x8192: each also with
#           TTT_MLP_SCAN_EXCHANGE=barrier), beside the fused TTT-Linear and our Transformer++ at the same
#           shapes (issue 13)
# Usage: OUT=dir bash scripts/gpu_mlp_check.sh [steps...]   (default: build test op model)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
STEPS=${*:-build test op model}
has() { [[ " $STEPS " == *" $1 "* ]]; }
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
git log -1 --format='commit %h %s' 2>/dev/null
if has build; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
  cmake --build build-gpu -j "$(nproc)" --target test_ttt_mlp_scan ttt_mlp_scan_bench ttt >"$OUT/build.log" 2>&1 ||
    { grep -E "error" "$OUT/build.log" | head -20; exit 1; }
  echo "build ok $(el)"
fi
if has test; then
  TTT_REQUIRE_GPU=1 ./build-gpu/tests/test_ttt_mlp_scan >"$OUT/test_ttt_mlp_scan.log" 2>&1
  echo "test_ttt_mlp_scan rc=$? $(el)"
  grep -E "ERROR|relative error|not covered|test cases|assertions" "$OUT/test_ttt_mlp_scan.log" | head -30
fi
if has op; then
  for args in "--B 8 --T 2048 --G 32" "--B 2 --T 8192 --G 32" "--B 8 --T 2048 --G 1"; do
    # shellcheck disable=SC2086
    timeout 300 ./build-gpu/bin/ttt_mlp_scan_bench $args --cluster 1,2,4
  done
  echo "TTT_MLP_SCAN_EXCHANGE=barrier:"
  TTT_MLP_SCAN_EXCHANGE=barrier timeout 300 ./build-gpu/bin/ttt_mlp_scan_bench --B 2 --T 8192 --G 32 --cluster 2,4
  echo "op $(el)"
fi
# ttt bench of one 125M config at B x T (more arguments: passed on, e.g. --set ...): tokens/s and
# peak memory from its JSON.
bench_model() {
  local name=$1 config=$2 b=$3 t=$4
  shift 4
  timeout 300 ./build-gpu/bin/ttt bench --config "$config" --device cuda --batch "$b" --seq-len "$t" --dtype bf16 \
    --warmup 1 --repeat 3 --phases train --out "$OUT/${name}_${b}x${t}.json" "$@" >"$OUT/${name}_${b}x${t}.log" 2>&1
  echo "$name ${b}x${t} rc=$? $(grep -o '"tokens_per_s": [0-9.]*' "$OUT/${name}_${b}x${t}.json" | head -1)" \
    "$(grep -o '"peak_memory_bytes": [0-9]*' "$OUT/${name}_${b}x${t}.json") $(el)"
}
if has model; then
  for bt in "8 2048" "2 8192"; do
    set -- $bt
    bench_model ttt_mlp configs/125m_ttt_mlp.yaml "$1" "$2"
    bench_model ttt_mlp_cluster1 configs/125m_ttt_mlp.yaml "$1" "$2" --set model.ttt.mlp_cluster=1
    bench_model ttt_mlp_cluster4 configs/125m_ttt_mlp.yaml "$1" "$2" --set model.ttt.mlp_cluster=4
    if [[ $1 == 2 ]]; then
      TTT_MLP_SCAN_EXCHANGE=barrier bench_model ttt_mlp_barrier configs/125m_ttt_mlp.yaml "$1" "$2"
      TTT_MLP_SCAN_EXCHANGE=barrier bench_model ttt_mlp_barrier_cluster4 configs/125m_ttt_mlp.yaml "$1" "$2" \
        --set model.ttt.mlp_cluster=4
    fi
    bench_model ttt_linear configs/125m_ttt_linear.yaml "$1" "$2"
    bench_model transformer configs/125m_transformer.yaml "$1" "$2"
  done
fi
