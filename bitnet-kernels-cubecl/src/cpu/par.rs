//! Splitting output rows across the current rayon pool.

use rayon::prelude::*;

/// A pointer the row bands write through; each band owns a disjoint set of output elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

// SAFETY: bands write disjoint elements (see `par_rows`), and the buffer outlives the parallel scope.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(y: &mut [f32]) -> Self {
        Self(y.as_mut_ptr())
    }

    /// Writes `y[i] = v`.
    ///
    /// # Safety
    /// `i` is in bounds of the buffer given to [`SharedOut::new`] and no other band writes it.
    #[inline]
    pub(crate) unsafe fn write(self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

/// Calls `band(rows)` for bands of at most `band_rows` rows covering `0..n`, in parallel on the current pool.
pub(crate) fn par_rows(n: usize, band_rows: usize, band: impl Fn(std::ops::Range<usize>) + Sync) {
    let bands = n.div_ceil(band_rows);
    (0..bands)
        .into_par_iter()
        .for_each(|b| band(b * band_rows..((b + 1) * band_rows).min(n)));
}

/// Rows per band: small enough that every thread gets several bands, large enough to amortize scheduling.
pub(crate) fn band_rows(n: usize, max: usize) -> usize {
    let per_thread = n.div_ceil(4 * rayon::current_num_threads());
    per_thread.clamp(1, max)
}
