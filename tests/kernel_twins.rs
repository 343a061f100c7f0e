//! Every scalar-HMC kernel (both force laws) against its reference: the fast CPU kernels against the per-site
//! definitions of `Action`, and the CUDA kernels against their CPU twins.

mod common;

use std::sync::Arc;

use latticeml::action::{Action, Oscillator, Phi4};
use latticeml::device::geometry::{chunks_per_segment, sum_chunks};
use latticeml::device::CpuDevice;
use latticeml::hmc::cpu::{energy_chunks, kick_drift, moment_chunks, restore_chains};
use latticeml::hmc::cuda::ScalarKernels;
use latticeml::hmc::{Hmc, HmcParams, Integrator};
use latticeml::theory::xy::Xy;
use latticeml::{philox, Device, Lattice};

const CHAINS: usize = 3;

fn actions() -> Vec<Arc<dyn Action>> {
    let mut v: Vec<Arc<dyn Action>> = [
        vec![7],
        vec![5, 6],
        vec![3, 4, 5],
        vec![2, 3, 4, 5],
        vec![64, 64],
    ]
    .into_iter()
    .map(|d| Arc::new(Phi4::new(Lattice::new(&d).unwrap(), 0.17, 0.3).unwrap()) as Arc<dyn Action>)
    .collect();
    v.push(Arc::new(Oscillator::new(0.5, 1.0, 1.4, 5.0, 33).unwrap()));
    // The cosine law (XY), in 1D and 3D.
    for dims in [vec![10], vec![4, 6, 2]] {
        v.push(Arc::new(
            Xy::new(Lattice::new(&dims).unwrap(), 1.1).unwrap(),
        ));
    }
    v
}

fn random_batch(n: usize, stream: u32) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 3, 1, 2, stream);
    v
}

#[test]
fn cpu_kick_drift_matches_the_per_site_force() {
    for threads in [1, 2, 3] {
        let dev = CpuDevice::with_threads(threads);
        for a in actions() {
            let v = a.lattice().volume();
            let (phi, p0) = (random_batch(CHAINS * v, 1), random_batch(CHAINS * v, 2));
            let (mut p, mut new) = (p0.clone(), vec![0.0; CHAINS * v]);
            let (kick, drift) = (0.3, 0.7);
            kick_drift(
                &dev,
                a.lattice(),
                &a.couplings(),
                &phi,
                &mut p,
                Some(&mut new),
                kick,
                drift,
            )
            .unwrap();
            let mut force = vec![0.0; v];
            for c in 0..CHAINS {
                let r = c * v..(c + 1) * v;
                a.force(&phi[r.clone()], &mut force);
                for (i, x) in r.enumerate() {
                    let want_p = p0[x] + kick * force[i];
                    assert!(
                        (p[x] - want_p).abs() < 1e-12 * want_p.abs().max(1.0),
                        "{} p[{x}]",
                        a.name()
                    );
                    assert!(
                        (new[x] - (phi[x] + drift * want_p)).abs() < 1e-12 * new[x].abs().max(1.0)
                    );
                }
            }
            // Kick only: the field buffer is not touched.
            let mut p2 = p0.clone();
            kick_drift(
                &dev,
                a.lattice(),
                &a.couplings(),
                &phi,
                &mut p2,
                None,
                kick,
                0.0,
            )
            .unwrap();
            assert!(common::max_rel_diff(&p2, &p) < 1e-15);
        }
    }
}

#[test]
fn cpu_energies_and_moments_match_direct_sums() {
    let dev = common::cpu();
    for a in actions() {
        let lat = a.lattice();
        let v = lat.volume();
        let (phi, p) = (random_batch(CHAINS * v, 3), random_batch(CHAINS * v, 4));
        let mut scratch = vec![0.0; CHAINS * v];
        let flat = energy_chunks(&dev, lat, &a.couplings(), &phi, &p, &mut scratch).unwrap();
        let per_chain = sum_chunks(&flat, 2, chunks_per_segment(v));
        let t = lat.time_extent();
        for c in 0..CHAINS {
            let r = c * v..(c + 1) * v;
            let kin: f64 = p[r.clone()].iter().map(|x| 0.5 * x * x).sum();
            let s = a.action(&phi[r.clone()]);
            let (got_k, got_s) = (per_chain[2 * c], per_chain[2 * c + 1]);
            assert!(
                (got_k - kin).abs() < 1e-11 * kin.abs(),
                "{} kinetic",
                a.name()
            );
            assert!(
                (got_s - s).abs() < 1e-11 * s.abs().max(1.0),
                "{} action {got_s} vs {s}",
                a.name()
            );
        }
        let seg = lat.slice_volume();
        let m = sum_chunks(
            &moment_chunks(&dev, &phi, seg).unwrap(),
            3,
            chunks_per_segment(seg),
        );
        let m1: f64 = (0..t).map(|i| m[3 * i]).sum();
        let direct: f64 = phi[..v].iter().sum();
        assert!((m1 - direct).abs() < 1e-11 * v as f64);
    }
}

