//! Self-generation (SEED.md): the model writes its own training data. Attempt n asks the
//! instruction `Templates::pick(seed, n)` and samples from its own seeded stream, so a run is
//! reproducible whatever the batch size. Each kept line is appended to the output as it passes the
//! filters; the counts go to `<out>.state.json` after every batch, so an interrupted run keeps its
//! work and a resumed one continues to `num` without writing any output twice (the interrupted
//! batch runs again and finds its lines already written, so a resumed run ends with the lines and
//! counts of an uninterrupted one).

use std::collections::HashSet;

use bitnet_core::dataset::{Example, LossMask, parse_jsonl};
use bitnet_core::limits::at_least;
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{
    Counts, Dedup, PROMPT_TOKENS, Templates, check, extract_response, prompt_text,
};
use bitnet_core::soft::{MAX_K, encode, sidecar_name};
use bitnet_gpu::generate::GenerateOptions;
use bitnet_gpu::soft::soft_labels;

use crate::error::{PipelineError, Result};
use crate::eval::inference_model;
use crate::events::{Event, Rejected, SampleOutcome};
use crate::load::Loaded;
use crate::store::Store;
use crate::train::tokenize_dataset;
use crate::{Ctx, clock};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SelfgenConfig {
    /// Samples to keep.
    pub num: u64,
    pub max_new_tokens: usize,
    pub seed: u64,
    /// Prompts generated together.
    pub batch: usize,
    /// Continue the output of an earlier run with the same settings (else an existing output is
    /// refused).
    pub resume: bool,
    /// Stop after this many attempts (None: 4 × num).
    pub max_attempts: Option<u64>,
    pub templates: Templates,
    /// Where the templates came from (None: the built-in ones); part of the settings a resumed run
    /// must share.
    pub templates_name: Option<String>,
    /// Prompt through the tokenizer's chat template.
    pub chat: bool,
    pub sampling: Sampling,
    /// At the end, the model's top K at every position of each kept example's training text,
    /// written to the sidecar beside the output (`data.jsonl` → `data.soft`, docs/FORMAT.md) for
    /// `train --kd-topk`. (Not the generation's own logits: those belong to the self-generation
    /// prompt, and training reads the training text — one forward pass over it per example.)
    pub soft_labels: Option<usize>,
}

/// What `<out>.state.json` holds: the settings a resumed run must share, and the counts so far.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug, Clone)]
pub struct SelfgenState {
    pub seed: u64,
    pub max_new_tokens: usize,
    pub chat: bool,
    pub templates: Option<String>,
    pub counts: Counts,
}

/// Why self-generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// Enough samples kept.
    Num,
    /// The attempt budget ran out.
    MaxAttempts,
}

/// The closing report.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct SelfgenReport {
    pub out: String,
    pub num: u64,
    pub max_attempts: u64,
    pub counts: Counts,
    pub stopped_by: StoppedBy,
    /// The soft-label sidecar, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_labels: Option<SoftLabelsReport>,
}

/// The sidecar `selfgen` wrote: its name, K, the positions it covers and its size.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct SoftLabelsReport {
    pub file: String,
    pub k: usize,
    pub examples: usize,
    pub positions: u64,
    pub bytes: u64,
}

/// K of `--soft-labels` for model `m`: 1 to the vocabulary (and at most [`MAX_K`]).
fn check_soft_labels(m: &Loaded, k: usize) -> Result<()> {
    let most = MAX_K.min(m.model.config.vocab_size);
    if !(1..=most).contains(&k) {
        return Err(PipelineError::Invalid(format!(
            "--soft-labels {k}: K must be 1 to {most} (the model's vocabulary is {})",
            m.model.config.vocab_size
        )));
    }
    Ok(())
}

