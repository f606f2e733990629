#!/usr/bin/python3
"""Golden files for tiny TTT language models (TTT-Linear and TTT-MLP, Mamba backbone), from the
independent PyTorch pieces of this folder: the TTT layer of ttt_reference.py (official ttt.py
semantics) inside the block of transformer_reference.py (pre-conv in the Mamba backbone, RMSNorm,
SwiGLU, tied or untied head; scripts/load_export.py also runs it on the Transformer backbone).
Nothing is shared with the C++ implementation.

Writes tests/golden/ttt_lm_<case>.json with the config, every weight (our dotted names), the ids
and targets, the logits, the mean cross-entropy loss, the gradient of the loss w.r.t. every
parameter, and the losses of 10 plain-SGD steps (lr 0.1, the same batch). float64 throughout.
tests/test_golden_ttt.cpp checks them.

Run: /usr/bin/python3 scripts/golden/ttt_lm_reference.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformer_reference import SGD_LR, rms_norm, sgd_loss_curve  # noqa: E402
from ttt_reference import layer_forward, make_params  # noqa: E402

torch.set_default_dtype(torch.float64)
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")
B, T = 2, 10  # mini-batch 4: two full mini-batches and a remainder of 2
WEIGHT_GRID = 4096  # weights are multiples of 1/4096: exact and short in the file


def tensor_json(t, digits=13):
    """Values with `digits` significant digits (plenty for a 1e-9 relative check; keeps files small)."""
    return {"shape": list(t.shape), "data": [float("%.*g" % (digits, v)) for v in t.detach().reshape(-1).tolist()]}


def make_lm_params(c, gen):
    D, V, ff, k = c["d_model"], c["vocab_size"], c["d_ff"], c["conv_width"]
    rn = lambda *s, std=0.3, mean=0.0: mean + std * torch.randn(*s, generator=gen)
    P = {"embed.weight": rn(V, D)}
    for i in range(c["n_layers"]):
        p = f"blocks.{i}."
        P.update({p + "pre_conv_norm.weight": rn(D, std=0.2, mean=1.0), p + "pre_conv.weight": rn(D, k, std=0.4),
                  p + "pre_conv.bias": rn(D, std=0.4), p + "seq_norm.weight": rn(D, std=0.2, mean=1.0)})
        P.update({p + "mixer." + n: v for n, v in make_params(c, gen).items()})
        P.update({p + "ffn_norm.weight": rn(D, std=0.2, mean=1.0), p + "mlp.w1.weight": rn(ff, D),
                  p + "mlp.w2.weight": rn(D, ff), p + "mlp.w3.weight": rn(ff, D)})
    P["final_norm.weight"] = rn(D, std=0.2, mean=1.0)
    return P


def forward(c, P, ids):
    eps = c["norm_eps"]
    h = P["embed.weight"][ids]
    for i in range(c["n_layers"]):
        p = f"blocks.{i}."
        if c["backbone"] == "mamba":
            u = rms_norm(h, P[p + "pre_conv_norm.weight"], eps).transpose(1, 2)
            conv = F.conv1d(u, P[p + "pre_conv.weight"].unsqueeze(1), P[p + "pre_conv.bias"],
                            padding=c["conv_width"] - 1, groups=u.shape[1])
            h = h + conv[..., : ids.shape[1]].transpose(1, 2)
        mixer = {k[len(p + "mixer."):]: v for k, v in P.items() if k.startswith(p + "mixer.")}
        h = h + layer_forward(mixer, rms_norm(h, P[p + "seq_norm.weight"], eps), c)
        x = rms_norm(h, P[p + "ffn_norm.weight"], eps)
        h = h + (F.silu(x @ P[p + "mlp.w1.weight"].T) * (x @ P[p + "mlp.w3.weight"].T)) @ P[p + "mlp.w2.weight"].T
    head = P["embed.weight"] if c["tie_embeddings"] else P["lm_head.weight"]
    return rms_norm(h, P["final_norm.weight"], eps) @ head.T


def run_case(name, mixer, seed):
    c = {"vocab_size": 32, "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "mixer": mixer,
         "backbone": "mamba", "rope_theta": 10000.0, "norm_eps": 1e-6, "conv_width": 4, "tie_embeddings": True,
         "mini_batch": 4, "base_lr": 1.0 if mixer == "ttt_linear" else 0.1, "ln_eps": 1e-6}
    gen = torch.Generator().manual_seed(seed)
    P = {k: (torch.round(v * WEIGHT_GRID) / WEIGHT_GRID).requires_grad_(True)
         for k, v in make_lm_params(c, gen).items()}
    ids = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    targets = torch.randint(0, c["vocab_size"], (B, T), generator=gen)
    logits = forward(c, P, ids)
    loss = F.cross_entropy(logits.reshape(-1, c["vocab_size"]), targets.reshape(-1))
    grads = torch.autograd.grad(loss, list(P.values()))
    sgd_losses = sgd_loss_curve(forward, c, P, ids, targets)

    doc = {"source": "scripts/golden/ttt_lm_reference.py (PyTorch %s, float64)" % torch.__version__, "config": c,
           "params": {k: tensor_json(v, 17) for k, v in P.items()}, "ids": ids.tolist(), "targets": targets.tolist(),
           "logits": tensor_json(logits), "loss": loss.item(),
           "grads": {n: tensor_json(gv) for n, gv in zip(P.keys(), grads)}, "sgd_lr": SGD_LR,
           "sgd_losses": sgd_losses}
    path = os.path.join(OUT_DIR, "ttt_lm_%s.json" % name)
    with open(path, "w") as fh:
        json.dump(doc, fh)
    print("wrote %s: loss %.6f, sgd %.6f -> %.6f" % (os.path.relpath(path), loss.item(), sgd_losses[0],
                                                      sgd_losses[-1]))


if __name__ == "__main__":
    run_case("linear_mamba", "ttt_linear", 7)
    run_case("mlp_mamba", "ttt_mlp", 8)
