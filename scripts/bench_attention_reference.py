#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention backends at our attention benchmark's shapes: the reference
for build/bin/attention_bench (fused attention, bf16, causal). Runs on the GPU machine (torch with CUDA).

    python3 scripts/bench_attention_reference.py [--shapes 8x2048,2x8192] [--heads 12] [--head-dim 64]

For each batch x length: the default backend (what torch.compile's models call), then flash, cuDNN
and memory-efficient alone; median time of 20 runs (CUDA events) for the forward without grad and
forward + backward, with TFLOP/s counted as attention_bench counts them: 2·B·H·T²·D for the causal
forward, 2.5x that for the backward.
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="8x2048,2x8192", help="comma-separated BxT")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    a = ap.parse_args()
    backends = [("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    for shape in a.shapes.split(","):
        B, T = (int(x) for x in shape.split("x"))
        H, D = a.heads, a.head_dim
        q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
        flops = 2.0 * B * H * T * T * D

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def fwd_bwd():
            F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(dout)

        for name, backend in backends:
            try:
                if backend is None:
                    tf, tfb = median_ms(fwd), median_ms(fwd_bwd)
                else:
                    with sdpa_kernel([backend]):
                        tf, tfb = median_ms(fwd), median_ms(fwd_bwd)
                print(f"sdpa {name:9s} B={B} H={H} T={T} D={D}: fwd {tf:.3f} ms ({flops / tf / 1e9:.1f} TFLOP/s)  "
                      f"fwd+bwd {tfb:.3f} ms ({3.5 * flops / tfb / 1e9:.1f} TFLOP/s)")
            except RuntimeError as e:  # a backend that does not take the shape or the device
                print(f"sdpa {name} B={B} T={T}: not available ({str(e).splitlines()[0][:100]})")


if __name__ == "__main__":
    main()
