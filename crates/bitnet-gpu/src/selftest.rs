//! The GPU quantization kernel checked against the CPU reference. One body serves the native test
//! (lavapipe), the browser test (headless Chromium's WebGPU) and anyone who wants to check an
//! adapter. Comparison rule (STYLE.md): |gpu − cpu| ≤ atol + rtol·|cpu|, reporting the max
//! difference and the first bad index.

use bitnet_core::cpu::{self, matmul as cm};
use bitnet_core::pack::{Packing, pack, unpack};
use bitnet_core::quant::{QuantStats, Quantizer, ScaleMode, Ternary};

use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::{GemmSpec, GemmVariant};

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

/// The outcome of one kernel comparison, as `bitnet selftest` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub kernel: String,
    pub max_abs: f32,
    pub max_rel: f32,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    /// Compares a GPU result with its CPU reference: |gpu − cpu| ≤ atol + rtol·|cpu|.
    pub fn compare(
        kernel: impl Into<String>,
        got: &[f32],
        want: &[f32],
        atol: f32,
        rtol: f32,
    ) -> Check {
        let (max_abs, max_rel, bad) = cpu::compare(got, want, atol, rtol);
        let detail = match bad {
            None => format!("{} values within atol {atol:e} + rtol {rtol:e}", want.len()),
            Some(i) if i >= got.len().min(want.len()) => {
                format!("length {} vs reference {}", got.len(), want.len())
            }
            Some(i) => format!("first bad index {i}: gpu {} vs cpu {}", got[i], want[i]),
        };
        Check {
            kernel: kernel.into(),
            max_abs,
            max_rel,
            passed: bad.is_none(),
            detail,
        }
    }

    fn failed(kernel: impl Into<String>, detail: String) -> Check {
        Check {
            kernel: kernel.into(),
            max_abs: f32::NAN,
            max_rel: f32::NAN,
            passed: false,
            detail,
        }
    }
}

fn random(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal(std)).collect()
}

/// The λ-blended weights the CPU reference uses, from the GPU's own statistics (so that both sides
/// round the same codes; see `check_tensor`).
fn blended(w: &[f32], q: &Quantizer, stats: &QuantStats, lambda: f32) -> Vec<f32> {
    let t = Ternary {
        codes: q.codes_with(w, stats),
        scale: stats.scale,
    };
    bitnet_core::quant::blend(w, &t, lambda)
}

