//! Every CUDA kernel of `kernels/*.cu` executed on the CPU through the harness (`harness/`) and
//! compared with its CPU twin, at awkward sizes (one element, sizes that are not multiples of
//! the block, several blocks, odd extents, grids smaller than the data), in both thread orders,
//! f32 and f64. Launch geometries come from `latticeml::device::geometry`, as in the CUDA backend.
//! A kernel in the source without a case here fails the test.

mod common;
mod harness;

use std::io::Write;

use cudarc::driver::LaunchConfig;
use latticeml::action::{reference_action, Action, ForceLaw, Phi4, ScalarCouplings};
use latticeml::can::generate::DrawKey;
use latticeml::can::mixture::{self, MixtureShape};
use latticeml::can::{Can, CanConfig};
use latticeml::device::cuda::{
    KernelFamily, CAN, CLUSTER, DOMAIN, FAMILIES, FLOW, FOURIER, ISING, NN, PHILOX, SCALAR_HMC,
    SCALAR_LOCAL, UNET, XY,
};
use latticeml::device::geometry::{self, chunks_per_segment, sum_chunks, REDUCE_CHUNK};
use latticeml::device::CpuDevice;
use latticeml::domain::{Decomposition, OrderedReduction};
use latticeml::flow::coupling::{self, Direction, Geometry};
use latticeml::hmc::cpu as hmc_cpu;
use latticeml::hmc::cuda::{GpuCouplings, GpuGeom};
use latticeml::hmc::domain::cpu::{box_densities, box_kick_drift};
use latticeml::hmc::domain::cuda::BoxGeom;
use latticeml::hmc::domain::{BoxGeometry, ChunkSums};
use latticeml::hmc::fft;
use latticeml::nn::cpu as nn_cpu;
use latticeml::nn::kernels::{bcast_spec, conv_spec, reduce_spec, AdamHyper};
use latticeml::nn::layers::Activation;
use latticeml::nn::ops::batched_linear::{self as bl, BatchedLinearShape};
use latticeml::nn::ops::group_norm_silu::{self as gns, NormSiluShape};
use latticeml::nn::ops::unet;
use latticeml::nn::{Binary, ConvMode, Ctx, ParamStore, Real, Unary};
use latticeml::theory::ising::cpu as ising_cpu;
use latticeml::theory::ising::cuda::{GpuPack, GpuRule};
use latticeml::theory::ising::{Packing, Rule};
use latticeml::theory::scalar::cluster;
use latticeml::theory::scalar::cpu as scalar_cpu;
use latticeml::theory::xy::cpu as xy_cpu;
use latticeml::{philox, Device, Lattice};

use common::max_rel_diff;
use harness::{Args, Harness, Order, ORDERS};

fn randn(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 2024, stream, 7, 11);
    v
}

/// The launch from `geometry`, and the same with a one-block grid (exercising grid-stride loops).
fn with_small_grid(cfg: LaunchConfig) -> [LaunchConfig; 2] {
    let mut small = cfg;
    small.grid_dim = (1, 1, 1);
    [cfg, small]
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let d = max_rel_diff(got, want);
    assert!(d <= tol, "{what}: max relative difference {d:e} > {tol:e}");
}

fn launch(h: &Harness, name: &str, cfg: &LaunchConfig, args: &mut Args<'_>, order: Order) {
    h.launch(name, cfg, args, order)
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", h.family()));
}

// ---------------------------------------------------------------------------------------------
// philox.cu

fn philox_cases(h: &Harness) {
    let [k0, k1] = philox::key_from_seed(0x1234_5678_9abc_def0);
    for n in [1usize, 257, 1000] {
        let want: Vec<u32> = (0..n as u32)
            .flat_map(|i| philox::philox4x32_10([i, 3, 5, 7], [k0, k1]))
            .collect();
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let mut out = vec![0u32; 4 * n];
            let mut a = Args::new();
            a.output(&mut out)
                .val(&(n as u32))
                .val(&3u32)
                .val(&5u32)
                .val(&7u32)
                .val(&k0)
                .val(&k1);
            launch(h, "philox_raw", &cfg, &mut a, Order::Descending);
            assert_eq!(out, want, "philox_raw n={n}");
        }
    }
    for (volume, chains) in [(1usize, 1usize), (7, 3), (1000, 2)] {
        let mut want = vec![0.0; volume * chains];
        for (c, row) in want.chunks_mut(volume).enumerate() {
            philox::fill_normals(row, 99, 5 + c as u32, 4, philox::STREAM_MOMENTUM);
        }
        let [k0, k1] = philox::key_from_seed(99);
        let pairs = volume.div_ceil(2) * chains;
        for cfg in with_small_grid(geometry::elementwise(pairs).unwrap()) {
            let mut out = vec![f64::NAN; volume * chains];
            let mut a = Args::new();
            a.output(&mut out)
                .val(&(volume as u32))
                .val(&(chains as u32))
                .val(&5u32)
                .val(&4u32)
                .val(&philox::STREAM_MOMENTUM)
                .val(&k0)
                .val(&k1);
            launch(h, "philox_normals", &cfg, &mut a, Order::Ascending);
            assert_close("philox_normals", &out, &want, 1e-14);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scalar_hmc.cu

const CHAINS: usize = 3;

/// Odd extents per dimension; the 1-3D ones hold more than one reduction chunk per chain.
fn lattices() -> Vec<Lattice> {
    [vec![4201], vec![67, 71], vec![13, 17, 19], vec![3, 5, 7, 9]]
        .iter()
        .map(|d| Lattice::new(d).unwrap())
        .collect()
}

/// The couplings of both force laws on `lat`: φ⁴'s polynomial and the XY cosine.
fn laws(lat: &Lattice) -> [(ScalarCouplings, &'static str); 2] {
    let poly = Phi4::new(lat.clone(), 0.17, 0.3).unwrap().couplings();
    let cos = ScalarCouplings {
        law: ForceLaw::Cosine,
        hop: 1.1,
        u0: 0.0,
        u2: 0.0,
        u4: 0.0,
    };
    [(poly, ""), (cos, "cos_")]
}

fn hmc_cases(h: &Harness, cpu: &CpuDevice) {
    for lat in lattices() {
        for (c, law) in laws(&lat) {
            hmc_law_cases(h, cpu, &lat, c, law);
        }
        hmc_shared_cases(h, cpu, &lat);
    }
    long_slice_cases(h, cpu);
}

/// The kernels of one force law: fused updates and energies.
fn hmc_law_cases(h: &Harness, cpu: &CpuDevice, lat: &Lattice, c: ScalarCouplings, law: &str) {
    let d = lat.dim();
    let (geom, gc) = (GpuGeom::new(lat, CHAINS), GpuCouplings::from(c));
    let n = geom.sites();
    let (phi, p0) = (randn(n, 1), randn(n, 2));
    let (kick, drift) = (0.3, 0.7);

    let (mut want_p, mut want_new) = (p0.clone(), vec![0.0; n]);
    hmc_cpu::kick_drift(
        cpu,
        lat,
        &c,
        &phi,
        &mut want_p,
        Some(&mut want_new),
        kick,
        drift,
    )
    .unwrap();
    let mut want_kick = p0.clone();
    hmc_cpu::kick_drift(cpu, lat, &c, &phi, &mut want_kick, None, kick, 0.0).unwrap();
    for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
        for order in ORDERS {
            let (mut p, mut new) = (p0.clone(), vec![0.0; n]);
            let mut a = Args::new();
            a.input(&phi).output(&mut p).output(&mut new);
            a.val(&geom).val(&gc).val(&kick).val(&drift);
            launch(h, &format!("kick_drift_{law}d{d}"), &cfg, &mut a, order);
            assert_close("kick_drift p", &p, &want_p, 1e-13);
            assert_close("kick_drift phi", &new, &want_new, 1e-13);

            let mut p = p0.clone();
            let mut a = Args::new();
            a.input(&phi).output(&mut p).val(&geom).val(&gc).val(&kick);
            launch(h, &format!("kick_{law}d{d}"), &cfg, &mut a, order);
            assert_close("kick p", &p, &want_kick, 1e-13);
        }
    }

    // Energies: per chunk, then per chain, against the twin and the reference action.
    let mut scratch = vec![0.0; n];
    let want = hmc_cpu::energy_chunks(cpu, lat, &c, &phi, &p0, &mut scratch).unwrap();
    let cfg = geometry::chunked(CHAINS, lat.volume()).unwrap();
    assert_eq!(2 * cfg.grid_dim.0 as usize, want.len());
    for order in ORDERS {
        let mut out = vec![f64::NAN; want.len()];
        let chunk = REDUCE_CHUNK as u32;
        let mut a = Args::new();
        a.input(&phi).input(&p0).output(&mut out);
        a.val(&geom).val(&gc).val(&chunk);
        launch(h, &format!("energy_chunks_{law}d{d}"), &cfg, &mut a, order);
        assert_close("energy chunks", &out, &want, 1e-12);
        let per_chain = sum_chunks(&out, 2, chunks_per_segment(lat.volume()));
        let v = lat.volume();
        for chain in 0..CHAINS {
            let s = reference_action(lat, &c, &phi[chain * v..(chain + 1) * v]);
            assert_close("action", &[per_chain[2 * chain + 1]], &[s], 1e-11);
        }
    }
}

/// The law-independent kernels: moments and restores.
fn hmc_shared_cases(h: &Harness, cpu: &CpuDevice, lat: &Lattice) {
    let (geom, n) = (GpuGeom::new(lat, CHAINS), lat.volume() * CHAINS);
    let (phi, p0) = (randn(n, 1), randn(n, 2));
    // Moments per time slice.
    let seg = lat.slice_volume();
    let want = hmc_cpu::moment_chunks(cpu, &phi, seg).unwrap();
    let cfg = geometry::chunked(n / seg, seg).unwrap();
    for order in ORDERS {
        let mut out = vec![f64::NAN; want.len()];
        let mut a = Args::new();
        a.input(&phi)
            .output(&mut out)
            .val(&(seg as u32))
            .val(&(REDUCE_CHUNK as u32));
        launch(h, "moment_chunks", &cfg, &mut a, order);
        assert_close("moment chunks", &out, &want, 1e-12);
    }

    // Restore the chains whose flag is set.
    let flags: Vec<u8> = (0..CHAINS).map(|c| (c % 2) as u8).collect();
    let mut want = phi.clone();
    hmc_cpu::restore_chains(&mut want, &p0, &flags, lat.volume()).unwrap();
    for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
        let mut out = phi.clone();
        let mut a = Args::new();
        a.output(&mut out).input(&p0).input(&flags).val(&geom);
        launch(h, "restore_chains", &cfg, &mut a, Order::Descending);
        assert_eq!(out, want, "restore_chains {}", lat.label());
    }
}

/// A time slice longer than one chunk: the moments of one slice come from several blocks.
fn long_slice_cases(h: &Harness, cpu: &CpuDevice) {
    let phi = randn(2 * 4500, 9);
    let want = hmc_cpu::moment_chunks(cpu, &phi, 4500).unwrap();
    let cfg = geometry::chunked(2, 4500).unwrap();
    assert_eq!(cfg.grid_dim.0, 4);
    let mut out = vec![0.0; want.len()];
    let mut a = Args::new();
    a.input(&phi)
        .output(&mut out)
        .val(&4500u32)
        .val(&(REDUCE_CHUNK as u32));
    launch(h, "moment_chunks", &cfg, &mut a, Order::Ascending);
    assert_close("long-slice moments", &out, &want, 1e-12);
}

// ---------------------------------------------------------------------------------------------
// domain.cu

/// Boxes of decomposed lattices: 1D to 4D, wrapping and cut last axes, boxes at the global ends
/// of the last axis and inside it.
fn boxes() -> Vec<BoxGeometry> {
    let b = |local: &[usize], off: usize, global: usize, wrap: bool| {
        BoxGeometry::new(local, off, global, CHAINS, wrap).unwrap()
    };
    vec![
        b(&[7], 0, 7, true),
        b(&[5], 5, 10, false),
        b(&[3, 5], 0, 5, true),
        b(&[4, 3], 0, 6, false),
        b(&[4, 3], 3, 6, false),
        b(&[2, 3, 4], 4, 12, false),
        b(&[2, 2, 3, 2], 0, 2, true),
        b(&[1, 2, 1, 3], 3, 9, false),
    ]
}

/// Bit-for-bit equality (−0.0 and +0.0 differ).
fn assert_bits(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: value {i}: {g} against {w}"
        );
    }
}

