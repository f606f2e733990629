#!/usr/bin/python3
"""scripts/sweep.py — many `ttt train` runs from one base config, then CSVs and a plot.

  /usr/bin/python3 scripts/sweep.py --config configs/tiny_ttt_linear.yaml --data DATA --out-dir runs/ablations \\
      --preset table1 --seeds 0,1,2 --jobs 2 [--set train.steps=1500 ...]
  /usr/bin/python3 scripts/sweep.py --config C --data D --out-dir runs/ablations --grid model.ttt.mini_batch=1,4,16

Rows are a --preset, the cartesian product of the --grid axes, or the --run entries (each a list
of assignments, e.g. --run "model.ttt.mini_batch=8 train.lr=1e-3"). Presets:
  table1     paper Table 1, one row per paper row (linear attention of Katharopoulos et al., the
             improved one, TTT equivalence = the same model as the improved one, + learnable W0,
             + LN and residual, + mini-batch TTT, + learnable eta, + Mamba backbone)
  fig4       TTT mini-batch sizes b = 1, 2, 4, ... up to the training context (paper Fig. 4)
  contexts   training context 1k ... 32k at a fixed 0.5M-token batch (paper Fig. 7, 11, 12)
  extend     context extension: one finetune per context 1k ... 32k from the config's
             train.init_from (configs/125m_*_extend.yaml; paper App. C "TF finetune")
  fig2       the TTT paper's comparison set: Transformer++, Mamba, TTT-Linear, TTT-MLP (base: a Transformer config)
  e2e        the E2E paper's baselines: full attention, SWA, 5:1 hybrid, Mamba 2 / Gated DeltaNet / TTT-KVB + SWA
             (fig2 and e2e also write comparison.png: loss by context and by token index; sweeplib/comparisons.py)
The row table (what each row sets, and why where the paper is silent) is printed first;
--list prints it and stops.

Assignments apply in this order: the row's, then the seed's, then --set, so a --set always wins;
when it replaces a row's own value the sweep says so (the row is then not what its name says).
--seeds 0,1,2 runs every row once per seed (seed s sets model.seed = train.seed = s: the
initialization and the data order).

Layout: OUT_DIR/NAME/<row>/seed<s>/ is one run (`ttt train` run directory, then `ttt eval` of its
last checkpoint, result.json); NAME is --name (default: the preset, grid-<keys>, or runs). A run
whose directory holds a result.json with the same settings is reused; an unfinished one resumes;
a run directory, or a sweep of the same NAME, made with other settings stops the sweep before
anything runs (pick another --name). More --seeds extend a sweep: the finished seeds are reused.
OUT_DIR/NAME/ also gets runs.csv (a line per run), results.csv (a line per row: mean, std, min,
max over seeds), results.png and sweep.json (the command and the rows). Column meanings:
scripts/sweeplib/report.py, also printed by --help-columns.

--jobs N runs N runs at once, each with --threads T OpenMP/BLAS threads (default: cores / N);
OMP_WAIT_POLICY=PASSIVE unless set. --device cuda (or cuda:0,cuda:1,...: each job takes a free
one) trains and evaluates on the GPU.
"""
import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweeplib import report, runs  # noqa: E402
from sweeplib import rows as rowlib  # noqa: E402

# --- the papers' comparison sets (--preset fig2 | e2e: sweeplib/comparisons.py, the baselines' block) ---
from sweeplib import comparisons  # noqa: E402
rowlib.PRESETS.update(comparisons.PRESETS)

# The paper's setting for presets that carry the paper's values (shown beside ours in the plot).
PAPER_CAPTION = {"table1": "(Table 1: 125M, the Pile, context 2k)"}


