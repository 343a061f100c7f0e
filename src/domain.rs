//! Domain decomposition: one lattice cut into equal boxes, one per rank of a [`Team`], on a grid
//! of ranks (`--decompose 2x2`: two ranks along axis 0, two along axis 1). Ranks are numbered
//! row-major over the grid (axis 0 slowest), like sites.
//!
//! Two things make a decomposed run bit-identical to one process ([`crate::hmc::domain`]):
//! the random numbers are keyed by the global site ([`Decomposition::global_site`]), and every
//! reduction is the single-process one — chunks of [`REDUCE_CHUNK`] consecutive global sites,
//! each summed in site order, then the chunk sums in chunk order. [`OrderedReduction`] moves the
//! per-site values to the rank owning their chunk (one all-to-all), sums the chunks there and
//! shares the chunk sums (one all-gather), so every rank ends with the same f64 totals.
//!
//! [`Team`]: crate::ensemble::Team

use std::ops::Range;

use crate::device::geometry::{chunks_per_segment, REDUCE_CHUNK};
use crate::ensemble::{share, Team};
use crate::error::{Error, Result};
use crate::lattice::Lattice;

/// One rank's box of a lattice decomposed over a grid of ranks.
#[derive(Clone, Debug)]
pub struct Decomposition {
    global: Lattice,
    grid: Vec<usize>,
    rank: usize,
    /// The extents of every rank's box.
    local: Vec<usize>,
}

impl Decomposition {
    /// The box of `rank` when `global` is cut by `grid` (ranks per axis; their product must be
    /// the team's `size`, and each axis must divide evenly).
    pub fn new(global: &Lattice, grid: &[usize], rank: usize, size: usize) -> Result<Self> {
        let ext = global.extents();
        if grid.len() != ext.len() {
            return Err(Error::InvalidInput(format!(
                "--decompose has {} axes for a {}-dimensional lattice: give one rank count per \
                 axis, e.g. {}",
                grid.len(),
                ext.len(),
                vec!["1"; ext.len()].join("x")
            )));
        }
        let ranks = grid
            .iter()
            .try_fold(1usize, |a, &g| a.checked_mul(g))
            .unwrap_or(0);
        if grid.contains(&0) || ranks != size {
            return Err(Error::InvalidInput(format!(
                "--decompose {} needs {ranks} ranks, but {size} are running: start \
                 `mpirun -np {ranks}` or change the grid",
                grid_name(grid)
            )));
        }
        if let Some(mu) = (0..ext.len()).find(|&mu| !ext[mu].is_multiple_of(grid[mu])) {
            return Err(Error::InvalidInput(format!(
                "--decompose {}: axis {mu} has {} sites, not a multiple of {} ranks; choose rank \
                 counts that divide the lattice's extents",
                grid_name(grid),
                ext[mu],
                grid[mu]
            )));
        }
        Ok(Decomposition {
            global: global.clone(),
            grid: grid.to_vec(),
            rank,
            local: ext.iter().zip(grid).map(|(&l, &g)| l / g).collect(),
        })
    }

