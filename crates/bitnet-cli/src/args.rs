//! Flags shared by several commands: the quantizer (pack, grads, generate, eval), sampling
//! (generate), self-generation (selfgen, run) and the training flags of the seed (train, run).

use bitnet_core::Schedule;
use bitnet_core::dataset::LossMask;
use bitnet_core::quant::{DEFAULT_THRESHOLD_RATIO, MAX_THRESHOLD_RATIO, Quantizer, ScaleMode};
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::Templates;
use bitnet_gpu::model::ModelSetup;
use bitnet_gpu::optimizer::AdamConfig;
use bitnet_gpu::trainer::{LossKind, NormInit, TrainSettings};
use bitnet_pipeline::train::{TrainJob, default_save_steps, defaults};
use clap::ValueEnum;
use std::path::PathBuf;

use crate::error::{CliError, CliResult};

/// The quantizer flags.
#[derive(clap::Args)]
pub struct QuantArgs {
    #[arg(long, value_enum, default_value_t = QuantizerArg::Absmean)]
    quantizer: QuantizerArg,
    /// Threshold ratio r (threshold quantizer): Δ = r·mean|W|. Default 0.7.
    #[arg(long)]
    threshold: Option<f32>,
    /// Scale of the threshold quantizer: optimal (mean |W| of non-zero codes) or absmean (the seed's).
    #[arg(long)]
    scale: Option<ScaleMode>,
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantizerArg {
    Absmean,
    Threshold,
}

impl QuantArgs {
    /// The quantizer the flags describe.
    pub fn quantizer(&self) -> CliResult<Quantizer> {
        let (threshold, scale) = (self.threshold, self.scale);
        match self.quantizer {
            QuantizerArg::Absmean => {
                if threshold.is_some() || scale.is_some() {
                    return Err(CliError::Usage(
                        "--threshold and --scale apply to --quantizer threshold only".into(),
                    ));
                }
                Ok(Quantizer::Absmean)
            }
            QuantizerArg::Threshold => {
                let ratio = threshold.unwrap_or(DEFAULT_THRESHOLD_RATIO);
                if !(0.0..=MAX_THRESHOLD_RATIO).contains(&ratio) {
                    return Err(CliError::Usage(format!(
                        "--threshold is {ratio}; it must be in [0, {MAX_THRESHOLD_RATIO}] (Δ = r·mean|W|: above that almost every weight becomes 0)"
                    )));
                }
                Ok(Quantizer::Threshold {
                    ratio,
                    scale: scale.unwrap_or(ScaleMode::Optimal),
                })
            }
        }
    }
}

/// How `bitnet generate` chooses tokens.
#[derive(clap::Args)]
pub struct SamplingArgs {
    /// Take the most likely token every time (the default unless --temperature is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long = "top-p", alias = "top_p", default_value_t = 1.0)]
    top_p: f32,
    /// 0 keeps every token.
    #[arg(long = "top-k", alias = "top_k", default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn sampling(&self) -> CliResult<Sampling> {
        match (self.greedy, self.temperature) {
            (false, Some(t)) => Sampling::new(t, self.top_p, self.top_k)
                .map_err(|e| CliError::Usage(format!("--{e}"))),
            _ if self.top_p != 1.0 || self.top_k != 0 => Err(CliError::Usage(format!(
                "--top-p {} and --top-k {} apply when sampling: give --temperature too (greedy decoding ignores them)",
                self.top_p, self.top_k
            ))),
            _ => Ok(Sampling::Greedy),
        }
    }
}

/// The self-generation flags shared by `bitnet selfgen` and `bitnet run`.
#[derive(clap::Args)]
pub struct GenFlags {
    #[arg(
        long = "max-new-tokens",
        alias = "max_new_tokens",
        default_value_t = 256
    )]
    pub max_new_tokens: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// JSON templates {"domains": [{"name", "form" (with {task}), "tasks": [...]}]}.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Prompt through the tokenizer's chat template (instruct models).
    #[arg(long)]
    pub chat: bool,
}

