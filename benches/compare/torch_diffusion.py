"""PyTorch-CPU reference for `latticeml bench diffusion`: the same score network, written
independently with torch.nn — a two-level U-Net on an L x L torus (circular padding), channels
16 and 32, 3x3 convolutions with bias, Gaussian Fourier features of t (16 frequencies of scale 16:
sin and cos of 2 pi t w) through Linear + SiLU as the time embedding, added per channel after every
block's convolution by its own Linear, GroupNorm(4) with affine weights, SiLU; 2x2 average pooling
down, nearest 2x up-sampling, the skip connection by concatenation, a final 3x3 convolution, the
output divided by sigma_t of the VE SDE with sigma = 25.

Measures, as `latticeml bench diffusion --json` does, f32 on the CPU:
- training samples per second at batch 64: the noisy batch x0 + sigma_t z, the denoising
  score-matching loss mean((sigma_t s + z)^2), backward, Adam 1e-3, and the EMA of the weights
  (decay 0.999);
- score evaluations per second at batch 256 (no gradients): one step of any reverse-process
  sampler, so configurations per second of an N-step sampler are this over N.

Usage: python3 benches/compare/torch_diffusion.py [seconds] [L] [steps]
"""
import copy
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
L = int(sys.argv[2]) if len(sys.argv) > 2 else 32
STEPS = int(sys.argv[3]) if len(sys.argv) > 3 else 500
C0, C1, GROUPS, FREQ, SIGMA = 16, 32, 4, 16, 25.0
torch.manual_seed(1)


def marginal_std(t):
    return torch.sqrt((SIGMA ** (2 * t) - 1) / (2 * math.log(SIGMA)))


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode="circular")
        self.time = nn.Linear(C0, cout)
        self.norm = nn.GroupNorm(GROUPS, cout)

    def forward(self, h, emb):
        y = self.conv(h) + self.time(emb)[:, :, None, None]
        return F.silu(self.norm(y))


class ScoreNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.randn(FREQ) * 16.0)
        self.embed = nn.Linear(2 * FREQ, C0)
        self.down0, self.down1 = Block(1, C0), Block(C0, C1)
        self.up1, self.up0 = Block(C1, C0), Block(2 * C0, C0)
        self.out = nn.Conv2d(C0, 1, 3, padding=1, padding_mode="circular")

    def forward(self, x, t):
        a = 2 * math.pi * t[:, None] * self.w[None, :]
        emb = F.silu(self.embed(torch.cat([torch.sin(a), torch.cos(a)], dim=1)))
        h0 = self.down0(x, emb)
        h1 = self.down1(F.avg_pool2d(h0, 2), emb)
        u1 = self.up1(F.interpolate(h1, scale_factor=2, mode="nearest"), emb)
        u0 = self.up0(torch.cat([u1, h0], dim=1), emb)
        return self.out(u0) / marginal_std(t)[:, None, None, None]


model = ScoreNet()
ema = copy.deepcopy(model)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


def timed(f):
    f()
    start, units = time.perf_counter(), 0
    while units == 0 or time.perf_counter() - start < seconds:
        units += f()
    return units / (time.perf_counter() - start)


def train_step():
    x0 = torch.randn(64, 1, L, L)
    t = 1e-3 + 0.999 * torch.rand(64)
    z = torch.randn_like(x0)
    sig = marginal_std(t)[:, None, None, None]
    loss = ((sig * model(x0 + sig * z, t) + z) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        ps, es = list(model.parameters()), list(ema.parameters())
        torch._foreach_mul_(es, 0.999)
        torch._foreach_add_(es, ps, alpha=0.001)
    return 64


x_eval = torch.randn(256, 1, L, L) * marginal_std(torch.tensor(0.5))
t_eval = torch.full((256,), 0.5)


def evaluate():
    with torch.no_grad():
        ema(x_eval, t_eval)
    return 256


train = timed(train_step)
evals = timed(evaluate)
print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "dims": f"{L}x{L}",
            "train_batch": 64,
            "train_samples_per_second": train,
            "sample_batch": 256,
            "evaluations_per_second": evals,
            "sampler_steps": STEPS,
            "configurations_per_second": evals / STEPS,
        },
        indent=2,
    )
)
