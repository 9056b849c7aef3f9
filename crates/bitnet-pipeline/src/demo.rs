//! The built-in demo model and the demo run's settings: a 2-layer Llama (hidden 64, 4 heads, 2 KV
//! heads) with a byte-level BPE of 297 tokens (the test fixtures' tokenizer) and weights drawn from
//! a fixed seed (normal, std 0.02, like Hugging Face initialization; norms 1), plus one hand-set
//! direction that favours word-start tokens. It knows no language: the demo shows the pipeline at
//! work, and its perplexities show the model learning its own samples. Shared by `bitnet demo` and
//! the app, so both run the same model.

use std::collections::BTreeMap;

use bitnet_core::dataset::LossMask;
use bitnet_core::model::MemoryFiles;
use bitnet_core::quant::Quantizer;
use bitnet_core::rng::Rng;
use bitnet_core::safetensors::{OwnedTensor, serialize};
use bitnet_core::selfgen::Templates;
use bitnet_core::{ModelConfig, Schedule};
use bitnet_gpu::model::ModelSetup;
use bitnet_gpu::optimizer::AdamConfig;
use bitnet_gpu::trainer::TrainSettings;

use crate::error::{PipelineError, Result};
use crate::run::RunConfig;
use crate::train::{TrainJob, default_save_steps, defaults};

/// The demo model's tokenizer.
const DEMO_TOKENIZER: &str = include_str!("../assets/demo-tokenizer.json");
/// Where `run_demo` puts the model in its store.
pub const DEMO_MODEL_FOLDER: &str = "demo-model";

/// The demo model's files: config.json, tokenizer.json, model.safetensors.
pub fn demo_model() -> Result<MemoryFiles> {
    let vocab = 297usize;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "torch_dtype": "float32",
    });
    let config_text = serde_json::to_string_pretty(&config).unwrap_or_default();
    let cfg = ModelConfig::from_json_bytes("config.json", config_text.as_bytes())
        .map_err(|e| PipelineError::input("the demo model", e))?;
    // Token ids that begin a word (byte-level BPE: a leading `Ġ`, the space).
    let tok: serde_json::Value = serde_json::from_str(DEMO_TOKENIZER)
        .map_err(|e| PipelineError::Invalid(format!("the demo tokenizer: {e}")))?;
    let word_start: Vec<usize> = tok["model"]["vocab"]
        .as_object()
        .map(|v| {
            v.iter()
                .filter(|(s, _)| s.starts_with('\u{120}'))
                .filter_map(|(_, id)| id.as_u64().map(|i| i as usize))
                .collect()
        })
        .unwrap_or_default();
    let h = cfg.hidden_size;
    let mut rng = Rng::new(2026);
    let tensors: Vec<OwnedTensor> = bitnet_core::params::param_table(&cfg)
        .into_iter()
        .map(|spec| {
            let n = spec.numel();
            let mut values = if spec.name.ends_with("norm.weight") {
                vec![1f32; n]
            } else {
                rng.normal_vec(n, 0.02)
            };
            // One constant direction (hidden dimension 0) in every embedding, read by lm_head as a
            // preference for word starts over word pieces and the end token, so that samples come
            // out as "words" and pass the filters.
            if spec.name == "model.embed_tokens.weight" {
                values.iter_mut().step_by(h).for_each(|x| *x = 1.0);
            }
            if spec.name == "lm_head.weight" {
                for (t, row) in values.chunks_mut(h).enumerate() {
                    row[0] = if word_start.contains(&t) { 0.1 } else { -0.1 };
                }
                values[h] = -0.3; // the end token, id 1
            }
            OwnedTensor::f32(spec.name.clone(), spec.shape.clone(), &values)
        })
        .collect();
    let mut files = BTreeMap::new();
    files.insert("config.json".to_string(), config_text.into_bytes());
    files.insert(
        "tokenizer.json".to_string(),
        DEMO_TOKENIZER.as_bytes().to_vec(),
    );
    files.insert(
        "model.safetensors".to_string(),
        serialize(tensors, &BTreeMap::new()),
    );
    Ok(MemoryFiles(files))
}

/// The demo's training settings, sized to finish in minutes on a CPU adapter.
pub fn demo_train_job() -> TrainJob {
    let steps = 40;
    TrainJob {
        settings: TrainSettings {
            steps,
            bsz: 4,
            grad_accum: 1,
            lr: 3e-3,
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
            },
            seq_len: 128,
            loss_mask: LossMask::All,
            norm_init: defaults::NORM_INIT,
        },
        save_steps: default_save_steps(steps),
        save_total_limit: 2,
        log_every: 2,
        resume: true,
        overwrite: false,
    }
}

/// `run` on the demo model: 24 samples of at most 48 new tokens, 40 training steps, and a sample
/// from the ternary model at the end.
pub fn demo_run_config() -> RunConfig {
    RunConfig {
        num: 24,
        max_new_tokens: 48,
        batch: 8,
        chat: false,
        templates: Templates::builtin(),
        templates_name: None,
        train: demo_train_job(),
        sample: true,
    }
}
