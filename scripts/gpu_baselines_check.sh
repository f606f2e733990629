#!/usr/bin/env bash
# scripts/gpu_baselines_check.sh — the GPU work of the baseline mixers (issue 18), in one device call:
#   build  configure and build with CUDA for sm_90 into build-gpu/ (skipped when build-gpu/bin/ttt exists
#          and SKIP_BUILD=1)
#   test   the fused SSD, selective-scan and gated-delta kernels against the CPU references (test_cuda_ssd,
#          test_cuda_selective_scan, test_cuda_gated_delta, with TTT_REQUIRE_GPU=1), and the CPU-side suites of
#          the baselines (test_ssd_kernel, test_selective_scan_kernel, test_selective_scan_emulated,
#          test_gated_delta_kernel, test_gated_delta_emulated, test_baseline_scans, test_baseline_mixers,
#          test_golden_baselines)
#   scan   build-gpu/bin/selective_scan_bench: the fused Mamba-1 scan alone at the 125M layer's shape
#          (8 x 2048, d_inner 1536), beside its composite twin; build-gpu/bin/gated_delta_bench: the gated
#          delta kernels alone (the token walk and the chunked WY kernels) at the 125M Gated DeltaNet layer's
#          heads and (--mamba2) Mamba 2's, at 8 x 2048 and 2 x 8192, beside the composite forms when
#          SCAN_COMPOSITE=1; with NCU=1 also each kernel's time under Nsight Compute (ncu_gdn.txt)
#   bench  `ttt bench` of the 125M baselines, bf16 autocast: train (fwd + bwd + AdamW) at 8 x 2048 and
#          2 x 8192, prefill at 1 x 16384; Mamba 2 with its fused chunked SSD kernels, the recurrent (gated
#          delta) kernels, the chunked gated delta kernels (delta_chunked) and the composite form; Gated
#          DeltaNet with its fused kernels, its chunked kernels (gdn.kernel=chunked) and the composite; Mamba
#          with its fused scan and the composite; the 125M Transformer++ as the yardstick
#   fla    scripts/bench_baselines_fla.py at the same shapes (fla's Gated DeltaNet; fla's Mamba 2 on
#          state-spaces/mamba's Triton SSD; the same Mamba 2 on fla's chunk_simple_gla, mamba2_gla):
#          FLA=<flash-linear-attention tree> MAMBA=<mamba tree>
# Usage: OUT=dir [FLA=... MAMBA=...] [LABELS="transformer mamba2_fused ..."] bash scripts/gpu_baselines_check.sh [steps...]
#        (default: all five steps; LABELS limits the bench step to those labels, e.g. to leave out the slow composites)
# Files in $OUT: summary.txt (one line per measurement), tests.log, scan.txt, bench.jsonl, fla.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu/baselines}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STEPS=${*:-build test scan bench fla}
has() { [[ " $STEPS " == *" $1 "* ]]; }
TTT=build-gpu/bin/ttt
: >"$OUT/bench.jsonl"
: >"$OUT/fla.jsonl"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  git log -1 --format='commit %h %s' 2>/dev/null; } | tee "$OUT/summary.txt"

if has build && ! { [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$TTT" ]; }; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTTT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    >"$OUT/tests.log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >>"$OUT/tests.log" 2>&1 ||
    { echo "build FAILED (tail of tests.log)" | tee -a "$OUT/summary.txt"; tail -30 "$OUT/tests.log"; exit 1; }
  echo "build ok" | tee -a "$OUT/summary.txt"
fi

if has test; then
  for t in test_cuda_ssd test_cuda_selective_scan test_cuda_gated_delta test_ssd_kernel test_selective_scan_kernel \
           test_selective_scan_emulated test_gated_delta_kernel test_gated_delta_emulated \
           test_gated_delta_chunk_emulated test_baseline_scans \
           test_baseline_mixers test_golden_baselines; do
    if TTT_REQUIRE_GPU=1 build-gpu/tests/$t >>"$OUT/tests.log" 2>&1; then r=passed; else r=FAILED; fi
    echo "test $t: $r" | tee -a "$OUT/summary.txt"
  done
fi

if has scan; then
  if timeout 300 build-gpu/bin/selective_scan_bench --composite >"$OUT/scan.txt" 2>&1; then
    sed 's/^/scan /' "$OUT/scan.txt" | tee -a "$OUT/summary.txt"
  else
    echo "scan: selective_scan_bench failed (scan.txt)" | tee -a "$OUT/summary.txt"
  fi
  for args in "" "--B 2 --T 8192" "--mamba2" "--mamba2 --B 2 --T 8192"; do
    if timeout 300 build-gpu/bin/gated_delta_bench $args --chunked ${SCAN_COMPOSITE:+--composite} >"$OUT/.gdn.txt" 2>&1; then
      sed 's/^/scan /' "$OUT/.gdn.txt" | tee -a "$OUT/scan.txt" "$OUT/summary.txt"
    else
      echo "scan: gated_delta_bench $args failed" | tee -a "$OUT/summary.txt"; tail -5 "$OUT/.gdn.txt"
    fi
  done
  # NCU=1: each kernel's time (Nsight Compute, one run each) of the two gated delta forms at the 125M
  # layer's 8 x 2048 and 2 x 8192, into ncu_gdn.txt.
  if [ "${NCU:-0}" = 1 ]; then
    for args in "" "--B 2 --T 8192"; do
      echo "== gated_delta_bench $args --chunked" >>"$OUT/ncu_gdn.txt"
      timeout 300 ncu --metrics gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        --print-summary per-kernel build-gpu/bin/gated_delta_bench $args --chunked --reps 1 >>"$OUT/ncu_gdn.txt" 2>&1 ||
        echo "scan: ncu gated_delta_bench $args failed (ncu_gdn.txt)" | tee -a "$OUT/summary.txt"
    done
    grep -E "^==|gated|prep|state|out_kernel|grads|reduce|gpu__time_duration|sm__throughput" "$OUT/ncu_gdn.txt" |
      sed 's/^/ncu /' >>"$OUT/summary.txt"
  fi
fi

bench() {  # label, config, batch, seq, phase, extra --set args...
  local label=$1 cfg=$2 b=$3 t=$4 phase=$5; shift 5
  [ -z "${LABELS:-}" ] || [[ " $LABELS " == *" $label "* ]] || return 0
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  local tmp="$OUT/.bench.json"
  rm -f "$tmp"
  if timeout 300 "$TTT" bench --config "configs/$cfg.yaml" --device cuda --dtype bf16 --batch "$b" --seq-len "$t" \
      --phases "$phase" --warmup 1 --repeat 3 "${sets[@]}" --out "$tmp" >/dev/null 2>>"$OUT/tests.log"; then
    python3 - "$tmp" "$label" "$phase" "$b" "$t" >>"$OUT/bench.jsonl" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])); p = j[sys.argv[3]]
