#!/usr/bin/env bash
# scripts/gpu_ddp_check.sh — data-parallel training on GPUs through NCCL.
#
#   scripts/gpu_ddp_check.sh            on a machine with one or more NVIDIA GPUs
#
# Part 1 (any GPU count): `ttt train` of a tiny model (TINY_CONFIG) for a few steps on cuda:0,
#   (a) plain (local communicator, no launcher),
#   (b) `mpirun -np 1`                       (NCCL backend at world size 1, DataParallel on;
#                                             skipped when mpirun is missing),
#   (c) RANK=0 WORLD_SIZE=1 LOCAL_RANK=0     (NCCL backend, torchrun-style variables),
#   and checks that (b) and (c) log the NCCL backend and reproduce (a)'s losses; then
#   (d) as (c) with dist.timeline and small buckets: prints the per-bucket all-reduce timeline
#       (scripts/ddp_timeline.py) and fails unless some all-reduce started before backward ended;
#       with TIMELINE_BIG=1 also the same for BIG_CONFIG (BIG_SETS applied, 4 steps);
#   (e) as (c) with dist.zero=1 (ZeRO-1: NCCL reduce-scatter and all-gather at world size 1),
#       which must reproduce (a)'s losses.
# Part 2 (only with N >= 2 GPUs): the 125M TTT-Linear config (configs/125m_ttt_linear.yaml) at its
#   global batch on 1 GPU and on N GPUs (mpirun -np N, or N processes with RANK/WORLD_SIZE/
#   LOCAL_RANK and a TCP rendezvous when mpirun is missing), STEPS steps each; prints tokens/s of both,
#   the speedup and the scaling efficiency, and checks that the N-GPU loss curve matches 1 GPU;
#   then the same N-GPU run with dist.zero=1 (ZeRO-1): its loss curve, tokens/s and rank 0's peak
#   memory next to dist.zero 0's, and the AdamW moments each rank holds (from train.log).
# Part 3 (only with N >= 2 GPUs): ZeRO-1 checkpoints move between world sizes: the tiny model 4
#   steps on N ZeRO-1 ranks then the rest on 1 GPU, and 4 steps on 1 GPU then the rest on N ZeRO-1
#   ranks; both must continue (a)'s loss curve.
#
# Environment: BUILD (build dir, default build), WORK (scratch, default /tmp/ttt_gpu_ddp),
# TINY_CONFIG (default configs/tiny_transformer.yaml), BIG_CONFIG (default configs/125m_ttt_linear.yaml),
# STEPS (part 2 steps, default 12), BIG_SETS (extra --set flags for part 2), DATA (a prepared data dir to use instead of the synthetic one),
# OUT (where the summary JSON goes, default $WORK). The machine needs no network: the corpus is
# synthetic (random words), which is enough for throughput and for comparing loss curves.
# To try the script itself without a GPU: DEVICE=cpu NPROC=2 BIG_CONFIG=configs/tiny_transformer.yaml
# (the same flow on CPU ranks with the MPI backend).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/ttt_gpu_ddp}
STEPS=${STEPS:-12}
TINY_CONFIG=${TINY_CONFIG:-configs/tiny_transformer.yaml}
BIG_CONFIG=${BIG_CONFIG:-configs/125m_ttt_linear.yaml}
OUT=${OUT:-$WORK}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}   # keep NVLink SHARP off on these machines
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PY=$(command -v python3)
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then
  NGPU=${NPROC:-1}
  BACKEND=mpi
else
  NGPU=${NPROC:-$(nvidia-smi -L 2>/dev/null | wc -l)}
  BACKEND=nccl
  [ "$NGPU" -ge 1 ] || { echo "gpu_ddp_check: no GPU visible" >&2; exit 1; }
fi
mkdir -p "$WORK" "$OUT"
HAVE_MPIRUN=0
command -v mpirun >/dev/null 2>&1 && HAVE_MPIRUN=1

# launch N LOG ARGS...: N ranks of `ttt ARGS`, through mpirun when present, else as N background
# processes with torchrun-style variables (the NCCL id then goes through the TCP rendezvous).
launch() {
  local n=$1 log=$2
  shift 2
  if [ "$HAVE_MPIRUN" = 1 ]; then
    mpirun -np "$n" --bind-to none "$TTT" "$@" > "$log" 2>&1
    return
  fi
  local pids=() r status=0
  for r in $(seq 0 $((n - 1))); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 "$TTT" "$@" > "$log.rank$r" 2>&1 &
    pids+=($!)
  done
  for r in "${pids[@]}"; do wait "$r" || status=1; done
  cat "$log".rank* > "$log"
  return $status
}
echo "gpu_ddp_check: $NGPU device(s) ($DEVICE); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# --- build --------------------------------------------------------------------------------------------
[ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" ttt >/dev/null
TTT=$BUILD/bin/ttt

# --- data: a synthetic corpus, tokenizer and shards -----------------------------------------------------
if [ -z "${DATA:-}" ]; then
  DATA=$WORK/data
  "$PY" scripts/synthetic_data.py "$WORK" --ttt "$TTT"
fi

# Prints "step loss tokens_per_s" rows of a run's metrics.jsonl.
curve() {
  "$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r: print(r["step"], repr(r["loss"]), r["tokens_per_s"])' "$1/metrics.jsonl"
}

# Fails unless two runs have the same losses to rtol.
same_losses() {  # same_losses RUN_A RUN_B RTOL WHAT
  "$PY" - "$1/metrics.jsonl" "$2/metrics.jsonl" "$3" "$4" <<'EOF'
import json, sys
def losses(p): return [json.loads(l)["loss"] for l in open(p) if '"loss"' in l]
a, b, rtol, what = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
assert len(a) == len(b) and a, f"{what}: {len(a)} vs {len(b)} steps"
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"{what}: {len(a)} steps, largest relative loss difference {worst:.2e} (tolerance {rtol:g})")
sys.exit(0 if worst <= rtol else 1)
EOF
}

