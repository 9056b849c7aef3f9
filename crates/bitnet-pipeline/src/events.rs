//! What a running job tells its shell: one typed event per thing worth showing (the CLI prints
//! them, the app charts them). The job never prints.

use bitnet_core::selfgen::{Counts, Rejection};
use bitnet_core::summary::MemoryPlan;
use bitnet_gpu::matmul::GemmPlan;
use bitnet_gpu::packer::TensorReport;

use crate::eval::Perplexity;
use crate::selfgen::SelfgenReport;
use crate::task::TaskAccuracy;
use crate::train::{Metrics, TrainManifest};

/// The stages of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    SelfGeneration,
    Training,
    Packing,
    Evaluation,
}

/// What happened to one self-generated sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleOutcome {
    pub instruction: String,
    pub response: String,
    /// None: kept. Else why it was rejected (a filter, or a duplicate).
    pub rejected: Option<Rejected>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejected {
    Filter(Rejection),
    Duplicate,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage of `run` starts; `skipped` when an earlier run finished it.
    Stage {
        stage: Stage,
        index: u32,
        of: u32,
        detail: String,
        skipped: bool,
    },
    /// Self-generation: one batch done — the counts so far and every sample of the batch.
    Samples {
        counts: Counts,
        num: u64,
        max_attempts: u64,
        tokens_per_s: f64,
        outcomes: Vec<SampleOutcome>,
    },
    SelfgenDone(Box<SelfgenReport>),
    /// Training: the memory the run needs against the adapter's binding limit (before allocating).
    Memory {
        plan: Box<MemoryPlan>,
        max_binding: u64,
        adapter: String,
    },
    /// The linear-layer kernels measured fastest on this adapter.
    Kernels(GemmPlan),
    /// The extra norms' gains start calibrated: (gain name, value) of each.
    Calibrated {
        gains: Vec<(String, f32)>,
    },
    /// A run continues from a checkpoint (or finds none and starts at step 0). `skipped`: newer
    /// checkpoints that were corrupt, each `file: reason`.
    Resumed {
        step: u64,
        from: Option<String>,
        skipped: Vec<String>,
    },
    /// One optimizer step (every step; `Metrics::sparsity` only on logged steps).
    Step {
        metrics: Metrics,
        steps: u64,
        /// Seconds per step so far, times the steps left.
        eta_s: f64,
        /// GPU buffer bytes allocated so far.
        gpu_bytes: u64,
    },
    Checkpoint {
        step: u64,
        key: String,
    },
    /// One tensor of the packed file.
    Packed(TensorReport),
    Trained(Box<TrainManifest>),
    Perplexity {
        label: String,
        result: Perplexity,
    },
    /// Exact-match accuracy over a task file.
    TaskAccuracy {
        label: String,
        result: Box<TaskAccuracy>,
    },
}