fn domain_cases(h: &Harness, cpu: &CpuDevice) {
    let c = ScalarCouplings {
        hop: 0.37,
        u0: 0.1,
        u2: 0.45,
        u4: 0.21,
        law: ForceLaw::Polynomial,
    };
    // Where a sign of zero survives the density (u0 = −0.0, a negative φ² term), the "+ 0.0" at
    // a row's end shows: a 1D box's last site, φ = +0.0, with the forward neighbour −0.0.
    let signed_zeros = ScalarCouplings {
        u0: -0.0,
        u2: -0.45,
        ..c
    };
    for g in boxes() {
        box_update_cases(h, cpu, &g, &c);
        box_update_cases(h, cpu, &g, &signed_zeros);
        box_copy_cases(h, &g);
    }
    for grid in [[1, 1], [2, 2], [1, 4], [3, 1]] {
        reduction_cases(h, &grid, ChunkSums::Energies);
        reduction_cases(h, &grid, ChunkSums::Moments);
    }
}

/// The reductions of GPU boxes linked by NCCL, with the all-to-all and the all-gather done here
/// by hand over every rank's plan: pack, place and chunk sums give the single process's chunk
/// sums bit for bit (3 chunks per chain of 72 × 120 sites, chunks cut across ranks).
fn reduction_cases(h: &Harness, grid: &[usize], sums: ChunkSums) {
    let lat = Lattice::new(&[72, 120]).unwrap();
    let (v, size) = (lat.volume(), grid.iter().product::<usize>());
    let seg = match sums {
        ChunkSums::Energies => v,
        ChunkSums::Moments => lat.slice_volume(),
    };
    let k = sums.inputs();
    let global: Vec<Vec<f64>> = (0..k).map(|q| randn(CHAINS * v, 30 + q as u32)).collect();
    // One process: every segment's chunks of REDUCE_CHUNK values, summed in order.
    let mut want = Vec::new();
    for s in 0..CHAINS * v / seg {
        for c in (0..seg).step_by(REDUCE_CHUNK) {
            let r = s * seg + c..s * seg + (c + REDUCE_CHUNK).min(seg);
            let x: Vec<&[f64]> = global.iter().map(|g| &g[r.clone()]).collect();
            want.extend(sums.chunk(&x).unwrap());
        }
    }
    let decs: Vec<Decomposition> = (0..size)
        .map(|r| Decomposition::new(&lat, grid, r, size).unwrap())
        .collect();
    let plans: Vec<OrderedReduction> = decs
        .iter()
        .map(|d| OrderedReduction::new(d, CHAINS, seg).unwrap())
        .collect();
    let u32s = |v: &mut dyn Iterator<Item = usize>| v.map(|i| i as u32).collect::<Vec<u32>>();
    // Every rank packs its box's values in its plan's order.
    let sent: Vec<Vec<f64>> = decs
        .iter()
        .zip(&plans)
        .map(|(d, plan)| {
            let local: Vec<Vec<f64>> = global.iter().map(|g| d.scatter(g).unwrap()).collect();
            let order = u32s(&mut plan.layout().send_order.iter().copied());
            let n = order.len() as u32;
            let mut send = vec![f64::NAN; k * order.len()];
            let mut a = Args::new();
            a.input(&local[0]).input(&local[k - 1]).output(&mut send);
            a.input(&order).val(&n).val(&(k as u32));
            launch(
                h,
                "reduce_pack",
                &geometry::elementwise(order.len()).unwrap(),
                &mut a,
                Order::Descending,
            );
            send
        })
        .collect();
    let mut got_all = Vec::new();
    for (r, plan) in plans.iter().enumerate() {
        let l = plan.layout();
        // The all-to-all: from each rank in rank order, its values for rank r.
        let mut got = Vec::new();
        for (src, p) in plans.iter().enumerate() {
            let counts = p.layout().counts_out;
            let at: usize = counts[..r].iter().sum::<usize>() * k;
            got.extend_from_slice(&sent[src][at..at + counts[r] * k]);
        }
        assert_eq!(
            got.len(),
            k * l.counts_in.iter().sum::<usize>(),
            "rank {r} receives"
        );
        let place = u32s(&mut l.place.iter().copied());
        let span = l.chunks.last().map_or(0, |c| c.end);
        let mut ordered = vec![f64::NAN; k * span];
        let mut a = Args::new();
        a.input(&got).output(&mut ordered).input(&place);
        a.val(&(place.len() as u32))
            .val(&(k as u32))
            .val(&(span as u32));
        launch(
            h,
            "reduce_place",
            &geometry::elementwise(place.len()).unwrap(),
            &mut a,
            Order::Ascending,
        );
        let bounds = u32s(&mut l.chunks.iter().flat_map(|c| [c.start, c.end]));
        let chunks = l.chunks.len();
        let mut mine = vec![f64::NAN; chunks * sums.width()];
        let kind = u32::from(sums == ChunkSums::Moments);
        for cfg in with_small_grid(geometry::elementwise(mine.len()).unwrap()) {
            let mut a = Args::new();
            a.input(&ordered).output(&mut mine).input(&bounds);
            a.val(&(chunks as u32)).val(&(span as u32)).val(&kind);
            launch(h, "chunk_sums", &cfg, &mut a, Order::Descending);
        }
        got_all.extend(mine);
    }
    assert_bits(&format!("{sums:?} over grid {grid:?}"), &got_all, &want);
}

/// The updates and action densities against `box_kick_drift` and `box_densities`, bit for bit.
fn box_update_cases(h: &Harness, cpu: &CpuDevice, g: &BoxGeometry, c: &ScalarCouplings) {
    let (d, n, sites) = (g.local().len(), CHAINS * g.padded(), CHAINS * g.sites());
    let (bg, gc) = (BoxGeom::from(g), GpuCouplings::from(*c));
    // Random φ everywhere, halo included (as if exchanged); one exact zero and one −0.0 in the
    // interior, where the single process's "+ 0.0" at a row's end shows.
    let mut phi = randn(n, 21);
    phi[g.interior_indices()[0]] = -0.0;
    phi[g.interior_indices()[g.sites() - 1]] = 0.0;
    let p0 = randn(n, 22);
    let (kick, drift) = (0.3, 0.7);
    let (mut want_p, mut want_next) = (p0.clone(), vec![0.0; n]);
    box_kick_drift(cpu, g, c, &phi, &mut want_p, &mut want_next, kick, drift).unwrap();
    let mut want_kick = p0.clone();
    let mut unused = vec![0.0; n];
    box_kick_drift(cpu, g, c, &phi, &mut want_kick, &mut unused, kick, 0.0).unwrap();
    let mut dens = vec![0.0; n];
    box_densities(cpu, g, c, &phi, &mut dens).unwrap();
    let want_dens = g.interior(&dens).unwrap();
    for cfg in with_small_grid(geometry::elementwise(sites).unwrap()) {
        for order in ORDERS {
            let (mut p, mut next) = (p0.clone(), vec![0.0; n]);
            let mut a = Args::new();
            a.input(&phi).output(&mut p).output(&mut next);
            a.val(&bg).val(&gc).val(&kick).val(&drift);
            launch(h, &format!("box_kick_drift_d{d}"), &cfg, &mut a, order);
            assert_bits("box_kick_drift p", &p, &want_p);
            assert_bits("box_kick_drift phi", &next, &want_next);

            let mut p = p0.clone();
            let mut a = Args::new();
            a.input(&phi).output(&mut p).val(&bg).val(&gc).val(&kick);
            launch(h, &format!("box_kick_d{d}"), &cfg, &mut a, order);
            assert_bits("box_kick p", &p, &want_kick);

            let mut out = vec![f64::NAN; sites];
            let mut a = Args::new();
            a.input(&phi).output(&mut out).val(&bg).val(&gc);
            launch(h, &format!("box_densities_d{d}"), &cfg, &mut a, order);
            assert_bits("box_densities", &out, &want_dens);
        }
    }
}

