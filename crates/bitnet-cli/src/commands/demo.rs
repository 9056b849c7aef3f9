//! `bitnet demo`: `run` on the built-in tiny model (bitnet_pipeline::run_demo), plus the λ/loss
//! table and a sample from the ternary model.

use std::path::PathBuf;

use bitnet_pipeline::demo::DEMO_MODEL_FOLDER;
use bitnet_pipeline::{Control, Ctx, Store};

use crate::error::CliResult;
use crate::output::Printer;
use crate::store::DirStore;

/// The pipeline on a built-in tiny model: self-generation, training, packing, perplexity, the λ/loss
/// table and a sample from the ternary model, in a few minutes even on a CPU adapter.
#[derive(clap::Args)]
pub struct Args {
    /// Where the demo writes its model, data and outputs.
    #[arg(long = "out-dir", alias = "out_dir", default_value = "bitnet-demo")]
    out_dir: PathBuf,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let store = DirStore::new(&a.out_dir);
    if !json {
        println!(
            "bitnet demo: the built-in tiny model (2 layers, hidden 64, random weights) in {}",
            store.display(DEMO_MODEL_FOLDER)
        );
    }
    let gpu = super::tuned_gpu()?;
    let mut printer = Printer::new(json);
    let ctx = Ctx::new(&gpu, Control::new(), |e| printer.event(e));
    let report = pollster::block_on(bitnet_pipeline::run_demo(&ctx, &store))?;
    drop(ctx);
    if !json {
        super::run::print_lambda_table(&store)?;
        if let Some(s) = &report.sample {
            println!(
                "sample from the ternary model:\n  Instruction: {}\n  Response: {}",
                s.instruction, s.response
            );
        }
    }
    super::run::finish(&store, &report, json)
}
