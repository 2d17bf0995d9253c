//! The transforms of Winograd's F(2x2, 3x3) (see `mod.rs`): of the kernels (G g G^T and back,
//! once a step) and of a band's tiles (B^T d B, A^T M A and their gradients, per channel).
//!
//! The tile transforms take a tile row at a time: its image rows split into the tiles' columns,
//! then chunks of tiles whose values stay in registers (`by_chunks!`). They are always inlined
//! into their `call_with_avx2!` wrappers, so that they compile for 8 lanes and FMA. Laid out
//! over one tile row's 4 to 16 tiles in plain loops, they had run in LLVM's scalar remainder
//! loops and taken half the convs' time.

use crate::kernels::conv_geom::ConvGeom;
use crate::kernels::real::Real;

/// Elements of a transformed 4x4 tile.
pub(super) const XI: usize = 16;

/// Tile rows and tiles per tile row of one image.
pub(super) fn tiles(g: &ConvGeom) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// U[xi, co, ci] = (G g G^T)[xi] for each kernel g = weight[co, ci], or U^T[xi, ci, co] where
/// `transposed` (the input gradient's products take it so: `gemm` runs a transposed left operand
/// 5-17 % slower at these shapes, `cargo bench --bench gemm_shapes` on a 2-core AMD EPYC Zen 3).
pub(super) fn transform_weights<T: Real>(g: &ConvGeom, weight: &[T], u: &mut [T], transposed: bool) {
    let (cin, cout) = (g.cin, g.cout);
    let half = T::from_f64(0.5);
    // (g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2): G applied to a column or row of 3
    let expand = |a: T, b: T, c: T| [a, half * (a + b + c), half * (a - b + c), c];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &weight[(co * cin + ci) * 9..][..9];
            let cols: [[T; 4]; 3] = std::array::from_fn(|ky| expand(k[ky * 3], k[ky * 3 + 1], k[ky * 3 + 2]));
            // G down the columns of the expanded rows: expanded[l][kk] is element (kk, l)
            let expanded: [[T; 4]; 4] = std::array::from_fn(|l| expand(cols[0][l], cols[1][l], cols[2][l]));
            for (l, column) in expanded.iter().enumerate() {
                for (kk, &v) in column.iter().enumerate() {
                    let xi = kk * 4 + l;
                    let at =
                        if transposed { (xi * cin + ci) * cout + co } else { (xi * cout + co) * cin + ci };
                    u[at] = v;
                }
            }
        }
    }
}

/// dweight[co, ci] += G^T dU G, with dU[xi] read from `dut` [xi, ci, co].
pub(super) fn add_weight_grad<T: Real>(g: &ConvGeom, dut: &[T], dweight: &mut [T]) {
    let (cin, cout) = (g.cin, g.cout);
    let half = T::from_f64(0.5);
    // G^T applied to 4 values: (u0 + (u1+u2)/2, (u1-u2)/2, (u1+u2)/2 + u3)
    let reduce = |u: [T; 4]| {
        let (s, d) = (half * (u[1] + u[2]), half * (u[1] - u[2]));
        [u[0] + s, d, s + u[3]]
    };
    for co in 0..cout {
        for ci in 0..cin {
            let at = |xi: usize| dut[(xi * cin + ci) * cout + co];
            let rows: [[T; 3]; 4] = std::array::from_fn(|k| reduce(std::array::from_fn(|l| at(k * 4 + l))));
            let kernel = &mut dweight[(co * cin + ci) * 9..][..9];
            for b in 0..3 {
                let col = reduce(std::array::from_fn(|k| rows[k][b]));
                for (a, &v) in col.iter().enumerate() {
                    kernel[a * 3 + b] += v;
                }
            }
        }
    }
}

