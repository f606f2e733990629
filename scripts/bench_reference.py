#!/usr/bin/env python3
"""PyTorch reference trainer step for `ttt bench` (issue 7): 125M Transformer++ and TTT-Linear (Mamba
backbone) at 2k context, bf16 autocast, fp32 master weights, AdamW, eager or torch.compile.

Written for this project; the TTT-Linear semantics follow the official PyTorch model
(test-time-training/ttt-lm-pytorch, ttt.py: TTTBase / TTTLinear / Block / Conv, TTTConfig with
pre_conv=True, share_qk=True, use_gate=True).
The scan over mini-batches is a Python loop, as in the official code: that is the eager baseline.

Usage (the GPU commands for the four measurements are in scripts/bench_reference.sh):
  python3 scripts/bench_reference.py --model ttt_linear [--compile] --batch 8 --seq-len 2048 --json out.json
  /usr/bin/python3 scripts/bench_reference.py --device cpu --tiny --steps 2      # smoke test + self-check
--compile scopes: 'parts' (default) compiles each block's pre-scan part, post-scan part and the one
mini-batch TTT step (the Python scan loop stays, as in the official code) and the LM head + loss;
for the Transformer it compiles each whole block and the head. Identical layers reuse one compiled
graph. 'model' compiles the whole forward+loss, which unrolls 12 x L/16 mini-batch steps: a very long
compile (many minutes at 2k context) -- only for a dedicated run.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6  # every norm in the official model: RMSNorm, post LayerNorm, the per-head TTT LayerNorm


class Config:
    """Paper Table 2 125M sizes (official JAX CONFIGS); the names match layers/model_config.h."""

    def __init__(self, tiny=False):
        self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.d_ff = 32000, 768, 12, 12, 2048
        if tiny:
            self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.d_ff = 256, 64, 2, 4, 128
        self.mini_batch = 16      # K, TTT mini-batch size
        self.conv_width = 4       # pre-conv and conv_q / conv_k
        self.rope_theta = 10000.0
        self.init_std = 0.02
        self.base_lr = 1.0        # ttt_base_lr for TTT-Linear

    @property
    def head_dim(self):
        return self.d_model // self.n_heads


# ----------------------------------------------------------------------------- shared pieces

def rms_norm(x, w):
    # Official RMSNorm: normalise in fp32, cast back to the input dtype, then scale.
    xf = x.float() if x.dtype != torch.float64 else x
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)
    return w * y.to(x.dtype)


def rope(x, pos, theta):
    """Rotate adjacent pairs (x[2i], x[2i+1]) by pos * theta^(-2i/f) (JAX convention, which the official
    PyTorch code reproduces with permute_qk/undo_permute_qk). x [..., L, f], pos [L]; math in >= fp32."""
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    f = x.shape[-1]
    inv = theta ** (-torch.arange(0, f, 2, device=x.device, dtype=ct) / f)
    ang = pos.to(ct)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    xf = x.to(ct)
    xr, xi = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack((xr * cos - xi * sin, xr * sin + xi * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)


def causal_conv(x, conv):
    """Depthwise causal conv over time: x [B, L, C]; output t sees inputs t-width+1..t (official Conv,
    conv_q, conv_k: nn.Conv1d(groups=C, padding=width-1) and keep the first L outputs)."""
    L = x.shape[1]
    y = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=conv.weight.shape[-1] - 1,
                 groups=conv.weight.shape[0])
    return y[..., :L].transpose(1, 2)


def swiglu(x, w1, w3, w2):
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


def normal_param(*shape, std):
    return nn.Parameter(torch.randn(*shape) * std)


def depthwise_conv(channels, width):
    # PyTorch default Conv1d init, as in the official code (its _init_weights does not touch convs).
    return nn.Conv1d(channels, channels, width, groups=channels, bias=True)


# ----------------------------------------------------------------------------- TTT-Linear math

def ln_fwd(z, g, b):
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    return g * (z - mu) / torch.sqrt(var + EPS) + b


def ln_l2_grad(z, target, g, b):
    """d/dz of 0.5*||LN(z) - target||^2 for a per-row LayerNorm (official ln_fused_l2_bwd)."""
    f = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    std = torch.sqrt(z.var(-1, keepdim=True, unbiased=False) + EPS)
    xh = (z - mu) / std
    gx = (g * xh + b - target) * g
    return (f * gx - gx.sum(-1, keepdim=True) - xh * (gx * xh).sum(-1, keepdim=True)) / (f * std)


def ttt_linear_dual_step(W, b, xq, xk, xv, eta, ln_g, ln_b):
    """One mini-batch of TTT-Linear in dual form (official TTTLinear.ttt.compute_mini_batch).
    W [B,nh,f,f] and b [B,nh,1,f] in fp32 (the carry), x* [B,nh,k,f],
    eta [B,nh,k,k] with eta[i,j] = token_idx[i] * lr_j. Returns (W_next, b_next, out [B,nh,k,f])."""
    z = xk @ W + b
    grad = ln_l2_grad(z, xv - xk, ln_g, ln_b)                   # inner-loss gradient at the mini-batch start
    attn = torch.tril(xq @ xk.transpose(-2, -1))
    b_bar = b - torch.tril(eta) @ grad
    z_bar = xq @ W - (eta * attn) @ grad + b_bar                 # token i sees W_i = W - sum_{j<=i} eta_ij g_j
    eta_last = eta[:, :, -1, :, None]                            # the end-of-mini-batch update uses the last row
    W_next = W - (eta_last * xk).transpose(-1, -2) @ grad
    b_next = b - (eta_last * grad).sum(-2, keepdim=True)
    out = xq + ln_fwd(z_bar, ln_g, ln_b)                         # f(x) = x + LN(f_res(x))
    return W_next, b_next, out.to(xq.dtype)


def ttt_linear_scan(XQ, XK, XV, lr, token_idx_offset, W1, b1, ln_g, ln_b, K, step_fn):
    """All mini-batches of one layer. XQ/XK/XV [B,nh,L,f] (after RoPE), lr [B,nh,L] (base_lr * sigmoid
    gate / head_dim). A last partial mini-batch of r = L mod K tokens is one shorter mini-batch (official
    TTTBase.forward). Returns [B, L, nh*f]."""
    B, nh, L, f = XQ.shape
    token_idx = torch.clamp_min(1.0 / torch.arange(1, K + 1, device=XQ.device, dtype=lr.dtype)
                                + token_idx_offset.to(lr.dtype), 0.0)
    # W/b stay fp32 across mini-batches; materialised per sequence like the official torch.tile.
    W = W1.unsqueeze(0).repeat(B, 1, 1, 1)
    b = b1.unsqueeze(0).repeat(B, 1, 1, 1)
    n, r = L // K, L % K
    outs = []
    if n:
        def chunks(t):  # [B,nh,L,f] -> [n,B,nh,K,f]
            return t[:, :, :n * K].reshape(B, nh, n, K, t.shape[-1]).permute(2, 0, 1, 3, 4).contiguous()
        xq, xk, xv = chunks(XQ), chunks(XK), chunks(XV)
        eta = (token_idx.view(1, 1, 1, K, 1) * lr[:, :, :n * K].reshape(B, nh, n, 1, K))
        eta = eta.permute(2, 0, 1, 3, 4).contiguous()            # [n,B,nh,K,K]
        ys = []
        for i in range(n):                                        # the sequential scan (official `scan`)
            W, b, y = step_fn(W, b, xq[i], xk[i], xv[i], eta[i], ln_g, ln_b)
            ys.append(y)
        outs.append(torch.stack(ys).permute(1, 0, 3, 2, 4).reshape(B, n * K, nh * f))
    if r:
        s = n * K
        eta = token_idx[:r].view(1, 1, r, 1) * lr[:, :, s:].unsqueeze(2)
        _, _, y = step_fn(W, b, XQ[:, :, s:], XK[:, :, s:], XV[:, :, s:], eta, ln_g, ln_b)
        outs.append(y.permute(0, 2, 1, 3).reshape(B, r, nh * f))
    return torch.cat(outs, 1) if len(outs) > 1 else outs[0]


def fla_scan(XQ, XK, XV, lr, token_idx_offset, W1, b1, ln_g, ln_b, K, step_fn):
    """The same layer with fla's Triton TTT-Linear op (fla-org/flash-linear-attention,
    fla/ops/ttt `chunk_ttt_linear`) in place of the scan: the speed anchor of issue 12. fla's op is a
    simplified TTT-Linear (one learning rate per token, no token_idx, GroupNorm residual), so this
    model is not the same function; it measures what a PyTorch user gets with fla's kernel. Inputs
    and the LN/eta operands in bf16 as fla's tests use them; W0, b0 as fp32 initial states."""
    from fla.ops.ttt import chunk_ttt_linear
    B, nh, L, f = XQ.shape
    dt = torch.bfloat16
    q, k, v = (t.transpose(1, 2).to(dt).contiguous() for t in (XQ, XK, XV))
    eta = lr.transpose(1, 2).unsqueeze(-1).to(dt).contiguous()             # [B, L, nh, 1]
    h0 = W1.float().unsqueeze(0).expand(B, -1, -1, -1).contiguous()
    hb0 = b1.float().unsqueeze(0).expand(B, -1, -1, -1).contiguous()
    o, _, _ = chunk_ttt_linear(q, k, v, ln_g.reshape(nh, f).to(dt), ln_b.reshape(nh, f).to(dt), eta, scale=1.0,
                               chunk_size=K, initial_state=h0, initial_state_bias=hb0)
    return o.reshape(B, L, nh * f)