class Context:
    """What every run of the sweep shares."""

    def __init__(self, args, user_sets):
        self.ttt = args.ttt
        self.config = os.path.abspath(args.config)
        self.data = os.path.abspath(args.data) if args.data else None
        self.eval_context = args.eval_context
        self.eval_windows = args.eval_windows
        self.user_sets = user_sets


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="base YAML config")
    ap.add_argument("--out-dir", required=True, help="folder of sweeps (each in OUT_DIR/NAME/)")
    ap.add_argument("--name", help="this sweep's name (default: the preset, or grid / runs / base)")
    ap.add_argument("--data", help="prepared data directory (passed to train and eval)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N, or a comma list the jobs share out")
    ap.add_argument("--set", action="append", default=[], help="assignment for every run (repeatable; wins)")
    ap.add_argument("--grid", action="append", default=[], help="axis key=v1,v2,... (repeatable: cartesian product)")
    ap.add_argument("--run", action="append", default=[], help='one run: "key=v key2=v2" (repeatable)')
    ap.add_argument("--preset", choices=sorted(rowlib.PRESETS), help="a paper sweep (see above)")
    ap.add_argument("--seeds", help="comma list: every row once per seed (model.seed = train.seed = s)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    ap.add_argument("--threads", type=int, help="OpenMP/BLAS threads per job (default: cores / jobs)")
    ap.add_argument("--eval-context", help="contexts for ttt eval, e.g. 1024,2048 (default: the run's own)")
    ap.add_argument("--eval-windows", type=int, default=0, help="windows per context (0 = all)")
    ap.add_argument("--paper", action=argparse.BooleanOptionalAction, default=None,
                    help="plot the paper's values beside ours (default: on for presets that have them)")
    ap.add_argument("--ttt", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "bin", "ttt"),
                    help="the ttt binary")
    ap.add_argument("--list", action="store_true", help="print the rows and what each sets, then stop")
    ap.add_argument("--dry-run", action="store_true", help="print the rows and the commands only")
    ap.add_argument("--help-columns", action="store_true", help="print what each CSV column means")
    if "--help-columns" in argv:
        print(report.__doc__.split("\n", 2)[2].strip())
        sys.exit(0)
    args = ap.parse_args(argv)
    if sum(bool(x) for x in (args.preset, args.run, args.grid)) > 1:
        ap.error("use one of --preset, --run, --grid")
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    try:
        for a in args.set + [g for g in args.grid] + [w for r in args.run for w in shlex.split(r)]:
            rowlib.key_of(a)
    except ValueError as e:
        ap.error(str(e))
    args.seed_list = None
    if args.seeds is not None:
        try:
            args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip() != ""]
        except ValueError:
            ap.error(f"--seeds: expected a comma list of integers, e.g. 0,1,2; got '{args.seeds}'")
        if not args.seed_list or min(args.seed_list) < 0 or len(set(args.seed_list)) != len(args.seed_list):
            ap.error(f"--seeds: expected distinct non-negative integers, got '{args.seeds}'")
        clash = [s for s in args.set if rowlib.key_of(s) in ("model.seed", "train.seed")]
        if clash:
            ap.error(f"--seeds sets model.seed and train.seed; drop {' '.join('--set ' + c for c in clash)}")
    return args


def sweep_name(args):
    if args.name:
        return args.name
    if args.preset:
        return args.preset
    if args.grid:
        return "grid-" + "-".join(rowlib.key_of(g).split(".")[-1] for g in args.grid)
    return "runs" if args.run else "base"


