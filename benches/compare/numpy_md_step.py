"""The fused φ⁴ MD update of latticeml (p += ε F(φ); φ' = φ + ε p), vectorised NumPy, f64, 256×256.

Usage: python3 benches/compare/numpy_md_step.py [L] [updates]
Prints site-steps per second, to compare with `latticeml bench hmc --dims LxL --device cpu`.
"""
import sys
import time

import numpy as np

L = int(sys.argv[1]) if len(sys.argv) > 1 else 256
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
kappa, lam, eps = 0.15, 0.022, 0.05
rng = np.random.default_rng(1)
phi = rng.standard_normal((L, L))
p = rng.standard_normal((L, L))


def force(phi):
    nb = sum(np.roll(phi, s, axis=a) for a in (0, 1) for s in (1, -1))
    return 2 * kappa * nb - 2 * (1 - 2 * lam) * phi - 4 * lam * phi**3


for _ in range(5):
    p += eps * force(phi)
    phi = phi + eps * p
t = time.perf_counter()
for _ in range(n):
    p += eps * force(phi)
    phi = phi + eps * p
dt = time.perf_counter() - t
print(f"numpy {np.__version__}: {L}x{L} f64 fused MD update: {n * L * L / dt:.3e} site-steps/s")
