//! Ternary weight quantizers (DESIGN.md §2), the CPU reference that every GPU kernel is tested
//! against. A tensor W becomes codes q ∈ {−1, 0, +1} and one f32 scale, with Q(W) = scale · q.
//!
//! Sums run in f64 so that the reference is as close to the exact mean as we can make it; the GPU
//! reduces in f32 and is compared with a tolerance.

use std::fmt;
use std::str::FromStr;

/// Lower bound of the absmean scale γ (as in the BitNet b1.58 paper's code).
pub const ABSMEAN_EPS: f32 = 1e-5;
/// Default threshold ratio r of the `threshold` quantizer (the seed's export value).
pub const DEFAULT_THRESHOLD_RATIO: f32 = 0.7;
/// The largest threshold ratio accepted: Δ = r·mean|W| above 3·mean|W| zeroes almost every weight.
pub const MAX_THRESHOLD_RATIO: f32 = 3.0;

/// How the `threshold` quantizer picks its scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// Mean of |W| over the non-zero codes: the least-squares optimum.
    Optimal,
    /// mean|W| over the whole tensor: the seed's `compress()`.
    Absmean,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Quantizer {
    #[default]
    /// γ = max(mean|W|, 1e-5); q = clamp(round_half_even(W/γ), −1, 1); scale γ.
    Absmean,
    /// Δ = r·mean|W|; q = sign(W)·[|W| > Δ]; scale per `scale`.
    Threshold { ratio: f32, scale: ScaleMode },
}

impl Quantizer {
    pub fn name(&self) -> &'static str {
        match self {
            Quantizer::Absmean => "absmean",
            Quantizer::Threshold { .. } => "threshold",
        }
    }
}

impl fmt::Display for ScaleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScaleMode::Optimal => "optimal",
            ScaleMode::Absmean => "absmean",
        })
    }
}

impl FromStr for ScaleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "optimal" => Ok(ScaleMode::Optimal),
            "absmean" => Ok(ScaleMode::Absmean),
            _ => Err(format!(
                "unknown scale mode `{s}`; expected optimal or absmean"
            )),
        }
    }
}

/// Statistics a quantizer needs, from one pass (sum |W|) and, for `threshold`, a second pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantStats {
    /// mean |W| over the whole tensor.
    pub mean_abs: f32,
    /// The quantity W is divided by (`absmean`: γ) or compared with (`threshold`: Δ).
    pub cut: f32,
    /// The scale of the ternary tensor: Q(W) = scale · q.
    pub scale: f32,
}

/// Codes and scale of one ternary tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Ternary {
    /// q ∈ {−1, 0, +1}, row-major like W.
    pub codes: Vec<i8>,
    pub scale: f32,
}

impl Ternary {
    /// Q(W) = scale · q.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes.iter().map(|&q| self.scale * q as f32).collect()
    }
    /// Fraction of zero codes.
    pub fn sparsity(&self) -> f64 {
        if self.codes.is_empty() {
            return 0.0;
        }
        self.codes.iter().filter(|&&q| q == 0).count() as f64 / self.codes.len() as f64
    }
}

fn mean_abs(w: &[f32]) -> f32 {
    if w.is_empty() {
        return 0.0;
    }
    (w.iter().map(|&x| x.abs() as f64).sum::<f64>() / w.len() as f64) as f32
}

/// The threshold Δ = r · mean|W|, computed in f32 exactly as the GPU does.
pub fn threshold_cut(ratio: f32, mean_abs: f32) -> f32 {
    ratio * mean_abs
}

/// The code of one weight given the quantizer and its cut (γ or Δ).
#[inline]
pub fn code(q: &Quantizer, w: f32, cut: f32) -> i8 {
    match q {
        Quantizer::Absmean => (w / cut).round_ties_even().clamp(-1.0, 1.0) as i8,
        Quantizer::Threshold { .. } => {
            if w.abs() > cut {
                if w > 0.0 { 1 } else { -1 }
            } else {
                0
            }
        }
    }
}

