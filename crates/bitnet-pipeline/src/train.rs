//! A training run (the seed's training command): tokenize the JSONL data, check the one memory plan
//! against the adapter before allocating, measure the linear-layer kernels, resume from the newest
//! checkpoint when asked, then optimizer steps with an event per step, metrics.jsonl every
//! `log_every` steps, checkpoints every `save_steps` (the last `save_total_limit` kept), and at the
//! end the packed file (same quantizer as training), a Hugging Face folder with the dequantized
//! ternary weights and training_manifest.json — every value measured. Everything goes through a
//! [`Store`]: a directory for the CLI, the browser's storage for the app.

use std::collections::BTreeMap;

use bitnet_core::config::ModelConfig;
use bitnet_core::cpu::model::{extra_norms, post_attn_norm_name, subln_names};
use bitnet_core::dataset::{Example, LossMask, Sequence, pad_batch, parse_jsonl, tokenize};
use bitnet_core::limits::at_least;
use bitnet_core::model::{MemoryFiles, Model, ModelFiles};
use bitnet_core::packed::PackedModel;
use bitnet_core::params::param_table;
use bitnet_core::quant::Quantizer;
use bitnet_core::safetensors::{Dtype, OwnedTensor, serialize};
use bitnet_core::soft::Sidecar;
use bitnet_core::summary::human_bytes;
use bitnet_core::tokenizer::Tokenizer;
use bitnet_core::{Packing, Schedule};
use bitnet_gpu::Gpu;
use bitnet_gpu::model::{Batch, GpuModel, ModelSetup, is_extra_norm};
use bitnet_gpu::packer::{PackOptions, pack_model};
use bitnet_gpu::trainer::{LossKind, NormInit, StepReport, TrainError, TrainSettings, Trainer};

use crate::error::{PipelineError, Result};
use crate::events::Event;
use crate::load::{PACKED_FILE, POST_ATTN_NORM_FILE, open_model, tokenizer_of};
use crate::store::Store;
use crate::{Ctx, clock};

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const MANIFEST_FILE: &str = "training_manifest.json";
pub const HF_FOLDER: &str = "hf";

/// Everything a training run was asked for.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// What defines the run (saved in every checkpoint and compared on resume).
    pub settings: TrainSettings,
    /// Checkpoint every this many steps.
    pub save_steps: u64,
    /// Checkpoints kept (the newest).
    pub save_total_limit: usize,
    /// A metrics.jsonl line every this many steps (and at the last).
    pub log_every: u64,
    /// Continue from the newest checkpoint in the store.
    pub resume: bool,
    /// Without `resume`: remove an earlier run's files from the store first (else a store that
    /// holds one is refused, so that no folder mixes two runs).
    pub overwrite: bool,
    /// A soft-label sidecar of the dataset (its name and bytes; `selfgen --soft-labels K`): with
    /// `--kd-topk`, the teacher's top K come from it and no teacher model is loaded.
    pub soft_labels: Option<(String, Vec<u8>)>,
}

/// The default of `save_steps`: a quarter of the steps (at least 1).
pub fn default_save_steps(steps: u64) -> u64 {
    (steps / 4).max(1)
}

