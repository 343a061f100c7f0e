"""Checkerboard Metropolis of the 2D Ising model in vectorised NumPy: the code a user would write
instead of `latticeml bench sample --theory ising`. One int8 spin per site, np.roll neighbours,
one float64 uniform per site and colour. Prints site-updates per second.

usage: python3 numpy_ising.py L SWEEPS [BETA]
"""
import sys
import time

import numpy as np


def sweep(s, beta, mask, rng):
    for colour in (mask, ~mask):
        nb = (np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)).astype(np.int32)
        ds = 2.0 * beta * s * nb  # action change of flipping each spin
        flip = colour & (rng.random(s.shape) < np.exp(-ds))
        s[flip] *= -1


def main():
    l, sweeps = int(sys.argv[1]), int(sys.argv[2])
    beta = float(sys.argv[3]) if len(sys.argv) > 3 else 0.4406868
    rng = np.random.default_rng(7)
    s = np.where(rng.random((l, l)) < 0.5, 1, -1).astype(np.int8)
    y, x = np.indices((l, l))
    mask = (x + y) % 2 == 0
    sweep(s, beta, mask, rng)
    t = time.perf_counter()
    for _ in range(sweeps):
        sweep(s, beta, mask, rng)
    dt = time.perf_counter() - t
    print(f"numpy ising {l}x{l}: {l * l * sweeps / dt:.3e} site-updates/s "
          f"(energy per site {-(s * (np.roll(s, 1, 0) + np.roll(s, 1, 1))).mean():.4f})")


if __name__ == "__main__":
    main()
