//! `run`: the original pipeline in one call — self-generate data with the model, train it toward
//! ternary, pack it, and measure perplexity before and after on held-out samples — resumable stage
//! by stage: run it again on the same store to continue (finished stages are skipped, an
//! interrupted one resumes). Layout of the store: `data.jsonl` (+ `.state.json`), `train.jsonl`,
//! `eval.jsonl`, `train/` (the training run), `run_report.json`.

use bitnet_core::cpu::model::extra_norm_width;
use bitnet_core::dataset::{Example, LossMask, parse_jsonl};
use bitnet_core::model::ModelFiles;
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{DEFAULT_TEMPERATURE, DEFAULT_TOP_P, Templates, prompt_text};

use crate::Ctx;
use crate::error::{PipelineError, Result};
use crate::eval::{EvalOptions, Perplexity, perplexity};
use crate::events::{Event, Stage};
use crate::generate::continue_prompt;
use crate::load::{Loaded, PACKED_FILE, POST_ATTN_NORM_FILE, load_folder, load_packed};
use crate::quality::{QualityInputs, QualityReport, Side, measure};
use crate::selfgen::{SelfgenConfig, SelfgenReport, selfgen};
use crate::store::{Prefixed, Store};
use crate::train::{MANIFEST_FILE, TrainJob, TrainManifest, train};

pub const DATA_FILE: &str = "data.jsonl";
pub const TRAIN_DATA_FILE: &str = "train.jsonl";
pub const EVAL_DATA_FILE: &str = "eval.jsonl";
pub const TRAIN_FOLDER: &str = "train";
pub const REPORT_FILE: &str = "run_report.json";
/// transformers' default top-k, which the seed's sampling ran with.
const TOP_K: usize = 50;

/// Everything `run` was asked for.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Samples to self-generate.
    pub num: u64,
    pub max_new_tokens: usize,
    /// Prompts generated together.
    pub batch: usize,
    pub chat: bool,
    pub templates: Templates,
    pub templates_name: Option<String>,
    /// The training (its seed and quantizer serve the whole run).
    pub train: TrainJob,
    /// End with one sample from the trained ternary model.
    pub sample: bool,
    /// A task file (its name and bytes): the exact-match accuracy of the base model, the base
    /// ternarized and the trained ternary model is measured on it too.
    pub tasks: Option<(String, Vec<u8>)>,
    /// A plain text (its name and bytes): perplexity and KL are measured on it too.
    pub text: Option<(String, Vec<u8>)>,
}

/// A sample from the trained ternary model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub instruction: String,
    pub response: String,
}

/// The run's result, also written to run_report.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    pub data: SelfgenReport,
    pub train_examples: usize,
    pub eval_examples: usize,
    /// What was measured on the held-out samples (and the text and task files, when given).
    pub comparison: Comparison,
    pub packed_file: String,
    pub packed_bytes: u64,
    pub sparsity: f64,
    pub sample: Option<Sample>,
}

/// A named input's (bytes, name).
pub fn named(f: &Option<(String, Vec<u8>)>) -> Option<(&[u8], &str)> {
    f.as_ref()
        .map(|(name, bytes)| (bytes.as_slice(), name.as_str()))
}

/// Examples as JSONL, one per line.
pub fn jsonl(lines: &[&Example]) -> Vec<u8> {
    let mut text = String::new();
    for ex in lines {
        text.push_str(&serde_json::to_string(ex).unwrap_or_default());
        text.push('\n');
    }
    text.into_bytes()
}

/// The training and the held-out examples: every tenth (and at least one) is held out.
pub fn split_held_out(examples: &[Example]) -> (Vec<&Example>, Vec<&Example>) {
    let n = examples.len();
    let held = |i: usize| i % 10 == 9 || (n < 10 && i + 1 == n);
    let (mut train_set, mut eval_set) = (Vec::new(), Vec::new());
    for (i, ex) in examples.iter().enumerate() {
        if held(i) {
            eval_set.push(ex);
        } else {
            train_set.push(ex);
        }
    }
    (train_set, eval_set)
}

/// What `run` measures at its end.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    /// The base model (original) against the trained ternary model.
    pub quality: QualityReport,
    /// The base model with the run's extra norms at the gains they started from (λ = 0).
    pub base_with_norms: Option<Perplexity>,
    /// The base model ternarized without training (its KL to the base model included).
    pub base_ternary: Side,
}

