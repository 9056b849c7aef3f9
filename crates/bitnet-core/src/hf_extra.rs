//! Hugging Face folders of models trained with norms a stock Llama / Qwen2 / Mistral class does not
//! have (the post-attention RMSNorm, SubLN): the gains travel in model.safetensors under our names,
//! and a small modeling file (`modeling_bitnet_studio.py`, loaded with `trust_remote_code=True`)
//! adds the norms where they sit; `config.json` names them (`bitnet_studio`) and points
//! `auto_map` at the class.

use serde_json::{Map, Value, json};

use crate::cpu::model::POST_ATTN_NORM_EPS;

pub const MODELING_FILE: &str = "modeling_bitnet_studio.py";
pub const MODELING_SOURCE: &str = include_str!("modeling_bitnet_studio.py");

/// The modeling file's class for `model_type`.
fn class(model_type: &str) -> &'static str {
    match model_type {
        "qwen2" => "Qwen2WithExtraNorms",
        "mistral" => "MistralWithExtraNorms",
        _ => "LlamaWithExtraNorms",
    }
}

/// Points `config` at the modeling file for a model with the post-attention norm and/or SubLN.
pub fn annotate(config: &mut Map<String, Value>, post_attn_norm: bool, subln: bool) {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("llama")
        .to_string();
    config.insert(
        "auto_map".into(),
        json!({ "AutoModelForCausalLM": format!("modeling_bitnet_studio.{}", class(&model_type)) }),
    );
    config.insert(
        "bitnet_studio".into(),
        json!({
            "post_attn_norm": post_attn_norm,
            "post_attn_norm_eps": POST_ATTN_NORM_EPS,
            "subln": subln,
        }),
    );
}
