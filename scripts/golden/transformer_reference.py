#!/usr/bin/python3
"""scripts/golden/transformer_reference.py — an independent PyTorch implementation of our tiny
language models, used to write the golden files that tests/test_golden_transformer.cpp checks.

Run with Debian's interpreter (torch 1.13 CPU):   /usr/bin/python3 scripts/golden/transformer_reference.py

It writes, per case, tests/golden/<case>.json with: the config, the initial weights (integers k,
weight = k / weight_scale, so they are exact in any precision and the file stays small), the
input ids and targets, the logits, the mean cross-entropy loss, the gradient of the loss w.r.t.
every parameter, and the losses of 10 steps of plain SGD (lr 0.1, the same batch every step).
Everything is computed in float64.

The model is written here from the formulas, with torch ops and no code shared with the C++
implementation (layers/):
  * RoPE as complex multiplication of adjacent pairs (torch.view_as_complex), theta^(-2i/d);
  * attention with a boolean causal mask and torch.softmax; linear attention as tril(QK^T)V;
  * RMSNorm x * rsqrt(mean(x^2) + eps) * w; SwiGLU w2(silu(w1 x) * w3 x);
  * the Mamba-backbone pre-conv through F.conv1d(groups=C, padding=k-1), first T outputs;
  * tied embeddings, loss F.cross_entropy.
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F

CASES = {
    # Transformer++ (Llama style): RoPE, SwiGLU, RMSNorm, tied embeddings.
    "transformer_tiny": dict(vocab_size=32, d_model=16, n_layers=2, n_heads=2, d_ff=32, mixer="attention",
                             backbone="transformer", rope_theta=10000.0, norm_eps=1e-6, conv_width=4,
                             tie_embeddings=True),
    # Linear attention (Table 1 row 1) in the Mamba backbone (pre-conv before the mixer).
    "linear_attention_mamba_tiny": dict(vocab_size=32, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                                        mixer="linear_attention", backbone="mamba", rope_theta=10000.0,
                                        norm_eps=1e-6, conv_width=4, tie_embeddings=True),
}
WEIGHT_SCALE = 4096  # weights are integers / 4096
B, T = 2, 10
SGD_LR, SGD_STEPS = 0.1, 10


def param_shapes(c):
    """Our parameter names and shapes, in our registration order."""
    D, ff, V, k = c["d_model"], c["d_ff"], c["vocab_size"], c["conv_width"]
    shapes = [("embed.weight", (V, D))]
    for i in range(c["n_layers"]):
        p = f"blocks.{i}."
        if c["backbone"] == "mamba":
            shapes += [(p + "pre_conv_norm.weight", (D,)), (p + "pre_conv.weight", (D, k)), (p + "pre_conv.bias", (D,))]
        shapes += [(p + "seq_norm.weight", (D,))]
        shapes += [(p + f"mixer.{n}.weight", (D, D)) for n in ("wq", "wk", "wv", "wo")]
        shapes += [(p + "ffn_norm.weight", (D,)), (p + "mlp.w1.weight", (ff, D)), (p + "mlp.w2.weight", (D, ff)),
                   (p + "mlp.w3.weight", (ff, D))]
    shapes += [("final_norm.weight", (D,))]
    if not c["tie_embeddings"]:
        shapes += [("lm_head.weight", (V, D))]
    return shapes


def init_int_weights(c, gen):
    """Integer weights: matrices ~ N(0, 0.3), norm weights ~ 1 + N(0, 0.2), conv ~ N(0, 0.4)."""
    out = {}
    for name, shape in param_shapes(c):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if "norm" in name:
            w = 1.0 + 0.2 * z
        elif "pre_conv" in name:
            w = 0.4 * z
        else:
            w = 0.3 * z
        out[name] = torch.round(w * WEIGHT_SCALE).to(torch.int64)
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """x [B, T, H, d]: rotate adjacent pairs at positions 0..T-1."""
    Bx, Tx, H, d = x.shape
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # theta^(-2i/d)
    angles = torch.outer(torch.arange(Tx, dtype=torch.float64), freqs)  # [T, d/2]
    rot = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    xc = torch.view_as_complex(x.reshape(Bx, Tx, H, d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot.to(xc.dtype)).reshape(Bx, Tx, H, d)  # angles in float64, rounded once


def mixer(c, P, p, x):
    Bx, Tx, D = x.shape
    H = c["n_heads"]
    dh = D // H
    q = (x @ P[p + "mixer.wq.weight"].T).view(Bx, Tx, H, dh)
    k = (x @ P[p + "mixer.wk.weight"].T).view(Bx, Tx, H, dh)
    v = (x @ P[p + "mixer.wv.weight"].T).view(Bx, Tx, H, dh)
    causal = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    if c["mixer"] == "attention":
        q, k = rope(q, c["rope_theta"]), rope(k, c["rope_theta"])
        scores = torch.einsum("bthd,bshd->bhts", q, k) / dh ** 0.5
        scores = scores.masked_fill(~causal, float("-inf"))
        z = torch.einsum("bhts,bshd->bthd", torch.softmax(scores, dim=-1), v)
    else:  # linear attention: z_t = sum_{s<=t} v_s (k_s . q_t)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * causal
        z = torch.einsum("bhts,bshd->bthd", scores, v)
    return z.reshape(Bx, Tx, D) @ P[p + "mixer.wo.weight"].T


def forward(c, P, ids):
    eps = c["norm_eps"]
    h = P["embed.weight"][ids]
    Tx = ids.shape[1]
    for i in range(c["n_layers"]):
        p = f"blocks.{i}."
        if c["backbone"] == "mamba":
            u = rms_norm(h, P[p + "pre_conv_norm.weight"], eps).transpose(1, 2)  # [B, C, T]
            w = P[p + "pre_conv.weight"].unsqueeze(1)  # [C, 1, k]
            conv = F.conv1d(u, w, P[p + "pre_conv.bias"], padding=c["conv_width"] - 1, groups=u.shape[1])
            h = h + conv[..., :Tx].transpose(1, 2)
        h = h + mixer(c, P, p, rms_norm(h, P[p + "seq_norm.weight"], eps))
        x = rms_norm(h, P[p + "ffn_norm.weight"], eps)
        h = h + (F.silu(x @ P[p + "mlp.w1.weight"].T) * (x @ P[p + "mlp.w3.weight"].T)) @ P[p + "mlp.w2.weight"].T
    h = rms_norm(h, P["final_norm.weight"], eps)
    head = P["embed.weight"] if c["tie_embeddings"] else P["lm_head.weight"]
    return h @ head.T


def sgd_loss_curve(forward_fn, c, P, ids, targets):
    """SGD_STEPS steps of plain SGD on one batch, from a copy of the parameters P: the loss before
    each step (also used by ttt_lm_reference.py)."""
    Q = {n: v.detach().clone().requires_grad_(True) for n, v in P.items()}
    sgd_losses = []
    for _ in range(SGD_STEPS):
        l = F.cross_entropy(forward_fn(c, Q, ids).reshape(-1, c["vocab_size"]), targets.reshape(-1))
        sgd_losses.append(l.item())
        g = torch.autograd.grad(l, list(Q.values()))
        with torch.no_grad():
            for v, gv in zip(Q.values(), g):
                v -= SGD_LR * gv
    return sgd_losses


def run_case(name, c, seed, out_dir):
    gen = torch.Generator().manual_seed(seed)
    ints = init_int_weights(c, gen)
    ids = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    targets = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    P = {n: (v.to(torch.float64) / WEIGHT_SCALE).requires_grad_(True) for n, v in ints.items()}

    logits = forward(c, P, ids)
    loss = F.cross_entropy(logits.reshape(-1, c["vocab_size"]), targets.reshape(-1))
    grads = torch.autograd.grad(loss, list(P.values()))

    sgd_losses = sgd_loss_curve(forward, c, P, ids, targets)

    doc = {
        "about": "written by scripts/golden/transformer_reference.py (PyTorch %s, float64)" % torch.__version__,
        "config": c,
        "weight_scale": WEIGHT_SCALE,
        "params": {n: {"shape": list(v.shape), "int_values": v.flatten().tolist()} for n, v in ints.items()},
        "ids": ids.tolist(),
        "targets": targets.tolist(),
        "logits": logits.detach().flatten().tolist(),
        "loss": loss.item(),
        "grads": {n: gv.flatten().tolist() for n, gv in zip(P.keys(), grads)},
        "sgd_lr": SGD_LR,
        "sgd_losses": sgd_losses,
    }
    path = os.path.join(out_dir, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print("%s: loss %.6f, sgd %.6f -> %.6f, %d bytes" % (path, loss.item(), sgd_losses[0], sgd_losses[-1],
                                                         os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, (name, c) in enumerate(CASES.items()):
        run_case(name, c, seed=1234 + i, out_dir=args.out)


if __name__ == "__main__":
    main()
