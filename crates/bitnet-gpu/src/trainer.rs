//! The training loop's state on the GPU: the model, the optimizer, the data order and the step, so
//! that one call runs one optimizer step (gradient accumulation over micro-batches, λ from the
//! schedule, cosine learning rate, clipping, AdamW) and a checkpoint captures everything a resumed
//! run needs to end with the same weights as an uninterrupted one.
//!
//! Checkpoint: a safetensors file with `param.<name>`, `adam_m.<name>` and `adam_v.<name>` (f32)
//! for every parameter, and in its metadata the step, λ, the data order's position and random state
//! and the settings (JSON) — see [`Trainer::checkpoint`].

use std::collections::BTreeMap;

use bitnet_core::config::ModelConfig;
use bitnet_core::dataset::{Sequence, pad_batch};
use bitnet_core::safetensors::{OwnedTensor, SafeTensors, serialize};
use bitnet_core::schedule::{Schedule, cosine_lr};

use crate::device::Gpu;
use crate::error::GpuError;
use crate::model::{Batch, GpuModel, ModelSetup};
use crate::optimizer::{AdamConfig, Optimizer};
use crate::selftest::Rng;

/// What a run is: the seed's flags and ours.
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
    /// The λ schedule, as `bitnet schedule --shape` spells it.
    pub schedule: String,
    pub seed: u64,
    pub adam: AdamConfig,
    /// Leave the embeddings (and a tied lm_head) as they are.
    pub freeze_embeddings: bool,
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
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Settings(String),
}

pub struct Trainer {
    pub settings: TrainSettings,
    pub model: GpuModel,
    optimizer: Optimizer,
    schedule: Schedule,
    data: Vec<Sequence>,
    pad_id: u32,
    /// The data order of the current pass and the position in it.
    order: Vec<usize>,
    cursor: usize,
    rng: Rng,
    /// Optimizer steps done.
    pub step: u64,
}

impl Trainer {
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        setup: ModelSetup,
        data: Vec<Sequence>,
        pad_id: u32,
        settings: TrainSettings,
    ) -> Result<Trainer, TrainError> {
        let schedule: Schedule = settings.schedule.parse().map_err(TrainError::Settings)?;
        if data.is_empty() || settings.bsz == 0 || settings.grad_accum == 0 {
            return Err(TrainError::Settings(
                "training needs data, a batch size and gradient accumulation of at least 1".into(),
            ));
        }
        let model = GpuModel::new(gpu, cfg, weights, setup)?;
        let optimizer = Optimizer::new(gpu, &model, settings.adam)?;
        let mut t = Trainer {
            optimizer,
            model,
            schedule,
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
        for i in (1..self.order.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
        self.cursor = 0;
    }

    /// The next `bsz` sequences of the data order.
    fn next_sequences(&mut self) -> Vec<Sequence> {
        let mut out = Vec::with_capacity(self.settings.bsz);
        while out.len() < self.settings.bsz {
            if self.cursor == self.order.len() {
                self.shuffle();
            }
            out.push(self.data[self.order[self.cursor]].clone());
            self.cursor += 1;
        }
        out
    }

    /// λ at the current step.
    pub fn lambda(&self) -> f64 {
        let s = &self.settings;
        self.schedule
            .lambda(self.step, s.steps, s.lambda_warmup_frac)
    }

    /// Runs one optimizer step; a non-finite loss or gradient norm stops with an error naming the
    /// step (the weights are then those of the step before: the update is not applied).
    pub async fn step(&mut self, gpu: &Gpu) -> Result<StepReport, TrainError> {
        let s = self.settings.clone();
        let lambda = self.lambda();
        let lr = cosine_lr(s.lr, self.step, s.steps, s.warmup_ratio);
        let mut batches = Vec::with_capacity(s.grad_accum);
        for _ in 0..s.grad_accum {
            let b = pad_batch(&self.next_sequences(), self.pad_id);
            batches.push(Batch::new(gpu, &self.model.cfg, &b.tokens, &b.targets)?);
        }
        let total: u32 = batches.iter().map(|b| b.n_valid).sum();
        let mut ops = self.model.zero_grads();
        for b in &mut batches {
            b.loss_divisor = total.max(1);
            ops.extend(self.model.forward_backward(gpu, b, Some(lambda as f32))?);
        }
        ops.extend(self.optimizer.grad_norm_ops(gpu, &self.model));
        gpu.submit(&ops);
        let mut loss = 0.0;
        for b in &batches {
            let rows = (b.b * b.t) as usize;
            loss += gpu
                .read_f32("loss", &b.loss, rows)
                .await?
                .iter()
                .sum::<f32>();
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

    /// A checkpoint of the run: weights, optimizer moments, step, λ, data position, random state
    /// and settings.
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
        meta.insert(
            "format".to_string(),
            "bitnet-studio checkpoint 1".to_string(),
        );
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
        Ok(serialize(tensors, &meta))
    }

    /// Restores a checkpoint written by [`Trainer::checkpoint`] for the same model and data.
    pub fn restore(&mut self, gpu: &Gpu, file: &str, bytes: &[u8]) -> Result<(), TrainError> {
        let bad = |m: String| TrainError::Checkpoint(format!("{file}: {m}"));
        let st = SafeTensors::parse(file, bytes).map_err(|e| bad(e.to_string()))?;
        let meta = &st.header.metadata;
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("no `{k}` in the metadata")))
        };
        if field("format")? != "bitnet-studio checkpoint 1" {
            return Err(bad("not a bitnet-studio checkpoint of format 1".into()));
        }
        let saved: TrainSettings =
            serde_json::from_str(field("settings")?).map_err(|e| bad(format!("settings: {e}")))?;
        if saved != self.settings {
            return Err(bad(format!(
                "it was written with other settings ({saved:?}); resume with the same flags"
            )));
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
        self.rng = Rng::new(number("rng_state")?);
        Ok(())
    }
}
