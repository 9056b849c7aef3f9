//! `bitnet bench decode`: generation speed of one model three ways on the same adapter — f32
//! weights through the GEMM only (every decode step padded to the GEMM's block), f32 weights with
//! the matrix–vector kernel for decode steps, and the projections packed at 2 bits per weight —
//! with the GPU bytes of each.

use std::collections::BTreeMap;
use std::time::Instant;

use bitnet_core::config::ModelConfig;
use bitnet_core::quant::Ternary;
use bitnet_core::safetensors::Dtype;
use bitnet_core::sample::Sampling;

use super::Rng;
use crate::device::Gpu;
use crate::error::GpuError;
use crate::generate::{GenerateOptions, Generator};

/// One way of running the model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeRun {
    /// "f32 gemm", "f32 matvec" or "packed ternary" (+ "bf16 embedding").
    pub kernels: String,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Bytes of every weight on the GPU.
    pub weight_bytes: u64,
    /// Bytes of the ternary projections on the GPU (f32 in the f32 runs).
    pub projection_bytes: u64,
}

/// What each run generates: `batch` random prompts of `prompt_tokens`, `new_tokens` each.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DecodeWork {
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeBench {
    pub adapter: String,
    pub model: String,
    pub parameters: u64,
    #[serde(flatten)]
    pub work: DecodeWork,
    pub runs: Vec<DecodeRun>,
    /// Decode tokens/s of the matrix–vector kernel over the GEMM's.
    pub matvec_speedup: f64,
    /// Decode tokens/s of the packed weights over the matrix–vector kernel's.
    pub packed_speedup: f64,
    /// Packed projection bytes over their f32 bytes.
    pub packed_bytes_ratio: f64,
}

/// Generates `work` greedy (no end-of-sequence) with `weights` (f32), and in the packed run with
/// the ternary `codes` of the projections and the embedding and lm_head bf16 where `dtypes` says
/// the model stores them so; the prefill and the decode steps are timed separately, after
/// a first call that compiles the pipelines.
pub async fn bench_decode(
    gpu: &Gpu,
    name: &str,
    cfg: &ModelConfig,
    weights: &BTreeMap<String, Vec<f32>>,
    codes: &BTreeMap<String, Ternary>,
    dtypes: &BTreeMap<String, Dtype>,
    work: DecodeWork,
) -> Result<DecodeBench, GpuError> {
    let DecodeWork {
        batch,
        prompt_tokens,
        new_tokens,
    } = work;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64() * 1e3;
    gpu.tune_gemm(&now).await?;
    let mut rng = Rng::new(5);
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..prompt_tokens)
                .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
                .collect()
        })
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: new_tokens,
        sampling: Sampling::Greedy,
        seed: 0,
        first_stream: 0,
        eos: Vec::new(),
        keep_logits: false,
    };
    let none = BTreeMap::new();
    let f32_projections: u64 = codes.values().map(|t| 4 * t.codes.len() as u64).sum();
    let mut runs = Vec::new();
    let no_dtypes = BTreeMap::new();
    let bf16 = dtypes.values().any(|&d| d == Dtype::BF16);
    let packed_name = if bf16 {
        "packed ternary + bf16 embedding"
    } else {
        "packed ternary"
    };
    for (kernels, matvec, packed) in [
        ("f32 gemm", false, false),
        ("f32 matvec", true, false),
        (packed_name, true, true),
    ] {
        let (c, d) = if packed {
            (codes, dtypes)
        } else {
            (&none, &no_dtypes)
        };
        let mut g = Generator::new(gpu, cfg, weights, c, d)?;
        g.matvec = matvec;
        let warm = GenerateOptions {
            max_new_tokens: 2,
            ..opts.clone()
        };
        g.generate(gpu, &prompts, &warm, &now, &mut |_, _| {})
            .await?;
        let out = g
            .generate(gpu, &prompts, &opts, &now, &mut |_, _| {})
            .await?;
        let per_s = |tokens: usize, ms: f64| tokens as f64 * 1e3 / ms.max(1e-9);
        runs.push(DecodeRun {
            kernels: kernels.to_string(),
            prefill_tokens_per_s: per_s(out.prefill_tokens, out.prefill_ms),
            decode_tokens_per_s: per_s(out.decode_tokens, out.decode_ms),
            weight_bytes: g.weight_bytes(),
            projection_bytes: if packed {
                g.packed_bytes()
            } else {
                f32_projections
            },
        });
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(DecodeBench {
        adapter: gpu.info.name.clone(),
        model: name.to_string(),
        parameters: bitnet_core::params::parameter_count(cfg),
        work,
        matvec_speedup: ratio(runs[1].decode_tokens_per_s, runs[0].decode_tokens_per_s),
        packed_speedup: ratio(runs[2].decode_tokens_per_s, runs[1].decode_tokens_per_s),
        packed_bytes_ratio: ratio(runs[2].projection_bytes as f64, f32_projections as f64),
        runs,
    })
}
