"""PyTorch's GroupNorm + SiLU on the shapes of `cargo bench --bench norm` (models/unet-rgb32.toml's
17 GroupNorms at batch 32, 8 groups, 8 of them followed by a ResBlock's time bias), the anchor
beside mdc's: per step, the forward and the backward (gradients of x, gamma, beta and the time
bias), medians of 31 runs.

    python3 scripts/torch_norm_bench.py [--threads 2]
"""
import argparse

import torch
import torch.nn.functional as F

from torch_unet_bench import median_ms  # same directory: the same timing as the model bench

# (channels, side, how many GroupNorms of the model have it, how many of those a time bias follows),
# as benches/norm.rs reads them from the model
SHAPES = [(32, 32, 3, 1), (64, 16, 2, 1), (64, 32, 2, 1), (128, 8, 8, 4), (128, 16, 2, 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 32, fp32")
    fwd_total = bwd_total = 0.0
    for channels, side, count, biased in SHAPES:
        x = torch.randn(32, channels, side, side, requires_grad=True)
        gamma = torch.ones(channels, requires_grad=True)
        beta = torch.zeros(channels, requires_grad=True)
        time_bias = torch.randn(32, channels, requires_grad=True)
        dy = torch.randn(32, channels, side, side)
        times = []
        for with_bias in (False, True):
            # as in training: the forward records the graph, the backward runs on a kept one
            def forward():
                y = F.silu(F.group_norm(x, 8, gamma, beta))
                return y + time_bias[:, :, None, None] if with_bias else y

            y = forward()
            wrt = (x, gamma, beta, time_bias) if with_bias else (x, gamma, beta)

            def backward():
                torch.autograd.grad(y, wrt, dy, retain_graph=True)

            times.append((median_ms(forward, 1, 31), median_ms(backward, 1, 31)))
        (fwd, bwd), (fwd_b, bwd_b) = times
        print(f"{channels:>8} {side:>5} {count:>3} {fwd:>10.3f} {bwd:>10.3f} {biased:>7} {fwd_b:>7.3f}/{bwd_b:.3f}")
        fwd_total += (count - biased) * fwd + biased * fwd_b
        bwd_total += (count - biased) * bwd + biased * bwd_b
    print(f"the model's GroupNorm passes per step (medians, time biases included): "
          f"forward {fwd_total:.2f} ms, backward {bwd_total:.2f} ms")

if __name__ == "__main__":
    main()