/// The defaults of a training run (the seed's): `bitnet train`'s flags and the app's form.
pub mod defaults {
    pub const STEPS: u64 = 1000;
    pub const BSZ: usize = 2;
    pub const GRAD_ACCUM: usize = 8;
    pub const LR: f64 = 5e-5;
    pub const WARMUP_RATIO: f64 = 0.1;
    pub const WEIGHT_DECAY: f32 = 0.0;
    pub const MAX_GRAD_NORM: f32 = 1.0;
    pub const LAMBDA_WARMUP_FRAC: f64 = 0.4;
    /// The seed's linear warmup over 40 %: with distillation from the teacher's top 8 (the
    /// default below) it answers 78.3 % of the demo model's held-out tasks over three seeds
    /// against 71.0 % with λ = 1 from the start (docs/QUALITY.md).
    pub const LAMBDA_SCHEDULE: &str = "linear";
    /// No extra norm: on the demo model at equal steps (docs/QUALITY.md) a run without one answers
    /// 71 % of the held-out tasks, with the seed's post-attention norm 40 % (calibrated 36 %), with
    /// SubLN 47 %. The seed's `--rmsnorm-post-attn 1` is one flag away.
    pub const POST_ATTN_NORM: bool = false;
    pub const SUBLN: bool = false;
    /// The extra norms' gains start calibrated (the seed's gain 1 takes a pretrained model's loss from 2.4 to
    /// 15 at λ = 0; `--norm-init one` keeps that start for comparison).
    pub const NORM_INIT: bitnet_gpu::trainer::NormInit = bitnet_gpu::trainer::NormInit::Calibrated;
    /// Distillation from the base model: on the demo model at equal steps (docs/QUALITY.md) it
    /// answers 75 % of the held-out tasks against cross-entropy's 71 %, with the lowest KL to the
    /// original (0.029 against 0.052). The seed's `--loss ce` is one flag away.
    pub const LOSS: bitnet_gpu::trainer::LossKind = bitnet_gpu::trainer::LossKind::Kd;
    pub const KD_TEMPERATURE: f32 = 1.0;
    pub const KD_WEIGHT: f32 = 0.5;
    /// Distillation from the teacher's 8 most likely tokens at each position: on the demo model at
    /// equal steps (docs/QUALITY.md) it answers 78.3 % of the held-out tasks over three seeds, the
    /// best of every recipe measured (the whole vocabulary: 73.3 %), at the price of a next-token
    /// distribution further from the original (KL 0.163 against 0.035). `--kd-topk all` is one
    /// flag away.
    pub const KD_TOPK: Option<usize> = Some(8);
    pub const SEQ_LEN: usize = 512;
    pub const SEED: u64 = 42;
    pub const SAVE_TOTAL_LIMIT: usize = 2;
    pub const LOG_EVERY: u64 = 10;
}

impl TrainJob {
    /// A run with every default (`bitnet train` without flags).
    pub fn defaults() -> TrainJob {
        use bitnet_gpu::optimizer::AdamConfig;
        TrainJob {
            settings: TrainSettings {
                steps: defaults::STEPS,
                bsz: defaults::BSZ,
                grad_accum: defaults::GRAD_ACCUM,
                lr: defaults::LR,
                warmup_ratio: defaults::WARMUP_RATIO,
                lambda_warmup_frac: defaults::LAMBDA_WARMUP_FRAC,
                schedule: Schedule::Linear,
                seed: defaults::SEED,
                adam: AdamConfig {
                    weight_decay: defaults::WEIGHT_DECAY,
                    max_grad_norm: defaults::MAX_GRAD_NORM,
                    ..AdamConfig::default()
                },
                freeze_embeddings: false,
                setup: ModelSetup {
                    quantizer: Quantizer::Absmean,
                    post_attn_norm: defaults::POST_ATTN_NORM,
                    quantize_lm_head: false,
                    subln: defaults::SUBLN,
                    act8: false,
                },
                seq_len: defaults::SEQ_LEN,
                loss_mask: LossMask::All,
                norm_init: defaults::NORM_INIT,
                loss: defaults::LOSS,
                kd_temperature: defaults::KD_TEMPERATURE,
                kd_weight: defaults::KD_WEIGHT,
                kd_topk: defaults::KD_TOPK,
                fp_dtype: None,
            },
            save_steps: default_save_steps(defaults::STEPS),
            save_total_limit: defaults::SAVE_TOTAL_LIMIT,
            log_every: defaults::LOG_EVERY,
            resume: false,
            overwrite: false,
            soft_labels: None,
        }
    }
}

/// One optimizer step's numbers: the event of every step, and a line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub step: u64,
    pub lambda: f64,
    /// `warmup` while λ < 1, then `ternary`.
    pub phase: String,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f32,
    pub tokens_per_s: f64,
    /// Fraction of zero codes over every ternary weight under the training quantizer (logged
    /// steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
}

