//! The parameter table: one row per tensor of a Llama-family model (name, shape, role, whether it is
//! ternarized). It drives loading, shape checks, parameter counts, packing and export, so that no other
//! place keeps its own list of tensor names.

use crate::config::ModelConfig;

/// What a tensor is for; decides whether it is ternarized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Embedding,
    /// A linear projection weight (q, k, v, o, gate, up, down): ternarized.
    Projection,
    Bias,
    Norm,
    LmHead,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamSpec {
    /// Hugging Face safetensors name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// PyTorch shape: (out, in) for a linear weight.
    pub shape: Vec<usize>,
    pub role: Role,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether this tensor becomes ternary (every linear projection; `lm_head` only when asked).
    pub fn is_ternary(&self, quantize_lm_head: bool) -> bool {
        self.role == Role::Projection || (quantize_lm_head && self.role == Role::LmHead)
    }
}

/// Every parameter the config implies, in Hugging Face order. A tied `lm_head` is not listed: it is
/// the embedding.
pub fn param_table(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let q_out = cfg.num_attention_heads * cfg.head_dim;
    let kv_out = cfg.num_key_value_heads * cfg.head_dim;
    let mut t = Vec::new();
    let mut push =
        |name: String, shape: Vec<usize>, role: Role| t.push(ParamSpec { name, shape, role });
    push(
        "model.embed_tokens.weight".into(),
        vec![v, h],
        Role::Embedding,
    );
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        push(format!("{p}.input_layernorm.weight"), vec![h], Role::Norm);
        let projections = [
            ("self_attn.q_proj", q_out, h, cfg.qkv_bias),
            ("self_attn.k_proj", kv_out, h, cfg.qkv_bias),
            ("self_attn.v_proj", kv_out, h, cfg.qkv_bias),
            ("self_attn.o_proj", h, q_out, cfg.o_bias),
            ("mlp.gate_proj", i, h, cfg.mlp_bias),
            ("mlp.up_proj", i, h, cfg.mlp_bias),
            ("mlp.down_proj", h, i, cfg.mlp_bias),
        ];
        for (name, out, inp, bias) in projections {
            push(
                format!("{p}.{name}.weight"),
                vec![out, inp],
                Role::Projection,
            );
            if bias {
                push(format!("{p}.{name}.bias"), vec![out], Role::Bias);
            }
            if name == "self_attn.o_proj" {
                push(
                    format!("{p}.post_attention_layernorm.weight"),
                    vec![h],
                    Role::Norm,
                );
            }
        }
    }
    push("model.norm.weight".into(), vec![h], Role::Norm);
    if !cfg.tie_word_embeddings {
        push("lm_head.weight".into(), vec![v, h], Role::LmHead);
    }
    t
}

/// Tensors a checkpoint may carry that are not parameters (old rotary buffers, a tied lm_head).
pub fn is_ignorable_extra(cfg: &ModelConfig, name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight")
}

/// Checks the tensors of a model to export (`file`'s, name and shape each) against `cfg`: every
/// parameter the config implies is there with its shape, and the only others are extra norm gains
/// of their width. (A packed file's shapes are not covered by its checksum.)
pub fn check_shapes<'a>(
    file: &str,
    cfg: &ModelConfig,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize])>,
) -> crate::Result<()> {
    let table = param_table(cfg);
    let mut seen = std::collections::BTreeSet::new();
    for (name, shape) in tensors {
        let want = match table.iter().find(|p| p.name == name) {
            Some(p) => p.shape.clone(),
            None => match crate::cpu::model::extra_norm_width(cfg, name) {
                Some(w) => vec![w],
                None if is_ignorable_extra(cfg, name) => continue,
                None => {
                    return Err(crate::CoreError::tensor(
                        file,
                        name,
                        "is no parameter of the model its config describes",
                    ));
                }
            },
        };
        if shape != want.as_slice() {
            return Err(crate::CoreError::tensor(
                file,
                name,
                format!("shape {shape:?} disagrees with the config, which implies {want:?}"),
            ));
        }
        seen.insert(name.to_string());
    }
    match table.iter().find(|p| !seen.contains(&p.name)) {
        Some(p) => Err(crate::CoreError::tensor(file, &p.name, "is missing")),
        None => Ok(()),
    }
}

/// Number of parameters as transformers' `num_parameters()` counts them (tied weights once).
pub fn parameter_count(cfg: &ModelConfig) -> u64 {
    param_table(cfg).iter().map(|p| p.numel() as u64).sum()
}