# ----------------------------------------------------------------------------- blocks

class TTTIn(nn.Module):
    """Block part before the scan: pre-conv residual, seq RMSNorm, shared Q/K projection + conv_q/conv_k,
    V projection, heads, RoPE with positions t mod K, and the per-head learnable lr gate."""

    def __init__(self, c):
        super().__init__()
        C, s = c.d_model, c.init_std
        self.c = c
        self.conv_norm = nn.Parameter(torch.ones(C))
        self.pre_conv = depthwise_conv(C, c.conv_width)
        self.seq_norm = nn.Parameter(torch.ones(C))
        self.wq, self.wv = normal_param(C, C, std=s), normal_param(C, C, std=s)
        self.conv_q, self.conv_k = depthwise_conv(C, c.conv_width), depthwise_conv(C, c.conv_width)
        self.lr_w = normal_param(c.n_heads, C, std=s)            # theta_lr, one row per head
        self.lr_b = nn.Parameter(torch.zeros(c.n_heads))

    def forward(self, h):
        c = self.c
        B, L, C = h.shape
        h = h + causal_conv(rms_norm(h, self.conv_norm), self.pre_conv)
        x = rms_norm(h, self.seq_norm)
        xqk, XV = F.linear(x, self.wq), F.linear(x, self.wv)
        XQ, XK = causal_conv(xqk, self.conv_q), causal_conv(xqk, self.conv_k)

        def heads(t):
            return t.reshape(B, L, c.n_heads, c.head_dim).transpose(1, 2)
        pos = torch.arange(L, device=h.device) % c.mini_batch
        XQ, XK = rope(heads(XQ), pos, c.rope_theta), rope(heads(XK), pos, c.rope_theta)
        lr = c.base_lr * torch.sigmoid(F.linear(x, self.lr_w, self.lr_b).float()) / c.head_dim
        return h, x, XQ, XK, heads(XV), lr.transpose(1, 2)