/// Linear layer forward and backward, every variant, with and without the λ-blend.
async fn matmul_checks(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Check>) -> Result<(), GpuError> {
    // A fixed small case, and shapes that are not multiples of any workgroup size.
    for (rows, inp, outf) in [(2usize, 3usize, 5usize), (37, 53, 29), (70, 33, 65)] {
        let x = random(rng, rows * inp, 1.0);
        let w = random(rng, outf * inp, 0.05);
        let b = random(rng, outf, 0.1);
        let dy = random(rng, rows * outf, 1.0);
        let dw0 = random(rng, outf * inp, 0.01);
        let db0 = random(rng, outf, 0.01);
        let (xb, wb, bb, dyb) = (
            gpu.upload_f32("x", &x)?,
            gpu.upload_f32("w", &w)?,
            gpu.upload_f32("b", &b)?,
            gpu.upload_f32("dy", &dy)?,
        );
        let shape = format!("{rows}x{inp}->{outf}");
        for q in [
            Quantizer::Absmean,
            Quantizer::Threshold {
                ratio: 0.7,
                scale: ScaleMode::Optimal,
            },
        ] {
            let (sb, ops) = gpu.weight_stats(&wb, w.len() as u64, &q)?;
            gpu.submit(&ops);
            let s = gpu.read_f32("stats", &sb.stats, 4).await?;
            let stats = QuantStats {
                mean_abs: s[0],
                cut: s[1],
                scale: s[2],
            };
            for lambda in [0.0f32, 0.5, 1.0] {
                let weff = blended(&w, &q, &stats, lambda);
                let want_y = cm::linear_forward(&x, &weff, Some(&b), rows, inp, outf);
                let want_dx = cm::linear_backward_input(&dy, &weff, rows, inp, outf);
                for v in GemmVariant::ALL {
                    let blend = Some((q, lambda));
                    let y = gpu.storage("y", 4 * (rows * outf) as u64)?;
                    let dx = gpu.storage("dx", 4 * (rows * inp) as u64)?;
                    let fwd = GemmSpec {
                        m: rows as u32,
                        n: outf as u32,
                        k: inp as u32,
                        trans_b: true,
                        blend,
                        ..Default::default()
                    };
                    let bwd = GemmSpec {
                        m: rows as u32,
                        n: inp as u32,
                        k: outf as u32,
                        blend,
                        ..Default::default()
                    };
                    gpu.submit(&[
                        gpu.gemm_op(v, &fwd, &xb, &wb, Some(&bb), Some(&sb.stats), &y),
                        gpu.gemm_op(v, &bwd, &dyb, &wb, None, Some(&sb.stats), &dx),
                    ]);
                    let tag = format!("{v:?} {} λ={lambda} {shape}", q.name()).to_lowercase();
                    out.push(Check::compare(
                        format!("matmul forward {tag}"),
                        &gpu.read_f32("y", &y, rows * outf).await?,
                        &want_y,
                        1e-5,
                        1e-4,
                    ));
                    out.push(Check::compare(
                        format!("matmul backward_input {tag}"),
                        &gpu.read_f32("dx", &dx, rows * inp).await?,
                        &want_dx,
                        1e-5,
                        1e-4,
                    ));
                }
            }
        }
        // Weight and bias gradients accumulate (+=) into what is there; STE: no blend.
        let mut want_dw = cm::linear_backward_weight(&dy, &x, rows, inp, outf);
        want_dw.iter_mut().zip(&dw0).for_each(|(a, b)| *a += b);
        let mut want_db = cm::linear_backward_bias(&dy, rows, outf);
        want_db.iter_mut().zip(&db0).for_each(|(a, b)| *a += b);
        for v in GemmVariant::ALL {
            let dw = gpu.upload_f32("dw", &dw0)?;
            let db = gpu.upload_f32("db", &db0)?;
            let spec = GemmSpec {
                m: outf as u32,
                n: inp as u32,
                k: rows as u32,
                trans_a: true,
                accumulate: true,
                ..Default::default()
            };
            gpu.submit(&[
                gpu.gemm_op(v, &spec, &dyb, &xb, None, None, &dw),
                gpu.bias_grad_op(rows as u32, outf as u32, &dyb, &db),
            ]);
            let tag = format!("{v:?} {shape}").to_lowercase();
            out.push(Check::compare(
                format!("matmul backward_weight {tag}"),
                &gpu.read_f32("dw", &dw, outf * inp).await?,
                &want_dw,
                1e-5,
                1e-4,
            ));
            out.push(Check::compare(
                format!("matmul bias_grad {tag}"),
                &gpu.read_f32("db", &db, outf).await?,
                &want_db,
                1e-5,
                1e-4,
            ));
        }
    }
    Ok(())
}

/// Every kernel against its CPU reference at fixed seeds: what `bitnet selftest` and the browser
/// suite run.
pub async fn run_all(gpu: &Gpu) -> Vec<Check> {
    let mut out = Vec::new();
    match quantize_against_cpu(gpu).await {
        Ok(lines) => out.push(Check {
            kernel: "quantize".into(),
            max_abs: 0.0,
            max_rel: 0.0,
            passed: true,
            detail: format!("{} cases, codes identical", lines.len()),
        }),
        Err(e) => out.push(Check::failed("quantize", e)),
    }
    let mut rng = Rng::new(42);
    if let Err(e) = matmul_checks(gpu, &mut rng, &mut out).await {
        out.push(Check::failed("matmul", e.to_string()));
    }
    out
}