/// Measures on `inputs` the base model as it is, with the run's extra norms at their start (λ =
/// 0, when `manifest`'s run has any: what the norms alone do; held-out perplexity only), the base
/// ternarized without training, and the trained packed model of training run `run_store` (with
/// its extra norms); the ternary models' KL to the base model with their perplexities. Each
/// result is also an event. `loaded` is the base model in full precision when the caller holds it
/// already (else it is read from `base`).
pub async fn compare<F: ModelFiles, S: Store>(
    ctx: &Ctx<'_>,
    (base, base_name, loaded): (&F, &str, Option<Loaded>),
    run_store: &S,
    inputs: &QualityInputs<'_>,
    manifest: &TrainManifest,
) -> Result<Comparison> {
    let quantizer = manifest.settings.setup.quantizer;
    let mut base_model = match loaded {
        Some(m) => m,
        None => load_folder(Some(ctx.gpu), base, base_name, false, quantizer).await?,
    };
    let original = measure(
        ctx,
        &base_model,
        None,
        inputs,
        "base model (full precision)",
    )
    .await?;
    let cfg = base_model.model.config.clone();
    for (name, g) in &manifest.norm_start {
        let width = extra_norm_width(&cfg, name).ok_or_else(|| {
            PipelineError::Invalid(format!("{MANIFEST_FILE}: `{name}` is not an extra norm"))
        })?;
        base_model.weights.insert(name.clone(), vec![*g; width]);
    }
    let base_with_norms = match (manifest.norm_start.is_empty(), inputs.held_out) {
        (false, Some((bytes, name))) => {
            let p = perplexity(ctx, &base_model, bytes, name, &inputs.opts).await?;
            ctx.emit(Event::Perplexity {
                label: "base model with the run's extra norms at their start (λ = 0)".into(),
                result: p.clone(),
            });
            Some(p)
        }
        _ => None,
    };
    for name in manifest.norm_start.keys() {
        base_model.weights.remove(name);
    }
    let ptq = load_folder(Some(ctx.gpu), base, base_name, true, quantizer).await?;
    let base_ternary = measure(
        ctx,
        &ptq,
        Some(&base_model),
        inputs,
        "base model ternarized, no training",
    )
    .await?;
    drop(ptq);
    let trained = load_trained(run_store).await?;
    let ternary = measure(
        ctx,
        &trained,
        Some(&base_model),
        inputs,
        "trained ternary model",
    )
    .await?;
    Ok(Comparison {
        quality: QualityReport { original, ternary },
        base_with_norms,
        base_ternary,
    })
}

/// The trained ternary model of training run `run_store`: its packed file with the post-attention
/// norm gains beside it, when the run trained them.
pub async fn load_trained<S: Store>(run_store: &S) -> Result<Loaded> {
    let packed = run_store.get(PACKED_FILE).await?.ok_or_else(|| {
        PipelineError::Invalid(format!(
            "{} is missing: remove {} to train again",
            run_store.display(PACKED_FILE),
            run_store.display(MANIFEST_FILE)
        ))
    })?;
    let gains = run_store
        .get(POST_ATTN_NORM_FILE)
        .await?
        .map(|b| (run_store.display(POST_ATTN_NORM_FILE), b));
    load_packed(&run_store.display(PACKED_FILE), &packed, gains).await
}

fn stage(ctx: &Ctx<'_>, stage: Stage, index: u32, detail: String, skipped: bool) {
    ctx.emit(Event::Stage {
        stage,
        index,
        of: 4,
        detail,
        skipped,
    });
}