    /// Parses a grid such as `2x2` or `1x2x2x1`.
    pub fn parse_grid(s: &str) -> Result<Vec<usize>> {
        s.split('x')
            .map(|t| t.trim().parse::<usize>().ok().filter(|&g| g > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "--decompose '{s}': give positive rank counts per axis separated by 'x', e.g. 2x2"
                ))
            })
    }

    /// The whole lattice.
    pub fn global(&self) -> &Lattice {
        &self.global
    }

    /// Ranks per axis.
    pub fn grid(&self) -> &[usize] {
        &self.grid
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.grid.iter().product()
    }

    /// Extents of every rank's box.
    pub fn local_extents(&self) -> &[usize] {
        &self.local
    }

    /// Sites in one box.
    pub fn local_volume(&self) -> usize {
        self.local.iter().product()
    }

    /// The grid coordinates of `rank`.
    fn coords(&self, rank: usize) -> Vec<usize> {
        let mut c = vec![0; self.grid.len()];
        let mut r = rank;
        for mu in (0..self.grid.len()).rev() {
            c[mu] = r % self.grid[mu];
            r /= self.grid[mu];
        }
        c
    }

    /// The rank next to this one along `axis`, upwards (`up`) or downwards, periodically.
    pub fn neighbour(&self, axis: usize, up: bool) -> usize {
        let mut c = self.coords(self.rank);
        let g = self.grid[axis];
        c[axis] = if up {
            (c[axis] + 1) % g
        } else {
            (c[axis] + g - 1) % g
        };
        c.iter().zip(&self.grid).fold(0, |r, (&x, &g)| r * g + x)
    }

    /// The global index of site `local` (row-major in the box) of `rank`'s box.
    pub fn global_site(&self, rank: usize, local: usize) -> usize {
        let origin = self.coords(rank);
        let ext = self.global.extents();
        let mut rest = local;
        let mut x = vec![0; ext.len()];
        for mu in (0..ext.len()).rev() {
            x[mu] = origin[mu] * self.local[mu] + rest % self.local[mu];
            rest /= self.local[mu];
        }
        x.iter().zip(ext).fold(0, |g, (&xi, &l)| g * l + xi)
    }

    /// The rank holding global site `g`, and the site's index in that rank's box.
    pub fn locate(&self, g: usize) -> (usize, usize) {
        let ext = self.global.extents();
        let (mut rest, mut rank, mut local) = (g, 0, 0);
        let mut x = vec![0; ext.len()];
        for mu in (0..ext.len()).rev() {
            x[mu] = rest % ext[mu];
            rest /= ext[mu];
        }
        for ((&xi, &g), &n) in x.iter().zip(&self.grid).zip(&self.local) {
            rank = rank * g + xi / n;
            local = local * n + xi % n;
        }
        (rank, local)
    }

    /// The global indices of every site of `rank`'s box, in the box's order.
    pub fn global_sites(&self, rank: usize) -> Vec<usize> {
        (0..self.local_volume())
            .map(|s| self.global_site(rank, s))
            .collect()
    }

    /// This rank's values of a whole batch `[chain][global site]`.
    pub fn scatter(&self, global: &[f64]) -> Result<Vec<f64>> {
        let v = self.global.volume();
        if v == 0 || !global.len().is_multiple_of(v) {
            return Err(Error::InvalidInput(format!(
                "{} values are not whole chains of {v} sites",
                global.len()
            )));
        }
        let sites = self.global_sites(self.rank);
        Ok(global
            .chunks(v)
            .flat_map(|chain| sites.iter().map(move |&g| chain[g]))
            .collect())
    }

    /// The whole batch from every rank's values (in rank order, as [`Team::all_gather`] returns
    /// them) of `chains` chains.
    pub fn assemble(&self, all: &[f64], chains: usize) -> Result<Vec<f64>> {
        let (v, lv) = (self.global.volume(), self.local_volume());
        if all.len() != chains * v {
            return Err(Error::InvalidInput(format!(
                "{} gathered values for {chains} chains of {v} sites",
                all.len()
            )));
        }
        let mut out = vec![0.0; all.len()];
        for (rank, part) in all.chunks(chains * lv).enumerate() {
            let sites = self.global_sites(rank);
            for (c, chain) in part.chunks(lv).enumerate() {
                for (&g, &x) in sites.iter().zip(chain) {
                    out[c * v + g] = x;
                }
            }
        }
        Ok(out)
    }
}

