#!/usr/bin/python3
"""scripts/sweep.py — many `ttt train` runs from one base config, then a CSV and a plot.

  /usr/bin/python3 scripts/sweep.py --config configs/125m_ttt_linear.yaml --data DATA --out-dir runs/fig4 \\
      --grid model.ttt.mini_batch=1,2,4,8,16,32,64 [--set train.steps=2000 ...]

Runs are the cartesian product of the --grid axes, or the --run entries (each a list of
assignments, e.g. --run "model.ttt.mini_batch=8 train.lr=1e-3"), or a --preset:
  table1     the ablation ladder of paper Table 1 (linear attention -> TTT-Linear, row by row)
  fig4       TTT mini-batch sizes b = 1, 2, 4, ... up to the training context (paper Fig. 4)
  contexts   training context 1k, 2k, ..., 32k at a fixed 0.5M-token batch (paper Fig. 7, 11, 12)
  fig2       the TTT paper's comparison set: Transformer++, Mamba, TTT-Linear, TTT-MLP (base: a Transformer config)
  e2e        the E2E paper's baselines: full attention, SWA, 5:1 hybrid, Mamba 2 / Gated DeltaNet / TTT-KVB + SWA
             (these two also write OUT_DIR/comparison.png: loss by context and by token index)
--set assignments apply to every run. Each run lives in OUT_DIR/<name>/; after training it is
evaluated (`ttt eval`, at --eval-context, default: its own training context) and a result.json is
written there. A run with a result.json is skipped; one with checkpoints but no result resumes.
OUT_DIR/results.csv gets one row per run, OUT_DIR/results.png the plot (matplotlib).
"""
import argparse
import csv
import itertools
import json
import os
import re
import shlex
import subprocess
import sys

# Paper Table 1, cumulative: each row adds its assignments to the previous row's. "TTT
# equivalence" is Theorem 1's setting (batch GD over the whole sequence, linear inner model
# without bias, W0 = 0, no LN, fixed eta: base_lr = head_dim makes eta = 1 after the 1/head_dim
# of the official parameterization, no RoPE since linear attention has none); it must match linear
# attention (tests/test_ttt_theorem1.cpp checks the layer-level equality).
TABLE1 = [
    ("linear_attention", ["model.mixer=linear_attention", "model.backbone=transformer"]),
    ("ttt_equivalence", ["model.mixer=ttt_linear", "model.backbone=transformer", "model.ttt.mini_batch=-1",
                         "model.ttt.ln_residual=false", "model.ttt.learnable_w0=false", "model.ttt.inner_bias=false",
                         "model.ttt.learnable_lr=false", "model.ttt.learnable_token_idx=false",
                         "model.ttt.token_idx_mean=false", "model.ttt.base_lr={head_dim}", "model.ttt.rope=false"]),
    ("+learnable_w0", ["model.ttt.learnable_w0=true", "model.ttt.inner_bias=true"]),
    ("+ln_residual", ["model.ttt.ln_residual=true"]),
    # RoPE with positions t mod b (official) only means something inside mini-batches: it comes
    # with them, as do the official 1/(i+1) in-mini-batch weights.
    ("+mini_batch_16", ["model.ttt.mini_batch=16", "model.ttt.token_idx_mean=true",
                        "model.ttt.learnable_token_idx=true", "model.ttt.rope=true"]),
    ("+learnable_eta", ["model.ttt.learnable_lr=true", "model.ttt.base_lr=1.0"]),
    ("+mamba_backbone", ["model.backbone=mamba"]),
]


# --- the papers' comparison sets (--preset fig2 | e2e; baselines: layers/README.md "Baselines") ---
# Relative to a Transformer++ base config (e.g. configs/125m_transformer.yaml) of the size to compare.
#   fig2  the TTT paper's set (Fig. 1-2, 6-7): Transformer++, Mamba (twice the blocks, no MLP, as the
#         Mamba paper stacks them), TTT-Linear (M), TTT-MLP (M).
#   e2e   the E2E paper's baselines (Fig. 1, 4, 6): full attention, SWA, 5 SWA : 1 full, Mamba 2 + SWA and
#         Gated DeltaNet + SWA (alternating blocks), TTT-KVB + SWA. The window W is the base config's
#         model.window if set, else a quarter of the training context (the E2E paper: 8K at 8K-128K);
#         TTT-KVB updates every context/8 tokens (E2E: 1K at 8K). Evaluate at longer contexts with
#         --eval-context to see the differences of Fig. 1.
COMPARISON_PRESETS = ("fig2", "e2e")


