//! The GPU quantization kernel checked against the CPU reference. One body serves the native test
//! (lavapipe), the browser test (headless Chromium's WebGPU) and anyone who wants to check an
//! adapter. Comparison rule (STYLE.md): |gpu − cpu| ≤ atol + rtol·|cpu|, reporting the max
//! difference and the first bad index.

use bitnet_core::pack::{Packing, pack, unpack};
use bitnet_core::quant::{Quantizer, ScaleMode};

use crate::device::Gpu;

/// Statistics are f32 tree sums on the GPU and f64 sums on the CPU; over 10⁶ terms an f32 tree
/// reduction stays well inside 1e-5 relative.
const STATS_RTOL: f32 = 1e-5;
const STATS_ATOL: f32 = 1e-8;

/// A small deterministic generator (xorshift64*), so GPU tests need no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal (Irwin–Hall of 4), scaled.
    pub fn normal(&mut self, std: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0;
        s * std * 1.732
    }
}

fn close(gpu: f32, cpu: f32) -> bool {
    (gpu - cpu).abs() <= STATS_ATOL + STATS_RTOL * cpu.abs()
}

/// Whether `w` lies so near a decision boundary that f32 rounding of the statistics may flip it.
fn near_boundary(q: &Quantizer, w: f32, cut: f32) -> bool {
    match q {
        Quantizer::Absmean => ((w / cut).abs() - 0.5).abs() < 1e-4,
        Quantizer::Threshold { .. } => (w.abs() - cut).abs() <= 1e-4 * cut,
    }
}

/// Checks one tensor; returns a line describing the comparison.
pub async fn check_tensor(
    gpu: &Gpu,
    label: &str,
    w: &[f32],
    q: &Quantizer,
) -> Result<String, String> {
    let got = gpu.quantize(label, w, q).await.map_err(|e| e.to_string())?;
    let want = q.stats(w);
    for (what, g, c) in [
        ("mean|W|", got.stats.mean_abs, want.mean_abs),
        ("cut", got.stats.cut, want.cut),
        ("scale", got.stats.scale, want.scale),
    ] {
        if !close(g, c) {
            return Err(format!(
                "{label}: {what} gpu {g} vs cpu {c} (diff {:e})",
                (g - c).abs()
            ));
        }
    }
    // Codes: the GPU's codes must equal the CPU reference's codes computed from the GPU's own
    // statistics, except where a weight sits on a rounding boundary.
    let codes =
        unpack(Packing::TwoBit, &got.packed, w.len()).map_err(|e| format!("{label}: {e}"))?;
    let reference = q.codes_with(w, &got.stats);
    let mut bad = 0usize;
    let mut first_bad = None;
    for (i, (&g, &c)) in codes.iter().zip(&reference).enumerate() {
        if g != c && !near_boundary(q, w[i], got.stats.cut) {
            bad += 1;
            first_bad.get_or_insert(i);
        }
    }
    if let Some(i) = first_bad {
        return Err(format!(
            "{label}: {bad} of {} codes differ; first at index {i}: w = {}, gpu code {}, cpu code {}",
            w.len(),
            w[i],
            codes[i],
            reference[i]
        ));
    }
    // Padding of the last byte must be code 1 (a zero weight).
    let repacked = pack(Packing::TwoBit, &codes);
    if repacked != got.packed {
        return Err(format!(
            "{label}: packed bytes are not in the canonical 2-bit layout (tail padding?)"
        ));
    }
    Ok(format!(
        "{label}: n={} {:?} scale gpu {} cpu {} (diff {:.1e}), codes identical",
        w.len(),
        q,
        got.stats.scale,
        want.scale,
        (got.stats.scale - want.scale).abs()
    ))
}

/// The full check: the DESIGN.md §3 check vector, then random tensors of sizes that are not
/// multiples of the workgroup size, for every quantizer.
pub async fn quantize_against_cpu(gpu: &Gpu) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let seed_q = Quantizer::Threshold {
        ratio: 0.7,
        scale: ScaleMode::Absmean,
    };
    let fixed = gpu
        .quantize("check vector", &[1.0, -1.0, 0.0, 0.5, 2.0], &seed_q)
        .await
        .map_err(|e| e.to_string())?;
    if fixed.packed != [0x85, 0x95] || (fixed.stats.scale - 0.9).abs() > 1e-6 {
        return Err(format!(
            "check vector: got bytes {:02x?} scale {}, want [85, 95] scale 0.9",
            fixed.packed, fixed.stats.scale
        ));
    }
    lines.push("check vector: bytes 0x85 0x95, scale 0.9".to_string());

    let quantizers = [
        Quantizer::Absmean,
        Quantizer::Threshold {
            ratio: 0.7,
            scale: ScaleMode::Optimal,
        },
        Quantizer::Threshold {
            ratio: 1.0,
            scale: ScaleMode::Absmean,
        },
    ];
    let mut rng = Rng::new(0x5eed);
    for (k, n) in [1usize, 15, 257, 4099, 70_001, 1_000_003]
        .into_iter()
        .enumerate()
    {
        let std = 0.02 * (1 + k) as f32;
        let w: Vec<f32> = (0..n).map(|_| rng.normal(std)).collect();
        for q in &quantizers {
            lines.push(check_tensor(gpu, &format!("random[{n}]"), &w, q).await?);
        }
    }
    // All zeros: the absmean floor and the threshold's empty selection.
    for q in &quantizers {
        lines.push(check_tensor(gpu, "zeros[33]", &[0.0; 33], q).await?);
    }
    Ok(lines)
}
