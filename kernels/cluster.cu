// Swendsen–Wang on the embedded Ising signs of a real field, on the GPU (src/theory/scalar/cluster.rs):
// the frozen bonds, connected-component labels by minimum-label propagation with pointer jumping
// (repeated by the host until no label falls; the fixed point labels each cluster by its smallest
// site, as the CPU's union-find), and the flips, each cluster's coin keyed by that site. Every draw
// has the CPU's counter, so the updates are the same. CPU twins: sw_bonds, min_labels, sw_flip in
// src/theory/scalar/cluster.rs.

// Bond (s, s + mu) of every site: frozen when the signs agree and u < 1 - exp(-2 hop phi_s phi_y),
// u from counter (2 s + mu / 2, chain0 + chain, t, STREAM_BOND = 5), words 2 (mu % 2) and the next.
extern "C" __global__ void sw_bonds(const double* __restrict__ phi, unsigned char* __restrict__ bonds,
                                    Geom g, int d, double hop, unsigned int t, unsigned int k0,
                                    unsigned int k1) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume;
        const double* pc = phi + chain * g.volume;
        unsigned char b = 0;
        for (int mu = 0; mu < d; ++mu) {
            unsigned int y = site_step(s, site_coord(s, mu, d, g), mu, true, g);
            double prod = pc[s] * pc[y];
            if (prod > 0.0) {
                philox_u4 c = {2u * s + (unsigned int)mu / 2u, g.chain0 + chain, t, 5u};
                philox_u4 r = philox4x32_10(c, k0, k1);
                double u = (mu % 2 == 0) ? philox_uniform(r.x, r.y) : philox_uniform(r.z, r.w);
                if (u < -expm1(-2.0 * hop * prod)) b |= (unsigned char)(1u << mu);
            }
        }
        bonds[i] = b;
    }
}
LATTICEML_KERNEL(sw_bonds)

__device__ __forceinline__ unsigned int umin(unsigned int a, unsigned int b) { return b < a ? b : a; }

// Every site its own label (its index within the chain).
extern "C" __global__ void sw_label_init(unsigned int* __restrict__ label, unsigned int volume,
                                         unsigned int n) {
    GRID_STRIDE(i, n) { label[i] = i % volume; }
}
LATTICEML_KERNEL(sw_label_init)

// One pass: each label falls to the smallest over the frozen bonds (both directions) and to the label
// of the site it names; `changed` is set when one fell. Labels only fall and always name a site of the
// same cluster, so reading a neighbour mid-update is harmless; a pass without a change is the fixed point.
extern "C" __global__ void sw_label_step(unsigned int* label, const unsigned char* __restrict__ bonds,
                                         Geom g, int d, unsigned int* changed) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume, s = i - chain * g.volume, base = chain * g.volume;
        unsigned int m = label[i];
        for (int mu = 0; mu < d; ++mu) {
            int x = site_coord(s, mu, d, g);
            unsigned int up = site_step(s, x, mu, true, g), down = site_step(s, x, mu, false, g);
            if ((bonds[i] >> mu) & 1u) m = umin(m, label[base + up]);
            if ((bonds[base + down] >> mu) & 1u) m = umin(m, label[base + down]);
        }
        m = umin(m, label[base + m]);
        if (m < label[i]) {
            label[i] = m;
            *changed = 1u;
        }
    }
}
LATTICEML_KERNEL(sw_label_step)

// Flips every cluster whose coin, u from counter (root, chain0 + chain, t, STREAM_CLUSTER = 6), is
// below one half.
extern "C" __global__ void sw_flip(double* __restrict__ phi, const unsigned int* __restrict__ label,
                                   Geom g, unsigned int t, unsigned int k0, unsigned int k1) {
    GRID_STRIDE(i, g.volume * g.chains) {
        unsigned int chain = i / g.volume;
        philox_u4 c = {label[i], g.chain0 + chain, t, 6u};
        philox_u4 r = philox4x32_10(c, k0, k1);
        if (philox_uniform(r.x, r.y) < 0.5) phi[i] = -phi[i];
    }
}
LATTICEML_KERNEL(sw_flip)
