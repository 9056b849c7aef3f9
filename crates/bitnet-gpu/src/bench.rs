//! `bitnet bench kernels`: every kernel and variant on the current adapter, each validated against
//! its CPU reference before it is timed; median wall time over repeated runs (submit to completion)
//! and GFLOP/s or GB/s. Native only: timing needs a clock and waits on the device between runs.

use std::time::Instant;

use bitnet_core::cpu::{matmul as cm, norm as cn};
use bitnet_core::quant::{QuantStats, Quantizer};

use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::{BlendPath, GemmPlan, GemmSpec, GemmVariant};
use crate::ops::Op;
use crate::selftest::{Check, Rng};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub kernel: String,
    pub shape: String,
    pub median_ms: f64,
    /// GFLOP/s for compute-bound kernels, else None.
    pub gflops: Option<f64>,
    /// GB/s of memory traffic for memory-bound kernels, else None.
    pub gbps: Option<f64>,
    /// The validation before timing.
    pub validated: bool,
    pub max_abs_error: f32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    /// The linear-layer variant and blend path measured fastest here ([`Gpu::tune_gemm`]).
    pub plan: GemmPlan,
    pub results: Vec<BenchResult>,
}

fn wait(gpu: &Gpu) -> Result<(), GpuError> {
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| GpuError::Device {
            what: "bench".into(),
            message: e.to_string(),
        })
}

/// Median milliseconds of `reps` timed submissions of `ops` (after one warm-up).
fn time_ops(gpu: &Gpu, ops: &[Op], reps: usize) -> Result<f64, GpuError> {
    gpu.submit(ops);
    wait(gpu)?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        gpu.submit(ops);
        wait(gpu)?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

/// What a benchmark's rate counts.
enum Rate {
    /// Floating-point operations per run.
    Flops(f64),
    /// Bytes moved per run.
    Bytes(f64),
}

/// Runs `ops` once, validates the result with `check`, and when it passes times `reps` runs.
async fn bench_one(
    gpu: &Gpu,
    kernel: String,
    shape: String,
    ops: &[Op],
    reps: usize,
    rate: Rate,
    check: impl AsyncFnOnce() -> Result<Check, GpuError>,
) -> Result<BenchResult, GpuError> {
    gpu.submit(ops);
    let check = check().await?;
    let ms = if check.passed {
        time_ops(gpu, ops, reps)?
    } else {
        f64::NAN
    };
    let per_s = |units: f64| check.passed.then(|| units / ms / 1e6);
    let (gflops, gbps) = match rate {
        Rate::Flops(f) => (per_s(f), None),
        Rate::Bytes(b) => (None, per_s(b)),
    };
    Ok(BenchResult {
        kernel,
        shape,
        median_ms: ms,
        gflops,
        gbps,
        validated: check.passed,
        max_abs_error: check.max_abs,
    })
}

/// Benchmarks the matmul variants (plain and λ-blended) at (m, n, k) and RMSNorm.
pub async fn bench_kernels(gpu: &Gpu, size: usize, reps: usize) -> Result<BenchReport, GpuError> {
    let clock = Instant::now();
    let plan = gpu
        .tune_gemm(&|| clock.elapsed().as_secs_f64() * 1e3)
        .await?;
    let mut rng = Rng::new(7);
    let mut results = Vec::new();
    let (m, n, k) = (size, size, size);
    let x = rng.vec(m * k, 1.0);
    let w = rng.vec(n * k, 0.05);
    let (xb, wb) = (gpu.upload_f32("x", &x)?, gpu.upload_f32("w", &w)?);
    let yb = gpu.storage("y", 4 * (m * n) as u64)?;
    let q = Quantizer::Absmean;
    let (sb, stat_ops) = gpu.weight_stats(&wb, w.len() as u64, &q)?;
    gpu.submit(&stat_ops);
    let s = gpu.read_f32("stats", &sb.stats, 4).await?;
    let stats = QuantStats {
        mean_abs: s[0],
        cut: s[1],
        scale: s[2],
    };
    let want_plain = cm::linear_forward(&x, &w, None, m, k, n);
    let t = bitnet_core::quant::Ternary {
        codes: q.codes_with(&w, &stats),
        scale: stats.scale,
    };
    let want_blend = cm::linear_forward(&x, &bitnet_core::quant::blend(&w, &t, 0.5), None, m, k, n);
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    // W transposed to (K, N): the layout of the input gradient's weight operand.
    let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
    let wtb = gpu.upload_f32("wt", &wt)?;
    let scratch = gpu.storage("scratch", 4 * (n * k) as u64)?;
    let blends = [
        (None, BlendPath::Fused),
        (Some((q, 0.5f32)), BlendPath::Fused),
        (Some((q, 0.5f32)), BlendPath::Scratch),
    ];
    for variant in GemmVariant::ALL {
        for trans_b in [true, false] {
            for (blend, path) in blends {
                // The naive kernel is the reference: timed once per layout, without a blend.
                if variant == GemmVariant::Naive && blend.is_some() {
                    continue;
                }
                let want = if blend.is_some() {
                    &want_blend
                } else {
                    &want_plain
                };
                let wbuf = if trans_b { &wb } else { &wtb };
                let spec = GemmSpec {
                    m: m as u32,
                    n: n as u32,
                    k: k as u32,
                    trans_b,
                    blend,
                    ..Default::default()
                };
                let plan = GemmPlan {
                    variant,
                    blend: path,
                    measured: false,
                };
                let ops = gpu.blended_gemm_ops(
                    plan,
                    &spec,
                    &xb,
                    wbuf,
                    None,
                    Some(&sb.stats),
                    Some(&scratch),
                    &yb,
                );
                let layout = if trans_b { "x·Wᵀ" } else { "x·W(K,N)" };
                let how = match (blend, path) {
                    (None, _) => "",
                    (Some(_), BlendPath::Fused) => " λ-fused",
                    (Some(_), BlendPath::Scratch) => " λ-scratch",
                };
                let name = format!("matmul {}{how} {layout}", variant.kernel(&spec).0);
                results.push(
                    bench_one(
                        gpu,
                        name,
                        format!("{m}x{n}x{k}"),
                        &ops,
                        reps,
                        Rate::Flops(flops),
                        async || {
                            let got = gpu.read_f32("y", &yb, m * n).await?;
                            Ok(Check::compare("matmul", &got, want, 1e-4, 1e-3))
                        },
                    )
                    .await?,
                );
            }
        }
    }

    // RMSNorm: memory-bound (read x and g, write y).
    let (rows, c) = (size, size);
    let g: Vec<f32> = rng.vec(c, 0.1).iter().map(|v| 1.0 + v).collect();
    let (gb, rb) = (
        gpu.upload_f32("g", &g)?,
        gpu.storage("rstd", 4 * rows as u64)?,
    );
    let ops = [gpu.rmsnorm_forward(rows as u32, c as u32, 1e-5, &xb, &gb, &rb, &yb)];
    let want = cn::rmsnorm_forward(&x[..rows * c], &g, 1e-5, c).0;
    results.push(
        bench_one(
            gpu,
            "rmsnorm forward".into(),
            format!("{rows}x{c}"),
            &ops,
            reps,
            Rate::Bytes(8.0 * (rows * c) as f64),
            async || {
                let got = gpu.read_f32("y", &yb, rows * c).await?;
                Ok(Check::compare("rmsnorm", &got, &want, 1e-5, 1e-4))
            },
        )
        .await?,
    );
    Ok(BenchReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        plan,
        results,
    })
}
