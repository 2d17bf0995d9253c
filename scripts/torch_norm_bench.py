"""PyTorch's GroupNorm + SiLU on the shapes of `cargo bench --bench norm` (models/unet-rgb32.toml's
17 GroupNorms at batch 32, 8 groups), the anchor beside mdc's: per step, the forward and the
backward (gradients of x, gamma and beta), medians of 31 runs.

    python3 scripts/torch_norm_bench.py [--threads 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (channels, side, how many GroupNorms of the model have it), as in benches/norm.rs
SHAPES = [(32, 32, 3), (64, 32, 1), (128, 32, 1), (64, 16, 2), (128, 16, 1), (256, 16, 1), (128, 8, 7), (256, 8, 1)]


def median_ms(f, runs=31):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 32, fp32")
    fwd_total = bwd_total = 0.0
    for channels, side, count in SHAPES:
        x = torch.randn(32, channels, side, side, requires_grad=True)
        gamma = torch.ones(channels, requires_grad=True)
        beta = torch.zeros(channels, requires_grad=True)
        dy = torch.randn(32, channels, side, side)

        # as in training: the forward records the graph, the backward runs on a kept one
        def forward():
            return F.silu(F.group_norm(x, 8, gamma, beta))

        y = forward()

        def backward():
            torch.autograd.grad(y, (x, gamma, beta), dy, retain_graph=True)

        fwd = median_ms(forward)
        bwd = median_ms(backward)
        print(f"{channels:>8} {side:>5} {count:>3} {fwd:>10.3f} {bwd:>10.3f}")
        fwd_total += count * fwd
        bwd_total += count * bwd
    print(f"per step (medians): forward {fwd_total:.2f} ms, backward {bwd_total:.2f} ms")


if __name__ == "__main__":
    main()
