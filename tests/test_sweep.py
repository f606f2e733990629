#!/usr/bin/python3
"""tests/test_sweep.py — scripts/sweep.py: the Table 1 rows (one per paper row, each changing
exactly what it says), a --set beating a preset, the CSV columns, aggregation over seeds, the
Theorem-1 row training exactly like linear attention, reuse and collisions of sweeps in one
folder. Trains tiny models for 3 steps on a corpus generated here (seconds).

Run: TTT_BIN=build/bin/ttt /usr/bin/python3 tests/test_sweep.py   (ctest runs it as test_sweep)
"""
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from sweeplib import report  # noqa: E402
from sweeplib import rows as rowlib  # noqa: E402

TTT = os.environ.get("TTT_BIN", os.path.join(ROOT, "build", "bin", "ttt"))
SWEEP = os.path.join(ROOT, "scripts", "sweep.py")
CONFIG = os.path.join(ROOT, "configs", "tiny_ttt_linear.yaml")
# A model small enough for seconds: 1 block, d 16, 2 heads (head_dim 8), context 32, 3 steps.
TINY = ["model.vocab_size=320", "model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.d_ff=32",
        "model.max_seq_len=32", "train.batch_tokens=128", "train.micro_batch=4", "train.steps=3",
        "train.warmup_steps=1", "train.lr=1e-2", "train.eval_every=3", "train.eval_windows=2",
        "checkpoint.keep_last=1"]