#[test]
fn cuda_kernels_match_cpu_twins() {
    let Some(gpu) = common::gpu("cuda_kernels_match_cpu_twins") else {
        return;
    };
    let cpu = common::cpu();
    let s = gpu.stream().clone();
    for a in actions() {
        let lat = a.lattice();
        let n = CHAINS * lat.volume();
        let k = ScalarKernels::new(&gpu, lat, a.couplings(), CHAINS).unwrap();
        let (phi, p0) = (random_batch(n, 5), random_batch(n, 6));
        let (mut p_cpu, mut new_cpu) = (p0.clone(), vec![0.0; n]);
        kick_drift(
            &cpu,
            lat,
            &a.couplings(),
            &phi,
            &mut p_cpu,
            Some(&mut new_cpu),
            0.25,
            0.5,
        )
        .unwrap();
        let d_phi = s.clone_htod(&phi).unwrap();
        let mut d_p = s.clone_htod(&p0).unwrap();
        let mut d_new = s.alloc_zeros::<f64>(n).unwrap();
        k.kick_drift(&d_phi, &mut d_p, Some(&mut d_new), 0.25, 0.5)
            .unwrap();
        assert!(
            common::max_rel_diff(&s.clone_dtoh(&d_p).unwrap(), &p_cpu) < 1e-13,
            "{} kick_drift p",
            a.name()
        );
        assert!(
            common::max_rel_diff(&s.clone_dtoh(&d_new).unwrap(), &new_cpu) < 1e-13,
            "{} kick_drift phi",
            a.name()
        );
        k.kick_drift(&d_phi, &mut d_p, None, 0.25, 0.0).unwrap();
        kick_drift(&cpu, lat, &a.couplings(), &phi, &mut p_cpu, None, 0.25, 0.0).unwrap();
        assert!(
            common::max_rel_diff(&s.clone_dtoh(&d_p).unwrap(), &p_cpu) < 1e-13,
            "{} kick",
            a.name()
        );

        let mut out = s.alloc_zeros::<f64>(3 * n).unwrap();
        let mut scratch = vec![0.0; n];
        let e_gpu = k.energy_chunks(&d_phi, &d_p, &mut out).unwrap();
        let e_cpu = energy_chunks(&cpu, lat, &a.couplings(), &phi, &p_cpu, &mut scratch).unwrap();
        assert!(
            common::max_rel_diff(&e_gpu, &e_cpu) < 1e-12,
            "{} energy_chunks",
            a.name()
        );
        let m_gpu = k.moment_chunks(&d_phi, &mut out).unwrap();
        let m_cpu = moment_chunks(&cpu, &phi, lat.slice_volume()).unwrap();
        assert!(
            common::max_rel_diff(&m_gpu, &m_cpu) < 1e-12,
            "{} moment_chunks",
            a.name()
        );

        let flags: Vec<u8> = (0..CHAINS).map(|c| (c % 2) as u8).collect();
        let d_flags = s.clone_htod(&flags).unwrap();
        let mut d_restored = s.clone_htod(&phi).unwrap();
        k.restore_chains(&mut d_restored, &d_p, &d_flags).unwrap();
        let mut restored = phi.clone();
        restore_chains(&mut restored, &p_cpu, &flags, lat.volume()).unwrap();
        assert_eq!(
            s.clone_dtoh(&d_restored).unwrap(),
            restored,
            "restore_chains"
        );

        let mut d_z = s.alloc_zeros::<f64>(n).unwrap();
        k.normals(&mut d_z, 77, 3, 9, philox::STREAM_MOMENTUM)
            .unwrap();
        let mut z = vec![0.0; n];
        for (c, chunk) in z.chunks_mut(lat.volume()).enumerate() {
            philox::fill_normals(chunk, 77, 3 + c as u32, 9, philox::STREAM_MOMENTUM);
        }
        // Same Philox bits; log/sincos may differ by an ulp or two between the backends.
        assert!(
            common::max_rel_diff(&s.clone_dtoh(&d_z).unwrap(), &z) < 1e-14,
            "{} philox_normals",
            a.name()
        );
    }
}

#[test]
fn cuda_and_cpu_hmc_agree_trajectory_by_trajectory() {
    let Some(gpu) = common::gpu("cuda_and_cpu_hmc_agree_trajectory_by_trajectory") else {
        return;
    };
    let action: Arc<dyn Action> =
        Arc::new(Phi4::new(Lattice::new(&[12, 10]).unwrap(), 0.2, 0.1).unwrap());
    let params = HmcParams {
        tau: 1.0,
        steps: 8,
        integrator: Integrator::Omelyan,
        seed: 5,
    };
    let mut on_cpu = Hmc::new(action.clone(), 8, params, &Device::Cpu(common::cpu())).unwrap();
    let mut on_gpu = Hmc::new(action, 8, params, &Device::Cuda(gpu)).unwrap();
    for t in 0..5 {
        let (a, b) = (on_cpu.trajectory().unwrap(), on_gpu.trajectory().unwrap());
        for c in 0..8 {
            assert!(
                (a.delta_h[c] - b.delta_h[c]).abs() < 1e-8,
                "trajectory {t} chain {c}: dH {} vs {}",
                a.delta_h[c],
                b.delta_h[c]
            );
        }
        assert_eq!(a.accepted, b.accepted, "trajectory {t}");
        assert!(common::max_rel_diff(&on_cpu.fields().unwrap(), &on_gpu.fields().unwrap()) < 1e-9);
    }
}

