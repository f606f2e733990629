#!/usr/bin/env python3
"""scripts/bench_fla_ttt.py — the reference for bench/ttt_scan_bench: fla's Triton TTT-Linear op
(fla-org/flash-linear-attention, fla/ops/ttt `chunk_ttt_linear`, a simplified TTT-Linear: one
learning rate per token, GroupNorm residual) timed alone at the same shapes, forward and
forward+backward, bf16 inputs as fla's tests use, fp32 initial state.

fla is not a dependency of ttt: fetch its source into a git-ignored folder (e.g. .fla/) and put
it on PYTHONPATH; it needs only torch and triton.

Usage: PYTHONPATH=.fla python3 scripts/bench_fla_ttt.py [--shapes 8x2048,2x8192] [--H 12] [--D 64]
"""
import argparse

import torch


def bench(fn, reps=20):
    import triton.testing
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="8x2048,2x8192")
    ap.add_argument("--H", type=int, default=12)
    ap.add_argument("--D", type=int, default=64)
    a = ap.parse_args()
    from fla.ops.ttt import chunk_ttt_linear
    torch.manual_seed(0)
    dev = "cuda"
    for shape in a.shapes.split(","):
        B, T = (int(x) for x in shape.split("x"))
        H, D = a.H, a.D
        mk = lambda *s: torch.randn(*s, device=dev, dtype=torch.bfloat16).requires_grad_(True)
        q, k, v = mk(B, T, H, D), mk(B, T, H, D), mk(B, T, H, D)
        w = torch.ones(H, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        b = torch.zeros(H, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        eta = (torch.rand(B, T, H, 1, device=dev, dtype=torch.bfloat16) * 0.02 + 0.01).requires_grad_(True)
        h0 = (torch.randn(B, H, D, D, device=dev) * 0.02).requires_grad_(True)
        hb0 = torch.zeros(B, H, 1, D, device=dev, requires_grad=True)
        do = torch.randn(B, T, H, D, device=dev, dtype=torch.bfloat16)

        def fwd():
            with torch.no_grad():
                return chunk_ttt_linear(q, k, v, w, b, eta, initial_state=h0, initial_state_bias=hb0)

        def fwd_bwd():
            o, _, _ = chunk_ttt_linear(q, k, v, w, b, eta, initial_state=h0, initial_state_bias=hb0)
            o.backward(do)

        tf, tfb = bench(fwd), bench(fwd_bwd)
        nt = (T + 15) // 16
        print(f"fla chunk_ttt_linear B {B} T {T} H {H} D {D} bf16: forward {tf:.3f} ms ({1e3 * tf / nt:.2f} us/chunk), "
              f"fwd+bwd {tfb:.3f} ms ({1e3 * tfb / nt:.2f} us/chunk)", flush=True)


if __name__ == "__main__":
    main()