print(json.dumps({"label": sys.argv[2], "phase": sys.argv[3], "batch": int(sys.argv[4]), "seq_len": int(sys.argv[5]),
                  "tokens_per_s": p["tokens_per_s"], "peak_memory_bytes": p.get("peak_memory_bytes")}))
EOF
    tail -1 "$OUT/bench.jsonl" | tee -a "$OUT/summary.txt"
  else
    echo "{\"label\": \"$label\", \"phase\": \"$phase\", \"batch\": $b, \"seq_len\": $t, \"error\": \"failed or timed out\"}" |
      tee -a "$OUT/bench.jsonl" "$OUT/summary.txt"
  fi
}

if has bench; then
  for shape in "train 8 2048" "train 2 8192" "prefill 1 16384"; do
    set -- $shape
    bench transformer 125m_transformer "$2" "$3" "$1"
    bench mamba2_fused 125m_mamba2 "$2" "$3" "$1"
    bench mamba2_recurrent 125m_mamba2 "$2" "$3" "$1" model.mamba2.kernel=recurrent
    bench mamba2_composite 125m_mamba2 "$2" "$3" "$1" model.mamba2.kernel=composite
    bench gated_deltanet_fused 125m_gated_deltanet "$2" "$3" "$1"
    bench gated_deltanet_chunked 125m_gated_deltanet "$2" "$3" "$1" model.gdn.kernel=chunked
    bench gated_deltanet_chunked_tc 125m_gated_deltanet "$2" "$3" "$1" model.gdn.kernel=chunked_tc
    bench mamba2_delta_chunked 125m_mamba2 "$2" "$3" "$1" model.mamba2.kernel=delta_chunked
    bench mamba2_delta_chunked_tc 125m_mamba2 "$2" "$3" "$1" model.mamba2.kernel=delta_chunked_tc
    bench gated_deltanet_composite 125m_gated_deltanet "$2" "$3" "$1" model.gdn.kernel=composite
    bench ttt_kvb_swa 125m_ttt_kvb "$2" "$3" "$1"
    bench mamba_fused 125m_mamba "$2" "$3" "$1"
    bench mamba_composite 125m_mamba "$2" "$3" "$1" model.mamba.kernel=composite
  done
fi

if has fla; then
  for shape in "prefill 1 16384" "train 8 2048" "train 2 8192"; do  # prefill first: seconds, where training compiles for minutes
    set -- $shape
    for m in mamba2 mamba2_gla gated_deltanet; do
      if timeout 300 python3 scripts/bench_baselines_fla.py --model "$m" --mode "$1" --batch "$2" --seq-len "$3" --timing-only \
          ${FLA:+--fla-path "$FLA"} ${MAMBA:+--mamba-path "$MAMBA"} --json "$OUT/.fla.json" >>"$OUT/tests.log" 2>&1; then
        python3 -c "import json,sys; print(json.dumps(json.load(open('$OUT/.fla.json'))))" >>"$OUT/fla.jsonl"
        tail -1 "$OUT/fla.jsonl" | sed 's/^/fla /' | tee -a "$OUT/summary.txt"
      else
        echo "fla $m $1 $2x$3: failed or timed out (tests.log)" | tee -a "$OUT/summary.txt"
      fi
    done
  done
fi
rm -f "$OUT/.bench.json" "$OUT/.fla.json" "$OUT/.gdn.txt"
