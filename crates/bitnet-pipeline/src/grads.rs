//! One forward and backward pass over a batch on the GPU, with the loss, the logits and every
//! parameter's gradient under the Hugging Face names, as a safetensors file — to check the
//! implementation against another framework (`bitnet grads`; our tests check it against PyTorch).

use bitnet_core::cpu::model::{post_attn_norm_name, subln_names};
use std::collections::BTreeMap;

use bitnet_core::cpu::model::next_token_targets;
use bitnet_core::model::ModelFiles;
use bitnet_core::safetensors::{OwnedTensor, serialize};
use bitnet_gpu::model::{GpuModel, ModelSetup};

use crate::Ctx;
use crate::error::{PipelineError, Result};
use crate::load::open_model;

/// The result of [`grads`].
pub struct Grads {
    pub loss: f32,
    /// Number of gradient tensors in `file`.
    pub gradients: usize,
    /// safetensors: `loss` (1,), `logits` (B, T, V), `grad.<name>` for every parameter.
    pub file: Vec<u8>,
}

/// Loss, logits and gradients of the model in `files` over `tokens` (equal-length id lists, named
/// `tokens_name`) at blend factor `lambda`.
pub async fn grads<F: ModelFiles>(
    ctx: &Ctx<'_>,
    files: &F,
    model_name: &str,
    tokens: &[Vec<u32>],
    tokens_name: &str,
    lambda: f32,
    setup: ModelSetup,
) -> Result<Grads> {
    if !(0.0..=1.0).contains(&lambda) {
        return Err(PipelineError::Invalid(format!(
            "--lambda must be between 0 and 1, got {lambda}"
        )));
    }
    let gpu = ctx.gpu;
    let model = open_model(files, model_name).await?;
    let cfg = &model.config;
    let weights = model
        .all_f32(files)
        .await
        .map_err(|e| PipelineError::input(model_name, e))?;
    let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
    let (context, field) = cfg.context();
    if longest > context {
        return Err(PipelineError::Invalid(format!(
            "{tokens_name}: a sequence of {longest} tokens is longer than the context of {model_name}: {context} tokens ({field} in config.json)"
        )));
    }
    let targets = next_token_targets(tokens, None);
    // A folder that carries trained extra norms (our Hugging Face exports) has them.
    let mut setup = setup;
    setup.post_attn_norm |= weights.contains_key(&post_attn_norm_name(0));
    setup.subln |= weights.contains_key(&subln_names(0)[0]);
    let m = GpuModel::new(gpu, cfg, &weights, setup)?;
    let batch = m
        .batch(gpu, tokens, &targets)
        .map_err(|e| PipelineError::Invalid(format!("{tokens_name}: {e}")))?;
    let blend = (lambda > 0.0).then_some(lambda);
    gpu.submit(&m.forward_backward(gpu, &batch, blend)?);
    let (b, t) = (tokens.len(), tokens[0].len());
    let loss: f32 = gpu.read_f32("loss", &batch.loss, b * t).await?.iter().sum();
    let logits = gpu
        .read_f32("logits", batch.logits(), b * t * cfg.vocab_size)
        .await?;
    let mut tensors = vec![
        OwnedTensor::f32("loss", vec![1], &[loss]),
        OwnedTensor::f32("logits", vec![b, t, cfg.vocab_size], &logits),
    ];
    for name in &m.names {
        let (Some(buf), shape) = (m.grad(name), m.shape(name)) else {
            continue;
        };
        let g = gpu.read_f32(name, buf, m.numel(name)).await?;
        tensors.push(OwnedTensor::f32(format!("grad.{name}"), shape, &g));
    }
    let mut meta = BTreeMap::new();
    meta.insert("lambda".to_string(), lambda.to_string());
    meta.insert("quantizer".to_string(), setup.quantizer.name().to_string());
    meta.insert(
        "rmsnorm_post_attn".to_string(),
        setup.post_attn_norm.to_string(),
    );
    meta.insert("subln".to_string(), setup.subln.to_string());
    meta.insert("adapter".to_string(), gpu.info.name.clone());
    let gradients = tensors.len() - 2;
    Ok(Grads {
        loss,
        gradients,
        file: serialize(tensors, &meta),
    })
}
