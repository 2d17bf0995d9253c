"""PyTorch's GroupNorm + SiLU on the shapes of `cargo bench --bench norm` (models/unet-rgb32.toml's
GroupNorms at batch 32, 8 groups, some followed by a ResBlock's time bias), the anchor beside
mdc's: per step, the forward and the backward (gradients of x, gamma, beta and the time bias),
medians of 31 runs. The shapes come from the Rust bench, which reads them from the model and
prints this command line with them (scripts/cpu-check.sh passes them on):

    python3 scripts/torch_norm_bench.py --shapes 32x32x3x1,... [--threads 2]

each shape as channels x side x how many GroupNorms have it x how many of those a time bias
follows.
"""
import argparse

import torch
import torch.nn.functional as F

from torch_unet_bench import median_ms  # same directory: the same timing as the model bench


def parse_shapes(text):
    """"32x32x3x1,64x16x2x1" -> [(32, 32, 3, 1), (64, 16, 2, 1)]"""
    shapes = []
    for item in text.split(","):
        parts = item.split("x")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise SystemExit(f"--shapes: {item!r} is not channels x side x count x biased (e.g. 32x32x3x1)")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", required=True, type=parse_shapes,
                    help="as `cargo bench --bench norm` prints them: channels x side x count x biased, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 32, fp32")
    fwd_total = bwd_total = 0.0
    for channels, side, count, biased in args.shapes:
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
