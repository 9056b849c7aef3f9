//! The GPU quantization kernel checked against the CPU reference. One body serves the native test
//! (lavapipe), the browser test (headless Chromium's WebGPU) and anyone who wants to check an
//! adapter. Comparison rule (STYLE.md): |gpu − cpu| ≤ atol + rtol·|cpu|, reporting the max
//! difference and the first bad index.

use bitnet_core::cpu::attention::{
    AttnShape, attention_backward, attention_forward, decode_attention, rope_at,
};
use bitnet_core::cpu::optim::{AdamW, act_quant8, grad_norm};
use bitnet_core::cpu::{
    self, embedding as ce, kl as ck, matmul as cm, norm as cn, rope as cr, swiglu as cs, xent as cx,
};
use bitnet_core::pack::{Packing, pack, unpack};
use bitnet_core::quant::{QuantStats, Quantizer, ScaleMode, Ternary};

mod kd;
mod matvec;

use crate::decode::DecodeShape;
use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::AdamStep;
use crate::matmul::{BlendPath, GemmPlan, GemmSpec, GemmVariant, LinearShape};

/// Statistics are f32 tree sums on the GPU and f64 sums on the CPU; over 10⁶ terms an f32 tree
/// reduction stays well inside 1e-5 relative.
const STATS_RTOL: f32 = 1e-5;
const STATS_ATOL: f32 = 1e-8;

/// The test data of the self-test, the benchmarks and the kernel tests (xorshift64*; the checks'
/// fixed cases were set on its stream). Nothing of a run draws from it: training, sampling,
/// self-generation and the demo model use the one generator of a run, `bitnet_core::rng::Rng`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The generator's state: `Rng::new(state)` continues the same sequence.
    pub fn state(&self) -> u64 {
        self.0
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
    /// `n` roughly normal values of standard deviation `std`.
    pub fn vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(std)).collect()
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

/// The λ-blended weights the CPU reference uses, from the GPU's own statistics (so that both sides
/// round the same codes; see `check_tensor`).
fn blended(w: &[f32], q: &Quantizer, stats: &QuantStats, lambda: f32) -> Vec<f32> {
    let t = Ternary {
        codes: q.codes_with(w, stats),
        scale: stats.scale,
    };
    bitnet_core::quant::blend(w, &t, lambda)
}

