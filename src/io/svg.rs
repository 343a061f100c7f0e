//! Small SVG figures a physicist opens in a browser: panels of normalised step histograms, one
//! colour per series, sharing the bins of their panel.

use std::fmt::Write;

/// One series of a histogram panel.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// CSS colour.
    pub colour: &'a str,
    /// The values.
    pub values: &'a [f64],
}

/// One panel: a title and its series.
pub struct Panel<'a> {
    /// Title (the quantity).
    pub title: &'a str,
    /// The series, drawn in order.
    pub series: Vec<Series<'a>>,
}

const W: f64 = 460.0;
const H: f64 = 300.0;
const MARGIN: f64 = 45.0;

/// The panels side by side, each with `bins` bins over the range of all its finite values and
/// every series normalised to unit area (a probability density).
pub fn histograms(panels: &[Panel], bins: usize) -> String {
    let bins = bins.max(1);
    let mut s = prelude(panels.len());
    for (k, p) in panels.iter().enumerate() {
        panel(&mut s, p, bins, k as f64 * W);
    }
    s.push_str("</svg>\n");
    s
}

/// The opening of a figure of `panels` panels side by side, on white.
fn prelude(panels: usize) -> String {
    let width = W * panels.max(1) as f64;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n"
    )
}

/// One scatter panel: points (x, y) coloured by a third quantity.
pub struct ScatterPanel<'a> {
    /// Title (the colouring quantity).
    pub title: &'a str,
    /// Abscissae.
    pub x: &'a [f64],
    /// Ordinates.
    pub y: &'a [f64],
    /// The value that sets each point's colour (blue = smallest, red = largest).
    pub colour: &'a [f64],
}

/// Scatter panels side by side with axis labels `labels` (x, y); colours run from blue to red
/// over each panel's range of `colour`, whose ends are printed under the panel.
pub fn scatter(panels: &[ScatterPanel], labels: (&str, &str)) -> String {
    let mut s = prelude(panels.len());
    for (k, p) in panels.iter().enumerate() {
        scatter_panel(&mut s, p, labels, k as f64 * W);
    }
    s.push_str("</svg>\n");
    s
}

/// The finite range of `v`, widened to a unit range when empty or a single value.
fn range(v: &[f64]) -> (f64, f64) {
    let (lo, hi) = v
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    match (lo.is_finite(), lo < hi) {
        (true, true) => (lo, hi),
        (true, false) => (lo - 0.5, lo + 0.5),
        _ => (0.0, 1.0),
    }
}

fn scatter_panel(s: &mut String, p: &ScatterPanel, (xl, yl): (&str, &str), x0: f64) {
    let ((xa, xb), (ya, yb), (ca, cb)) = (range(p.x), range(p.y), range(p.colour));
    let (pw, ph) = (W - 2.0 * MARGIN, H - 2.0 * MARGIN);
    let _ = writeln!(
        s,
        "<rect x=\"{}\" y=\"{MARGIN}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" \
         stroke=\"black\"/>\n<text x=\"{}\" y=\"25\" text-anchor=\"middle\" \
         font-size=\"14\">{} (blue {ca:.3} … red {cb:.3})</text>\n<text x=\"{}\" y=\"{}\" \
         text-anchor=\"middle\">{xl}: {xa:.3} … {xb:.3}</text>\n<text x=\"{}\" y=\"{}\" \
         text-anchor=\"start\">{yl}: {ya:.3} … {yb:.3}</text>",
        x0 + MARGIN,
        x0 + W / 2.0,
        p.title,
        x0 + W / 2.0,
        H - MARGIN + 18.0,
        x0 + MARGIN,
        MARGIN - 5.0,
    );
    for ((&x, &y), &c) in p.x.iter().zip(p.y).zip(p.colour) {
        if !(x.is_finite() && y.is_finite() && c.is_finite()) {
            continue;
        }
        let t = (c - ca) / (cb - ca);
        let (r, b) = ((255.0 * t) as u8, (255.0 * (1.0 - t)) as u8);
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"rgb({r},60,{b})\"/>",
            x0 + MARGIN + (x - xa) / (xb - xa) * pw,
            H - MARGIN - (y - ya) / (yb - ya) * ph
        );
    }
}