/// Runs the pipeline on the base model `base` (a folder named `base_name`) into `store`.
pub async fn run<F: ModelFiles, S: Store>(
    ctx: &Ctx<'_>,
    base: &F,
    base_name: &str,
    store: &S,
    cfg: &RunConfig,
) -> Result<RunReport> {
    let gpu = ctx.gpu;
    let settings = &cfg.train.settings;
    let quantizer = settings.setup.quantizer;
    let base_model = load_folder(Some(gpu), base, base_name, false, quantizer).await?;
    let sampling =
        Sampling::new(DEFAULT_TEMPERATURE, DEFAULT_TOP_P, TOP_K).map_err(PipelineError::Invalid)?;

    // 1. Self-generated data (continues an interrupted stage).
    stage(
        ctx,
        Stage::SelfGeneration,
        1,
        format!("{} samples → {}", cfg.num, store.display(DATA_FILE)),
        false,
    );
    let sg = SelfgenConfig {
        num: cfg.num,
        max_new_tokens: cfg.max_new_tokens,
        seed: settings.seed,
        batch: cfg.batch,
        resume: true,
        max_attempts: None,
        templates: cfg.templates.clone(),
        templates_name: cfg.templates_name.clone(),
        chat: cfg.chat,
        sampling,
        soft_labels: None,
    };
    let data = selfgen(ctx, &base_model, store, DATA_FILE, &sg).await?;
    let bytes = store.get(DATA_FILE).await?.unwrap_or_default();
    let examples = match data.counts.kept {
        0 => Vec::new(),
        _ => parse_jsonl(&store.display(DATA_FILE), &bytes)
            .map_err(|e| PipelineError::input(store.display(DATA_FILE), e))?,
    };
    if examples.len() < 2 {
        return Err(PipelineError::Invalid(format!(
            "self-generation kept {} samples; training and a held-out evaluation need at least 2 (raise --num, --max-new-tokens or use a larger model)",
            examples.len()
        )));
    }
    // Every tenth sample (at least one) is held out for the perplexity.
    let (train_set, eval_set) = split_held_out(&examples);
    let (train_data, eval_data) = (jsonl(&train_set), jsonl(&eval_set));
    store.put(TRAIN_DATA_FILE, &train_data).await?;
    store.put(EVAL_DATA_FILE, &eval_data).await?;

    // 2. Training (resumes from its newest checkpoint; skipped once finished).
    let run_store = Prefixed::new(store, TRAIN_FOLDER);
    let finished = run_store.get(MANIFEST_FILE).await?;
    stage(
        ctx,
        Stage::Training,
        2,
        format!(
            "{} steps on {} samples → {}",
            settings.steps,
            train_set.len(),
            store.display(TRAIN_FOLDER)
        ),
        finished.is_some(),
    );
    let manifest: TrainManifest = match finished {
        Some(text) => serde_json::from_slice(&text).map_err(|e| {
            PipelineError::Invalid(format!("{}: {e}", run_store.display(MANIFEST_FILE)))
        })?,
        None => {
            let job = TrainJob {
                resume: !run_store.list("").await?.is_empty(),
                ..cfg.train.clone()
            };
            let name = store.display(TRAIN_DATA_FILE);
            train(ctx, base, base_name, &train_data, &name, &run_store, &job).await?
        }
    };

    // 3. The packed model (written by training with the training quantizer).
    let trained = load_trained(&run_store).await?;
    let packed_bytes = run_store.size(PACKED_FILE).await?.unwrap_or_default();
    stage(
        ctx,
        Stage::Packing,
        3,
        format!(
            "{} ({} bytes, {:.1} % of the ternary weights are zero)",
            run_store.display(PACKED_FILE),
            packed_bytes,
            manifest.sparsity * 100.0
        ),
        false,
    );

    // 4. Perplexity on the held-out samples: before, ternarized without training, after.
    stage(
        ctx,
        Stage::Evaluation,
        4,
        format!(
            "on {} held-out samples ({})",
            eval_set.len(),
            store.display(EVAL_DATA_FILE)
        ),
        false,
    );
    let eval_name = store.display(EVAL_DATA_FILE);
    let inputs = QualityInputs {
        held_out: Some((&eval_data, &eval_name)),
        text: named(&cfg.text),
        tasks: named(&cfg.tasks),
        opts: EvalOptions {
            seq_len: settings.seq_len,
            loss_mask: LossMask::All,
            bsz: settings.bsz,
        },
    };
    let comparison = compare(
        ctx,
        (base, base_name, Some(base_model)),
        &run_store,
        &inputs,
        &manifest,
    )
    .await?;
    // The training manifest records the quality report beside the run's settings.
    let manifest = TrainManifest {
        quality: Some(comparison.quality.clone()),
        ..manifest
    };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| PipelineError::Invalid(format!("{MANIFEST_FILE}: {e}")))?;
    run_store.put(MANIFEST_FILE, text.as_bytes()).await?;

    let mut sample = None;
    if cfg.sample {
        // One sample from the ternary model, sampled like the self-generation.
        let pick = cfg.templates.pick(settings.seed, 0);
        let ids = trained.prompt_ids(&prompt_text(&pick.instruction), false, 512)?;
        let c = continue_prompt(
            ctx,
            &trained,
            ids,
            cfg.max_new_tokens,
            sampling,
            settings.seed,
            &mut |_| {},
        )
        .await?;
        sample = Some(Sample {
            instruction: pick.instruction,
            response: c.text.trim().to_string(),
        });
    }

    let report = RunReport {
        data,
        train_examples: train_set.len(),
        eval_examples: eval_set.len(),
        comparison,
        packed_file: run_store.display(PACKED_FILE),
        packed_bytes,
        sparsity: manifest.sparsity,
        sample,
    };
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| PipelineError::Invalid(format!("{REPORT_FILE}: {e}")))?;
    store.put(REPORT_FILE, text.as_bytes()).await?;
    Ok(report)
}
