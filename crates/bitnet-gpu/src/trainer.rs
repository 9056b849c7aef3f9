//! The training loop's state on the GPU: the model, the optimizer, the data order and the step, so
//! that one call runs one optimizer step (gradient accumulation over micro-batches, λ from the
//! schedule, cosine learning rate, clipping, AdamW) and a checkpoint captures everything a resumed
//! run needs to end with the same weights as an uninterrupted one.
//!
//! Checkpoint: a safetensors file with `param.<name>`, `adam_m.<name>` and `adam_v.<name>` (f32)
//! for every parameter, and in its metadata the step, λ, the data order's position and random state
//! (with the generator's name, [`Rng::ALGORITHM`]) and the settings (JSON) — see
//! [`Trainer::checkpoint`]. Everything that defines a run is in [`TrainSettings`], so a resume with
//! other settings is refused by the name of the setting that differs. The metadata also carries the
//! SHA-256 of the data section and the metadata (a corrupt checkpoint is refused before any of it is used) and the
//! run's identity — the checksums of the base weights and of the tokenized dataset — so a resume
//! onto another base model or another dataset is refused by what differs.

use std::collections::BTreeMap;

use bitnet_core::checksum::{checksum_parts, sequences_checksum, weights_checksum};
use bitnet_core::config::ModelConfig;
use bitnet_core::dataset::{LossMask, PaddedBatch, Sequence, pad_batch};
use bitnet_core::limits::at_least;
use bitnet_core::params::param_table;
use bitnet_core::quant::{MAX_THRESHOLD_RATIO, Quantizer};
use bitnet_core::rng::Rng;
use bitnet_core::safetensors::{
    OwnedTensor, SafeTensors, data_order, data_section, serialize_with_data,
};
use bitnet_core::schedule::{Schedule, cosine_lr};
use bitnet_core::soft::{MAX_K, SoftLabels};
use bitnet_core::summary::MemoryPlan;

use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::{Distill, TopKRows};
use crate::model::{Batch, GpuModel, ModelSetup, Teacher, TeacherProbs, is_extra_norm};
use crate::ops::Op;
use crate::optimizer::{AdamConfig, Optimizer};

/// The checkpoint format this trainer writes and reads.
pub const CHECKPOINT_FORMAT: &str = "bitnet-studio checkpoint 3";

/// What a run is: the seed's flags and ours — everything that must be the same when it resumes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    pub steps: u64,
    /// Sequences per micro-batch.
    pub bsz: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps over which the learning rate warms up.
    pub warmup_ratio: f64,
    /// Fraction of the steps over which λ goes from 0 to 1.
    pub lambda_warmup_frac: f64,
    /// The λ schedule (serialized as `bitnet schedule --shape` spells it).
    pub schedule: Schedule,
    pub seed: u64,
    pub adam: AdamConfig,
    /// Leave the embeddings (and a tied lm_head) as they are.
    pub freeze_embeddings: bool,
    /// The quantizer, the post-attention norm and whether lm_head is blended too.
    pub setup: ModelSetup,
    /// Tokens per training sequence (longer samples are truncated).
    pub seq_len: usize,
    pub loss_mask: LossMask,
    /// How the post-attention norm's gains start (when there is one).
    #[serde(default)]
    pub norm_init: NormInit,
    /// What is minimized: cross-entropy on the data's tokens, distillation from the base model
    /// (KL(p_teacher ‖ p_student) at `kd_temperature`), or both (weights 1 − `kd_weight` and
    /// `kd_weight`).
    #[serde(default)]
    pub loss: LossKind,
    #[serde(default = "one")]
    pub kd_temperature: f32,
    #[serde(default = "half")]
    pub kd_weight: f32,
    /// Distill from the teacher's K most likely tokens only (renormalized), live or from a
    /// soft-label sidecar; None: the whole vocabulary. (No teacher with `--loss ce`: unused.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kd_topk: Option<usize>,
    /// The dtype of the full-precision tensors (embeddings, norms, lm_head) in the exported packed
    /// file; None: the base model's (F16 and BF16 stay 16-bit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp_dtype: Option<bitnet_core::safetensors::Dtype>,
}

fn one() -> f32 {
    1.0
}