impl GenFlags {
    /// The templates of `--templates FILE` (with the name a resumed run must match), or the
    /// built-in ones.
    pub fn templates(&self) -> CliResult<(Templates, Option<String>)> {
        match &self.templates {
            Some(p) => {
                let name = p.display().to_string();
                let bytes = std::fs::read(p).map_err(|e| CliError::io(p, e))?;
                let t =
                    Templates::from_json(&name, &bytes).map_err(|e| CliError::input(&name, e))?;
                Ok((t, Some(name)))
            }
            None => Ok((Templates::builtin(), None)),
        }
    }
}

/// The training flags shared by `bitnet train` and `bitnet run` (the seed's, in either spelling).
#[derive(clap::Args)]
pub struct TrainFlags {
    #[arg(long, default_value_t = defaults::STEPS)]
    steps: u64,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = defaults::BSZ)]
    pub bsz: usize,
    #[arg(long = "grad-accum", alias = "grad_accum", default_value_t = defaults::GRAD_ACCUM)]
    grad_accum: usize,
    #[arg(long, default_value_t = defaults::LR)]
    lr: f64,
    #[arg(long = "warmup-ratio", alias = "warmup_ratio", default_value_t = defaults::WARMUP_RATIO)]
    warmup_ratio: f64,
    #[arg(long = "weight-decay", alias = "weight_decay", default_value_t = defaults::WEIGHT_DECAY)]
    weight_decay: f32,
    #[arg(long = "max-grad-norm", alias = "max_grad_norm", default_value_t = defaults::MAX_GRAD_NORM)]
    max_grad_norm: f32,
    #[arg(
        long = "lambda-warmup-frac",
        alias = "lambda_warmup_frac",
        default_value_t = defaults::LAMBDA_WARMUP_FRAC
    )]
    lambda_warmup_frac: f64,
    /// linear | sigmoid:K | exp:K | step:N | const:V
    #[arg(
        long = "lambda-schedule",
        alias = "lambda_schedule",
        default_value = defaults::LAMBDA_SCHEDULE
    )]
    lambda_schedule: Schedule,
    /// 1: insert the trained post-attention RMSNorm (the seed's default); 0: not (ours: no extra
    /// norm measured best, docs/QUALITY.md).
    #[arg(long = "rmsnorm-post-attn", alias = "rmsnorm_post_attn", default_value_t = u8::from(defaults::POST_ATTN_NORM), num_args = 0..=1, default_missing_value = "1")]
    rmsnorm_post_attn: u8,
    /// SubLN (BitNet b1.58's sub-layer norms): a trained RMSNorm on the input of every o_proj and
    /// down_proj.
    #[arg(long)]
    subln: bool,
    /// How the extra norms' gains start: calibrated (the mean RMS of each norm's input on the
    /// first micro-batch) or one (the seed's).
    #[arg(long = "norm-init", alias = "norm_init", default_value = defaults::NORM_INIT.name())]
    norm_init: NormInit,
    /// What is minimized: ce (cross-entropy on the data's tokens, the seed's), kd (distillation:
    /// KL(p_base ‖ p_student) at --kd-temperature at every trained position, the frozen base model
    /// as the teacher; the default: it measured best, docs/QUALITY.md) or ce+kd ((1 − W)·CE + W·KD,
    /// W = --kd-weight).
    #[arg(long, default_value = defaults::LOSS.name())]
    loss: LossKind,
    #[arg(long = "kd-temperature", alias = "kd_temperature", default_value_t = defaults::KD_TEMPERATURE)]
    kd_temperature: f32,
    /// W of --loss ce+kd, in [0, 1].
    #[arg(long = "kd-weight", alias = "kd_weight", default_value_t = defaults::KD_WEIGHT)]
    kd_weight: f32,
    /// Distill from the base model's K most likely tokens only (renormalized) instead of the whole
    /// vocabulary; `train` reads them from the dataset's soft-label sidecar (`selfgen
    /// --soft-labels K` writes DATA.soft beside DATA.jsonl) when there is one, else the base model
    /// computes them as it trains.
    #[arg(long = "kd-topk", alias = "kd_topk", default_value_t = KdTopK(defaults::KD_TOPK))]
    kd_topk: KdTopK,
    /// Store embeddings, norms and lm_head of the exported packed file as f32, f16 or bf16
    /// (default: as the base model stores them).
    #[arg(long = "fp-dtype", value_parser = bitnet_core::safetensors::Dtype::float_named)]
    fp_dtype: Option<bitnet_core::safetensors::Dtype>,
    #[command(flatten)]
    quant: QuantArgs,
    #[arg(long = "quantize-lm-head", alias = "quantize_lm_head")]
    quantize_lm_head: bool,
    /// 8: W1.58A8, every projection's input rounded to 8 bits per token (absmax) as it trains
    /// (straight-through) and whenever the model runs (the packed file says so) — what
    /// transformers' BitLinear computes; 16: full-precision activations (the default).
    #[arg(long = "act-bits", alias = "act_bits", default_value_t = 16)]
    act_bits: u8,
    #[arg(long = "seq-len", alias = "seq_len", default_value_t = defaults::SEQ_LEN)]
    seq_len: usize,
    /// all (every token, the seed's) or response (only the answer).
    #[arg(long = "loss-mask", alias = "loss_mask", default_value = "all")]
    loss_mask: LossMask,
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Checkpoint every N steps (default: steps / 4).
    #[arg(long = "save-steps", alias = "save_steps")]
    save_steps: Option<u64>,
    #[arg(
        long = "save-total-limit",
        alias = "save_total_limit",
        default_value_t = defaults::SAVE_TOTAL_LIMIT
    )]
    save_total_limit: usize,
    #[arg(long = "log-every", alias = "log_every", default_value_t = defaults::LOG_EVERY)]
    log_every: u64,
    #[arg(long = "freeze-embeddings", alias = "freeze_embeddings")]
    freeze_embeddings: bool,
}