/// Densities of `values` in `bins` equal bins on [lo, hi].
fn density(values: &[f64], (lo, hi): (f64, f64), bins: usize) -> Vec<f64> {
    let mut counts = vec![0.0; bins];
    let width = (hi - lo) / bins as f64;
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    for v in &finite {
        let b = (((v - lo) / width) as usize).min(bins - 1);
        counts[b] += 1.0;
    }
    let norm = finite.len().max(1) as f64 * width;
    counts.iter().map(|c| c / norm).collect()
}

fn panel(s: &mut String, p: &Panel, bins: usize, x0: f64) {
    let all = p
        .series
        .iter()
        .flat_map(|q| q.values.iter())
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    // Empty (infinite bounds) or one value: a unit range around it.
    if lo >= hi || !lo.is_finite() {
        (lo, hi) = if lo.is_finite() {
            (lo - 0.5, lo + 0.5)
        } else {
            (0.0, 1.0)
        };
    }
    let dens: Vec<Vec<f64>> = p
        .series
        .iter()
        .map(|q| density(q.values, (lo, hi), bins))
        .collect();
    let top = dens
        .iter()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-300);
    let (pw, ph) = (W - 2.0 * MARGIN, H - 2.0 * MARGIN);
    let px = |v: f64| x0 + MARGIN + (v - lo) / (hi - lo) * pw;
    let py = |d: f64| H - MARGIN - d / top * ph;
    let _ = writeln!(
        s,
        "<rect x=\"{}\" y=\"{MARGIN}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" \
         stroke=\"black\"/>\n<text x=\"{}\" y=\"25\" text-anchor=\"middle\" \
         font-size=\"14\">{}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"start\">{lo:.4}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{hi:.4}</text>",
        x0 + MARGIN,
        x0 + W / 2.0,
        p.title,
        x0 + MARGIN,
        H - MARGIN + 15.0,
        x0 + W - MARGIN,
        H - MARGIN + 15.0
    );
    for (j, (q, d)) in p.series.iter().zip(&dens).enumerate() {
        let mut path = format!("M {:.1} {:.1}", px(lo), py(0.0));
        for (b, v) in d.iter().enumerate() {
            let (a, c) = (
                lo + (hi - lo) * b as f64 / bins as f64,
                lo + (hi - lo) * (b + 1) as f64 / bins as f64,
            );
            let _ = write!(
                path,
                " L {:.1} {:.1} L {:.1} {:.1}",
                px(a),
                py(*v),
                px(c),
                py(*v)
            );
        }
        let _ = write!(path, " L {:.1} {:.1}", px(hi), py(0.0));
        let n = q.values.iter().filter(|v| v.is_finite()).count();
        let _ = writeln!(
            s,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n<text x=\"{}\" \
             y=\"{}\" fill=\"{}\">{} ({n})</text>",
            q.colour,
            x0 + MARGIN + 8.0,
            MARGIN + 16.0 * (j + 1) as f64,
            q.colour,
            q.label
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_have_unit_area_and_the_figure_names_its_series() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
        let d = density(&v, (-1.0, 1.0), 20);
        let area: f64 = d.iter().sum::<f64>() * 0.1;
        assert!((area - 1.0).abs() < 1e-12);
        let svg = histograms(
            &[Panel {
                title: "M",
                series: vec![
                    Series {
                        label: "data",
                        colour: "grey",
                        values: &v,
                    },
                    Series {
                        label: "model",
                        colour: "blue",
                        values: &[f64::NAN, 0.5],
                    },
                ],
            }],
            20,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("data (1000)") && svg.contains("model (1)"));
    }
}
