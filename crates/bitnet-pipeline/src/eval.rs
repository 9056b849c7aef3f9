//! Perplexity: exp of the mean next-token cross-entropy over every trained position of a JSONL
//! dataset in the training text format, or over a plain text cut into windows of the sequence
//! length, on a forward-only model (no gradient or optimizer buffers) — and, against a reference
//! model (the original), the mean KL(p_reference ‖ p_model) over the same positions.

use bitnet_core::dataset::{LossMask, Sequence, pad_batch, parse_jsonl};
use bitnet_core::limits::at_least;
use bitnet_core::quant::Quantizer;
use bitnet_gpu::kernels::Distill;
use bitnet_gpu::model::{GpuModel, ModelSetup};

use crate::Ctx;
use crate::error::{PipelineError, Result};
use crate::load::Loaded;
use crate::train::tokenize_dataset;

/// Perplexity of a model over a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Perplexity {
    pub model: String,
    /// What was scored (the file's name).
    #[serde(default)]
    pub data: String,
    pub ternary: bool,
    pub examples: usize,
    pub tokens: u64,
    pub mean_loss: f64,
    pub perplexity: f64,
    /// Mean KL(p_reference ‖ p_model) per scored token, in nats, when measured against a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_to_reference: Option<f64>,
}

/// How the dataset is cut and batched.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub seq_len: usize,
    pub loss_mask: LossMask,
    /// Sequences per batch.
    pub bsz: usize,
}

impl EvalOptions {
    fn check(&self) -> Result<()> {
        at_least(&[
            ("--seq-len", self.seq_len as u64, 2),
            ("--bsz", self.bsz as u64, 1),
        ])
        .map_err(PipelineError::Invalid)
    }
}

/// What is scored: the JSONL examples (in the training format) or plain text.
#[derive(Debug, Clone, Copy)]
pub enum Scored<'a> {
    Jsonl(&'a [u8]),
    Text(&'a [u8]),
}

/// The perplexity of `m` over the JSONL `dataset` (named `data_name`).
pub async fn perplexity(
    ctx: &Ctx<'_>,
    m: &Loaded,
    dataset: &[u8],
    data_name: &str,
    opts: &EvalOptions,
) -> Result<Perplexity> {
    score(ctx, m, None, Scored::Jsonl(dataset), data_name, opts).await
}

/// The sequences of `data` for `m`, and how many examples they came from.
fn sequences(
    m: &Loaded,
    data: Scored<'_>,
    name: &str,
    opts: &EvalOptions,
) -> Result<(Vec<Sequence>, usize)> {
    let cfg = &m.model.config;
    match data {
        Scored::Jsonl(bytes) => {
            let examples = parse_jsonl(name, bytes).map_err(|e| PipelineError::input(name, e))?;
            if examples.is_empty() {
                return Err(PipelineError::Invalid(format!("{name}: no examples")));
            }
            let seqs = tokenize_dataset(
                &m.tokenizer,
                cfg,
                &examples,
                name,
                opts.seq_len,
                opts.loss_mask,
            )?;
            Ok((seqs, examples.len()))
        }
        Scored::Text(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                PipelineError::Invalid(format!(
                    "{name}: not UTF-8 text (byte {}); save it as UTF-8",
                    e.valid_up_to()
                ))
            })?;
            let ids = m
                .tokenizer
                .encode(text, true)
                .map_err(|e| PipelineError::input(name, e))?;
            if ids.len() < 2 {
                return Err(PipelineError::Invalid(format!(
                    "{name}: {} token(s); perplexity needs at least 2",
                    ids.len()
                )));
            }
            // Windows of the sequence length (at most the model's context), each scored on its
            // own: every token but a window's first is a target once.
            let window = opts.seq_len.min(cfg.context().0);
            let seqs: Vec<Sequence> = ids
                .chunks(window)
                .filter(|w| w.len() >= 2)
                .map(|w| Sequence {
                    ids: w.to_vec(),
                    keep: vec![true; w.len()],
                })
                .collect();
            Ok((seqs, 1))
        }
    }
}