# --- part 1: NCCL at world size 1 -----------------------------------------------------------------------
TINY=(--config "$TINY_CONFIG" --data "$DATA" --device "$DEVICE"
      --set train.steps=8 --set train.micro_batch=4 --set train.batch_tokens=2048 --set train.log_every=1
      --set dist.timeout_s=120)
rm -rf "$WORK/tiny_local" "$WORK/tiny_mpirun" "$WORK/tiny_env"
"$TTT" train "${TINY[@]}" --run-dir "$WORK/tiny_local" > "$WORK/tiny_local.log" 2>&1
RUNS=(tiny_env)
if [ "$HAVE_MPIRUN" = 1 ]; then
  mpirun -np 1 --bind-to none "$TTT" train "${TINY[@]}" --run-dir "$WORK/tiny_mpirun" > "$WORK/tiny_mpirun.log" 2>&1
  RUNS+=(tiny_mpirun)
else
  echo "part 1: mpirun not found, skipping the mpirun -np 1 run"
fi
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
  "$TTT" train "${TINY[@]}" --run-dir "$WORK/tiny_env" > "$WORK/tiny_env.log" 2>&1
for run in "${RUNS[@]}"; do
  grep -q "backend $BACKEND" "$WORK/$run/train.log" || { echo "$run: the $BACKEND backend was not used" >&2; exit 1; }
  same_losses "$WORK/tiny_local" "$WORK/$run" 1e-5 "part 1: $run vs plain"
done
echo "part 1 OK: $BACKEND backend at world size 1 (${RUNS[*]})"

# (d) the all-reduce timeline at world size 1: buckets ready / all-reduce start / end vs the end of
# backward (GPU times from CUDA events on NCCL). Small buckets, so the last layers' all-reduce can
# start while the first layers' backward still runs.
timeline_run() {  # timeline_run NAME ARGS...
  local name=$1
  shift
  rm -rf "$WORK/$name"
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
    "$TTT" train "$@" --set dist.timeline=true --run-dir "$WORK/$name" > "$WORK/$name.log" 2>&1
  echo "part 1 (d): $name"
  "$PY" scripts/ddp_timeline.py "$WORK/$name" --require-overlap | tee "$OUT/$name.txt"
}
timeline_run tiny_timeline "${TINY[@]}" --set dist.bucket_mb=0.05
if [ "${TIMELINE_BIG:-0}" = 1 ]; then
  timeline_run big_timeline --config "$BIG_CONFIG" --data "$DATA" --device "$DEVICE" --set train.steps=4 \
    --set train.log_every=1 --set checkpoint.every=0 --set dist.timeout_s=300 ${BIG_SETS:-}
fi

# (e) ZeRO-1 at world size 1: the reduce-scatter / all-gather path, same losses as plain.
rm -rf "$WORK/tiny_zero"
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
  "$TTT" train "${TINY[@]}" --set dist.zero=1 --run-dir "$WORK/tiny_zero" > "$WORK/tiny_zero.log" 2>&1
grep -q "reduce-scatter, ZeRO-1" "$WORK/tiny_zero/train.log" || { echo "tiny_zero: ZeRO-1 was not used" >&2; exit 1; }
same_losses "$WORK/tiny_local" "$WORK/tiny_zero" 1e-5 "part 1 (e): ZeRO-1 at world size 1 vs plain"

# --- part 2: 125M TTT-Linear, 1 vs N GPUs ----------------------------------------------------------------
if [ "$NGPU" -lt 2 ]; then
  echo "part 2 skipped: needs at least 2 GPUs (found $NGPU)"
  exit 0
fi
BIG=(--config "$BIG_CONFIG" --data "$DATA" --device "$DEVICE"
     --set train.steps="$STEPS" --set train.log_every=1 --set checkpoint.every=0 ${BIG_SETS:-})
