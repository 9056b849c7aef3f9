//! `bitnet run`: the seed's pipeline in one command (bitnet_pipeline::run over a directory store);
//! run it again with the same --out-dir to continue where it stopped.

use std::path::{Path, PathBuf};

use bitnet_pipeline::run::{RunConfig, RunReport, TRAIN_FOLDER};
use bitnet_pipeline::train::{METRICS_FILE, parse_metrics};
use bitnet_pipeline::{Control, Ctx, Store};

use crate::args::{GenFlags, TrainFlags};
use crate::error::{CliError, CliResult};
use crate::output::{Printer, print_json, print_quality};
use crate::store::{DirFiles, DirStore};

/// The whole pipeline: self-generate data, train toward ternary, pack, and perplexity before and
/// after on held-out samples. Run it again with the same --out-dir to continue where it stopped.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long = "out-dir", alias = "out_dir")]
    out_dir: PathBuf,
    /// Samples to self-generate.
    #[arg(long, default_value_t = 500)]
    num: u64,
    /// JSONL tasks {"instruction", "output", "domain"}: the exact-match accuracy of the base model,
    /// the base ternarized and the trained model is measured on them too.
    #[arg(long)]
    task: Option<PathBuf>,
    /// A plain text file: perplexity and KL to the base model are measured on it too.
    #[arg(long)]
    text: Option<PathBuf>,
    #[command(flatten)]
    generation: GenFlags,
    #[command(flatten)]
    flags: TrainFlags,
}

pub fn run(a: Args, json: bool) -> CliResult {
    if !a.model.is_dir() && !crate::store::is_gguf(&a.model) {
        return Err(CliError::io(
            &a.model,
            "`bitnet run` needs a Hugging Face model folder (config.json, tokenizer.json, *.safetensors) or a .gguf file",
        ));
    }
    let (templates, templates_name) = a.generation.templates()?;
    let cfg = RunConfig {
        num: a.num,
        max_new_tokens: a.generation.max_new_tokens,
        batch: a.generation.batch,
        chat: a.generation.chat,
        templates,
        templates_name,
        train: a.flags.job(true, false)?,
        sample: false,
        tasks: named_file(&a.task)?,
        text: named_file(&a.text)?,
    };
    let files = DirFiles::open(&a.model)?;
    let store = DirStore::new(&a.out_dir);
    let gpu = super::tuned_gpu()?;
    let mut printer = Printer::new(json);
    let ctx = Ctx::new(&gpu, Control::new(), |e| printer.event(e));
    let report = pollster::block_on(bitnet_pipeline::run::run(
        &ctx,
        &files,
        &a.model.display().to_string(),
        &store,
        &cfg,
    ))?;
    drop(ctx);
    finish(&store, &report, json)
}

/// Prints the quality report and the report's path (or the report itself with `--json`).
pub fn finish(store: &DirStore, report: &RunReport, json: bool) -> CliResult {
    if json {
        return print_json(report);
    }
    print_quality(&report.comparison.quality, "base model", "trained ternary");
    println!("wrote {}", store.display(bitnet_pipeline::run::REPORT_FILE));
    Ok(())
}

/// A file the user named: (its name as given, its bytes).
pub fn named_file(path: &Option<PathBuf>) -> CliResult<Option<(String, Vec<u8>)>> {
    path.as_ref()
        .map(|p| Ok((p.display().to_string(), super::read(p)?)))
        .transpose()
}

/// λ and loss by step from the training run's metrics.jsonl.
pub fn print_lambda_table(store: &DirStore) -> CliResult {
    let key = format!("{TRAIN_FOLDER}/{METRICS_FILE}");
    let bytes = pollster::block_on(store.get(&key))?
        .ok_or_else(|| CliError::io(Path::new(&store.display(&key)), "missing"))?;
    println!("  step      λ  phase        loss");
    for m in parse_metrics(&bytes) {
        println!(
            "  {:>4}  {:>5.3}  {:<10} {:>7.4}",
            m.step, m.lambda, m.phase, m.loss
        );
    }
    Ok(())
}