/// The interior and face copies against `BoxGeometry`'s and the faces' definitions.
fn box_copy_cases(h: &Harness, g: &BoxGeometry) {
    let (n, pv) = (CHAINS * g.padded(), g.padded() as u32);
    let x = randn(n, 23);
    let u32s = |v: Vec<usize>| v.into_iter().map(|i| i as u32).collect::<Vec<u32>>();
    let interior = u32s(g.interior_indices().to_vec());
    let m = interior.len() as u32;
    let values = randn(CHAINS * g.sites(), 24);
    let mut want_set = x.clone();
    g.set_interior(&mut want_set, &values).unwrap();
    let want_interior = g.interior(&x).unwrap();
    let cfg = geometry::elementwise(CHAINS * g.sites()).unwrap();
    for order in ORDERS {
        let mut out = vec![f64::NAN; CHAINS * g.sites()];
        let mut a = Args::new();
        a.input(&x).output(&mut out).input(&interior);
        a.val(&m).val(&pv).val(&(CHAINS as u32));
        launch(h, "box_gather", &cfg, &mut a, order);
        assert_bits("box_gather interior", &out, &want_interior);

        let mut y = x.clone();
        let mut a = Args::new();
        a.output(&mut y).input(&values).input(&interior);
        a.val(&m).val(&pv).val(&(CHAINS as u32)).val(&0i32);
        launch(h, "box_scatter", &cfg, &mut a, order);
        assert_bits("box_scatter interior", &y, &want_set);
    }
    for faces in g.faces() {
        for top in [true, false] {
            let (runs, shift) = faces.side(top);
            let idx: Vec<u32> = u32s(runs.iter().flat_map(|&(s, len)| s..s + len).collect());
            let k = idx.len() as u32;
            let shift = shift as i32;
            let got = randn(CHAINS * idx.len(), 25);
            // Received values land at the face's sites shifted into the halo; the wrap copies
            // the face itself there.
            let (mut want_unpack, mut want_wrap) = (x.clone(), x.clone());
            for chain in 0..CHAINS {
                let base = chain * g.padded();
                for (j, &i) in idx.iter().enumerate() {
                    let t = (base as i64 + i as i64 + shift as i64) as usize;
                    want_unpack[t] = got[chain * idx.len() + j];
                    want_wrap[t] = x[base + i as usize];
                }
            }
            let cfg = geometry::elementwise(CHAINS * idx.len()).unwrap();
            for order in ORDERS {
                let mut y = x.clone();
                let mut a = Args::new();
                a.output(&mut y).input(&got).input(&idx);
                a.val(&k).val(&pv).val(&(CHAINS as u32)).val(&shift);
                launch(h, "box_scatter", &cfg, &mut a, order);
                assert_bits("box_scatter face", &y, &want_unpack);

                let mut y = x.clone();
                let mut a = Args::new();
                a.output(&mut y).input(&idx);
                a.val(&k).val(&pv).val(&(CHAINS as u32)).val(&shift);
                launch(h, "box_wrap", &cfg, &mut a, order);
                assert_bits("box_wrap", &y, &want_wrap);
            }
        }
    }
    // Restore the chains whose flag is set, halo included.
    let flags: Vec<u8> = (0..CHAINS).map(|c| (c % 2) as u8).collect();
    let saved = randn(n, 26);
    let mut want = x.clone();
    for (c, _) in flags.iter().enumerate().filter(|(_, &f)| f == 1) {
        let r = c * g.padded()..(c + 1) * g.padded();
        want[r.clone()].copy_from_slice(&saved[r]);
    }
    for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
        let mut y = x.clone();
        let mut a = Args::new();
        a.output(&mut y).input(&saved).input(&flags);
        a.val(&pv).val(&(CHAINS as u32));
        launch(h, "box_restore", &cfg, &mut a, Order::Descending);
        assert_bits("box_restore", &y, &want);
    }
}

// ---------------------------------------------------------------------------------------------
// nn.cu

fn cast<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn wide<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn tol<T: Real>() -> f64 {
    if T::NAME == "f32" {
        2e-5
    } else {
        1e-12
    }
}

fn name<T: Real>(kernel: &str) -> String {
    format!("{kernel}_{}", T::NAME)
}

const UNARIES: [Unary; 10] = [
    Unary::Exp,
    Unary::Log,
    Unary::Tanh,
    Unary::Sigmoid,
    Unary::Softplus,
    Unary::LeakyRelu(0.1),
    Unary::Silu,
    Unary::Scale(-1.5),
    Unary::Shift(0.25),
    Unary::Square,
];

fn unary_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    for n in [1usize, 255, 1000] {
        let x: Vec<T> = cast(
            &randn(n, 3)
                .iter()
                .map(|v| v.abs() + 0.1)
                .collect::<Vec<_>>(),
        );
        let dy: Vec<T> = cast(&randn(n, 4));
        for op in UNARIES {
            let a = op.parameter();
            let mut want = vec![T::zero(); n];
            nn_cpu::unary(cpu, op, &x, &mut want).unwrap();
            let mut want_dx = vec![T::zero(); n];
            nn_cpu::unary_grad(cpu, op, &x, &want, &dy, &mut want_dx).unwrap();
            for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
                let mut y = vec![T::zero(); n];
                let mut args = Args::new();
                args.input(&x)
                    .output(&mut y)
                    .val(&(n as u32))
                    .val(&T::from_f64(a));
                let f = op.kernel_name();
                launch(
                    h,
                    &name::<T>(&format!("unary_{f}")),
                    &cfg,
                    &mut args,
                    Order::Ascending,
                );
                assert_close(&format!("{op:?}"), &wide(&y), &wide(&want), tol::<T>());

                let mut dx = vec![T::zero(); n];
                let mut args = Args::new();
                args.input(&x).input(&want).input(&dy).output(&mut dx);
                args.val(&(n as u32)).val(&T::from_f64(a));
                launch(
                    h,
                    &name::<T>(&format!("unary_grad_{f}")),
                    &cfg,
                    &mut args,
                    Order::Descending,
                );
                assert_close(&format!("{op:?}'"), &wide(&dx), &wide(&want_dx), tol::<T>());
            }
        }
    }
}

fn binary_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let shapes: [(&[usize], &[usize]); 3] = [
        (&[3, 1, 5], &[4, 1]),
        (&[1], &[7]),
        (&[2, 3, 4, 5], &[2, 3, 4, 5]),
    ];
    for (sa, sb) in shapes {
        let out = latticeml::nn::kernels::broadcast_shape(sa, sb).unwrap();
        let n: usize = out.iter().product();
        let g = bcast_spec(sa, sb, &out).unwrap();
        let a: Vec<T> = cast(&randn(sa.iter().product(), 5));
        let b: Vec<T> = cast(
            &randn(sb.iter().product(), 6)
                .iter()
                .map(|v| v + 3.0)
                .collect::<Vec<_>>(),
        );
        let dc: Vec<T> = cast(&randn(n, 7));
        for op in [
            Binary::Add,
            Binary::Sub,
            Binary::Mul,
            Binary::Div,
            Binary::First,
        ] {
            let mut want = vec![T::zero(); n];
            nn_cpu::binary(cpu, op, &a, &b, &mut want, &g).unwrap();
            for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
                let mut c = vec![T::zero(); n];
                let mut args = Args::new();
                args.input(&a)
                    .input(&b)
                    .output(&mut c)
                    .val(&(n as u32))
                    .val(&g);
                let f = op.kernel_name();
                launch(
                    h,
                    &name::<T>(&format!("binary_{f}")),
                    &cfg,
                    &mut args,
                    Order::Ascending,
                );
                assert_close(&format!("{op:?}"), &wide(&c), &wide(&want), tol::<T>());
                for wrt in [0i32, 1] {
                    let mut want_g = vec![T::zero(); n];
                    nn_cpu::binary_grad(cpu, op, &a, &b, &dc, &mut want_g, &g, wrt).unwrap();
                    let mut o = vec![T::zero(); n];
                    let mut args = Args::new();
                    args.input(&a).input(&b).input(&dc).output(&mut o);
                    args.val(&(n as u32)).val(&g).val(&wrt);
                    launch(
                        h,
                        &name::<T>(&format!("binary_grad_{f}")),
                        &cfg,
                        &mut args,
                        Order::Descending,
                    );
                    assert_close(
                        &format!("{op:?} d/d{wrt}"),
                        &wide(&o),
                        &wide(&want_g),
                        tol::<T>(),
                    );
                }
            }
        }
    }
}

fn reduce_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let cases: [(&[usize], &[usize]); 4] = [
        (&[3, 4, 5, 7], &[4, 1, 7]),
        (&[3, 4, 5, 7], &[1]),
        (&[2000], &[1]),
        (&[1], &[1]),
    ];
    for (src, target) in cases {
        let r = reduce_spec(src, target).unwrap();
        let x: Vec<T> = cast(&randn(src.iter().product(), 8));
        let scale = T::from_f64(0.5);
        let mut want = vec![T::zero(); r.targets()];
        nn_cpu::reduce_to(cpu, &x, &mut want, &r, scale).unwrap();
        for order in ORDERS {
            let mut y = vec![T::zero(); r.targets()];
            let mut args = Args::new();
            args.input(&x).output(&mut y).val(&r).val(&scale);
            let cfg = geometry::one_block_each(r.targets()).unwrap();
            launch(h, &name::<T>("reduce_to"), &cfg, &mut args, order);
            // Both accumulate in f64: only the order differs.
            assert_close(
                &format!("sum {src:?} onto {target:?}"),
                &wide(&y),
                &wide(&want),
                1e-12,
            );
        }
    }
}