def build_rows(args, ctx):
    base = runs.resolved_config(ctx, args.set)
    if args.preset in comparisons.PRESETS:
        return comparisons.rows(args.preset, base), base
    if args.preset == "table1":
        return rowlib.table1(base["model"]["d_model"] // base["model"]["n_heads"]), base
    if args.preset == "fig4":
        return rowlib.fig4(base["train"]["seq_len"] or base["model"]["max_seq_len"]), base
    if args.preset == "contexts":
        return rowlib.contexts(), base
    if args.preset == "extend":
        if not base["train"].get("init_from"):
            sys.exit("sweep.py --preset extend: the config has no train.init_from (--set train.init_from=CHECKPOINT)")
        own_micro_batch = any(rowlib.key_of(s) == "train.micro_batch" for s in args.set)
        return rowlib.extend(base["model"]["mixer"], own_micro_batch), base
    if args.run:
        return rowlib.from_runs(args.run), base
    if args.grid:
        return rowlib.from_grid(args.grid), base
    return [rowlib.Row("base", [], [])], base


def warn_overrides(rows, user_sets):
    """One warning per --set that replaces a row's own value, naming the rows it changes."""
    by_set = {}
    for row in rows:
        for user, mine in rowlib.overridden(row, user_sets):
            by_set.setdefault(user, []).append(f"{row.name} ({mine})")
    for user, where in by_set.items():
        print(f"sweep: warning: --set {user} replaces the value of row(s) {', '.join(where)}: "
              "those rows are no longer what their names say", file=sys.stderr)


def make_specs(args, ctx, rows, sweep_dir):
    specs = []
    for row in rows:
        for seed in args.seed_list or [None]:
            sets = rowlib.run_sets(row, seed, args.set)
            resolved = runs.resolved_config(ctx, sets)
            run_dir = os.path.join(sweep_dir, row.name, runs.seed_dir_name(resolved))
            specs.append(runs.Spec(row, seed, sets, run_dir, resolved))
    dirs = [s.run_dir for s in specs]
    dup = sorted({d for d in dirs if dirs.count(d) > 1})
    if dup:
        raise SystemExit("sweep: two runs would share a directory (rows with the same name?): " + ", ".join(dup))
    return specs


def sweep_record(args, ctx, rows):
    """sweep.json: what this sweep is; the seeds are left out (more seeds extend the same sweep)."""
    return {"config": ctx.config, "data": ctx.data, "overrides": args.set,
            "rows": [{"name": r.name, "sets": r.sets, "changes": r.changes, "paper_label": r.paper_label,
                      "paper_value": r.paper_value, "note": r.note} for r in rows]}


def sweep_record_differences(sweep_dir, record):
    """Why the sweep already in sweep_dir is another one: a row of it that this one lacks or sets
    differently (its tables would be overwritten). [] if this sweep is it, or extends it with more
    rows; the runs' own settings are checked run by run (runs.check_reusable)."""
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        old = json.load(f)
    mine = {r["name"]: r["sets"] for r in record["rows"]}
    return [f"row {r['name']}: {' '.join(r['sets']) or '(base)'} there, " +
            (f"{' '.join(mine[r['name']]) or '(base)'} here" if r["name"] in mine else "not in this sweep")
            for r in old.get("rows", []) if mine.get(r["name"]) != r["sets"]]


def devices_of(args):
    return [d.strip() for d in args.device.split(",") if d.strip()] if args.device else [None]


def print_commands(ctx, specs, devices):
    for i, spec in enumerate(specs):
        device = devices[i % len(devices)]
        print("$ " + " ".join(shlex.quote(c) for c in runs.train_command(ctx, spec, device)))
        ckpt = os.path.join(spec.run_dir, "checkpoints", "step_N.h5")
        eval_json = os.path.join(spec.run_dir, "eval.json")
        print("$ " + " ".join(shlex.quote(c) for c in runs.eval_command(ctx, spec, device, ckpt, eval_json)))


def numeric_axis(args):
    if args.grid and len(args.grid) == 1:
        return rowlib.key_of(args.grid[0])
    return {"fig4": "model.ttt.mini_batch", "contexts": "model.max_seq_len",
            "extend": "model.max_seq_len"}.get(args.preset)


def write_reports(args, name, sweep_dir, rows, specs, results, base):
    by_row = {}
    for spec, r in zip(specs, results):
        if r is not None:
            by_row.setdefault(spec.row.name, []).append(r)
    if not by_row:
        return
    report.write_runs_csv(rows, by_row, args.set, os.path.join(sweep_dir, "runs.csv"))
    summ, contexts = report.summary(rows, by_row)
    report.write_summary_csv(summ, contexts, args.set, os.path.join(sweep_dir, "results.csv"))
    print(f"sweep: wrote {sweep_dir}/runs.csv (a line per run) and results.csv (a line per row, over seeds)")
    print(report.format_summary(summ))
    flat = [r for rs in by_row.values() for r in rs]
    seeds = args.seed_list or sorted({r["model_seed"] for r in flat})
    title = report.plot_title(name, base.get("name") or os.path.basename(args.config), [r["parameters"] for r in flat],
                              [r["steps"] for r in flat], [r["train_context"] for r in flat], seeds)
    show_paper = args.paper if args.paper is not None else any(r.paper_value is not None for r in rows)
    try:
        png = os.path.join(sweep_dir, "results.png")
        report.plot(summ, title, png, numeric_axis(args), show_paper, PAPER_CAPTION.get(args.preset, ""))
        print(f"sweep: wrote {png}")
        if args.preset in comparisons.PRESETS:
            comparisons.plot(specs, results, os.path.join(sweep_dir, "comparison.png"), title)
            print(f"sweep: wrote {sweep_dir}/comparison.png")
    except ImportError:
        print("sweep: matplotlib missing, no plot")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.path.exists(args.ttt):
        sys.exit(f"sweep.py: {args.ttt} not found (build it: scripts/build.sh)")
    ctx = Context(args, args.set)
    rows, base = build_rows(args, ctx)
    name = sweep_name(args)
    sweep_dir = os.path.join(args.out_dir, name)
    print(f"sweep '{name}': {len(rows)} rows" + (f" x {len(args.seed_list)} seeds" if args.seed_list else "") +
          f" in {sweep_dir}")
    print(rowlib.format_table(rows))
    warn_overrides(rows, args.set)
    if args.list:
        return 0
    specs = make_specs(args, ctx, rows, sweep_dir)
    problems = [p for p in (runs.check_reusable(s, ctx.data) for s in specs) if p]
    record = sweep_record(args, ctx, rows)
    if not problems:
        diffs = sweep_record_differences(sweep_dir, record)
        if diffs:
            problems = [f"{sweep_dir} holds another sweep:\n    " + "\n    ".join(diffs)]
    if problems:
        sys.exit("sweep: " + "\n".join(problems) +
                 "\nsweep: nothing was run; give this sweep another --name (or another --out-dir)")
    devices = devices_of(args)
    if args.dry_run:
        print_commands(ctx, specs, devices)
        return 0
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    print(f"sweep: {len(specs)} runs, {args.jobs} at a time" + (f", {threads} thread(s) each" if threads else ""))
    os.makedirs(sweep_dir, exist_ok=True)
    record["command"] = [sys.executable, os.path.abspath(__file__)] + (sys.argv[1:] if argv is None else argv)
    record["seeds"] = args.seed_list
    with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
        json.dump(record, f, indent=2)
    results, failures = runs.run_all(ctx, specs, args.jobs, devices, threads)
    write_reports(args, name, sweep_dir, rows, specs, results, base)
    if failures:
        print(f"sweep: {len(failures)} of {len(specs)} runs failed:", file=sys.stderr)
        for spec, err in failures:
            print(f"  {spec.run_dir}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
