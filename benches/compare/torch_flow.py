"""PyTorch-CPU reference for `latticeml bench flow`: the same flow, written independently —
phi^4 in the flow papers' standard form at m^2 = -4, lambda0 = 8 on an L x L torus, 16 affine
couplings with alternating checkerboard masks, each with a conv net 1->8->8->2 (3x3, circular
padding, leaky ReLU 0.01 between, tanh at the end) giving s and t, a N(0, 1) prior, f32.

Measures training steps per second (batch 64: prior draw, flow, action, reverse-KL loss
mean(log q + S), backward, Adam 1e-3) and samples per second drawn under no_grad (batch 1024),
the two figures `latticeml bench flow --json` prints.

Usage: python3 benches/compare/torch_flow.py [seconds] [L]
"""
import json
import math
import sys
import time

import torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
L = int(sys.argv[2]) if len(sys.argv) > 2 else 8
M2, LAMBDA0 = -4.0, 8.0
torch.manual_seed(1)


def checkerboard(parity):
    i = torch.arange(L)
    return (((i[:, None] + i[None, :]) % 2) == parity).float().reshape(1, 1, L, L)


def net():
    layers, chans = [], [1, 8, 8, 2]
    for k, (a, b) in enumerate(zip(chans, chans[1:])):
        layers.append(torch.nn.Conv2d(a, b, 3, padding=1, padding_mode="circular"))
        layers.append(torch.nn.LeakyReLU(0.01) if k < 2 else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


class Flow(torch.nn.Module):
    def __init__(self, layers=16):
        super().__init__()
        self.nets = torch.nn.ModuleList(net() for _ in range(layers))
        self.masks = [checkerboard(k % 2) for k in range(layers)]

    def forward(self, z):
        x, logdet = z, torch.zeros(z.shape[0])
        for f, m in zip(self.nets, self.masks):
            frozen = m * x
            st = f(frozen)
            s, t = st[:, :1], st[:, 1:]
            x = frozen + (1 - m) * (x * torch.exp(s) + t)
            logdet = logdet + ((1 - m) * s).sum(dim=(1, 2, 3))
        return x, logdet


def action(phi):
    hop = sum((phi * torch.roll(phi, 1, d)).sum(dim=(1, 2, 3)) for d in (2, 3))
    return -2 * hop + ((4 + M2) * phi**2 + LAMBDA0 * phi**4).sum(dim=(1, 2, 3))


def log_prior(z):
    return -0.5 * (z**2).sum(dim=(1, 2, 3)) - 0.5 * L * L * math.log(2 * math.pi)


flow = Flow()
opt = torch.optim.Adam(flow.parameters(), lr=1e-3)


def train_step(batch=64):
    z = torch.randn(batch, 1, L, L)
    phi, logdet = flow(z)
    loss = (log_prior(z) - logdet + action(phi)).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


@torch.no_grad()
def draw(batch=1024):
    z = torch.randn(batch, 1, L, L)
    phi, logdet = flow(z)
    return phi, log_prior(z) - logdet, action(phi)


def rate(fn, per_call):
    fn()
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < seconds:
        fn()
        n += 1
    return n * per_call / (time.perf_counter() - t)


out = {
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "dims": f"{L}x{L}",
    "train_batch": 64,
    "train_steps_per_second": rate(train_step, 1),
    "sample_batch": 1024,
    "samples_per_second": rate(draw, 1024),
}
print(json.dumps(out, indent=2))
