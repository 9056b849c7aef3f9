//! `bitnet bench train`: full training steps of a model with random weights, against the plain
//! matmul on the same adapter.

use std::time::Instant;

use bitnet_core::quant::Quantizer;

use super::time_ops;
use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::GemmSpec;
use crate::selftest::Rng;

/// Weights for a benchmark of `cfg`: norm gains 1, everything else normal with σ = 0.02.
pub fn random_weights(
    cfg: &bitnet_core::config::ModelConfig,
    rng: &mut Rng,
) -> std::collections::BTreeMap<String, Vec<f32>> {
    use bitnet_core::params::{Role, param_table};
    param_table(cfg)
        .into_iter()
        .map(|p| {
            let v = if p.role == Role::Norm {
                vec![1.0; p.numel()]
            } else {
                rng.vec(p.numel(), 0.02)
            };
            (p.name, v)
        })
        .collect()
}

/// `bitnet bench train`: full training steps (forward, backward, clipping, AdamW) of one config.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainBench {
    pub adapter: String,
    pub model: String,
    pub parameters: u64,
    pub batch: usize,
    pub seq_len: usize,
    /// Median seconds per optimizer step (one micro-batch).
    pub step_seconds: f64,
    pub tokens_per_s: f64,
    /// Multiply-adds of the step's products (linear layers and attention) ×2 per second.
    pub step_gflops: f64,
    /// The plain register/tiled matmul's GFLOP/s at 512³ on the same adapter.
    pub matmul_gflops: f64,
    /// step_gflops / matmul_gflops.
    pub fraction_of_matmul: f64,
    /// Bytes of every GPU buffer the run created (weights, gradients, moments, activations).
    pub gpu_bytes: u64,
}

/// Times `steps` training steps (after one warm-up step that compiles the pipelines) of `cfg` with
/// random weights on random tokens, λ = 0.5.
pub async fn bench_train(
    gpu: &Gpu,
    name: &str,
    cfg: &bitnet_core::config::ModelConfig,
    batch: usize,
    seq_len: usize,
    steps: usize,
) -> Result<TrainBench, GpuError> {
    use crate::model::{Batch, GpuModel, ModelSetup};
    use crate::optimizer::{AdamConfig, Optimizer};

    let clock = Instant::now();
    gpu.tune_gemm(&|| clock.elapsed().as_secs_f64() * 1e3)
        .await?;
    let mut rng = Rng::new(11);
    let weights = random_weights(cfg, &mut rng);
    let tokens: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..seq_len)
                .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
                .collect()
        })
        .collect();
    let targets = bitnet_core::cpu::model::next_token_targets(&tokens, None);
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
        subln: false,
        act8: false,
    };
    let m = GpuModel::new(gpu, cfg, &weights, setup)?;
    let opt = Optimizer::new(gpu, &m, AdamConfig::default())?;
    let b = Batch::new(gpu, cfg, &tokens, &targets)?;
    let mut ops = m.zero_grads();
    ops.extend(m.forward_backward(gpu, &b, Some(0.5))?);
    ops.extend(opt.step_ops(gpu, &m, 1, 1e-4));
    let rows = batch * seq_len;
    let mut times = Vec::new();
    for rep in 0..=steps.max(1) {
        let start = Instant::now();
        gpu.submit(&ops);
        let loss: f32 = gpu.read_f32("loss", &b.loss, rows).await?.iter().sum();
        if !loss.is_finite() {
            return Err(GpuError::Device {
                what: "bench train".into(),
                message: format!("the loss is {loss}"),
            });
        }
        if rep > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let secs = times[times.len() / 2];

    // The products of one step: 3 per linear layer (forward, dX, dW), attention forward and 2.5×
    // that backward.
    let n = rows as f64;
    let (h, i, v) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.vocab_size as f64,
    );
    let (qd, kvd) = (
        (cfg.num_attention_heads * cfg.head_dim) as f64,
        (cfg.num_key_value_heads * cfg.head_dim) as f64,
    );
    let per_layer = h * qd + 2.0 * h * kvd + qd * h + 3.0 * h * i;
    let linear = 6.0 * n * (cfg.num_hidden_layers as f64 * per_layer + h * v);
    let attn_fwd = 2.0
        * batch as f64
        * (seq_len * seq_len) as f64
        * (cfg.num_attention_heads * cfg.head_dim) as f64;
    let attention = 3.5 * attn_fwd * cfg.num_hidden_layers as f64;
    let step_gflops = (linear + attention) / secs / 1e9;

    // The plain matmul on the same adapter, for the ratio.
    let size = 512usize;
    let (x, w) = (rng.vec(size * size, 1.0), rng.vec(size * size, 0.05));
    let (xb, wb) = (gpu.upload_f32("x", &x)?, gpu.upload_f32("w", &w)?);
    let yb = gpu.storage("y", 4 * (size * size) as u64)?;
    let spec = GemmSpec {
        m: size as u32,
        n: size as u32,
        k: size as u32,
        trans_b: true,
        ..Default::default()
    };
    let mm = [gpu.gemm_op(gpu.gemm_plan().variant, &spec, &xb, &wb, None, None, &yb)];
    let mm_ms = time_ops(gpu, &mm, 3)?;
    let matmul_gflops = 2.0 * (size * size * size) as f64 / mm_ms / 1e6;
    Ok(TrainBench {
        adapter: gpu.info.name.clone(),
        model: name.to_string(),
        parameters: bitnet_core::params::parameter_count(cfg),
        batch,
        seq_len,
        step_seconds: secs,
        tokens_per_s: n / secs,
        step_gflops,
        matmul_gflops,
        fraction_of_matmul: step_gflops / matmul_gflops,
        gpu_bytes: gpu.allocated_bytes(),
    })
}