/// `N` disjoint rows of `len` elements of `buf`, at increasing `offsets`.
#[inline(always)]
fn rows_at<T, const N: usize>(buf: &mut [T], offsets: [usize; N], len: usize) -> [&mut [T]; N] {
    let mut out: [&mut [T]; N] = std::array::from_fn(|_| <&mut [T]>::default());
    let (mut rest, mut at) = (buf, 0);
    for (row, &offset) in out.iter_mut().zip(&offsets) {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(offset - at);
        let (head, tail) = tail.split_at_mut(len);
        (*row, rest, at) = (head, tail, offset + len);
    }
    out
}

/// Runs `$body` with `$j` the start and `$n` a constant width of chunks covering `0..$len`:
/// chunks of 8, then one of 4, then single elements. A tile row has only 1 to 16 tiles here,
/// and LLVM's vector loops want 32 elements or more, leaving shorter loops scalar; a chunk of
/// constant width compiles to straight vector code, its tiles' values held in registers.
macro_rules! by_chunks {
    ($len:expr, |$j:ident, $n:ident| $body:expr) => {{
        let len = $len;
        let mut $j = 0;
        while $j + 8 <= len {
            const $n: usize = 8;
            $body;
            $j += 8;
        }
        if $j + 4 <= len {
            const $n: usize = 4;
            $body;
            $j += 4;
        }
        while $j < len {
            const $n: usize = 1;
            $body;
            $j += 1;
        }
    }};
}

/// even[j] = src[2j], odd[j] = src[2j + 1] for j below even.len() (= odd.len()).
#[inline(always)]
fn deinterleave<T: Real>(src: &[T], even: &mut [T], odd: &mut [T]) {
    #[inline(always)]
    fn chunk<T: Real, const N: usize>(src: &[T], even: &mut [T], odd: &mut [T]) {
        let (src, even, odd) = (&src[..2 * N], &mut even[..N], &mut odd[..N]);
        for j in 0..N {
            (even[j], odd[j]) = (src[2 * j], src[2 * j + 1]);
        }
    }
    by_chunks!(even.len(), |j, N| chunk::<T, N>(&src[2 * j..], &mut even[j..], &mut odd[j..]));
}

/// dst[2j] = even[j], dst[2j + 1] = odd[j] for j below even.len() (= odd.len()), or `+=`
/// where ADD.
#[inline(always)]
fn interleave<T: Real, const ADD: bool>(even: &[T], odd: &[T], dst: &mut [T]) {
    #[inline(always)]
    fn chunk<T: Real, const N: usize, const ADD: bool>(even: &[T], odd: &[T], dst: &mut [T]) {
        let (even, odd, dst) = (&even[..N], &odd[..N], &mut dst[..2 * N]);
        for j in 0..N {
            if ADD {
                (dst[2 * j], dst[2 * j + 1]) = (dst[2 * j] + even[j], dst[2 * j + 1] + odd[j]);
            } else {
                (dst[2 * j], dst[2 * j + 1]) = (even[j], odd[j]);
            }
        }
    }
    by_chunks!(even.len(), |j, N| chunk::<T, N, ADD>(&even[j..], &odd[j..], &mut dst[2 * j..]));
}

/// Values of N tiles at once, one per tile.
type Lanes<T, const N: usize> = [T; N];

/// `f` on each of the N tiles' values. (A loop into an array: `std::array::from_fn` and
/// `map` were left as calls here, not inlined, and took 15 % of the conv bench's cycles.)
#[inline(always)]
fn lanes<T: Real, const N: usize>(mut f: impl FnMut(usize) -> T) -> Lanes<T, N> {
    let mut out = [T::ZERO; N];
    for (j, o) in out.iter_mut().enumerate() {
        *o = f(j);
    }
    out
}

/// N values of `row` from `at` on.
#[inline(always)]
fn load<T: Real, const N: usize>(row: &[T], at: usize) -> Lanes<T, N> {
    let row = &row[at..at + N];
    lanes(|j| row[j])
}

