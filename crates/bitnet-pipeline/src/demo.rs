//! The built-in demo model and the demo run's settings: a 3-layer Llama (hidden 96, 4 heads, 2 KV
//! heads, 0.4 M parameters) with its own byte-level BPE, trained by `tools/make_demo_model.py`
//! (PyTorch, run by hand) on five kinds of small tasks — adding and subtracting small numbers,
//! the larger of two numbers, sorting three words, repeating four words — until it answers its
//! held-out tasks exactly (assets/demo/report.json). The demo measures what ternarization does to
//! a model that knows something: accuracy on those held-out tasks ([`demo_tasks`]) before and
//! after, with self-generation templates made of tasks it was trained on ([`demo_templates`]).
//! Shared by `bitnet demo` and the app, so both run the same model.

use std::collections::BTreeMap;

use bitnet_core::Schedule;
use bitnet_core::dataset::LossMask;
use bitnet_core::model::MemoryFiles;
use bitnet_core::quant::Quantizer;
use bitnet_core::selfgen::Templates;
use bitnet_gpu::model::ModelSetup;
use bitnet_gpu::optimizer::AdamConfig;
use bitnet_gpu::trainer::TrainSettings;

use crate::error::{PipelineError, Result};
use crate::run::RunConfig;
use crate::train::{TrainJob, default_save_steps, defaults};

/// Where `run_demo` puts the model in its store.
pub const DEMO_MODEL_FOLDER: &str = "demo-model";
/// The name the demo's templates go by in the self-generation state.
pub const DEMO_TEMPLATES_NAME: &str = "the demo's templates";
/// The name the demo's task file goes by in reports.
pub const DEMO_TASKS_NAME: &str = "demo tasks (tasks.jsonl)";

/// The demo model's files as the script wrote them.
const DEMO_FILES: [(&str, &[u8]); 4] = [
    ("config.json", include_bytes!("../assets/demo/config.json")),
    (
        "generation_config.json",
        include_bytes!("../assets/demo/generation_config.json"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../assets/demo/tokenizer.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../assets/demo/model.safetensors"),
    ),
];
const DEMO_TASKS: &[u8] = include_bytes!("../assets/demo/tasks.jsonl");
const DEMO_TEMPLATES: &[u8] = include_bytes!("../assets/demo/templates.json");

/// The demo model's files: config.json, generation_config.json, tokenizer.json, model.safetensors.
pub fn demo_model() -> Result<MemoryFiles> {
    let files: BTreeMap<String, Vec<u8>> = DEMO_FILES
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect();
    Ok(MemoryFiles(files))
}

/// The demo model's held-out tasks (JSONL, `output` = the expected answer), never trained on.
pub fn demo_tasks() -> (String, Vec<u8>) {
    (DEMO_TASKS_NAME.to_string(), DEMO_TASKS.to_vec())
}

/// Self-generation templates made of tasks the demo model was trained on.
pub fn demo_templates() -> Result<Templates> {
    Templates::from_json("the demo's templates.json", DEMO_TEMPLATES)
        .map_err(|e| PipelineError::input("the demo model", e))
}

/// The demo's training settings, sized to finish in minutes on a CPU adapter (60 steps of 8
/// sequences of 64 tokens; the demo model's samples are short).
pub fn demo_train_job() -> TrainJob {
    let steps = 60;
    TrainJob {
        settings: TrainSettings {
            steps,
            bsz: 8,
            grad_accum: 1,
            lr: 1e-3,
            warmup_ratio: 0.1,
            lambda_warmup_frac: 0.4,
            schedule: Schedule::Linear,
            seed: 42,
            adam: AdamConfig::default(),
            freeze_embeddings: false,
            setup: ModelSetup {
                quantizer: Quantizer::Absmean,
                post_attn_norm: false,
                quantize_lm_head: false,
                subln: false,
                act8: false,
            },
            seq_len: 64,
            loss_mask: LossMask::All,
            norm_init: defaults::NORM_INIT,
            loss: defaults::LOSS,
            kd_temperature: defaults::KD_TEMPERATURE,
            kd_weight: defaults::KD_WEIGHT,
            kd_topk: None,
            fp_dtype: None,
        },
        save_steps: default_save_steps(steps),
        save_total_limit: 2,
        log_every: 2,
        resume: true,
        overwrite: false,
        soft_labels: None,
    }
}

/// `run` on the demo model: 100 samples of at most 48 new tokens, 60 training steps, accuracy on
/// its held-out tasks, and a sample from the ternary model at the end.
pub fn demo_run_config() -> Result<RunConfig> {
    Ok(RunConfig {
        num: 100,
        max_new_tokens: 48,
        batch: 16,
        chat: false,
        templates: demo_templates()?,
        templates_name: Some(DEMO_TEMPLATES_NAME.to_string()),
        train: demo_train_job(),
        sample: true,
        tasks: Some(demo_tasks()),
        text: None,
    })
}