class TTTOut(nn.Module):
    """Block part after the scan: post LayerNorm (width), tanh-GELU gate, output projection, residual,
    then the SwiGLU MLP sub-block."""

    def __init__(self, c):
        super().__init__()
        C, s = c.d_model, c.init_std
        self.post_w, self.post_b = nn.Parameter(torch.ones(C)), nn.Parameter(torch.zeros(C))
        self.wg, self.wo = normal_param(C, C, std=s), normal_param(C, C, std=s)
        self.ffn_norm = nn.Parameter(torch.ones(C))
        self.w1, self.w3 = normal_param(c.d_ff, C, std=s), normal_param(c.d_ff, C, std=s)
        self.w2 = normal_param(C, c.d_ff, std=s)

    def forward(self, h, x, z):
        # fp32 LayerNorm, as CUDA autocast does anyway (CPU autocast in torch 1.x would not).
        z = F.layer_norm(z.float(), (z.shape[-1],), self.post_w, self.post_b, EPS)
        z = F.gelu(F.linear(x, self.wg), approximate="tanh") * z
        h = h + F.linear(z, self.wo)
        return h + swiglu(rms_norm(h, self.ffn_norm), self.w1, self.w3, self.w2)


class TTTBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        nh, f = c.n_heads, c.head_dim
        self.c = c
        self.inp, self.out = TTTIn(c), TTTOut(c)
        self.W1 = normal_param(nh, f, f, std=c.init_std)         # W0 of the inner linear model
        self.b1 = nn.Parameter(torch.zeros(nh, 1, f))
        self.ln_g, self.ln_b = nn.Parameter(torch.ones(nh, 1, f)), nn.Parameter(torch.zeros(nh, 1, f))
        self.token_idx = nn.Parameter(torch.zeros(c.mini_batch))  # learnable offset on 1/(i+1)

    def forward(self, h, step_fn, scan_fn=ttt_linear_scan):
        h, x, XQ, XK, XV, lr = self.inp(h)
        z = scan_fn(XQ, XK, XV, lr, self.token_idx, self.W1, self.b1, self.ln_g, self.ln_b,
                    self.c.mini_batch, step_fn)
        return self.out(h, x, z)


