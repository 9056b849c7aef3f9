//! Plain CPU references of every GPU kernel (f64 accumulation where it matters). They define the
//! numerics the WGSL kernels are tested against, and are checked against finite differences.

// The references index like the formulas they implement; iterator rewrites would hide the math.
#![allow(clippy::needless_range_loop)]

pub mod attention;
pub mod embedding;
pub mod kl;
pub mod matmul;
pub mod model;
pub mod norm;
pub mod optim;
pub mod rope;
pub mod swiglu;
pub mod xent;

#[cfg(test)]
mod grad_check;

/// `|a − b| ≤ atol + rtol·|b|` over two slices: (max abs diff, max rel diff, first bad index).
pub fn compare(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> (f32, f32, Option<usize>) {
    let mut max_abs = 0f32;
    let mut max_rel = 0f32;
    let mut first_bad = if got.len() != want.len() {
        Some(got.len().min(want.len()))
    } else {
        None
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let bad = d.is_nan() || d > atol + rtol * w.abs();
        max_abs = max_abs.max(if d.is_nan() { f32::INFINITY } else { d });
        if w != 0.0 {
            max_rel = max_rel.max(d / w.abs());
        }
        if bad && first_bad.is_none() {
            first_bad = Some(i);
        }
    }
    (max_abs, max_rel, first_bad)
}
