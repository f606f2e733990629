#!/usr/bin/env bash
# scripts/gpu_scan_profile.sh — where the fused TTT-Linear scan kernels spend their cycles (one
# device call): Nsight Compute on one forward and one backward launch of bench/ttt_scan_bench
# (125M layer shapes, bf16 products), warp-state statistics and per-SASS-instruction stall samples
# (CSV), plus a profiled `ttt bench` step of the 125M TTT-Linear. Clocks left as found.
# Usage: OUT=dir bash scripts/gpu_scan_profile.sh [B T]   (default 8 2048)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/logs}
mkdir -p "$OUT"
B=${1:-8}; T=${2:-2048}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null 2>&1
cmake --build build-gpu -j "$(nproc)" --target ttt_scan_bench ttt >"$OUT/build.log" 2>&1 || { grep error "$OUT/build.log" | head; exit 1; }
for k in fwd bwd; do
  ncu --clock-control none --kernel-name "regex:ttt_linear_${k}_kernel" --launch-skip 1 --launch-count 1 \
    --section WarpStateStats --section SourceCounters --section LaunchStats --section SpeedOfLight \
    -o "/tmp/$k" ./build-gpu/bin/ttt_scan_bench --B "$B" --T "$T" --reps 1 >/tmp/ncu_$k.log 2>&1
  echo "ncu $k rc=$?"; tail -2 /tmp/ncu_$k.log
  ncu --import "/tmp/$k.ncu-rep" --page details >"$OUT/${k}_details.txt" 2>&1
  ncu --import "/tmp/$k.ncu-rep" --page source --csv --print-source sass >"$OUT/${k}_sass.csv" 2>&1
  grep -E "Duration|Stall|Warp Cycles|Issued|Registers|Shared Memory" "$OUT/${k}_details.txt" | head -30
done
timeout 200 ./build-gpu/bin/ttt bench --config configs/125m_ttt_linear.yaml --device cuda --batch 8 --seq-len 2048 \
  --dtype bf16 --warmup 1 --repeat 1 --phases train --profile --out "$OUT/ttt_profile.json" >/dev/null 2>&1
echo "profile rc=$?"