fn matmul_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let (m, n, k) = (37usize, 19usize, 23usize);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a: Vec<T> = cast(&randn(m * k, 9));
        let b: Vec<T> = cast(&randn(k * n, 10));
        let mut want = vec![T::zero(); m * n];
        nn_cpu::matmul(cpu, &a, &b, &mut want, m, n, k, ta, tb).unwrap();
        let full = geometry::tiles16(m, n).unwrap();
        let mut strided = full;
        strided.grid_dim.1 = 1; // row tiles by the kernel's stride loop
        for cfg in [full, strided] {
            for order in ORDERS {
                let mut c = vec![T::zero(); m * n];
                let mut args = Args::new();
                args.input(&a).input(&b).output(&mut c);
                args.val(&(m as i32)).val(&(n as i32)).val(&(k as i32));
                args.val(&(ta as i32)).val(&(tb as i32));
                launch(h, &name::<T>("matmul"), &cfg, &mut args, order);
                assert_close("matmul", &wide(&c), &wide(&want), tol::<T>());
            }
        }
    }
}

fn conv_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let (xs, ws) = ([2usize, 3, 5, 7], [4usize, 3, 3, 3]);
    let x: Vec<T> = cast(&randn(xs.iter().product(), 11));
    let w: Vec<T> = cast(&randn(ws.iter().product(), 12));
    let ny = 2 * 4 * 5 * 7;
    let dy: Vec<T> = cast(&randn(ny, 13));
    for mode in [
        ConvMode::Periodic,
        ConvMode::CausalExclusive,
        ConvMode::CausalInclusive,
        ConvMode::Zero,
    ] {
        let c = conv_spec(&xs, &ws, mode).unwrap();
        let mut want_y = vec![T::zero(); ny];
        nn_cpu::conv2d(cpu, &x, &w, &mut want_y, &c).unwrap();
        let mut want_dx = vec![T::zero(); x.len()];
        nn_cpu::conv2d_grad_input(cpu, &dy, &w, &mut want_dx, &c).unwrap();
        let mut want_dw = vec![T::zero(); w.len()];
        nn_cpu::conv2d_grad_weight(cpu, &dy, &x, &mut want_dw, &c).unwrap();
        for order in ORDERS {
            for cfg in with_small_grid(geometry::elementwise(ny).unwrap()) {
                let mut y = vec![T::zero(); ny];
                let mut args = Args::new();
                args.input(&x).input(&w).output(&mut y).val(&c);
                launch(h, &name::<T>("conv2d"), &cfg, &mut args, order);
                assert_close(
                    &format!("conv {mode:?}"),
                    &wide(&y),
                    &wide(&want_y),
                    tol::<T>(),
                );
            }
            for cfg in with_small_grid(geometry::elementwise(x.len()).unwrap()) {
                let mut dx = vec![T::zero(); x.len()];
                let mut args = Args::new();
                args.input(&dy).input(&w).output(&mut dx).val(&c);
                launch(h, &name::<T>("conv2d_grad_input"), &cfg, &mut args, order);
                assert_close(
                    &format!("dx {mode:?}"),
                    &wide(&dx),
                    &wide(&want_dx),
                    tol::<T>(),
                );
            }
            let mut dw = vec![T::zero(); w.len()];
            let mut args = Args::new();
            args.input(&dy).input(&x).output(&mut dw).val(&c);
            let cfg = geometry::one_block_each(w.len()).unwrap();
            launch(h, &name::<T>("conv2d_grad_weight"), &cfg, &mut args, order);
            assert_close(
                &format!("dw {mode:?}"),
                &wide(&dw),
                &wide(&want_dw),
                tol::<T>(),
            );
        }
    }
}

fn slab_and_adam_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    // Concatenate-style copy: 3 rows of 5 into the middle of rows of 9.
    let src: Vec<T> = cast(&randn(3 * 5, 14));
    let g = [3usize, 5, 5, 0, 9, 2];
    let mut want = vec![T::zero(); 27];
    nn_cpu::slab_copy(&src, &mut want, g).unwrap();
    for cfg in with_small_grid(geometry::elementwise(15).unwrap()) {
        let mut dst = vec![T::zero(); 27];
        let mut args = Args::new();
        args.input(&src).output(&mut dst);
        for v in g {
            args.val(&(v as u32));
        }
        launch(
            h,
            &name::<T>("slab_copy"),
            &cfg,
            &mut args,
            Order::Descending,
        );
        assert_eq!(wide(&dst), wide(&want), "slab_copy");
    }

    let n = 300;
    let (p0, gr): (Vec<T>, Vec<T>) = (cast(&randn(n, 15)), cast(&randn(n, 16)));
    let (m0, v0): (Vec<T>, Vec<T>) = (
        cast(&randn(n, 17)),
        cast(
            &wide(&cast::<T>(&randn(n, 18)))
                .iter()
                .map(|v| v * v)
                .collect::<Vec<_>>(),
        ),
    );
    for decoupled in [0, 1] {
        let hyper = AdamHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            gscale: 0.7,
            bias1: 0.19,
            bias2: 0.002,
            decoupled,
        };
        let (mut wp, mut wm, mut wv) = (p0.clone(), m0.clone(), v0.clone());
        nn_cpu::adam(cpu, [&mut wp, &mut wm, &mut wv], &gr, &hyper).unwrap();
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            let mut args = Args::new();
            args.output(&mut p).input(&gr).output(&mut m).output(&mut v);
            args.val(&(n as u32)).val(&hyper);
            launch(h, &name::<T>("adam"), &cfg, &mut args, Order::Ascending);
            assert_close("adam p", &wide(&p), &wide(&wp), tol::<T>());
            assert_close("adam m", &wide(&m), &wide(&wm), tol::<T>());
            assert_close("adam v", &wide(&v), &wide(&wv), tol::<T>());
        }
    }
}

/// 2^24 then 1000 ones: an f32 accumulation loses every 1; the kernels accumulate in f64.
fn f64_accumulation_cases<T: Real>(h: &Harness) {
    let mut data = vec![1.0; 1001];
    data[0] = 16_777_216.0;
    let want = 16_778_216.0;
    let x: Vec<T> = cast(&data);
    let r = reduce_spec(&[1001], &[1]).unwrap();
    let mut y = vec![T::zero(); 1];
    let mut args = Args::new();
    args.input(&x).output(&mut y).val(&r).val(&T::from_f64(1.0));
    let cfg = geometry::one_block_each(1).unwrap();
    launch(
        h,
        &name::<T>("reduce_to"),
        &cfg,
        &mut args,
        Order::Ascending,
    );
    assert_eq!(wide(&y), vec![want], "reduce_to");

    let c = conv_spec(&[1, 1, 7, 143], &[1, 1, 1, 1], ConvMode::Periodic).unwrap();
    let ones: Vec<T> = cast(&[1.0; 1001]);
    let mut dw = vec![T::zero(); 1];
    let mut args = Args::new();
    args.input(&ones).input(&x).output(&mut dw).val(&c);
    launch(
        h,
        &name::<T>("conv2d_grad_weight"),
        &cfg,
        &mut args,
        Order::Descending,
    );
    assert_eq!(wide(&dw), vec![want], "conv2d_grad_weight");

    // A weight gradient's sum over a batch: 2^24 in the first leaf, 1000 ones in later leaves
    // (a sum in f32 alone would stay at 2^24).
    let mut long = vec![0.0; 1016];
    long[0] = 16_777_216.0;
    long[16..].iter_mut().for_each(|v| *v = 1.0);
    let (a, b): (Vec<T>, Vec<T>) = (cast(&long), cast(&[1.0; 1016]));
    let mut cpu_c = vec![T::zero(); 1];
    let cpu = common::cpu();
    nn_cpu::matmul(&cpu, &a, &b, &mut cpu_c, 1, 1, 1016, false, false).unwrap();
    assert_eq!(wide(&cpu_c), vec![want], "matmul on the CPU");
    let mut c = vec![T::zero(); 1];
    let mut args = Args::new();
    args.input(&a).input(&b).output(&mut c);
    args.val(&1i32)
        .val(&1i32)
        .val(&1016i32)
        .val(&0i32)
        .val(&0i32);
    let cfg = geometry::tiles16(1, 1).unwrap();
    launch(h, &name::<T>("matmul"), &cfg, &mut args, Order::Ascending);
    assert_eq!(wide(&c), vec![want], "matmul");
}

fn nn_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    f64_accumulation_cases::<T>(h);
    unary_cases::<T>(h, cpu);
    binary_cases::<T>(h, cpu);
    reduce_cases::<T>(h, cpu);
    matmul_cases::<T>(h, cpu);
    conv_cases::<T>(h, cpu);
    slab_and_adam_cases::<T>(h, cpu);
    batched_linear_cases::<T>(h, cpu);
}

