//! The order training visits the data: a fresh seeded shuffle every epoch. Its whole state is
//! (epoch, position), so a checkpoint can store it and a resumed run sees the same batches.

use crate::base::rng::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct DataOrder {
    seed: u64,
    epoch: u64,
    position: usize,
    permutation: Vec<usize>,
}

impl DataOrder {
    pub fn new(len: usize, seed: u64) -> DataOrder {
        DataOrder::restore(len, seed, 0, 0)
    }

    /// The order at `epoch`, `position` (as returned by [`DataOrder::state`]).
    pub fn restore(len: usize, seed: u64, epoch: u64, position: usize) -> DataOrder {
        assert!(len > 0, "cannot order an empty dataset");
        DataOrder { seed, epoch, position: position.min(len), permutation: permutation(len, seed, epoch) }
    }

    /// (epoch, position within the epoch).
    pub fn state(&self) -> (u64, usize) {
        (self.epoch, self.position)
    }

    /// The next `n` indices; a batch that runs past the end of an epoch continues into the next,
    /// freshly shuffled one.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.position == self.permutation.len() {
                self.epoch += 1;
                self.position = 0;
                self.permutation = permutation(self.permutation.len(), self.seed, self.epoch);
            }
            out.push(self.permutation[self.position]);
            self.position += 1;
        }
        out
    }
}

/// The shuffle for one epoch, from its own generator so any epoch can be rebuilt directly.
fn permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0xDA7A_0000_0000_0000 ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut p: Vec<usize> = (0..len).collect();
    rng.shuffle(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_new_permutation_and_state_restores() {
        let mut o = DataOrder::new(10, 3);
        let e0 = o.next_batch(10);
        let e1 = o.next_batch(10);
        let mut s0 = e0.clone();
        s0.sort();
        assert_eq!(s0, (0..10).collect::<Vec<_>>());
        assert_ne!(e0, e1);
        let a = o.next_batch(4);
        let (epoch, pos) = o.state();
        assert_eq!((epoch, pos), (2, 4));
        let mut r = DataOrder::restore(10, 3, epoch, pos);
        assert_eq!(o.next_batch(13), r.next_batch(13));
        assert_ne!(a, DataOrder::new(10, 4).next_batch(4));
    }
}