/// B^T applied to 4 values: (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
#[inline(always)]
fn b_transposed<T: Real, const N: usize>(d: [&Lanes<T, N>; 4]) -> [Lanes<T, N>; 4] {
    [
        lanes(|j| d[0][j] - d[2][j]),
        lanes(|j| d[1][j] + d[2][j]),
        lanes(|j| d[2][j] - d[1][j]),
        lanes(|j| d[1][j] - d[3][j]),
    ]
}

/// B applied to 4 values: (v0, v1 - v2 + v3, v1 + v2 - v0, -v3).
#[inline(always)]
fn b_plain<T: Real, const N: usize>(v: [&Lanes<T, N>; 4]) -> [Lanes<T, N>; 4] {
    [
        *v[0],
        lanes(|j| v[1][j] - v[2][j] + v[3][j]),
        lanes(|j| v[1][j] + v[2][j] - v[0][j]),
        lanes(|j| -v[3][j]),
    ]
}

/// A^T applied to 4 values: (m0 + m1 + m2, m1 - m2 - m3).
#[inline(always)]
fn a_transposed<T: Real, const N: usize>(m: [&Lanes<T, N>; 4]) -> [Lanes<T, N>; 2] {
    [lanes(|j| m[0][j] + m[1][j] + m[2][j]), lanes(|j| m[1][j] - m[2][j] - m[3][j])]
}

/// A applied to 2 values: (a, a + b, a - b, -b).
#[inline(always)]
fn a_plain<T: Real, const N: usize>(a: &Lanes<T, N>, b: &Lanes<T, N>) -> [Lanes<T, N>; 4] {
    [*a, lanes(|j| a[j] + b[j]), lanes(|j| a[j] - b[j]), lanes(|j| -b[j])]
}

/// A tile's 4x4 values as [row k][column l], N tiles at once.
type TileLanes<T, const N: usize> = [[Lanes<T, N>; 4]; 4];

/// The 4x4 values of N tiles, `at(k, l)` the N tiles' values at row k, column l.
#[inline(always)]
fn tile_lanes<T: Real, const N: usize>(mut at: impl FnMut(usize, usize) -> Lanes<T, N>) -> TileLanes<T, N> {
    let mut d = [[[T::ZERO; N]; 4]; 4];
    for (k, row) in d.iter_mut().enumerate() {
        for (l, values) in row.iter_mut().enumerate() {
            *values = at(k, l);
        }
    }
    d
}

/// `f` applied down each column of the tiles (to the 4 rows' values), then `f` across each row.
#[inline(always)]
fn two_sided<T: Real, const N: usize>(
    d: &TileLanes<T, N>,
    f: impl Fn([&Lanes<T, N>; 4]) -> [Lanes<T, N>; 4],
) -> TileLanes<T, N> {
    let mut down = [[[T::ZERO; N]; 4]; 4];
    for (l, column) in down.iter_mut().enumerate() {
        *column = f([&d[0][l], &d[1][l], &d[2][l], &d[3][l]]);
    }
    let mut out = [[[T::ZERO; N]; 4]; 4];
    for (k, row) in out.iter_mut().enumerate() {
        *row = f([&down[0][k], &down[1][k], &down[2][k], &down[3][k]]);
    }
    out
}

/// The 16 rows of transformed values of channel `c` of `channels` in a band of `tb` tiles laid
/// out [xi, channel, tile].
#[inline(always)]
fn xi_rows<T>(buf: &mut [T], c: usize, channels: usize, tb: usize) -> [&mut [T]; XI] {
    rows_at(buf, std::array::from_fn(|xi| (xi * channels + c) * tb), tb)
}

/// [`xi_rows`], read-only.
#[inline(always)]
fn xi_rows_ref<T>(buf: &[T], c: usize, channels: usize, tb: usize) -> [&[T]; XI] {
    std::array::from_fn(|xi| &buf[(xi * channels + c) * tb..][..tb])
}

