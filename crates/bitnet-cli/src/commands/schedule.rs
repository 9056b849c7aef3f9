//! `bitnet schedule`: λ at every optimizer step of a schedule.

use bitnet_core::Schedule;

use crate::error::{CliError, CliResult};
use crate::output::print_json;

/// Print λ at every optimizer step of a schedule.
#[derive(clap::Args)]
pub struct Args {
    /// Total optimizer steps.
    #[arg(long)]
    steps: u64,
    /// Fraction of the steps over which λ ramps from 0 to 1.
    #[arg(
        long = "lambda-warmup-frac",
        alias = "lambda_warmup_frac",
        default_value_t = 0.4
    )]
    lambda_warmup_frac: f64,
    /// linear | sigmoid:K | exp:K | step:N | const:V
    #[arg(long, default_value = "linear")]
    shape: Schedule,
    /// In text output, print every K-th step only (the last step is always printed).
    #[arg(long, default_value_t = 1)]
    every: u64,
}

/// Longest trace printed: beyond it a run is not a schedule anyone reads step by step.
const MAX_STEPS: u64 = 10_000_000;

pub fn run(a: Args, json: bool) -> CliResult {
    let (steps, frac, shape) = (a.steps, a.lambda_warmup_frac, a.shape);
    if !(0.0..=1.0).contains(&frac) {
        return Err(CliError::Usage(format!(
            "--lambda-warmup-frac must be in [0, 1], got {frac}"
        )));
    }
    if steps > MAX_STEPS {
        return Err(CliError::Usage(format!(
            "--steps {steps} is more than the {MAX_STEPS} steps this command prints"
        )));
    }
    let trace = shape.trace(steps, frac);
    if json {
        return print_json(&serde_json::json!({
            "shape": shape.to_string(),
            "steps": steps,
            "lambda_warmup_frac": frac,
            "warmup_steps": Schedule::warmup_steps(steps, frac),
            "lambda": trace,
        }));
    }
    println!("step\tlambda");
    let every = a.every.max(1);
    for (s, l) in trace.iter().enumerate() {
        if (s as u64).is_multiple_of(every) || s as u64 == steps {
            println!("{s}\t{l}");
        }
    }
    Ok(())
}