/// `2x2` for `[2, 2]`.
pub fn grid_name(grid: &[usize]) -> String {
    grid.iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// A segmented reduction of a decomposed batch done in the single-process order (see the module
/// documentation): the batch `[chain][site]` is cut into segments of `seg_len` consecutive
/// global values, each segment into chunks of [`REDUCE_CHUNK`]; rank r sums the chunks
/// [`share`]`(chunks, r, size)`.
pub struct OrderedReduction {
    /// Chunks per segment.
    per: usize,
    /// Local value indices (`chain * local volume + site`) in the order they are sent.
    send_order: Vec<usize>,
    counts_out: Vec<usize>,
    counts_in: Vec<usize>,
    /// For every value received, its offset from the first global value of this rank's chunks.
    place: Vec<usize>,
    /// This rank's chunks, as global value ranges relative to the first of them.
    chunks: Vec<Range<usize>>,
    /// Chunks owned by every rank.
    owned: Vec<usize>,
}

/// An [`OrderedReduction`]'s plan: values `[chain][box site]` are sent in `send_order`,
/// `counts_out[r]` of them to rank r; `counts_in[r]` arrive from rank r, in rank order, and the
/// i-th lands at `place[i]` in this rank's span of global values; each of this rank's `chunks`
/// (ranges of that span) is summed in order, and rank r owns `owned[r]` consecutive chunks.
#[derive(Clone, Copy, Debug)]
pub struct ReductionLayout<'a> {
    /// Box values in the order they are sent.
    pub send_order: &'a [usize],
    /// Values sent to each rank.
    pub counts_out: &'a [usize],
    /// Values received from each rank.
    pub counts_in: &'a [usize],
    /// Where each received value lands in this rank's span.
    pub place: &'a [usize],
    /// This rank's chunks within its span.
    pub chunks: &'a [Range<usize>],
    /// Chunks owned by each rank.
    pub owned: &'a [usize],
}

impl OrderedReduction {
    /// The plan for `chains` chains of `dec`'s lattice with segments of `seg_len` values.
    pub fn new(dec: &Decomposition, chains: usize, seg_len: usize) -> Result<Self> {
        let v = dec.global().volume();
        if seg_len == 0 || !v.is_multiple_of(seg_len) {
            return Err(Error::InvalidInput(format!(
                "segments of {seg_len} do not tile chains of {v} sites"
            )));
        }
        let per = chunks_per_segment(seg_len);
        let total = chains * (v / seg_len) * per;
        let size = dec.size();
        let owned: Vec<Range<usize>> = (0..size).map(|r| share(total, r, size)).collect();
        let owned_counts = owned.iter().map(|o| o.len()).collect();
        // The chunk of global value g, and the rank owning it.
        let chunk_of = |g: usize| (g / seg_len) * per + (g % seg_len) / REDUCE_CHUNK;
        let owner = |chunk: usize| owned.partition_point(|o| o.end <= chunk);
        let chunk_start = |chunk: usize| (chunk / per) * seg_len + (chunk % per) * REDUCE_CHUNK;
        let chunk_end = |chunk: usize| {
            (chunk / per) * seg_len + ((chunk % per + 1) * REDUCE_CHUNK).min(seg_len)
        };
        // Sent: this rank's values (local order) grouped by the rank owning their chunk.
        let lv = dec.local_volume();
        let sites = dec.global_sites(dec.rank());
        let mut tagged: Vec<(usize, usize)> = (0..chains)
            .flat_map(|c| sites.iter().enumerate().map(move |(s, &g)| (c, s, g)))
            .map(|(c, s, g)| (owner(chunk_of(c * v + g)), c * lv + s))
            .collect();
        tagged.sort_by_key(|&(dest, _)| dest);
        let mut counts_out = vec![0; size];
        for &(dest, _) in &tagged {
            counts_out[dest] += 1;
        }
        let send_order = tagged.into_iter().map(|(_, i)| i).collect();
        // Received: the values of this rank's chunks, in the order their ranks send them.
        let my_chunks = owned[dec.rank()].clone();
        let span = match (my_chunks.clone().next(), my_chunks.clone().last()) {
            (Some(a), Some(b)) => chunk_start(a)..chunk_end(b),
            _ => 0..0,
        };
        let base = span.start;
        let mut incoming: Vec<(usize, usize, usize)> = span
            .map(|gv| {
                let (src, s) = dec.locate(gv % v);
                (src, (gv / v) * lv + s, gv - base)
            })
            .collect();
        incoming.sort_unstable();
        let mut counts_in = vec![0; size];
        for &(src, _, _) in &incoming {
            counts_in[src] += 1;
        }
        let place = incoming.into_iter().map(|(_, _, at)| at).collect();
        let chunks = my_chunks
            .map(|k| chunk_start(k) - base..chunk_end(k) - base)
            .collect();
        Ok(OrderedReduction {
            per,
            send_order,
            counts_out,
            counts_in,
            place,
            chunks,
            owned: owned_counts,
        })
    }

