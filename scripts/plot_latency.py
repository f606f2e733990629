#!/usr/bin/python3
"""scripts/plot_latency.py — latency per token against context for several `ttt bench --contexts`
reports in one figure (matplotlib): the TTT paper's Figure 8, measured on our own code.

  build/bin/ttt bench --config configs/125m_ttt_linear.yaml --device cuda --dtype bf16 --batch 16 \\
      --phases prefill,decode --contexts 1024,2048,4096,8192,16384,32768 --out ttt_linear.json
  /usr/bin/python3 scripts/plot_latency.py ttt_linear.json transformer.json [--label NAME ...] [--out latency.png]

Left: prefill (init_decode + one decode call over the prompt) in ms per token of context, i.e. the
prefill's time / context. Right: decode in ms per token (one decode step of the batch, after a
prefill of that context). One line per file, log-2 context axis. A table of the numbers is
printed. Needs only matplotlib.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHASES = [("prefill", "prefill: ms per token of context"), ("decode", "decode: ms per token (one step)")]


def load(path):
    with open(path) as f:
        j = json.load(f)
    if not isinstance(j.get("contexts"), list) or not j["contexts"]:
        sys.exit(f"error: {path}: not a `ttt bench --contexts` report (no 'contexts' list)")
    return j


def default_label(path, j):
    model = j.get("model", {})
    name = model.get("mixer") or os.path.splitext(os.path.basename(path))[0]
    return f"{name} ({model.get('backbone', '?')}), batch {j.get('batch', '?')}, {j.get('dtype', '?')}"


def curve(j, phase):
    """(contexts, ms per token) of one phase, contexts ascending; rows without the phase skipped."""
    rows = sorted((r for r in j["contexts"] if phase in r), key=lambda r: r["context"])
    return [r["context"] for r in rows], [r[phase]["ms_per_token"] for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reports", nargs="+", help="JSON files written by `ttt bench --contexts ... --out FILE`")
    ap.add_argument("--label", action="append", default=[], help="a name per report, in order")
    ap.add_argument("--out", default="latency.png", help="the figure (PNG)")
    a = ap.parse_args()
    if a.label and len(a.label) != len(a.reports):
        sys.exit(f"error: --label given {len(a.label)} times for {len(a.reports)} reports")
    reports = [load(p) for p in a.reports]
    labels = a.label or [default_label(p, j) for p, j in zip(a.reports, reports)]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (phase, title) in zip(axes, PHASES):
        for j, label in zip(reports, labels):
            x, y = curve(j, phase)
            if x:
                ax.plot(x, y, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("ms per token")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=150)

    print(f"{'report':40s} {'context':>8s} {'prefill ms':>11s} {'prefill ms/tok':>15s} {'decode ms/tok':>14s}")
    for j, label in zip(reports, labels):
        for r in sorted(j["contexts"], key=lambda r: r["context"]):
            pre, dec = r.get("prefill"), r.get("decode")
            print(f"{label[:40]:40s} {r['context']:8d} "
                  f"{(1e3 * pre['time_s']) if pre else float('nan'):11.2f} "
                  f"{pre['ms_per_token'] if pre else float('nan'):15.4f} "
                  f"{dec['ms_per_token'] if dec else float('nan'):14.3f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
