#!/usr/bin/env python3
"""PyTorch reference of the baseline language models with fla's kernels (issue 18's comparison), to set
beside `ttt bench` on the same GPU: 125M Mamba 2 and Gated DeltaNet, bf16 autocast, fp32 master weights,
AdamW, tied embeddings (vocab 32000), the shapes of configs/125m_mamba2.yaml (24 mixer-only blocks,
d 768, N 128, head dim 64) and configs/125m_gated_deltanet.yaml (12 blocks with SwiGLU 2048, 6 heads of
key dim 96, value dim 192).

The sequence mixers are fla's layers (fla-org/flash-linear-attention, Triton):
  mamba2          fla.layers.Mamba2: its fused path is state-spaces/mamba's Triton SSD
                  (mamba_chunk_scan_combined / mamba_split_conv1d_scan_combined)
  gated_deltanet  fla.layers.GatedDeltaNet: fla's chunk_gated_delta_rule
  mamba2_gla      the same Mamba 2 layer written here from PyTorch ops around fla's own chunked kernel
                  for its recurrence, chunk_simple_gla (h_t = exp(g_t) h_{t-1} + k_t v_t^T, o_t = q_t^T h_t
                  with q = C, k = B, v = dt x, g = dt A, scale 1: the SSD of the Mamba 2 paper), and fla's
                  gated RMSNorm; the conv is PyTorch's depthwise conv1d, and B, C are expanded to the heads.
                  A training reference where mamba_ssm's Triton SSD does not run (session 19: "illegal
                  memory access" in its backward on Triton 3.6); needs no --mamba-path.
Mamba-1 is not here: fla's Mamba layer calls mamba_ssm's compiled CUDA selective scan.

fla and mamba_ssm need no install: pass their source trees (--fla-path, --mamba-path); mamba_ssm is
imported without its package __init__ (which loads compiled extensions) so only the Triton SSD is used.
The script prints which kernel path each layer took; a "fast path unavailable" line means the numbers
are those of fla's PyTorch fallback, not of the kernels.

  python3 scripts/bench_baselines_fla.py --model gated_deltanet --mode train --batch 8 --seq-len 2048 \\
      --fla-path /path/to/flash-linear-attention --json out.json
  --mode train: fwd + bwd + AdamW step; prefill: forward under no_grad. Tokens/s = batch·seq / median step.

fla refuses Gated DeltaNet's (and mamba2_gla's) training on Hopper with Triton >= 3.4.0 and < 3.7.1 (its
issue #640: one backward kernel, chunk_bwd_dqkwg, computes wrong values there) unless tilelang is installed. With
--timing-only the script lifts that guard and times the same kernels anyway: the step does the same
work, so its time is a fair reference, but its gradients may be wrong, so the result is marked
"timing_only" and is good for nothing else.
"""
import argparse
import json
import os
import statistics
import sys
import time
import types


def import_kernels(fla_path, mamba_path):
    if fla_path:
        sys.path.insert(0, os.path.abspath(fla_path))
    if mamba_path:
        # A bare package object: submodules load from the source tree, __init__ (compiled extensions) does not run.
        pkg = types.ModuleType("mamba_ssm")
        pkg.__path__ = [os.path.join(os.path.abspath(mamba_path), "mamba_ssm")]
        sys.modules["mamba_ssm"] = pkg


def version_tuple(v):
    """'3.5.1+git123' -> (3, 5, 1)."""
    parts = []
    for p in v.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def fla_training_refused(args, torch):
    """fla refuses the backward of its gated chunked kernels (chunk_bwd_dqkwg with a gate: the gated delta
    rule's, and chunk_simple_gla's) on Hopper with Triton >= 3.4.0 and < 3.7.1 unless tilelang is
    installed (its issue #640: wrong results) -- but only after minutes of Triton compilation. Say so up
    front (measured on an H200 image with torch 2.11, 2026-12-04)."""
    if args.model not in ("gated_deltanet", "mamba2_gla") or args.mode != "train" or not torch.cuda.is_available():
        return ""
    try:
        import triton
    except ImportError:
        return ""
    try:
        import tilelang  # noqa: F401
        return ""
    except ImportError:
        pass
    v = version_tuple(triton.__version__)
    if torch.cuda.get_device_capability()[0] == 9 and (3, 4, 0) <= v < (3, 7, 1):
        return ("fla refuses its gated chunk_bwd_dqkwg on Hopper with Triton %s (>= 3.4.0, < 3.7.1; "
                "fla issue #640) unless tilelang is installed" % triton.__version__)
    return ""