impl Quantizer {
    /// Statistics of W: mean|W|, the cut and the scale.
    pub fn stats(&self, w: &[f32]) -> QuantStats {
        let m = mean_abs(w);
        match *self {
            Quantizer::Absmean => {
                let g = m.max(ABSMEAN_EPS);
                QuantStats {
                    mean_abs: m,
                    cut: g,
                    scale: g,
                }
            }
            Quantizer::Threshold { ratio, scale } => {
                let cut = threshold_cut(ratio, m);
                let scale = match scale {
                    ScaleMode::Absmean => m,
                    ScaleMode::Optimal => {
                        let (sum, n) = w
                            .iter()
                            .filter(|x| x.abs() > cut)
                            .fold((0f64, 0u64), |(s, n), x| (s + x.abs() as f64, n + 1));
                        // No weight above the cut means every code is 0: any scale is optimal.
                        if n == 0 {
                            m.max(ABSMEAN_EPS)
                        } else {
                            (sum / n as f64) as f32
                        }
                    }
                };
                QuantStats {
                    mean_abs: m,
                    cut,
                    scale,
                }
            }
        }
    }

    /// Codes of W given precomputed statistics (lets tests reuse a GPU's statistics).
    pub fn codes_with(&self, w: &[f32], stats: &QuantStats) -> Vec<i8> {
        w.iter().map(|&x| code(self, x, stats.cut)).collect()
    }

    /// Quantizes W to codes and scale.
    pub fn quantize(&self, w: &[f32]) -> Ternary {
        let stats = self.stats(w);
        Ternary {
            codes: self.codes_with(w, &stats),
            scale: stats.scale,
        }
    }
}

/// The λ blend used in training: W + λ·(Q(W) − W).
pub fn blend(w: &[f32], q: &Ternary, lambda: f32) -> Vec<f32> {
    w.iter()
        .zip(&q.codes)
        .map(|(&x, &c)| x + lambda * (q.scale * c as f32 - x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_check_vector_threshold_absmean_scale() {
        let q = Quantizer::Threshold {
            ratio: 0.7,
            scale: ScaleMode::Absmean,
        };
        let t = q.quantize(&[1.0, -1.0, 0.0, 0.5, 2.0]);
        assert_eq!(t.codes, vec![1, -1, 0, 0, 1]);
        assert!((t.scale - 0.9).abs() < 1e-7);
    }

    #[test]
    fn threshold_optimal_scale_is_mean_of_selected() {
        let q = Quantizer::Threshold {
            ratio: 0.7,
            scale: ScaleMode::Optimal,
        };
        let t = q.quantize(&[1.0, -1.0, 0.0, 0.5, 2.0]);
        assert!((t.scale - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn absmean_rounds_half_to_even() {
        // mean|W| = 1 → γ = 1; 0.5 rounds to 0, −0.5 to −0, 1.5 to 2 → clamped to 1.
        let t = Quantizer::Absmean.quantize(&[0.5, -0.5, 1.5, -1.0, 0.0, 2.0]);
        assert_eq!(t.scale, 0.9166667);
        let t2 = Quantizer::Absmean.quantize(&[0.5, -0.5, 1.0, -1.0]);
        assert_eq!(t2.scale, 0.75);
        assert_eq!(t2.codes, vec![1, -1, 1, -1]);
        let t3 = Quantizer::Absmean.quantize(&[1.0, -1.0, 0.5, 1.5]);
        assert_eq!(t3.scale, 1.0);
        assert_eq!(t3.codes, vec![1, -1, 0, 1]);
    }

    #[test]
    fn absmean_scale_has_a_floor() {
        let t = Quantizer::Absmean.quantize(&[0.0; 8]);
        assert_eq!(t.scale, ABSMEAN_EPS);
        assert!(t.codes.iter().all(|&c| c == 0));
    }

    #[test]
    fn blend_ends() {
        let w = [0.3f32, -0.9, 0.05];
        let q = Quantizer::Absmean.quantize(&w);
        assert_eq!(blend(&w, &q, 0.0), w.to_vec());
        let full = blend(&w, &q, 1.0);
        for (a, b) in full.iter().zip(q.dequantize()) {
            assert!((a - b).abs() < 1e-7);
        }
    }
}