fn half() -> f32 {
    0.5
}

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum LossKind {
    /// Cross-entropy on the data's tokens (the seed's).
    #[default]
    #[serde(rename = "ce")]
    Ce,
    /// Distillation from the frozen base model alone.
    #[serde(rename = "kd")]
    Kd,
    /// Both.
    #[serde(rename = "ce+kd")]
    CeKd,
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Ce => "ce",
            LossKind::Kd => "kd",
            LossKind::CeKd => "ce+kd",
        }
    }
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ce" => Ok(LossKind::Ce),
            "kd" => Ok(LossKind::Kd),
            "ce+kd" => Ok(LossKind::CeKd),
            _ => Err(format!("loss must be `ce`, `kd` or `ce+kd`, not `{s}`")),
        }
    }
}

/// How the gains of the post-attention norm start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormInit {
    /// 1 (the seed's): the norm's output has unit RMS per token, far from the scale of a
    /// pretrained model's o_proj output, so the model starts far from the base model.
    #[default]
    One,
    /// Each layer's gain is the mean RMS of its o_proj output over the run's first micro-batch
    /// (the base model, λ = 0), so the norm starts close to keeping the output's scale.
    Calibrated,
}

impl NormInit {
    pub fn name(self) -> &'static str {
        match self {
            NormInit::One => "one",
            NormInit::Calibrated => "calibrated",
        }
    }
}

impl std::str::FromStr for NormInit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "one" => Ok(NormInit::One),
            "calibrated" => Ok(NormInit::Calibrated),
            _ => Err(format!(
                "norm init must be `one` or `calibrated`, not `{s}`"
            )),
        }
    }
}

impl TrainSettings {
    /// Checks every value a run depends on; the message names the flag.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Settings(m));
        at_least(&[
            ("--steps", self.steps, 1),
            ("--bsz", self.bsz as u64, 1),
            ("--grad-accum", self.grad_accum as u64, 1),
            ("--seq-len", self.seq_len as u64, 2),
        ])
        .map_err(TrainError::Settings)?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be a positive number, got {}", self.lr));
        }
        for (flag, v) in [
            ("--warmup-ratio", self.warmup_ratio),
            ("--lambda-warmup-frac", self.lambda_warmup_frac),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{flag} must be in [0, 1], got {v}"));
            }
        }
        if let Quantizer::Threshold { ratio, .. } = self.setup.quantizer
            && !(0.0..=MAX_THRESHOLD_RATIO).contains(&ratio)
        {
            return bad(format!(
                "--threshold is {ratio}; it must be in [0, {MAX_THRESHOLD_RATIO}]"
            ));
        }
        if !(self.kd_temperature > 0.0 && self.kd_temperature.is_finite()) {
            return bad(format!(
                "--kd-temperature must be a positive number, got {}",
                self.kd_temperature
            ));
        }
        if let Some(k) = self.kd_topk
            && !(1..=MAX_K).contains(&k)
        {
            return bad(format!("--kd-topk must be 1 to {MAX_K} or all, got {k}"));
        }
        if !(0.0..=1.0).contains(&self.kd_weight) {
            return bad(format!(
                "--kd-weight must be in [0, 1], got {}",
                self.kd_weight
            ));
        }
        if self.setup.act8 && self.setup.quantize_lm_head {
            return bad("--act-bits 8 rounds the projections' inputs, not lm_head's: with --quantize-lm-head, transformers' BitLinear would round lm_head's input too; use one of them".into());
        }
        let a = &self.adam;
        if !(a.weight_decay >= 0.0 && a.weight_decay.is_finite()) {
            return bad(format!(
                "--weight-decay must be a finite number ≥ 0, got {}",
                a.weight_decay
            ));
        }
        if !(a.max_grad_norm > 0.0 && a.max_grad_norm.is_finite()) {
            return bad(format!(
                "--max-grad-norm must be a positive number, got {}",
                a.max_grad_norm
            ));
        }
        Ok(())
    }

    /// The GPU memory a run with these settings needs (the plan `train`, `inspect` and the app check).
    pub fn memory_plan(&self, cfg: &ModelConfig) -> MemoryPlan {
        let mut plan = MemoryPlan::new(cfg, self.bsz, self.seq_len, self.grad_accum);
        if self.setup.subln {
            plan = plan.with_subln(cfg);
        }
        if self.setup.act8 {
            plan = plan.with_act8(cfg);
        }
        if self.loss != LossKind::Ce {
            plan = plan.with_teacher(cfg);
        }
        plan
    }

    /// The cross-entropy's weight and the distillation term (None: cross-entropy alone).
    pub fn objective(&self) -> (f32, Option<Distill>) {
        let kd = |weight| Distill {
            temperature: self.kd_temperature,
            weight,
        };
        match self.loss {
            LossKind::Ce => (1.0, None),
            LossKind::Kd => (0.0, Some(kd(1.0))),
            LossKind::CeKd => (1.0 - self.kd_weight, Some(kd(self.kd_weight))),
        }
    }

    /// λ after the last optimizer step's update (the λ the trained weights were last blended at).
    pub fn final_lambda(&self) -> f64 {
        self.steps.checked_sub(1).map_or(0.0, |last| {
            self.schedule
                .lambda(last, self.steps, self.lambda_warmup_frac)
        })
    }

    /// The settings that differ between `self` (a checkpoint's) and `other` (this run's), each as
    /// `--flag saved (this run: value)`.
    pub fn differences(&self, other: &TrainSettings) -> Vec<String> {
        let flat = |s: &TrainSettings| {
            let mut out = BTreeMap::new();
            flatten("", &serde_json::to_value(s).unwrap_or_default(), &mut out);
            out
        };
        let (a, b) = (flat(self), flat(other));
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| {
                let now = b.get(k).map_or("none".to_string(), show);
                format!("{} {} (this run: {now})", flag_of(k), show(v))
            })
            .collect()
    }
}