def lift_fla_hopper_guard():
    """--timing-only: make fla's chunk_bwd_dqkwg believe Triton is >= 3.7.1, so it runs the Triton kernel
    it would refuse (the check reads the module's TRITON_ABOVE_3_7_1 at call time)."""
    import fla.ops.common.chunk_o as chunk_o
    if not hasattr(chunk_o, "TRITON_ABOVE_3_7_1"):
        sys.exit("bench_baselines_fla: --timing-only: this fla has no TRITON_ABOVE_3_7_1 guard to lift")
    chunk_o.TRITON_ABOVE_3_7_1 = True


def build_model(name, torch, nn, F):
    from fla.modules import RMSNorm  # noqa: F401  (fla present)

    V, D = 32000, 768

    class SwiGLU(nn.Module):
        def __init__(self, d, ff):
            super().__init__()
            self.w1, self.w3 = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
            self.w2 = nn.Linear(ff, d, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class Block(nn.Module):
        def __init__(self, mixer, d_ff):
            super().__init__()
            self.seq_norm, self.mixer = nn.RMSNorm(D, eps=1e-6), mixer
            self.mlp = SwiGLU(D, d_ff) if d_ff else None
            self.ffn_norm = nn.RMSNorm(D, eps=1e-6) if d_ff else None

        def forward(self, h):
            out = self.mixer(self.seq_norm(h))
            h = h + (out[0] if isinstance(out, tuple) else out)
            return h + self.mlp(self.ffn_norm(h)) if self.mlp is not None else h

    if name == "mamba2_gla":
        from fla.modules.layernorm_gated import RMSNormGated
        from fla.ops.simple_gla import chunk_simple_gla

        class Mamba2GLA(nn.Module):
            """configs/125m_mamba2.yaml's mixer (layers/mamba2.h): in_proj to (z, xBC, dt), causal depthwise
            conv + SiLU over xBC, dt = softplus(dt + dt_bias), A = -exp(A_log), SSD scan, D skip,
            RMSNorm(y * silu(z)), out_proj."""

            def __init__(self, d=D, heads=24, head_dim=64, state=128, conv=4):
                super().__init__()
                self.h, self.p, self.n = heads, head_dim, state
                self.d_inner = heads * head_dim
                conv_dim = self.d_inner + 2 * state
                self.in_proj = nn.Linear(d, self.d_inner + conv_dim + heads, bias=False)
                self.conv1d = nn.Conv1d(conv_dim, conv_dim, conv, groups=conv_dim, padding=conv - 1)
                dt = torch.exp(torch.rand(heads) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3)))
                               + torch.log(torch.tensor(1e-3)))
                self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
                self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
                self.D = nn.Parameter(torch.ones(heads))
                self.norm = RMSNormGated(self.d_inner, eps=1e-5, norm_before_gate=False)
                self.out_proj = nn.Linear(self.d_inner, d, bias=False)

            def forward(self, x):
                Bt, T, _ = x.shape
                z, xbc, dt = torch.split(self.in_proj(x), [self.d_inner, self.d_inner + 2 * self.n, self.h], dim=-1)
                xbc = F.silu(self.conv1d(xbc.transpose(1, 2))[..., :T].transpose(1, 2))
                xs, Bm, Cm = torch.split(xbc, [self.d_inner, self.n, self.n], dim=-1)
                dt = F.softplus(dt.float() + self.dt_bias)                             # [B, T, H]
                A = -torch.exp(self.A_log.float())
                xs = xs.reshape(Bt, T, self.h, self.p)
                heads = (Bt, T, self.h, self.n)
                y, _ = chunk_simple_gla(q=Cm.unsqueeze(2).expand(heads).contiguous(),
                                        k=Bm.unsqueeze(2).expand(heads).contiguous(),
                                        v=(xs * dt.unsqueeze(-1)).to(xs.dtype), g=dt * A, scale=1.0)
                y = y + xs * self.D.view(1, 1, -1, 1)
                return self.out_proj(self.norm(y.reshape(Bt, T, self.d_inner).to(z.dtype), z))

        print("fla Mamba 2 through chunk_simple_gla (no mamba_ssm)")
        blocks = [Block(Mamba2GLA(), 0) for _ in range(24)]
    elif name == "mamba2":
        import fla.layers.mamba2 as m2
        print("fla Mamba2: mamba_ssm Triton SSD available:", m2.mamba_chunk_scan_combined is not None)
        blocks = [Block(m2.Mamba2(num_heads=24, head_dim=64, hidden_size=D, state_size=128, expand=2, n_groups=1,
                                  conv_kernel=4, use_conv_bias=True, chunk_size=256, use_bias=False, layer_idx=i), 0)
                  for i in range(24)]
    else:
        from fla.layers import GatedDeltaNet
        blocks = [Block(GatedDeltaNet(hidden_size=D, expand_v=2, head_dim=96, num_heads=6, mode="chunk", layer_idx=i),
                        2048) for i in range(12)]

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, D)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.blocks = nn.ModuleList(blocks)
            self.norm = nn.RMSNorm(D, eps=1e-6)

        def forward(self, ids, targets=None):
            h = self.embed(ids)
            for b in self.blocks:
                h = b(h)
            logits = F.linear(self.norm(h), self.embed.weight)
            if targets is None:
                return logits
            return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))

    return LM()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["mamba2", "mamba2_gla", "gated_deltanet"], required=True)
    ap.add_argument("--mode", choices=["train", "prefill"], default="train")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--fla-path", help="flash-linear-attention source tree (else the installed fla)")
    ap.add_argument("--mamba-path", help="state-spaces/mamba source tree (Mamba 2's Triton SSD)")
    ap.add_argument("--timing-only", action="store_true",
                    help="time Gated DeltaNet (and mamba2_gla) training even where fla refuses it (Hopper, Triton 3.4-3.7.0): "
                         "same kernels, possibly wrong gradients; the result is marked timing_only")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    import_kernels(args.fla_path, args.mamba_path)
    import torch

    why = fla_training_refused(args, torch)
    if why and not args.timing_only:
        sys.exit("bench_baselines_fla: " + why + " (--timing-only times it anyway)")
    if why:
        print("bench_baselines_fla: " + why + "; --timing-only: timing fla's Triton kernels anyway "
              "(its gradients may be wrong on this Triton)")
        lift_fla_hopper_guard()
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build_model(args.model, torch, nn, F).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    ids = torch.randint(0, 32000, (args.batch, args.seq_len), device=dev)
    targets = torch.randint(0, 32000, (args.batch, args.seq_len), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if args.mode == "train":
                loss = model(ids, targets)
            else:
                with torch.no_grad():
                    model(ids)
                return
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train(args.mode == "train")
    # fla's Mamba2 in training mode fuses the conv through causal_conv1d's compiled CUDA extension;
    # in eval mode it runs the conv (fla's Triton conv when causal_conv1d is absent) and then
    # mamba_chunk_scan_combined, which is differentiable: the same SSD kernels, no compiled extension.
    for b in model.blocks:
        if args.model == "mamba2":  # (mamba2_gla's mixer has no such mode: it is the same in both)
            b.mixer.eval()
    times = []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    res = {"model": args.model, "mode": args.mode, "batch": args.batch, "seq_len": args.seq_len, "parameters": params,
           "median_step_s": med, "tokens_per_s": args.batch * args.seq_len / med,
           "peak_memory_bytes": torch.cuda.max_memory_allocated(), "device": torch.cuda.get_device_name(),
           "torch": torch.__version__, "timing_only": bool(why)}
    print(json.dumps(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
