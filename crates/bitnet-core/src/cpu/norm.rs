//! CPU reference of shaders/rmsnorm.wgsl (Hugging Face formula, f32 storage, f64 sums):
//! y = x · rsqrt(mean(x²) + eps) · g over the last dimension of x (rows, C).

/// The mean over `rows` of each row's RMS, sqrt(mean(x²)), of x (·, C): what an RMSNorm placed on
/// x needs as its gain for its output to keep x's scale on average (a calibrated start).
pub fn mean_rms(x: &[f32], c: usize, rows: &[usize]) -> f32 {
    let sum: f64 = rows
        .iter()
        .map(|&r| {
            let row = &x[r * c..(r + 1) * c];
            (row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c as f64).sqrt()
        })
        .sum();
    (sum / rows.len().max(1) as f64) as f32
}

/// Returns (y, rstd per row).
pub fn rmsnorm_forward(x: &[f32], g: &[f32], eps: f32, c: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / c;
    let mut y = vec![0f32; x.len()];
    let mut rstd = vec![0f32; rows];
    for r in 0..rows {
        let row = &x[r * c..(r + 1) * c];
        let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c as f64;
        let s = (1.0 / (ms + eps as f64).sqrt()) as f32;
        rstd[r] = s;
        for i in 0..c {
            y[r * c + i] = row[i] * s * g[i];
        }
    }
    (y, rstd)
}

/// Returns (dx, dg) for upstream dy.
pub fn rmsnorm_backward(
    x: &[f32],
    g: &[f32],
    rstd: &[f32],
    dy: &[f32],
    c: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / c;
    let mut dx = vec![0f32; x.len()];
    let mut dg = vec![0f64; c];
    for r in 0..rows {
        let s = rstd[r] as f64;
        let o = r * c;
        let dot: f64 = (0..c)
            .map(|i| g[i] as f64 * dy[o + i] as f64 * x[o + i] as f64)
            .sum();
        for i in 0..c {
            dx[o + i] = (s * g[i] as f64 * dy[o + i] as f64
                - x[o + i] as f64 * s * s * s * dot / c as f64) as f32;
            dg[i] += dy[o + i] as f64 * x[o + i] as f64 * s;
        }
    }
    (dx, dg.into_iter().map(|v| v as f32).collect())
}
