#!/usr/bin/env bash
# scripts/e2e_repro.sh — the small one-GPU reproduction of TTT-E2E (layers/e2e_model.h): E2E, SWA and
# full attention (configs/e2e_repro_{e2e,swa,full}.yaml: 8 blocks, d 512, context 4096, window 512,
# chunks of 256, 2 updated blocks) trained on the same long documents, then the loss by token index
# (E2E's must keep falling past the window while SWA's flattens) and the training cost per token at
# 8K context with the peak memory.
#
#   scripts/e2e_repro.sh data            # on any machine (CPU): corpus -> tokenizer -> shards (<= 60 MiB)
#   scripts/e2e_repro.sh train e2e|swa|full   # on the GPU, one run per call (a few minutes each)
#   scripts/e2e_repro.sh eval            # on the GPU: loss by position at 4096 for the three runs
#   scripts/e2e_repro.sh bench           # on the GPU: train step at 8192 tokens (BATCHES, default "1 8"),
#                                        # tokens/s and peak memory
#   scripts/e2e_repro.sh report          # anywhere: loss_by_position.png and summary.md
#
# The corpus: long documents already on a Debian machine set up by scripts/setup.sh — the Python
# standard library's modules (package libpython3.11-stdlib) and C/C++ headers under /usr/include of
# 16 KB or more, one document per file — plus Moby-Dick as one document (scripts/fetch_corpus.sh,
# public domain). Files are taken in sorted order until CORPUS_MB of text (default 70), so the same
# machine gives the same corpus. Everything is written under data_cache/e2e_repro/ and
# runs/e2e_repro/ (both ignored by git); data_cache/e2e_repro/data is what a GPU machine needs.
set -euo pipefail
cd "$(dirname "$0")/.."
TTT=${TTT:-build/bin/ttt}
PY=/usr/bin/python3
DATA=data_cache/e2e_repro
RUNS=runs/e2e_repro
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1 8}  # bench: batch sizes at 8192 tokens (8 x 8192: the reproduction's 64k tokens a step)

step_data() {
  mkdir -p "$DATA/corpus"
  bash scripts/fetch_corpus.sh "$DATA/fetched" >/dev/null
  "$PY" - "$DATA" "${CORPUS_MB:-70}" <<'EOF'
import glob, json, os, sys
out_dir, budget = sys.argv[1], float(sys.argv[2]) * 2**20
docs = []
# Moby-Dick, one document (the fetcher writes one line per chapter).
with open(os.path.join(out_dir, "fetched", "moby_dick.jsonl"), encoding="utf-8") as f:
    docs.append(("moby_dick", "\n\n".join(json.loads(l)["text"] for l in f)))
files = sorted(glob.glob("/usr/lib/python3.11/**/*.py", recursive=True)) + \
        sorted(p for ext in ("h", "hpp", "hh") for p in glob.glob("/usr/include/**/*." + ext, recursive=True))
for p in files:
    if os.path.islink(p) or os.path.getsize(p) < 16384:
        continue
    try:
        with open(p, encoding="utf-8") as f:
            docs.append((p, f.read()))
    except (UnicodeDecodeError, OSError):
        continue
    if sum(len(t) for _, t in docs) >= budget:
        break
total = sum(len(t) for _, t in docs)
with open(os.path.join(out_dir, "corpus", "long_docs.jsonl"), "w", encoding="utf-8") as f:
    for name, text in docs:
        f.write(json.dumps({"text": text, "source": name}) + "\n")
print(f"corpus: {len(docs)} documents, {total / 2**20:.1f} MiB of text")
EOF
  [ -s "$DATA/tok.model" ] || "$TTT" tokenizer train --input "$DATA/corpus" --vocab-size 8192 --out "$DATA/tok.model"
  rm -rf "$DATA/data"
  "$TTT" data prepare --input "$DATA/corpus/long_docs.jsonl" --tokenizer "$DATA/tok.model" --out "$DATA/data" \
    --val-docs 40 --threads "$(nproc)"
  "$TTT" data info "$DATA/data"
  local mib
  mib=$(du -sm "$DATA/data" | cut -f1)
  echo "shards: $mib MiB in $DATA/data"
  if [ "$mib" -gt 60 ]; then
    echo "error: the shards exceed 60 MiB; rerun with a smaller CORPUS_MB" >&2
    exit 1
  fi
}

