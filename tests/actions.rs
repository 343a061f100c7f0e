//! The actions against their textbook definitions, and the φ⁴ parametrisation conversions.

use latticeml::action::{
    hopping_to_standard, standard_to_hopping, Action, Oscillator, Phi4, StandardCouplings,
};
use latticeml::theory::xy::Xy;
use latticeml::{philox, Lattice};

fn field(n: usize) -> Vec<f64> {
    let mut v = vec![0.0; n];
    philox::fill_normals(&mut v, 1, 0, 0, 9);
    v
}

#[test]
fn oscillator_action_is_the_discretised_path_integral() {
    let (m, lambda, f, beta, n) = (0.5, 1.3, 1.4, 6.0, 17);
    let osc = Oscillator::new(m, lambda, f, beta, n).unwrap();
    let x = field(n);
    let a = beta / n as f64;
    let direct: f64 = (0..n)
        .map(|i| {
            a * (m * (x[(i + 1) % n] - x[i]).powi(2) / (2.0 * a * a)
                + lambda * (x[i] * x[i] - f * f).powi(2))
        })
        .sum();
    assert!((osc.action(&x) - direct).abs() < 1e-12 * direct.abs());
}

#[test]
fn phi4_hopping_action_and_force_are_consistent() {
    let lat = Lattice::new(&[5, 4, 3]).unwrap();
    let phi4 = Phi4::new(lat.clone(), 0.16, 0.7).unwrap();
    let (kappa, lambda) = (0.16, 0.7);
    let phi = field(lat.volume());
    let direct: f64 = (0..lat.volume())
        .map(|x| {
            let hop: f64 = (0..3)
                .map(|mu| phi[x] * phi[lat.neighbour(x, mu, true)])
                .sum();
            -2.0 * kappa * hop + (1.0 - 2.0 * lambda) * phi[x].powi(2) + lambda * phi[x].powi(4)
        })
        .sum();
    assert!((phi4.action(&phi) - direct).abs() < 1e-12 * direct.abs());
    // Force = −∂S/∂φ by central differences.
    let mut force = vec![0.0; lat.volume()];
    phi4.force(&phi, &mut force);
    for x in [0, 7, 31, 59] {
        let h = 1e-5;
        let (mut up, mut dn) = (phi.clone(), phi.clone());
        up[x] += h;
        dn[x] -= h;
        let fd = -(phi4.action(&up) - phi4.action(&dn)) / (2.0 * h);
        assert!(
            (force[x] - fd).abs() < 1e-7 * fd.abs().max(1.0),
            "site {x}: {} vs {fd}",
            force[x]
        );
    }
}

#[test]
fn xy_action_and_force_are_consistent() {
    let lat = Lattice::new(&[6, 4, 2]).unwrap();
    let beta = 0.9;
    let xy = Xy::new(lat.clone(), beta).unwrap();
    let th: Vec<f64> = field(lat.volume()).iter().map(|x| 3.0 * x).collect();
    let direct: f64 = (0..lat.volume())
        .map(|x| {
            -beta
                * (0..3)
                    .map(|mu| (th[x] - th[lat.neighbour(x, mu, true)]).cos())
                    .sum::<f64>()
        })
        .sum();
    assert!((Action::action(&xy, &th) - direct).abs() < 1e-12 * direct.abs());
    assert!((beta * xy.bond_energy(&th) - direct).abs() < 1e-12 * direct.abs());
    let mut force = vec![0.0; lat.volume()];
    xy.force(&th, &mut force);
    for x in [0, 5, 17, 47] {
        let h = 1e-5;
        let (mut up, mut dn) = (th.clone(), th.clone());
        up[x] += h;
        dn[x] -= h;
        let fd = -(Action::action(&xy, &up) - Action::action(&xy, &dn)) / (2.0 * h);
        assert!(
            (force[x] - fd).abs() < 1e-7 * fd.abs().max(1.0),
            "site {x}: {} vs {fd}",
            force[x]
        );
    }
}

#[test]
fn hopping_and_standard_forms_convert_both_ways() {
    // The flow literature's m² = −4, λ₀ = 8 in d = 2 is λ = ½, κ = √(λ/λ₀) = ¼ (shared/conventions.md).
    let (k, l) = standard_to_hopping(
        StandardCouplings {
            m2: -4.0,
            lambda0: 8.0,
        },
        2,
    )
    .unwrap();
    assert!(
        (k - 0.25).abs() < 1e-15 && (l - 0.5).abs() < 1e-15,
        "{k} {l}"
    );
    for (kappa, lambda, d) in [(0.21, 0.022, 2), (0.13, 1.1, 4), (0.4, 0.0, 1)] {
        let s = hopping_to_standard(kappa, lambda, d).unwrap();
        let (k2, l2) = standard_to_hopping(s, d).unwrap();
        assert!((k2 - kappa).abs() < 1e-14 && (l2 - lambda).abs() < 1e-14);
    }
    // The actions agree under φ_std = √κ φ_hop.
    let lat = Lattice::new(&[4, 6]).unwrap();
    let (kappa, lambda) = (0.22, 0.3);
    let s = hopping_to_standard(kappa, lambda, 2).unwrap();
    let phi = field(lat.volume());
    let std_action: f64 = (0..lat.volume())
        .map(|x| {
            let p = kappa.sqrt() * phi[x];
            let kin: f64 = (0..2)
                .map(|mu| (kappa.sqrt() * phi[lat.neighbour(x, mu, true)] - p).powi(2))
                .sum();
            kin + s.m2 * p * p + s.lambda0 * p.powi(4)
        })
        .sum();
    let hop = Phi4::new(lat, kappa, lambda).unwrap().action(&phi);
    assert!(
        (std_action - hop).abs() < 1e-11 * hop.abs(),
        "{std_action} vs {hop}"
    );
}

#[test]
fn unstable_or_impossible_parameters_are_rejected() {
    let lat = Lattice::new(&[8, 8]).unwrap();
    assert!(Phi4::new(lat.clone(), 0.2, -0.1).is_err());
    assert!(Phi4::new(lat.clone(), f64::NAN, 0.1).is_err());
    assert!(Phi4::new(lat, 0.26, 0.0).is_err());
    assert!(Oscillator::new(0.5, 1.0, 1.0, -1.0, 10).is_err());
    assert!(Oscillator::new(0.5, 1.0, f64::INFINITY, 1.0, 10).is_err());
    assert!(Lattice::new(&[8, 1]).is_err());
    assert!(Lattice::new(&[]).is_err());
    assert!(Lattice::new(&[2, 2, 2, 2, 2]).is_err());
    assert!(Lattice::new(&[1 << 16, 1 << 16]).is_err());
}

#[test]
fn npy_and_checkpoint_round_trip() {
    let data = field(24);
    let bytes = latticeml::io::npy::encode(&[2, 3, 4], &data);
    assert_eq!(bytes.len() % 64, (8 * 24) % 64, "header padded to 64 bytes");
    let (shape, back) = latticeml::io::npy::decode(&bytes).unwrap();
    assert_eq!((shape, back), (vec![2, 3, 4], data.clone()));
    let ck = latticeml::io::checkpoint::Checkpoint {
        header: "a=1\n".into(),
        arrays: vec![("x".into(), data)],
    };
    let enc = ck.encode();
    let p = std::path::Path::new("ck");
    assert_eq!(
        latticeml::io::checkpoint::Checkpoint::decode(&enc, p).unwrap(),
        ck
    );
    assert!(latticeml::io::checkpoint::Checkpoint::decode(&enc[..enc.len() - 1], p).is_err());
}
