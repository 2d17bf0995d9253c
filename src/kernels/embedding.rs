//! The sinusoidal timestep embedding (diffusers convention, shift 0):
//! half = dim / 2, freq_i = exp(-ln(10000) * i / half), out = [sin(t * freq), cos(t * freq)].
//! No backward: the timestep is data, not a parameter.

use crate::kernels::real::Real;

pub fn forward<T: Real>(dim: usize, t: &[T], y: &mut [T]) {
    let half = dim / 2;
    for (row, &tv) in y.chunks_exact_mut(dim).zip(t) {
        for i in 0..half {
            let freq = (-(10000f64.ln()) * i as f64 / half as f64).exp();
            let arg = tv.to_f64() * freq;
            row[i] = T::from_f64(arg.sin());
            row[half + i] = T::from_f64(arg.cos());
        }
    }
}
