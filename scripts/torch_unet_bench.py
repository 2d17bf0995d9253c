"""PyTorch reference timings for models/unet-rgb32.toml: the same mini U-Net (mdc's
graph/blocks.rs expansion: resblock = conv-GN-SiLU, + SiLU(Linear(temb)) per channel, conv-GN-SiLU,
+ skip (1x1 conv when the width changes); downsample = 3x3 stride-2 conv; upsample = nearest x2 +
3x3 conv), timed eager in fp32 and under torch.autocast("cpu", dtype=torch.bfloat16).

Not part of CI or the tests. Run beside `mdc bench models/unet-rgb32.toml --batch 8
--train-batch 32 --precision bf16|fp32` in the same sitting:
    python3 scripts/torch_unet_bench.py [--threads 2] [--iters 10]
Prints medians of the forward at batch 8 (no grad) and of a training step at batch 32
(forward, MSE loss, backward, AdamW), for fp32 and bf16 autocast.
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CH = [32, 64, 128, 128]
GROUPS = 8
TIME_DIM, TIME_HIDDEN = 32, 128


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t[:, None].float() * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(GROUPS, cout)
        self.time_proj = nn.Linear(TIME_HIDDEN, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + F.silu(self.time_proj(temb))[:, :, None, None]
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class MiniUNet(nn.Module):
    def __init__(self, cin=3):
        super().__init__()
        c0, c1, c2, c3 = CH
        self.lin1 = nn.Linear(TIME_DIM, TIME_HIDDEN)
        self.lin2 = nn.Linear(TIME_HIDDEN, TIME_HIDDEN)
        self.init = nn.Conv2d(cin, c0, 3, padding=1)
        self.enc1 = ResBlock(c0, c1)
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.enc2 = ResBlock(c1, c2)
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.enc3 = ResBlock(c2, c3)
        self.mid1 = ResBlock(c3, c3)
        self.mid2 = ResBlock(c3, c3)
        self.dec3 = ResBlock(2 * c3, c2)
        self.up3 = nn.Conv2d(c2, c2, 3, padding=1)
        self.dec2 = ResBlock(2 * c2, c1)
        self.up2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.dec1 = ResBlock(2 * c1, c0)
        self.out_norm = nn.GroupNorm(GROUPS, c0)
        self.out = nn.Conv2d(c0, cin, 3, padding=1)

    def forward(self, x, t):
        temb = self.lin2(F.silu(self.lin1(timestep_embedding(t, TIME_DIM))))
        e1 = self.enc1(self.init(x), temb)
        e2 = self.enc2(self.down1(e1), temb)
        e3 = self.enc3(self.down2(e2), temb)
        m = self.mid2(self.mid1(e3, temb), temb)
        u = self.dec3(torch.cat([m, e3], 1), temb)
        u = self.up3(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.dec2(torch.cat([u, e2], 1), temb)
        u = self.up2(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.dec1(torch.cat([u, e1], 1), temb)
        return self.out(F.silu(self.out_norm(u)))


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        times.append((time.perf_counter() - s) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma-separated: fp32, bf16 (autocast; very slow on a CPU without AVX512_BF16)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MiniUNet()
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {args.threads} threads, {params:,} parameters (mdc: 2,397,475)")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x8, t8 = torch.randn(8, 3, 32, 32), torch.randint(0, 1000, (8,))
    x32, t32, n32 = torch.randn(32, 3, 32, 32), torch.randint(0, 1000, (32,)), torch.randn(32, 3, 32, 32)

    wanted = args.precisions.split(",")
    for name, bf16 in [("fp32", False), ("bf16 autocast", True)]:
        if name.split()[0] not in wanted:
            continue
        def ctx():
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

        def forward():
            with torch.no_grad(), ctx():
                model(x8, t8)

        def step():
            opt.zero_grad(set_to_none=True)
            with ctx():
                loss = F.mse_loss(model(x32, t32).float(), n32)
            loss.backward()
            opt.step()

        f = median_ms(forward, args.warmup, args.iters)
        s = median_ms(step, args.warmup, args.iters)
        print(f"{name:<14} forward batch 8: {f:8.2f} ms   train step batch 32: {s:8.2f} ms")


if __name__ == "__main__":
    main()
