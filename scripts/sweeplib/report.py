"""scripts/sweeplib/report.py — a sweep's tables and plot: one CSV row per run, one per sweep row
with the mean and spread over seeds, a printed summary, and a matplotlib figure.

Column names say what each number is:
  train_loss_last10     mean training loss of the last 10 steps (metrics.jsonl)
  periodic_val_loss     the trainer's last periodic validation loss (train.eval_every, on
                        train.eval_windows windows; blank when train.eval_every = 0), at
                        periodic_val_step
  eval_loss@L, eval_ppl@L, eval_windows@L
                        `ttt eval` of the final checkpoint at context L (every window of the
                        validation split unless --eval-windows)
Over seeds: <metric>_mean, <metric>_std (sample standard deviation, n - 1; blank for one seed),
<metric>_min, <metric>_max, and n (the number of seeds that finished).
"""
import csv
import math
import statistics

METRICS = ("train_loss_last10", "periodic_val_loss")


def eval_contexts(results):
    return sorted({int(c) for r in results for c in r["eval"]})


def metric_values(r, contexts):
    """{column: value} of one run's numbers."""
    out = {m: r.get(m) for m in METRICS}
    for c in contexts:
        e = r["eval"].get(str(c), {})
        out[f"eval_loss@{c}"] = e.get("loss")
        out[f"eval_ppl@{c}"] = e.get("ppl")
    return out


def metric_columns(contexts):
    cols = list(METRICS)
    for c in contexts:
        cols += [f"eval_loss@{c}", f"eval_ppl@{c}"]
    return cols


def fmt(v):
    return "" if v is None else v