/// `--kd-topk`: K, or `all` (the whole vocabulary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdTopK(pub Option<usize>);

impl std::str::FromStr for KdTopK {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(KdTopK(None)),
            k => k
                .parse()
                .map(|k| KdTopK(Some(k)))
                .map_err(|_| format!("`{k}` is not a whole number or `all`")),
        }
    }
}

impl std::fmt::Display for KdTopK {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => write!(f, "all"),
            Some(k) => write!(f, "{k}"),
        }
    }
}

impl TrainFlags {
    /// The training job the flags describe.
    pub fn job(&self, resume: bool, overwrite: bool) -> CliResult<TrainJob> {
        if !matches!(self.act_bits, 8 | 16) {
            return Err(CliError::Usage(format!(
                "--act-bits must be 8 or 16, got {}",
                self.act_bits
            )));
        }
        if self.rmsnorm_post_attn > 1 {
            return Err(CliError::Usage(format!(
                "--rmsnorm-post-attn must be 0 or 1, got {}",
                self.rmsnorm_post_attn
            )));
        }
        Ok(TrainJob {
            settings: TrainSettings {
                steps: self.steps,
                bsz: self.bsz,
                grad_accum: self.grad_accum,
                lr: self.lr,
                warmup_ratio: self.warmup_ratio,
                lambda_warmup_frac: self.lambda_warmup_frac,
                schedule: self.lambda_schedule,
                seed: self.seed,
                adam: AdamConfig {
                    weight_decay: self.weight_decay,
                    max_grad_norm: self.max_grad_norm,
                    ..AdamConfig::default()
                },
                freeze_embeddings: self.freeze_embeddings,
                setup: ModelSetup {
                    quantizer: self.quant.quantizer()?,
                    post_attn_norm: self.rmsnorm_post_attn == 1,
                    quantize_lm_head: self.quantize_lm_head,
                    subln: self.subln,
                    act8: self.act_bits == 8,
                },
                seq_len: self.seq_len,
                loss_mask: self.loss_mask,
                norm_init: self.norm_init,
                loss: self.loss,
                kd_temperature: self.kd_temperature,
                kd_weight: self.kd_weight,
                // (Cross-entropy alone has no teacher to restrict.)
                kd_topk: self.kd_topk.0.filter(|_| self.loss != LossKind::Ce),
                fp_dtype: self.fp_dtype,
            },
            save_steps: self
                .save_steps
                .unwrap_or(default_save_steps(self.steps))
                .max(1),
            save_total_limit: self.save_total_limit,
            log_every: self.log_every,
            resume,
            overwrite,
            soft_labels: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        flags: TrainFlags,
    }

    #[test]
    fn train_flags_default_to_the_pipelines_defaults() {
        let cli = Train::parse_from(["bitnet"])
            .flags
            .job(false, false)
            .unwrap();
        assert_eq!(format!("{cli:?}"), format!("{:?}", TrainJob::defaults()));
    }
}