/// Writes the sidecar of the JSONL `out` of `store`: `m`'s top `k` at every position of each
/// example's training text (whole, up to the model's context), `batch` examples at a time or
/// fewer, so that a micro-batch's logits stay within one storage binding.
pub async fn write_soft_labels<S: Store>(
    ctx: &Ctx<'_>,
    m: &Loaded,
    store: &S,
    out: &str,
    k: usize,
    batch: usize,
) -> Result<SoftLabelsReport> {
    check_soft_labels(m, k)?;
    let cfg = &m.model.config;
    let (vocab, name) = (cfg.vocab_size, store.display(out));
    let bytes = store.get(out).await?.unwrap_or_default();
    let examples = existing(store, out, bytes).await?;
    let seqs = tokenize_dataset(
        &m.tokenizer,
        cfg,
        &examples,
        &name,
        cfg.context().0,
        LossMask::All,
    )?;
    let longest = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(1) as u64;
    let per_seq = longest * vocab as u64 * 4;
    let bsz = (ctx.gpu.max_binding() / per_seq.max(1)).clamp(1, batch.max(1) as u64) as usize;
    let model = inference_model(ctx, m)?;
    let pad = m.eos.first().copied().unwrap_or(0);
    let mut labels = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(bsz) {
        ctx.control.between_steps().await?;
        labels.extend(soft_labels(ctx.gpu, &model, chunk, k, bsz, pad).await?);
    }
    let data = encode(k, &examples, &labels);
    let file = sidecar_name(out);
    store.put(&file, &data).await?;
    Ok(SoftLabelsReport {
        file: store.display(&file),
        k,
        examples: examples.len(),
        positions: labels.iter().map(|l| l.positions() as u64).sum(),
        bytes: data.len() as u64,
    })
}

/// The state file of output `out`.
pub fn state_key(out: &str) -> String {
    format!("{out}.state.json")
}

/// The kept lines of an earlier run: a last line cut short by a kill is dropped from the output (it
/// was never counted), every other line must parse.
async fn existing<S: Store>(store: &S, out: &str, mut bytes: Vec<u8>) -> Result<Vec<Example>> {
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        bytes.truncate(whole);
        store.put(out, &bytes).await?;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new()); // nothing kept yet
    }
    parse_jsonl(&store.display(out), &bytes)
        .map_err(|e| PipelineError::input(store.display(out), e))
}

