#!/usr/bin/python3
"""scripts/plot_niah.py — heat maps of `ttt eval --task niah` results (matplotlib).

  /usr/bin/python3 scripts/plot_niah.py NIAH.json [NIAH.json ...] [--label NAME ...] [--out niah.png]

One row of panels per file (checkpoint), one panel per S-NIAH task: accuracy by needle depth
(rows) and context length (columns), 0 red to 1 green, each cell annotated, as the usual
needle-in-a-haystack heat maps. The accuracy by context of each task is printed (the E2E paper's
Table 2 layout). Needs only matplotlib.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        j = json.load(f)
    if j.get("task") != "niah" or "tasks" not in j:
        sys.exit(f"error: {path}: not a `ttt eval --task niah` report")
    return j


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", action="append", default=[], help="row name of each file, in order")
    ap.add_argument("--out", default="niah.png")
    args = ap.parse_args()
    reports = [load(p) for p in args.files]
    if len(args.label) > len(args.files):
        ap.error("more --label than files")
    labels = args.label + [f"{j.get('model', {}).get('name') or os.path.basename(p)} step {j.get('step', '?')}"
                           for p, j in zip(args.files[len(args.label):], reports[len(args.label):])]
    cols = max(len(j["tasks"]) for j in reports)
    fig, axes = plt.subplots(len(reports), cols, figsize=(4.2 * cols, 3.8 * len(reports)), squeeze=False,
                             constrained_layout=True)
    image = None
    for r, (label, j) in enumerate(zip(labels, reports)):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(j["tasks"]):
                ax.axis("off")
                continue
            t = j["tasks"][c]
            image = ax.imshow(t["grid"], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(t["contexts"])), [f"{x // 1024}k" if x % 1024 == 0 else str(x) for x in t["contexts"]])
            ax.set_yticks(range(len(t["depths"])), [f"{d}%" for d in t["depths"]])
            for y, row in enumerate(t["grid"]):
                for x, v in enumerate(row):
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=7)
            ax.set_title(f"{label}\n{t['name']} ({t['haystack']}, {t['key']} key, {t['value']})", fontsize=9)
            if r == len(reports) - 1:
                ax.set_xlabel("context")
            if c == 0:
                ax.set_ylabel("needle depth")
            print(f"{label} {t['name']}: " + "  ".join(f"{x}: {a:.2f}" for x, a in zip(t["contexts"], t["accuracy_by_context"])) +
                  f"  (all {t['accuracy']:.3f}, {t['total']} samples)")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="accuracy")
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
