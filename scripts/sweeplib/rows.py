"""scripts/sweeplib/rows.py — what a sweep runs: its rows (presets, --grid, --run), their seeds,
and the order in which assignments apply (a row's, then the seed's, then the user's --set).

A Row is one line of the sweep's table: a name, the assignments that make it (`sets`, complete:
applied on top of the base config), what it changes relative to the row above (`changes`, for
the printed table and the CSV) and, for paper presets, the paper's label and value.
"""
import itertools
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    sets: list                      # every assignment of the row, in order
    changes: list = field(default_factory=list)  # the assignments that differ from the row above
    paper_label: str = ""           # the paper's name for the row (paper presets only)
    paper_value: float = None       # the paper's number for it (perplexity for Table 1)
    note: str = ""                  # why the row is set up this way, where the paper is silent


# Paper Table 1 (125M, the Pile, 2k context): linear attention -> TTT-Linear, row by row. Each
# entry: name, paper label, paper perplexity, assignments relative to the row above (None: from the
# base config), note. The TTT rows are cumulative from "ttt_equivalence". Where the paper does not
# say what a row changes, the choice is stated in the note and printed with the table.
THEOREM1 = ["model.mixer=ttt_linear", "model.backbone=transformer", "model.ttt.mini_batch=-1",
            "model.ttt.ln_residual=false", "model.ttt.learnable_w0=false", "model.ttt.inner_bias=false",
            "model.ttt.learnable_lr=false", "model.ttt.learnable_token_idx=false",
            "model.ttt.token_idx_mean=false", "model.ttt.rope=false", "model.ttt.post_norm=false",
            "model.ttt.base_lr={head_dim}"]

TABLE1 = [
    ("linear_attention", "Linear attention (Katharopoulos et al., 2020)", 15.91,
     ["model.mixer=linear_attention", "model.backbone=transformer",
      "model.linear_attention.feature_map=elu_plus_one", "model.linear_attention.normalize=true"],
     "phi(x) = elu(x) + 1 on q and k, outputs divided by sum_s phi(k_s).phi(q_t)"),
    ("linear_attn_improved", "Linear attn. improved", 15.23,
     ["model.linear_attention.feature_map=identity", "model.linear_attention.normalize=false"],
     "the paper does not say what it improves; its perplexity equals the next row's, so this is "
     "the form of Theorem 1: no feature map, no normalizer"),
    ("ttt_equivalence", "TTT equivalence", 15.23, THEOREM1,
     "Theorem 1: linear f(x) = xW (no bias), batch GD over the whole sequence (b = T), W0 = 0, "
     "eta 1/2 on |f(k) - v|^2 (base_lr = head_dim: the code's loss has 1/2 and eta 1/head_dim), "
     "no RoPE, no LayerNorm: the same model as linear_attn_improved (same parameters and outputs)"),
    ("+learnable_w0", "+ learnable W0", 15.27,
     ["model.ttt.learnable_w0=true", "model.ttt.inner_bias=true"],
     "the learned initial state is the official inner model's, (W0, b0)"),
    ("+ln_residual", "+ LN and residual in f", 14.05,
     ["model.ttt.ln_residual=true", "model.ttt.post_norm=true"],
     "f(x) = x + LN(f_res(x)); the official layer's LayerNorm on its output comes back here too"),
    ("+mini_batch_16", "+ mini-batch TTT", 12.35,
     ["model.ttt.mini_batch=16", "model.ttt.token_idx_mean=true", "model.ttt.learnable_token_idx=true",
      "model.ttt.rope=true"],
     "b = T -> 16, with what the official code does inside a mini-batch: gradient i weighted "
     "1/(i+1) (+ a learnable offset) and RoPE at positions t mod b"),
    ("+learnable_eta", "+ learnable eta", 11.99,
     ["model.ttt.learnable_lr=true", "model.ttt.base_lr=1.0"],
     "eta(x) = eta_base sigmoid(theta_lr . x) / head_dim with the paper's eta_base = 1 "
     "(the rows above: a fixed eta_base = head_dim)"),
    ("+mamba_backbone", "+ Mamba backbone", 11.09, ["model.backbone=mamba"],
     "causal convolutions before the mixer and on q, k; output gate (paper Fig. 9)"),
]
TABLE1_RESETS = {"ttt_equivalence"}  # rows that start again from the base config


