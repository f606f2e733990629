#!/usr/bin/python3
"""scripts/plot_run.py — plots of `ttt train` runs and `ttt eval` reports (matplotlib).

  /usr/bin/python3 scripts/plot_run.py RUN_DIR [RUN_DIR ...] [--eval FILE_OR_DIR ...] [--out-dir DIR]

loss.png  training loss (thin: every step; thick: its moving average, the legend says over how many
          steps) and validation loss (dots; the one at step 0, the untrained model, unconnected)
          against tokens seen, one colour per run, with the learning rate below;
eval.png  from eval JSON files (`ttt eval`; a directory means its newest .json): perplexity against
          context length, and loss by token position (the paper's "loss vs token index" view),
          averaged into log-spaced ranges of positions, one colour per context length.
Files are written to --out-dir (default: the first RUN_DIR). Needs only matplotlib.
"""
import argparse
import glob
import json
import math
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


def smoothing_span(n):
    """Steps averaged for a curve of n steps: ~1/50 of the run, so a short run is not smoothed (an
    average over many steps would lag far behind its fast early fall)."""
    return max(1, n // 50)


def smooth(values, span):
    """Exponential moving average over ~span steps (alpha = 2 / (span + 1)), bias-corrected as
    TensorBoard's, so the first points are not pulled towards 0."""
    alpha = 1 - 2.0 / (span + 1)
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
            losses = [r["loss"] for r in train]
            span = smoothing_span(len(losses))
            if span > 1:
                ax_loss.plot(x, losses, color=colour, alpha=0.25, lw=0.8)
                ax_loss.plot(x, smooth(losses, span), color=colour, lw=1.5,
                             label=f"{name} train (moving average over {span} steps)")
            else:
                ax_loss.plot(x, losses, color=colour, lw=1.2, label=f"{name} train")
            ax_lr.plot(x, [r["lr"] for r in train], color=colour, lw=1.2)
        if val:
            # The step-0 point (the untrained model, ~ln(vocab)) stands alone: a line from it to the
            # first trained point would suggest a curve that was never measured.
            first = [r for r in val if r["step"] == 0]
            later = [r for r in val if r["step"] > 0]
            if first:
                ax_loss.plot([r["tokens"] for r in first], [r["val_loss"] for r in first], "o", color=colour, ms=4,
                             mfc="none")
            if later:
                ax_loss.plot([r["tokens"] for r in later], [r["val_loss"] for r in later], "o-", color=colour, ms=4,
                             lw=1, label=f"{name} val (last {later[-1]['val_loss']:.3f})")
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


def log_buckets(pos):
    """The equal-width loss-by-position buckets of a report averaged into ranges [2^k, 2^(k+1)) of
    positions (by bucket centre, weighted by bucket width): readable on a log axis, where equal
    buckets crowd at the right end. Returns (centres, losses)."""
    size = pos["bucket_size"]
    groups = {}
    for start, loss in zip(pos["bucket_start"], pos["loss"]):
        centre = start + size / 2
        k = int(math.floor(math.log2(max(centre, 1.0))))
        total, weight = groups.get(k, (0.0, 0.0))
        groups[k] = (total + loss * size, weight + size)
    keys = sorted(groups)
    return [1.5 * 2 ** k for k in keys], [groups[k][0] / groups[k][1] for k in keys]


def plot_eval(files, out_path):
    fig, (ax_ppl, ax_pos) = plt.subplots(1, 2, figsize=(11, 4.2))
    reports = []
    for path in files:
        with open(path) as f:
            reports.append(json.load(f))
    contexts = sorted({r["context"] for report in reports for r in report["results"]})
    colour_of = {c: f"C{j % 10}" for j, c in enumerate(contexts)}  # one colour per context length
    styles = ["-", "--", ":", "-."]                                 # one line style per report
    ppls = []
    for i, (path, report) in enumerate(zip(files, reports)):
        res = report["results"]
        label = f"{report.get('model', {}).get('name') or os.path.basename(path)} (step {report.get('step')})"
        style = styles[i % len(styles)]
        ppls += [r["ppl"] for r in res]
        ax_ppl.plot([r["context"] for r in res], [r["ppl"] for r in res], "o" + style, color="k", mfc="none",
                    label=label)
        for r in res:
            x, y = log_buckets(r["loss_by_position"])
            ax_pos.plot(x, y, style, marker=".", color=colour_of[r["context"]], lw=1.2,
                        label=f"context {r['context']}" + (f" ({label})" if len(files) > 1 else ""))
    if ppls:
        # Autoscaling a few close values gives an axis of a fraction of a point; show at least
        # +-5% around them.
        lo, hi = min(ppls), max(ppls)
        ax_ppl.set_ylim(0.95 * lo, 1.05 * hi)
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