def causal_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):               # flash attention on H100 in bf16
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    L = q.shape[-2]                                               # torch 1.x fallback (CPU smoke test)
    s = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return (s.softmax(-1).to(v.dtype)) @ v


class AttnBlock(nn.Module):
    """Transformer++ (Llama style) block: pre-RMSNorm, causal MHA with RoPE, pre-RMSNorm SwiGLU."""

    def __init__(self, c):
        super().__init__()
        C, s = c.d_model, c.init_std
        self.c = c
        self.attn_norm, self.ffn_norm = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
        self.wq, self.wk = normal_param(C, C, std=s), normal_param(C, C, std=s)
        self.wv, self.wo = normal_param(C, C, std=s), normal_param(C, C, std=s)
        self.w1, self.w3 = normal_param(c.d_ff, C, std=s), normal_param(c.d_ff, C, std=s)
        self.w2 = normal_param(C, c.d_ff, std=s)

    def forward(self, h):
        c = self.c
        B, L, C = h.shape
        x = rms_norm(h, self.attn_norm)

        def heads(w):
            return F.linear(x, w).reshape(B, L, c.n_heads, c.head_dim).transpose(1, 2)
        q, k, v = heads(self.wq), heads(self.wk), heads(self.wv)
        pos = torch.arange(L, device=h.device)
        q, k = rope(q, pos, c.rope_theta).to(v.dtype), rope(k, pos, c.rope_theta).to(v.dtype)
        a = causal_attention(q, k, v).transpose(1, 2).reshape(B, L, C)
        h = h + F.linear(a, self.wo)
        return h + swiglu(rms_norm(h, self.ffn_norm), self.w1, self.w3, self.w2)