/// A tile row's image rows split as its tiles' columns cover them: `left[j]` the column 2j - 1,
/// `right[j]` the column 2j, for j up to tw (the input's 4 rows, each tile's columns 0 to 3
/// being left[tx], right[tx], left[tx + 1], right[tx + 1]), or `left[j]` the column 2j,
/// `right[j]` the column 2j + 1, for j below tw (the output's 2 rows, each tile's columns 0
/// and 1). Split out once, a chunk of tiles reads them with plain vector loads.
type SplitRows<'a, T, const R: usize> = [(&'a mut [T], &'a mut [T]); R];

/// `R` split rows of `len` from `scratch`, [`transform_scratch`] long.
#[inline(always)]
fn split_rows<T, const R: usize>(scratch: &mut [T], len: usize) -> SplitRows<'_, T, R> {
    let mut rows = rows_at::<T, 8>(scratch, std::array::from_fn(|i| i * len), len).into_iter();
    std::array::from_fn(|_| (rows.next().unwrap_or_default(), rows.next().unwrap_or_default()))
}

/// Scratch elements the transforms need besides the bands' values: 4 split rows.
pub(super) fn transform_scratch(g: &ConvGeom) -> usize {
    8 * (tiles(g).1 + 1)
}

/// Image row `y` of `plane` (zero outside the image) split into `left` and `right`, tw + 1
/// long: left[j] = column 2j - 1, right[j] = column 2j, as the input's tiles read it.
#[inline(always)]
fn split_input_row<T: Real>(plane: &[T], w: usize, y: usize, (left, right): (&mut [T], &mut [T])) {
    if y >= plane.len() / w.max(1) {
        left.fill(T::ZERO);
        right.fill(T::ZERO);
        return;
    }
    let row = &plane[y * w..(y + 1) * w];
    let pairs = w / 2;
    deinterleave(&row[..2 * pairs], &mut right[..pairs], &mut left[1..pairs + 1]);
    // the padding: column -1, and the columns from w on
    left[0] = T::ZERO;
    left[pairs + 1..].fill(T::ZERO);
    right[pairs..].fill(T::ZERO);
    if w % 2 == 1 {
        right[pairs] = row[w - 1];
    }
}

/// Image row `y` of `plane` (zero outside the image) split into `left` and `right`, tw long:
/// left[j] = column 2j, right[j] = column 2j + 1, as the output's tiles cover it.
#[inline(always)]
fn split_output_row<T: Real>(plane: &[T], w: usize, y: usize, (left, right): (&mut [T], &mut [T])) {
    let pairs = w / 2;
    if y < plane.len() / w.max(1) {
        let row = &plane[y * w..(y + 1) * w];
        deinterleave(&row[..2 * pairs], &mut left[..pairs], &mut right[..pairs]);
        if w % 2 == 1 {
            (left[pairs], right[pairs]) = (row[w - 1], T::ZERO);
        }
    } else {
        left.fill(T::ZERO);
        right.fill(T::ZERO);
    }
}

/// V = B^T d B for N tiles from tx0 on of one tile row, from its 4 split input rows `d`; `v` the
/// band's 16 rows of V, the tile row's first tile at `t0`.
#[inline(always)]
fn input_tiles<T: Real, const N: usize>(d: &SplitRows<T, 4>, tx0: usize, v: &mut [&mut [T]; XI], t0: usize) {
    let d = tile_lanes::<T, N>(|k, l| {
        let (left, right) = &d[k];
        load(if l % 2 == 0 { left } else { right }, tx0 + l / 2)
    });
    let out = two_sided(&d, b_transposed);
    for (xi, row) in v.iter_mut().enumerate() {
        row[t0 + tx0..t0 + tx0 + N].copy_from_slice(&out[xi / 4][xi % 4]);
    }
}