impl Metrics {
    fn of(r: &StepReport, secs: f64) -> Metrics {
        Metrics {
            step: r.step,
            lambda: r.lambda,
            phase: r.phase.to_string(),
            loss: r.loss,
            lr: r.lr,
            grad_norm: r.grad_norm,
            tokens_per_s: r.tokens as f64 / secs.max(1e-9),
            sparsity: None,
        }
    }
}

/// Parses metrics.jsonl (lines that do not parse, such as one cut by a kill, are skipped).
pub fn parse_metrics(bytes: &[u8]) -> Vec<Metrics> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// training_manifest.json: the seed's fields, each measured, and ours.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainManifest {
    pub base_model: String,
    pub dataset_path: String,
    pub training_steps: u64,
    pub lambda_warmup_frac: f64,
    pub rmsnorm_post_attn: bool,
    pub final_lambda: f64,
    pub compression_ready: bool,
    pub model_type: String,
    pub quantizer: String,
    pub lambda_schedule: Schedule,
    /// The gain every extra norm started from (post-attention RMSNorm, SubLN; calibrated or 1),
    /// by name: with the base weights, the model at λ = 0.
    #[serde(default)]
    pub norm_start: BTreeMap<String, f32>,
    pub first_loss: Option<f32>,
    pub final_loss: Option<f32>,
    pub sparsity: f64,
    pub packed_file: String,
    pub packed_bytes: u64,
    pub checksum: String,
    pub hf_folder: String,
    pub settings: TrainSettings,
    pub adapter: String,
    /// The quality report `run` (and the app) measured at the end: the base model against the
    /// trained ternary model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::QualityReport>,
}