def lm_loss(h, norm_w, emb_w, targets):
    logits = F.linear(rms_norm(h, norm_w), emb_w)                # tied embeddings
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


class LM(nn.Module):
    def __init__(self, c, kind):
        super().__init__()
        self.kind = kind
        self.emb = normal_param(c.vocab_size, c.d_model, std=c.init_std)
        block = TTTBlock if kind == "ttt_linear" else AttnBlock
        self.blocks = nn.ModuleList([block(c) for _ in range(c.n_layers)])
        self.final_norm = nn.Parameter(torch.ones(c.d_model))
        self.step_fn, self.loss_fn = ttt_linear_dual_step, lm_loss  # replaced by compiled versions
        self.scan_fn = ttt_linear_scan                               # fla_scan with --scan fla

    def forward_loss(self, ids, targets):
        h = F.embedding(ids, self.emb)
        for blk in self.blocks:
            h = blk(h, self.step_fn, self.scan_fn) if self.kind == "ttt_linear" else blk(h)
        return self.loss_fn(h, self.final_norm, self.emb, targets)


def apply_compile(model, scope, mode):
    if not hasattr(torch, "compile"):
        sys.exit(f"error: --compile needs torch >= 2.0 (torch.compile); this is torch {torch.__version__}")
    dc = torch._dynamo.config
    for name in ("cache_size_limit", "recompile_limit"):       # 12 layers share code; allow recompiles
        if hasattr(dc, name):
            setattr(dc, name, max(getattr(dc, name), 64))
    kw = {} if mode == "default" else {"mode": mode}
    if scope == "model":
        model.forward_loss = torch.compile(model.forward_loss, **kw)
        return
    model.loss_fn = torch.compile(lm_loss, **kw)
    if model.kind == "ttt_linear":
        model.step_fn = torch.compile(ttt_linear_dual_step, **kw)
        for blk in model.blocks:
            blk.inp, blk.out = torch.compile(blk.inp, **kw), torch.compile(blk.out, **kw)
    else:
        for i in range(len(model.blocks)):
            model.blocks[i] = torch.compile(model.blocks[i], **kw)


def count_params(model):
    return sum(p.numel() for p in model.parameters())          # parameters() yields tied ones once


# ----------------------------------------------------------------------------- self-check (tiny, fp64)

def ttt_linear_primal(x, XQ, XK, XV, lr_w, lr_b, tok_off, W1, b1, ln_g, ln_b, K, base_lr):
    """Naive per-token primal TTT-Linear, one (sequence, head) at a time. The inner-loss gradient comes
    from torch.autograd (not ln_l2_grad) and eta from its definition, so it checks the dual form whole."""
    B, nh, L, f = XQ.shape
    out = torch.zeros(B, L, nh, f, dtype=XQ.dtype)
    for bi in range(B):
        for h in range(nh):
            W, bb = W1[h].clone(), b1[h, 0].clone()
            for s in range(0, L, K):
                gW, gb = torch.zeros_like(W), torch.zeros_like(bb)
                for i in range(min(K, L - s)):
                    t = s + i
                    Wv, bv = W.clone().requires_grad_(), bb.clone().requires_grad_()
                    z = XK[bi, h, t] @ Wv + bv
                    target = XV[bi, h, t] - XK[bi, h, t]
                    loss = 0.5 * (F.layer_norm(z, (f,), ln_g[h, 0], ln_b[h, 0], EPS) - target).pow(2).sum()
                    dW, db = torch.autograd.grad(loss, (Wv, bv))
                    lr_t = base_lr * torch.sigmoid(x[bi, t] @ lr_w[h] + lr_b[h]) / f
                    gW, gb = gW + lr_t * dW, gb + lr_t * db        # gradients all at the mini-batch start
                    tok = max(0.0, 1.0 / (i + 1) + float(tok_off[i]))
                    Wi, bi_ = W - tok * gW, bb - tok * gb
                    zq = XQ[bi, h, t] @ Wi + bi_
                    out[bi, t, h] = XQ[bi, h, t] + F.layer_norm(zq, (f,), ln_g[h, 0], ln_b[h, 0], EPS)
                W, bb = Wi, bi_                                    # carry the last token's weights
    return out.reshape(B, L, nh * f)


