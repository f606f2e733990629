#!/usr/bin/python3
"""Golden files for the baseline mixers: an independent PyTorch (1.13, CPU, float64) implementation of
Mamba, Mamba 2, Gated DeltaNet and TTT-KVB, written from the equations (the papers, and the reference
layers they name: state-spaces/mamba `mamba_simple.py` / `mamba2.py`, fla `layers/gated_deltanet.py`,
the E2E paper's TTT-KVB with LaCT's fast weights). No code is shared with the C++ implementation, and
every recurrence here is the plain per-token (or per-chunk) loop, not the chunked forms C++ trains
with:
  * Mamba:          the selective scan token by token (h = exp(ΔA) h + Δ B u; y = C·h + D u; y ⊙ silu(z));
  * Mamba 2:        the SSD recurrence token by token, per head, B/C shared by the heads of a group;
                    gated RMSNorm over each group: RMSNorm(y ⊙ silu(z));
  * Gated DeltaNet: S_t = α_t S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ with S ∈ R^{d_v×d_k} (the paper's
                    orientation), o_t = S_t q_t;
  * TTT-KVB:        the inner gradient by torch.autograd.grad(create_graph=True) of Σ η ½‖g(k) − v‖²
                    (C++ writes it out by hand), and sliding-window attention with RoPE (complex
                    multiplication of adjacent pairs) and an explicit boolean window mask.

For each case it writes tests/golden/baseline_layer_<case>.json with the config, every parameter (named
as the C++ mixers name them), the input x, the weights w of the loss sum(out * w), the output, and the
gradient of that loss w.r.t. x and every parameter. tests/test_golden_baselines.cpp loads them.

Run (Debian's interpreter, which has torch):  /usr/bin/python3 scripts/golden/baselines_reference.py
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformer_reference import rms_norm, rope  # noqa: E402  (x * rsqrt(mean x² + eps) * w; adjacent-pair RoPE)
from ttt_reference import causal_conv, tensor_json  # noqa: E402  (F.conv1d depthwise, first T outputs)

torch.set_default_dtype(torch.float64)
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


# --- Mamba (Mamba-1) -------------------------------------------------------------------------------

def mamba(p, x, c):
    Din, N, R = c["expand"] * c["d_model"], c["d_state"], c["dt_rank"]
    xz = x @ p["in_proj.weight"].T
    u, z = xz[..., :Din], xz[..., Din:]
    u = F.silu(causal_conv(u, p["conv1d.weight"], p["conv1d.bias"]))
    dbc = u @ p["x_proj.weight"].T
    dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
    delta = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])  # [B, T, Din]
    A = -torch.exp(p["A_log"])                                            # [Din, N]
    h = torch.zeros(x.shape[0], Din, N)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + u * p["D"]
    return (y * F.silu(z)) @ p["out_proj.weight"].T


# --- Mamba 2 ---------------------------------------------------------------------------------------

def mamba2(p, x, c):
    Bsz, T, _ = x.shape
    Din, N, P, G = c["expand"] * c["d_model"], c["d_state"], c["head_dim"], c["n_groups"]
    H = Din // P
    zxbcdt = x @ p["in_proj.weight"].T
    z, xbc, dt = zxbcdt[..., :Din], zxbcdt[..., Din:2 * Din + 2 * G * N], zxbcdt[..., 2 * Din + 2 * G * N:]
    xbc = F.silu(causal_conv(xbc, p["conv1d.weight"], p["conv1d.bias"]))
    xs = xbc[..., :Din].reshape(Bsz, T, H, P)
    Bm = xbc[..., Din:Din + G * N].reshape(Bsz, T, G, N)
    Cm = xbc[..., Din + G * N:].reshape(Bsz, T, G, N)
    delta = F.softplus(dt + p["dt_bias"])  # [B, T, H]
    A = -torch.exp(p["A_log"])
    group = [h * G // H for h in range(H)]  # head h reads group h // (H / G)
    hstate = torch.zeros(Bsz, H, P, N)
    ys = []
    for t in range(T):
        Bt = torch.stack([Bm[:, t, group[h]] for h in range(H)], 1)  # [B, H, N]
        Ct = torch.stack([Cm[:, t, group[h]] for h in range(H)], 1)
        decay = torch.exp(delta[:, t] * A)[:, :, None, None]
        hstate = decay * hstate + (delta[:, t, :, None] * xs[:, t])[..., None] * Bt[:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", hstate, Ct))
    y = torch.stack(ys, 1) + xs * p["D"][:, None]                 # [B, T, H, P]
    y = y.reshape(Bsz, T, Din) * F.silu(z)
    y = y.reshape(Bsz, T, G, Din // G)
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + c["norm_eps"])
    return (y.reshape(Bsz, T, Din) * p["norm.weight"]) @ p["out_proj.weight"].T


# --- Gated DeltaNet --------------------------------------------------------------------------------

def gated_deltanet(p, x, c):
    Bsz, T, _ = x.shape
    H, dk, dv = c["n_heads"], c["head_dim"], c["expand_v"] * c["head_dim"]
    q = F.silu(causal_conv(x @ p["q_proj.weight"].T, p["q_conv1d.weight"], None)).reshape(Bsz, T, H, dk)
    k = F.silu(causal_conv(x @ p["k_proj.weight"].T, p["k_conv1d.weight"], None)).reshape(Bsz, T, H, dk)
    v = F.silu(causal_conv(x @ p["v_proj.weight"].T, p["v_conv1d.weight"], None)).reshape(Bsz, T, H, dv)
    q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6) / math.sqrt(dk)
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    alpha = torch.exp(-torch.exp(p["A_log"]) * F.softplus(x @ p["a_proj.weight"].T + p["dt_bias"]))  # [B, T, H]
    beta = torch.sigmoid(x @ p["b_proj.weight"].T)
    S = torch.zeros(Bsz, H, dv, dk)
    eye = torch.eye(dk)
    outs = []
    for t in range(T):
        kt, vt, qt = k[:, t], v[:, t], q[:, t]
        b = beta[:, t, :, None, None]
        erase = eye - b * kt[..., :, None] * kt[..., None, :]          # I − β k kᵀ
        S = alpha[:, t, :, None, None] * (S @ erase) + b * vt[..., :, None] * kt[..., None, :]
        outs.append(torch.einsum("bhvk,bhk->bhv", S, qt))
    o = torch.stack(outs, 1)                                            # [B, T, H, dv]
    gate = (x @ p["g_proj.weight"].T).reshape(Bsz, T, H, dv)
    o = rms_norm(o, p["o_norm.weight"], c["norm_eps"]) * F.silu(gate)
    return o.reshape(Bsz, T, H * dv) @ p["o_proj.weight"].T


# --- TTT-KVB (+ SWA) -------------------------------------------------------------------------------

def swa(p, x, c):
    Bsz, T, D = x.shape
    H, w = c["n_heads"], c["window"]
    dh = D // H
    q = rope((x @ p["attn.wq.weight"].T).view(Bsz, T, H, dh), c["rope_theta"])
    k = rope((x @ p["attn.wk.weight"].T).view(Bsz, T, H, dh), c["rope_theta"])
    v = (x @ p["attn.wv.weight"].T).view(Bsz, T, H, dh)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = (j <= i) & (i - j < w)
    s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(dh)
    a = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)
    return torch.einsum("bhts,bshd->bthd", a, v).reshape(Bsz, T, D) @ p["attn.wo.weight"].T


def ttt_kvb(p, x, c):
    Bsz, T, D = x.shape
    H, b = c["kvb_heads"], c["mini_batch"]
    f = D // H
    heads = lambda t: t.reshape(Bsz, T, H, f).transpose(1, 2)
    l2 = lambda t: t / torch.sqrt((t * t).sum(-1, keepdim=True) + 1e-6)
    q = l2(heads(F.silu(x @ p["q_proj.weight"].T)))
    k = l2(heads(F.silu(x @ p["k_proj.weight"].T)))
    v = heads(x @ p["v_proj.weight"].T)
    eta = F.softplus(x @ p["lr_proj.weight"].T + p["lr_proj.bias"]).transpose(1, 2)  # [B, H, T]

    def g(W, inp):  # W1 (silu(W0 x) * (W2 x))
        w0, w1, w2 = W
        return (F.silu(inp @ w0.transpose(-1, -2)) * (inp @ w2.transpose(-1, -2))) @ w1.transpose(-1, -2)

    init = [p["w0"], p["w1"], p["w2"]]
    W = [w.expand(Bsz, *w.shape) for w in init]
    outs = []
    for t0 in range(0, T, b):
        sl = slice(t0, min(T, t0 + b))
        outs.append(g(W, q[:, :, sl]))
        if sl.stop < T:
            loss = 0.5 * (eta[:, :, sl, None] * (g(W, k[:, :, sl]) - v[:, :, sl]) ** 2).sum()
            grads = torch.autograd.grad(loss, W, create_graph=True)
            W = [w - gw for w, gw in zip(W, grads)]
            if c["weight_norm"]:
                W = [w * (w0.norm(dim=-1, keepdim=True) / w.norm(dim=-1, keepdim=True)) for w, w0 in zip(W, init)]
    o = torch.cat(outs, 2).transpose(1, 2)                                # [B, T, H, f]
    o = rms_norm(o, p["ttt_norm.weight"], c["norm_eps"]).reshape(Bsz, T, D)
    y = (F.silu(x @ p["gate_proj.weight"].T) * o) @ p["o_proj.weight"].T
    return y + swa(p, x, c) if c["window"] > 0 else y


# --- cases -----------------------------------------------------------------------------------------

def make_params(c, gen):
    D = c["d_model"]
    rn = lambda *s, std=0.4, mean=0.0: mean + std * torch.randn(*s, generator=gen)
    un = lambda *s, lo=0.0, hi=1.0: lo + (hi - lo) * torch.rand(*s, generator=gen)
    m = c["mixer"]
    if m == "mamba":
        Din, N, R, k = c["expand"] * D, c["d_state"], c["dt_rank"], c["d_conv"]
        return {"in_proj.weight": rn(2 * Din, D), "conv1d.weight": rn(Din, k), "conv1d.bias": rn(Din),
                "x_proj.weight": rn(R + 2 * N, Din), "dt_proj.weight": rn(Din, R), "dt_proj.bias": rn(Din, std=0.5, mean=-1.0),
                "A_log": torch.log(un(Din, N, lo=0.5, hi=3.0)), "D": rn(Din, std=0.3, mean=1.0),
                "out_proj.weight": rn(D, Din)}
    if m == "mamba2":
        Din, N, P, G, k = c["expand"] * D, c["d_state"], c["head_dim"], c["n_groups"], c["d_conv"]
        H, conv = Din // P, Din + 2 * G * N
        return {"in_proj.weight": rn(2 * Din + 2 * G * N + H, D), "conv1d.weight": rn(conv, k), "conv1d.bias": rn(conv),
                "dt_bias": rn(H, std=0.5, mean=-1.0), "A_log": torch.log(un(H, lo=0.5, hi=3.0)),
                "D": rn(H, std=0.3, mean=1.0), "norm.weight": rn(Din, std=0.2, mean=1.0), "out_proj.weight": rn(D, Din)}
    if m == "gated_deltanet":
        H, dk, k = c["n_heads"], c["head_dim"], c["d_conv"]
        dv = c["expand_v"] * dk
        return {"q_proj.weight": rn(H * dk, D), "k_proj.weight": rn(H * dk, D), "v_proj.weight": rn(H * dv, D),
                "a_proj.weight": rn(H, D), "b_proj.weight": rn(H, D), "A_log": torch.log(un(H, lo=0.5, hi=3.0)),
                "dt_bias": rn(H, std=0.5, mean=-1.0), "q_conv1d.weight": rn(H * dk, k), "k_conv1d.weight": rn(H * dk, k),
                "v_conv1d.weight": rn(H * dv, k), "g_proj.weight": rn(H * dv, D),
                "o_norm.weight": rn(dv, std=0.2, mean=1.0), "o_proj.weight": rn(D, H * dv)}
    # ttt_kvb
    H = c["kvb_heads"]
    f = D // H
    hm = c["hidden_mult"] * f
    p = {"q_proj.weight": rn(D, D), "k_proj.weight": rn(D, D), "v_proj.weight": rn(D, D),
         "lr_proj.weight": rn(H, D), "lr_proj.bias": rn(H, std=0.3, mean=-0.5),
         "w0": rn(H, hm, f, std=0.5), "w1": rn(H, f, hm, std=0.5), "w2": rn(H, hm, f, std=0.5),
         "ttt_norm.weight": rn(f, std=0.2, mean=1.0), "gate_proj.weight": rn(D, D), "o_proj.weight": rn(D, D)}
    if c["window"] > 0:
        p.update({"attn.wq.weight": rn(D, D), "attn.wk.weight": rn(D, D), "attn.wv.weight": rn(D, D),
                  "attn.wo.weight": rn(D, D)})
    return p


FORWARD = {"mamba": mamba, "mamba2": mamba2, "gated_deltanet": gated_deltanet, "ttt_kvb": ttt_kvb}


def write_case(name, c, seed):
    gen = torch.Generator().manual_seed(seed)
    p = {k: v.requires_grad_(True) for k, v in make_params(c, gen).items()}
    x = torch.randn(c["batch"], c["seq_len"], c["d_model"], generator=gen).requires_grad_(True)
    out = FORWARD[c["mixer"]](p, x, c)
    w = torch.randn(out.shape, generator=gen)
    names = ["x"] + list(p.keys())
    grads = torch.autograd.grad((out * w).sum(), [x] + list(p.values()))
    doc = {"source": "scripts/golden/baselines_reference.py (PyTorch %s, float64)" % torch.__version__,
           "config": c, "params": {k: tensor_json(v) for k, v in p.items()}, "x": tensor_json(x),
           "w": tensor_json(w), "out": tensor_json(out),
           "grads": {n: tensor_json(gv) for n, gv in zip(names, grads)}}
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "baseline_layer_%s.json" % name)
    with open(path, "w") as fh:
        json.dump(doc, fh)
    print("wrote %s (|out| max %.3g)" % (os.path.relpath(path), out.abs().max().item()))


BASE = {"d_model": 8, "n_heads": 2, "batch": 2, "seq_len": 11, "norm_eps": 1e-6, "rope_theta": 10000.0, "window": 0}

if __name__ == "__main__":
    write_case("mamba", dict(BASE, mixer="mamba", d_state=3, expand=2, d_conv=3, dt_rank=2), 1)
    write_case("mamba2", dict(BASE, mixer="mamba2", d_state=3, head_dim=4, expand=2, n_groups=2, d_conv=3,
                              chunk=4, norm_eps=1e-5), 2)
    write_case("gated_deltanet", dict(BASE, mixer="gated_deltanet", n_heads=2, head_dim=4, expand_v=2, d_conv=3,
                                      chunk=4, norm_eps=1e-5), 3)
    write_case("ttt_kvb", dict(BASE, mixer="ttt_kvb", kvb_heads=2, hidden_mult=2, mini_batch=4, weight_norm=True), 4)
    write_case("ttt_kvb_swa", dict(BASE, mixer="ttt_kvb", kvb_heads=2, hidden_mult=2, mini_batch=4,
                                   weight_norm=False, window=3), 5)
