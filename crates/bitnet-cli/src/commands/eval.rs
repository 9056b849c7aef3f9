//! `bitnet eval`: perplexity of a model (folder or packed file) over a JSONL dataset and a plain
//! text, its exact-match accuracy over a task file — or, with `--compare`, the original and the
//! ternary model side by side with the ternary model's KL to the original.

use std::path::PathBuf;

use bitnet_core::dataset::LossMask;
use bitnet_pipeline::Ctx;
use bitnet_pipeline::eval::EvalOptions;
use bitnet_pipeline::quality::{QualityInputs, compare_models, measure};
use bitnet_pipeline::run::named;

use super::run::named_file;
use crate::args::QuantArgs;
use crate::error::{CliError, CliResult};
use crate::output::{print_json, print_quality};

/// Perplexity of a model (folder or packed file) over a JSONL dataset in the training format and a
/// plain text, and exact-match accuracy of its greedy answers over a task file (JSONL, `output` =
/// the answer); with --compare, the original and a ternary model side by side, with the KL.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// JSONL in the training format: perplexity over it.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// A plain text file: perplexity over it, in windows of --seq-len tokens.
    #[arg(long)]
    text: Option<PathBuf>,
    /// The ternary model (packed file, or a folder ternarized as it loads) to compare with
    /// --model, the original: both measured side by side, with the ternary model's KL to the
    /// original on --dataset and --text.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// JSONL tasks {"instruction", "output", "domain"}: the share answered exactly (greedy, in
    /// the training text's prompt format).
    #[arg(long)]
    task: Option<PathBuf>,
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
    if a.dataset.is_none() && a.text.is_none() && a.task.is_none() {
        return Err(CliError::Usage(
            "bitnet eval needs --dataset FILE (perplexity on JSONL), --text FILE (perplexity on plain text), --task FILE (accuracy), or several".into(),
        ));
    }
    if a.compare.is_some() && a.ternary {
        return Err(CliError::Usage(
            "--ternary and --compare: --model is the original (full precision) and --compare the ternary model".into(),
        ));
    }
    let quantizer = a.quant.quantizer()?;
    let (data, text, tasks) = (
        named_file(&a.dataset)?,
        named_file(&a.text)?,
        named_file(&a.task)?,
    );
    let inputs = QualityInputs {
        held_out: named(&data),
        text: named(&text),
        tasks: named(&tasks),
        opts: EvalOptions {
            seq_len: a.seq_len,
            loss_mask: a.loss_mask,
            bsz: a.bsz,
        },
    };
    let gpu = super::tuned_gpu()?;
    let ctx = Ctx::quiet(&gpu);
    let m = super::generate::load(&ctx, &a.model, a.ternary, quantizer)?;
    if let Some(path) = &a.compare {
        let t = super::generate::load(&ctx, path, true, quantizer)?;
        let report = pollster::block_on(compare_models(&ctx, &m, &t, &inputs))?;
        if json {
            return print_json(&report);
        }
        print_quality(&report, "original", "ternary");
        println!("  original: {}\n  ternary:  {}", m.name, t.name);
        return Ok(());
    }
    let side = pollster::block_on(measure(&ctx, &m, None, &inputs, &m.name))?;
    if json {
        return print_json(&side);
    }
    let model = format!("{}{}", m.name, if m.ternary { " (ternary)" } else { "" });
    for p in [&side.held_out, &side.text].into_iter().flatten() {
        println!(
            "{model}: perplexity {:.4} (mean loss {:.4} over {} tokens of {} examples in {})",
            p.perplexity, p.mean_loss, p.tokens, p.examples, p.data
        );
    }
    if let Some(t) = &side.tasks {
        println!(
            "{model}: accuracy {:.1} % ({} of {} tasks in {} answered exactly)",
            t.accuracy * 100.0,
            t.correct,
            t.tasks,
            t.file
        );
        for d in t.domains.iter().filter(|d| !d.domain.is_empty()) {
            println!(
                "  {:<14} {:>5.1} % ({} of {})",
                d.domain,
                d.accuracy * 100.0,
                d.correct,
                d.tasks
            );
        }
    }
    Ok(())
}
