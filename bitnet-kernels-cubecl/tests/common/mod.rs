//! What the kernel tests share: a small deterministic generator (tests must not depend on a platform RNG).
#![allow(dead_code)]

/// A 64-bit linear congruential generator.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31-bit value.
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// -1, 0 or 1.
    pub fn trit(&mut self) -> i8 {
        (self.next() % 3) as i8 - 1
    }

    /// Uniform in [-1, 1].
    pub fn uniform(&mut self) -> f32 {
        self.next() as f32 / u32::MAX as f32 * 2.0 - 1.0
    }

    /// Heavy-tailed values so some tokens have outliers and others quantize to many zeros.
    pub fn heavy(&mut self) -> f32 {
        let u = self.uniform();
        if self.next().is_multiple_of(50) {
            u * 40.0
        } else {
            u
        }
    }
}