def table1(head_dim):
    rows, acc = [], []
    for name, label, ppl, sets, note in TABLE1:
        sets = [s.format(head_dim=head_dim) for s in sets]
        if name in TABLE1_RESETS:
            acc = []
        acc = merge(acc, sets)
        rows.append(Row(name, list(acc), sets, label, ppl, note))
    return rows


def fig4(context):
    """TTT mini-batch sizes b = 1, 2, 4, ... up to the training context (paper Fig. 4)."""
    sizes = [b for b in (2 ** i for i in range(0, 16)) if b <= context]
    return [Row(f"mini_batch-{b}", [f"model.ttt.mini_batch={b}"], [f"model.ttt.mini_batch={b}"]) for b in sizes]


def contexts():
    """Training context 1k ... 32k at a fixed batch in tokens (paper Fig. 7, 11, 12)."""
    out = []
    for L in (1024, 2048, 4096, 8192, 16384, 32768):
        sets = [f"model.max_seq_len={L}", "train.seq_len=0"]
        out.append(Row(f"context-{L}", sets, sets))
    return out


PRESETS = {"table1": "the ablation ladder of paper Table 1, one row per paper row",
           "fig4": "TTT mini-batch sizes b = 1, 2, 4, ... up to the training context (paper Fig. 4)",
           "contexts": "training context 1k ... 32k at a fixed 0.5M-token batch (paper Fig. 7, 11, 12)"}


def key_of(assignment):
    if "=" not in assignment or assignment.startswith("="):
        raise ValueError(f"expected section.key=value, got '{assignment}'")
    return assignment.split("=", 1)[0].strip()


def merge(first, then):
    """first, then `then`; a key of `then` replaces the same key of `first` (keeping one entry)."""
    later = {key_of(a) for a in then}
    return [a for a in first if key_of(a) not in later] + list(then)


def run_name(assignments):
    parts = [f"{key_of(a).split('.')[-1]}-{a.split('=', 1)[1]}" for a in assignments]
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", "_".join(parts)) or "base"


def from_runs(run_args):
    return [Row(run_name(shlex.split(r)), shlex.split(r), shlex.split(r)) for r in run_args]


def from_grid(grid_args):
    axes = []
    for g in grid_args:
        key, values = g.split("=", 1)
        axes.append([f"{key}={v}" for v in values.split(",")])
    return [Row(run_name(list(c)), list(c), list(c)) for c in itertools.product(*axes)]


def seed_sets(seed):
    """A seed s sets both the initialization (model.seed) and the data order (train.seed)."""
    return [] if seed is None else [f"model.seed={seed}", f"train.seed={seed}"]


def overridden(row, user_sets):
    """[(user assignment, the row's assignment it replaces)] where the user's --set wins."""
    mine = {key_of(a): a for a in row.sets}
    out = []
    for u in user_sets:
        k = key_of(u)
        if k in mine and mine[k].split("=", 1)[1].strip() != u.split("=", 1)[1].strip():
            out.append((u, mine[k]))
    return out


def run_sets(row, seed, user_sets):
    """The assignments of one run: the row's, then the seed's, then the user's --set (last wins)."""
    return merge(merge(row.sets, seed_sets(seed)), user_sets)


def format_table(rows):
    """The rows as a text table: name, paper value, and exactly what each row changes."""
    lines = []
    show_paper = any(r.paper_label for r in rows)
    for i, r in enumerate(rows, 1):
        head = f"{i:>2}  {r.name:<22}"
        if show_paper:
            value = "" if r.paper_value is None else f"{r.paper_value:g}"
            head += f" paper: {r.paper_label} ({value})"
        lines.append(head.rstrip())
        lines.append("      sets: " + (" ".join(r.changes) if r.changes else "(the base config)"))
        if r.note:
            lines.append("      why:  " + r.note)
    return "\n".join(lines)