def ttt(*args):
    p = subprocess.run([TTT, *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def resolved(sets):
    import yaml
    cmd = ["config", "show", "--config", CONFIG]
    for s in sets:
        cmd += ["--set", s]
    return yaml.safe_load(ttt(*cmd))


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def sweep(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, SWEEP, "--ttt", TTT, *args], capture_output=True, text=True, env=env)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_text(path):
    with open(path) as f:
        return f.read()


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


class Table1Rows(unittest.TestCase):
    """The row table itself (no training)."""

    def test_one_row_per_paper_row(self):
        rows = rowlib.table1(head_dim=8)
        self.assertEqual([r.name for r in rows],
                         ["linear_attention", "linear_attn_improved", "ttt_equivalence", "+learnable_w0",
                          "+ln_residual", "+mini_batch_16", "+learnable_eta", "+mamba_backbone"])
        self.assertEqual([r.paper_value for r in rows], [15.91, 15.23, 15.23, 15.27, 14.05, 12.35, 11.99, 11.09])
        self.assertIn("Katharopoulos", rows[0].paper_label)
        self.assertIn("model.linear_attention.feature_map=elu_plus_one", rows[0].sets)
        self.assertIn("model.linear_attention.normalize=true", rows[0].sets)
        # The Theorem-1 row: eta = base_lr / head_dim = 1 on 1/2 |.|^2, no post LayerNorm.
        self.assertIn("model.ttt.base_lr=8", rows[2].sets)
        self.assertIn("model.ttt.post_norm=false", rows[2].sets)
        for r in rows:
            self.assertTrue(r.changes and set(r.changes) <= set(r.sets), r.name)

    def test_each_row_changes_exactly_what_it_says(self):
        # Resolved configs of consecutive rows differ in exactly the keys of the row's `changes`
        # (the Theorem-1 row starts again from the base, so there only a subset).
        rows = rowlib.table1(head_dim=8)
        configs = [flat(resolved(TINY + r.sets)) for r in rows]
        for prev, cur, row in zip(configs, configs[1:], rows[1:]):
            differ = {k for k in cur if cur[k] != prev[k]}
            declared = {rowlib.key_of(a) for a in row.changes}
            if row.name in rowlib.TABLE1_RESETS:
                self.assertLessEqual(differ, declared, row.name)
            else:
                self.assertEqual(differ, declared, row.name)
        self.assertEqual(configs[0]["model.mixer"], "linear_attention")
        self.assertEqual(configs[2]["model.mixer"], "ttt_linear")
        self.assertEqual(configs[-1]["model.backbone"], "mamba")

    def test_user_set_wins_over_a_row_and_is_reported(self):
        row = rowlib.table1(head_dim=8)[5]  # +mini_batch_16
        sets = rowlib.run_sets(row, 3, ["model.ttt.mini_batch=8", "model.d_ff=24"])
        cfg = resolved(TINY + sets)
        self.assertEqual(cfg["model"]["ttt"]["mini_batch"], 8)
        self.assertEqual((cfg["model"]["seed"], cfg["train"]["seed"]), (3, 3))
        self.assertEqual(rowlib.overridden(row, ["model.ttt.mini_batch=8", "model.d_ff=24"]),
                         [("model.ttt.mini_batch=8", "model.ttt.mini_batch=16")])
        p = sweep("--config", CONFIG, "--out-dir", "/nonexistent", "--preset", "table1", "--list",
                  "--set", "model.ttt.mini_batch=8")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("warning: --set model.ttt.mini_batch=8 replaces", p.stderr)
        self.assertIn("+mini_batch_16 (model.ttt.mini_batch=16)", p.stderr)
        self.assertIn("ttt_equivalence (model.ttt.mini_batch=-1)", p.stderr)
        self.assertNotIn("linear_attention (", p.stderr)  # the linear-attention rows do not set it

    def test_seeds_and_set_on_a_seed_key_is_an_error(self):
        p = sweep("--config", CONFIG, "--out-dir", "/nonexistent", "--seeds", "0,1", "--set", "model.seed=4", "--list")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--seeds sets model.seed and train.seed", p.stderr)
        p = sweep("--config", CONFIG, "--out-dir", "/nonexistent", "--seeds", "0,x", "--list")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--seeds", p.stderr)


class Reports(unittest.TestCase):
    def test_aggregate(self):
        mean, std, lo, hi, n = report.aggregate([2.0, None, 4.0, 9.0])
        self.assertEqual((mean, lo, hi, n), (5.0, 2.0, 9.0, 3))
        self.assertAlmostEqual(std, statistics.stdev([2.0, 4.0, 9.0]))
        self.assertEqual(report.aggregate([1.5])[1], None)  # no spread from one seed

    def test_axis_scale(self):
        self.assertEqual(report.axis_scale([1, 2, 4, 8, 16]), "log2")
        self.assertEqual(report.axis_scale([1e-4, 3e-4, 1e-3, 3e-3]), "log")  # lr: not a 2^x axis
        self.assertEqual(report.axis_scale([1e-3, 2e-3]), "linear")

    def test_plot_title_says_model_steps_context_seeds(self):
        t = report.plot_title("table1", "tiny_ttt_linear", [150000, 160000], [1500], [128], [0, 1, 2])
        self.assertEqual(t, "table1: tiny_ttt_linear (150.0k–160.0k parameters), 1500 steps, context 128, seeds 0,1,2")
        self.assertIn("(125.1M parameters)", report.plot_title("x", "m", [125_100_000], [1], [2048], [0]))


class EndToEnd(unittest.TestCase):
    """Real sweeps through the ttt binary on a tiny generated corpus."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ttt_test_sweep_")
        rng = random.Random(7)
        subj = ["the cat", "a dog", "the old man", "my sister", "the bird", "a child"]
        verb = ["sees", "likes", "follows", "finds", "hears", "draws"]
        obj = ["the sea", "a red ball", "the white whale", "the ship", "a small house", "the moon"]
        corpus = os.path.join(cls.tmp, "corpus.jsonl")
        with open(corpus, "w") as f:
            for _ in range(160):
                text = " ".join(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}."
                                for _ in range(rng.randint(4, 9)))
                f.write(json.dumps({"text": text}) + "\n")
        tok = os.path.join(cls.tmp, "tok.model")
        ttt("tokenizer", "train", "--input", corpus, "--vocab-size", "320", "--out", tok)
        cls.data = os.path.join(cls.tmp, "data")
        ttt("data", "prepare", "--input", corpus, "--tokenizer", tok, "--out", cls.data, "--val-docs", "16", "--quiet")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def base_args(self, out, *extra):
        args = ["--config", CONFIG, "--data", self.data, "--out-dir", out, "--eval-windows", "4"]
        for s in TINY:
            args += ["--set", s]
        return args + list(extra)

    def test_table1_with_seeds(self):
        out = os.path.join(self.tmp, "sweeps")
        args = self.base_args(out, "--preset", "table1", "--seeds", "0,1", "--jobs", "2", "--threads", "1")
        p = sweep(*args)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        sdir = os.path.join(out, "table1")
        names = [r.name for r in rowlib.table1(8)]

        # runs.csv: a line per (row, seed), the settings that made it, each loss named for what it is.
        runs = read_csv(os.path.join(sdir, "runs.csv"))
        self.assertEqual([(r["row"], r["seed"]) for r in runs], [(n, s) for n in names for s in ("0", "1")])
        for col in ("model_seed", "train_seed", "overrides", "changes", "paper_value", "train_loss_last10",
                    "periodic_val_loss", "periodic_val_step", "periodic_val_windows", "eval_loss@32",
                    "eval_ppl@32", "eval_windows@32", "assignments"):
            self.assertIn(col, runs[0], col)
        for r in runs:
            self.assertEqual(r["model_seed"], r["seed"])
            self.assertEqual(r["train_seed"], r["seed"])
            self.assertEqual(r["overrides"], " ".join(TINY))
            self.assertEqual(r["steps"], "3")
            self.assertEqual(r["periodic_val_step"], "3")
            self.assertEqual(r["periodic_val_windows"], "2")
            self.assertEqual(r["eval_windows@32"], "4")
        self.assertEqual(runs[0]["changes"], " ".join(rowlib.table1(8)[0].changes))

        # results.csv: a line per row, mean and sample std over the two seeds of runs.csv.
        summ = read_csv(os.path.join(sdir, "results.csv"))
        self.assertEqual([r["row"] for r in summ], names)
        for s in summ:
            self.assertEqual((s["n"], s["seeds"]), ("2", "0 1"))
            vals = [float(r["eval_ppl@32"]) for r in runs if r["row"] == s["row"]]
            self.assertAlmostEqual(float(s["eval_ppl@32_mean"]), statistics.fmean(vals), places=9)
            self.assertAlmostEqual(float(s["eval_ppl@32_std"]), statistics.stdev(vals), places=9)
            self.assertEqual(float(s["eval_ppl@32_min"]), min(vals))
            self.assertGreater(statistics.stdev(vals), 0)  # the seeds did change the runs
        self.assertTrue(os.path.getsize(os.path.join(sdir, "results.png")) > 1000)

        # The Theorem-1 row is the linear-attention model: same losses step by step; Katharopoulos'
        # linear attention is another model.
        for seed in ("seed0", "seed1"):
            la = [m["loss"] for m in metrics(os.path.join(sdir, "linear_attn_improved", seed)) if "loss" in m]
            tt = [m["loss"] for m in metrics(os.path.join(sdir, "ttt_equivalence", seed)) if "loss" in m]
            ka = [m["loss"] for m in metrics(os.path.join(sdir, "linear_attention", seed)) if "loss" in m]
            self.assertEqual(len(la), 3)
            for a, b in zip(la, tt):
                self.assertAlmostEqual(a, b, delta=1e-4 * abs(a))
            self.assertGreater(abs(la[-1] - ka[-1]), 1e-3)

        # The same sweep again reuses every run; another seed list reuses what it shares.
        before = read_text(os.path.join(sdir, "results.csv"))
        p = sweep(*args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.count("sweep: reused"), 16)
        self.assertEqual(read_text(os.path.join(sdir, "results.csv")), before)

        # Other settings under the same name: refused before anything runs, naming the key.
        mtime = os.path.getmtime(os.path.join(sdir, "ttt_equivalence", "seed0", "metrics.jsonl"))
        p = sweep(*self.base_args(out, "--preset", "table1", "--seeds", "0", "--set", "train.lr=5e-3"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("holds a run with other settings", p.stderr)
        self.assertIn("train.lr: 0.01 there, 0.005 here", p.stderr)
        self.assertIn("another --name", p.stderr)
        self.assertEqual(os.path.getmtime(os.path.join(sdir, "ttt_equivalence", "seed0", "metrics.jsonl")), mtime)
        # ... and under another name it goes to its own folder.
        p = sweep(*self.base_args(out, "--preset", "table1", "--seeds", "0", "--set", "train.lr=5e-3",
                                  "--name", "table1_lr5e-3", "--dry-run"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(os.path.join(out, "table1_lr5e-3", "ttt_equivalence", "seed0"), p.stdout)

    def test_set_beats_a_run_assignment_in_training(self):
        out = os.path.join(self.tmp, "override")
        p = sweep(*self.base_args(out, "--run", "model.ttt.mini_batch=4", "--set", "model.ttt.mini_batch=8",
                                  "--set", "train.steps=1"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("warning: --set model.ttt.mini_batch=8 replaces", p.stderr)
        import yaml
        with open(os.path.join(out, "runs", "mini_batch-4", "seed0", "config.yaml")) as f:
            cfg = yaml.safe_load(f)
        self.assertEqual(cfg["model"]["ttt"]["mini_batch"], 8)
        self.assertEqual(cfg["train"]["steps"], 1)
        runs = read_csv(os.path.join(out, "runs", "runs.csv"))
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0]["seed"], "")          # no --seeds: the config's own seeds
        self.assertEqual(runs[0]["model_seed"], "0")
        self.assertIn("model.ttt.mini_batch=8", runs[0]["overrides"])
        # Another sweep of other rows under the same name would overwrite this one's tables: refused.
        p = sweep(*self.base_args(out, "--run", "model.ttt.mini_batch=2", "--set", "model.ttt.mini_batch=8",
                                  "--set", "train.steps=1", "--dry-run"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("holds another sweep", p.stderr)
        self.assertIn("row mini_batch-4: model.ttt.mini_batch=4 there, not in this sweep", p.stderr)
        # ... while one that adds rows extends it (the finished run is reused, the new one trained).
        p = sweep(*self.base_args(out, "--run", "model.ttt.mini_batch=4", "--run", "train.lr=5e-3",
                                  "--set", "model.ttt.mini_batch=8", "--set", "train.steps=1",
                                  "--eval-context", "16,32"))
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr)
        self.assertIn("sweep: evaluated", p.stdout)   # mini_batch-4: only the new context 16 evaluated
        self.assertIn("sweep: trained", p.stdout)     # lr-5e-3
        runs = read_csv(os.path.join(out, "runs", "runs.csv"))
        self.assertEqual([r["row"] for r in runs], ["mini_batch-4", "lr-5e-3"])
        self.assertTrue(all(r["eval_ppl@16"] and r["eval_ppl@32"] for r in runs))


if __name__ == "__main__":
    unittest.main()
