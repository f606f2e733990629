#!/usr/bin/python3
"""scripts/plot_run.py — plots of `ttt train` runs and `ttt eval` reports (matplotlib).

  /usr/bin/python3 scripts/plot_run.py RUN_DIR [RUN_DIR ...] [--eval FILE_OR_DIR ...] [--out-dir DIR]

loss.png  training loss (thin) and validation loss (dots) against tokens seen, one colour per run,
          with the learning rate below;
eval.png  from eval JSON files (`ttt eval`; a directory means its newest .json): perplexity against
          context length, and loss by token position (the paper's "loss vs token index" view).
Files are written to --out-dir (default: the first RUN_DIR). Needs only matplotlib.
"""
import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by a crash
    return rows


def smooth(values, alpha=0.9):
    """Exponential moving average with bias correction (as TensorBoard shows curves)."""
    out, m = [], 0.0
    for i, v in enumerate(values):
        m = alpha * m + (1 - alpha) * v
        out.append(m / (1 - alpha ** (i + 1)))
    return out


def plot_runs(run_dirs, out_path):
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    for i, run in enumerate(run_dirs):
        rows = read_metrics(run)
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if "val_loss" in r]
        colour = f"C{i % 10}"
        name = os.path.basename(os.path.normpath(run))
        if train:
            x = [r["tokens"] for r in train]
            ax_loss.plot(x, [r["loss"] for r in train], color=colour, alpha=0.25, lw=0.8)
            ax_loss.plot(x, smooth([r["loss"] for r in train]), color=colour, lw=1.5, label=f"{name} train")
            ax_lr.plot(x, [r["lr"] for r in train], color=colour, lw=1.2)
        if val:
            ax_loss.plot([r["tokens"] for r in val], [r["val_loss"] for r in val], "o-", color=colour, ms=4,
                         lw=1, label=f"{name} val (last {val[-1]['val_loss']:.3f})")
    ax_loss.set_ylabel("loss (nats / token)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("tokens seen")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def resolve_eval(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.json")), key=os.path.getmtime)
            if found:
                files.append(found[-1])
        else:
            files.append(p)
    return files


def plot_eval(files, out_path):
    fig, (ax_ppl, ax_pos) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, path in enumerate(files):
        with open(path) as f:
            report = json.load(f)
        res = report["results"]
        label = f"{report.get('model', {}).get('name') or os.path.basename(path)} (step {report.get('step')})"
        colour = f"C{i % 10}"
        ax_ppl.plot([r["context"] for r in res], [r["ppl"] for r in res], "o-", color=colour, label=label)
        for j, r in enumerate(res):
            pos = r["loss_by_position"]
            centres = [s + pos["bucket_size"] / 2 for s in pos["bucket_start"]]
            ax_pos.plot(centres, pos["loss"], color=colour, alpha=0.35 + 0.65 * (j + 1) / len(res), lw=1.2,
                        label=f"context {r['context']}" if i == 0 else None)
    ax_ppl.set_xscale("log", base=2)
    ax_ppl.set_xlabel("context length (tokens)")
    ax_ppl.set_ylabel("perplexity")
    ax_ppl.grid(alpha=0.3)
    ax_ppl.legend(fontsize=8)
    ax_pos.set_xscale("log", base=2)
    ax_pos.set_xlabel("token position in the window")
    ax_pos.set_ylabel("mean loss")
    ax_pos.grid(alpha=0.3)
    ax_pos.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run directories (holding metrics.jsonl)")
    ap.add_argument("--eval", nargs="*", default=[], help="eval JSON files or directories of them")
    ap.add_argument("--out-dir", help="where to write the PNGs (default: the first run directory)")
    args = ap.parse_args()
    if not args.runs and not args.eval:
        ap.error("give at least one run directory or --eval file")
    out_dir = args.out_dir or (args.runs[0] if args.runs else os.path.dirname(args.eval[0]) or ".")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if args.runs:
        for run in args.runs:
            if not os.path.exists(os.path.join(run, "metrics.jsonl")):
                sys.exit(f"plot_run.py: {run} has no metrics.jsonl")
        written.append(os.path.join(out_dir, "loss.png"))
        plot_runs(args.runs, written[-1])
    files = resolve_eval(args.eval)
    if files:
        written.append(os.path.join(out_dir, "eval.png"))
        plot_eval(files, written[-1])
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
