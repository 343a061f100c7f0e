"""PyTorch-CPU reference for `latticeml bench can`: the same continuous-mixture autoregressive
network for the 2D XY model, written independently — an L x L torus in raster order, inputs
(cos, sin) of each angle relative to site 0, a masked convolution of type A (a site sees the taps
whose periodically wrapped source comes strictly before it) with 16 channels, 2 residual type-B
layers h + SiLU(conv(h)), 5x5 kernels, a 1x1 head to 3K = 12 outputs per site: a mixture of 4
Beta densities (a, b = 1 + softplus) with a uniform part of weight 0.05 over u, the angle relative
to the left neighbour (the one above for the first column) shifted by pi; the first angle uniform.

The causal masks depend on the output site near the boundary (a wrapped tap counts only if it
lands on an earlier site), so each convolution is circular im2col (unfold), a fixed [C k^2, V]
mask, and a matmul, as one would write it in PyTorch.

Measures, as `latticeml bench can --json` does, f32 on the CPU:
- training steps per second at batch 64: draw a batch from the network without gradients
  (naive generation, as PixelCNN code does it: the whole network once per site), the XY energy,
  one forward pass for log q with gradients, the REINFORCE loss, backward, Adam 1e-3;
- gradient steps per second: the same step on a fixed batch, without drawing it (log q forward,
  REINFORCE loss, backward): the like-for-like figure of the autodiff;
- samples per second of that naive generation (batch 64).

Usage: python3 benches/compare/torch_can.py [seconds] [L]
"""
import json
import math
import sys
import time

import torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
L = int(sys.argv[2]) if len(sys.argv) > 2 else 16
C, RES, KS, K, EPS, BETA = 16, 2, 5, 4, 0.05, 1.0
V = L * L
torch.manual_seed(1)


def causal_mask(cin, inclusive):
    """[cin * KS * KS, V]: 1 where tap (ky, kx) of output site s reads a source at or before s."""
    m = torch.zeros(KS * KS, V)
    for s in range(V):
        y, x = divmod(s, L)
        for ky in range(KS):
            for kx in range(KS):
                src = ((y + ky - KS // 2) % L) * L + (x + kx - KS // 2) % L
                if src < s or (inclusive and src == s):
                    m[ky * KS + kx, s] = 1.0
    return m.repeat(cin, 1)


class Can(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.ParameterList()
        self.b = torch.nn.ParameterList()
        for cin in [2] + [C] * RES:
            bound = 1 / math.sqrt(cin * KS * KS)
            self.w.append(torch.nn.Parameter(torch.empty(C, cin * KS * KS).uniform_(-bound, bound)))
            self.b.append(torch.nn.Parameter(torch.empty(C, 1).uniform_(-bound, bound)))
        self.masks = [causal_mask(2, False)] + [causal_mask(C, True) for _ in range(RES)]
        self.head = torch.nn.Conv2d(C, 3 * K, 1)

    def conv(self, h, i):
        cols = torch.nn.functional.unfold(
            torch.nn.functional.pad(h, (KS // 2,) * 4, mode="circular"), KS
        )
        return self.w[i] @ (cols * self.masks[i]) + self.b[i]

    def forward(self, x):
        b = x.shape[0]
        h = torch.nn.functional.silu(self.conv(x, 0))
        for i in range(1, RES + 1):
            h = h + torch.nn.functional.silu(self.conv(h.reshape(b, C, L, L), i))
        return self.head(h.reshape(b, C, L, L)).reshape(b, 3 * K, V)


def relative_angles(u):
    """phi_s = theta_s - theta_0 from u [B, V] (sequential in s: each refers to an earlier site)."""
    phis = [torch.zeros(u.shape[0])]
    for s in range(1, V):
        ref = phis[s - 1] if s % L else phis[s - L]
        phis.append(torch.remainder(ref + 2 * math.pi * u[:, s] - math.pi, 2 * math.pi))
    return torch.stack(phis, 1)


def features(phi):
    return torch.stack([phi.cos(), phi.sin()], 1).reshape(-1, 2, L, L)


def site_log_density(out, u):
    """ln q(u) per site: out [B, 3K, V], u [B, V]."""
    logits, ra, rb = out[:, :K], out[:, K : 2 * K], out[:, 2 * K :]
    a, b = 1 + torch.nn.functional.softplus(ra), 1 + torch.nn.functional.softplus(rb)
    u = u.clamp(2**-24, 1 - 2**-24).unsqueeze(1)
    lbeta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    lp = math.log1p(-EPS) + torch.log_softmax(logits, 1) + (a - 1) * u.log() + (b - 1) * torch.log1p(-u) - lbeta
    return torch.logaddexp(torch.logsumexp(lp, 1), torch.tensor(math.log(EPS)))


def sample_site(out):
    """One draw of u per sample from the site's density, out [B, 3K]."""
    logits, ra, rb = out[:, :K], out[:, K : 2 * K], out[:, 2 * K :]
    comp = torch.distributions.Categorical(logits=logits).sample().unsqueeze(1)
    a = 1 + torch.nn.functional.softplus(ra.gather(1, comp)).squeeze(1)
    b = 1 + torch.nn.functional.softplus(rb.gather(1, comp)).squeeze(1)
    u = torch.distributions.Beta(a, b).sample()
    uniform = torch.rand(out.shape[0]) < EPS
    return torch.where(uniform, torch.rand(out.shape[0]), u)


@torch.no_grad()
def generate(model, batch):
    u, phi = torch.zeros(batch, V), torch.zeros(batch, V)
    u[:, 0] = torch.rand(batch)
    for s in range(1, V):
        out = model(features(phi))
        u[:, s] = sample_site(out[:, :, s])
        ref = phi[:, s - 1] if s % L else phi[:, s - L]
        phi[:, s] = torch.remainder(ref + 2 * math.pi * u[:, s] - math.pi, 2 * math.pi)
    return u


def log_q(model, u):
    lp = site_log_density(model(features(relative_angles(u))), u)
    return lp[:, 1:].sum(1) - V * math.log(2 * math.pi)


def energy(u):
    theta = relative_angles(u).reshape(-1, L, L)
    return -sum(torch.cos(theta - torch.roll(theta, 1, d)).sum((1, 2)) for d in (1, 2))


def timed(f):
    f()
    start, n = time.perf_counter(), 0
    while n == 0 or time.perf_counter() - start < seconds:
        n += f()
    return n / (time.perf_counter() - start)


torch.set_num_threads(2)
model = Can()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


fixed = generate(model, 64)


def grad_step():
    with torch.no_grad():
        f = log_q(model, fixed) + BETA * energy(fixed)
        f = f - f.mean()
    opt.zero_grad()
    (f * log_q(model, fixed)).mean().backward()
    return 1


def train_step():
    u = generate(model, 64)
    with torch.no_grad():
        f = log_q(model, u) + BETA * energy(u)
        f = f - f.mean()
    opt.zero_grad()
    (f * log_q(model, u)).mean().backward()
    opt.step()
    return 1


print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "dims": f"{L}x{L}",
            "train_batch": 64,
            "train_steps_per_second": timed(train_step),
            "grad_steps_per_second": timed(grad_step),
            "sample_batch": 64,
            "naive_samples_per_second": timed(lambda: (generate(model, 64), 64)[1]),
        },
        indent=2,
    )
)