/// `{"adam": {"weight_decay": 0}}` → `weight_decay: 0`; a quantizer object stays whole.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v.as_object() {
        Some(map) if !map.contains_key("kind") => {
            for (k, x) in map {
                flatten(k, x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// The checksum of a checkpoint: its data section and every other metadata entry (the step, the
/// data position, the random state… a flipped bit anywhere is caught).
fn checkpoint_checksum(data: &[u8], meta: &BTreeMap<String, String>) -> String {
    let rest: BTreeMap<&String, &String> = meta.iter().filter(|(k, _)| *k != "checksum").collect();
    let rest = serde_json::to_vec(&rest).unwrap_or_default();
    checksum_parts(&[data, &rest])
}

/// A settings value as a flag would spell it: `32`, `absmean`, `threshold (ratio 0.7, scale optimal)`.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => {
            let kind = map.get("kind").map_or(String::new(), show);
            let rest: Vec<String> = map
                .iter()
                .filter(|(k, _)| *k != "kind")
                .map(|(k, x)| format!("{k} {}", show(x)))
                .collect();
            if rest.is_empty() {
                kind
            } else {
                format!("{kind} ({})", rest.join(", "))
            }
        }
        other => other.to_string(),
    }
}

/// The command-line flag of a settings field.
fn flag_of(field: &str) -> String {
    match field {
        "schedule" => "--lambda-schedule".into(),
        "post_attn_norm" => "--rmsnorm-post-attn".into(),
        "act8" => "--act-bits 8".into(),
        "beta1" | "beta2" | "eps" => format!("AdamW {field}"),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// 0-based optimizer step.
    pub step: u64,
    pub lambda: f64,
    /// `warmup` while λ < 1, then `ternary`.
    pub phase: &'static str,
    pub loss: f32,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Tokens in the step's micro-batches (padding excluded).
    pub tokens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("step {step}: the {what} is {value} (not finite); training stopped")]
    NonFinite {
        step: u64,
        what: &'static str,
        value: f32,
    },
    /// A checkpoint that cannot be used as it is (corrupt, truncated, another format): a resume may
    /// fall back to an earlier one.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A sound checkpoint of another run (another base model or dataset).
    #[error(
        "{file} was made from {what}; resume with the base model and dataset the run started with, or start a new run in another folder"
    )]
    IdentityDiffers { file: String, what: String },
    #[error(
        "{file} was written with other settings: {differences}; resume with the same flags, or start a new run in another folder"
    )]
    SettingsDiffer { file: String, differences: String },
    #[error("{0}")]
    Settings(String),
}

/// What distillation learns from (with `--loss kd` or `ce+kd`).
enum TeacherSource {
    /// The frozen base model, run over every micro-batch (its top K taken on the GPU with
    /// `--kd-topk`).
    Model(Box<GpuModel>),
    /// A soft-label sidecar's top K per position, one entry per example of the data.
    Soft(Vec<SoftLabels>),
}