step_train() {
  local v=$1
  "$TTT" train --config "configs/e2e_repro_$v.yaml" --data "$DATA/data" --run-dir "$RUNS/$v" --device "$DEVICE" \
    --set train.dtype=bf16 "${@:2}"
}

last_checkpoint() { ls "$RUNS/$1/checkpoints"/step_*.h5 | sort -V | tail -1; }

step_eval() {
  for v in e2e swa full; do
    "$TTT" eval --checkpoint "$(last_checkpoint "$v")" --data "$DATA/data" --device "$DEVICE" --dtype bf16 \
      --context 4096 --buckets 64 --out "$RUNS/$v/eval_4096.json"
  done
}

step_bench() {
  mkdir -p "$RUNS"
  for b in $BATCHES; do
    for v in e2e swa full; do
      "$TTT" bench --config "configs/e2e_repro_$v.yaml" --device "$DEVICE" --dtype bf16 --seq-len 8192 --batch "$b" \
        --phases train --repeat 3 --out "$RUNS/bench_8192_b${b}_$v.json"
    done
  done
}

step_report() {
  "$PY" - "$RUNS" <<'EOF'
import json, os, sys
runs = sys.argv[1]
rows, curves = [], {}
for v in ("e2e", "swa", "full"):
    ev = os.path.join(runs, v, "eval_4096.json")
    if os.path.exists(ev):
        r = json.load(open(ev))["results"][0]
        curves[v] = r
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        if name.startswith("bench_8192_b") and name.endswith(f"_{v}.json"):
            batch = int(name[len("bench_8192_b"):-len(f"_{v}.json")])
            rows.append((batch, v, json.load(open(os.path.join(runs, name)))))
lines = ["# TTT-E2E small reproduction", ""]
if curves:
    lines += ["## Loss at context 4096 (bf16)", "", "| model | loss | loss of positions < 512 | >= 2048 |", "|---|---|---|---|"]
    for v, r in curves.items():
        pos, loss = r["loss_by_position"]["bucket_start"], r["loss_by_position"]["loss"]
        early = [l for p, l in zip(pos, loss) if p < 512]
        late = [l for p, l in zip(pos, loss) if p >= 2048]
        lines.append(f"| {v} | {r['loss']:.4f} | {sum(early)/len(early):.4f} | {sum(late)/len(late):.4f} |")
if rows:
    lines += ["", "## Training step at 8192 tokens (bf16)", "", "| batch | model | tokens/s | cost per token vs full attention | peak memory (GiB) |", "|---|---|---|---|---|"]
    def tps(j):
        return j["train"]["tokens_per_s"]
    for batch, v, j in sorted(rows, key=lambda r: (r[0], ("e2e", "swa", "full").index(r[1]))):
        base = next((jj for bb, vv, jj in rows if bb == batch and vv == "full"), None)
        rel = tps(base) / tps(j) if base else float("nan")
        lines.append(f"| {batch} | {v} | {tps(j):.0f} | {rel:.2f}x | {j['train']['peak_memory_bytes'] / 2**30:.2f} |")
open(os.path.join(runs, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if curves:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v, r in curves.items():
        lp = r["loss_by_position"]
        ax.plot([p + lp["bucket_size"] / 2 for p in lp["bucket_start"]], lp["loss"], label=v)
    ax.axvline(512, color="gray", ls=":", label="window 512")
    ax.set_xscale("log")
    ax.set_xlabel("token index")
    ax.set_ylabel("loss (mean over windows)")
    ax.set_title("loss by token index, context 4096")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(runs, "loss_by_position.png"), dpi=120)
    print("wrote", os.path.join(runs, "loss_by_position.png"))
EOF
}

case "${1:-}" in
  data) step_data ;;
  train) [ $# -ge 2 ] || { echo "usage: $0 train e2e|swa|full [--set k=v ...]" >&2; exit 2; }; step_train "${@:2}" ;;
  eval) step_eval ;;
  bench) step_bench ;;
  report) step_report ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
