"""scripts/sweeplib/comparisons.py — the two papers' comparison sets as sweep presets, and their plot
(loss by context and loss by token index, side by side). The mixers: layers/README.md "Baselines".

Rows are relative to a Transformer++ base config of the size to compare (configs/125m_transformer.yaml):
  fig2  the TTT paper's set (Fig. 1-2, 6-7): Transformer++, Mamba (twice the blocks and no MLP, as the Mamba
        paper stacks it), TTT-Linear (M), TTT-MLP (M).
  e2e   the E2E paper's baselines (Fig. 1, 4, 6; §3): full attention, SWA, 5 SWA : 1 full, Mamba 2 + SWA and
        Gated DeltaNet + SWA (alternating blocks, as NVlabs/GatedDeltaNet's H1 hybrid), TTT-KVB + SWA (SWA
        inside the layer, as LaCT). The window W is the base config's model.window if set, else a quarter of
        the training context (the paper: 8K at 8K-128K contexts); TTT-KVB updates every context/8 tokens
        (the paper: 1K at 8K). TTT-E2E itself is not a row here. Evaluate at longer contexts with
        --eval-context to see the differences of the paper's Fig. 1.
"""
import json
import os

from sweeplib.rows import Row

PRESETS = {"fig2": "the TTT paper's comparison set: Transformer++, Mamba, TTT-Linear (M), TTT-MLP (M)",
           "e2e": "the E2E paper's baselines: full attention, SWA, 5:1 hybrid, Mamba 2 / Gated DeltaNet / TTT-KVB + SWA"}


def rows(preset, base):
    layers = base["model"]["n_layers"]
    ctx = base["train"]["seq_len"] or base["model"]["max_seq_len"]
    if preset == "fig2":
        tf = ["model.backbone=transformer", "model.window=0", "model.pattern="]
        out = [("transformer", ["model.mixer=attention"] + tf, "Transformer++"),
               ("mamba", ["model.mixer=mamba", f"model.n_layers={2 * layers}", "model.d_ff=0"] + tf,
                "Mamba-1: 2x the blocks, no MLP (the Mamba paper's LM)"),
               ("ttt_linear_M", ["model.mixer=ttt_linear", "model.backbone=mamba", "model.pattern="], "TTT-Linear (M)"),
               ("ttt_mlp_M", ["model.mixer=ttt_mlp", "model.backbone=mamba", "model.pattern="], "TTT-MLP (M)")]
    else:
        w = base["model"]["window"] or max(1, ctx // 4)
        swa = ["model.backbone=transformer", f"model.window={w}"]
        out = [("full_attention", ["model.mixer=attention", "model.backbone=transformer", "model.window=0",
                                   "model.pattern="], "full attention"),
               ("swa", ["model.mixer=attention", "model.pattern="] + swa, f"sliding window {w}"),
               ("hybrid_5swa_1full", ["model.mixer=attention", "model.pattern=swa,swa,swa,swa,swa,attention"] + swa,
                "5 SWA : 1 full attention"),
               ("mamba2_swa", ["model.mixer=attention", "model.pattern=mamba2,swa"] + swa,
                "Mamba 2 and SWA blocks alternating"),
               ("gated_deltanet_swa", ["model.mixer=attention", "model.pattern=gated_deltanet,swa"] + swa,
                "Gated DeltaNet and SWA blocks alternating"),
               ("ttt_kvb_swa", ["model.mixer=ttt_kvb", "model.pattern=", f"model.kvb.mini_batch={max(16, ctx // 8)}"] + swa,
                "TTT-KVB with an SWA branch, fast weights updated every context/8 tokens")]
    return [Row(name, sets, sets, note=note) for name, sets, note in out]


def plot(specs, results, png, title):
    """Loss by context (left) and loss by token index at the longest evaluated context (right), one line
    per run (from each run's eval.json)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for spec, r in zip(specs, results):
        if r is None:
            continue
        label = spec.row.name + (f" s{spec.seed}" if spec.seed is not None else "")
        ctxs = sorted(int(c) for c in r["eval"])
        a1.plot(ctxs, [r["eval"][str(c)]["loss"] for c in ctxs], "o-", label=label)
        path = os.path.join(spec.run_dir, "eval.json")
        if os.path.exists(path):
            with open(path) as f:
                longest = max(json.load(f)["results"], key=lambda e: e["context"])
            by_pos = longest["loss_by_position"]
            a2.plot([s + 1 for s in by_pos["bucket_start"]], by_pos["loss"], label=f"{label} @{longest['context']}")
    a1.set_xscale("log", base=2)
    a1.set_xlabel("context length")
    a1.set_ylabel("validation loss")
    a2.set_xscale("log")
    a2.set_xlabel("token index")
    a2.set_ylabel("loss")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
