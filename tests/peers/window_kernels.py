#!/usr/bin/env python3
"""The sliding-window attention kernels LibTorch can reach, timed on one layer's shape.

Why yocotron's window layers run FlashAttention-2 (docs/benchmarks.md, the original YOCO family):
per layer, forward + backward, bf16, TinyLlama heads (32 query, 4 KV, d 64), 16,384 tokens per
call like the training bench. cuDNN's causal kernel (no window) is the yardstick; cuDNN with the
band as an additive bias is the only way to give it the window through ATen, and it still computes
every causal block. Python only for this measurement; the product calls the same ATen ops from C++.
    python3 tests/peers/window_kernels.py
"""
import time

import torch

H, HKV, D, TOKENS = 32, 4, 64, 16384


def band_bias(T, W):
    i = torch.arange(T, device="cuda")
    inside = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - W)
    return torch.zeros(T, T, device="cuda", dtype=torch.bfloat16).masked_fill(~inside, float("-inf"))


def band_reference(q, k, v, W):
    g = H // HKV
    s = q.float() @ k.repeat_interleave(g, 1).float().transpose(-1, -2) / D**0.5
    return torch.softmax(s + band_bias(q.shape[2], W).float(), -1) @ v.repeat_interleave(g, 1).float()


def ms_per_call(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e3


def main():
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; ms per layer, forward + backward (forward)")
    print("| T | W | cuDNN causal, no window | FlashAttention-2 window | cuDNN causal + band bias | bias path error |")
    print("|---|---|---|---|---|---|")
    for T, W in [(2048, 512), (2048, 1024), (4096, 1024), (4096, 2048), (8192, 1024)]:
        B = TOKENS // T
        q = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, HKV, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, HKV, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        dout = torch.randn_like(q)
        bias = band_bias(T, W)[None, None].expand(B, H, T, T)
        cudnn = torch.ops.aten._scaled_dot_product_cudnn_attention
        kernels = {
            "causal": lambda: cudnn(q, k, v, None, True, 0.0, True, False)[0],
            "flash": lambda: torch.ops.aten._flash_attention_forward(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, None, T, T, 0.0, True, False,
                window_size_left=W - 1, window_size_right=0)[0].transpose(1, 2),
            "bias": lambda: cudnn(q, k, v, bias, True, 0.0, True, False)[0],
        }
        cells = []
        for fn in kernels.values():
            both = ms_per_call(lambda: fn().backward(dout))
            fwd = ms_per_call(lambda: fn().detach())
            cells.append(f"{both:.3f} ({fwd:.3f})")
        with torch.no_grad():
            want = band_reference(q[:1], k[:1], v[:1], W)
            err = ((kernels["bias"]()[:1].float() - want).abs().max() / want.abs().max()).item()
        print(f"| {T} | {W} | " + " | ".join(cells) + f" | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
