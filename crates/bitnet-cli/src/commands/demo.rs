//! `bitnet demo`: `run` on the built-in tiny model (bitnet_pipeline::run_demo), plus the λ/loss
//! table, the accuracy on its held-out tasks before and after, and a sample from the ternary model.

use std::path::PathBuf;

use bitnet_pipeline::demo::DEMO_MODEL_FOLDER;
use bitnet_pipeline::{Control, Ctx, Store};

use crate::error::CliResult;
use crate::output::Printer;
use crate::store::DirStore;

/// The pipeline on a built-in tiny model that answers small tasks: self-generation, training,
/// packing, perplexity and task accuracy before and after, the λ/loss table and a sample from the
/// ternary model, in a few minutes even on a CPU adapter.
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
            "bitnet demo: the built-in tiny model (3 layers, hidden 96; it adds, subtracts, compares, sorts and repeats) in {}",
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
        let c = &report.comparison;
        if let (Some(before), Some(ptq), Some(after)) = (
            &c.quality.original.tasks,
            &c.base_ternary.tasks,
            &c.quality.ternary.tasks,
        ) {
            println!("accuracy on the held-out tasks (exact match):");
            println!(
                "  {:<12} {:>10} {:>16} {:>16}",
                "", "before", "ternarized only", "after training"
            );
            let row = |name: &str, a: f64, b: f64, c: f64| {
                println!(
                    "  {name:<12} {:>9.1}% {:>15.1}% {:>15.1}%",
                    a * 100.0,
                    b * 100.0,
                    c * 100.0
                )
            };
            for ((b, p), t) in before.domains.iter().zip(&ptq.domains).zip(&after.domains) {
                row(&b.domain, b.accuracy, p.accuracy, t.accuracy);
            }
            row("all", before.accuracy, ptq.accuracy, after.accuracy);
        }
        if let Some(s) = &report.sample {
            println!(
                "sample from the ternary model:\n  Instruction: {}\n  Response: {}",
                s.instruction, s.response
            );
        }
    }
    super::run::finish(&store, &report, json)
}
