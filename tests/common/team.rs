//! A team of threads of one process, exchanging messages through shared mailboxes: the
//! production run's MPI paths (ensembles and domain decomposition) exercised without MPI.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use latticeml::ensemble::Team;

/// One FIFO queue per (sender, receiver) pair.
struct Mailboxes {
    queues: Mutex<Vec<VecDeque<Vec<f64>>>>,
    arrived: Condvar,
}

/// One rank of a team of threads.
pub struct ThreadTeam {
    rank: usize,
    size: usize,
    boxes: Arc<Mailboxes>,
}

/// The `size` ranks of a new team, to be moved into one thread each.
pub fn thread_team(size: usize) -> Vec<ThreadTeam> {
    let boxes = Arc::new(Mailboxes {
        queues: Mutex::new(vec![VecDeque::new(); size * size]),
        arrived: Condvar::new(),
    });
    (0..size)
        .map(|rank| ThreadTeam {
            rank,
            size,
            boxes: boxes.clone(),
        })
        .collect()
}

impl ThreadTeam {
    fn send(&self, to: usize, data: &[f64]) {
        let mut q = self.boxes.queues.lock().unwrap();
        q[self.rank * self.size + to].push_back(data.to_vec());
        self.boxes.arrived.notify_all();
    }

    fn recv(&self, from: usize) -> Vec<f64> {
        let mut q = self.boxes.queues.lock().unwrap();
        loop {
            if let Some(m) = q[from * self.size + self.rank].pop_front() {
                return m;
            }
            q = self.boxes.arrived.wait(q).unwrap();
        }
    }
}

impl Team for ThreadTeam {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn gather(&self, local: &[f64]) -> Option<Vec<f64>> {
        if self.rank != 0 {
            self.send(0, local);
            return None;
        }
        let mut all = local.to_vec();
        for r in 1..self.size {
            all.extend(self.recv(r));
        }
        Some(all)
    }
    fn all_ok(&self, ok: bool) -> bool {
        self.all_gather(&[f64::from(u8::from(ok))])
            .iter()
            .all(|&x| x == 1.0)
    }
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        for r in 0..self.size {
            self.send(r, local);
        }
        (0..self.size).flat_map(|r| self.recv(r)).collect()
    }
    fn exchange(
        &self,
        send: &[f64],
        to: usize,
        recv: &mut [f64],
        from: usize,
    ) -> latticeml::Result<()> {
        self.send(to, send);
        let got = self.recv(from);
        latticeml::ensemble::check_message(got.len(), recv.len())?;
        recv.copy_from_slice(&got);
        Ok(())
    }
    fn all_to_all(&self, send: &[f64], counts_out: &[usize], counts_in: &[usize]) -> Vec<f64> {
        let mut at = 0;
        for (r, &n) in counts_out.iter().enumerate() {
            self.send(r, &send[at..at + n]);
            at += n;
        }
        (0..self.size)
            .flat_map(|r| {
                let m = self.recv(r);
                assert_eq!(m.len(), counts_in[r], "rank {} from {r}", self.rank);
                m
            })
            .collect()
    }
}