/// A caller's device buffer on its own stream: fields go out and come in device to device, in
/// order with both streams' work; bad pointers and lengths are refused before anything is queued.
#[test]
fn cuda_fields_move_through_a_callers_device_buffer() {
    use cudarc::driver::DevicePtr;
    use latticeml::device::cuda::ExternalBuffer;
    let Some(gpu) = common::gpu("cuda_fields_move_through_a_callers_device_buffer") else {
        return;
    };
    let action: Arc<dyn Action> =
        Arc::new(Phi4::new(Lattice::new(&[16, 12]).unwrap(), 0.2, 0.1).unwrap());
    let params = HmcParams {
        tau: 1.0,
        steps: 8,
        integrator: Integrator::Omelyan,
        seed: 5,
    };
    let mut hmc = Hmc::new(action, 4, params, &Device::Cuda(gpu.clone())).unwrap();
    let n = 4 * 16 * 12;
    let theirs = gpu.context().new_stream().unwrap();
    let mut buf = theirs.alloc_zeros::<f64>(n).unwrap();
    let (ptr, sync) = buf.device_ptr(&theirs);
    drop(sync);
    let ext = ExternalBuffer {
        ptr,
        len: n,
        stream: theirs.cu_stream() as usize,
    };
    for _ in 0..3 {
        hmc.trajectory().unwrap();
        unsafe { hmc.exchange_fields_external(ext, true) }.unwrap();
        let out = theirs.clone_dtoh(&buf).unwrap();
        assert_eq!(out, hmc.fields().unwrap(), "fields out");
    }
    let start = random_batch(n, 9);
    theirs.memcpy_htod(&start, &mut buf).unwrap();
    unsafe { hmc.exchange_fields_external(ext, false) }.unwrap();
    assert_eq!(hmc.fields().unwrap(), start, "fields in");
    let bad = [
        (ExternalBuffer { len: n - 1, ..ext }, "needed"),
        (
            ExternalBuffer {
                ptr: ptr + 4,
                ..ext
            },
            "aligned",
        ),
        (
            ExternalBuffer {
                ptr: start.as_ptr() as u64,
                ..ext
            },
            "not device memory",
        ),
    ];
    for (b, why) in bad {
        let e = unsafe { hmc.exchange_fields_external(b, true) }
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{e}");
    }
}

/// Fourier-accelerated HMC on the GPU (its own FFT kernels) against the CPU backend (rustfft),
/// on a power-of-two lattice (FFT stages) and one with other extents (direct DFTs).
#[test]
fn cuda_and_cpu_fourier_hmc_agree_trajectory_by_trajectory() {
    let Some(gpu) = common::gpu("cuda_and_cpu_fourier_hmc_agree_trajectory_by_trajectory") else {
        return;
    };
    for dims in [[16usize, 8], [12, 10]] {
        let action: Arc<dyn Action> =
            Arc::new(Phi4::new(Lattice::new(&dims).unwrap(), 0.26, 0.022).unwrap());
        let params = HmcParams {
            tau: 1.0,
            steps: 6,
            integrator: Integrator::Omelyan,
            seed: 9,
        };
        let mut on_cpu = Hmc::new(action.clone(), 4, params, &Device::Cpu(common::cpu())).unwrap();
        let mut on_gpu = Hmc::new(action, 4, params, &Device::Cuda(gpu.clone())).unwrap();
        on_cpu.set_fourier_mass(0.3).unwrap();
        on_gpu.set_fourier_mass(0.3).unwrap();
        for t in 0..5 {
            let (a, b) = (on_cpu.trajectory().unwrap(), on_gpu.trajectory().unwrap());
            for c in 0..4 {
                let (x, y) = (a.delta_h[c], b.delta_h[c]);
                assert!(
                    (x - y).abs() < 1e-8,
                    "{dims:?} trajectory {t} chain {c}: dH {x} vs {y}"
                );
            }
            assert_eq!(a.accepted, b.accepted, "{dims:?} trajectory {t}");
            let (f, g) = (on_cpu.fields().unwrap(), on_gpu.fields().unwrap());
            assert!(
                common::max_rel_diff(&f, &g) < 1e-9,
                "{dims:?} trajectory {t}"
            );
        }
    }
}