def self_check():
    """Dual form (this script) == naive primal loop, fp64 CPU, with a partial last mini-batch; RoPE ==
    complex rotation. Exits non-zero on a mismatch."""
    g = torch.Generator().manual_seed(0)
    B, nh, f, K, L, base_lr = 2, 3, 8, 4, 11, 1.0
    C = nh * f

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    x, XQ, XK, XV = rnd(B, L, C), rnd(B, nh, L, f), rnd(B, nh, L, f), rnd(B, nh, L, f)
    lr_w, lr_b = rnd(nh, C, scale=0.3), rnd(nh, scale=0.3)
    tok_off = rnd(K, scale=0.2)
    tok_off[-1] = -1.0                                             # exercises the clamp at 0
    W1, b1 = rnd(nh, f, f, scale=0.3), rnd(nh, 1, f, scale=0.3)
    ln_g, ln_b = 1 + rnd(nh, 1, f, scale=0.1), rnd(nh, 1, f, scale=0.1)
    lr = (base_lr * torch.sigmoid(F.linear(x, lr_w, lr_b)) / f).transpose(1, 2)
    dual = ttt_linear_scan(XQ, XK, XV, lr, tok_off, W1, b1, ln_g, ln_b, K, ttt_linear_dual_step)
    primal = ttt_linear_primal(x, XQ, XK, XV, lr_w, lr_b, tok_off, W1, b1, ln_g, ln_b, K, base_lr)
    err = (dual - primal).abs().max().item()
    # The outputs cannot see a per-row constant added to the inner gradient (the LN removes it), so the
    # fused LN+L2 backward is also checked on its own against autograd.
    z, tgt = rnd(5, f).requires_grad_(), rnd(5, f)
    loss = 0.5 * (F.layer_norm(z, (f,), ln_g[0, 0], ln_b[0, 0], EPS) - tgt).pow(2).sum()
    err = max(err, (torch.autograd.grad(loss, z)[0] - ln_l2_grad(z, tgt, ln_g[0], ln_b[0])).abs().max().item())

    q, pos = rnd(2, 5, f), torch.arange(5)
    ang = pos.double()[:, None] * 10000.0 ** (-torch.arange(0, f, 2, dtype=torch.float64) / f)
    ref = torch.view_as_real(torch.view_as_complex(q.reshape(2, 5, f // 2, 2).contiguous())
                             * torch.polar(torch.ones_like(ang), ang)).flatten(-2)
    rope_err = (rope(q, pos, 10000.0) - ref).abs().max().item()
    print(f"self-check: TTT-Linear dual form vs naive primal loop (and LN+L2 grad vs autograd) max|diff| "
          f"= {err:.2e}; RoPE vs complex rotation = {rope_err:.2e}")
    if not (err < 1e-10 and rope_err < 1e-12):
        sys.exit("error: self-check failed (dual form or RoPE disagrees with the naive reference)")


# ----------------------------------------------------------------------------- benchmark

def make_optimizer(params, device):
    kw = dict(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)       # constant lr: a schedule costs nothing
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(params, fused=True, **kw), "fused"
        except (TypeError, RuntimeError):                          # torch < 2.0 has no fused AdamW
            pass
    return torch.optim.AdamW(params, **kw), "default"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["transformer", "ttt_linear"], default="ttt_linear")
    ap.add_argument("--compile", action="store_true", help="torch.compile (see --compile-scope)")
    ap.add_argument("--compile-scope", choices=["parts", "model"], default="parts")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default 8; --tiny 2)")
    ap.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 2048; --tiny 40)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop timing after this long (>= 1 step); 0 = off")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="bf16 = autocast, fp32 = none")
    ap.add_argument("--tiny", action="store_true", help="tiny config + the fp64 dual-vs-primal self-check")
    ap.add_argument("--params-only", action="store_true", help="print parameter counts and exit")
    ap.add_argument("--scan", choices=["official", "fla"], default="official",
                    help="TTT-Linear's scan: the official dual form (Python loop), or fla's chunk_ttt_linear "
                         "(fla's source on PYTHONPATH)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="OUT", help="write the result as JSON here")
    a = ap.parse_args()

    if a.tiny:
        self_check()
    torch.manual_seed(a.seed)
    c = Config(tiny=a.tiny)
    batch = a.batch or (2 if a.tiny else 8)
    seq_len = a.seq_len or (40 if a.tiny else 2048)
    model = LM(c, a.model)
    if a.scan == "fla":
        model.scan_fn = fla_scan
    n_params = count_params(model)
    n_emb = model.emb.numel()
    print(f"{a.model}: {n_params:,} parameters ({n_params - n_emb:,} without the tied embedding); "
          f"layers {c.n_layers}, d_model {c.d_model}, heads {c.n_heads}, d_ff {c.d_ff}, vocab {c.vocab_size}")
    if a.params_only:
        return
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is False (use --device cpu)")
    dev = torch.device(a.device)
    model.to(dev)
    opt, opt_kind = make_optimizer(model.parameters(), dev)       # fp32 master weights and moments
    if a.compile:
        apply_compile(model, a.compile_scope, a.compile_mode)
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
    params = [p for p in model.parameters()]
    gen = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    tokens = torch.randint(0, c.vocab_size, (batch, seq_len + 1), generator=gen).to(dev)
    ids, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = model.forward_loss(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for i in range(a.warmup):
        loss = step()
        sync()
        print(f"  warmup step {i + 1}/{a.warmup}: loss {loss.item():.4f}, {time.perf_counter() - t0:.1f} s elapsed",
              flush=True)
    warmup_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times_ms, t1 = [], time.perf_counter()
    for i in range(a.steps):
        if dev.type == "cuda":
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
            loss = step()
            ev1.record()
            ev1.synchronize()
            times_ms.append(ev0.elapsed_time(ev1))
        else:
            s0 = time.perf_counter()
            loss = step()
            times_ms.append((time.perf_counter() - s0) * 1e3)
        if a.max_seconds and time.perf_counter() - t1 > a.max_seconds:
            print(f"  stopping after {i + 1} timed steps (--max-seconds {a.max_seconds})")
            break
    last_loss = loss.item()
    if not math.isfinite(last_loss):
        sys.exit(f"error: loss is {last_loss}")
    med = statistics.median(times_ms)
    result = {
        "model": a.model + ("+fla" if a.scan == "fla" else ""), "mode": "compile" if a.compile else "eager",
        "compile_scope": a.compile_scope if a.compile else None,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": a.dtype, "optimizer": f"AdamW ({opt_kind})",
        "batch": batch, "seq_len": seq_len, "tiny": a.tiny, "params": n_params,
        "tokens_per_s": batch * seq_len / (med / 1e3), "step_ms": med,
        "step_ms_all": [round(t, 3) for t in times_ms], "warmup_steps": a.warmup, "warmup_s": warmup_s,
        "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
        "last_loss": last_loss,
    }
    print(f"{a.model} {result['mode']} on {result['device']} (torch {torch.__version__}): "
          f"{result['tokens_per_s']:,.0f} tok/s, step {med:.1f} ms median of {len(times_ms)}, "
          f"warm-up {warmup_s:.1f} s, peak mem "
          + (f"{result['peak_mem_gb']:.2f} GiB" if result["peak_mem_gb"] is not None else "n/a")
          + f", loss {last_loss:.4f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