def comparison_runs(preset, base):
    layers, ctx = base["model"]["n_layers"], base["train"]["seq_len"] or base["model"]["max_seq_len"]
    if preset == "fig2":
        tf = ["model.backbone=transformer", "model.window=0"]
        return [("transformer", ["model.mixer=attention"] + tf),
                ("mamba", ["model.mixer=mamba", f"model.n_layers={2 * layers}", "model.d_ff=0"] + tf),
                ("ttt_linear_M", ["model.mixer=ttt_linear", "model.backbone=mamba"]),
                ("ttt_mlp_M", ["model.mixer=ttt_mlp", "model.backbone=mamba"])]
    w = base["model"]["window"] or max(1, ctx // 4)
    swa = ["model.backbone=transformer", f"model.window={w}"]
    return [("full_attention", ["model.mixer=attention", "model.backbone=transformer", "model.window=0"]),
            ("swa", ["model.mixer=attention"] + swa),
            ("hybrid_5swa_1full", ["model.mixer=attention", "model.pattern=swa,swa,swa,swa,swa,attention"] + swa),
            ("mamba2_swa", ["model.mixer=attention", "model.pattern=mamba2,swa"] + swa),
            ("gated_deltanet_swa", ["model.mixer=attention", "model.pattern=gated_deltanet,swa"] + swa),
            ("ttt_kvb_swa", ["model.mixer=ttt_kvb", f"model.kvb.mini_batch={max(16, ctx // 8)}"] + swa)]


def plot_comparison(args, results, path):
    """Loss by context (left) and loss by token index at the longest evaluated context (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        ctxs = sorted(int(c) for c in r["eval"])
        a1.plot(ctxs, [r["eval"][str(c)]["loss"] for c in ctxs], "o-", label=r["name"])
        with open(os.path.join(args.out_dir, r["name"], "eval.json")) as f:
            longest = max(json.load(f)["results"], key=lambda e: e["context"])
        by_pos = longest["loss_by_position"]
        a2.plot([s + 1 for s in by_pos["bucket_start"]], by_pos["loss"], label=f'{r["name"]} @{longest["context"]}')
    a1.set_xscale("log", base=2)
    a1.set_xlabel("context length")
    a1.set_ylabel("validation loss")
    a2.set_xscale("log")
    a2.set_xlabel("token index")
    a2.set_ylabel("loss")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"{args.preset}: {os.path.basename(os.path.normpath(args.out_dir))}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ttt_cmd(args, *words):
    return [args.ttt] + list(words)


def resolved_config(args, sets):
    """The resolved config (dict) of the base config with `sets`, as `ttt config show` prints it."""
    cmd = ttt_cmd(args, "config", "show", "--config", args.config)
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    import yaml  # python3-yaml, installed by scripts/setup.sh
    return yaml.safe_load(out)


def run_name(assignments):
    parts = []
    for a in assignments:
        key, value = a.split("=", 1)
        parts.append(f"{key.split('.')[-1]}-{value}")
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", "_".join(parts)) or "base"


def build_runs(args):
    """[(name, [assignments])] from --preset, --run or --grid."""
    base = resolved_config(args, args.set)
    if args.preset in COMPARISON_PRESETS:
        return comparison_runs(args.preset, base)
    if args.preset == "table1":
        head_dim = base["model"]["d_model"] // base["model"]["n_heads"]
        runs, acc = [], []
        for name, sets in TABLE1:
            acc = acc + [s.format(head_dim=head_dim) for s in sets]
            runs.append((name, list(acc)))
        return runs
    if args.preset == "fig4":
        ctx = base["train"]["seq_len"] or base["model"]["max_seq_len"]
        sizes = [b for b in (2 ** i for i in range(0, 16)) if b <= ctx]
        return [(f"mini_batch-{b}", [f"model.ttt.mini_batch={b}"]) for b in sizes]
    if args.preset == "contexts":
        return [(f"context-{L}", [f"model.max_seq_len={L}", "train.seq_len=0"])
                for L in (1024, 2048, 4096, 8192, 16384, 32768)]
    if args.run:
        return [(run_name(shlex.split(r)), shlex.split(r)) for r in args.run]
    if args.grid:
        axes = []
        for g in args.grid:
            key, values = g.split("=", 1)
            axes.append([f"{key}={v}" for v in values.split(",")])
        return [(run_name(list(c)), list(c)) for c in itertools.product(*axes)]
    return [("base", [])]


def read_metrics(run_dir):
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def newest_checkpoint(run_dir):
    ckpts = []
    d = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(d):
        for f in os.listdir(d):
            m = re.fullmatch(r"step_(\d+)\.h5", f)
            if m:
                ckpts.append((int(m.group(1)), os.path.join(d, f)))
    return max(ckpts)[1] if ckpts else None


def training_finished(run_dir):
    """Whether the run's last `ttt train` session reached the final step: train.log ends a session
    with "done: N steps" or, when it stopped early (train.max_minutes, SIGINT/SIGTERM,
    --stop-at-step; still exit status 0), with "interrupted at step N"."""
    finished = False
    path = os.path.join(run_dir, "train.log")
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                if "] done: " in line:
                    finished = True
                elif "] interrupted at step " in line:
                    finished = False
    return finished


def execute(cmd, args, log_path=None):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if args.dry_run:
        return
    if log_path:
        with open(log_path, "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    else:
        subprocess.run(cmd, check=True)


def do_run(args, name, assignments):
    run_dir = os.path.join(args.out_dir, name)
    result_path = os.path.join(run_dir, "result.json")
    if os.path.exists(result_path):
        print(f"sweep: {name}: finished, skipping")
        with open(result_path) as f:
            return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    sets = args.set + assignments
    cmd = ttt_cmd(args, "train", "--config", args.config, "--run-dir", run_dir)
    if args.data:
        cmd += ["--data", args.data]
    if args.device:
        cmd += ["--device", args.device]
    for s in sets:
        cmd += ["--set", s]
    if newest_checkpoint(run_dir):
        cmd.append("--resume")
    execute(cmd, args, os.path.join(run_dir, "sweep.log"))
    if args.dry_run:
        return None
    if not training_finished(run_dir):
        print(f"sweep: {name}: stopped before its last step; not recorded (running the sweep again resumes it)")
        return None
    cfg = resolved_config(args, sets)
    ctx = cfg["train"]["seq_len"] or cfg["model"]["max_seq_len"]
    contexts = args.eval_context or str(ctx)
    ckpt = newest_checkpoint(run_dir)
    eval_json = os.path.join(run_dir, "eval.json")
    ecmd = ttt_cmd(args, "eval", "--checkpoint", ckpt, "--context", contexts, "--out", eval_json)
    if args.data:
        ecmd += ["--data", args.data]
    if args.eval_windows:
        ecmd += ["--max-windows", str(args.eval_windows)]
    execute(ecmd, args, os.path.join(run_dir, "sweep.log"))
    with open(eval_json) as f:
        report = json.load(f)
    rows = read_metrics(run_dir)
    train = [r["loss"] for r in rows if "loss" in r]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    result = {
        "name": name,
        "assignments": assignments,
        "train_context": ctx,
        "parameters": report["model"]["parameters"],
        "steps": report["step"],
        "tokens": report["tokens_trained"],
        "final_train_loss": sum(train[-10:]) / len(train[-10:]) if train else None,
        "final_val_loss": val[-1] if val else None,
        "elapsed_s": rows[-1].get("elapsed_s") if rows else None,
        "eval": {str(r["context"]): {"loss": r["loss"], "ppl": r["ppl"]} for r in report["results"]},
    }
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    return result


def write_csv(results, path):
    keys = sorted({a.split("=", 1)[0] for r in results for a in r["assignments"]})
    contexts = sorted({int(c) for r in results for c in r["eval"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name"] + keys + ["parameters", "steps", "tokens", "final_train_loss", "final_val_loss",
                                       "elapsed_s"] + [f"ppl@{c}" for c in contexts])
        for r in results:
            vals = dict(a.split("=", 1) for a in r["assignments"])
            w.writerow([r["name"]] + [vals.get(k, "") for k in keys] +
                       [r["parameters"], r["steps"], r["tokens"], r["final_train_loss"], r["final_val_loss"],
                        r["elapsed_s"]] + [r["eval"].get(str(c), {}).get("ppl", "") for c in contexts])


def own_ppl(r):
    """Perplexity at the run's own training context (else at the first evaluated context)."""
    e = r["eval"].get(str(r["train_context"])) or next(iter(r["eval"].values()))
    return e["ppl"]


def plot(results, args, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    numeric_axis = None
    if args.grid and len(args.grid) == 1:
        numeric_axis = args.grid[0].split("=", 1)[0]
    elif args.preset in ("fig4", "contexts"):
        numeric_axis = "model.ttt.mini_batch" if args.preset == "fig4" else "model.max_seq_len"
    xs = []
    if numeric_axis:
        try:
            xs = [float(dict(a.split("=", 1) for a in r["assignments"])[numeric_axis]) for r in results]
        except (KeyError, ValueError):
            xs = []
    ys = [own_ppl(r) for r in results]
    if xs and all(x > 0 for x in xs):
        ax.plot(xs, ys, "o-")
        if max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(numeric_axis)
    else:
        ax.bar(range(len(ys)), ys)
        ax.set_xticks(range(len(ys)))
        ax.set_xticklabels([r["name"] for r in results], rotation=30, ha="right", fontsize=8)
        for i, y in enumerate(ys):
            ax.annotate(f"{y:.2f}", (i, y), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("validation perplexity (own context)")
    ax.set_title(os.path.basename(os.path.normpath(args.out_dir)))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="base YAML config")
    ap.add_argument("--out-dir", required=True, help="directory of the sweep (one subdirectory per run)")
    ap.add_argument("--data", help="prepared data directory (passed to train and eval)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N")
    ap.add_argument("--set", action="append", default=[], help="assignment for every run (repeatable)")
    ap.add_argument("--grid", action="append", default=[], help="axis key=v1,v2,... (repeatable: cartesian product)")
    ap.add_argument("--run", action="append", default=[], help='one run: "key=v key2=v2" (repeatable)')
    ap.add_argument("--preset", choices=["table1", "fig4", "contexts"] + list(COMPARISON_PRESETS),
                    help="a paper sweep (see above)")
    ap.add_argument("--eval-context", help="contexts for ttt eval, e.g. 1024,2048 (default: the run's own)")
    ap.add_argument("--eval-windows", type=int, default=0, help="windows per context (0 = all)")
    ap.add_argument("--ttt", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin", "ttt"),
                    help="the ttt binary")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args()
    if sum(bool(x) for x in (args.preset, args.run, args.grid)) > 1:
        ap.error("use one of --preset, --run, --grid")
    if not os.path.exists(args.ttt):
        sys.exit(f"sweep.py: {args.ttt} not found (build it: scripts/build.sh)")
    os.makedirs(args.out_dir, exist_ok=True)
    runs = build_runs(args)
    print(f"sweep: {len(runs)} runs in {args.out_dir}")
    results = []
    for name, assignments in runs:
        r = do_run(args, name, assignments)
        if r:
            results.append(r)
    if args.dry_run or not results:
        return
    csv_path = os.path.join(args.out_dir, "results.csv")
    write_csv(results, csv_path)
    print(f"sweep: wrote {csv_path}")
    try:
        png = os.path.join(args.out_dir, "results.png")
        plot(results, args, png)
        print(f"sweep: wrote {png}")
        if args.preset in COMPARISON_PRESETS:
            plot_comparison(args, results, os.path.join(args.out_dir, "comparison.png"))
            print(f"sweep: wrote {os.path.join(args.out_dir, 'comparison.png')}")
    except ImportError:
        print("sweep: matplotlib missing, no plot")


if __name__ == "__main__":
    main()
