//! `bitnet bench kernels`: every kernel and variant on the current adapter, each validated against
//! its CPU reference before it is timed; median wall time over repeated runs (submit to completion)
//! and GFLOP/s or GB/s. Native only: timing needs a clock and waits on the device between runs.

use std::time::Instant;

use bitnet_core::cpu::attention::{AttnShape, attention_backward, attention_forward};
use bitnet_core::cpu::optim::AdamW;
use bitnet_core::cpu::{
    embedding as ce, matmul as cm, norm as cn, rope as cr, swiglu as cs, xent as cx,
};
use bitnet_core::quant::{QuantStats, Quantizer};

use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::AdamStep;
use crate::matmul::{BlendPath, GemmPlan, GemmSpec, GemmVariant};
use crate::ops::Op;
use crate::selftest::{Check, Rng};

mod decode;
mod train;
pub use decode::{DecodeBench, DecodeRun, DecodeWork, bench_decode};
pub use train::{TrainBench, bench_train, random_weights};

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
    layer_benches(gpu, size, reps, &mut rng, &mut results).await?;
    Ok(BenchReport {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        plan,
        results,
    })
}

/// The other kernels of a training step at sizes derived from `size`: elementwise and row kernels
/// over size×size values, attention over a sequence of size/2 tokens (8 query and 2 KV heads of
/// 64), cross-entropy over a 32000-token vocabulary.
async fn layer_benches(
    gpu: &Gpu,
    size: usize,
    reps: usize,
    rng: &mut Rng,
    results: &mut Vec<BenchResult>,
) -> Result<(), GpuError> {
    let (rows, c) = (size, size);
    let n = rows * c;
    let tag = format!("{rows}x{c}");
    let (x, dy) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
    let g: Vec<f32> = rng.vec(c, 0.1).iter().map(|v| 1.0 + v).collect();
    let (xb, dyb, gb) = (
        gpu.upload_f32("x", &x)?,
        gpu.upload_f32("dy", &dy)?,
        gpu.upload_f32("g", &g)?,
    );
    let (yb, y2b) = (
        gpu.storage("y", 4 * n as u64)?,
        gpu.storage("y2", 4 * n as u64)?,
    );

    // RMSNorm backward (rstd from the forward).
    let (_, rstd) = cn::rmsnorm_forward(&x, &g, 1e-5, c);
    let rb = gpu.upload_f32("rstd", &rstd)?;
    let dgb = gpu.storage("dg", 4 * c as u64)?;
    let (want_dx, _) = cn::rmsnorm_backward(&x, &g, &rstd, &dy, c);
    let ops = gpu.rmsnorm_backward(rows as u32, c as u32, &xb, &gb, &dyb, &rb, &yb, &dgb);
    let bytes = Rate::Bytes(12.0 * n as f64);
    let r = bench_one(
        gpu,
        "rmsnorm backward".into(),
        tag.clone(),
        &ops,
        reps,
        bytes,
        async || {
            let got = gpu.read_f32("dx", &yb, n).await?;
            Ok(Check::compare(
                "rmsnorm backward",
                &got,
                &want_dx,
                1e-5,
                1e-4,
            ))
        },
    );
    results.push(r.await?);

    // SwiGLU forward and backward (x as the gate, dy as the up projection).
    let want_h = cs::swiglu_forward(&x, &dy);
    let ops = [gpu.swiglu_forward(n as u32, &xb, &dyb, &yb)];
    let r = bench_one(
        gpu,
        "swiglu forward".into(),
        tag.clone(),
        &ops,
        reps,
        Rate::Bytes(12.0 * n as f64),
        async || {
            let got = gpu.read_f32("h", &yb, n).await?;
            Ok(Check::compare("swiglu forward", &got, &want_h, 1e-5, 1e-4))
        },
    );
    results.push(r.await?);
    let (want_da, _) = cs::swiglu_backward(&x, &dy, &x);
    let ops = [gpu.swiglu_backward(n as u32, &xb, &dyb, &xb, &yb, &y2b)];
    let r = bench_one(
        gpu,
        "swiglu backward".into(),
        tag.clone(),
        &ops,
        reps,
        Rate::Bytes(20.0 * n as f64),
        async || {
            let got = gpu.read_f32("dgate", &yb, n).await?;
            Ok(Check::compare(
                "swiglu backward",
                &got,
                &want_da,
                1e-5,
                1e-4,
            ))
        },
    );
    results.push(r.await?);

    // RoPE over heads of 64.
    let (t, h, d) = (rows, c / 64, 64);
    if h > 0 {
        let len = t * h * d;
        let (cos, sin) = cr::rope_tables(t, d, 10000.0);
        let (cb, sb) = (gpu.upload_f32("cos", &cos)?, gpu.upload_f32("sin", &sin)?);
        let want = cr::rope(&x[..len], &cos, &sin, 1, t, h, d, 0, false);
        let ops = [gpu.rope(
            false,
            [1, t as u32, h as u32, d as u32],
            0,
            &xb,
            &cb,
            &sb,
            &yb,
        )];
        let shape = format!("{t}x{h}x{d}");
        let r = bench_one(
            gpu,
            "rope forward".into(),
            shape,
            &ops,
            reps,
            Rate::Bytes(8.0 * len as f64),
            async || {
                let got = gpu.read_f32("rope", &yb, len).await?;
                Ok(Check::compare("rope forward", &got, &want, 1e-6, 1e-5))
            },
        );
        results.push(r.await?);
    }

    // Embedding gather of `rows` tokens from a table of 4·size rows.
    let vocab = 4 * size;
    let table = rng.vec(vocab * c, 1.0);
    let ids: Vec<u32> = (0..rows)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect();
    let (tb, ib) = (
        gpu.upload_f32("table", &table)?,
        gpu.upload("ids", bytemuck::cast_slice(&ids))?,
    );
    let want = ce::embedding_forward(&table, &ids, c);
    let ops = [gpu.embedding_forward(rows as u32, c as u32, vocab as u32, &tb, &ib, &yb)];
    let r = bench_one(
        gpu,
        "embedding forward".into(),
        format!("{vocab}x{c} tokens {rows}"),
        &ops,
        reps,
        Rate::Bytes(8.0 * n as f64),
        async || {
            let got = gpu.read_f32("y", &yb, n).await?;
            Ok(Check::compare("embedding forward", &got, &want, 0.0, 0.0))
        },
    );
    results.push(r.await?);

    // Cross-entropy over a 32000-token vocabulary.
    let (xr, xv) = ((size / 16).max(1), 32_000usize);
    let logits = rng.vec(xr * xv, 3.0);
    let targets: Vec<i32> = (0..xr)
        .map(|_| (rng.next_u64() % xv as u64) as i32)
        .collect();
    let (want_loss, want_lse) = cx::xent_forward(&logits, &targets, xv);
    let want_d = cx::xent_backward(&logits, &targets, &want_lse, xv);
    let (lb, tgb) = (
        gpu.upload_f32("logits", &logits)?,
        gpu.upload("targets", bytemuck::cast_slice(&targets))?,
    );
    let (lseb, lossb, dlb) = (
        gpu.storage("lse", 4 * xr as u64)?,
        gpu.storage("loss", 4 * xr as u64)?,
        gpu.storage("dlogits", 4 * (xr * xv) as u64)?,
    );
    let (r32, v32) = (xr as u32, xv as u32);
    let shape = format!("{xr}x{xv}");
    let ops = [gpu.xent_forward(r32, v32, r32 as f32, &lb, &tgb, &lseb, &lossb)];
    let r = bench_one(
        gpu,
        "xent forward".into(),
        shape.clone(),
        &ops,
        reps,
        Rate::Bytes(4.0 * (xr * xv) as f64),
        async || {
            let loss: f32 = gpu.read_f32("loss", &lossb, xr).await?.iter().sum();
            Ok(Check::compare(
                "xent forward",
                &[loss],
                &[want_loss],
                1e-5,
                1e-5,
            ))
        },
    );
    results.push(r.await?);
    let ops = [gpu.xent_backward(r32, v32, r32 as f32, &lb, &tgb, &lseb, &dlb)];
    let r = bench_one(
        gpu,
        "xent backward".into(),
        shape,
        &ops,
        reps,
        Rate::Bytes(8.0 * (xr * xv) as f64),
        async || {
            let got = gpu.read_f32("dlogits", &dlb, xr * xv).await?;
            Ok(Check::compare("xent backward", &got, &want_d, 1e-7, 1e-4))
        },
    );
    results.push(r.await?);

    // Causal grouped-query attention.
    let s = AttnShape {
        b: 1,
        t: (size / 2).max(1),
        hq: 8,
        hkv: 2,
        d: 64,
    };
    let (nq, nk) = (s.t * s.hq * s.d, s.t * s.hkv * s.d);
    let (q, k, v, dout) = (
        rng.vec(nq, 1.0),
        rng.vec(nk, 1.0),
        rng.vec(nk, 1.0),
        rng.vec(nq, 1.0),
    );
    let (want_o, want_lse) = attention_forward(&s, &q, &k, &v);
    let (want_dq, _, _) = attention_backward(&s, &q, &k, &v, &want_o, &want_lse, &dout);
    let (qb, kb, vb, db) = (
        gpu.upload_f32("q", &q)?,
        gpu.upload_f32("k", &k)?,
        gpu.upload_f32("v", &v)?,
        gpu.upload_f32("dout", &dout)?,
    );
    let (ob, sb, dqb, dkvb) = (
        gpu.storage("o", 4 * nq as u64)?,
        gpu.storage("stats", 8 * (s.hq * s.t) as u64)?,
        gpu.storage("dq", 4 * nq as u64)?,
        gpu.storage("dkv", 8 * nk as u64)?,
    );
    let shape = [1, s.t as u32, s.hq as u32, s.hkv as u32, s.d as u32];
    let tag = format!("t{} hq{} hkv{} d{}", s.t, s.hq, s.hkv, s.d);
    // Causal: half of the T×T scores; QKᵀ and PV are 2·d flops per score each.
    let fwd_flops = 2.0 * (s.t * s.t * s.d * s.hq) as f64;
    let ops = gpu.attention_forward(shape, &qb, &kb, &vb, &ob, &sb)?;
    let r = bench_one(
        gpu,
        "attention forward".into(),
        tag.clone(),
        &ops,
        reps,
        Rate::Flops(fwd_flops),
        async || {
            let got = gpu.read_f32("o", &ob, nq).await?;
            Ok(Check::compare(
                "attention forward",
                &got,
                &want_o,
                1e-5,
                1e-4,
            ))
        },
    );
    results.push(r.await?);
    // The backward recomputes the scores and makes dV, dP, dQ and dK: 2.5× the forward's work.
    let ops = gpu.attention_backward(shape, &qb, &kb, &vb, &ob, &sb, &db, &dqb, &dkvb)?;
    let r = bench_one(
        gpu,
        "attention backward".into(),
        tag,
        &ops,
        reps,
        Rate::Flops(2.5 * fwd_flops),
        async || {
            let got = gpu.read_f32("dq", &dqb, nq).await?;
            Ok(Check::compare(
                "attention backward",
                &got,
                &want_dq,
                1e-5,
                1e-3,
            ))
        },
    );
    results.push(r.await?);

    // AdamW over size×size parameters (x as gradients, no clipping).
    let (_, norm) = gpu.norm_buffers(1)?;
    let opt = AdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let p0 = rng.vec(n, 1.0);
    let (pb, mb, vb) = (
        gpu.upload_f32("p", &p0)?,
        gpu.storage("m", 4 * n as u64)?,
        gpu.storage("v", 4 * n as u64)?,
    );
    let (mut p, mut m, mut vv) = (p0, vec![0f32; n], vec![0f32; n]);
    opt.step(&mut p, &x, &mut m, &mut vv, 1, 1.0);
    let step = AdamStep {
        lr: opt.lr,
        beta1: opt.beta1,
        beta2: opt.beta2,
        eps: opt.eps,
        weight_decay: opt.weight_decay,
        step: 1,
    };
    let ops = [gpu.adamw(n as u32, &step, 1, false, &xb, &pb, &mb, &vb, &norm)];
    let r = bench_one(
        gpu,
        "adamw".into(),
        format!("{n}"),
        &ops,
        reps,
        Rate::Bytes(28.0 * n as f64),
        async || {
            let got = gpu.read_f32("p", &pb, n).await?;
            Ok(Check::compare("adamw", &got, &p, 1e-6, 1e-5))
        },
    );
    results.push(r.await?);
    Ok(())
}