/// B linear maps at once, forward and both gradients, against their CPU twins: one map of one
/// value, and maps with more outputs than a block and rows not a multiple of eight.
fn batched_linear_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    for (batch, inputs, outputs) in [(1usize, 1usize, 1usize), (3, 11, 300)] {
        let s = BatchedLinearShape {
            batch,
            inputs,
            outputs,
        };
        let x: Vec<T> = cast(&randn(batch * inputs, 53));
        let w: Vec<T> = cast(&randn(s.weights(), 54));
        let c: Vec<T> = cast(&randn(batch * outputs, 55));
        let dy: Vec<T> = cast(&randn(batch * outputs, 56));
        let mut want_y = vec![T::zero(); batch * outputs];
        bl::batched_linear(cpu, [&x, &w, &c], &mut want_y, &s).unwrap();
        let mut want_dw = vec![T::zero(); s.weights()];
        bl::batched_linear_grad_w(cpu, [&x, &dy], &mut want_dw, &s).unwrap();
        let mut want_dx = vec![T::zero(); batch * inputs];
        bl::batched_linear_grad_x(cpu, [&w, &dy], &mut want_dx, &s).unwrap();
        let dims = [batch as u32, inputs as u32, outputs as u32];
        let grids = [
            with_small_grid(geometry::elementwise(batch * outputs).unwrap()),
            with_small_grid(geometry::elementwise(s.weights()).unwrap()),
            with_small_grid(geometry::one_block_each(batch * inputs).unwrap()),
        ];
        for (k, order) in ORDERS.into_iter().enumerate() {
            let mut y = vec![T::zero(); want_y.len()];
            let mut a = Args::new();
            a.input(&x).input(&w).input(&c).output(&mut y);
            a.val(&dims[0]).val(&dims[1]).val(&dims[2]);
            launch(h, &name::<T>("batched_linear"), &grids[0][k], &mut a, order);
            assert_close("batched_linear", &wide(&y), &wide(&want_y), tol::<T>());
            let mut dw = vec![T::zero(); want_dw.len()];
            let mut a = Args::new();
            a.input(&x).input(&dy).output(&mut dw);
            a.val(&dims[0]).val(&dims[1]).val(&dims[2]);
            launch(
                h,
                &name::<T>("batched_linear_grad_w"),
                &grids[1][k],
                &mut a,
                order,
            );
            assert_eq!(wide(&dw), wide(&want_dw), "batched_linear_grad_w");
            let mut dx = vec![T::zero(); want_dx.len()];
            let mut a = Args::new();
            a.input(&w).input(&dy).output(&mut dx);
            a.val(&dims[0]).val(&dims[1]).val(&dims[2]);
            launch(
                h,
                &name::<T>("batched_linear_grad_x"),
                &grids[2][k],
                &mut a,
                order,
            );
            assert_close(
                "batched_linear_grad_x",
                &wide(&dx),
                &wide(&want_dx),
                10.0 * tol::<T>(),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// flow.cu

fn coupling_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    // Odd sizes: blocks stride over sites, and the frozen sites are not a simple pattern.
    let g = Geometry {
        batch: 5,
        volume: 300,
    };
    let n = g.batch * g.volume;
    let mask: Vec<T> = cast(
        &(0..g.volume)
            .map(|i| ((i * 7 + i / 13) % 2) as f64)
            .collect::<Vec<_>>(),
    );
    let x: Vec<T> = cast(&randn(n, 21));
    let st: Vec<T> = cast(&randn(2 * n, 22).iter().map(|v| 0.5 * v).collect::<Vec<_>>());
    let gy: Vec<T> = cast(&randn(n, 23));
    let gld: Vec<T> = cast(&randn(g.batch, 24));
    for dir in [Direction::Forward, Direction::Inverse] {
        let sign = if dir == Direction::Forward { 1i32 } else { -1 };
        let (mut want_y, mut want_ld) = (vec![T::zero(); n], vec![T::zero(); g.batch]);
        coupling::forward(cpu, g, dir, &x, &st, &mask, &mut want_y, &mut want_ld).unwrap();
        for order in ORDERS {
            let (mut y, mut ld) = (vec![T::zero(); n], vec![T::zero(); g.batch]);
            let mut args = Args::new();
            args.input(&x)
                .input(&st)
                .input(&mask)
                .output(&mut y)
                .output(&mut ld);
            args.val(&(g.volume as u32)).val(&sign);
            let cfg = geometry::one_block_each(g.batch).unwrap();
            launch(h, &name::<T>("coupling_forward"), &cfg, &mut args, order);
            // e^s by the host's expf here, by the twin's vectorisable exp there: ulps apart.
            assert_close(
                &format!("coupling y {dir:?}"),
                &wide(&y),
                &wide(&want_y),
                tol::<T>(),
            );
            assert_close(
                &format!("coupling log-det {dir:?}"),
                &wide(&ld),
                &wide(&want_ld),
                tol::<T>(),
            );
        }
        let (mut want_dx, mut want_dst) = (vec![T::zero(); n], vec![T::zero(); 2 * n]);
        coupling::backward(
            cpu,
            g,
            dir,
            &x,
            &st,
            &mask,
            &want_y,
            &gy,
            &gld,
            &mut want_dx,
            &mut want_dst,
        )
        .unwrap();
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let (mut dx, mut dst) = (vec![T::zero(); n], vec![T::zero(); 2 * n]);
            let mut args = Args::new();
            args.input(&x)
                .input(&st)
                .input(&mask)
                .input(&want_y)
                .input(&gy)
                .input(&gld);
            args.output(&mut dx).output(&mut dst);
            args.val(&(g.batch as u32))
                .val(&(g.volume as u32))
                .val(&sign);
            launch(
                h,
                &name::<T>("coupling_backward"),
                &cfg,
                &mut args,
                Order::Descending,
            );
            assert_close(
                &format!("coupling dx {dir:?}"),
                &wide(&dx),
                &wide(&want_dx),
                tol::<T>(),
            );
            assert_close(
                &format!("coupling ds, dt {dir:?}"),
                &wide(&dst),
                &wide(&want_dst),
                tol::<T>(),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn build_all() -> Vec<Harness> {
    // Compile the families in parallel: g++ dominates the test's time.
    let built: Vec<Result<Harness, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = FAMILIES
            .iter()
            .map(|f| s.spawn(move || Harness::build(f)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    built
        .into_iter()
        .map(|h| h.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ising.cu

/// Random ±1 spins for `chains` chains of `lat`.
fn random_spins(lat: &Lattice, chains: usize, stream: u32) -> Vec<f64> {
    randn(lat.volume() * chains, stream)
        .iter()
        .map(|&z| if z < 0.0 { -1.0 } else { 1.0 })
        .collect()
}

fn ising_cases(h: &Harness, cpu: &CpuDevice) {
    // Rows of one word, of a partial last word (L1/2 = 65 bits), and of exactly two words.
    for dims in [[2usize, 2], [6, 4], [4, 130], [3 * 2, 256]] {
        let lat = Lattice::new(&dims).unwrap();
        for (rule, beta) in [
            (Rule::metropolis(0.44), 0.44),
            (Rule::heatbath(0.3), 0.3),
            (Rule::metropolis(0.05), 0.05),
        ] {
            // The batch is chains 13.. of an ensemble: the draws are keyed by the global index.
            let pk = Packing {
                first_chain: 13,
                ..Packing::new(&lat, CHAINS)
            };
            let start = pk.pack(&random_spins(&lat, CHAINS, 3)).unwrap();
            for (colour, step) in [(0usize, 5u64), (1, (1u64 << 33) + 7)] {
                let (seed, mut want, mut want_changed) = (77u64, start.clone(), vec![0u64; CHAINS]);
                ising_cpu::update_colour(
                    cpu,
                    &pk,
                    &mut want,
                    colour,
                    &rule,
                    seed,
                    step,
                    &mut want_changed,
                )
                .unwrap();
                assert_ne!(
                    want, start,
                    "{dims:?} beta {beta}: the update changed nothing"
                );
                let (c2, c3) = latticeml::theory::ising::draw_counter(step, colour).unwrap();
                let [k0, k1] = philox::key_from_seed(seed);
                let (gp, gr) = (GpuPack::from(&pk), GpuRule::from(&rule));
                for cfg in with_small_grid(geometry::elementwise(pk.colour_words()).unwrap()) {
                    for order in ORDERS {
                        let (mut got, mut changed) = (start.clone(), vec![0u64; CHAINS]);
                        let mut a = Args::new();
                        a.output(&mut got).val(&gp).val(&gr).val(&(colour as u32));
                        a.val(&k0).val(&k1).val(&c2).val(&c3).output(&mut changed);
                        launch(h, "ising_update", &cfg, &mut a, order);
                        assert_eq!(
                            got, want,
                            "ising_update {dims:?} beta {beta} colour {colour}"
                        );
                        assert_eq!(changed, want_changed, "ising_update counts {dims:?}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// xy.cu

fn xy_cases(h: &Harness, cpu: &CpuDevice) {
    for dims in [vec![10usize], vec![4, 6], vec![2, 4, 6], vec![2, 2, 4, 2]] {
        let lat = Lattice::new(&dims).unwrap();
        let d = lat.dim();
        // The batch is chains 11.. of an ensemble: the draws are keyed by the global index.
        let chain0 = 11;
        let geom = GpuGeom::new(&lat, CHAINS).with_first_chain(chain0);
        let n = geom.sites();
        let start: Vec<f64> = randn(n, 5)
            .iter()
            .map(|z| latticeml::theory::xy::wrap(3.0 * z))
            .collect();
        let units = xy_cpu::unit_vectors(&start);
        // The unit vectors of new fields, computed on the device.
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let mut got = vec![f64::NAN; 2 * n];
            let mut a = Args::new();
            a.input(&start).output(&mut got).val(&(n as u32));
            launch(h, "xy_units", &cfg, &mut a, Order::Descending);
            assert_eq!(got, units, "xy_units {dims:?}");
        }
        let (seed, beta, hits) = (21u64, 1.1, 3u32);
        let [k0, k1] = philox::key_from_seed(seed);
        for colour in 0..2u32 {
            let step0 = 9u64 + (colour as u64) * (1 << 32);
            let (mut want, mut want_u) = (start.clone(), units.clone());
            let mut want_acc = vec![0u64; CHAINS];
            xy_cpu::metropolis_colour(
                cpu,
                &lat,
                &mut want,
                &mut want_u,
                beta,
                colour,
                step0,
                hits,
                seed,
                chain0,
                &mut want_acc,
            )
            .unwrap();
            assert_eq!(
                want_u,
                xy_cpu::unit_vectors(&want),
                "units follow the angles"
            );
            let (mut want_or, mut want_or_u) = (start.clone(), units.clone());
            xy_cpu::overrelax_colour(cpu, &lat, &mut want_or, &mut want_or_u, colour).unwrap();
            assert_ne!(want_or, start, "{dims:?}: overrelaxation changed nothing");
            for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
                for order in ORDERS {
                    let (mut got, mut got_u) = (start.clone(), units.clone());
                    let mut acc = vec![0u64; CHAINS];
                    let mut a = Args::new();
                    a.output(&mut got)
                        .output(&mut got_u)
                        .val(&geom)
                        .val(&beta)
                        .val(&colour);
                    a.val(&step0).val(&hits).val(&k0).val(&k1).output(&mut acc);
                    launch(h, &format!("xy_metropolis_d{d}"), &cfg, &mut a, order);
                    assert_eq!(got, want, "xy_metropolis {dims:?} colour {colour}");
                    assert_eq!(got_u, want_u, "xy_metropolis units {dims:?}");
                    assert_eq!(acc, want_acc, "xy_metropolis counts {dims:?}");

                    let (mut got, mut got_u) = (start.clone(), units.clone());
                    let mut a = Args::new();
                    a.output(&mut got)
                        .output(&mut got_u)
                        .val(&geom)
                        .val(&colour);
                    launch(h, &format!("xy_overrelax_d{d}"), &cfg, &mut a, order);
                    assert_eq!(got, want_or, "xy_overrelax {dims:?} colour {colour}");
                    assert_eq!(got_u, want_or_u, "xy_overrelax units {dims:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fourier.cu

fn fourier_cases(h: &Harness, _cpu: &CpuDevice) {
    // Power-of-two axes (FFT stages), other extents (DFT), strided and contiguous axes.
    for dims in [
        vec![8usize],
        vec![6],
        vec![4, 8],
        vec![6, 4],
        vec![2, 3, 4],
        vec![2, 2, 4, 2],
    ] {
        let lat = Lattice::new(&dims).unwrap();
        let n = lat.volume() * CHAINS;
        let z = randn(2 * n, 8);
        for plan in fft::AxisPlan::for_lattice(&lat) {
            let (l, st, lines) = (plan.extent, plan.stride, plan.lines(n));
            let what = format!("{dims:?} axis of stride {st}");
            for inverse in [false, true] {
                for ns in plan.stages() {
                    let mut want = vec![0.0; 2 * n];
                    fft::fft_stage(&z, &mut want, lines, l, st, ns, &plan.twiddles, inverse)
                        .unwrap();
                    let cfg = geometry::elementwise(lines * l / 2).unwrap();
                    for cfg in with_small_grid(cfg) {
                        let mut got = vec![f64::NAN; 2 * n];
                        let mut a = Args::new();
                        a.input(&z)
                            .output(&mut got)
                            .val(&(lines as u32))
                            .val(&(l as u32));
                        a.val(&(st as u32)).val(&(ns as u32)).input(&plan.twiddles);
                        a.val(&u32::from(inverse));
                        launch(h, "fft_stage", &cfg, &mut a, Order::Descending);
                        assert_close(&format!("fft_stage {what} ns {ns}"), &got, &want, 1e-14);
                    }
                }
                if !plan.radix2 {
                    let mut want = vec![0.0; 2 * n];
                    fft::dft_axis(&z, &mut want, lines, l, st, &plan.twiddles, inverse).unwrap();
                    for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
                        let mut got = vec![f64::NAN; 2 * n];
                        let mut a = Args::new();
                        a.input(&z)
                            .output(&mut got)
                            .val(&(lines as u32))
                            .val(&(l as u32));
                        a.val(&(st as u32))
                            .input(&plan.twiddles)
                            .val(&u32::from(inverse));
                        launch(h, "dft_axis", &cfg, &mut a, Order::Ascending);
                        assert_close(&format!("dft_axis {what}"), &got, &want, 1e-13);
                    }
                }
            }
        }
        // Load, scale, store, axpy and the chunked dot product.
        let (x, y) = (randn(n, 9), randn(n, 10));
        let filter = randn(lat.volume(), 11);
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let mut got = vec![f64::NAN; 2 * n];
            let mut a = Args::new();
            a.input(&x).output(&mut got).val(&(n as u32));
            launch(h, "fourier_load", &cfg, &mut a, Order::Descending);
            assert_eq!(got, fft::load(&x), "fourier_load {dims:?}");

            let (mut got, mut want) = (z.clone(), z.clone());
            fft::scale(&mut want, &filter);
            let mut a = Args::new();
            a.output(&mut got)
                .input(&filter)
                .val(&(lat.volume() as u32))
                .val(&(n as u32));
            launch(h, "fourier_scale", &cfg, &mut a, Order::Ascending);
            assert_eq!(got, want, "fourier_scale {dims:?}");

            let (mut got, mut want) = (vec![f64::NAN; n], vec![0.0; n]);
            fft::store(&z, &mut want);
            let mut a = Args::new();
            a.input(&z).output(&mut got).val(&(n as u32));
            launch(h, "fourier_store", &cfg, &mut a, Order::Descending);
            assert_eq!(got, want, "fourier_store {dims:?}");

            let (mut got, mut want) = (vec![f64::NAN; n], vec![0.0; n]);
            fft::axpy(&mut want, &x, 0.3, &y);
            let mut a = Args::new();
            a.output(&mut got)
                .input(&x)
                .val(&0.3f64)
                .input(&y)
                .val(&(n as u32));
            launch(h, "axpy", &cfg, &mut a, Order::Ascending);
            assert_eq!(got, want, "axpy {dims:?}");
        }
        let want = fft::dot_chunks(&x, &y, lat.volume());
        let cfg = geometry::chunked(CHAINS, lat.volume()).unwrap();
        for order in ORDERS {
            let mut got = vec![f64::NAN; want.len()];
            let mut a = Args::new();
            a.input(&x)
                .input(&y)
                .output(&mut got)
                .val(&(lat.volume() as u32));
            a.val(&(REDUCE_CHUNK as u32));
            launch(h, "dot_chunks", &cfg, &mut a, order);
            assert_close(&format!("dot_chunks {dims:?}"), &got, &want, 1e-12);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cluster.cu

fn cluster_cases(h: &Harness, _cpu: &CpuDevice) {
    for dims in [vec![10usize], vec![4, 6], vec![2, 4, 6], vec![2, 2, 4, 2]] {
        let lat = Lattice::new(&dims).unwrap();
        let (d, v) = (lat.dim() as i32, lat.volume());
        // The batch is chains 3.. of an ensemble; a strong coupling makes clusters of many sites.
        let chain0 = 3;
        let geom = GpuGeom::new(&lat, CHAINS).with_first_chain(chain0);
        let n = geom.sites();
        let phi: Vec<f64> = randn(n, 12).iter().map(|z| z + 0.4).collect();
        let (hop, t) = (0.9f64, 7u32);
        let key = philox::key_from_seed(5);
        let [k0, k1] = key;
        let bonds = cluster::sw_bonds(&lat, hop, &phi, key, chain0, t);
        assert!(bonds.iter().any(|&b| b != 0), "{dims:?}: no frozen bond");
        let labels = cluster::min_labels(&lat, &bonds);
        assert!(labels.iter().enumerate().any(|(i, &l)| l as usize != i % v));
        for order in ORDERS {
            let cfg = geometry::elementwise(n).unwrap();
            let mut got = vec![0u8; n];
            let mut a = Args::new();
            a.input(&phi)
                .output(&mut got)
                .val(&geom)
                .val(&d)
                .val(&hop)
                .val(&t);
            a.val(&k0).val(&k1);
            launch(h, "sw_bonds", &cfg, &mut a, order);
            assert_eq!(got, bonds, "sw_bonds {dims:?}");

            let mut label = vec![u32::MAX; n];
            let mut a = Args::new();
            a.output(&mut label).val(&(v as u32)).val(&(n as u32));
            launch(h, "sw_label_init", &cfg, &mut a, order);
            for pass in 0.. {
                assert!(
                    pass <= n,
                    "sw_label_step {dims:?}: no fixed point after {n} passes"
                );
                let mut changed = [0u32];
                let mut a = Args::new();
                a.output(&mut label)
                    .input(&bonds)
                    .val(&geom)
                    .val(&d)
                    .output(&mut changed);
                launch(h, "sw_label_step", &cfg, &mut a, order);
                if changed[0] == 0 {
                    break;
                }
            }
            assert_eq!(
                label, labels,
                "sw_label_step {dims:?}: not the smallest sites"
            );

            let mut want = phi.clone();
            cluster::sw_flip(&mut want, &labels, v, key, chain0, t);
            let mut got = phi.clone();
            let mut a = Args::new();
            a.output(&mut got)
                .input(&labels)
                .val(&geom)
                .val(&t)
                .val(&k0)
                .val(&k1);
            launch(h, "sw_flip", &cfg, &mut a, order);
            assert_eq!(got, want, "sw_flip {dims:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scalar_local.cu

fn scalar_local_cases(h: &Harness, cpu: &CpuDevice) {
    for dims in [vec![10usize], vec![4, 6], vec![2, 4, 6], vec![2, 2, 4, 2]] {
        let lat = Lattice::new(&dims).unwrap();
        let d = lat.dim();
        let c = Phi4::new(lat.clone(), 0.2, 0.3).unwrap().couplings();
        // The batch is chains 6.. of an ensemble: the draws are keyed by the global index.
        let chain0 = 6;
        let geom = GpuGeom::new(&lat, CHAINS).with_first_chain(chain0);
        let gc = GpuCouplings::from(c);
        let n = geom.sites();
        let start = randn(n, 6);
        let (seed, delta, hits) = (8u64, 0.9, 3u32);
        let [k0, k1] = philox::key_from_seed(seed);
        for colour in 0..2u32 {
            let step0 = 4u64 + (colour as u64) * (3 << 32);
            let (mut want, mut want_acc) = (start.clone(), vec![0u64; CHAINS]);
            scalar_cpu::metropolis_colour(
                cpu,
                &lat,
                &mut want,
                &c,
                delta,
                colour,
                step0,
                hits,
                seed,
                chain0,
                &mut want_acc,
            )
            .unwrap();
            assert_ne!(want, start, "{dims:?}: Metropolis changed nothing");
            for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
                for order in ORDERS {
                    let (mut got, mut acc) = (start.clone(), vec![0u64; CHAINS]);
                    let mut a = Args::new();
                    a.output(&mut got)
                        .val(&geom)
                        .val(&gc)
                        .val(&delta)
                        .val(&colour);
                    a.val(&step0).val(&hits).val(&k0).val(&k1).output(&mut acc);
                    launch(h, &format!("scalar_metropolis_d{d}"), &cfg, &mut a, order);
                    assert_eq!(got, want, "scalar_metropolis {dims:?} colour {colour}");
                    assert_eq!(acc, want_acc, "scalar_metropolis counts {dims:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// can.cu

fn can_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    can_mixture_cases::<T>(h, cpu);
    can_generate_cases::<T>(h);
}

fn can_mixture_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    // Odd sizes, one and several components; u spread over (0, 1) and at the clamp.
    for (batch, volume, k) in [(1usize, 1usize, 1usize), (3, 37, 3), (2, 300, 5)] {
        let s = MixtureShape { batch, volume, k };
        let n = batch * volume;
        let out: Vec<T> = cast(&randn(3 * k * n, 31));
        let mut uf: Vec<f64> = (0..n)
            .map(|i| ((i * 37 + 5) % 101) as f64 / 100.0)
            .collect();
        uf[0] = 0.0;
        let u: Vec<T> = cast(&uf);
        let g: Vec<T> = cast(&randn(n, 32));
        let mut want = vec![T::zero(); n];
        mixture::log_density(cpu, s, &out, &u, &mut want).unwrap();
        let mut want_d = vec![T::zero(); 3 * k * n];
        mixture::log_density_grad(cpu, s, &out, &u, &g, &mut want_d).unwrap();
        for cfg in with_small_grid(geometry::elementwise(n).unwrap()) {
            let (mut got, mut got_d) = (vec![T::zero(); n], vec![T::zero(); 3 * k * n]);
            let dims = [batch as u32, k as u32, volume as u32];
            let mut a = Args::new();
            a.input(&out).input(&u).output(&mut got);
            a.val(&dims[0]).val(&dims[1]).val(&dims[2]);
            launch(
                h,
                &name::<T>("can_mixture_logp"),
                &cfg,
                &mut a,
                Order::Ascending,
            );
            assert_close("can_mixture_logp", &wide(&got), &wide(&want), tol::<T>());
            let mut a = Args::new();
            a.input(&out).input(&u).input(&g).output(&mut got_d);
            a.val(&dims[0]).val(&dims[1]).val(&dims[2]);
            launch(
                h,
                &name::<T>("can_mixture_grad"),
                &cfg,
                &mut a,
                Order::Descending,
            );
            assert_close(
                "can_mixture_grad",
                &wide(&got_d),
                &wide(&want_d),
                10.0 * tol::<T>(),
            );
        }
    }
}

fn can_generate_cases<T: Real>(h: &Harness) {
    let ctx = Ctx::<T>::new(Device::Cpu(common::cpu()));
    // Odd lattices (the raster wrap), both kernel parities, more channels than a warp.
    // With and without the running-mean inputs.
    for (dims, kernel, channels, running_means) in [
        ([3usize, 5usize], 3usize, 5usize, false),
        ([4, 4], 2, 40, false),
        ([5, 3], 3, 7, true),
    ] {
        let config = CanConfig {
            channels,
            residual: 2,
            kernel,
            components: 3,
            activation: Activation::LeakyRelu(0.2),
            running_means,
            seed: 9,
        };
        let mut store = ParamStore::new(&ctx);
        let can = Can::new(&config, &Lattice::new(&dims).unwrap(), &mut store).unwrap();
        let key = DrawKey {
            seed: 5,
            stream: 9,
            step: 2,
            sample0: 3,
        };
        let batch = 4;
        let (want_u, want_q) = can.generate(&store, key, batch).unwrap();
        let w = can.pack(&store).unwrap();
        let [k0, k1] = philox::key_from_seed(key.seed);
        let mut cfg = geometry::one_block_each(batch).unwrap();
        cfg.block_dim = (64, 1, 1);
        for (cfg, order) in with_small_grid(cfg).into_iter().zip(ORDERS) {
            let v = can.volume();
            let mut act = vec![T::zero(); batch * can.spec().scratch_len()];
            let (mut xin, mut u, mut q) = (
                vec![T::zero(); can.spec().inputs() * batch * v],
                vec![T::zero(); batch * v],
                vec![0.0f64; batch],
            );
            let mut a = Args::new();
            let mut phi = vec![0.0f64; batch * can.spec().angle_scratch_len()];
            a.input(&w).output(&mut act).output(&mut xin);
            a.output(&mut phi).output(&mut u).output(&mut q);
            a.val(can.spec())
                .val(&(batch as u32))
                .val(&key.sample0)
                .val(&key.step);
            a.val(&key.stream).val(&k0).val(&k1);
            launch(h, &name::<T>("can_generate"), &cfg, &mut a, order);
            assert_close("can_generate u", &wide(&u), &wide(&want_u), tol::<T>());
            assert_close("can_generate ln q", &q, &want_q, tol::<T>());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// unet.cu

fn unet_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let eps = unet::GROUP_NORM_EPS;
    // One group of one value, groups smaller and larger than a block.
    for (count, n) in [(1usize, 1usize), (3, 37), (2, 700)] {
        let x: Vec<T> = cast(&randn(count * n, 41));
        let dy: Vec<T> = cast(&randn(count * n, 42));
        let mut want = vec![T::zero(); count * n];
        unet::group_norm(cpu, &x, &mut want, n, eps).unwrap();
        let mut want_dx = vec![T::zero(); count * n];
        unet::group_norm_grad(cpu, [&x, &want, &dy], &mut want_dx, n, eps).unwrap();
        let cfg = geometry::one_block_each(count).unwrap();
        for (cfg, order) in with_small_grid(cfg).into_iter().zip(ORDERS) {
            let (mut y, mut dx) = (vec![T::zero(); count * n], vec![T::zero(); count * n]);
            let mut a = Args::new();
            a.input(&x)
                .output(&mut y)
                .val(&(count as u32))
                .val(&(n as u32))
                .val(&eps);
            launch(h, &name::<T>("group_norm"), &cfg, &mut a, order);
            // A group of one value normalises to 0 on both sides; compare absolutely there.
            assert_close("group_norm", &wide(&y), &wide(&want), 10.0 * tol::<T>());
            let mut a = Args::new();
            a.input(&x).input(&want).input(&dy).output(&mut dx);
            a.val(&(count as u32)).val(&(n as u32)).val(&eps);
            launch(h, &name::<T>("group_norm_grad"), &cfg, &mut a, order);
            assert_close(
                "group_norm_grad",
                &wide(&dx),
                &wide(&want_dx),
                100.0 * tol::<T>(),
            );
        }
    }
    group_norm_silu_cases::<T>(h, cpu);
    for (planes, hh, ww) in [(1usize, 1usize, 1usize), (5, 3, 7)] {
        let fine: Vec<T> = cast(&randn(4 * planes * hh * ww, 43));
        let coarse: Vec<T> = cast(&randn(planes * hh * ww, 44));
        let scale = T::from_f64(0.25);
        let mut want_p = vec![T::zero(); planes * hh * ww];
        unet::pool2(cpu, &fine, &mut want_p, [hh, ww], scale).unwrap();
        let mut want_u = vec![T::zero(); 4 * planes * hh * ww];
        unet::unpool2(cpu, &coarse, &mut want_u, [hh, ww], scale).unwrap();
        let dims = [planes as u32, hh as u32, ww as u32];
        for cfg in with_small_grid(geometry::elementwise(4 * planes * hh * ww).unwrap()) {
            let mut p = vec![T::zero(); want_p.len()];
            let mut a = Args::new();
            a.input(&fine)
                .output(&mut p)
                .val(&dims[0])
                .val(&dims[1])
                .val(&dims[2])
                .val(&scale);
            launch(h, &name::<T>("pool2"), &cfg, &mut a, Order::Ascending);
            assert_close("pool2", &wide(&p), &wide(&want_p), tol::<T>());
            let mut u = vec![T::zero(); want_u.len()];
            let mut a = Args::new();
            a.input(&coarse)
                .output(&mut u)
                .val(&dims[0])
                .val(&dims[1])
                .val(&dims[2])
                .val(&scale);
            launch(h, &name::<T>("unpool2"), &cfg, &mut a, Order::Descending);
            assert_eq!(wide(&u), wide(&want_u), "unpool2");
        }
    }
    for (batch, e) in [(1usize, 1usize), (5, 33)] {
        let t: Vec<T> = cast(&randn(batch, 45));
        let wk: Vec<T> = cast(&randn(e, 46));
        let dy: Vec<T> = cast(&randn(2 * batch * e, 47));
        let mut want = vec![T::zero(); 2 * batch * e];
        unet::fourier_features(&t, &wk, &mut want).unwrap();
        let mut want_dt = vec![T::zero(); batch];
        unet::fourier_features_grad(&t, &wk, &dy, &mut want_dt).unwrap();
        for cfg in with_small_grid(geometry::elementwise(batch * e).unwrap()) {
            let mut y = vec![T::zero(); want.len()];
            let mut a = Args::new();
            a.input(&t)
                .input(&wk)
                .output(&mut y)
                .val(&(batch as u32))
                .val(&(e as u32));
            launch(
                h,
                &name::<T>("fourier_features"),
                &cfg,
                &mut a,
                Order::Ascending,
            );
            assert_close("fourier_features", &wide(&y), &wide(&want), tol::<T>());
            let mut dt = vec![T::zero(); batch];
            let mut a = Args::new();
            a.input(&t).input(&wk).input(&dy).output(&mut dt);
            a.val(&(batch as u32)).val(&(e as u32));
            launch(
                h,
                &name::<T>("fourier_features_grad"),
                &cfg,
                &mut a,
                Order::Descending,
            );
            assert_close(
                "fourier_features_grad",
                &wide(&dt),
                &wide(&want_dt),
                10.0 * tol::<T>(),
            );
        }
    }
}

/// The fused block tail: forward, backward and the channel fold against their CPU twins, on
/// one-value planes, planes smaller and larger than a block, one group and several.
fn group_norm_silu_cases<T: Real>(h: &Harness, cpu: &CpuDevice) {
    let eps = unet::GROUP_NORM_EPS;
    for (batch, channels, groups, plane) in [
        (1usize, 1usize, 1usize, 1usize),
        (2, 6, 3, 37),
        (3, 4, 1, 300),
    ] {
        let shape = NormSiluShape {
            batch,
            channels,
            groups,
            plane,
        };
        let len = shape.len();
        let x: Vec<T> = cast(&randn(len, 48));
        let s: Vec<T> = cast(&randn(batch * channels, 49));
        let gamma: Vec<T> = cast(&randn(channels, 50));
        let beta: Vec<T> = cast(&randn(channels, 51));
        let dy: Vec<T> = cast(&randn(len, 52));
        let (mut want_y, mut want_n) = (vec![T::zero(); len], vec![T::zero(); len]);
        let inputs = [&x[..], &s, &gamma, &beta];
        gns::group_norm_silu(cpu, inputs, [&mut want_y, &mut want_n], &shape, eps).unwrap();
        let mut want_dx = vec![T::zero(); len];
        let mut want_parts = vec![0.0f64; 3 * batch * channels];
        let grad_in = [&x[..], &s, &gamma, &beta, &want_n, &dy];
        gns::group_norm_silu_grad(cpu, grad_in, &mut want_dx, &mut want_parts, &shape, eps)
            .unwrap();
        let mut want_folds = [
            vec![T::zero(); channels],
            vec![T::zero(); channels],
            vec![T::zero(); batch * channels],
        ];
        let [wg, wb, ws] = &mut want_folds;
        gns::channel_fold(&want_parts, [wg, wb, ws], batch).unwrap();
        let count = batch * groups;
        let dims = [
            count as u32,
            (channels / groups) as u32,
            plane as u32,
            channels as u32,
        ];
        let cfg = geometry::one_block_each(count).unwrap();
        for (cfg, order) in with_small_grid(cfg).into_iter().zip(ORDERS) {
            let (mut y, mut n) = (vec![T::zero(); len], vec![T::zero(); len]);
            let mut a = Args::new();
            a.input(&x)
                .input(&s)
                .input(&gamma)
                .input(&beta)
                .output(&mut y)
                .output(&mut n);
            dims.iter().for_each(|d| {
                a.val(d);
            });
            a.val(&eps);
            launch(h, &name::<T>("group_norm_silu"), &cfg, &mut a, order);
            assert_close(
                "group_norm_silu n",
                &wide(&n),
                &wide(&want_n),
                10.0 * tol::<T>(),
            );
            assert_close(
                "group_norm_silu y",
                &wide(&y),
                &wide(&want_y),
                10.0 * tol::<T>(),
            );
            let (mut dx, mut parts) = (vec![T::zero(); len], vec![0.0f64; 3 * batch * channels]);
            let mut a = Args::new();
            a.input(&x)
                .input(&s)
                .input(&gamma)
                .input(&beta)
                .input(&want_n)
                .input(&dy);
            a.output(&mut dx).output(&mut parts);
            dims.iter().for_each(|d| {
                a.val(d);
            });
            a.val(&eps);
            launch(h, &name::<T>("group_norm_silu_grad"), &cfg, &mut a, order);
            assert_close(
                "group_norm_silu_grad dx",
                &wide(&dx),
                &wide(&want_dx),
                100.0 * tol::<T>(),
            );
            assert_close(
                "group_norm_silu_grad parts",
                &parts,
                &want_parts,
                100.0 * tol::<T>(),
            );
        }
        for cfg in with_small_grid(geometry::elementwise(batch * channels).unwrap()) {
            let mut folds = [
                vec![T::zero(); channels],
                vec![T::zero(); channels],
                vec![T::zero(); batch * channels],
            ];
            let [g, b, sd] = &mut folds;
            let mut a = Args::new();
            a.input(&want_parts).output(g).output(b).output(sd);
            a.val(&(batch as u32)).val(&(channels as u32));
            launch(
                h,
                &name::<T>("channel_fold"),
                &cfg,
                &mut a,
                Order::Descending,
            );
            for (got, want) in folds.iter().zip(&want_folds) {
                assert_eq!(wide(got), wide(want), "channel_fold");
            }
        }
    }
}

fn cases_for(family: &KernelFamily) -> fn(&Harness, &CpuDevice) {
    match family.name() {
        n if n == PHILOX.name() => |h, _| philox_cases(h),
        n if n == SCALAR_HMC.name() => hmc_cases,
        n if n == DOMAIN.name() => domain_cases,
        n if n == FOURIER.name() => fourier_cases,
        n if n == CLUSTER.name() => cluster_cases,
        n if n == ISING.name() => ising_cases,
        n if n == SCALAR_LOCAL.name() => scalar_local_cases,
        n if n == XY.name() => xy_cases,
        n if n == NN.name() => |h, cpu| {
            nn_cases::<f32>(h, cpu);
            nn_cases::<f64>(h, cpu);
        },
        n if n == FLOW.name() => |h, cpu| {
            coupling_cases::<f32>(h, cpu);
            coupling_cases::<f64>(h, cpu);
        },
        n if n == CAN.name() => |h, cpu| {
            can_cases::<f32>(h, cpu);
            can_cases::<f64>(h, cpu);
        },
        n if n == UNET.name() => |h, cpu| {
            unet_cases::<f32>(h, cpu);
            unet_cases::<f64>(h, cpu);
        },
        other => panic!(
            "kernel family {other} has no harness cases: add them to tests/kernel_harness.rs"
        ),
    }
}

#[test]
fn every_kernel_runs_on_the_cpu_harness_and_matches_its_twin() {
    if !harness::available("every_kernel_runs_on_the_cpu_harness_and_matches_its_twin") {
        return;
    }
    let cpu = common::cpu();
    let (mut executed, mut total) = (0, 0);
    for (family, h) in FAMILIES.iter().zip(build_all()) {
        assert_eq!(
            h.registered(),
            h.in_source(),
            "{}: every kernel must be followed by LATTICEML_KERNEL(name)",
            family.name()
        );
        cases_for(family)(&h, &cpu);
        let ran = h.executed();
        let missing: Vec<&String> = h.in_source().iter().filter(|k| !ran.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "{}: kernels without a harness case: {missing:?}",
            family.name()
        );
        executed += ran.len();
        total += h.in_source().len();
    }
    let _ = writeln!(std::io::stderr(), "executed {executed} of {total} kernels");
}

/// Kernels with the bugs the harness exists to catch.
const BUGGY: KernelFamily = KernelFamily::new(
    "buggy",
    &[],
    r#"
// A tree sum over one block of 64 values, missing the barrier between levels.
extern "C" __global__ void racy_sum(const double* x, double* out) {
    __shared__ double sh[64];
    sh[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    for (int w = 32; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    }
    if (threadIdx.x == 0) out[0] = sh[0];
}
LATTICEML_KERNEL(racy_sum)

// Threads past n return before a barrier the others wait at.
extern "C" __global__ void early_exit(double* out, unsigned n) {
    if (threadIdx.x >= n) return;
    __syncthreads();
    out[threadIdx.x] = 1.0;
}
LATTICEML_KERNEL(early_exit)

// A full-mask shuffle executed by half a warp.
extern "C" __global__ void half_warp_shuffle(double* out) {
    double v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
LATTICEML_KERNEL(half_warp_shuffle)

// Defined, but never registered.
extern "C" __global__ void unregistered(double* out) { out[0] = 1.0; }
"#,
);

#[test]
fn the_harness_catches_races_divergent_barriers_and_unregistered_kernels() {
    if !harness::available("the_harness_catches_races_divergent_barriers_and_unregistered_kernels")
    {
        return;
    }
    let h = Harness::build(&BUGGY).unwrap();
    assert!(h.in_source().contains(&"unregistered".to_string()));
    assert!(!h.registered().contains(&"unregistered".to_string()));

    let x: Vec<f64> = (0..64).map(|i| i as f64).collect();
    let block = |threads: u32| LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let sums: Vec<f64> = ORDERS
        .iter()
        .map(|&order| {
            let mut out = [0.0];
            let mut a = Args::new();
            a.input(&x).output(&mut out);
            h.launch("racy_sum", &block(64), &mut a, order).unwrap();
            out[0]
        })
        .collect();
    assert!(
        sums.iter().any(|&s| s != 2016.0),
        "a missing barrier went unnoticed: {sums:?}"
    );

    let mut out = [0.0; 32];
    let mut a = Args::new();
    a.output(&mut out).val(&10u32);
    let err = h
        .launch("early_exit", &block(32), &mut a, Order::Ascending)
        .unwrap_err();
    assert!(err.contains("__syncthreads reached by 10 of 32"), "{err}");

    let mut out = [0.0; 32];
    let mut a = Args::new();
    a.output(&mut out);
    let err = h
        .launch("half_warp_shuffle", &block(32), &mut a, Order::Ascending)
        .unwrap_err();
    assert!(err.contains("shuffle"), "{err}");
}