/// Linear layer forward and backward, every variant, with and without the λ-blend, the blend fused
/// and through a scratch buffer.
async fn matmul_checks(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Check>) -> Result<(), GpuError> {
    // A fixed small case, shapes that are not multiples of any workgroup size (the register
    // variant's scalar kernel), and ones whose inner dimensions are multiples of 4 (its vec4
    // kernel), with odd rows and edges inside and past its 16×16 and 128×128 blocks.
    for (rows, inp, outf) in [
        (2usize, 3usize, 5usize),
        (37, 53, 29),
        (70, 33, 65),
        (37, 52, 28),
        (131, 20, 136),
    ] {
        let x = rng.vec(rows * inp, 1.0);
        let w = rng.vec(outf * inp, 0.05);
        let b = rng.vec(outf, 0.1);
        let dy = rng.vec(rows * outf, 1.0);
        let dw0 = rng.vec(outf * inp, 0.01);
        let db0 = rng.vec(outf, 0.01);
        let (xb, wb, bb, dyb) = (
            gpu.upload_f32("x", &x)?,
            gpu.upload_f32("w", &w)?,
            gpu.upload_f32("b", &b)?,
            gpu.upload_f32("dy", &dy)?,
        );
        let scratch = gpu.storage("scratch", 4 * w.len() as u64)?;
        let shape = LinearShape {
            rows: rows as u32,
            inp: inp as u32,
            out: outf as u32,
        };
        let shape_tag = format!("{rows}x{inp}->{outf}");
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
                for plan in gemm_plans() {
                    // The scratch path is the same product after one elementwise pass: checked
                    // with the adapter's variant only.
                    if plan.blend == BlendPath::Scratch && plan.variant != gpu.gemm_plan().variant {
                        continue;
                    }
                    let blend = Some((q, lambda));
                    let y = gpu.storage("y", 4 * (rows * outf) as u64)?;
                    let dx = gpu.storage("dx", 4 * (rows * inp) as u64)?;
                    let dx_spec = GemmSpec {
                        m: shape.rows,
                        n: shape.inp,
                        k: shape.out,
                        blend,
                        ..Default::default()
                    };
                    let (y_sb, dx_sb) = (Some(&sb.stats), Some(&scratch));
                    let mut ops = gpu.linear_forward(
                        plan,
                        shape,
                        blend,
                        &xb,
                        &wb,
                        Some(&bb),
                        y_sb,
                        dx_sb,
                        &y,
                    );
                    ops.extend(
                        gpu.blended_gemm_ops(plan, &dx_spec, &dyb, &wb, None, y_sb, dx_sb, &dx),
                    );
                    gpu.submit(&ops);
                    let fwd_kernel = plan.variant.kernel(&GemmSpec {
                        trans_b: true,
                        ..dx_spec
                    });
                    let tag = format!(
                        "{} {:?} {} λ={lambda} {shape_tag}",
                        fwd_kernel.0,
                        plan.blend,
                        q.name()
                    )
                    .to_lowercase();
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
            let tag = format!("{} {shape_tag}", v.kernel(&spec).0);
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

fn zeros(gpu: &Gpu, name: &str, n: usize) -> Result<wgpu::Buffer, GpuError> {
    gpu.storage(name, 4 * n as u64)
}

/// RMSNorm, SwiGLU, RoPE, embedding, residual add and 8-bit activation quantization.
async fn layer_checks(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Check>) -> Result<(), GpuError> {
    for (rows, c) in [(2usize, 5usize), (7, 300), (3, 1031)] {
        let tag = format!("{rows}x{c}");
        let x = rng.vec(rows * c, 1.0);
        let g: Vec<f32> = rng.vec(c, 0.2).iter().map(|v| 1.0 + v).collect();
        let dy = rng.vec(rows * c, 1.0);
        let dg0 = rng.vec(c, 0.1);
        let (want_y, rstd) = cn::rmsnorm_forward(&x, &g, 1e-5, c);
        let (want_dx, mut want_dg) = cn::rmsnorm_backward(&x, &g, &rstd, &dy, c);
        want_dg.iter_mut().zip(&dg0).for_each(|(a, b)| *a += b);
        let (xb, gb, dyb) = (
            gpu.upload_f32("x", &x)?,
            gpu.upload_f32("g", &g)?,
            gpu.upload_f32("dy", &dy)?,
        );
        let (rb, yb, dxb, dgb) = (
            zeros(gpu, "rstd", rows)?,
            zeros(gpu, "y", rows * c)?,
            zeros(gpu, "dx", rows * c)?,
            gpu.upload_f32("dg", &dg0)?,
        );
        let (r, cc) = (rows as u32, c as u32);
        let mut ops = vec![gpu.rmsnorm_forward(r, cc, 1e-5, &xb, &gb, &rb, &yb)];
        ops.extend(gpu.rmsnorm_backward(r, cc, &xb, &gb, &dyb, &rb, &dxb, &dgb));
        gpu.submit(&ops);
        out.push(Check::compare(
            format!("rmsnorm forward {tag}"),
            &gpu.read_f32("y", &yb, rows * c).await?,
            &want_y,
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("rmsnorm backward_input {tag}"),
            &gpu.read_f32("dx", &dxb, rows * c).await?,
            &want_dx,
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("rmsnorm backward_gain {tag}"),
            &gpu.read_f32("dg", &dgb, c).await?,
            &want_dg,
            1e-5,
            1e-4,
        ));

        // SwiGLU over the same sizes.
        let n = rows * c;
        let (a, u) = (rng.vec(n, 2.0), rng.vec(n, 1.0));
        let want_h = cs::swiglu_forward(&a, &u);
        let (want_da, want_du) = cs::swiglu_backward(&a, &u, &dy);
        let (ab, ub) = (gpu.upload_f32("gate", &a)?, gpu.upload_f32("up", &u)?);
        let (hb, dab, dub) = (
            zeros(gpu, "h", n)?,
            zeros(gpu, "dgate", n)?,
            zeros(gpu, "dup", n)?,
        );
        gpu.submit(&[
            gpu.swiglu_forward(n as u32, &ab, &ub, &hb),
            gpu.swiglu_backward(n as u32, &ab, &ub, &dyb, &dab, &dub),
        ]);
        out.push(Check::compare(
            format!("swiglu forward {tag}"),
            &gpu.read_f32("h", &hb, n).await?,
            &want_h,
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("swiglu backward dgate {tag}"),
            &gpu.read_f32("dgate", &dab, n).await?,
            &want_da,
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("swiglu backward dup {tag}"),
            &gpu.read_f32("dup", &dub, n).await?,
            &want_du,
            1e-5,
            1e-4,
        ));

        // Residual add, gradient accumulation, 8-bit activations.
        let want_add: Vec<f32> = x.iter().zip(&dy).map(|(a, b)| a + b).collect();
        let want_q = act_quant8(&x, c);
        let (sb, qb, accb) = (
            zeros(gpu, "sum", n)?,
            zeros(gpu, "q8", n)?,
            gpu.upload_f32("acc", &dy)?,
        );
        gpu.submit(&[
            gpu.add(n as u32, &xb, &dyb, &sb),
            gpu.accumulate(n as u32, &xb, &accb),
            gpu.act_quant8(n as u32, c as u32, &xb, &qb),
        ]);
        out.push(Check::compare(
            format!("elementwise add {tag}"),
            &gpu.read_f32("sum", &sb, n).await?,
            &want_add,
            1e-6,
            1e-6,
        ));
        out.push(Check::compare(
            format!("elementwise accumulate {tag}"),
            &gpu.read_f32("acc", &accb, n).await?,
            &want_add,
            1e-6,
            1e-6,
        ));
        // A value on a rounding tie may land one step apart (f32 x·s on both sides): one step is
        // amax/127, so compare within a step.
        let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        out.push(Check::compare(
            format!("elementwise act_quant8 {tag}"),
            &gpu.read_f32("q8", &qb, n).await?,
            &want_q,
            step * 1.01,
            0.0,
        ));
    }

    // RoPE at a position offset, forward and backward (transpose).
    for (b, t, h, d, offset) in [
        (1usize, 2usize, 1usize, 4usize, 0usize),
        (2, 9, 3, 16, 5),
        (1, 33, 2, 64, 1000),
    ] {
        let (cos, sin) = cr::rope_tables(offset + t, d, 10000.0);
        let x = rng.vec(b * t * h * d, 1.0);
        let want_f = cr::rope(&x, &cos, &sin, b, t, h, d, offset, false);
        let want_b = cr::rope(&x, &cos, &sin, b, t, h, d, offset, true);
        let (xb, cb, sb) = (
            gpu.upload_f32("x", &x)?,
            gpu.upload_f32("cos", &cos)?,
            gpu.upload_f32("sin", &sin)?,
        );
        let (fb, bb) = (zeros(gpu, "rope", x.len())?, zeros(gpu, "drope", x.len())?);
        let shape = [b as u32, t as u32, h as u32, d as u32];
        gpu.submit(&[
            gpu.rope(false, shape, offset as u32, &xb, &cb, &sb, &fb),
            gpu.rope(true, shape, offset as u32, &xb, &cb, &sb, &bb),
        ]);
        let tag = format!("{b}x{t}x{h}x{d}@{offset}");
        out.push(Check::compare(
            format!("rope forward {tag}"),
            &gpu.read_f32("rope", &fb, x.len()).await?,
            &want_f,
            1e-6,
            1e-5,
        ));
        out.push(Check::compare(
            format!("rope backward {tag}"),
            &gpu.read_f32("drope", &bb, x.len()).await?,
            &want_b,
            1e-6,
            1e-5,
        ));
    }

    // Embedding gather and deterministic scatter-add, with repeated tokens.
    for (vocab, c, tokens) in [(5usize, 3usize, 4usize), (301, 37, 70)] {
        let table = rng.vec(vocab * c, 1.0);
        let ids: Vec<u32> = (0..tokens)
            .map(|i| {
                if i % 3 == 0 {
                    1
                } else {
                    (rng.next_u64() % vocab as u64) as u32
                }
            })
            .collect();
        let dy = rng.vec(tokens * c, 1.0);
        let de0 = rng.vec(vocab * c, 0.1);
        let want_y = ce::embedding_forward(&table, &ids, c);
        let mut want_de = de0.clone();
        ce::embedding_backward(&mut want_de, &ids, &dy, c);
        let (tb, ib, dyb) = (
            gpu.upload_f32("table", &table)?,
            gpu.upload("ids", bytemuck::cast_slice(&ids))?,
            gpu.upload_f32("dy", &dy)?,
        );
        let (yb, deb) = (zeros(gpu, "y", tokens * c)?, gpu.upload_f32("dE", &de0)?);
        let (t, cc, v) = (tokens as u32, c as u32, vocab as u32);
        gpu.submit(&[
            gpu.embedding_forward(t, cc, v, &tb, &ib, &yb),
            gpu.embedding_backward(t, cc, v, &ib, &dyb, &deb),
        ]);
        let tag = format!("{vocab}x{c} tokens {tokens}");
        out.push(Check::compare(
            format!("embedding forward {tag}"),
            &gpu.read_f32("y", &yb, tokens * c).await?,
            &want_y,
            0.0,
            0.0,
        ));
        out.push(Check::compare(
            format!("embedding backward {tag}"),
            &gpu.read_f32("dE", &deb, vocab * c).await?,
            &want_de,
            1e-6,
            1e-5,
        ));
    }
    Ok(())
}

/// Cross-entropy with a mask, causal GQA attention, gradient norm and AdamW.
async fn loss_attention_optim_checks(
    gpu: &Gpu,
    rng: &mut Rng,
    out: &mut Vec<Check>,
) -> Result<(), GpuError> {
    for (rows, vocab) in [(3usize, 7usize), (9, 1000), (2, 40_000)] {
        let logits = rng.vec(rows * vocab, 3.0);
        let targets: Vec<i32> = (0..rows)
            .map(|r| {
                if r == 1 {
                    -100
                } else {
                    (rng.next_u64() % vocab as u64) as i32
                }
            })
            .collect();
        let n_valid = targets.iter().filter(|&&t| t >= 0).count();
        let (want_loss, want_lse) = cx::xent_forward(&logits, &targets, vocab);
        let want_d = cx::xent_backward(&logits, &targets, &want_lse, vocab);
        let (lb, tb) = (
            gpu.upload_f32("logits", &logits)?,
            gpu.upload("targets", bytemuck::cast_slice(&targets))?,
        );
        let (lseb, lossb, db) = (
            zeros(gpu, "lse", rows)?,
            zeros(gpu, "loss", rows)?,
            zeros(gpu, "dlogits", rows * vocab)?,
        );
        let (r, v, nv) = (rows as u32, vocab as u32, n_valid as u32);
        gpu.submit(&[
            gpu.xent_forward(r, v, nv as f32, &lb, &tb, &lseb, &lossb),
            gpu.xent_backward(r, v, nv as f32, &lb, &tb, &lseb, &db),
        ]);
        let loss: f32 = gpu.read_f32("loss", &lossb, rows).await?.iter().sum();
        let tag = format!("{rows}x{vocab}");
        out.push(Check::compare(
            format!("xent forward loss {tag}"),
            &[loss],
            &[want_loss],
            1e-5,
            1e-5,
        ));
        out.push(Check::compare(
            format!("xent forward lse {tag}"),
            &gpu.read_f32("lse", &lseb, rows).await?,
            &want_lse,
            1e-5,
            1e-5,
        ));
        out.push(Check::compare(
            format!("xent backward {tag}"),
            &gpu.read_f32("dlogits", &db, rows * vocab).await?,
            &want_d,
            1e-7,
            1e-4,
        ));
    }
    // Distillation: KL at two temperatures, its backward written and added to the CE's.
    for (rows, vocab, temperature) in [(3usize, 7usize, 1.0f32), (5, 1000, 2.0), (2, 40_000, 1.0)] {
        let student = rng.vec(rows * vocab, 3.0);
        let teacher = rng.vec(rows * vocab, 3.0);
        let targets: Vec<i32> = (0..rows)
            .map(|r| if r == 1 { -100 } else { (r % vocab) as i32 })
            .collect();
        let n_valid = targets.iter().filter(|&&t| t >= 0).count() as u32;
        let kd = crate::kernels::Distill {
            temperature,
            weight: 0.75,
        };
        let want = ck::kl_forward(&student, &teacher, &targets, vocab, temperature, kd.weight);
        let want_d = ck::kl_backward(&student, &teacher, &targets, vocab, temperature, kd.weight);
        let (sb, tb, gb) = (
            gpu.upload_f32("student", &student)?,
            gpu.upload_f32("teacher", &teacher)?,
            gpu.upload("targets", bytemuck::cast_slice(&targets))?,
        );
        let (statsb, lossb, db) = (
            zeros(gpu, "kl stats", 2 * rows)?,
            zeros(gpu, "kl loss", rows)?,
            zeros(gpu, "dlogits", rows * vocab)?,
        );
        let (r, v) = (rows as u32, vocab as u32);
        let ones = gpu.upload_f32("ones", &vec![1f32; rows * vocab])?;
        gpu.submit(&[
            gpu.kl_forward(r, v, n_valid, kd, &sb, &tb, &gb, &statsb, &lossb),
            gpu.kl_backward(r, v, n_valid, kd, false, &sb, &tb, &gb, &statsb, &db),
        ]);
        let tag = format!("{rows}x{vocab} T={temperature}");
        let loss: f32 = gpu.read_f32("kl loss", &lossb, rows).await?.iter().sum();
        out.push(Check::compare(
            format!("kl forward {tag}"),
            &[loss],
            &[want],
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("kl backward {tag}"),
            &gpu.read_f32("dlogits", &db, rows * vocab).await?,
            &want_d,
            1e-7,
            1e-4,
        ));
        // Accumulating onto a buffer of ones adds the same gradient to each.
        gpu.submit(&[gpu.kl_backward(r, v, n_valid, kd, true, &sb, &tb, &gb, &statsb, &ones)]);
        let plus_one: Vec<f32> = want_d.iter().map(|d| d + 1.0).collect();
        out.push(Check::compare(
            format!("kl backward, accumulated {tag}"),
            &gpu.read_f32("ones", &ones, rows * vocab).await?,
            &plus_one,
            1e-6,
            1e-6,
        ));
    }

    for s in [
        AttnShape {
            b: 1,
            t: 3,
            hq: 2,
            hkv: 1,
            d: 4,
        },
        AttnShape {
            b: 2,
            t: 37,
            hq: 4,
            hkv: 2,
            d: 16,
        },
        AttnShape {
            b: 1,
            t: 70,
            hq: 6,
            hkv: 2,
            d: 64,
        },
        // Long enough that one pass over the keys would outrun lavapipe's loop limit.
        AttnShape {
            b: 1,
            t: 600,
            hq: 4,
            hkv: 2,
            d: 64,
        },
        AttnShape {
            b: 1,
            t: 2048,
            hq: 1,
            hkv: 1,
            d: 16,
        },
    ] {
        let (nq, nk) = (s.b * s.t * s.hq * s.d, s.b * s.t * s.hkv * s.d);
        let (q, k, v, dout) = (
            rng.vec(nq, 1.0),
            rng.vec(nk, 1.0),
            rng.vec(nk, 1.0),
            rng.vec(nq, 1.0),
        );
        let (want_o, want_lse) = attention_forward(&s, &q, &k, &v);
        let (want_dq, want_dk, want_dv) =
            attention_backward(&s, &q, &k, &v, &want_o, &want_lse, &dout);
        let (qb, kb, vb, db) = (
            gpu.upload_f32("q", &q)?,
            gpu.upload_f32("k", &k)?,
            gpu.upload_f32("v", &v)?,
            gpu.upload_f32("dout", &dout)?,
        );
        let (ob, sb, dqb, dkvb) = (
            zeros(gpu, "o", nq)?,
            zeros(gpu, "stats", 2 * s.b * s.hq * s.t)?,
            zeros(gpu, "dq", nq)?,
            zeros(gpu, "dkv", 2 * nk)?,
        );
        let shape = [
            s.b as u32,
            s.t as u32,
            s.hq as u32,
            s.hkv as u32,
            s.d as u32,
        ];
        let mut ops = gpu.attention_forward(shape, &qb, &kb, &vb, &ob, &sb)?;
        ops.extend(gpu.attention_backward(shape, &qb, &kb, &vb, &ob, &sb, &db, &dqb, &dkvb)?);
        gpu.submit(&ops);
        let tag = format!("b{} t{} hq{} hkv{} d{}", s.b, s.t, s.hq, s.hkv, s.d);
        let stats = gpu.read_f32("stats", &sb, 2 * s.b * s.hq * s.t).await?;
        let lse: Vec<f32> = stats.iter().step_by(2).copied().collect();
        let dkv = gpu.read_f32("dkv", &dkvb, 2 * nk).await?;
        out.push(Check::compare(
            format!("attention forward {tag}"),
            &gpu.read_f32("o", &ob, nq).await?,
            &want_o,
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("attention forward lse {tag}"),
            &lse,
            &want_lse,
            1e-5,
            1e-5,
        ));
        out.push(Check::compare(
            format!("attention backward dq {tag}"),
            &gpu.read_f32("dq", &dqb, nq).await?,
            &want_dq,
            1e-5,
            1e-3,
        ));
        out.push(Check::compare(
            format!("attention backward dk {tag}"),
            &dkv[..nk],
            &want_dk,
            1e-5,
            1e-3,
        ));
        out.push(Check::compare(
            format!("attention backward dv {tag}"),
            &dkv[nk..],
            &want_dv,
            1e-5,
            1e-3,
        ));
    }

    // Global norm over two tensors, clipping, and three AdamW steps.
    let (g1, g2) = (rng.vec(1000, 0.5), rng.vec(77, 0.5));
    let (want_norm, want_coef) = grad_norm(&[&g1, &g2], 1.0);
    let (partials, norm) = gpu.norm_buffers(2)?;
    let (g1b, g2b) = (gpu.upload_f32("g1", &g1)?, gpu.upload_f32("g2", &g2)?);
    let mut ops = Vec::new();
    ops.extend(gpu.grad_sumsq(1000, 0, 2, &g1b, &partials, &norm));
    ops.extend(gpu.grad_sumsq(77, 1, 2, &g2b, &partials, &norm));
    ops.push(gpu.clip_finish(2, 1.0, &norm));
    let p0 = rng.vec(1000, 1.0);
    let (pb, mb, vb) = (
        gpu.upload_f32("p", &p0)?,
        zeros(gpu, "m", 1000)?,
        zeros(gpu, "v", 1000)?,
    );
    let opt = AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let (mut p, mut m, mut v) = (p0.clone(), vec![0f32; 1000], vec![0f32; 1000]);
    for step in 1..=3u32 {
        opt.step(&mut p, &g1, &mut m, &mut v, step, want_coef);
        let s = AdamStep {
            lr: opt.lr,
            beta1: opt.beta1,
            beta2: opt.beta2,
            eps: opt.eps,
            weight_decay: opt.weight_decay,
            step,
        };
        ops.push(gpu.adamw(1000, &s, 2, true, &g1b, &pb, &mb, &vb, &norm));
    }
    gpu.submit(&ops);
    let nrm = gpu.read_f32("norm", &norm, 4).await?;
    out.push(Check::compare(
        "optim grad_norm",
        &nrm[2..4],
        &[want_norm, want_coef],
        1e-5,
        1e-5,
    ));
    out.push(Check::compare(
        "optim adamw 3 steps, clipped",
        &gpu.read_f32("p", &pb, 1000).await?,
        &p,
        1e-6,
        1e-5,
    ));
    out.push(Check::compare(
        "optim adamw moments",
        &gpu.read_f32("v", &vb, 1000).await?,
        &v,
        1e-9,
        1e-4,
    ));
    Ok(())
}

/// The KV-cache kernels (decode.wgsl): RoPE at per-sequence positions, the cache append and the
/// attention of one new query per sequence over its cached rows.
async fn decode_checks(gpu: &Gpu, rng: &mut Rng, out: &mut Vec<Check>) -> Result<(), GpuError> {
    for (hq, hkv, d, cap, pos) in [
        (4usize, 2usize, 16usize, 9usize, vec![5u32, 2, 0]),
        (6, 2, 64, 3000, vec![2999, 1234]),
    ] {
        let b = pos.len();
        let (kvd, row) = (hkv * d, cap * hkv * d);
        let (q, knew, vnew) = (
            rng.vec(b * hq * d, 1.0),
            rng.vec(b * kvd, 1.0),
            rng.vec(b * kvd, 1.0),
        );
        let (mut kc, mut vc) = (rng.vec(b * row, 1.0), rng.vec(b * row, 1.0));
        let (kc0, vc0) = (kc.clone(), vc.clone());
        let (cos, sin) = cr::rope_tables(cap, d, 10000.0);
        let want_q = rope_at(&q, &cos, &sin, hq, d, &pos);
        let want_k = rope_at(&knew, &cos, &sin, hkv, d, &pos);
        for (s, &p) in pos.iter().enumerate() {
            let at = s * row + p as usize * kvd;
            kc[at..at + kvd].copy_from_slice(&want_k[s * kvd..(s + 1) * kvd]);
            vc[at..at + kvd].copy_from_slice(&vnew[s * kvd..(s + 1) * kvd]);
        }
        let want = decode_attention(hq, hkv, d, cap, &want_q, &kc, &vc, &pos);
        let shape = DecodeShape {
            b: b as u32,
            hq: hq as u32,
            hkv: hkv as u32,
            d: d as u32,
            cap: cap as u32,
        };
        let (qb, kb, vb, kcb, vcb) = (
            gpu.upload_f32("q", &q)?,
            gpu.upload_f32("k", &knew)?,
            gpu.upload_f32("v", &vnew)?,
            gpu.upload_f32("key cache", &kc0)?,
            gpu.upload_f32("value cache", &vc0)?,
        );
        let (cb, sb) = (gpu.upload_f32("cos", &cos)?, gpu.upload_f32("sin", &sin)?);
        let pb = gpu.upload("positions", bytemuck::cast_slice(&pos))?;
        let (qrb, krb, scb, ob) = (
            zeros(gpu, "q rope", q.len())?,
            zeros(gpu, "k rope", knew.len())?,
            zeros(gpu, "scores", b * hq * cap)?,
            zeros(gpu, "out", q.len())?,
        );
        let mut ops = vec![
            gpu.rope_at(shape, hq as u32, &qb, &cb, &sb, &pb, &qrb)?,
            gpu.rope_at(shape, hkv as u32, &kb, &cb, &sb, &pb, &krb)?,
        ];
        ops.extend(gpu.decode_attention(
            shape, cap as u32, &qrb, &krb, &vb, &pb, &kcb, &vcb, &scb, &ob,
        )?);
        gpu.submit(&ops);
        let tag = format!("b{b} hq{hq} hkv{hkv} d{d} cap{cap}");
        out.push(Check::compare(
            format!("decode rope_at {tag}"),
            &gpu.read_f32("q rope", &qrb, q.len()).await?,
            &want_q,
            1e-6,
            1e-5,
        ));
        out.push(Check::compare(
            format!("decode append (key cache) {tag}"),
            &gpu.read_f32("key cache", &kcb, kc.len()).await?,
            &kc,
            1e-6,
            1e-5,
        ));
        out.push(Check::compare(
            format!("decode append (value cache) {tag}"),
            &gpu.read_f32("value cache", &vcb, vc.len()).await?,
            &vc,
            0.0,
            0.0,
        ));
        out.push(Check::compare(
            format!("decode attention {tag}"),
            &gpu.read_f32("out", &ob, q.len()).await?,
            &want,
            1e-5,
            1e-4,
        ));
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
    if let Err(e) = layer_checks(gpu, &mut rng, &mut out).await {
        out.push(Check::failed("layers", e.to_string()));
    }
    if let Err(e) = loss_attention_optim_checks(gpu, &mut rng, &mut out).await {
        out.push(Check::failed("loss, attention, optimizer", e.to_string()));
    }
    if let Err(e) = decode_checks(gpu, &mut rng, &mut out).await {
        out.push(Check::failed("decode attention", e.to_string()));
    }
    // A stream of its own, so that the cases above keep theirs.
    if let Err(e) = kd::topk_checks(gpu, &mut Rng::new(7), &mut out).await {
        out.push(Check::failed("top-k distillation", e.to_string()));
    }
    if let Err(e) = matvec::matvec_checks(gpu, &mut Rng::new(8), &mut out).await {
        out.push(Check::failed("matvec", e.to_string()));
    }
    out
}

/// Every variant with the blend fused, and every variant through a scratch buffer.
fn gemm_plans() -> impl Iterator<Item = GemmPlan> {
    [BlendPath::Fused, BlendPath::Scratch]
        .into_iter()
        .flat_map(|blend| {
            GemmVariant::ALL.into_iter().map(move |variant| GemmPlan {
                variant,
                blend,
                measured: false,
            })
        })
}