    /// The plan as index lists, for a device that moves and sums the values itself (the GPU
    /// boxes' NCCL path): the same moves and the same order of summation.
    pub fn layout(&self) -> ReductionLayout<'_> {
        ReductionLayout {
            send_order: &self.send_order,
            counts_out: &self.counts_out,
            counts_in: &self.counts_in,
            place: &self.place,
            chunks: &self.chunks,
            owned: &self.owned,
        }
    }

    /// Chunks per segment (for [`crate::device::geometry::sum_chunks`]).
    pub fn chunks_per_segment(&self) -> usize {
        self.per
    }

    /// Every chunk's `width` results, in chunk order, on every rank: `local[k]` are this rank's
    /// values (`[chain][local site]`) of the k-th input, and `chunk(k-th inputs' chunk values)`
    /// gives a chunk's `width` results — the single-process per-chunk function.
    pub fn chunk_results(
        &self,
        team: &dyn Team,
        local: &[&[f64]],
        width: usize,
        chunk: impl Fn(&[&[f64]]) -> Vec<f64>,
    ) -> Vec<f64> {
        let k = local.len();
        let send: Vec<f64> = self
            .send_order
            .iter()
            .flat_map(|&i| local.iter().map(move |x| x[i]))
            .collect();
        let scale = |c: &[usize]| c.iter().map(|&n| n * k).collect::<Vec<_>>();
        let got = team.all_to_all(&send, &scale(&self.counts_out), &scale(&self.counts_in));
        let span = self.chunks.last().map_or(0, |c| c.end);
        let mut ordered = vec![vec![0.0; span]; k];
        for (&at, vals) in self.place.iter().zip(got.chunks(k.max(1))) {
            for (o, &x) in ordered.iter_mut().zip(vals) {
                o[at] = x;
            }
        }
        let mine: Vec<f64> = self
            .chunks
            .iter()
            .flat_map(|r| {
                let inputs: Vec<&[f64]> = ordered.iter().map(|o| &o[r.clone()]).collect();
                let out = chunk(&inputs);
                debug_assert_eq!(out.len(), width);
                out
            })
            .collect();
        team.all_gather(&mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_tile_the_lattice_once() {
        let lat = Lattice::new(&[4, 6, 2]).unwrap();
        let grid = [2, 3, 1];
        let mut seen = vec![0; lat.volume()];
        for rank in 0..6 {
            let d = Decomposition::new(&lat, &grid, rank, 6).unwrap();
            for g in d.global_sites(rank) {
                seen[g] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let d = Decomposition::new(&lat, &grid, 4, 6).unwrap();
        // Rank 4 = (1, 1, 0): up along axis 1 is (1, 2, 0) = 5, down along 0 is (0, 1, 0) = 1.
        assert_eq!(d.neighbour(1, true), 5);
        assert_eq!(d.neighbour(0, false), 1);
        assert_eq!(d.neighbour(2, true), 4);
        // Box of rank 4 starts at (2, 2, 0).
        assert_eq!(d.global_site(4, 0), 2 * 12 + 2 * 2);
    }

    #[test]
    fn bad_grids_are_refused_with_the_fix() {
        let lat = Lattice::new(&[6, 6]).unwrap();
        let e = Decomposition::new(&lat, &[4, 1], 0, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a multiple"), "{e}");
        let e = Decomposition::new(&lat, &[2, 2], 0, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mpirun -np 4"), "{e}");
        let e = Decomposition::new(&lat, &[2], 0, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1x1"), "{e}");
        assert!(Decomposition::parse_grid("2x0").is_err());
        assert_eq!(Decomposition::parse_grid("1x2x2x1").unwrap(), [1, 2, 2, 1]);
    }
}
