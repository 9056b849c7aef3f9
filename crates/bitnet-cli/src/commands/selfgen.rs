//! `bitnet selfgen`: the model writes its own training data (bitnet_pipeline::selfgen), into a
//! JSONL file through a directory store.

use std::path::PathBuf;

use bitnet_core::quant::Quantizer;
use bitnet_core::sample::Sampling;
use bitnet_pipeline::selfgen::{SelfgenConfig, selfgen};
use bitnet_pipeline::{Control, Ctx};

use crate::args::GenFlags;
use crate::error::{CliError, CliResult};
use crate::output::{Printer, print_json};
use crate::store::DirStore;

/// Let the model write its own training data (JSONL), as the seed did: templates, sampling,
/// the five filters and exact-duplicate removal. Lines are written as they pass.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, alias = "model_path")]
    model: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Samples to keep.
    #[arg(long, default_value_t = 1000)]
    num: u64,
    #[command(flatten)]
    generation: GenFlags,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Continue an interrupted run of --out (same settings) up to --num.
    #[arg(long)]
    resume: bool,
    /// Stop after this many attempts (default 4 × --num).
    #[arg(long = "max-attempts", alias = "max_attempts")]
    max_attempts: Option<u64>,
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long = "top-p", alias = "top_p", default_value_t = 0.9)]
    top_p: f32,
    /// 0 keeps every token; 50 is transformers' default, which the seed ran with.
    #[arg(long = "top-k", alias = "top_k", default_value_t = 50)]
    top_k: usize,
    /// Also write the model's top K next tokens and their probabilities at every position of each
    /// kept sample's training text to OUT.soft (beside OUT.jsonl; 8·K bytes a position), so that
    /// `train --kd-topk K` distills without running the teacher.
    #[arg(long = "soft-labels", alias = "soft_labels")]
    soft_labels: Option<usize>,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let sampling = Sampling::new(a.temperature, a.top_p, a.top_k)
        .map_err(|e| CliError::Usage(format!("--{e}")))?;
    let (templates, templates_name) = a.generation.templates()?;
    let cfg = SelfgenConfig {
        num: a.num,
        max_new_tokens: a.generation.max_new_tokens,
        seed: a.seed,
        batch: a.generation.batch,
        resume: a.resume,
        max_attempts: a.max_attempts,
        templates,
        templates_name,
        chat: a.generation.chat,
        sampling,
        soft_labels: a.soft_labels,
    };
    let (store, key) = DirStore::of_file(&a.out)?;
    let gpu = super::tuned_gpu()?;
    let mut printer = Printer::new(json);
    let ctx = Ctx::new(&gpu, Control::new(), |e| printer.event(e));
    let m = super::generate::load(&ctx, &a.model, false, Quantizer::Absmean)?;
    if !a.generation.chat && m.chat.is_some() && !json {
        eprintln!(
            "note: {} has a chat template; --chat prompts through it (the seed used the plain `Instruction: …\\nResponse:` format)",
            m.name
        );
    }
    let report = pollster::block_on(selfgen(&ctx, &m, &store, &key, &cfg))?;
    if json {
        return print_json(&report);
    }
    Ok(())
}