/// The checkpoints in `store`, oldest first: (step, key).
pub async fn checkpoints<S: Store>(store: &S) -> Result<Vec<(u64, String)>> {
    let mut out: Vec<(u64, String)> = store
        .list("checkpoint-")
        .await?
        .into_iter()
        .filter_map(|k| {
            let step = k
                .strip_prefix("checkpoint-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((step, k))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The examples of a JSONL dataset tokenized for training, each truncated to `seq_len` tokens: an
/// error names the file and the line of an example with a token outside the vocabulary, or longer
/// than the model's context (`max_position_embeddings`, or a shorter `sliding_window`) even after
/// truncation.
pub fn tokenize_dataset(
    tok: &Tokenizer,
    cfg: &ModelConfig,
    examples: &[Example],
    data_name: &str,
    seq_len: usize,
    mask: LossMask,
) -> Result<Vec<Sequence>> {
    let vocab = cfg.vocab_size;
    let (context, field) = cfg.context();
    let mut seqs = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let seq =
            tokenize(tok, ex, seq_len, mask).map_err(|e| PipelineError::input(data_name, e))?;
        if let Some(&id) = seq.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(PipelineError::Invalid(format!(
                "{data_name}: the tokenizer gives id {id}, outside the model's vocabulary of {vocab}"
            )));
        }
        if seq.ids.len() > context {
            return Err(PipelineError::Invalid(format!(
                "{data_name}, example {}: {} tokens (--seq-len {seq_len}) are more than the model's context of {context} tokens ({field} in config.json); lower --seq-len to {context} or less",
                i + 1,
                seq.ids.len()
            )));
        }
        seqs.push(seq);
    }
    Ok(seqs)
}

/// Trains the model of `base` (a folder named `base_name`) on the JSONL `dataset` (named
/// `data_name`), writing into `store`.
pub async fn train<F: ModelFiles, S: Store>(
    ctx: &Ctx<'_>,
    base: &F,
    base_name: &str,
    dataset: &[u8],
    data_name: &str,
    store: &S,
    job: &TrainJob,
) -> Result<TrainManifest> {
    let s = &job.settings;
    s.validate()?;
    at_least(&[
        ("--log-every", job.log_every, 1),
        ("--save-steps", job.save_steps, 1),
        ("--save-total-limit", job.save_total_limit as u64, 1),
    ])
    .map_err(PipelineError::Invalid)?;
    if !job.resume {
        claim(store, job.overwrite).await?;
    }
    let gpu = ctx.gpu;
    let model = open_model(base, base_name).await?;
    let cfg = model.config.clone();
    let tok = tokenizer_of(base_name, &model)?;
    let examples =
        parse_jsonl(data_name, dataset).map_err(|e| PipelineError::input(data_name, e))?;
    let seqs = tokenize_dataset(&tok, &cfg, &examples, data_name, s.seq_len, s.loss_mask)?;
    let soft = match (&job.soft_labels, s.kd_topk) {
        (Some((name, bytes)), Some(k)) if s.loss != LossKind::Ce => {
            // (The errors name the sidecar.)
            let invalid = |e: bitnet_core::CoreError| PipelineError::Invalid(e.to_string());
            let sidecar = Sidecar::decode(name, bytes).map_err(invalid)?;
            let need: Vec<usize> = seqs.iter().map(|q| q.ids.len().saturating_sub(1)).collect();
            let labels = sidecar
                .for_examples(data_name, &examples, &need, k, cfg.vocab_size)
                .map_err(invalid)?;
            Some(labels)
        }
        _ => None,
    };

    // The memory the run needs, before any of it is allocated (soft labels: no teacher model).
    let plan = match soft {
        Some(_) => TrainSettings {
            loss: LossKind::Ce,
            ..s.clone()
        }
        .memory_plan(&cfg),
        None => s.memory_plan(&cfg),
    };
    ctx.emit(Event::Memory {
        plan: Box::new(plan.clone()),
        max_binding: gpu.max_binding(),
        adapter: gpu.info.name.clone(),
    });
    if let Some((name, bytes)) = plan.too_large(gpu.max_binding()) {
        return Err(PipelineError::TooLarge {
            tensor: name.to_string(),
            needed: human_bytes(bytes),
            limit: human_bytes(gpu.max_binding()),
            context: format!(
                "micro-batch {} × {} tokens, vocabulary {}",
                s.bsz, s.seq_len, cfg.vocab_size
            ),
            advice: "lower --bsz or --seq-len, or use a GPU with larger bindings".into(),
        });
    }

    // Linear layers run with the variant and blend path measured fastest on this adapter.
    let now = clock();
    ctx.emit(Event::Kernels(gpu.tune_gemm(&now).await?));
    let mut weights = model
        .all_f32(base)
        .await
        .map_err(|e| PipelineError::input(base_name, e))?;
    if let Some(name) = weights.keys().find(|n| is_extra_norm(n)) {
        return Err(PipelineError::Invalid(format!(
            "{base_name} carries trained extra-norm gains ({name}: a model this tool trained, or a llama.cpp `bitnet` GGUF); training from such a base is not supported yet — train from the original model"
        )));
    }
    // The extra norms' start (a resumed run computes it again for its manifest; its checkpoint
    // then holds the gains it trained).
    let mut norm_start = BTreeMap::new();
    if s.setup.post_attn_norm || s.setup.subln {
        let gains = match s.norm_init {
            NormInit::Calibrated => {
                let first = &seqs[..s.bsz.min(seqs.len())];
                calibrated_gains(gpu, &cfg, &weights, first, s.setup).await?
            }
            NormInit::One => extra_norms(&cfg, s.setup.post_attn_norm, s.setup.subln)
                .into_iter()
                .map(|(name, width)| (name, 1.0, width))
                .collect(),
        };
        for (name, g, width) in gains {
            weights.insert(name.clone(), vec![g; width]);
            norm_start.insert(name, g);
        }
        if s.norm_init == NormInit::Calibrated {
            ctx.emit(Event::Calibrated {
                gains: norm_start.iter().map(|(n, g)| (n.clone(), *g)).collect(),
            });
        }
    }
    let mut trainer = Trainer::new(gpu, &cfg, &weights, seqs, soft, 0, s.clone())?;
    let (mut first_loss, mut last_loss) = (None, None);
    if job.resume {
        let (restored, skipped) = restore_newest(gpu, &mut trainer, store).await?;
        match restored {
            Some((step, key)) => {
                if step >= s.steps && store.exists(MANIFEST_FILE).await? {
                    return Err(PipelineError::Invalid(format!(
                        "{} holds a finished run ({} of {} steps; see {}): nothing to resume; train further in a new run, or pass --overwrite to start this one again",
                        store.display(""),
                        step,
                        s.steps,
                        store.display(MANIFEST_FILE)
                    )));
                }
                // Keep the metrics of the steps the checkpoint includes.
                let kept: Vec<Metrics> =
                    parse_metrics(&store.get(METRICS_FILE).await?.unwrap_or_default())
                        .into_iter()
                        .filter(|m| m.step < step)
                        .collect();
                first_loss = kept.first().map(|m| m.loss);
                last_loss = kept.last().map(|m| m.loss);
                store.put(METRICS_FILE, &metrics_text(&kept)).await?;
                ctx.emit(Event::Resumed {
                    step,
                    from: Some(store.display(&key)),
                    skipped,
                });
            }
            None => {
                store.put(METRICS_FILE, b"").await?;
                ctx.emit(Event::Resumed {
                    step: 0,
                    from: None,
                    skipped,
                });
            }
        }
    } else {
        store.put(METRICS_FILE, b"").await?;
    }

    let start = now();
    let start_step = trainer.step;
    while trainer.step < s.steps {
        ctx.control.between_steps().await?;
        let t0 = now();
        let r = match trainer.step(gpu).await {
            Ok(r) => r,
            Err(e) => {
                let last = checkpoints(store).await?.pop();
                return Err(match last {
                    Some((step, key)) => PipelineError::Invalid(format!(
                        "{e}; the last checkpoint (step {step}) is intact: {}",
                        store.display(&key)
                    )),
                    None => e.into(),
                });
            }
        };
        let mut m = Metrics::of(&r, (now() - t0) / 1e3);
        first_loss.get_or_insert(r.loss);
        last_loss = Some(r.loss);
        let done = trainer.step;
        if r.step % job.log_every == 0 || done == s.steps {
            m.sparsity = Some(trainer.sparsity(gpu).await?);
            store
                .append(METRICS_FILE, &metrics_text(&[m.clone()]))
                .await?;
        }
        let per_step = (now() - start) / 1e3 / (done - start_step) as f64;
        ctx.emit(Event::Step {
            metrics: m,
            steps: s.steps,
            eta_s: per_step * (s.steps - done) as f64,
            gpu_bytes: gpu.allocated_bytes(),
        });
        if done % job.save_steps == 0 || done == s.steps {
            let bytes = trainer.checkpoint(gpu).await?;
            let key = format!("checkpoint-{done}.safetensors");
            store.put(&key, &bytes).await?;
            let all = checkpoints(store).await?;
            for (_, old) in &all[..all.len().saturating_sub(job.save_total_limit.max(1))] {
                store.remove(old).await?;
            }
            ctx.emit(Event::Checkpoint {
                step: done,
                key: store.display(&key),
            });
        }
    }

    let w = trainer.weights(gpu).await?;
    let extra_norms: Vec<OwnedTensor> = trainer
        .model
        .names
        .iter()
        .filter(|n| is_extra_norm(n))
        .map(|n| OwnedTensor::f32(n.clone(), trainer.model.shape(n), &w[n]))
        .collect();
    let out = export(ctx, &model, &w, extra_norms, store, s).await?;
    let final_lambda = s.final_lambda();
    let manifest = TrainManifest {
        base_model: base_name.to_string(),
        dataset_path: data_name.to_string(),
        training_steps: s.steps,
        lambda_warmup_frac: s.lambda_warmup_frac,
        rmsnorm_post_attn: s.setup.post_attn_norm,
        final_lambda,
        compression_ready: final_lambda == 1.0,
        model_type: "bitnet158".into(),
        quantizer: s.setup.quantizer.name().into(),
        lambda_schedule: s.schedule,
        norm_start,
        first_loss,
        final_loss: last_loss,
        sparsity: out.sparsity,
        packed_file: store.display(PACKED_FILE),
        packed_bytes: out.packed_bytes,
        checksum: out.checksum,
        hf_folder: store.display(HF_FOLDER),
        settings: s.clone(),
        adapter: gpu.info.name.clone(),
        quality: None,
    };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| PipelineError::Invalid(format!("{MANIFEST_FILE}: {e}")))?;
    store.put(MANIFEST_FILE, text.as_bytes()).await?;
    ctx.emit(Event::Trained(Box::new(manifest.clone())));
    Ok(manifest)
}

/// The calibrated start of the extra norms' gains `setup` asks for: each one's is the mean RMS of
/// its input over the real tokens of `first` (the run's first micro-batch), in the base model at
/// λ = 0 — o_proj's output for the post-attention norm, the attention and SwiGLU outputs for SubLN.
/// (name, gain, width) of every gain vector.
async fn calibrated_gains(
    gpu: &Gpu,
    cfg: &ModelConfig,
    weights: &BTreeMap<String, Vec<f32>>,
    first: &[Sequence],
    setup: ModelSetup,
) -> Result<Vec<(String, f32, usize)>> {
    let base = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
        subln: false,
        act8: false,
    };
    let model = GpuModel::for_inference(gpu, cfg, weights, base)?;
    let padded = pad_batch(first, 0);
    let batch = Batch::new(gpu, cfg, &padded.tokens, &padded.targets)?;
    gpu.submit(&model.forward_loss(gpu, &batch, None)?);
    let t = batch.t as usize;
    let rows: Vec<usize> = first
        .iter()
        .enumerate()
        .flat_map(|(b, s)| (0..s.ids.len()).map(move |i| b * t + i))
        .collect();
    let rms = model.norm_input_rms(gpu, &batch, &rows).await?;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let mut gains = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        if setup.post_attn_norm {
            gains.push((
                post_attn_norm_name(l),
                rms.o_proj_output[l],
                cfg.hidden_size,
            ));
        }
        if setup.subln {
            let [att, ffn] = subln_names(l);
            gains.push((att, rms.attention_output[l], q));
            gains.push((ffn, rms.swiglu_output[l], cfg.intermediate_size));
        }
    }
    Ok(gains)
}