rm -rf "$WORK/big_1" "$WORK/big_$NGPU"
"$TTT" train "${BIG[@]}" --run-dir "$WORK/big_1" > "$WORK/big_1.log" 2>&1
launch "$NGPU" "$WORK/big_$NGPU.log" train "${BIG[@]}" --run-dir "$WORK/big_$NGPU"
same_losses "$WORK/big_1" "$WORK/big_$NGPU" 2e-3 "part 2: $NGPU GPUs vs 1 GPU" || echo "WARNING: loss curves differ"
"$PY" - "$WORK/big_1/metrics.jsonl" "$WORK/big_$NGPU/metrics.jsonl" "$NGPU" "$OUT/ddp_scaling.json" <<'EOF'
import json, statistics, sys
def tps(p):  # median tokens/s over the steps after the first 2 (warm-up: allocator, cuBLAS plans)
    rows = [json.loads(l) for l in open(p) if '"loss"' in l]
    return statistics.median(r["tokens_per_s"] for r in rows[2:])
one, many, n = tps(sys.argv[1]), tps(sys.argv[2]), int(sys.argv[3])
res = {"gpus": n, "tokens_per_s_1gpu": one, "tokens_per_s_ngpu": many, "speedup": many / one,
       "efficiency": many / one / n}
json.dump(res, open(sys.argv[4], "w"), indent=1)
print(f"part 2: 1 GPU {one:,.0f} tok/s | {n} GPUs {many:,.0f} tok/s | speedup {many/one:.2f}x | efficiency {100*many/one/n:.1f}%")
EOF

# ZeRO-1 on N GPUs: the same curve, its speed and memory next to dist.zero 0's.
rm -rf "$WORK/big_${NGPU}_zero"
launch "$NGPU" "$WORK/big_${NGPU}_zero.log" train "${BIG[@]}" --set dist.zero=1 --run-dir "$WORK/big_${NGPU}_zero"
same_losses "$WORK/big_1" "$WORK/big_${NGPU}_zero" 2e-3 "part 2: $NGPU GPUs ZeRO-1 vs 1 GPU" || echo "WARNING: loss curves differ"
same_losses "$WORK/big_$NGPU" "$WORK/big_${NGPU}_zero" 2e-3 "part 2: $NGPU GPUs ZeRO-1 vs dist.zero 0" ||
  echo "WARNING: loss curves differ"
"$PY" - "$WORK/big_$NGPU" "$WORK/big_${NGPU}_zero" "$OUT/ddp_zero.json" <<'EOF'
import json, re, statistics, sys
def summary(run):
    rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"loss"' in l]
    log = open(run + "/train.log").read()
    peaks = re.findall(r"peak mem ([0-9.]+ [kMGT]?B)", log)
    moments = re.search(r"AdamW moments per rank \(bytes\): ([0-9 ]+) \(unsharded: ([0-9]+)\)", log)
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows[2:]),
            "peak_mem_rank0": peaks[-1] if peaks else None,
            "moments_bytes_per_rank": [int(x) for x in moments.group(1).split()] if moments else None,
            "moments_bytes_unsharded": int(moments.group(2)) if moments else None}
res = {"zero0": summary(sys.argv[1]), "zero1": summary(sys.argv[2])}
json.dump(res, open(sys.argv[3], "w"), indent=1)
for k, v in res.items():
    print(f"part 2 {k}: {v['tokens_per_s']:,.0f} tok/s, rank 0 peak memory {v['peak_mem_rank0']}"
          + (f", AdamW moments per rank {v['moments_bytes_per_rank']} of {v['moments_bytes_unsharded']} bytes"
             if v["moments_bytes_per_rank"] else ""))
EOF

# --- part 3: ZeRO-1 checkpoints across world sizes (tiny model) -------------------------------------------
rm -rf "$WORK/tiny_zN_to_1" "$WORK/tiny_1_to_zN"
launch "$NGPU" "$WORK/tiny_zN_to_1.log" train "${TINY[@]}" --set dist.zero=1 --stop-at-step 4 --run-dir "$WORK/tiny_zN_to_1"
"$TTT" train "${TINY[@]}" --resume --run-dir "$WORK/tiny_zN_to_1" >> "$WORK/tiny_zN_to_1.log" 2>&1
same_losses "$WORK/tiny_local" "$WORK/tiny_zN_to_1" 1e-4 "part 3: 4 steps ZeRO-1 on $NGPU GPUs, then 1 GPU"
"$TTT" train "${TINY[@]}" --stop-at-step 4 --run-dir "$WORK/tiny_1_to_zN" > "$WORK/tiny_1_to_zN.log" 2>&1
launch "$NGPU" "$WORK/tiny_1_to_zN.resume.log" train "${TINY[@]}" --set dist.zero=1 --resume --run-dir "$WORK/tiny_1_to_zN"
same_losses "$WORK/tiny_local" "$WORK/tiny_1_to_zN" 1e-4 "part 3: 4 steps on 1 GPU, then ZeRO-1 on $NGPU GPUs"
echo "part 3 OK: ZeRO-1 checkpoints resume across world sizes"
