//! NEOX (rotate-half) rotary embedding of one head vector on the CPU.

/// Rotates `x` (one head, `d` values) by the angles of its position, `cos` and `sin` (`half` values each):
/// `out[i] = x[i]·cos − x[i + half]·sin`, `out[i + half] = x[i + half]·cos + x[i]·sin`, the dimensions from
/// `2·half` on copied (the products and the sum in the order of the Burn-ops definition).
pub fn rope_row(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    assert!(sin.len() == half && 2 * half <= x.len() && out.len() == x.len());
    let (x1, rest) = x.split_at(half);
    let (x2, pass) = rest.split_at(half);
    let (o1, rest) = out.split_at_mut(half);
    let (o2, out_pass) = rest.split_at_mut(half);
    for i in 0..half {
        o1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        o2[i] = x2[i] * cos[i] + x1[i] * sin[i];
    }
    out_pass.copy_from_slice(pass);
}