/// Restores the newest checkpoint in `store` that is sound: a corrupt one (checksum, truncation,
/// format) is skipped for the one before it, and reported in the second list as `key: reason`. A
/// sound checkpoint of other settings, another base model or another dataset is an error. None: no
/// checkpoint (or none sound, which is an error when there were some).
async fn restore_newest<S: Store>(
    gpu: &Gpu,
    trainer: &mut Trainer,
    store: &S,
) -> Result<(Option<(u64, String)>, Vec<String>)> {
    let mut skipped = Vec::new();
    for (step, key) in checkpoints(store).await?.into_iter().rev() {
        let bytes = store.get(&key).await?.unwrap_or_default();
        match trainer.restore(gpu, &store.display(&key), &bytes) {
            Ok(()) => return Ok((Some((step, key)), skipped)),
            Err(TrainError::Checkpoint(why)) => skipped.push(why),
            Err(e) => return Err(e.into()),
        }
    }
    if skipped.is_empty() {
        return Ok((None, skipped));
    }
    Err(PipelineError::Invalid(format!(
        "no checkpoint in {} can be resumed from: {}; pass --overwrite to start the run again",
        store.display(""),
        skipped.join("; ")
    )))
}

/// The keys of an earlier training run in `store`.
async fn run_files<S: Store>(store: &S) -> Result<Vec<String>> {
    let mut keys: Vec<String> = checkpoints(store)
        .await?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    for key in [
        METRICS_FILE,
        MANIFEST_FILE,
        PACKED_FILE,
        POST_ATTN_NORM_FILE,
    ] {
        if store.exists(key).await? {
            keys.push(key.to_string());
        }
    }
    keys.extend(store.list(&format!("{HF_FOLDER}/")).await?);
    Ok(keys)
}