/// A micro-batch's teacher: the base model's batch (its logits after its forward), and the
/// top-K rows (from the model's logits, or uploaded from soft labels).
struct TeacherBatch {
    model: Option<Batch>,
    top: Option<TopKRows>,
}

impl TeacherBatch {
    fn probs(&self) -> TeacherProbs<'_> {
        match (&self.top, &self.model) {
            (Some(top), _) => TeacherProbs::TopK(top.buffers()),
            (None, Some(b)) => TeacherProbs::Logits(b.logits()),
            (None, None) => unreachable!("a teacher batch has logits or top-K rows"),
        }
    }
}

pub struct Trainer {
    pub settings: TrainSettings,
    pub model: GpuModel,
    teacher: Option<TeacherSource>,
    optimizer: Optimizer,
    data: Vec<Sequence>,
    pad_id: u32,
    /// The data order of the current pass and the position in it.
    order: Vec<usize>,
    cursor: usize,
    rng: Rng,
    /// Optimizer steps done.
    pub step: u64,
    /// Checksums of the base weights and of the tokenized data: the run's identity.
    base_checksum: String,
    data_checksum: String,
}

impl Trainer {
    /// A run on `data`; with `soft` (one entry per sequence of `data`, K = `--kd-topk`),
    /// distillation reads the teacher's top K from it instead of running the base model.
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        data: Vec<Sequence>,
        soft: Option<Vec<SoftLabels>>,
        pad_id: u32,
        settings: TrainSettings,
    ) -> Result<Trainer, TrainError> {
        settings.validate()?;
        let bad = |m: String| Err(TrainError::Settings(m));
        if data.is_empty() {
            return bad("training needs at least one example".into());
        }
        if let Some(labels) = &soft {
            let Some(k) = settings.kd_topk.filter(|_| settings.loss != LossKind::Ce) else {
                return bad(
                    "soft labels are for top-K distillation (--loss kd or ce+kd with --kd-topk)"
                        .into(),
                );
            };
            if labels.len() != data.len() {
                return bad(format!(
                    "{} soft labels for {} examples",
                    labels.len(),
                    data.len()
                ));
            }
            for (i, (l, seq)) in labels.iter().zip(&data).enumerate() {
                if l.k != k || l.positions() + 1 < seq.ids.len() {
                    return bad(format!(
                        "the soft labels of example {} hold {} positions of {} tokens; training needs {} of {k}",
                        i + 1,
                        l.positions(),
                        l.k,
                        seq.ids.len() - 1
                    ));
                }
            }
        }
        let model = GpuModel::new(gpu, cfg, weights, settings.setup)?;
        let optimizer = Optimizer::new(gpu, &model, settings.adam)?;
        // The teacher: the base model's own weights as they are (no extra norm, no blend).
        let teacher = match (settings.objective().1, soft) {
            (None, _) => None,
            (Some(_), Some(labels)) => Some(TeacherSource::Soft(labels)),
            (Some(_), None) => {
                let base: BTreeMap<String, Vec<f32>> = weights
                    .iter()
                    .filter(|(n, _)| !is_extra_norm(n))
                    .map(|(n, w)| (n.clone(), w.clone()))
                    .collect();
                let plain = ModelSetup {
                    quantizer: settings.setup.quantizer,
                    post_attn_norm: false,
                    quantize_lm_head: false,
                    subln: false,
                    act8: false,
                };
                let model = GpuModel::for_inference(gpu, cfg, &base, plain)?;
                Some(TeacherSource::Model(Box::new(model)))
            }
        };
        let mut t = Trainer {
            teacher,
            // The base model's own parameters (not the gains of norms it does not have).
            base_checksum: weights_checksum(weights.iter().filter(|(n, _)| !is_extra_norm(n))),
            data_checksum: sequences_checksum(&data),
            optimizer,
            model,
            order: Vec::new(),
            cursor: 0,
            rng: Rng::new(settings.seed),
            settings,
            data,
            pad_id,
            step: 0,
        };
        t.shuffle();
        Ok(t)
    }

    /// A new pass over the data in a random order (Fisher–Yates from the run's generator).
    fn shuffle(&mut self) {
        self.order = (0..self.data.len()).collect();
        self.rng.shuffle(&mut self.order);
        self.cursor = 0;
    }

    /// The next `bsz` examples of the data order.
    fn next_examples(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.settings.bsz);
        while out.len() < self.settings.bsz {
            if self.cursor == self.order.len() {
                self.shuffle();
            }
            out.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        out
    }

    /// The teacher of the micro-batch of `examples` (`padded`): the base model's batch (and
    /// its forward, then with `--kd-topk` its top K, appended to `ops`), or the soft labels' rows.
    fn teacher_batch(
        &self,
        gpu: &Gpu,
        examples: &[usize],
        padded: &PaddedBatch,
        ops: &mut Vec<Op>,
    ) -> Result<Option<TeacherBatch>, TrainError> {
        let (b, t) = (padded.tokens.len(), padded.tokens[0].len());
        let rows = b * t;
        Ok(match &self.teacher {
            None => None,
            Some(TeacherSource::Model(teacher)) => {
                let batch = teacher.batch(gpu, &padded.tokens, &padded.targets)?;
                ops.extend(teacher.forward_loss(gpu, &batch, None)?);
                // A K of the whole vocabulary or more is the whole distribution.
                let vocab = self.model.cfg.vocab_size;
                let top = match self.settings.kd_topk.filter(|&k| k < vocab) {
                    None => None,
                    Some(k) => {
                        let top = TopKRows::alloc(gpu, rows, k)?;
                        let v = vocab as u32;
                        ops.push(gpu.topk(rows as u32, v, batch.logits(), top.buffers()));
                        Some(top)
                    }
                };
                Some(TeacherBatch {
                    model: Some(batch),
                    top,
                })
            }
            Some(TeacherSource::Soft(labels)) => {
                // Each example's rows, zeros past its labels (padding: never a target).
                let k = self.settings.kd_topk.unwrap_or(1);
                let (mut ids, mut probs) = (vec![0u32; rows * k], vec![0f32; rows * k]);
                for (row, &e) in examples.iter().enumerate() {
                    let l = &labels[e];
                    let n = l.positions().min(t) * k;
                    let at = row * t * k;
                    ids[at..at + n].copy_from_slice(&l.ids[..n]);
                    probs[at..at + n].copy_from_slice(&l.probs[..n]);
                }
                let top = TopKRows {
                    k: k as u32,
                    ids: gpu.upload("top-k ids", bytemuck::cast_slice(&ids))?,
                    probs: gpu.upload_f32("top-k probabilities", &probs)?,
                };
                Some(TeacherBatch {
                    model: None,
                    top: Some(top),
                })
            }
        })
    }

    /// λ at the current step.
    pub fn lambda(&self) -> f64 {
        let s = &self.settings;
        s.schedule.lambda(self.step, s.steps, s.lambda_warmup_frac)
    }

    /// Runs one optimizer step; a non-finite loss or gradient norm stops with an error naming the
    /// step (the weights are then those of the step before: the update is not applied).
    pub async fn step(&mut self, gpu: &Gpu) -> Result<StepReport, TrainError> {
        let s = self.settings.clone();
        let lambda = self.lambda();
        let lr = cosine_lr(s.lr, self.step, s.steps, s.warmup_ratio);
        let (ce_weight, kd) = s.objective();
        let mut batches = Vec::with_capacity(s.grad_accum);
        let mut teacher_batches = Vec::with_capacity(s.grad_accum);
        // The teacher's passes come first: each micro-batch's distribution over the same tokens.
        let mut ops = Vec::new();
        for _ in 0..s.grad_accum {
            let examples = self.next_examples();
            let seqs: Vec<Sequence> = examples.iter().map(|&e| self.data[e].clone()).collect();
            let b = pad_batch(&seqs, self.pad_id);
            batches.push(self.model.batch(gpu, &b.tokens, &b.targets)?);
            teacher_batches.push(self.teacher_batch(gpu, &examples, &b, &mut ops)?);
        }
        let total: u32 = batches.iter().map(|b| b.n_valid).sum();
        ops.extend(self.model.zero_grads());
        let lambda32 = Some(lambda as f32);
        for (b, tb) in batches.iter_mut().zip(&teacher_batches) {
            b.loss_divisor = total.max(1);
            match (tb, kd) {
                (Some(tb), Some(kd)) => {
                    let t = Teacher {
                        probs: tb.probs(),
                        kd,
                        ce_weight,
                    };
                    ops.extend(
                        self.model
                            .forward_backward_distilled(gpu, b, lambda32, &t)?,
                    );
                }
                _ => ops.extend(self.model.forward_backward(gpu, b, lambda32)?),
            }
        }
        ops.extend(self.optimizer.grad_norm_ops(gpu, &self.model));
        gpu.submit(&ops);
        let mut loss = 0.0;
        for b in &batches {
            let rows = (b.b * b.t) as usize;
            let read = async |buf| -> Result<f32, GpuError> {
                Ok(gpu.read_f32("loss", buf, rows).await?.iter().sum::<f32>())
            };
            loss += read(&b.loss).await?;
            if kd.is_some() && ce_weight > 0.0 {
                loss += read(&b.kd_loss).await?;
            }
        }
        let grad_norm = self.optimizer.read_grad_norm(gpu, &self.model).await?;
        for (what, value) in [("loss", loss), ("gradient norm", grad_norm)] {
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    step: self.step,
                    what,
                    value,
                });
            }
        }
        let frozen = |name: &str| s.freeze_embeddings && name == "model.embed_tokens.weight";
        gpu.submit(&self.optimizer.update_ops(
            gpu,
            &self.model,
            self.step as u32 + 1,
            lr as f32,
            &frozen,
        ));
        let report = StepReport {
            step: self.step,
            lambda,
            phase: if lambda < 1.0 { "warmup" } else { "ternary" },
            loss,
            lr,
            grad_norm,
            tokens: total as u64,
        };
        self.step += 1;
        Ok(report)
    }

    /// Every parameter's current (latent) weights, by name.
    pub async fn weights(&self, gpu: &Gpu) -> Result<BTreeMap<String, Vec<f32>>, GpuError> {
        let mut out = BTreeMap::new();
        for name in &self.model.names {
            if let Some(buf) = self.model.buffer(name) {
                out.insert(
                    name.clone(),
                    gpu.read_f32(name, buf, self.model.numel(name)).await?,
                );
            }
        }
        Ok(out)
    }

    /// Fraction of zero codes over every ternary weight under the training quantizer, computed on
    /// the GPU (only the 2-bit codes are read back).
    pub async fn sparsity(&self, gpu: &Gpu) -> Result<f64, GpuError> {
        let (mut zeros, mut total) = (0u64, 0u64);
        for spec in param_table(&self.model.cfg) {
            if !spec.is_ternary(self.settings.setup.quantize_lm_head) {
                continue;
            }
            let Some(buf) = self.model.buffer(&spec.name) else {
                continue;
            };
            let n = self.model.numel(&spec.name) as u64;
            let t = gpu
                .quantize_buffer(&spec.name, buf, n, &self.settings.setup.quantizer)
                .await?;
            // Code 1 is a zero weight; the padding after the last weight is not counted.
            let codes = t
                .packed
                .iter()
                .flat_map(|b| [b >> 6, (b >> 4) & 3, (b >> 2) & 3, b & 3])
                .take(n as usize);
            zeros += codes.filter(|&c| c == 1).count() as u64;
            total += n;
        }
        Ok(zeros as f64 / total.max(1) as f64)
    }

    /// A checkpoint of the run: weights, optimizer moments, step, λ, data position, random state,
    /// settings, the run's identity and the checksum of the data section.
    pub async fn checkpoint(&self, gpu: &Gpu) -> Result<Vec<u8>, TrainError> {
        let mut tensors = Vec::new();
        for name in &self.model.names {
            let shape = self.model.shape(name);
            let n = self.model.numel(name);
            let (Some(buf), Some((m, v))) = (self.model.buffer(name), self.optimizer.moments(name))
            else {
                continue;
            };
            for (prefix, b) in [("param", buf), ("adam_m", m), ("adam_v", v)] {
                let values = gpu.read_f32(name, b, n).await?;
                tensors.push(OwnedTensor::f32(
                    format!("{prefix}.{name}"),
                    shape.clone(),
                    &values,
                ));
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
        meta.insert("rng".to_string(), Rng::ALGORITHM.to_string());
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("lambda".to_string(), self.lambda().to_string());
        meta.insert("data_cursor".to_string(), self.cursor.to_string());
        meta.insert(
            "data_order".to_string(),
            serde_json::to_string(&self.order).unwrap_or_default(),
        );
        meta.insert("rng_state".to_string(), self.rng.state().to_string());
        meta.insert(
            "settings".to_string(),
            serde_json::to_string(&self.settings).unwrap_or_default(),
        );
        meta.insert("base_model".to_string(), self.base_checksum.clone());
        meta.insert("dataset".to_string(), self.data_checksum.clone());
        data_order(&mut tensors);
        let (data, header) = data_section(&tensors);
        meta.insert("checksum".to_string(), checkpoint_checksum(&data, &meta));
        Ok(serialize_with_data(header, &meta, &data))
    }

    /// Restores a checkpoint written by [`Trainer::checkpoint`] for the same model and data. Nothing
    /// is changed unless the checkpoint is sound and of this run: its format, checksum, settings,
    /// base model and dataset are checked first, in that order.
    pub fn restore(&mut self, gpu: &Gpu, file: &str, bytes: &[u8]) -> Result<(), TrainError> {
        let bad = |m: String| TrainError::Checkpoint(format!("{file}: {m}"));
        let st = SafeTensors::parse(file, bytes).map_err(|e| bad(e.to_string()))?;
        let meta = &st.header.metadata;
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("no `{k}` in the metadata")))
        };
        if field("format")? != CHECKPOINT_FORMAT {
            return Err(bad(format!(
                "written as `{}`, this version reads `{CHECKPOINT_FORMAT}`",
                field("format")?
            )));
        }
        let got = checkpoint_checksum(st.data, meta);
        if field("checksum")? != &got {
            return Err(bad(format!(
                "checksum mismatch: metadata says {}, data hashes to {got} (the file is corrupt)",
                field("checksum")?
            )));
        }
        if field("rng")? != Rng::ALGORITHM {
            return Err(bad(format!(
                "its data order was drawn by `{}`, this version draws with `{}`",
                field("rng")?,
                Rng::ALGORITHM
            )));
        }
        let saved: TrainSettings =
            serde_json::from_str(field("settings")?).map_err(|e| bad(format!("settings: {e}")))?;
        if saved != self.settings {
            return Err(TrainError::SettingsDiffer {
                file: file.to_string(),
                differences: saved.differences(&self.settings).join(", "),
            });
        }
        let mut differ = Vec::new();
        if field("base_model")? != &self.base_checksum {
            differ.push(format!(
                "other base weights ({}; this run's: {})",
                field("base_model")?,
                self.base_checksum
            ));
        }
        if field("dataset")? != &self.data_checksum {
            differ.push(format!(
                "another dataset ({}; this run's tokenized data: {})",
                field("dataset")?,
                self.data_checksum
            ));
        }
        if !differ.is_empty() {
            return Err(TrainError::IdentityDiffers {
                file: file.to_string(),
                what: differ.join(" and "),
            });
        }
        let number = |k: &str| -> Result<u64, TrainError> {
            field(k)?.parse().map_err(|e| bad(format!("{k}: {e}")))
        };
        let order: Vec<usize> = serde_json::from_str(field("data_order")?)
            .map_err(|e| bad(format!("data_order: {e}")))?;
        if order.len() != self.data.len() || order.iter().any(|&i| i >= self.data.len()) {
            return Err(bad("its data order does not fit this dataset".into()));
        }
        for name in &self.model.names {
            let (Some(buf), Some((m, v))) = (self.model.buffer(name), self.optimizer.moments(name))
            else {
                continue;
            };
            for (prefix, b) in [("param", buf), ("adam_m", m), ("adam_v", v)] {
                let key = format!("{prefix}.{name}");
                let t = st
                    .get(&key)
                    .ok_or_else(|| bad(format!("tensor {key} is missing")))?;
                if t.shape != self.model.shape(name) {
                    return Err(bad(format!("tensor {key} has shape {:?}", t.shape)));
                }
                gpu.write_f32(b, &st.to_f32(t).map_err(|e| bad(e.to_string()))?);
            }
        }
        self.step = number("step")?;
        self.cursor = number("data_cursor")? as usize;
        self.order = order;
        self.rng = Rng::from_state(number("rng_state")?);
        Ok(())
    }
}