/// The inference model of `m` on the GPU (its ternary projections packed at 2 bits per weight).
pub(crate) fn inference_model(ctx: &Ctx<'_>, m: &Loaded) -> Result<GpuModel> {
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: m.post_attn_norm(),
        quantize_lm_head: false,
        subln: m.subln(),
        act8: m.act8,
    };
    let mut model = GpuModel::for_inference(ctx.gpu, &m.model.config, &m.weights, setup)?;
    model.pack_projections(ctx.gpu, &m.codes)?;
    Ok(model)
}

/// The perplexity of `m` over `data` (named `name`), and with a `reference` model (same
/// tokenizer and vocabulary) the mean KL(p_reference ‖ p_m) over the same positions.
pub async fn score(
    ctx: &Ctx<'_>,
    m: &Loaded,
    reference: Option<&Loaded>,
    data: Scored<'_>,
    name: &str,
    opts: &EvalOptions,
) -> Result<Perplexity> {
    let gpu = ctx.gpu;
    opts.check()?;
    let (seqs, examples) = sequences(m, data, name, opts)?;
    let cfg = &m.model.config;
    if let Some(r) = reference
        && r.model.config.vocab_size != cfg.vocab_size
    {
        return Err(PipelineError::Invalid(format!(
            "{} has a vocabulary of {} ids and {} of {}: the KL needs one vocabulary",
            r.name, r.model.config.vocab_size, m.name, cfg.vocab_size
        )));
    }
    let gm = inference_model(ctx, m)?;
    let gr = reference.map(|r| inference_model(ctx, r)).transpose()?;
    let pad = m.eos.first().copied().unwrap_or(0);
    let (mut nll, mut kl, mut count) = (0f64, 0f64, 0u64);
    for chunk in seqs.chunks(opts.bsz) {
        ctx.control.between_steps().await?;
        let padded = pad_batch(chunk, pad);
        let batch = gm.batch(gpu, &padded.tokens, &padded.targets)?;
        if batch.n_valid == 0 {
            continue;
        }
        let rows = (batch.b * batch.t) as usize;
        gpu.submit(&gm.forward_loss(gpu, &batch, None)?);
        let sum = |v: Vec<f32>| v.iter().map(|&x| x as f64).sum::<f64>();
        nll += sum(gpu.read_f32("loss", &batch.loss, rows).await?) * batch.n_valid as f64;
        if let Some(gr) = &gr {
            let rb = gr.batch(gpu, &padded.tokens, &padded.targets)?;
            let f = |name: &str, len: usize| gpu.storage(name, 4 * len as u64);
            let (stats, loss) = (f("kl stats", 2 * rows)?, f("kl loss", rows)?);
            let mut ops = gr.forward_loss(gpu, &rb, None)?;
            let (r32, v32) = (rows as u32, cfg.vocab_size as u32);
            let one = Distill {
                temperature: 1.0,
                weight: 1.0,
            };
            ops.push(gpu.kl_forward(
                r32,
                v32,
                batch.n_valid,
                one,
                batch.logits(),
                rb.logits(),
                &batch.targets,
                &stats,
                &loss,
            ));
            gpu.submit(&ops);
            kl += sum(gpu.read_f32("kl loss", &loss, rows).await?) * batch.n_valid as f64;
        }
        count += batch.n_valid as u64;
    }
    if count == 0 {
        return Err(PipelineError::Invalid(format!("{name}: no token to score")));
    }
    let mean_loss = nll / count as f64;
    if !mean_loss.is_finite() {
        return Err(PipelineError::Invalid(format!(
            "{}: the loss over {name} is not finite ({mean_loss})",
            m.name
        )));
    }
    Ok(Perplexity {
        model: m.name.clone(),
        data: name.to_string(),
        ternary: m.ternary,
        examples,
        tokens: count,
        mean_loss,
        perplexity: mean_loss.exp(),
        kl_to_reference: gr.map(|_| kl / count as f64),
    })
}
