//! `bitnet train`: the seed's training command (bitnet_pipeline::train over a directory store).

use std::path::PathBuf;

use bitnet_core::soft::sidecar_name;
use bitnet_gpu::trainer::LossKind;
use bitnet_pipeline::{Control, Ctx};

use crate::args::TrainFlags;
use crate::error::CliResult;
use crate::output::{Printer, print_json};
use crate::store::{DirFiles, DirStore};

/// Fine-tune a model toward ternary weights on the GPU (the seed's flags, either spelling).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long = "base-model", alias = "base_model")]
    base_model: PathBuf,
    /// JSONL: {"instruction", "input", "output", "domain"} per line.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long = "out-dir", alias = "out_dir")]
    out_dir: PathBuf,
    #[command(flatten)]
    flags: TrainFlags,
    /// Continue from the newest checkpoint in --out-dir.
    #[arg(long)]
    resume: bool,
    /// Remove an earlier run's files from --out-dir first (without it, such a folder is refused).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let mut job = a.flags.job(a.resume, a.overwrite)?;
    let files = DirFiles::open(&a.base_model)?;
    let data = super::read(&a.dataset)?;
    // Top-K distillation reads the teacher from the dataset's sidecar when there is one.
    let sidecar = PathBuf::from(sidecar_name(&a.dataset.display().to_string()));
    if job.settings.kd_topk.is_some() && job.settings.loss != LossKind::Ce && sidecar.is_file() {
        if !json {
            eprintln!(
                "teacher: the top-{} soft labels of {}",
                job.settings.kd_topk.unwrap_or_default(),
                sidecar.display()
            );
        }
        job.soft_labels = Some((sidecar.display().to_string(), super::read(&sidecar)?));
    }
    let gpu = super::gpu()?;
    let mut printer = Printer::new(json);
    let ctx = Ctx::new(&gpu, Control::new(), |e| printer.event(e));
    let store = DirStore::new(&a.out_dir);
    let manifest = pollster::block_on(bitnet_pipeline::train::train(
        &ctx,
        &files,
        &a.base_model.display().to_string(),
        &data,
        &a.dataset.display().to_string(),
        &store,
        &job,
    ))?;
    if json {
        print_json(&manifest)?;
    }
    Ok(())
}
