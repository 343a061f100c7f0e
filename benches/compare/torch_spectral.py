"""PyTorch-CPU reference for `latticeml bench spectral`: B list networks trained together, as a
PyTorch user would write them for B bootstrap samples — one batched module, written
independently: per network a constant input through a hidden layer of 32 tanh units (weights
[B, 32], biases [B, 32]), an output layer of 500 values (weights [B, 32, 500] by torch.bmm,
biases [B, 500]) and softplus, so rho_b >= 0. Loss: chi^2 of the whitened Kallen-Lehmann problem
of the benchmark paper (100 momenta p = 0.2 ... 20, omega = 0.04 ... 20 in 500 points, sigma_i =
1e-4 D_i p_i / 0.2), summed over the networks and divided by the 100 data, plus an L2 penalty
1e-3 * sum of the squared weights annealed linearly to zero over the first 70 % of the steps; Adam
at 0.01 with a cosine decay to 1 %. float64 throughout, as the Rust networks.

Measures, as `latticeml bench spectral --json` does: network-steps (one Adam step of one network)
per second over `steps` timed steps after one untimed step.

Usage: python3 benches/compare/torch_spectral.py [networks] [steps]
"""
import json
import math
import sys
import time

import torch

B = int(sys.argv[1]) if len(sys.argv) > 1 else 100
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
H, NW, NP = 32, 500, 100
torch.manual_seed(1)
dt = torch.float64

omega = torch.linspace(0.04, 20.0, NW, dtype=dt)
dw = omega[1] - omega[0]
p = 0.2 * torch.arange(1, NP + 1, dtype=dt)


def breit_wigner(w, m, g, a=1.0):
    return 4 * a * g * w / ((m * m + g * g - w * w) ** 2 + 4 * g * g * w * w)


rho = 0.8 * breit_wigner(omega, 2.0, 0.5) + breit_wigner(omega, 5.0, 0.5)
kernel = omega[None, :] / (math.pi * (omega[None, :] ** 2 + p[:, None] ** 2)) * dw
data = kernel @ rho
sigma = 1e-4 * data * p / 0.2
aw = kernel / sigma[:, None]
gw = data / sigma + torch.randn(B, NP, dtype=dt)

level = float(data @ (kernel.sum(1)) / (kernel.sum(1) @ kernel.sum(1)))
w1 = torch.randn(B, H, dtype=dt, requires_grad=True)
b1 = (0.1 * torch.randn(B, H, dtype=dt)).requires_grad_()
w2 = torch.zeros(B, H, NW, dtype=dt, requires_grad=True)
b2 = torch.full((B, NW), math.log(math.expm1(level)), dtype=dt, requires_grad=True)
params = [w1, b1, w2, b2]


def train(steps):
    opt = torch.optim.Adam(params, lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    anneal = max(0.7 * steps, 1.0)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        hid = torch.tanh(w1 + b1)
        out = torch.bmm(hid[:, None, :], w2)[:, 0, :] + b2
        res = torch.nn.functional.softplus(out) @ aw.T - gw
        loss = (res * res).sum() / NP
        lam = 1e-3 * max(1.0 - step / anneal, 0.0)
        if lam > 0:
            loss = loss + lam * ((w1 * w1).sum() + (w2 * w2).sum())
        loss.backward()
        opt.step()
        sched.step()


torch.set_num_threads(int(torch.get_num_threads()))
train(1)
start = time.perf_counter()
train(STEPS)
seconds = time.perf_counter() - start
print(
    json.dumps(
        {
            "device": f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads)",
            "networks": B,
            "steps": STEPS,
            "seconds": seconds,
            "network_steps_per_second": B * STEPS / seconds,
        },
        indent=2,
    )
)
