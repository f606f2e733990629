#!/usr/bin/env bash
# scripts/bench_reference.sh — the four PyTorch reference measurements of issue 7 (one GPU):
# Transformer++ and TTT-Linear, 125M, batch 8 x 2048, bf16 autocast, fwd+bwd+AdamW, eager and
# torch.compile. Run from anywhere on the GPU machine (its `python3` has torch with CUDA):
#   bash scripts/bench_reference.sh OUT_DIR            # all four, one JSON each in OUT_DIR + summary.txt
#   RUNS="ttt_eager ttt_compile" bash scripts/bench_reference.sh OUT_DIR   # a subset
# Step counts are kept small so the four finish in a few minutes: eager TTT-Linear takes seconds per
# step, and the compiled runs spend most of their time compiling during the warm-up steps. Each run
# has a wall-clock cap (timeout) so one slow compile cannot eat the whole device call; a run that
# fails or times out is reported and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_reference_out}
PY=${PYTHON:-python3}
RUNS=${RUNS:-"tf_eager tf_compile ttt_eager ttt_compile"}
mkdir -p "$OUT"
S=scripts/bench_reference.py
COMMON=${BENCH_ARGS:-"--batch 8 --seq-len 2048 --device cuda"}  # BENCH_ARGS="--device cpu --tiny": dry run

run() {  # name, wall-clock cap in seconds, arguments
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  rm -f "$OUT/$name.json"
  echo "=== $name: $PY $S $COMMON $* --json $OUT/$name.json"
  if ! timeout "$cap" "$PY" "$S" $COMMON "$@" --json "$OUT/$name.json"; then
    echo "=== $name FAILED or hit its ${cap}s cap"
  fi
  echo "=== $name took $((SECONDS - t0)) s"
}

for r in $RUNS; do
  case $r in
    tf_eager)    run tf_eager    90  --model transformer --warmup 3 --steps 10 ;;
    tf_compile)  run tf_compile  180 --model transformer --compile --warmup 3 --steps 10 ;;
    ttt_eager)   run ttt_eager   150 --model ttt_linear --warmup 2 --steps 5 --max-seconds 30 ;;
    ttt_compile) run ttt_compile 240 --model ttt_linear --compile --warmup 3 --steps 5 --max-seconds 30 ;;
    # fla's Triton TTT-Linear in the same model (PYTHONPATH must hold fla's source, e.g. FLA=.fla).
    ttt_fla)     PYTHONPATH="${FLA:-.fla}:${PYTHONPATH:-}" run ttt_fla 150 --model ttt_linear --scan fla --warmup 3 --steps 10 ;;
    ttt_fla_8k)  PYTHONPATH="${FLA:-.fla}:${PYTHONPATH:-}" run ttt_fla_8k 150 --model ttt_linear --scan fla --batch 2 --seq-len 8192 --warmup 3 --steps 10 ;;
    tf_eager_8k) run tf_eager_8k 90 --model transformer --batch 2 --seq-len 8192 --warmup 3 --steps 10 ;;
    tf_compile_8k) run tf_compile_8k 180 --model transformer --compile --batch 2 --seq-len 8192 --warmup 3 --steps 10 ;;
    *) echo "unknown run '$r' (tf_eager tf_compile ttt_eager ttt_compile ttt_fla ttt_fla_8k tf_eager_8k tf_compile_8k)"; exit 2 ;;
  esac
done

# One line per finished run, also kept as OUT/summary.txt.
"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import glob, json, os, sys
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    r = json.load(open(p))
    print(f"{os.path.basename(p):22s} {r['model']:12s} {r['mode']:8s} {r['tokens_per_s']:>10,.0f} tok/s "
          f"step {r['step_ms']:8.1f} ms  warm-up {r['warmup_s']:6.1f} s  peak {r['peak_mem_gb'] or 0:5.1f} GiB  "
          f"params {r['params']:,}  {r['device']}  torch {r['torch']}")
EOF
