#!/usr/bin/python3
"""Writes tests/golden/ops.json: PyTorch reference values for tests/test_ops_golden.cpp.

An independent numerical reference for our ops: for each case (op name, parameters, inputs in
float64 drawn from a fixed numpy seed) it stores torch's output and the gradients of
sum(out * w), for a fixed random w, w.r.t. every float input that takes a gradient. The C++ test
reads the JSON, runs our op on the same inputs and compares in float64; it needs no Python.

Regenerate (from the repository root, with Debian's interpreter, which has numpy and torch):
    /usr/bin/python3 scripts/make_golden_ops.py
Commit the resulting tests/golden/ops.json. The values depend only on the seed and on torch's
float64 math, so regenerating with another torch version changes them only at rounding level.

JSON layout:
  {"generator", "torch_version", "seed",
   "cases": [{"name", "op", "params": {...},
              "inputs": [{"name", "dtype": "float64"|"int64", "shape", "data", "grad": bool}],
              "output": {"shape", "data"}, "weight": {"shape", "data"},
              "grads": {input name: {"shape", "data"}}}]}
Data are flat row-major lists; float64 values are written with repr (exact round trip).
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20250101
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "ops.json")


def rms_norm(x, w, eps):
    # Older torch has no rms_norm: the definition, as our op computes it.
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps) * w


class Cases:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.cases = []

    def normal(self, *shape):
        return self.rng.standard_normal(shape)

    def ints(self, hi, *shape):
        return self.rng.integers(0, hi, size=shape)

    def add(self, name, op, params, inputs, fn):
        """inputs: list of (name, numpy array, takes_grad). fn(*torch tensors) -> output."""
        tensors, entries = [], []
        for in_name, arr, takes_grad in inputs:
            is_int = np.issubdtype(arr.dtype, np.integer)
            t = torch.tensor(arr, dtype=torch.int64 if is_int else torch.float64)
            if takes_grad:
                t.requires_grad_(True)
            tensors.append(t)
            entries.append({"name": in_name, "dtype": "int64" if is_int else "float64",
                            "shape": list(arr.shape), "data": flat(arr), "grad": bool(takes_grad)})
        out = fn(*tensors)
        w = torch.tensor(self.normal(*out.shape), dtype=torch.float64)
        diff = [t for t in tensors if t.requires_grad]
        grads = torch.autograd.grad((out * w).sum(), diff) if diff else []
        grad_names = [e["name"] for e in entries if e["grad"]]
        self.cases.append({
            "name": name, "op": op, "params": params, "inputs": entries,
            "output": {"shape": list(out.shape), "data": flat(out.detach().numpy())},
            "weight": {"shape": list(w.shape), "data": flat(w.numpy())},
            "grads": {n: {"shape": list(g.shape), "data": flat(g.numpy())} for n, g in zip(grad_names, grads)},
        })


def flat(a):
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return [int(v) for v in a.reshape(-1)]
    return [float(v) for v in a.reshape(-1)]


def build(c):
    n = c.normal
    c.add("softmax dim -1", "softmax", {"dim": -1}, [("x", n(3, 7), True)], lambda x: torch.softmax(x, -1))
    c.add("softmax dim 1 of 3-D", "softmax", {"dim": 1}, [("x", n(2, 4, 3), True)], lambda x: torch.softmax(x, 1))
    c.add("log_softmax dim -1", "log_softmax", {"dim": -1}, [("x", n(4, 6), True)],
          lambda x: torch.log_softmax(x, -1))
    c.add("log_softmax dim 0", "log_softmax", {"dim": 0}, [("x", n(5, 3), True)],
          lambda x: torch.log_softmax(x, 0))
    c.add("layer_norm weight and bias", "layer_norm", {"eps": 1e-5},
          [("x", n(2, 3, 8), True), ("weight", n(8), True), ("bias", n(8), True)],
          lambda x, w, b: F.layer_norm(x, (8,), w, b, 1e-5))
    c.add("rms_norm weight", "rms_norm", {"eps": 1e-6}, [("x", n(4, 8), True), ("weight", n(8), True)],
          lambda x, w: rms_norm(x, w, 1e-6))
    t = c.ints(9, 10)
    t[[1, 4, 7]] = -100
    c.add("cross_entropy mean, ignore_index -100", "cross_entropy", {"ignore_index": -100, "reduction": "mean"},
          [("logits", 2 * n(10, 9), True), ("targets", t, False)],
          lambda x, tg: F.cross_entropy(x, tg, ignore_index=-100, reduction="mean"))
    t = c.ints(5, 2, 3)
    c.add("cross_entropy sum, ignore_index 0, 3-D logits", "cross_entropy", {"ignore_index": 0, "reduction": "sum"},
          [("logits", n(2, 3, 5), True), ("targets", t, False)],
          lambda x, tg: F.cross_entropy(x.reshape(-1, 5), tg.reshape(-1), ignore_index=0, reduction="sum"))
    c.add("cross_entropy none", "cross_entropy", {"ignore_index": -100, "reduction": "none"},
          [("logits", n(4, 6), True), ("targets", c.ints(6, 4), False)],
          lambda x, tg: F.cross_entropy(x, tg, reduction="none"))
    c.add("gelu tanh", "gelu", {"approximate": "tanh"}, [("x", 2 * n(3, 5), True)],
          lambda x: F.gelu(x, approximate="tanh"))
    c.add("gelu erf", "gelu", {"approximate": "none"}, [("x", 2 * n(3, 5), True)], lambda x: F.gelu(x))
    c.add("silu", "silu", {}, [("x", 2 * n(3, 5), True)], F.silu)
    c.add("matmul batched broadcast", "matmul", {}, [("a", n(2, 1, 3, 4), True), ("b", n(3, 4, 2), True)],
          torch.matmul)
    c.add("cumsum dim 1", "cumsum", {"dim": 1}, [("x", n(3, 6), True)], lambda x: torch.cumsum(x, 1))
    ids = c.ints(7, 3, 4)
    ids[0, 0] = ids[2, 3] = 1  # a repeated id: its gradient rows accumulate
    c.add("embedding", "embedding", {}, [("weight", n(7, 3), True), ("ids", ids, False)],
          lambda w, i: F.embedding(i, w))
    c.add("cat dim 1", "cat", {"dim": 1}, [("a", n(2, 3), True), ("b", n(2, 1), True), ("c", n(2, 2), True)],
          lambda a, b, cc: torch.cat([a, b, cc], 1))
    cond = (c.rng.random((3, 1)) > 0.5).astype(np.float64)
    cond[0, 0], cond[1, 0] = 1.0, 0.0  # both branches taken
    c.add("where broadcast", "where", {}, [("cond", cond, False), ("a", n(3, 4), True), ("b", n(4), True)],
          lambda cd, a, b: torch.where(cd != 0, a, b))
    c.add("max dim 1", "max", {"dim": 1, "keepdim": False}, [("x", n(4, 5), True)],
          lambda x: torch.max(x, 1).values)
    c.add("tril diagonal -1", "tril", {"diagonal": -1}, [("x", n(2, 4, 3), True)], lambda x: torch.tril(x, -1))
    c.add("triu diagonal 1", "triu", {"diagonal": 1}, [("x", n(3, 4), True)], lambda x: torch.triu(x, 1))


def main():
    torch.set_default_dtype(torch.float64)
    c = Cases(SEED)
    build(c)
    doc = {"generator": "scripts/make_golden_ops.py", "torch_version": torch.__version__, "seed": SEED,
           "cases": c.cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    # One case per line: small, and a regeneration diffs case by case.
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, separators=(",", ":"))[:-1]
    lines = [json.dumps(case, separators=(",", ":")) for case in doc["cases"]]
    with open(OUT, "w") as f:
        f.write(head + ',"cases":[\n' + ",\n".join(lines) + "\n]}\n")
    print(f"wrote {len(c.cases)} cases to {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
