//! `config.json` of a Hugging Face causal LM: the Llama family (llama, qwen2, mistral), in both the
//! transformers 4.x spelling (`rope_theta`, `rope_scaling`, `torch_dtype`) and the 5.x spelling
//! (`rope_parameters`, `dtype`). Anything else is refused with the list of what we support.
//!
//! Every field that changes the model's math is honoured as transformers does or refused by name:
//! RoPE scaling (`default`, `linear`, `dynamic`, `llama3`, `yarn`; [`ModelConfig::rope`]),
//! `hidden_act` (`silu` only), `partial_rotary_factor` (1 only), `attention_dropout` (0 only), a
//! sliding attention window (honoured by limiting sequences to the window, within which it changes
//! nothing; [`ModelConfig::context`]), `rms_norm_eps` (finite, ≥ 0).

use serde_json::{Map, Value};

use crate::error::{CoreError, Result};

mod rope;

use rope::rope_fields;
pub use rope::{ROPE_TYPES, Rope, RopeScaling};

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
    /// How RoPE's frequencies are scaled (`rope_scaling` / `rope_parameters.rope_type`).
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    /// The attention window of sliding-window layers (Mistral's `sliding_window`; Qwen2's when
    /// `use_sliding_window` gives it layers), if any layer has one.
    pub sliding_window: Option<usize>,
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
        let f = Fields {
            file,
            obj,
            prefix: String::new(),
        };
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
        let max_position_embeddings = f.usize("max_position_embeddings")?.unwrap_or(2048);
        let (rope_theta, rope_scaling) = rope_fields(&f, max_position_embeddings)?;
        let num_hidden_layers = f.req_usize("num_hidden_layers")?;
        let sliding_window = sliding_window(&f, &model_type, num_hidden_layers)?;
        refuse_unsupported(&f)?;
        let rms_norm_eps = f.f64("rms_norm_eps")?.unwrap_or(1e-6);
        if !(rms_norm_eps >= 0.0 && rms_norm_eps.is_finite()) {
            return Err(CoreError::config(
                file,
                format!("`rms_norm_eps` is {rms_norm_eps}; it must be a finite number ≥ 0"),
            ));
        }
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
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            sliding_window,
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

    /// The longest sequence the model's math is exact for, and the field that sets it:
    /// `max_position_embeddings`, or `sliding_window` when that is shorter (within the window a
    /// sliding-window layer attends to every earlier token, as a full one does).
    pub fn context(&self) -> (usize, &'static str) {
        match self.sliding_window {
            Some(w) if w < self.max_position_embeddings => (w, "sliding_window"),
            _ => (self.max_position_embeddings, "max_position_embeddings"),
        }
    }
}

/// The attention window of the layers that have one (transformers' Mistral: `sliding_window`
/// unless null; Qwen2: only with `use_sliding_window`, on the layers `layer_types` or
/// `max_window_layers` name). Llama has none.
fn sliding_window(f: &Fields, model_type: &str, layers: usize) -> Result<Option<usize>> {
    let window = f.usize("sliding_window")?;
    let used = match model_type {
        "mistral" => true,
        "qwen2" if f.bool("use_sliding_window")?.unwrap_or(false) => {
            match f.get("layer_types").and_then(|v| v.as_array()) {
                Some(types) => types.iter().any(|t| t == "sliding_attention"),
                None => f.usize("max_window_layers")?.unwrap_or(28) < layers,
            }
        }
        _ => false,
    };
    match window {
        Some(0) if used => Err(CoreError::config(
            f.file,
            "`sliding_window` is 0; it must be a positive number of tokens (or null)",
        )),
        w => Ok(w.filter(|_| used)),
    }
}

