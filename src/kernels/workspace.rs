//! Reusable memory: a pool of activation/gradient buffers keyed by length, and per-thread
//! scratch. After the first step every buffer comes from the pool, so steady-state training
//! allocates nothing per step.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

use super::bf16::Precision;
use super::real::Real;

/// Buffers returned by freed values, handed out again to values of the same length.
#[derive(Debug, Default)]
pub struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>>,
    /// Bytes currently handed out plus held in the pool, and the most ever.
    live_bytes: usize,
    peak_bytes: usize,
}

impl<T: Real> Pool<T> {
    /// A buffer of `len` elements with unspecified contents (the caller overwrites it).
    pub fn take(&mut self, len: usize) -> Vec<T> {
        if let Some(v) = self.free.get_mut(&len).and_then(Vec::pop) {
            return v;
        }
        self.live_bytes += len * std::mem::size_of::<T>();
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
        vec![T::ZERO; len]
    }

    pub fn give(&mut self, v: Vec<T>) {
        self.free.entry(v.len()).or_default().push(v);
    }

    /// Most bytes this pool ever held (activations, gradients and saved statistics).
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }
}

/// Scratch of one worker: im2col columns, their gradient, and partial parameter gradients.
#[derive(Debug, Default)]
pub struct Scratch<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
    pub c: Vec<T>,
    /// bf16 packings of the two operands of this worker's products.
    pub pa: Vec<u32>,
    pub pb: Vec<u32>,
    /// dy in plain bf16 rows on its way to a packed operand (the AMX weight gradient).
    pub pc: Vec<u32>,
    /// fp32 sums of this worker's images that AMX tiles load and store (a conv's weight gradient).
    pub acc: Vec<f32>,
    /// Threads the GEMMs of this worker may use: the pool's threads shared out among the
    /// workers, so more than one only when the batch is smaller than the pool (a forward at
    /// batch 8 on 16 threads: 2 each; sampling a single image: all of them).
    pub gemm_threads: usize,
}

/// `v[..len]`, growing `v` the first time it is too short.
pub fn sized<T: Real>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::ZERO);
    }
    &mut v[..len]
}

/// `len` elements of `v` starting on a 64-byte line (buffers that AMX tiles load and store:
/// a tile row that straddles two lines loads about three times slower), growing `v` the first
/// time it is too short. The same `v` and `len` give the same elements every time.
pub fn sized_aligned<T: Copy + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    let line = 64 / std::mem::size_of::<T>();
    if v.len() < len + line - 1 {
        v.resize(len + line - 1, T::default());
    }
    let start = v.as_ptr().align_offset(64).min(line - 1);
    &mut v[start..start + len]
}

/// Elements per task of [`sum_into_first`].
const SUM_CHUNK: usize = 1 << 13;

/// `partials[0] += partials[1] + ...` element by element, in worker order, in parallel over
/// chunks: how the workers' partial sums of a parallel section (a conv's weight gradient) are
/// reduced. Before, one thread added each worker's into the result in turn, work that grows
/// with the threads while the rest shrinks: the rgb32 model's weight gradients from 16 workers
/// took 58 ms a step that way on a Zen 3, against 16 ms this way on one thread.
pub fn sum_into_first<T: Copy + std::ops::AddAssign + Send + Sync>(partials: &mut [&mut [T]]) {
    let Some((first, rest)) = partials.split_first_mut() else { return };
    let rest: &[&mut [T]] = rest;
    first.par_chunks_mut(SUM_CHUNK).enumerate().for_each(|(i, chunk)| {
        let (at, n) = (i * SUM_CHUNK, chunk.len());
        for p in rest {
            for (d, &v) in chunk.iter_mut().zip(&p[at..at + n]) {
                *d += v;
            }
        }
    });
}

/// Per-worker scratch, one per rayon thread.
#[derive(Debug)]
pub struct Workers<T> {
    pub scratch: Vec<Scratch<T>>,
    /// Scratch every worker reads (e.g. a rearranged weight), filled before a parallel section.
    pub shared: Vec<T>,
    /// A bf16 packing every worker reads (a conv's weights), made before a parallel section.
    pub shared_packed: Vec<u32>,
    /// Arithmetic of the conv and linear products.
    pub precision: Precision,
    /// Most elements of im2col columns built at once: convs run in bands of output rows so a
    /// band's columns stay in the core's cache between im2col and the GEMM that reads them.
    pub column_budget: usize,
    /// Whether fp32 (and f64) 3x3 same-size convs run by Winograd's F(2x2, 3x3) (`winograd/`)
    /// rather than im2col from this many tiles a call on, whatever `MDC_FP32_CONV` says (for
    /// tests and benchmarks: `Some(0)` always, `Some(usize::MAX)` never); `None`, the default,
    /// leaves it to `MDC_FP32_CONV` and `winograd::MIN_TILES`.
    pub winograd_min_tiles: Option<usize>,
}

