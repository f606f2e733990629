#!/usr/bin/python3
"""scripts/golden/e2e_reference.py — an independent PyTorch implementation of TTT-E2E (arXiv
2512.23675; the official JAX code test-time-training/e2e, MetaModel.loss_for_sequence), used to
write the golden files that tests/test_ttt_e2e_golden.cpp checks.

Run with Debian's interpreter (torch CPU):   /usr/bin/python3 scripts/golden/e2e_reference.py

Written from the formulas, sharing no code with layers/e2e_*.cpp, and organised differently on
purpose: one sequence at a time (a Python loop over the batch, the official vmap), the K/V cache as
Python lists of per-token keys, RoPE as complex multiplication of adjacent pairs, attention with
an explicit boolean mask and torch.softmax, the inner gradient from torch.autograd.grad with
create_graph=True, the clip as optax's clip_by_global_norm (g * clip / max(norm, clip)).
Everything in float64. Each case writes tests/golden/<case>.json with the config, the weights
(integers k, weight = k / 4096), ids, targets, the per-token losses, the outer loss and its
gradient w.r.t. every parameter.
"""
import json
import os

import torch

CASES = {
    # 3 blocks, the last 2 with MLP', window 3, chunks of 3 over T = 8 (a shorter last chunk),
    # clip active (0.05).
    "e2e_tiny": dict(vocab_size=11, d_model=8, n_layers=3, n_heads=2, d_ff=8, window=3, rope_theta=5e5,
                     norm_eps=1e-6, suffix_blocks=2, chunk=3, inner_lr=0.7, inner_clip=0.05, fast_heads=1,
                     qk_norm=True, post_norm=True),
    # multi-head MLP' (2 heads), clip inactive, full attention, no post norms.
    "e2e_tiny_multihead": dict(vocab_size=11, d_model=8, n_layers=2, n_heads=2, d_ff=8, window=0, rope_theta=1e4,
                               norm_eps=1e-6, suffix_blocks=1, chunk=2, inner_lr=1.0, inner_clip=100.0,
                               fast_heads=2, qk_norm=True, post_norm=False),
}
WEIGHT_SCALE = 4096
B, T = 2, 8