/// dd = B dV B^T for N tiles from tx0 on of one tile row (`dv` the band's 16 rows of dV, the
/// tile row's first tile at `t0`), summed into the tile row's 4 split rows `d` where the tiles
/// overlap: left[j] gets tile j's column 0 and tile j - 1's column 2, right[j] tile j's column 1
/// and tile j - 1's column 3. `carry` holds the last tile's columns 2 and 3 for the next chunk
/// (or left[tw] and right[tw]).
#[inline(always)]
fn input_grad_tiles<T: Real, const N: usize>(
    dv: &[&[T]; XI],
    (t0, tx0): (usize, usize),
    d: &mut SplitRows<T, 4>,
    carry: &mut [[T; 2]; 4],
) {
    let e = tile_lanes::<T, N>(|k, l| load(dv[k * 4 + l], t0 + tx0));
    let c = two_sided(&e, b_plain);
    for (k, (left, right)) in d.iter_mut().enumerate() {
        let [c0, c1, c2, c3] = &c[k];
        let sum_left = lanes::<T, N>(|j| c0[j] + if j == 0 { carry[k][0] } else { c2[j - 1] });
        let sum_right = lanes::<T, N>(|j| c1[j] + if j == 0 { carry[k][1] } else { c3[j - 1] });
        left[tx0..tx0 + N].copy_from_slice(&sum_left);
        right[tx0..tx0 + N].copy_from_slice(&sum_right);
        carry[k] = [c2[N - 1], c3[N - 1]];
    }
}

/// Y = A^T M A + bias for N tiles from tx0 on of one tile row (`m` the band's 16 rows of M, the
/// tile row's first tile at `t0`), into its 2 split output rows `y`.
#[inline(always)]
fn output_tiles<T: Real, const N: usize>(
    m: &[&[T]; XI],
    (t0, tx0): (usize, usize),
    bias: T,
    y: &mut SplitRows<T, 2>,
) {
    let e = tile_lanes::<T, N>(|k, l| load(m[k * 4 + l], t0 + tx0));
    let mut down = [[[T::ZERO; N]; 2]; 4];
    for (l, column) in down.iter_mut().enumerate() {
        *column = a_transposed([&e[0][l], &e[1][l], &e[2][l], &e[3][l]]);
    }
    for (i, (left, right)) in y.iter_mut().enumerate() {
        let [a, b] = a_transposed([&down[0][i], &down[1][i], &down[2][i], &down[3][i]]);
        left[tx0..tx0 + N].copy_from_slice(&lanes::<T, N>(|j| a[j] + bias));
        right[tx0..tx0 + N].copy_from_slice(&lanes::<T, N>(|j| b[j] + bias));
    }
}

/// dM = A dY A^T for N tiles from tx0 on of one tile row, from its 2 split output-gradient rows
/// `dy`; `dm` the band's 16 rows of dM, the tile row's first tile at `t0`.
#[inline(always)]
fn output_grad_tiles<T: Real, const N: usize>(
    dy: &SplitRows<T, 2>,
    tx0: usize,
    dm: &mut [&mut [T]; XI],
    t0: usize,
) {
    // the tile's values p q / r s
    let [(p, q), (r, s)] = dy;
    let [p, q, r, s] = [&**p, &**q, &**r, &**s].map(|row| load::<T, N>(row, tx0));
    let (left, right) = (a_plain(&p, &r), a_plain(&q, &s));
    for k in 0..4 {
        for (l, values) in a_plain(&left[k], &right[k]).iter().enumerate() {
            dm[k * 4 + l][t0 + tx0..t0 + tx0 + N].copy_from_slice(values);
        }
    }
}

/// A band of tile rows `r0..r1` of a worker's images (row r is tile row r % th of the worker's
/// image r / th) and its values: `tb` tiles, tile row r's from (r - r0) tw on.
#[derive(Clone, Copy)]
pub(super) struct Band {
    pub r0: usize,
    pub r1: usize,
    pub tb: usize,
}

