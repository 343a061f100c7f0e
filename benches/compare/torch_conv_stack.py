"""PyTorch-CPU reference for `latticeml bench nn`: the same conv stack (batch 256, channels
1→16→16→2, 3×3 circular padding, leaky ReLU 0.01 between layers, tanh at the end, f32),
forward + backward of mean(y²), in samples per second.

Usage: python3 benches/compare/torch_conv_stack.py [seconds]
"""
import sys
import time

import torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
torch.manual_seed(1)


def stack():
    layers, chans = [], [1, 16, 16, 2]
    for i, (a, b) in enumerate(zip(chans, chans[1:])):
        layers.append(torch.nn.Conv2d(a, b, 3, padding=1, padding_mode="circular"))
        layers.append(torch.nn.LeakyReLU(0.01) if i < 2 else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for L in (8, 32, 64):
    net, x = stack(), torch.randn(256, 1, L, L)
    step = lambda: net(x).square().mean().backward()
    step()
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < seconds:
        step()
        n += 1
    print(f"L = {L:3d}: {n * 256 / (time.perf_counter() - t):10.1f} samples/s")
