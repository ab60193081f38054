//! Splitting output rows across threads: as many bands as the current rayon pool has threads (the `-t`
//! setting), run on the spinning [`super::pool`].

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// A pointer the row bands write through; each band owns a disjoint set of output elements.
pub(crate) struct SharedOut<T = f32>(*mut T);

impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedOut<T> {}

// SAFETY: bands write disjoint elements (see `par_bands`), and the buffer outlives the parallel scope.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    pub(crate) fn new(y: &mut [T]) -> Self {
        Self(y.as_mut_ptr())
    }

    /// The start of `y`'s allocation for `len` values that the bands write in full before the caller sets the
    /// length ([`Vec::set_len`]). Up to [`WARM_OUTPUT`] bytes (a decode step's outputs) the values are zeroed
    /// first, which leaves their lines in this core's cache: decode ran ~5% slower without it. Larger outputs (a
    /// prefill's, megabytes) are not: zeroing them was a serial pass over memory the bands then overwrite, and
    /// pp512 ran ~7% faster without it (`bitnet bench -p 512`, 4 alternating pairs).
    pub(crate) fn output(y: &mut Vec<T>, len: usize) -> Self
    where
        T: Copy + Default,
    {
        if len * std::mem::size_of::<T>() <= WARM_OUTPUT {
            y.resize(len, T::default());
        } else {
            y.reserve(len);
        }
        Self(y.as_mut_ptr())
    }

    /// Writes `y[i] = v`.
    ///
    /// # Safety
    /// `i` is in bounds of the buffer given to [`SharedOut::new`] (the allocation, for [`SharedOut::output`]) and
    /// no other band writes it.
    #[inline]
    pub(crate) unsafe fn write(self, i: usize, v: T) {
        *self.0.add(i) = v;
    }

    /// `y[start..start + len]` as memory to write: for a buffer from [`SharedOut::output`], whose values are not
    /// yet initialized.
    ///
    /// # Safety
    /// The range is in bounds of the buffer's allocation and no other band touches it while the slice lives.
    #[inline]
    pub(crate) unsafe fn uninit<'a>(self, start: usize, len: usize) -> &'a mut [MaybeUninit<T>] {
        std::slice::from_raw_parts_mut(self.0.add(start).cast(), len)
    }

    /// `y[start..start + len]` zeroed, for a writer that needs initialized values: of a buffer from
    /// [`SharedOut::output`], zeroed by the band that writes it, in its own cache, rather than in one serial pass.
    ///
    /// # Safety
    /// As [`SharedOut::uninit`].
    #[inline]
    pub(crate) unsafe fn zeroed<'a>(self, start: usize, len: usize) -> &'a mut [T]
    where
        T: Copy + Default,
    {
        let y = self.uninit(start, len);
        y.fill(MaybeUninit::new(T::default()));
        // SAFETY: every value was just written.
        std::slice::from_raw_parts_mut(y.as_mut_ptr().cast(), len)
    }

    /// `y[start..start + len]`.
    ///
    /// # Safety
    /// The range is in bounds of the buffer given to [`SharedOut::new`] and no other band touches it while
    /// the slice lives.
    #[inline]
    pub(crate) unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Most bytes of output [`SharedOut::output`] zeroes before the bands write it (half a 2 MiB L2).
const WARM_OUTPUT: usize = 1 << 20;

/// Share of the rows [`par_bands`] hands out as one band per thread (the rest are claimed in pieces).
const BANDED: (usize, usize) = (3, 4);
/// Pieces per thread the unbanded rows are cut into.
const PIECES: usize = 8;

/// Calls `band(rows)` in parallel across the current rayon pool (the `-t` setting), boundaries on multiples of
/// `align` rows: first one contiguous band per thread over [`BANDED`] of `0..n`, then the rest in small pieces
/// claimed by whichever thread is free. One band per thread makes each thread's weight reads one sequential
/// stream that the hardware prefetcher follows: the 2B-4T GEMVs ran 1.45× faster than with 16-row bands handed
/// out by work stealing (`cargo bench --bench kernels`, 2 threads). Equal fixed bands left a thread waiting for
/// the other, slowed by a neighbour on a shared machine or by memory it reaches slower, for 24% of a 2-thread
/// decode step; claiming the last quarter in pieces made decode 11% faster (`bitnet bench -p 1 -n 64`).
pub(crate) fn par_bands(n: usize, align: usize, band: impl Fn(Range<usize>) + Sync) {
    bands_and_pieces(n, align, PIECES, band)
}

/// [`par_bands`] with the rest of the rows in one piece per thread, for work that pays a setup per call of
/// `band` (the table-lookup prefill builds its tables for each call's rows): in [`PIECES`] pieces per thread, a
/// matmul's last quarter came in calls of 40-110 rows, over which a table is read too few times to pay for its
/// building, and forced-AVX2 pp128 ran 104 tok/s against 120 in one piece (3 alternating rounds, 2 threads).
pub(crate) fn par_bands_coarse(n: usize, align: usize, band: impl Fn(Range<usize>) + Sync) {
    bands_and_pieces(n, align, 1, band)
}

/// [`par_bands`] with the unbanded rows in `pieces` pieces per thread.
fn bands_and_pieces(n: usize, align: usize, pieces: usize, band: impl Fn(Range<usize>) + Sync) {
    let align = align.max(1);
    let threads = rayon::current_num_threads().min(n.div_ceil(align)).max(1);
    if threads == 1 {
        return band(0..n);
    }
    let per = n * BANDED.0 / BANDED.1 / threads / align * align;
    let banded = per * threads;
    let piece = (n - banded)
        .div_ceil(threads * pieces)
        .next_multiple_of(align);
    let next = AtomicUsize::new(banded);
    super::pool::run(threads, &|t| {
        if per > 0 {
            band(t * per..(t + 1) * per);
        }
        claim(&next, n, piece, &band);
    });
}

/// Calls `band` on consecutive pieces of `size` rows from `next` up to `n`, claiming each as this thread comes
/// free.
fn claim(next: &AtomicUsize, n: usize, size: usize, band: &impl Fn(Range<usize>)) {
    loop {
        let start = next.fetch_add(size, Relaxed);
        if start >= n {
            break;
        }
        band(start..(start + size).min(n));
    }
}

/// Calls `band(rows)` on consecutive bands of `size` rows of `0..n`, each thread of the current rayon pool
/// claiming the next band as it comes free. For work of unequal cost that reads no long weight stream
/// (attention tiles): with one fixed band per thread, a thread slowed by a neighbour on a shared machine held up
/// the other (12% of a 2-thread pp128 profile was a thread waiting for the other's band).
pub(crate) fn par_claimed(n: usize, size: usize, band: impl Fn(Range<usize>) + Sync) {
    let threads = rayon::current_num_threads().min(n.div_ceil(size));
    let next = AtomicUsize::new(0);
    super::pool::run(threads, &|_| claim(&next, n, size, &band));
}

/// `rows` in consecutive blocks of at most `size` rows: each block's weights stay in cache while every tile of
/// tokens passes over them (prefill).
pub(crate) fn blocks(rows: Range<usize>, size: usize) -> impl Iterator<Item = Range<usize>> {
    let end = rows.end;
    rows.step_by(size).map(move |r| r..(r + size).min(end))
}