/// Runs self-generation with `m` into `out` of `store` (JSONL in the seed's schema).
pub async fn selfgen<S: Store>(
    ctx: &Ctx<'_>,
    m: &Loaded,
    store: &S,
    out: &str,
    cfg: &SelfgenConfig,
) -> Result<SelfgenReport> {
    at_least(&[
        ("--num", cfg.num, 1),
        ("--batch", cfg.batch as u64, 1),
        ("--max-new-tokens", cfg.max_new_tokens as u64, 1),
        ("--max-attempts", cfg.max_attempts.unwrap_or(1), 1),
    ])
    .map_err(PipelineError::Invalid)?;
    if let Some(k) = cfg.soft_labels {
        check_soft_labels(m, k)?;
    }
    let gpu = ctx.gpu;
    let max_attempts = cfg.max_attempts.unwrap_or(4 * cfg.num);
    let mut state = SelfgenState {
        seed: cfg.seed,
        max_new_tokens: cfg.max_new_tokens,
        chat: cfg.chat,
        templates: cfg.templates_name.clone(),
        counts: Counts::default(),
    };
    let state_file = state_key(out);
    let mut dedup = Dedup::new();
    let mut pending = HashSet::new();
    if let Some(bytes) = store.get(out).await? {
        if !cfg.resume {
            return Err(PipelineError::Invalid(format!(
                "{} exists: pass --resume to continue it, or choose another --out",
                store.display(out)
            )));
        }
        let lines = existing(store, out, bytes).await?;
        if let Some(text) = store.get(&state_file).await? {
            let saved: SelfgenState = serde_json::from_slice(&text).map_err(|e| {
                PipelineError::Invalid(format!("{}: {e}", store.display(&state_file)))
            })?;
            let same = SelfgenState {
                counts: saved.counts.clone(),
                ..state
            };
            if saved != same {
                return Err(PipelineError::Invalid(format!(
                    "{}: written with other settings (seed {}, max new tokens {}, chat {}, templates {:?}); resume with those",
                    store.display(&state_file),
                    saved.seed,
                    saved.max_new_tokens,
                    saved.chat,
                    saved.templates
                )));
            }
            state = saved;
        }
        // The counts are saved after each batch; lines written after that belong to the batch a
        // kill interrupted. It runs again from its first attempt (each attempt draws from its own
        // stream, so it gives the same outputs) and finds them already written.
        let counted = (state.counts.kept as usize).min(lines.len());
        state.counts.kept = counted as u64;
        for ex in &lines[..counted] {
            dedup.insert(&ex.output);
        }
        pending.extend(lines[counted..].iter().map(|ex| ex.output.clone()));
    } else {
        store.put(out, b"").await?;
    }
    let generator = m.generator(gpu)?;
    let now = clock();
    let (mut tokens, mut ms) = (0usize, 0f64);
    while state.counts.kept < cfg.num && state.counts.attempts < max_attempts {
        ctx.control.between_steps().await?;
        let c = &mut state.counts;
        let n = (cfg.batch as u64).min(max_attempts - c.attempts);
        let first = c.attempts;
        let picks: Vec<_> = (first..first + n)
            .map(|i| cfg.templates.pick(cfg.seed, i))
            .collect();
        let mut prompts = Vec::with_capacity(picks.len());
        for p in &picks {
            let text = if cfg.chat {
                p.instruction.clone()
            } else {
                prompt_text(&p.instruction)
            };
            let ids = m.prompt_ids(&text, cfg.chat, PROMPT_TOKENS)?;
            m.check_context(ids.len(), cfg.max_new_tokens)?;
            prompts.push(ids);
        }
        let opts = GenerateOptions {
            max_new_tokens: cfg.max_new_tokens,
            sampling: cfg.sampling,
            seed: cfg.seed,
            first_stream: first,
            eos: m.eos.clone(),
            keep_logits: false,
        };
        let t0 = now();
        let generated = generator
            .generate(gpu, &prompts, &opts, &now, &mut |_, _| {})
            .await?;
        ms += now() - t0;
        tokens += generated.tokens.iter().map(Vec::len).sum::<usize>();
        let mut outcomes = Vec::with_capacity(picks.len());
        let mut lines = String::new();
        for (i, pick) in picks.iter().enumerate() {
            if c.kept >= cfg.num {
                break;
            }
            c.attempts += 1;
            // The seed's answer: the decoded prompt and continuation, after the first "Response:".
            let response = if cfg.chat {
                m.decode(&generated.tokens[i])?
            } else {
                let mut all = prompts[i].clone();
                all.extend_from_slice(&generated.tokens[i]);
                extract_response(&m.decode(&all)?)
            };
            let response = response.trim().to_string();
            let rejected = match check(&pick.instruction, &response) {
                Err(r) => {
                    c.reject(r);
                    Some(Rejected::Filter(r))
                }
                Ok(()) if !dedup.insert(&response) => {
                    c.duplicates += 1;
                    Some(Rejected::Duplicate)
                }
                Ok(()) => {
                    c.kept += 1;
                    // A line written before an interruption is counted, not written again.
                    if !pending.remove(&response) {
                        let ex = Example {
                            instruction: pick.instruction.clone(),
                            input: String::new(),
                            output: response.clone(),
                            domain: pick.domain.clone(),
                        };
                        lines.push_str(&serde_json::to_string(&ex).map_err(|e| {
                            PipelineError::Invalid(format!("{}: {e}", store.display(out)))
                        })?);
                        lines.push('\n');
                    }
                    None
                }
            };
            outcomes.push(SampleOutcome {
                instruction: pick.instruction.clone(),
                response,
                rejected,
            });
        }
        // The batch's kept lines, then its counts: a kill between the two leaves lines that the
        // resumed run finds pending.
        if !lines.is_empty() {
            store.append(out, lines.as_bytes()).await?;
        }
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        store.put(&state_file, text.as_bytes()).await?;
        ctx.emit(Event::Samples {
            counts: state.counts.clone(),
            num: cfg.num,
            max_attempts,
            tokens_per_s: tokens as f64 * 1e3 / ms.max(1e-9),
            outcomes,
        });
    }
    drop(generator);
    let soft_labels = match cfg.soft_labels {
        Some(k) if state.counts.kept > 0 => {
            Some(write_soft_labels(ctx, m, store, out, k, cfg.batch).await?)
        }
        _ => None,
    };
    let counts = state.counts.clone();
    let report = SelfgenReport {
        soft_labels,
        out: store.display(out),
        num: cfg.num,
        max_attempts,
        stopped_by: if counts.kept >= cfg.num {
            StoppedBy::Num
        } else {
            StoppedBy::MaxAttempts
        },
        counts,
    };
    ctx.emit(Event::SelfgenDone(Box::new(report.clone())));
    Ok(report)
}
