//! CPU reference of shaders/rope.wgsl: rotary position embedding, Hugging Face rotate-half
//! convention, on x (B, T, H, D) at positions offset + t.

use crate::config::Rope;

/// cos and sin tables (positions, D/2) of the default RoPE, inv_freq_i = theta^(−2i/D).
pub fn rope_tables(positions: usize, d: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let inv_freq = (0..d / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / d as f64))
        .collect();
    rope_tables_of(
        positions,
        &Rope {
            inv_freq,
            scale: 1.0,
        },
    )
}

/// cos and sin tables (positions, D/2) of a model's RoPE ([`crate::config::ModelConfig::rope`]):
/// angle = position · inv_freq_i, both times the RoPE's scale; computed in f64.
pub fn rope_tables_of(positions: usize, rope: &Rope) -> (Vec<f32>, Vec<f32>) {
    let half = rope.inv_freq.len();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for inv in &rope.inv_freq {
            let a = p as f64 * inv;
            cos.push((a.cos() * rope.scale) as f32);
            sin.push((a.sin() * rope.scale) as f32);
        }
    }
    (cos, sin)
}

/// Rotates x (B, T, H, D) in place order: `inverse` applies the transpose (the backward pass).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    b: usize,
    t: usize,
    h: usize,
    d: usize,
    offset: usize,
    inverse: bool,
) -> Vec<f32> {
    let half = d / 2;
    let mut y = vec![0f32; x.len()];
    for bi in 0..b {
        for ti in 0..t {
            let pos = offset + ti;
            for hi in 0..h {
                let o = ((bi * t + ti) * h + hi) * d;
                for i in 0..half {
                    let (c, s) = (
                        cos[pos * half + i],
                        if inverse {
                            -sin[pos * half + i]
                        } else {
                            sin[pos * half + i]
                        },
                    );
                    let (x1, x2) = (x[o + i], x[o + i + half]);
                    y[o + i] = x1 * c - x2 * s;
                    y[o + i + half] = x2 * c + x1 * s;
                }
            }
        }
    }
    y
}
