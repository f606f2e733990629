#!/usr/bin/python3
"""Golden files for the TTT layers: an independent PyTorch (1.13, CPU, float64) implementation of the
TTT-Linear and TTT-MLP sequence mixers, written after the official ttt-lm-pytorch `ttt.py`
(TTTBase.forward / get_eta / get_qkv_projections, TTTLinear.ttt and TTTMLP.ttt dual form,
ln_fused_l2_bwd, RotaryEmbedding + permute_qk, the remainder mini-batch, post_norm, gate, o_proj). No code is shared with the C++ implementation.

For each case it writes tests/golden/ttt_layer_<case>.json with the config, every parameter
(named as the C++ TTTMixer names them), the input x, the weights w of the scalar loss sum(out * w),
the output, and the gradient of the loss w.r.t. x and every parameter. tests/test_golden_ttt.cpp
loads them and checks the dual, primal and generic forms.

Run (Debian's interpreter, which has torch):  /usr/bin/python3 scripts/golden/ttt_reference.py
Differences from the official code, on purpose:
  - gelu_tanh' uses the exact constant sqrt(2/pi) (ttt.py gelu_bwd truncates it to 0.79788456,
    a ~1e-9 relative change), so the files pin the math rather than that rounding.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


# --- the official building blocks (ttt.py), restated -------------------------------------------

def ln_fwd(x, gamma, beta, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def ln_fused_l2_bwd(x, target, gamma, beta, eps):
    """d/dx of 0.5 * ||LN(x) - target||^2, written out (ttt.py ln_fused_l2_bwd)."""
    D = x.shape[-1]
    mu = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    std = torch.sqrt(var + eps)
    x_hat = (x - mu) / std
    g = (gamma * x_hat + beta - target) * gamma
    return (D * g - g.sum(-1, keepdim=True) - x_hat * (g * x_hat).sum(-1, keepdim=True)) / (D * std)


def gelu_bwd(x):
    c = math.sqrt(2.0 / math.pi)
    t = torch.tanh(c * x * (1 + 0.044715 * x * x))
    return 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x) + 0.5 * (1 + t)


def rope(x, positions, theta):
    """HF rotate_half RoPE wrapped in permute_qk / undo_permute_qk as ttt.py does (= adjacent pairs)."""
    B, H, T, f = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, f, 2, dtype=torch.int64).double() / f))
    freqs = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)  # tables in float64, rounded once to x's dtype
    xp = x.reshape(B, H, T, f // 2, 2).transpose(3, 4).reshape(B, H, T, f)  # permute_qk
    rot = torch.cat((-xp[..., f // 2:], xp[..., : f // 2]), dim=-1)          # rotate_half
    y = xp * cos + rot * sin
    return y.reshape(B, H, T, 2, f // 2).transpose(3, 4).reshape(B, H, T, f)  # undo_permute_qk


def causal_conv(h, weight, bias):
    """Depthwise Conv1d(C, C, k, groups=C, padding=k-1) cut to the first T outputs; h [B, T, C]."""
    T, C, k = h.shape[1], weight.shape[0], weight.shape[1]
    y = F.conv1d(h.transpose(1, 2), weight.unsqueeze(1), bias, padding=k - 1, groups=C)
    return y[..., :T].transpose(1, 2)


# --- the layer -------------------------------------------------------------------------------------

def get_eta(p, X, cfg, size):
    """eta [B, nh, n_mb, size, size] = base_lr * token_idx[i] * sigmoid(theta_lr . x_j + b) / f."""
    nh, f = cfg["n_heads"], cfg["d_model"] // cfg["n_heads"]
    lr = torch.einsum("bnkc,hc->bhnk", X, p["learnable_ttt_lr_weight"]) + p["learnable_ttt_lr_bias"].reshape(1, -1, 1, 1)
    lr = torch.sigmoid(lr).unsqueeze(-2)  # [B, nh, n_mb, 1, size]: column factor
    token_idx = 1.0 / torch.arange(1, cfg["mini_batch"] + 1).to(X.dtype) + p["learnable_token_idx"]
    token_idx = torch.clamp_min(token_idx[:size], 0.0).reshape(1, 1, 1, size, 1)
    return cfg["base_lr"] * token_idx * lr / f


def ttt_dual(p, XQ, XK, XV, eta, state, cfg):
    """One scan over mini-batches [B, nh, n_mb, K, f] in the dual form (ttt.py compute_mini_batch)."""
    nh, f = cfg["n_heads"], cfg["d_model"] // cfg["n_heads"]
    eps = cfg["ln_eps"]
    ln_w = p["ttt_norm_weight"].reshape(nh, 1, f)
    ln_b = p["ttt_norm_bias"].reshape(nh, 1, f)
    outs = []
    for i in range(XQ.shape[2]):
        xq, xk, xv, e = XQ[:, :, i], XK[:, :, i], XV[:, :, i], eta[:, :, i]
        target = xv - xk
        last = e[:, :, -1, :, None]
        if cfg["mixer"] == "ttt_linear":
            W1, b1 = state
            Z1 = xk @ W1 + b1
            G1 = ln_fused_l2_bwd(Z1, target, ln_w, ln_b, eps)
            A1 = torch.tril(xq @ xk.transpose(-2, -1))
            b1_bar = b1 - torch.tril(e) @ G1
            Z = xq @ W1 - (e * A1) @ G1 + b1_bar
            state = (W1 - (last * xk).transpose(-1, -2) @ G1, b1 - torch.sum(last * G1, dim=-2, keepdim=True))
        else:
            W1, b1, W2, b2 = state
            Z1 = xk @ W1 + b1
            X2 = F.gelu(Z1, approximate="tanh")
            Z2 = X2 @ W2 + b2
            G2 = ln_fused_l2_bwd(Z2, target, ln_w, ln_b, eps)
            G1 = G2 @ W2.transpose(-2, -1) * gelu_bwd(Z1)
            A1 = torch.tril(xq @ xk.transpose(-2, -1))
            Z1_bar = xq @ W1 - (e * A1) @ G1 + b1 - torch.tril(e) @ G1
            X2_bar = F.gelu(Z1_bar, approximate="tanh")
            A2 = torch.tril(X2_bar @ X2.transpose(-2, -1))
            Z = X2_bar @ W2 - (e * A2) @ G2 + b2 - torch.tril(e) @ G2
            state = (W1 - (last * xk).transpose(-1, -2) @ G1, b1 - torch.sum(last * G1, dim=-2, keepdim=True),
                     W2 - (last * X2).transpose(-1, -2) @ G2, b2 - torch.sum(last * G2, dim=-2, keepdim=True))
        outs.append(xq + ln_fwd(Z, ln_w, ln_b, eps))
    return torch.stack(outs, dim=2), state


def layer_forward(p, x, cfg):
    B, T, D = x.shape
    nh, f, K = cfg["n_heads"], D // cfg["n_heads"], cfg["mini_batch"]
    mamba = cfg["backbone"] == "mamba"
    if mamba:
        xqk = x @ p["q_proj.weight"].T
        XQ = causal_conv(xqk, p["conv_q.weight"], p["conv_q.bias"])
        XK = causal_conv(xqk, p["conv_k.weight"], p["conv_k.bias"])
    else:
        XQ, XK = x @ p["q_proj.weight"].T, x @ p["k_proj.weight"].T
    XV = x @ p["v_proj.weight"].T
    heads = lambda t: t.reshape(B, T, nh, f).transpose(1, 2)
    XQ, XK, XV = heads(XQ), heads(XK), heads(XV)
    pos = torch.arange(T) % K
    XQ, XK = rope(XQ, pos, cfg["rope_theta"]), rope(XK, pos, cfg["rope_theta"])

    names = ["inner.W1", "inner.b1"] + (["inner.W2", "inner.b2"] if cfg["mixer"] == "ttt_mlp" else [])
    state = tuple(torch.tile(p[n].unsqueeze(0), (B,) + (1,) * p[n].dim()) for n in names)
    n_mb, rem = T // K, T % K
    outs = []
    # Full mini-batches, then the remainder as one shorter mini-batch (ttt.py TTTBase.forward).
    for start, size, count in ((0, K, n_mb), (n_mb * K, rem, 1 if rem else 0)):
        if count == 0:
            continue
        L = size * count
        mb = lambda t: t[:, :, start:start + L].reshape(B, nh, count, size, f)
        X = x[:, start:start + L].reshape(B, count, size, D)
        out, state = ttt_dual(p, mb(XQ), mb(XK), mb(XV), get_eta(p, X, cfg, size), state, cfg)
        outs.append(out.reshape(B, nh, L, f))
    Z = torch.cat(outs, dim=2).transpose(1, 2).reshape(B, T, D)
    Z = F.layer_norm(Z, (D,), p["post_norm.weight"], p["post_norm.bias"], eps=cfg["norm_eps"])
    if mamba:
        Z = F.gelu(x @ p["g_proj.weight"].T, approximate="tanh") * Z
    return Z @ p["o_proj.weight"].T


# --- cases -----------------------------------------------------------------------------------------

def make_params(cfg, gen):
    D, nh = cfg["d_model"], cfg["n_heads"]
    f, K, k = D // nh, cfg["mini_batch"], cfg["conv_width"]
    h = 4 * f
    rn = lambda *s, std=0.4, mean=0.0: mean + std * torch.randn(*s, generator=gen)
    p = {"q_proj.weight": rn(D, D), "v_proj.weight": rn(D, D), "o_proj.weight": rn(D, D)}
    if cfg["backbone"] == "mamba":
        p.update({"conv_q.weight": rn(D, k), "conv_q.bias": rn(D), "conv_k.weight": rn(D, k),
                  "conv_k.bias": rn(D), "g_proj.weight": rn(D, D)})
    else:
        p["k_proj.weight"] = rn(D, D)
    p.update({"learnable_ttt_lr_weight": rn(nh, D), "learnable_ttt_lr_bias": rn(nh),
              "learnable_token_idx": rn(K, std=0.02), "ttt_norm_weight": rn(nh, f, std=0.2, mean=1.0),
              "ttt_norm_bias": rn(nh, f, std=0.2), "post_norm.weight": rn(D, std=0.2, mean=1.0),
              "post_norm.bias": rn(D, std=0.2)})
    if cfg["mixer"] == "ttt_linear":
        p.update({"inner.W1": rn(nh, f, f), "inner.b1": rn(nh, 1, f)})
    else:
        p.update({"inner.W1": rn(nh, f, h), "inner.b1": rn(nh, 1, h), "inner.W2": rn(nh, h, f),
                  "inner.b2": rn(nh, 1, f)})
    return p


def tensor_json(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().reshape(-1).tolist()]}


def write_case(name, mixer, backbone, seed):
    cfg = {"mixer": mixer, "backbone": backbone, "d_model": 8, "n_heads": 2, "mini_batch": 4,
           "base_lr": 1.0 if mixer == "ttt_linear" else 0.1, "conv_width": 4, "rope_theta": 10000.0,
           "ln_eps": 1e-6, "norm_eps": 1e-6, "batch": 2, "seq_len": 11}
    gen = torch.Generator().manual_seed(seed)
    p = {k: v.requires_grad_(True) for k, v in make_params(cfg, gen).items()}
    x = torch.randn(cfg["batch"], cfg["seq_len"], cfg["d_model"], generator=gen).requires_grad_(True)
    out = layer_forward(p, x, cfg)
    w = torch.randn(out.shape, generator=gen)
    loss = (out * w).sum()
    names = ["x"] + list(p.keys())
    grads = torch.autograd.grad(loss, [x] + list(p.values()))
    # The inner loop must matter: without it (eta = 0) the output differs visibly.
    with torch.no_grad():
        frozen = layer_forward(p, x, dict(cfg, base_lr=0.0))
    effect = ((out - frozen).abs().max() / out.abs().max()).item()
    assert effect > 1e-3, f"{name}: the inner loop barely changes the output ({effect})"
    doc = {"source": "scripts/golden/ttt_reference.py (PyTorch %s, float64)" % torch.__version__,
           "config": cfg, "params": {k: tensor_json(v) for k, v in p.items()}, "x": tensor_json(x),
           "w": tensor_json(w), "out": tensor_json(out),
           "grads": {n: tensor_json(g) for n, g in zip(names, grads)}}
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "ttt_layer_%s.json" % name)
    with open(path, "w") as fh:
        json.dump(doc, fh)
    print("wrote %s (inner-loop effect %.3g)" % (os.path.relpath(path), effect))


if __name__ == "__main__":
    write_case("linear_mamba", "ttt_linear", "mamba", 1)
    write_case("mlp_mamba", "ttt_mlp", "mamba", 2)
    write_case("linear_transformer", "ttt_linear", "transformer", 3)
    write_case("mlp_transformer", "ttt_mlp", "transformer", 4)
