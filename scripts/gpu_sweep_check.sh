#!/usr/bin/env bash
# scripts/gpu_sweep_check.sh — the Table 1 ladder at 125M through scripts/sweep.py --device cuda,
# a few steps per row: checks that every row trains and evaluates on the GPU, and measures each
# row's training throughput, from which it prints the wall time of the full ladder (the paper's
# 4,800 steps x 0.5M tokens per row).
#
#   scripts/gpu_sweep_check.sh            on a machine with an NVIDIA GPU
#
# Environment: BUILD (build dir, default build), WORK (scratch, default /tmp/ttt_gpu_sweep),
# CONFIG (default configs/125m_ttt_linear.yaml), STEPS (per row, default 3), BATCH (tokens per
# step, default 65536; the paper's is 524288), DATA (a prepared data dir instead of the synthetic
# one), SETS (extra sweep.py arguments), DEVICE (default cuda). The machine needs no network: the
# corpus is synthetic (scripts/synthetic_data.py), enough for throughput, not for perplexity.
# To try the script without a GPU: DEVICE=cpu CONFIG=configs/tiny_ttt_linear.yaml BATCH=2048.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/ttt_gpu_sweep}
CONFIG=${CONFIG:-configs/125m_ttt_linear.yaml}
STEPS=${STEPS:-3}
BATCH=${BATCH:-65536}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$WORK"

[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" ttt >/dev/null
TTT=$BUILD/bin/ttt

if [ -z "${DATA:-}" ]; then
  DATA=$WORK/data
  "$PY" scripts/synthetic_data.py "$WORK" --ttt "$TTT"
fi

t0=$(date +%s)
# shellcheck disable=SC2086
"$PY" scripts/sweep.py --ttt "$TTT" --config "$CONFIG" --data "$DATA" --out-dir "$WORK/sweeps" --preset table1 \
  --device "${DEVICE:-cuda}" --set train.dtype=bf16 --set train.steps="$STEPS" --set train.batch_tokens="$BATCH" \
  --eval-windows 8 ${SETS:-}
echo "gpu_sweep_check: sweep wall time $(( $(date +%s) - t0 )) s"

# Per row: median tokens/s over the steps after the first, and the full ladder's time at that rate.
"$PY" - "$WORK/sweeps/table1" <<'EOF'
import json, os, statistics, sys
root = sys.argv[1]
rows = [r["name"] for r in json.load(open(os.path.join(root, "sweep.json")))["rows"]]
total_h = 0.0
print(f"{'row':<22} {'parameters':>11} {'tok/s':>10} {'4800 x 0.5M tokens':>20}")
for name in rows:
    run = os.path.join(root, name, "seed0")
    metrics = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    rates = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m and m["step"] > 1]
    result = json.load(open(os.path.join(run, "result.json")))
    rate = statistics.median(rates) if rates else float("nan")
    hours = 4800 * 524288 / rate / 3600
    total_h += hours
    print(f"{name:<22} {result['parameters']:>11,} {rate:>10,.0f} {hours:>18.1f} h")
print(f"{'full ladder (1 seed)':<45} {total_h:>18.1f} h")
la = [m["loss"] for m in map(json.loads, open(os.path.join(root, "linear_attn_improved/seed0/metrics.jsonl"))) if "loss" in m]
tt = [m["loss"] for m in map(json.loads, open(os.path.join(root, "ttt_equivalence/seed0/metrics.jsonl"))) if "loss" in m]
print("ttt_equivalence vs linear_attn_improved, largest relative loss difference (bf16 autocast):",
      f"{max(abs(a - b) / abs(a) for a, b in zip(la, tt)):.2e}")
EOF