def write_runs_csv(rows, results_by_row, overrides, path):
    """One line per finished run, in row order then seed order."""
    flat = [r for row in rows for r in results_by_row.get(row.name, [])]
    contexts = eval_contexts(flat)
    head = (["row", "seed", "model_seed", "train_seed", "paper_label", "paper_value", "changes", "overrides",
             "parameters", "steps", "tokens", "train_context"] + list(METRICS) +
            ["periodic_val_step", "periodic_val_windows"])
    for c in contexts:
        head += [f"eval_loss@{c}", f"eval_ppl@{c}", f"eval_windows@{c}"]
    head += ["elapsed_s", "assignments"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for row in rows:
            for r in results_by_row.get(row.name, []):
                line = [row.name, fmt(r["seed"]), r["model_seed"], r["train_seed"], row.paper_label,
                        fmt(row.paper_value), " ".join(row.changes), " ".join(overrides), r["parameters"],
                        r["steps"], r["tokens"], r["train_context"]] + [fmt(r.get(m)) for m in METRICS]
                line += [fmt(r.get("periodic_val_step")), fmt(r.get("periodic_val_windows"))]
                for c in contexts:
                    e = r["eval"].get(str(c), {})
                    line += [fmt(e.get("loss")), fmt(e.get("ppl")), fmt(e.get("windows"))]
                line += [fmt(r.get("elapsed_s")), " ".join(r["sets"])]
                w.writerow(line)


def aggregate(values):
    """(mean, sample std or None, min, max, n) over the values that are not None."""
    v = [x for x in values if x is not None]
    if not v:
        return None, None, None, None, 0
    std = statistics.stdev(v) if len(v) > 1 else None
    return statistics.fmean(v), std, min(v), max(v), len(v)


def summary(rows, results_by_row):
    """[{row, seeds, n, metric_mean, metric_std, metric_min, metric_max, ...}] in row order."""
    flat = [r for row in rows for r in results_by_row.get(row.name, [])]
    contexts = eval_contexts(flat)
    out = []
    for row in rows:
        results = results_by_row.get(row.name, [])
        if not results:
            continue
        s = {"row": row, "seeds": [r["seed"] for r in results], "n": len(results),
             "own_context": results[0]["train_context"]}
        per_run = [metric_values(r, contexts) for r in results]
        for col in metric_columns(contexts):
            mean, std, lo, hi, _ = aggregate([p[col] for p in per_run])
            s[col] = {"mean": mean, "std": std, "min": lo, "max": hi, "values": [p[col] for p in per_run]}
        out.append(s)
    return out, contexts


def write_summary_csv(summ, contexts, overrides, path):
    cols = metric_columns(contexts)
    head = ["row", "paper_label", "paper_value", "changes", "overrides", "seeds", "n"]
    for c in cols:
        head += [f"{c}_mean", f"{c}_std", f"{c}_min", f"{c}_max"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for s in summ:
            row = s["row"]
            line = [row.name, row.paper_label, fmt(row.paper_value), " ".join(row.changes), " ".join(overrides),
                    " ".join(str(x) for x in s["seeds"]), s["n"]]
            for c in cols:
                a = s[c]
                line += [fmt(a["mean"]), fmt(a["std"]), fmt(a["min"]), fmt(a["max"])]
            w.writerow(line)


def own_ppl(s):
    """The aggregate of perplexity at the row's own training context (else the first evaluated)."""
    key = f"eval_ppl@{s['own_context']}"
    if key in s and s[key]["mean"] is not None:
        return s[key]
    for k, v in s.items():
        if k.startswith("eval_ppl@") and v["mean"] is not None:
            return v
    return None


def format_summary(summ):
    lines = []
    paper = any(s["row"].paper_value is not None for s in summ)
    for s in summ:
        p = own_ppl(s)
        if p is None:
            continue
        spread = f" ± {p['std']:.3f}" if p["std"] is not None else ""
        line = f"  {s['row'].name:<22} ppl@{s['own_context']} {p['mean']:9.3f}{spread}  (n={s['n']})"
        if paper and s["row"].paper_value is not None:
            line += f"   paper {s['row'].paper_value:g}"
        lines.append(line)
    return "\n".join(lines)


def axis_scale(xs):
    """'log2' for powers of two spanning >= 8x, 'log' for other positive values spanning >= 10x,
    else 'linear'."""
    if not xs or min(xs) <= 0:
        return "linear"
    ratio = max(xs) / min(xs)
    if all(math.log2(x).is_integer() for x in xs) and ratio >= 8:
        return "log2"
    return "log" if ratio >= 10 else "linear"


def plot(summ, title, path, numeric_axis=None, show_paper=False, paper_caption=""):
    """Mean perplexity at the own context with ± std error bars and each seed as a grey dot, by
    row, or over `numeric_axis` when every row has a positive numeric value for it; with
    `show_paper`, the paper's values in a panel of their own below (another model and scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(s, own_ppl(s)) for s in summ]
    points = [(s, p) for s, p in points if p is not None]
    xs = []
    if numeric_axis:
        try:
            xs = [float(dict(a.split("=", 1) for a in s["row"].sets)[numeric_axis]) for s, _ in points]
        except (KeyError, ValueError):
            xs = []
    numeric = bool(xs) and min(xs) > 0
    positions = xs if numeric else list(range(len(points)))
    paper = [(x, s["row"].paper_value) for x, (s, _) in zip(positions, points) if s["row"].paper_value is not None]
    two = show_paper and bool(paper)
    fig, axes = plt.subplots(2 if two else 1, 1, figsize=(9, 6.5 if two else 4.8), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]} if two else None)
    ax = axes[0][0]
    means = [p["mean"] for _, p in points]
    errs = [p["std"] or 0.0 for _, p in points]
    ax.errorbar(positions, means, yerr=errs, fmt="o-", capsize=4, color="C0", label="ours: mean ± std over seeds")
    for x, (_, p) in zip(positions, points):
        seeds = [v for v in p["values"] if v is not None]
        ax.plot([x] * len(seeds), seeds, ".", color="0.5", ms=5)
        text = f"{p['mean']:.2f}" + (f" ± {p['std']:.2f}" if p["std"] is not None else "")
        ax.annotate(text, (x, p["mean"]), ha="left", va="bottom", fontsize=7, xytext=(5, 2),
                    textcoords="offset points")
    ax.set_ylabel("validation perplexity\n(own training context)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    bottom = ax
    if two:
        bottom = axes[1][0]
        bottom.plot([x for x, _ in paper], [v for _, v in paper], "D--", color="C3", ms=5,
                    label=f"paper {paper_caption}".strip())
        for x, v in paper:
            bottom.annotate(f"{v:g}", (x, v), ha="left", va="bottom", fontsize=7, color="C3", xytext=(5, 2),
                            textcoords="offset points")
        bottom.set_ylabel("paper perplexity")
        bottom.legend(fontsize=8)
        bottom.grid(alpha=0.3)
    if numeric:
        scale = axis_scale(xs)
        if scale == "log2":
            ax.set_xscale("log", base=2)
        elif scale == "log":
            ax.set_xscale("log")
        bottom.set_xlabel(numeric_axis)
    else:
        bottom.set_xticks(positions)
        bottom.set_xticklabels([s["row"].name for s, _ in points], rotation=25, ha="right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def count_text(n):
    """7728 -> '7.7k', 125_100_000 -> '125.1M', 1.3e9 -> '1.30B'."""
    for div, unit, digits in ((1e9, "B", 2), (1e6, "M", 1), (1e3, "k", 1)):
        if n >= div:
            return f"{n / div:.{digits}f}{unit}"
    return str(n)


def plot_title(name, model_name, parameters, steps, contexts, seeds):
    def span(values, fmt_one=str):
        v = sorted(set(values))
        return fmt_one(v[0]) if len(v) == 1 else f"{fmt_one(v[0])}–{fmt_one(v[-1])}"

    params = span(parameters, count_text)
    seed_text = ",".join(str(s) for s in seeds)
    return (f"{name}: {model_name} ({params} parameters), {span(steps)} steps, "
            f"context {span(contexts)}, seeds {seed_text}")