/// 384 Ki elements (1.5 MiB of f32): measured per 4 images on this machine (1 MiB L2 per core,
/// one thread, fastest of 30), dec1.conv1 (K = 1152, 32x32) forward 4.18 ms unbanded, 3.92 ms at
/// 64 Ki, 3.48 ms at 192 Ki, 3.36 ms at 384 Ki; layers with smaller columns are unchanged.
pub const DEFAULT_COLUMN_BUDGET: usize = 384 * 1024;

impl<T: Real> Workers<T> {
    pub fn new() -> Self {
        let n = rayon::current_num_threads().max(1);
        Workers {
            scratch: (0..n).map(|_| Scratch::default()).collect(),
            shared: Vec::new(),
            shared_packed: Vec::new(),
            precision: Precision::Fp32,
            column_budget: DEFAULT_COLUMN_BUDGET,
            winograd_min_tiles: None,
        }
    }

    pub fn threads(&self) -> usize {
        self.scratch.len()
    }

    /// Splits `batch` images into contiguous chunks, one per worker, and runs `f(images, out,
    /// scratch)` on each in parallel; `out` is the chunk's part of `out` (`per_image` elements per
    /// image). Returns how many workers ran, so callers can reduce their partial results.
    pub fn par_images<F>(&mut self, batch: usize, out: &mut [T], per_image: usize, f: F) -> usize
    where
        F: Fn(Range<usize>, &mut [T], &mut Scratch<T>) + Sync,
    {
        self.par_images2(batch, out, per_image, &mut [], 0, |r, o, _, s| f(r, o, s))
    }

    /// [`Self::par_images`] with a second per-image output.
    pub fn par_images2<F>(
        &mut self,
        batch: usize,
        out: &mut [T],
        per_image: usize,
        out2: &mut [T],
        per_image2: usize,
        f: F,
    ) -> usize
    where
        F: Fn(Range<usize>, &mut [T], &mut [T], &mut Scratch<T>) + Sync,
    {
        let threads = self.threads();
        let chunks = threads.min(batch).max(1);
        // each worker's GEMMs split over its share of the pool (all of it each, as before, split
        // a forward at batch 8 on 16 threads into 8 x 16 tasks of small tiles)
        let gemm_threads = threads.div_ceil(chunks);
        let mut jobs = Vec::with_capacity(chunks);
        let mut rest = &mut out[..batch * per_image];
        let mut rest2 = &mut out2[..batch * per_image2];
        let mut start = 0;
        for (i, s) in self.scratch.iter_mut().take(chunks).enumerate() {
            let len = batch / chunks + usize::from(i < batch % chunks);
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len * per_image);
            rest = tail;
            let (head2, tail2) = std::mem::take(&mut rest2).split_at_mut(len * per_image2);
            rest2 = tail2;
            s.gemm_threads = gemm_threads;
            jobs.push((start..start + len, head, head2, s));
            start += len;
        }
        if chunks == 1 {
            let (r, o, o2, s) = jobs.pop().expect("one job");
            f(r, o, o2, s);
        } else {
            jobs.into_par_iter().for_each(|(r, o, o2, s)| f(r, o, o2, s));
        }
        chunks
    }
}

impl<T: Real> Default for Workers<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workers' partials sum into the first's in worker order, bit for bit as one loop adds
    /// them, over whole chunks and a ragged last one; one partial, or none, is left as it is.
    #[test]
    fn partials_sum_into_the_first_in_worker_order() {
        let len = 2 * SUM_CHUNK + 37;
        // in worker order 1 is lost against 1e8 and the total is 0.75; in any order that adds
        // the two 1e8s first it is 1.75, or 1 from the other end
        let value = |w: usize, i: usize| [1.0f32, 1e8, -1e8, 0.5, 0.25][w] * (1 + i % 7) as f32;
        let mut bufs: Vec<Vec<f32>> = (0..5).map(|w| (0..len).map(|i| value(w, i)).collect()).collect();
        let mut partials: Vec<&mut [f32]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        sum_into_first(&mut partials);
        for (i, &got) in partials[0].iter().enumerate() {
            let want = (1..5).fold(value(0, i), |acc, w| acc + value(w, i));
            assert_eq!(got.to_bits(), want.to_bits(), "element {i}: {got} against {want}");
            assert_eq!(got, 0.75 * (1 + i % 7) as f32, "element {i}: the values do not tell the order");
        }
        let mut one = vec![3.0f32; 5];
        sum_into_first(&mut [one.as_mut_slice()]);
        assert_eq!(one, vec![3.0; 5]);
        sum_into_first::<f32>(&mut []);
    }
}
