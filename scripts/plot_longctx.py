#!/usr/bin/python3
"""scripts/plot_longctx.py — several checkpoints' `ttt eval` results in one figure (matplotlib).

  /usr/bin/python3 scripts/plot_longctx.py EVAL.json [EVAL.json ...] [--label NAME ...] [--out longctx.png]
      [--metric ppl|loss|bits_per_byte|word_perplexity] [--context L] [--delta-to LABEL]

Each EVAL.json is written by `ttt eval` (packed or --windows documents), one per checkpoint (a
model trained or finetuned at one context, or one model evaluated at several contexts).
Left: the metric against evaluation context length, one line per file (the TTT paper's Figures 3
and 12: perplexity by context). Right: the loss by token index, log-spaced buckets on a log axis,
at --context (default: the largest context every file has) — the TTT paper's Figure 2 (right) and
the E2E paper's Figure 6. With --delta-to LABEL both panels show the difference to that file
(E2E's "loss delta" to full attention). A table of the numbers is printed. Needs only matplotlib.
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = {"ppl": "perplexity", "loss": "loss (nats/token)", "bits_per_byte": "bits per byte",
           "word_perplexity": "word perplexity"}


def load(path):
    with open(path) as f:
        j = json.load(f)
    if "results" not in j:
        sys.exit(f"error: {path}: not a `ttt eval` perplexity report (no 'results')")
    return j


def default_label(path, j):
    model = j.get("model", {})
    name = model.get("name") or os.path.splitext(os.path.basename(path))[0]
    windows = j.get("protocol", {}).get("windows", "packed")
    return f"{name} step {j.get('step', '?')}" + (" (documents)" if windows == "documents" else "")


def by_context(j):
    return {r["context"]: r for r in j["results"]}


def metric_value(r, metric):
    v = r.get(metric)
    return float("nan") if v is None else float(v)


def token_index_curve(r):
    """(bucket centres, losses) of the log-spaced loss by token index; falls back to the
    equal-width buckets of reports written before it existed."""
    t = r.get("loss_by_token_index")
    if t:
        centres = [math.sqrt(s * (e - 1)) if e - 1 > s else s for s, e in zip(t["token_index_start"], t["token_index_end"])]
        return centres, t["loss"]
    p = r["loss_by_position"]
    return [s + 1 + p["bucket_size"] / 2 for s in p["bucket_start"]], p["loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="eval JSON files of `ttt eval`")
    ap.add_argument("--label", action="append", default=[], help="legend name of each file, in order")
    ap.add_argument("--out", default="longctx.png")
    ap.add_argument("--metric", choices=sorted(METRICS), default="ppl")
    ap.add_argument("--context", type=int, help="context of the token-index panel")
    ap.add_argument("--delta-to", help="label of the baseline: plot differences to it")
    args = ap.parse_args()

    reports = [load(p) for p in args.files]
    if len(args.label) > len(args.files):
        ap.error("more --label than files")
    labels = args.label + [default_label(p, j) for p, j in zip(args.files[len(args.label):], reports[len(args.label):])]
    base = None
    if args.delta_to:
        if args.delta_to not in labels:
            ap.error(f"--delta-to {args.delta_to!r} is none of the labels: {', '.join(labels)}")
        base = reports[labels.index(args.delta_to)]
    common = set.intersection(*(set(by_context(j)) for j in reports))
    context = args.context or (max(common) if common else None)

    fig, (ax_ctx, ax_idx) = plt.subplots(1, 2, figsize=(12, 4.8))
    print(f"{'model':40s} " + " ".join(f"{c:>10d}" for c in sorted(set().union(*(by_context(j) for j in reports)))))
    for i, (label, j) in enumerate(zip(labels, reports)):
        colour = f"C{i % 10}"
        rows = by_context(j)
        xs = sorted(rows)
        ys = [metric_value(rows[c], args.metric) for c in xs]
        if base is not None:
            b = by_context(base)
            xs = [c for c in xs if c in b]
            ys = [metric_value(rows[c], args.metric) - metric_value(b[c], args.metric) for c in xs]
        ax_ctx.plot(xs, ys, "o-", color=colour, label=label)
        print(f"{label[:40]:40s} " + " ".join(f"{metric_value(rows[c], args.metric):10.4f}" for c in sorted(rows)))
        at = context if context in rows else max(rows)
        x, loss = token_index_curve(rows[at])
        if base is not None:
            bx, bloss = token_index_curve(by_context(base).get(at, rows[at]))
            if bx != x:
                sys.exit(f"error: {label} and {args.delta_to} have different token-index buckets at context {at}")
            loss = [a - b for a, b in zip(loss, bloss)]
        ax_idx.plot(x, loss, "-", color=colour, label=label + ("" if at == context else f" (context {at})"))
    ax_ctx.set_xscale("log", base=2)
    ax_ctx.set_xlabel("context length (tokens)")
    ax_ctx.set_ylabel(METRICS[args.metric] + (f" − {args.delta_to}" if base is not None else ""))
    ax_ctx.set_title("by evaluation context")
    ax_idx.set_xscale("log")
    ax_idx.set_xlabel("token index")
    ax_idx.set_ylabel("loss" + (f" − {args.delta_to}" if base is not None else ""))
    ax_idx.set_title(f"loss by token index (context {context})")
    for ax in (ax_ctx, ax_idx):
        ax.grid(alpha=0.3)
        if base is not None:
            ax.axhline(0, color="k", lw=0.8)
    ax_idx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