impl Band {
    /// (image within the worker's, tile row within the image, first tile in the band) of each
    /// tile row of the band.
    fn rows(self, g: &ConvGeom) -> impl Iterator<Item = (usize, usize, usize)> {
        let (th, tw) = tiles(g);
        (self.r0..self.r1).map(move |r| (r / th, r % th, (r - self.r0) * tw))
    }
}

/// V[xi, ci, t] = (B^T d B)[xi] for the band's tiles, `x` the worker's images [N, Cin, H, W]
/// (d zero outside the image). `scratch` is [`transform_scratch`].
#[inline(always)]
fn inputs_band<T: Real>(g: &ConvGeom, band: Band, x: &[T], v: &mut [T], scratch: &mut [T]) {
    let (cin, h, w, tb) = (g.cin, g.h, g.w, band.tb);
    let tw = tiles(g).1;
    let mut d = split_rows::<T, 4>(scratch, tw + 1);
    for ci in 0..cin {
        let mut rows = xi_rows(v, ci, cin, tb);
        let mut last = None;
        for (i, ty, t0) in band.rows(g) {
            let plane = &x[i * g.in_len() + ci * h * w..][..h * w];
            // the tile's row k is image row 2ty + k - 1: rows 0 and 1 are the previous tile
            // row's 2 and 3 when it was the one above in the same image
            let first_new = if last == Some((i, ty.wrapping_sub(1))) {
                d.swap(0, 2);
                d.swap(1, 3);
                2
            } else {
                0
            };
            for (k, (left, right)) in d.iter_mut().enumerate().skip(first_new) {
                split_input_row(plane, w, (2 * ty + k).wrapping_sub(1), (left, right));
            }
            by_chunks!(tw, |tx, N| input_tiles::<T, N>(&d, tx, &mut rows, t0));
            last = Some((i, ty));
        }
    }
}

/// y[co, 2ty.., 2tx..] = (A^T M A) + bias[co] for the band's tiles, M[xi, co, t] and `y` the
/// worker's images [N, Cout, H, W]; outputs past the image's edge are dropped. `scratch` is
/// [`transform_scratch`].
#[inline(always)]
fn outputs_band<T: Real>(g: &ConvGeom, band: Band, m: &[T], bias: &[T], y: &mut [T], scratch: &mut [T]) {
    let (cout, h, w, tb) = (g.cout, g.h, g.w, band.tb);
    let tw = tiles(g).1;
    let mut out = split_rows::<T, 2>(scratch, tw);
    let pairs = w / 2;
    for (co, &b) in bias.iter().enumerate().take(cout) {
        let e = xi_rows_ref(m, co, cout, tb);
        for (i, ty, t0) in band.rows(g) {
            by_chunks!(tw, |tx, N| output_tiles::<T, N>(&e, (t0, tx), b, &mut out));
            let plane = &mut y[i * g.out_len() + co * h * w..][..h * w];
            for (row_y, (left, right)) in [2 * ty, 2 * ty + 1].into_iter().zip(&out) {
                if row_y < h {
                    let row = &mut plane[row_y * w..(row_y + 1) * w];
                    interleave::<T, false>(&left[..pairs], &right[..pairs], row);
                    if w % 2 == 1 {
                        row[w - 1] = left[pairs];
                    }
                }
            }
        }
    }
}

/// dM[xi, co, t] = (A dY A^T)[xi] for the band's tiles, `dy` the worker's images
/// [N, Cout, H, W] (zero past the image's edge). `scratch` is [`transform_scratch`].
#[inline(always)]
fn output_grads_band<T: Real>(g: &ConvGeom, band: Band, dy: &[T], dm: &mut [T], scratch: &mut [T]) {
    let (cout, h, w, tb) = (g.cout, g.h, g.w, band.tb);
    let tw = tiles(g).1;
    let mut d = split_rows::<T, 2>(scratch, tw);
    for co in 0..cout {
        let mut rows = xi_rows(dm, co, cout, tb);
        for (i, ty, t0) in band.rows(g) {
            let plane = &dy[i * g.out_len() + co * h * w..][..h * w];
            for (k, (left, right)) in d.iter_mut().enumerate() {
                split_output_row(plane, w, 2 * ty + k, (left, right));
            }
            by_chunks!(tw, |tx, N| output_grad_tiles::<T, N>(&d, tx, &mut rows, t0));
        }
    }
}