/// Fields that would change the model's math in a way this tool does not implement.
fn refuse_unsupported(f: &Fields) -> Result<()> {
    if let Some(act) = f.string("hidden_act")?
        && act != "silu"
        && act != "swish"
    {
        return Err(CoreError::config(
            f.file,
            format!(
                "`hidden_act` is `{act}`; this tool implements `silu` (SwiGLU, the activation of Llama, Qwen2 and Mistral models) only"
            ),
        ));
    }
    if let Some(p) = f.f64("attention_dropout")?.filter(|&p| p != 0.0) {
        return Err(CoreError::config(
            f.file,
            format!("`attention_dropout` is {p}; this tool trains without dropout (0.0) only"),
        ));
    }
    Ok(())
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
    /// How the fields are named in messages: `` or `rope_parameters.`.
    prefix: String,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn wrong(&self, key: &str, want: &str, got: &Value) -> CoreError {
        CoreError::config(
            self.file,
            format!("`{}{key}` must be {want}, found {got}", self.prefix),
        )
    }
    /// A required positive, finite number.
    fn positive(&self, key: &str) -> Result<f64> {
        match self.f64(key)? {
            Some(v) if v > 0.0 && v.is_finite() => Ok(v),
            Some(v) => Err(self.wrong(key, "a positive number", &serde_json::json!(v))),
            None => Err(CoreError::config(
                self.file,
                format!("missing required field `{}{key}`", self.prefix),
            )),
        }
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

    fn err(json: &str) -> String {
        ModelConfig::from_json_bytes("m/config.json", json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rope_scaling_is_read_in_both_spellings() {
        let v4 = LLAMA4.replace(
            "\"rope_theta\":500000.0",
            r#""rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,
                "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let c = ModelConfig::from_json_bytes("config.json", v4.as_bytes()).unwrap();
        assert_eq!(
            c.rope_scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0
            }
        );
        let v5 = LLAMA4.replace(
            "\"rope_theta\":500000.0",
            r#""rope_parameters":{"type":"linear","factor":2.0,"rope_theta":500000.0}"#,
        );
        let c = ModelConfig::from_json_bytes("config.json", v5.as_bytes()).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        let rope = c.rope();
        assert_eq!(rope.inv_freq.len(), 8);
        assert_eq!(rope.inv_freq[0], 0.5);
    }

    #[test]
    fn fields_that_change_the_math_are_refused_by_name_and_value() {
        let with = |field: &str| {
            LLAMA4.replace("\"vocab_size\":300", &format!("\"vocab_size\":300,{field}"))
        };
        for (field, says) in [
            (
                r#""rope_scaling":{"rope_type":"longrope","factor":2.0}"#,
                "`rope_scaling.rope_type` is `longrope`, which this tool does not implement; supported: default, linear, dynamic, llama3, yarn",
            ),
            (r#""hidden_act":"gelu""#, "`hidden_act` is `gelu`"),
            (r#""rms_norm_eps":-1e-6"#, "`rms_norm_eps` is -0.000001"),
            (
                r#""rope_parameters":{"rope_type":"default","rope_theta":"1e6"}"#,
                "`rope_parameters.rope_theta` must be a number, found \"1e6\"",
            ),
            (
                r#""partial_rotary_factor":0.5"#,
                "`partial_rotary_factor` is 0.5",
            ),
            (r#""attention_dropout":0.1"#, "`attention_dropout` is 0.1"),
            (
                r#""rope_scaling":{"rope_type":"linear"}"#,
                "missing required field `rope_scaling.factor`",
            ),
            (
                r#""rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1}"#,
                "`rope_scaling.high_freq_factor` (1) must be greater than `low_freq_factor` (4)",
            ),
            (
                r#""rope_scaling":"yarn""#,
                "`rope_scaling` must be an object",
            ),
        ] {
            let json = with(field).replace("\"rms_norm_eps\":1e-5,", "");
            let e = err(&json);
            assert!(
                e.starts_with("m/config.json") && e.contains(says),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn a_sliding_window_limits_the_context() {
        let mistral = LLAMA4.replace("\"llama\"", "\"mistral\"").replace(
            "\"max_position_embeddings\":256",
            "\"max_position_embeddings\":256,\"sliding_window\":64",
        );
        let c = ModelConfig::from_json_bytes("config.json", mistral.as_bytes()).unwrap();
        assert_eq!(c.context(), (64, "sliding_window"));
        let none = mistral.replace("\"sliding_window\":64", "\"sliding_window\":null");
        let c = ModelConfig::from_json_bytes("config.json", none.as_bytes()).unwrap();
        assert_eq!(c.context(), (256, "max_position_embeddings"));
        // Qwen2 uses its window only with use_sliding_window, on layers from max_window_layers.
        let qwen = mistral.replace("\"mistral\"", "\"qwen2\"");
        let c = ModelConfig::from_json_bytes("config.json", qwen.as_bytes()).unwrap();
        assert_eq!(c.sliding_window, None);
        let on = qwen.replace(
            "\"sliding_window\":64",
            "\"sliding_window\":64,\"use_sliding_window\":true,\"max_window_layers\":1",
        );
        let c = ModelConfig::from_json_bytes("config.json", on.as_bytes()).unwrap();
        assert_eq!(c.context(), (64, "sliding_window"));
        let all_full = on.replace("\"max_window_layers\":1", "\"max_window_layers\":2");
        let c = ModelConfig::from_json_bytes("config.json", all_full.as_bytes()).unwrap();
        assert_eq!(c.sliding_window, None);
    }
}
