//! Perplexity: exp of the mean next-token cross-entropy over every trained position of a JSONL
//! dataset in the training text format, on a forward-only model (no gradient or optimizer
//! buffers).

use bitnet_core::dataset::{LossMask, pad_batch, parse_jsonl};
use bitnet_core::limits::at_least;
use bitnet_core::quant::Quantizer;
use bitnet_gpu::model::{GpuModel, ModelSetup};

use crate::Ctx;
use crate::error::{PipelineError, Result};
use crate::load::Loaded;
use crate::train::tokenize_dataset;

/// Perplexity of a model over a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Perplexity {
    pub model: String,
    pub ternary: bool,
    pub examples: usize,
    pub tokens: u64,
    pub mean_loss: f64,
    pub perplexity: f64,
}

/// How the dataset is cut and batched.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub seq_len: usize,
    pub loss_mask: LossMask,
    /// Sequences per batch.
    pub bsz: usize,
}

/// The perplexity of `m` over the JSONL `dataset` (named `data_name`).
pub async fn perplexity(
    ctx: &Ctx<'_>,
    m: &Loaded,
    dataset: &[u8],
    data_name: &str,
    opts: &EvalOptions,
) -> Result<Perplexity> {
    let gpu = ctx.gpu;
    at_least(&[
        ("--seq-len", opts.seq_len as u64, 2),
        ("--bsz", opts.bsz as u64, 1),
    ])
    .map_err(PipelineError::Invalid)?;
    let examples =
        parse_jsonl(data_name, dataset).map_err(|e| PipelineError::input(data_name, e))?;
    if examples.is_empty() {
        return Err(PipelineError::Invalid(format!("{data_name}: no examples")));
    }
    let cfg = &m.model.config;
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: m.post_attn_norm(),
        quantize_lm_head: false,
        subln: m.subln(),
    };
    let seqs = tokenize_dataset(
        &m.tokenizer,
        cfg,
        &examples,
        data_name,
        opts.seq_len,
        opts.loss_mask,
    )?;
    let gm = GpuModel::for_inference(gpu, cfg, &m.weights, setup)?;
    let pad = m.eos.first().copied().unwrap_or(0);
    let (mut nll, mut count) = (0f64, 0u64);
    for chunk in seqs.chunks(opts.bsz) {
        ctx.control.between_steps().await?;
        let padded = pad_batch(chunk, pad);
        let batch = gm.batch(gpu, &padded.tokens, &padded.targets)?;
        if batch.n_valid == 0 {
            continue;
        }
        gpu.submit(&gm.forward_loss(gpu, &batch, None)?);
        let rows = (batch.b * batch.t) as usize;
        let loss: f64 = gpu
            .read_f32("loss", &batch.loss, rows)
            .await?
            .iter()
            .map(|&x| x as f64)
            .sum();
        nll += loss * batch.n_valid as f64;
        count += batch.n_valid as u64;
    }
    if count == 0 {
        return Err(PipelineError::Invalid(format!(
            "{data_name}: no token to score"
        )));
    }
    let mean_loss = nll / count as f64;
    if !mean_loss.is_finite() {
        return Err(PipelineError::Invalid(format!(
            "{}: the loss over {data_name} is not finite ({mean_loss})",
            m.name
        )));
    }
    Ok(Perplexity {
        model: m.name.clone(),
        ternary: m.ternary,
        examples: examples.len(),
        tokens: count,
        mean_loss,
        perplexity: mean_loss.exp(),
    })
}
