//! `config.json` of a Hugging Face causal LM: the Llama family (llama, qwen2, mistral), in both the
//! transformers 4.x spelling (`rope_theta`, `torch_dtype`) and the 5.x spelling (`rope_parameters`,
//! `dtype`). Anything else is refused with the list of what we support.

use serde_json::{Map, Value};

use crate::error::{CoreError, Result};

/// Model types whose tensors and forward pass we know.
pub const SUPPORTED_MODEL_TYPES: [&str; 3] = ["llama", "qwen2", "mistral"];

/// More layers than any released model has; a larger value is a corrupt config.
pub const MAX_LAYERS: usize = 4096;

/// The fields of `config.json` that the rest of the system uses, after defaults are applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub model_type: String,
    /// `architectures[0]`, e.g. `LlamaForCausalLM`; derived from `model_type` when absent.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q, k and v (always on for qwen2, `attention_bias` for llama).
    pub qkv_bias: bool,
    /// Bias on o_proj (llama `attention_bias`).
    pub o_bias: bool,
    /// Biases on gate/up/down (llama `mlp_bias`).
    pub mlp_bias: bool,
    /// `dtype` / `torch_dtype` as written, if any.
    pub dtype: Option<String>,
}

impl ModelConfig {
    /// Parses `config.json` bytes; `file` names the file in error messages.
    pub fn from_json_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| CoreError::json(file, e))?;
        let obj = value
            .as_object()
            .ok_or_else(|| CoreError::config(file, "expected a JSON object at the top level"))?;
        Self::from_map(file, obj)
    }

    fn from_map(file: &str, obj: &Map<String, Value>) -> Result<Self> {
        let f = Fields { file, obj };
        let model_type = f.string("model_type")?.ok_or_else(|| {
            CoreError::config(
                file,
                format!(
                    "no `model_type` field; supported model types: {}",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            )
        })?;
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(CoreError::UnsupportedModel {
                file: file.to_string(),
                model_type,
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        let architecture = match obj.get("architectures").and_then(|a| a.as_array()) {
            Some(list) => match list.first().and_then(|v| v.as_str()) {
                Some(a) => a.to_string(),
                None => {
                    return Err(CoreError::config(
                        file,
                        "`architectures` is empty or not a list of strings",
                    ));
                }
            },
            None => default_architecture(&model_type).to_string(),
        };

        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        let num_key_value_heads = f
            .usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match f.usize("head_dim")? {
            Some(d) => d,
            None => {
                if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
                    return Err(CoreError::config(
                        file,
                        format!(
                            "hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads} and no head_dim is given"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(CoreError::config(
                file,
                format!(
                    "num_key_value_heads {num_key_value_heads} must be positive and divide num_attention_heads {num_attention_heads}"
                ),
            ));
        }
        // transformers 5.x moved rope_theta into rope_parameters (also spelled rope_scaling).
        let rope_theta = match f.f64("rope_theta")? {
            Some(t) => t,
            None => {
                let nested = ["rope_parameters", "rope_scaling"]
                    .iter()
                    .filter_map(|k| obj.get(*k).and_then(|v| v.as_object()))
                    .find_map(|m| m.get("rope_theta").and_then(|v| v.as_f64()));
                nested.unwrap_or(10000.0)
            }
        };
        let attention_bias = f.bool("attention_bias")?.unwrap_or(false);
        let qkv_bias = model_type == "qwen2" || attention_bias;
        let o_bias = model_type == "llama" && attention_bias;
        let mlp_bias = model_type == "llama" && f.bool("mlp_bias")?.unwrap_or(false);
        let dtype = match f.string("dtype")? {
            Some(d) => Some(d),
            None => f.string("torch_dtype")?,
        };

        let cfg = ModelConfig {
            architecture,
            vocab_size: f.req_usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.req_usize("intermediate_size")?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            max_position_embeddings: f.usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: f.bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias,
            dtype,
            model_type,
        };
        for (name, v) in [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("num_hidden_layers", cfg.num_hidden_layers),
            ("head_dim", cfg.head_dim),
        ] {
            if v == 0 {
                return Err(CoreError::config(
                    file,
                    format!("`{name}` must be positive"),
                ));
            }
        }
        if cfg.num_hidden_layers > MAX_LAYERS {
            return Err(CoreError::config(
                file,
                format!(
                    "num_hidden_layers {} exceeds the limit of {MAX_LAYERS}",
                    cfg.num_hidden_layers
                ),
            ));
        }
        // Every tensor's element count must be addressable (usize is 32 bits on wasm32).
        let q_out = cfg.num_attention_heads.checked_mul(cfg.head_dim);
        let dims = [
            (
                "vocab_size × hidden_size",
                cfg.vocab_size.checked_mul(cfg.hidden_size),
            ),
            (
                "intermediate_size × hidden_size",
                cfg.intermediate_size.checked_mul(cfg.hidden_size),
            ),
            (
                "num_attention_heads × head_dim × hidden_size",
                q_out.and_then(|q| q.checked_mul(cfg.hidden_size)),
            ),
        ];
        for (what, n) in dims {
            if n.is_none_or(|n| n > isize::MAX as usize / 4) {
                return Err(CoreError::config(
                    file,
                    format!(
                        "{what} is too large for one tensor on this platform ({} bits)",
                        usize::BITS
                    ),
                ));
            }
        }
        Ok(cfg)
    }
}

fn default_architecture(model_type: &str) -> &'static str {
    match model_type {
        "qwen2" => "Qwen2ForCausalLM",
        "mistral" => "MistralForCausalLM",
        _ => "LlamaForCausalLM",
    }
}

/// Typed access to optional fields with errors that name the field and the file.
struct Fields<'a> {
    file: &'a str,
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn wrong(&self, key: &str, want: &str, got: &Value) -> CoreError {
        CoreError::config(self.file, format!("`{key}` must be {want}, found {got}"))
    }
    fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a non-negative integer", v)),
        }
    }
    fn req_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?
            .ok_or_else(|| CoreError::config(self.file, format!("missing required field `{key}`")))
    }
    fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }
    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }
    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.wrong(key, "a string", v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA4: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
        "vocab_size":300,"rms_norm_eps":1e-5,"rope_theta":500000.0,"torch_dtype":"float32",
        "tie_word_embeddings":false,"max_position_embeddings":256}"#;

    #[test]
    fn parses_transformers4_spelling() {
        let c = ModelConfig::from_json_bytes("config.json", LLAMA4.as_bytes()).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.dtype.as_deref(), Some("float32"));
        assert!(!c.qkv_bias);
    }

    #[test]
    fn parses_transformers5_spelling() {
        let j = r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300,"dtype":"bfloat16",
            "rope_parameters":{"rope_type":"default","rope_theta":1000000.0},"tie_word_embeddings":true}"#;
        let c = ModelConfig::from_json_bytes("config.json", j.as_bytes()).unwrap();
        assert_eq!(c.rope_theta, 1_000_000.0);
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.architecture, "Qwen2ForCausalLM");
        assert!(c.qkv_bias && !c.o_bias && c.tie_word_embeddings);
    }

    #[test]
    fn refuses_unknown_model_type_naming_it() {
        let j = r#"{"model_type":"gpt2","hidden_size":64}"#;
        let e = ModelConfig::from_json_bytes("m/config.json", j.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m/config.json")
                && e.contains("gpt2")
                && e.contains("llama, qwen2, mistral"),
            "{e}"
        );
    }

    #[test]
    fn invalid_json_names_the_file() {
        let e = ModelConfig::from_json_bytes("x/config.json", b"{\"model_type\": ").unwrap_err();
        assert!(matches!(e, CoreError::Json { .. }));
        assert!(
            e.to_string().starts_with("x/config.json: invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn absurd_sizes_are_refused_not_overflowed() {
        let j = LLAMA4.replace("\"vocab_size\":300", "\"vocab_size\":18446744073709551615");
        let e = ModelConfig::from_json_bytes("config.json", j.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("vocab_size × hidden_size is too large"), "{e}");
    }

    #[test]
    fn wrong_field_type_is_named() {
        let j = LLAMA4.replace("\"hidden_size\":64", "\"hidden_size\":\"64\"");
        let e = ModelConfig::from_json_bytes("config.json", j.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`hidden_size` must be a non-negative integer"),
            "{e}"
        );
    }
}