/// A new run takes `store`: refused when it holds an earlier run's files, unless `overwrite`
/// (then they are removed first).
async fn claim<S: Store>(store: &S, overwrite: bool) -> Result<()> {
    let earlier = run_files(store).await?;
    if earlier.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(PipelineError::Invalid(format!(
            "{} holds an earlier run ({}): pass --resume to continue it, --overwrite to replace it, or choose another --out-dir",
            store.display(""),
            earlier.join(", ")
        )));
    }
    for key in earlier {
        store.remove(&key).await?;
    }
    Ok(())
}

fn metrics_text(lines: &[Metrics]) -> Vec<u8> {
    let mut out = String::new();
    for m in lines {
        out.push_str(&serde_json::to_string(m).unwrap_or_default());
        out.push('\n');
    }
    out.into_bytes()
}

struct Exported {
    packed_bytes: u64,
    checksum: String,
    sparsity: f64,
}

/// The packed file of the trained weights `w` (training's quantizer, 2-bit) and the `hf/` folder
/// with its dequantized weights, config and tokenizer.
async fn export<S: Store>(
    ctx: &Ctx<'_>,
    model: &Model,
    w: &BTreeMap<String, Vec<f32>>,
    extra_norms: Vec<OwnedTensor>,
    store: &S,
    s: &TrainSettings,
) -> Result<Exported> {
    let cfg = &model.config;
    // The projections in f32 (the packer ternarizes them); every other tensor in --fp-dtype, or
    // in the dtype the base model stores it in.
    let stored: BTreeMap<&str, Dtype> = model
        .tensors
        .iter()
        .map(|l| (l.spec.name.as_str(), l.info.dtype))
        .collect();
    let tensors = param_table(cfg)
        .into_iter()
        .map(|p| {
            let dtype = if p.is_ternary(s.setup.quantize_lm_head) {
                Dtype::F32
            } else {
                s.fp_dtype
                    .or_else(|| stored.get(p.name.as_str()).copied())
                    .unwrap_or(Dtype::F32)
            };
            OwnedTensor::float(p.name.clone(), p.shape.clone(), &w[&p.name], dtype)
                .map_err(|e| PipelineError::input("the trained model", e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut mem = BTreeMap::new();
    mem.insert(
        "config.json".to_string(),
        model.config_json.clone().into_bytes(),
    );
    if let Some(t) = &model.tokenizer_json {
        mem.insert("tokenizer.json".to_string(), t.clone());
    }
    mem.insert(
        "model.safetensors".to_string(),
        serialize(tensors, &BTreeMap::new()),
    );
    let mem = MemoryFiles(mem);
    let trained = Model::open(&mem)
        .await
        .map_err(|e| PipelineError::input("the trained model", e))?;
    let opts = PackOptions {
        quantizer: s.setup.quantizer,
        packing: Packing::TwoBit,
        quantize_lm_head: s.setup.quantize_lm_head,
        fp_dtype: None,
        act8: s.setup.act8,
    };
    let (packed_bytes, report) =
        pack_model(Some(ctx.gpu), &trained, &mem, &opts, extra_norms, |t| {
            ctx.emit(Event::Packed(t.clone()))
        })
        .await?;
    store.put(PACKED_FILE, &packed_bytes).await?;
    let name = store.display(PACKED_FILE);
    let packed =
        PackedModel::parse(&name, &packed_bytes).map_err(|e| PipelineError::input(&name, e))?;
    for (file, data) in packed
        .unpack_to_hf()
        .map_err(|e| PipelineError::input(&name, e))?
    {
        store.put(&format!("{HF_FOLDER}/{file}"), &data).await?;
    }
    Ok(Exported {
        packed_bytes: packed_bytes.len() as u64,
        checksum: packed
            .st
            .header
            .metadata
            .get("checksum")
            .cloned()
            .unwrap_or_default(),
        sparsity: report.mean_sparsity,
    })
}
