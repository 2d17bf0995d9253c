"""PyTorch reference for `mdc bench MODEL --engine ort --device cuda`: the same mini U-Net as
mdc's graph/blocks.rs expansion (resblock = conv-GN-SiLU, + SiLU(Linear(temb)) per channel,
conv-GN-SiLU, + skip; downsample = 3x3 stride-2 conv; upsample = nearest x2 + 3x3 conv), one
training step as mdc's compiled step does it (x_t from x0 and noise, MSE to the noise, backward,
global-norm clipping at 1, AdamW, EMA), timed in eager mode and under torch.compile, in fp32 and
bf16 autocast. Not part of CI; scripts/gpu-check.sh runs it beside mdc in the same call.

    python3 scripts/torch_train_bench.py --channels 32,64,128,128 --in-channels 3 --size 32 \\
        --batch 64 [--device cuda] [--iters 20] [--modes eager,compile] [--precisions fp32,bf16]

Prints one line per (mode, precision): median ms per step and images/s. TF32 is off, as in mdc.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_unet_bench as reference  # noqa: E402  the same mini U-Net, its widths set per run


def mini_unet(channels, cin):
    reference.CH = channels
    return reference.MiniUNet(cin)


def median_ms(fn, sync, warmup, iters):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - s) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", default="32,64,128,128")
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    channels = [int(c) for c in args.channels.split(",")]
    n, c, s = args.batch, args.in_channels, args.size
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            torch.manual_seed(0)
            model = mini_unet(channels, c).to(dev)
            ema = [p.detach().clone() for p in model.parameters()]
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
            net = torch.compile(model) if mode == "compile" else model
            ab = torch.linspace(0.9999, 0.0001, 1000, device=dev)
            bf16 = precision == "bf16"

            def step():
                x0 = torch.randn(n, c, s, s, device=dev)
                noise = torch.randn_like(x0)
                t = torch.randint(0, 1000, (n,), device=dev)
                a = ab[t].view(-1, 1, 1, 1)
                xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    pred = net(xt, t.float())
                loss = F.mse_loss(pred.float(), noise)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                with torch.no_grad():
                    torch._foreach_lerp_(ema, list(model.parameters()), 0.001)

            ms = median_ms(step, sync, args.warmup, args.iters)
            params = sum(p.numel() for p in model.parameters())
            print(
                f"torch {mode:<7} {precision:<4} {dev.type} channels {args.channels} batch {n}: "
                f"median {ms:8.2f} ms, {n / ms * 1e3:9.1f} images/s ({params:,} parameters)"
            )


if __name__ == "__main__":
    main()
