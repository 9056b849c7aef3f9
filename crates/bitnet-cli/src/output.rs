//! Showing what the pipeline reports: JSON for `--json`, else lines on stdout and progress bars
//! (indicatif, on stderr, hidden when stderr is not a terminal).

use bitnet_core::selfgen::Rejection;
use bitnet_core::summary::human_bytes;
use bitnet_pipeline::Event;
use bitnet_pipeline::events::Stage;
use bitnet_pipeline::quality::QualityReport;
use bitnet_pipeline::selfgen::{SelfgenReport, StoppedBy};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, CliResult};

pub fn print_json(v: &impl serde::Serialize) -> CliResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("[{bar:24}] {pos}/{len} {msg}") {
        pb.set_style(style.progress_chars("#-"));
    }
    pb
}

/// Turns the pipeline's events into text (nothing at all with `--json`).
pub struct Printer {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer { json, bar: None }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    pub fn event(&mut self, e: Event) {
        if self.json {
            return;
        }
        match e {
            Event::Stage {
                stage,
                index,
                of,
                detail,
                skipped,
            } => {
                self.finish();
                let label = match stage {
                    Stage::SelfGeneration => "self-generation",
                    Stage::Training => "training",
                    Stage::Packing => "packed",
                    Stage::Evaluation => "perplexity",
                };
                self.line(&format!("== {index}/{of} {label}: {detail}"));
                if skipped && stage == Stage::Training {
                    self.line("already trained (training_manifest.json exists)");
                }
            }
            Event::Samples {
                counts: c,
                num,
                max_attempts,
                tokens_per_s,
                ..
            } => {
                let b = self.bar.get_or_insert_with(|| bar(num));
                b.set_position(c.kept.min(num));
                b.set_message(format!(
                    "kept · rejected {} (short {}, long {}, disclaimer {}, words {}, instruction longer {}, duplicates {}) · attempts {}/{max_attempts} · {tokens_per_s:.1} tokens/s",
                    c.rejected(),
                    c.too_short,
                    c.too_long,
                    c.disclaimer,
                    c.too_few_words,
                    c.instruction_longer,
                    c.duplicates,
                    c.attempts,
                ));
            }
            Event::SelfgenDone(r) => {
                self.finish();
                print_selfgen_report(&r);
            }
            Event::Memory {
                plan,
                max_binding,
                adapter,
            } => self.line(&format!(
                "GPU memory needed: {} ({} weights, gradients and AdamW moments; {} activations for {} micro-batch(es) of {} × {} tokens); largest buffer {} ({}) of {} allowed per binding on {adapter}",
                human_bytes(plan.total),
                human_bytes(plan.state()),
                human_bytes(plan.activations),
                plan.micro_batches,
                plan.batch,
                plan.seq_len,
                human_bytes(plan.largest_buffer),
                plan.largest_buffer_name,
                human_bytes(max_binding),
            )),
            Event::Calibrated { gains } => {
                let (lo, hi) = gains.iter().fold((f32::MAX, 0f32), |(lo, hi), (_, g)| {
                    (lo.min(*g), hi.max(*g))
                });
                self.line(&format!(
                    "{} extra norm gains start calibrated (the mean RMS of each norm's input on the first micro-batch): {lo:.4} to {hi:.4}",
                    gains.len()
                ))
            }
            Event::Kernels(plan) => self.line(&format!(
                "linear layers: {:?} kernels, λ-blend {:?} (measured fastest here)",
                plan.variant, plan.blend
            )),
            Event::Resumed {
                step,
                from,
                skipped,
            } => {
                for why in skipped {
                    self.line(&format!("warning: skipped a corrupt checkpoint: {why}"));
                }
                match from {
                    Some(key) => self.line(&format!("resumed from {key} at step {step}")),
                    None => self.line("no checkpoint yet: starting from step 0"),
                }
            }
            Event::Step {
                metrics: m,
                steps,
                eta_s,
                ..
            } => {
                let b = self.bar.get_or_insert_with(|| bar(steps));
                b.set_position(m.step + 1);
                b.set_message(format!(
                    "λ {:.3} {:<7} loss {:.4} {:.0} tok/s ETA {eta_s:.0} s",
                    m.lambda, m.phase, m.loss, m.tokens_per_s
                ));
            }
            Event::Checkpoint { .. } | Event::Packed(_) => {}
            Event::Trained(m) => {
                self.finish();
                self.line(&format!(
                    "trained {} steps: loss {:.4} → {:.4}, final λ {}, sparsity {:.1} %; wrote {} ({}), {} and training_manifest.json",
                    m.training_steps,
                    m.first_loss.unwrap_or(f32::NAN),
                    m.final_loss.unwrap_or(f32::NAN),
                    m.final_lambda,
                    m.sparsity * 100.0,
                    m.packed_file,
                    human_bytes(m.packed_bytes),
                    m.hf_folder
                ));
                if m.settings.setup.post_attn_norm || m.settings.setup.subln {
                    self.line("note: the extra norms' trained gains (post-attention RMSNorm, SubLN) are inside the packed file, which generate and eval use, and in hf/ with modeling_bitnet_studio.py, which adds them when transformers loads it with trust_remote_code=True");
                }
            }
            Event::Perplexity { label, result } => {
                self.line(&format!("  {label:<36} perplexity {:>10.3}", result.perplexity))
            }
            Event::TaskAccuracy { label, result } => self.line(&format!(
                "  {label:<36} accuracy   {:>6.1} % ({} of {} tasks)",
                result.accuracy * 100.0,
                result.correct,
                result.tasks
            )),
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The closing lines of self-generation: why it stopped, then the counts per filter.
pub fn print_selfgen_report(r: &SelfgenReport) {
    let c = &r.counts;
    match r.stopped_by {
        StoppedBy::Num => println!("stopped: {} samples kept (--num {})", c.kept, r.num),
        StoppedBy::MaxAttempts => println!(
            "stopped: the attempt budget ran out (--max-attempts {}) with {} of {} samples kept",
            r.max_attempts, c.kept, r.num
        ),
    }
    println!("generated  {}", c.attempts);
    println!("kept       {}  → {}", c.kept, r.out);
    for (rej, n) in Rejection::ALL.iter().zip([
        c.too_short,
        c.too_long,
        c.disclaimer,
        c.too_few_words,
        c.instruction_longer,
    ]) {
        println!("rejected   {n:<6} {}", rej.label());
    }
    println!("duplicates {}", c.duplicates);
    if let Some(s) = &r.soft_labels {
        println!(
            "soft labels: the top {} at {} positions of {} samples → {} ({})",
            s.k,
            s.positions,
            s.examples,
            s.file,
            human_bytes(s.bytes)
        );
    }
}

/// The quality report as a table: what was measured, the original's and the ternary model's value.
pub fn print_quality(q: &QualityReport, original: &str, ternary: &str) {
    let rows = q.rows();
    if rows.is_empty() {
        return;
    }
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    println!("quality: {original} against {ternary}");
    println!("  {:<w$}  {:>20}  {:>20}", "", original, ternary);
    for (what, o, t) in rows {
        println!("  {what:<w$}  {o:>20}  {t:>20}");
    }
}
