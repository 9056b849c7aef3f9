//! `bitnet eval`: perplexity of a model (folder or packed file) over a JSONL dataset.

use std::path::PathBuf;

use bitnet_core::dataset::LossMask;
use bitnet_pipeline::Ctx;
use bitnet_pipeline::eval::{EvalOptions, perplexity};

use crate::args::QuantArgs;
use crate::error::CliResult;
use crate::output::print_json;

/// Perplexity of a model (folder or packed file) over a JSONL dataset in the training format.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long)]
    ternary: bool,
    #[command(flatten)]
    quant: QuantArgs,
    #[arg(long = "seq-len", alias = "seq_len", default_value_t = 512)]
    seq_len: usize,
    #[arg(long = "loss-mask", alias = "loss_mask", default_value = "all")]
    loss_mask: LossMask,
    /// Sequences per batch.
    #[arg(long, default_value_t = 4)]
    bsz: usize,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let quantizer = a.quant.quantizer()?;
    let data = super::read(&a.dataset)?;
    let gpu = super::tuned_gpu()?;
    let ctx = Ctx::quiet(&gpu);
    let m = super::generate::load(&ctx, &a.model, a.ternary, quantizer)?;
    let opts = EvalOptions {
        seq_len: a.seq_len,
        loss_mask: a.loss_mask,
        bsz: a.bsz,
    };
    let p = pollster::block_on(perplexity(
        &ctx,
        &m,
        &data,
        &a.dataset.display().to_string(),
        &opts,
    ))?;
    if json {
        return print_json(&p);
    }
    println!(
        "{}{}: perplexity {:.4} (mean loss {:.4} over {} tokens of {} examples in {})",
        p.model,
        if p.ternary { " (ternary)" } else { "" },
        p.perplexity,
        p.mean_loss,
        p.tokens,
        p.examples,
        a.dataset.display()
    );
    Ok(())
}