/// dx[ci, 2ty-1.., 2tx-1..] += (B dV B^T) for the band's tiles, dV[xi, ci, t] and `dx` the
/// worker's images [N, Cin, H, W]; the parts of a 4x4 tile outside the image (padding) are
/// dropped. `scratch` is [`transform_scratch`].
#[inline(always)]
fn input_grads_band<T: Real>(g: &ConvGeom, band: Band, dv: &[T], dx: &mut [T], scratch: &mut [T]) {
    let (cin, h, w, tb) = (g.cin, g.h, g.w, band.tb);
    let tw = tiles(g).1;
    let mut d = split_rows::<T, 4>(scratch, tw + 1);
    let pairs = w / 2;
    for ci in 0..cin {
        let e = xi_rows_ref(dv, ci, cin, tb);
        for (i, ty, t0) in band.rows(g) {
            let mut carry = [[T::ZERO; 2]; 4];
            by_chunks!(tw, |tx, N| input_grad_tiles::<T, N>(&e, (t0, tx), &mut d, &mut carry));
            let plane = &mut dx[i * g.in_len() + ci * h * w..][..h * w];
            for (k, ((left, right), last)) in d.iter_mut().zip(carry).enumerate() {
                // the tile's row k is image row 2ty + k - 1; left[j] is column 2j - 1, right[j]
                // column 2j
                let row_y = (2 * ty + k).wrapping_sub(1);
                if row_y < h {
                    (left[tw], right[tw]) = (last[0], last[1]);
                    let row = &mut plane[row_y * w..(row_y + 1) * w];
                    interleave::<T, true>(&right[..pairs], &left[1..pairs + 1], row);
                    if w % 2 == 1 {
                        row[w - 1] += right[pairs];
                    }
                }
            }
        }
    }
}

/// [`inputs_band`], compiled for AVX2 and FMA where the CPU has them.
pub(super) fn inputs<T: Real>(g: &ConvGeom, band: Band, x: &[T], v: &mut [T], scratch: &mut [T]) {
    crate::kernels::call_with_avx2!(inputs_band::<T>(g: &ConvGeom, band: Band, x: &[T], v: &mut [T], scratch: &mut [T]))
}

/// [`outputs_band`], compiled for AVX2 and FMA where the CPU has them.
pub(super) fn outputs<T: Real>(
    g: &ConvGeom,
    band: Band,
    m: &[T],
    bias: &[T],
    y: &mut [T],
    scratch: &mut [T],
) {
    crate::kernels::call_with_avx2!(outputs_band::<T>(
        g: &ConvGeom,
        band: Band,
        m: &[T],
        bias: &[T],
        y: &mut [T],
        scratch: &mut [T],
    ))
}

/// [`output_grads_band`], compiled for AVX2 and FMA where the CPU has them.
pub(super) fn output_grads<T: Real>(g: &ConvGeom, band: Band, dy: &[T], dm: &mut [T], scratch: &mut [T]) {
    crate::kernels::call_with_avx2!(output_grads_band::<T>(g: &ConvGeom, band: Band, dy: &[T], dm: &mut [T], scratch: &mut [T]))
}

/// [`input_grads_band`], compiled for AVX2 and FMA where the CPU has them.
pub(super) fn input_grads<T: Real>(g: &ConvGeom, band: Band, dv: &[T], dx: &mut [T], scratch: &mut [T]) {
    crate::kernels::call_with_avx2!(input_grads_band::<T>(g: &ConvGeom, band: Band, dv: &[T], dx: &mut [T], scratch: &mut [T]))
}
