#!/usr/bin/env bash
# scripts/gpu_longctx_check.sh — the long-context evaluations of the 125M models at 1k ... 32k on
# one GPU, timed: `ttt eval --windows documents` (perplexity, bits per byte, loss by token index)
# and `ttt eval --task niah` (RULER S-NIAH), then the plots of scripts/plot_longctx.py and
# scripts/plot_niah.py.
#
#   scripts/gpu_longctx_check.sh                  synthetic long documents; each config of CONFIGS
#                                                 trained 2 steps at 2k (a checkpoint to evaluate)
#   CKPTS="A.h5 B.h5" DATA=DIR scripts/gpu_longctx_check.sh    trained checkpoints and their data
#
# Environment: BUILD (default build), WORK (scratch, default /tmp/ttt_gpu_longctx), CONFIGS
# (default "configs/125m_ttt_linear.yaml configs/125m_transformer.yaml"), CONTEXTS (default
# 1024,2048,4096,8192,16384,32768), MAX_WINDOWS (documents windows per context, default 4), DEPTHS
# (default 0,25,50,75,100), SAMPLES (per task, context and depth, default 2), NIAH_TASKS (default
# single_1,single_2,single_3), NIAH_BATCH (default 8), NIAH_GEN (generated tokens, default 128 as
# RULER), DTYPE (default bf16), DEVICE (default cuda).
# Prints the wall time of every evaluation and writes $WORK/summary.json, longctx.png, niah.png.
# Without a GPU, to try the flow: DEVICE=cpu DTYPE=fp32 CONFIGS=configs/tiny_ttt_linear.yaml
# CONTEXTS=512,1024 SAMPLES=1 DEPTHS=0,100 NIAH_GEN=16.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/ttt_gpu_longctx}
CONFIGS=${CONFIGS:-"configs/125m_ttt_linear.yaml configs/125m_transformer.yaml"}
CONTEXTS=${CONTEXTS:-1024,2048,4096,8192,16384,32768}
MAX_WINDOWS=${MAX_WINDOWS:-4}
DEPTHS=${DEPTHS:-0,25,50,75,100}
SAMPLES=${SAMPLES:-2}
NIAH_TASKS=${NIAH_TASKS:-single_1,single_2,single_3}
NIAH_BATCH=${NIAH_BATCH:-8}
NIAH_GEN=${NIAH_GEN:-128}
DTYPE=${DTYPE:-bf16}
DEVICE=${DEVICE:-cuda}
PY=$(command -v python3)
mkdir -p "$WORK"
echo "gpu_longctx_check: device $DEVICE, contexts $CONTEXTS; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" ttt >/dev/null
TTT=$BUILD/bin/ttt

# --- data: synthetic documents of ~50k tokens (documents windows at 32k need documents that long) ---
if [ -z "${DATA:-}" ]; then
  DATA=$WORK/data
  if [ ! -d "$DATA" ]; then
    mkdir -p "$WORK/corpus"
    # 12 documents of 6000 sentences (~60k tokens) from a small grammar (S-NIAH's text haystack needs sentences).
    "$PY" - "$WORK/corpus/long.jsonl" <<'PYEOF'
import json, random, sys
rng = random.Random(0)
who = ["the captain", "a sailor", "the old whale", "my friend", "the harbour master", "a stranger", "the crew"]
did = ["watched", "followed", "remembered", "painted", "carried", "described", "forgot", "answered"]
what = ["the grey sea", "a lantern", "the long voyage", "seven ropes", "the northern wind", "an empty boat"]
when = ["at dawn", "in the rain", "for many days", "before the storm", "without a word", "again"]
with open(sys.argv[1], "w") as f:
    for _ in range(12):
        text = " ".join(f"{rng.choice(who).capitalize()} {rng.choice(did)} {rng.choice(what)} {rng.choice(when)}."
                        for _ in range(6000))
        f.write(json.dumps({"text": text}) + "\n")
PYEOF
    "$TTT" tokenizer train --input "$WORK/corpus" --vocab-size 512 --out "$WORK/tok512.model" >/dev/null
    "$TTT" data prepare --input "$WORK/corpus" --tokenizer "$WORK/tok512.model" --out "$DATA" --val-docs 4 >/dev/null
  fi
  "$TTT" data info "$DATA" | head -5
fi

# --- checkpoints: given, or each config trained 2 steps at its own context -----------------------
if [ -z "${CKPTS:-}" ]; then
  CKPTS=""
  for cfg in $CONFIGS; do
    name=$(basename "$cfg" .yaml)
    run=$WORK/runs/$name
    if [ ! -f "$run/checkpoints/step_2.h5" ]; then
      rm -rf "$run"
      "$TTT" train --config "$cfg" --data "$DATA" --run-dir "$run" --device "$DEVICE" --set train.dtype="$DTYPE" \
        --set train.steps=2 --set train.warmup_steps=1 --set train.micro_batch=1 --set train.batch_tokens=4096 \
        --set train.lr=1e-4 > "$WORK/train_$name.log" 2>&1 || { tail -20 "$WORK/train_$name.log"; exit 1; }
    fi
    CKPTS="$CKPTS $run/checkpoints/step_2.h5"
  done
fi

# --- evaluations, timed ------------------------------------------------------------------------
declare -a DOC_JSON NIAH_JSON LABELS
TIMES=""
i=0
for ckpt in $CKPTS; do
  label=$(basename "$(dirname "$(dirname "$ckpt")")")
  LABELS+=("$label")
  doc=$WORK/eval_${i}_documents.json
  niah=$WORK/eval_${i}_niah.json
  t0=$(date +%s%N)
  "$TTT" eval --checkpoint "$ckpt" --data "$DATA" --device "$DEVICE" --dtype "$DTYPE" --windows documents \
    --context "$CONTEXTS" --max-windows "$MAX_WINDOWS" --batch 1 --out "$doc"
  t1=$(date +%s%N)
  "$TTT" eval --checkpoint "$ckpt" --data "$DATA" --device "$DEVICE" --dtype "$DTYPE" --task niah \
    --niah-tasks "$NIAH_TASKS" --context "$CONTEXTS" --depths "$DEPTHS" --samples "$SAMPLES" --batch "$NIAH_BATCH" --niah-gen "$NIAH_GEN" \
    --out "$niah"
  t2=$(date +%s%N)
  doc_ms=$(( (t1 - t0) / 1000000 )) niah_ms=$(( (t2 - t1) / 1000000 ))
  echo "$label: documents eval ${doc_ms} ms, S-NIAH ${niah_ms} ms"
  TIMES="$TIMES{\"label\": \"$label\", \"checkpoint\": \"$ckpt\", \"documents_ms\": $doc_ms, \"niah_ms\": $niah_ms},"
  DOC_JSON+=("$doc")
  NIAH_JSON+=("$niah")
  i=$((i + 1))
done
echo "{\"device\": \"$DEVICE\", \"dtype\": \"$DTYPE\", \"contexts\": \"$CONTEXTS\", \"runs\": [${TIMES%,}]}" > "$WORK/summary.json"

label_args=()
for l in "${LABELS[@]}"; do label_args+=(--label "$l"); done
"$PY" scripts/plot_longctx.py "${DOC_JSON[@]}" "${label_args[@]}" --out "$WORK/longctx.png"
"$PY" scripts/plot_niah.py "${NIAH_JSON[@]}" "${label_args[@]}" --out "$WORK/niah.png"
echo "gpu_longctx_check: done; $WORK/summary.json, $WORK/longctx.png, $WORK/niah.png"
