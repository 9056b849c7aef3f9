//! `bitnet grads`: loss, logits and every gradient of one batch on the GPU under the Hugging Face
//! names (bitnet_pipeline::grads), to check the implementation against another framework.

use std::path::PathBuf;

use bitnet_gpu::model::ModelSetup;
use bitnet_pipeline::{Ctx, Store};

use crate::args::QuantArgs;
use crate::error::{CliError, CliResult};
use crate::output::print_json;
use crate::store::{DirFiles, DirStore};

/// Loss, logits and every parameter's gradient of one batch on the GPU, under the Hugging Face
/// names, so the implementation can be checked against another framework.
#[derive(clap::Args)]
pub struct Args {
    model_dir: PathBuf,
    /// JSON file: a list of token-id lists of equal length.
    #[arg(long)]
    tokens: PathBuf,
    /// λ of the blend W + λ·(Q(W) − W) of every projection (0: the model as it is).
    #[arg(long, default_value_t = 0.0)]
    lambda: f32,
    #[command(flatten)]
    quant: QuantArgs,
    /// Insert the post-attention RMSNorm (gain 1) after every o_proj.
    #[arg(long = "rmsnorm-post-attn", alias = "rmsnorm_post_attn")]
    rmsnorm_post_attn: bool,
    /// Insert SubLN (gains 1): an RMSNorm on the input of every o_proj and down_proj.
    #[arg(long)]
    subln: bool,
    /// Blend lm_head too.
    #[arg(long)]
    quantize_lm_head: bool,
    /// Output safetensors: loss (1,), logits (B, T, V), grad.<name> for every parameter.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    overwrite: bool,
    /// 8: round every projection's input to 8 bits per token (W1.58A8, straight-through).
    #[arg(long = "act-bits", alias = "act_bits", default_value_t = 16)]
    act_bits: u8,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let setup = ModelSetup {
        quantizer: a.quant.quantizer()?,
        post_attn_norm: a.rmsnorm_post_attn,
        quantize_lm_head: a.quantize_lm_head,
        subln: a.subln,
        act8: a.act_bits == 8,
    };
    if !matches!(a.act_bits, 8 | 16) {
        return Err(CliError::Usage(format!(
            "--act-bits must be 8 or 16, got {}",
            a.act_bits
        )));
    }
    let mut inputs = super::files_in(&a.model_dir);
    inputs.push(a.tokens.clone());
    super::check_outputs(std::slice::from_ref(&a.out), &inputs, a.overwrite)?;
    let text = super::read(&a.tokens)?;
    let tokens: Vec<Vec<u32>> = serde_json::from_slice(&text).map_err(|e| {
        CliError::io(
            &a.tokens,
            format!("expected a JSON list of token-id lists ({e})"),
        )
    })?;
    let files = DirFiles::open(&a.model_dir)?;
    let gpu = super::gpu()?;
    let ctx = Ctx::quiet(&gpu);
    let g = pollster::block_on(bitnet_pipeline::grads::grads(
        &ctx,
        &files,
        &a.model_dir.display().to_string(),
        &tokens,
        &a.tokens.display().to_string(),
        a.lambda,
        setup,
    ))?;
    let (store, key) = DirStore::of_file(&a.out)?;
    pollster::block_on(store.put(&key, &g.file))?;
    if json {
        return print_json(&serde_json::json!({
            "loss": g.loss,
            "lambda": a.lambda,
            "gradients": g.gradients,
            "out": a.out.display().to_string(),
            "adapter": gpu.info.name,
        }));
    }
    println!(
        "loss {:.6} at λ = {} on {}; logits and {} gradients written to {}",
        g.loss,
        a.lambda,
        gpu.info.name,
        g.gradients,
        a.out.display()
    );
    Ok(())
}