def param_shapes(c):
    """Our parameter names and shapes, in registration order (layers/e2e_block.cpp)."""
    D, ff, V, h = c["d_model"], c["d_ff"], c["vocab_size"], c["fast_heads"]
    dh = D // c["n_heads"]
    out = [("embed.weight", (V, D))]
    for i in range(c["n_layers"]):
        p = f"blocks.{i}."
        out += [(p + "seq_norm.weight", (D,))]
        out += [(p + f"attn.{n}.weight", (D, D)) for n in ("wq", "wk", "wv", "wo")]
        if c["qk_norm"]:
            out += [(p + "attn.q_norm.weight", (dh,)), (p + "attn.k_norm.weight", (dh,))]
        if c["post_norm"]:
            out += [(p + "seq_post_norm.weight", (D,))]
        if i >= c["n_layers"] - c["suffix_blocks"]:
            out += [(p + "prime_norm.weight", (D,)), (p + "prime.w1", (h, ff // h, D // h)),
                    (p + "prime.w2", (h, D // h, ff // h)), (p + "prime.w3", (h, ff // h, D // h))]
            if c["post_norm"]:
                out += [(p + "prime_post_norm.weight", (D,))]
        out += [(p + "ffn_norm.weight", (D,)), (p + "mlp.w1.weight", (ff, D)), (p + "mlp.w2.weight", (D, ff)),
                (p + "mlp.w3.weight", (ff, D))]
        if c["post_norm"]:
            out += [(p + "ffn_post_norm.weight", (D,))]
    return out + [("final_norm.weight", (D,))]


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    """x [T, H, dh] at integer positions pos [T]: pairs (x[2i], x[2i+1]) as complex numbers."""
    dh = x.shape[-1]
    freqs = theta ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    ang = pos[:, None].double() * freqs[None, :]
    rot = torch.polar(torch.ones_like(ang), ang)[:, None, :]
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], dh // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).reshape(x.shape)


def swiglu(x, w1, w2, w3):
    return (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def fast_mlp(x, W, h):
    """x [T, D]; W = (w1 [h, F, D/h], w2 [h, D/h, F], w3): head j maps slice j on its own."""
    xs = x.reshape(x.shape[0], h, -1)
    ys = [swiglu(xs[:, j], W[0][j], W[1][j], W[2][j]) for j in range(h)]
    return torch.cat(ys, -1)


class Model:
    def __init__(self, c, p):
        self.c, self.p = c, p
        self.first_suffix = c["n_layers"] - c["suffix_blocks"]

    def post(self, y, name):
        return rms(y, self.p[name], self.c["norm_eps"]) if self.c["post_norm"] else y

    def block(self, i, x, pos, cache, W):
        """x [n, D] at positions pos; cache: list of (k, v) per earlier token (rotated), extended here."""
        c, p, pre = self.c, self.p, f"blocks.{i}."
        H, D, eps = c["n_heads"], c["d_model"], c["norm_eps"]
        a = rms(x, p[pre + "seq_norm.weight"], eps)
        q = (a @ p[pre + "attn.wq.weight"].T).reshape(len(pos), H, -1)
        k = (a @ p[pre + "attn.wk.weight"].T).reshape(len(pos), H, -1)
        v = (a @ p[pre + "attn.wv.weight"].T).reshape(len(pos), H, -1)
        if c["qk_norm"]:
            q, k = rms(q, p[pre + "attn.q_norm.weight"], eps), rms(k, p[pre + "attn.k_norm.weight"], eps)
        q, k = rope(q, pos, c["rope_theta"]), rope(k, pos, c["rope_theta"])
        past = len(cache)
        cache.extend(zip(k, v))
        K = torch.stack([kv[0] for kv in cache])  # [past + n, H, dh]
        V = torch.stack([kv[1] for kv in cache])
        kpos = torch.arange(len(cache))
        qpos = torch.arange(past, past + len(pos))
        ok = kpos[None, :] <= qpos[:, None]
        if c["window"] > 0:
            ok &= kpos[None, :] > qpos[:, None] - c["window"]
        s = torch.einsum("qhd,khd->hqk", q, K) / (q.shape[-1] ** 0.5)
        s = s.masked_fill(~ok[None], float("-inf"))
        o = torch.einsum("hqk,khd->qhd", torch.softmax(s, -1), V).reshape(len(pos), D)
        x = x + self.post(o @ p[pre + "attn.wo.weight"].T, pre + "seq_post_norm.weight")
        if W is not None:
            y = fast_mlp(rms(x, p[pre + "prime_norm.weight"], eps), W, c["fast_heads"])
            x = x + self.post(y, pre + "prime_post_norm.weight")
        y = swiglu(rms(x, p[pre + "ffn_norm.weight"], eps), p[pre + "mlp.w1.weight"], p[pre + "mlp.w2.weight"],
                   p[pre + "mlp.w3.weight"])
        return x + self.post(y, pre + "ffn_post_norm.weight")

    def logits(self, x):
        return rms(x, self.p["final_norm.weight"], self.c["norm_eps"]) @ self.p["embed.weight"].T

    def sequence_losses(self, ids, targets):
        """Per-token losses of one sequence with the inner loop."""
        c, L = self.c, self.c["n_layers"]
        caches = [[] for _ in range(L)]
        x = self.p["embed.weight"][ids]
        pos = torch.arange(len(ids))
        for i in range(self.first_suffix):  # the prefix, once over the whole sequence
            x = self.block(i, x, pos, caches[i], None)
        W = [tuple(self.p[f"blocks.{i}.prime.{n}"] for n in ("w1", "w2", "w3")) for i in range(self.first_suffix, L)]
        losses = []
        for s in range(0, len(ids), c["chunk"]):
            e = min(len(ids), s + c["chunk"])
            h = x[s:e]
            for j, i in enumerate(range(self.first_suffix, L)):
                h = self.block(i, h, pos[s:e], caches[i], W[j])
            ell = torch.nn.functional.cross_entropy(self.logits(h), targets[s:e], reduction="none")
            losses.append(ell)
            if e < len(ids):  # the inner step on the chunk's mean loss
                flat = [t for w in W for t in w]
                g = torch.autograd.grad(ell.mean(), flat, create_graph=True)
                scale = 1.0
                if c["inner_clip"] > 0:
                    norm = torch.sqrt(sum((gi * gi).sum() for gi in g))
                    scale = c["inner_clip"] / torch.maximum(norm, torch.tensor(c["inner_clip"], dtype=torch.float64))
                new = [t - c["inner_lr"] * scale * gi for t, gi in zip(flat, g)]
                W = [tuple(new[3 * j:3 * j + 3]) for j in range(len(W))]
        return torch.cat(losses)


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")
    for name, c in CASES.items():
        g = torch.Generator().manual_seed(1234)
        ints, params = {}, {}
        for pname, shape in param_shapes(c):
            if pname.endswith("norm.weight"):
                k = WEIGHT_SCALE + torch.randint(-400, 400, shape, generator=g)
            else:
                k = torch.randint(-1600, 1600, shape, generator=g)
            ints[pname] = k
            params[pname] = (k.double() / WEIGHT_SCALE).requires_grad_(True)
        seq = torch.randint(0, c["vocab_size"], (B, T + 1), generator=g)
        ids, targets = seq[:, :T], seq[:, 1:]
        m = Model(c, params)
        token_losses = torch.stack([m.sequence_losses(ids[b], targets[b]) for b in range(B)])
        loss = token_losses.mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        rec = {
            "config": dict(c, batch=B, seq_len=T, weight_scale=WEIGHT_SCALE),
            "weights": {n: {"shape": list(k.shape), "data": k.flatten().tolist()} for n, k in ints.items()},
            "ids": ids.tolist(),
            "targets": targets.tolist(),
            "token_losses": {"shape": [B, T], "data": token_losses.detach().flatten().tolist()},
            "loss": loss.item(),
            "grads": {n: {"shape": list(gr.shape), "data": gr.flatten().tolist()} for n, gr in zip(params, grads)},
        }
        path = os.path.join(out_dir, name + ".json")
        with open(path, "w") as f:
            json.dump(rec, f)
        print(f"wrote {path}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
