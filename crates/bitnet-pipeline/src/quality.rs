//! The quality report (`bitnet eval --compare`, the end of `bitnet run` and of the app's run):
//! the original and the ternary model side by side — perplexity on held-out data (JSONL in the
//! training format) and on a plain text, the ternary model's KL to the original on both, and
//! exact-match accuracy on a task file — each measured where its input is given.

use crate::Ctx;
use crate::error::Result;
use crate::eval::{EvalOptions, Perplexity, Scored, score};
use crate::events::Event;
use crate::load::Loaded;
use crate::task::{TaskAccuracy, task_accuracy};

/// What the report is measured on: (bytes, name) of each input that is given.
#[derive(Debug, Clone, Copy)]
pub struct QualityInputs<'a> {
    pub held_out: Option<(&'a [u8], &'a str)>,
    pub text: Option<(&'a [u8], &'a str)>,
    pub tasks: Option<(&'a [u8], &'a str)>,
    pub opts: EvalOptions,
}

/// One model's column of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Side {
    pub model: String,
    pub held_out: Option<Perplexity>,
    pub text: Option<Perplexity>,
    pub tasks: Option<TaskAccuracy>,
}

/// The original and the ternary model side by side; the ternary side's perplexities carry its
/// KL to the original (`Perplexity::kl_to_reference`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityReport {
    pub original: Side,
    pub ternary: Side,
}

impl QualityReport {
    /// The report's rows: (what, original, ternary), every number as text ("—" where not measured).
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let (o, t) = (&self.original, &self.ternary);
        let ppl = |p: &Option<Perplexity>| {
            p.as_ref()
                .map_or("—".into(), |p| format!("{:.3}", p.perplexity))
        };
        let kl = |p: &Option<Perplexity>| {
            p.as_ref()
                .and_then(|p| p.kl_to_reference)
                .map_or("—".into(), |k| format!("{k:.4}"))
        };
        let acc = |a: &Option<TaskAccuracy>| {
            a.as_ref().map_or("—".into(), |a| {
                format!("{:.1} % ({} of {})", a.accuracy * 100.0, a.correct, a.tasks)
            })
        };
        let mut rows = Vec::new();
        if o.held_out.is_some() {
            rows.push((
                "held-out perplexity".into(),
                ppl(&o.held_out),
                ppl(&t.held_out),
            ));
            rows.push((
                "held-out KL to the original (nats/token)".into(),
                "0".into(),
                kl(&t.held_out),
            ));
        }
        if o.text.is_some() {
            rows.push(("text perplexity".into(), ppl(&o.text), ppl(&t.text)));
            rows.push((
                "text KL to the original (nats/token)".into(),
                "0".into(),
                kl(&t.text),
            ));
        }
        if o.tasks.is_some() {
            rows.push((
                "task accuracy (exact match)".into(),
                acc(&o.tasks),
                acc(&t.tasks),
            ));
        }
        rows
    }
}

/// Measures one model: perplexities (with the KL to `reference` when given) and task accuracy,
/// each also an event labelled `label`.
pub async fn measure(
    ctx: &Ctx<'_>,
    m: &Loaded,
    reference: Option<&Loaded>,
    inputs: &QualityInputs<'_>,
    label: &str,
) -> Result<Side> {
    let ppl = async |data: Option<(&[u8], &str)>, text: bool| -> Result<Option<Perplexity>> {
        let Some((bytes, name)) = data else {
            return Ok(None);
        };
        let scored = if text {
            Scored::Text(bytes)
        } else {
            Scored::Jsonl(bytes)
        };
        let p = score(ctx, m, reference, scored, name, &inputs.opts).await?;
        ctx.emit(Event::Perplexity {
            label: if text {
                format!("{label}, on {name}")
            } else {
                label.to_string()
            },
            result: p.clone(),
        });
        Ok(Some(p))
    };
    let held_out = ppl(inputs.held_out, false).await?;
    let text = ppl(inputs.text, true).await?;
    let tasks = match inputs.tasks {
        None => None,
        Some((bytes, name)) => {
            let a = task_accuracy(ctx, m, bytes, name, inputs.opts.bsz.max(8)).await?;
            ctx.emit(Event::TaskAccuracy {
                label: label.to_string(),
                result: Box::new(a.clone()),
            });
            Some(a)
        }
    };
    Ok(Side {
        model: m.name.clone(),
        held_out,
        text,
        tasks,
    })
}

/// The report of `ternary` against `original` on `inputs`.
pub async fn compare_models(
    ctx: &Ctx<'_>,
    original: &Loaded,
    ternary: &Loaded,
    inputs: &QualityInputs<'_>,
) -> Result<QualityReport> {
    Ok(QualityReport {
        original: measure(ctx, original, None, inputs, "original model").await?,
        ternary: measure(ctx, ternary, Some(original), inputs, "ternary model").await?,
    })
}
