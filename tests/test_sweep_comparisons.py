#!/usr/bin/python3
"""tests/test_sweep_comparisons.py — the comparison presets of scripts/sweep.py (sweeplib/comparisons.py):
every row of --preset fig2 and e2e resolves to a valid config with the model it names (Mamba with twice
the blocks and no MLP, the hybrid patterns and window, TTT-KVB with its window and update interval), and
a 3-step e2e sweep of a tiny model trains every row and writes comparison.png.

Run: TTT_BIN=build/bin/ttt /usr/bin/python3 tests/test_sweep_comparisons.py   (ctest: test_sweep_comparisons)
"""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from sweeplib import comparisons  # noqa: E402

TTT = os.environ.get("TTT_BIN", os.path.join(ROOT, "build", "bin", "ttt"))
CONFIG = os.path.join(ROOT, "configs", "tiny_transformer.yaml")


def show(sets):
    import yaml
    cmd = [TTT, "config", "show", "--config", CONFIG]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return yaml.safe_load(p.stdout)["model"]


class ComparisonRows(unittest.TestCase):
    def setUp(self):
        self.base = {"model": show([]), "train": {"seq_len": 0}}

    def test_fig2(self):
        rows = {r.name: r for r in comparisons.rows("fig2", self.base)}
        self.assertEqual(list(rows), ["transformer", "mamba", "ttt_linear_M", "ttt_mlp_M"])
        m = show(rows["mamba"].sets)
        self.assertEqual((m["mixer"], m["n_layers"], m["d_ff"]), ("mamba", 2 * self.base["model"]["n_layers"], 0))
        self.assertEqual(show(rows["ttt_mlp_M"].sets)["backbone"], "mamba")

    def test_e2e(self):
        rows = {r.name: r for r in comparisons.rows("e2e", self.base)}
        w = self.base["model"]["max_seq_len"] // 4
        want = {"full_attention": ("attention", "", 0), "swa": ("attention", "", w),
                "hybrid_5swa_1full": ("attention", "swa,swa,swa,swa,swa,attention", w),
                "mamba2_swa": ("attention", "mamba2,swa", w), "gated_deltanet_swa": ("attention", "gated_deltanet,swa", w),
                "ttt_kvb_swa": ("ttt_kvb", "", w)}
        self.assertEqual(set(rows), set(want))
        for name, (mixer, pattern, window) in want.items():
            m = show(rows[name].sets)
            self.assertEqual((m["mixer"], m["pattern"] or "", m["window"]), (mixer, pattern, window), name)
        self.assertEqual(show(rows["ttt_kvb_swa"].sets)["kvb"]["mini_batch"], max(16, self.base["model"]["max_seq_len"] // 8))


class ComparisonSweep(unittest.TestCase):
    def test_e2e_trains_every_row_and_plots(self):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "synthetic_data.py"), d, "--ttt", TTT],
                               capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            tiny = ["model.d_model=16", "model.n_heads=2", "model.d_ff=32", "model.max_seq_len=32", "model.n_layers=2",
                    "train.batch_tokens=64", "train.micro_batch=2", "train.steps=3", "train.warmup_steps=1",
                    "train.eval_every=0", "checkpoint.keep_last=1", "model.mamba2.head_dim=8", "model.mamba2.d_state=8"]
            cmd = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), "--ttt", TTT, "--config", CONFIG,
                   "--data", os.path.join(d, "data"), "--out-dir", os.path.join(d, "out"), "--preset", "e2e",
                   "--eval-context", "32,64", "--eval-windows", "2"]
            for s in tiny:
                cmd += ["--set", s]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(os.path.join(d, "out", "e2e", "results.csv")) as f:
                self.assertEqual(len(list(csv.DictReader(f))), 6)
            self.assertTrue(os.path.getsize(os.path.join(d, "out", "e2e", "comparison.png")) > 0)


if __name__ == "__main__":
    unittest.main()
