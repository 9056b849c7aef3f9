//! A packed ternary model as a Hugging Face folder that transformers loads as a packed BitNet model
//! (`quantization_config.quant_method = "bitnet"`, `linear_class = "bitlinear"`): every ternary
//! projection a uint8 tensor `[out/4, in]` of 2-bit codes (q + 1) packed along the output dimension —
//! byte (r, c) holds rows r, r + out/4, r + 2·out/4, r + 3·out/4 of column c in bits 0–1, 2–3, 4–5,
//! 6–7 — and `weight_scale` = 1/γ (transformers' `BitLinear` divides its output by it; its other
//! class, `AutoBitLinear`, multiplies by it instead). A model trained with SubLN becomes
//! transformers' BitNet model (`model_type: bitnet`, its `attn_sub_norm`/`ffn_sub_norm`, the
//! model's own activation) where its shapes allow; other models keep their Llama/Qwen2/Mistral
//! class, with the modeling file of [`crate::hf_extra`] when they have extra norms.
//!
//! transformers' `BitLinear` also rounds its input activations to 8 bits per token (absmax): what a
//! model trained with `--act-bits 8` computes; for others [`HfBitnet::notes`] says that it differs.

use std::collections::BTreeMap;

use crate::config::{ModelConfig, RopeScaling};
use crate::cpu::model::post_attn_norm_name;
use crate::error::{CoreError, Result};
use crate::packed::PackedModel;
use crate::safetensors::{Dtype, OwnedTensor, serialize};

/// The folder's files and what a user must know about them.
pub struct HfBitnet {
    pub files: BTreeMap<String, Vec<u8>>,
    pub notes: Vec<String>,
}

/// The 2-bit codes of `codes` (a row-major `[out, in]` ternary tensor) packed as transformers'
/// `pack_weights` packs them; `out` must be a multiple of 4.
pub fn pack_rows(codes: &[i8], out: usize, inp: usize) -> Vec<u8> {
    let r4 = out / 4;
    if inp == 0 {
        return Vec::new();
    }
    let mut b = vec![0u8; r4 * inp];
    for (i, row) in codes.chunks(inp).enumerate() {
        let (r, shift) = (i % r4, 2 * (i / r4));
        for (c, &q) in row.iter().enumerate() {
            b[r * inp + c] |= ((q + 1) as u8) << shift;
        }
    }
    b
}

/// Why a SubLN model is no transformers BitNet model, if it is not.
fn bitnet_mismatch(cfg: &ModelConfig) -> Option<String> {
    if cfg.num_attention_heads * cfg.head_dim != cfg.hidden_size {
        return Some(format!(
            "its attention width {}·{} differs from hidden_size {} (BitNet's attn_sub_norm has hidden_size gains)",
            cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
        ));
    }
    if cfg.qkv_bias || cfg.o_bias || cfg.mlp_bias {
        return Some("it has biases on its projections, which BitNet's have not".into());
    }
    if cfg.rope_scaling != RopeScaling::Default {
        return Some(format!(
            "its RoPE scaling {:?} (BitNet's is the default RoPE)",
            cfg.rope_scaling
        ));
    }
    if cfg.sliding_window.is_some() {
        return Some("its sliding attention window (BitNet attends to the whole context)".into());
    }
    None
}

impl PackedModel<'_> {
    /// The model as a folder transformers loads as a packed BitNet model.
    pub fn to_hf_bitnet(&self) -> Result<HfBitnet> {
        let err = |m: String| CoreError::packed(&self.file, m);
        let cfg = ModelConfig::from_json_bytes(
            &format!("{} (config)", self.file),
            self.config_json.as_bytes(),
        )?;
        let stored = self.st.header.tensors.iter().filter_map(|t| {
            let shape = self.shapes.get(&t.name).unwrap_or(&t.shape);
            (!self.is_ternary_part(&t.name) || self.shapes.contains_key(&t.name))
                .then_some((t.name.as_str(), shape.as_slice()))
        });
        crate::params::check_shapes(&self.file, &cfg, stored)?;
        let norms = self.extra_norms()?;
        let post = norms.contains_key(&post_attn_norm_name(0));
        let subln = norms.keys().any(|n| n.ends_with("_sub_norm.weight"));
        // SubLN alone, in shapes transformers' BitNet model has: that model; any other extra norm:
        // the model's own class with the modeling file that adds them.
        let mismatch = if subln { bitnet_mismatch(&cfg) } else { None };
        let as_bitnet = subln && !post && mismatch.is_none();
        let mut tensors = Vec::new();
        let mut lm_head_ternary = false;
        for info in &self.st.header.tensors {
            let name = &info.name;
            if let Some(shape) = self.shapes.get(name) {
                let (out, inp) = (shape[0], shape.iter().skip(1).product::<usize>());
                if out % 4 != 0 {
                    return Err(CoreError::tensor(
                        &self.file,
                        name,
                        format!(
                            "{out} output rows are not a multiple of 4, which transformers' packing needs"
                        ),
                    ));
                }
                let t = self.ternary(name)?;
                lm_head_ternary |= name == "lm_head.weight";
                tensors.push(OwnedTensor {
                    name: name.clone(),
                    dtype: Dtype::U8,
                    shape: vec![out / 4, inp],
                    bytes: pack_rows(&t.codes, out, inp),
                });
                let stem = name.strip_suffix(".weight").unwrap_or(name);
                tensors.push(OwnedTensor::f32(
                    format!("{stem}.weight_scale"),
                    vec![1],
                    &[1.0 / t.scale],
                ));
            } else if !self.is_ternary_part(name) {
                tensors.push(OwnedTensor::f32(
                    name.clone(),
                    info.shape.clone(),
                    &self.st.to_f32(info)?,
                ));
            }
        }
        let mut config: serde_json::Value = serde_json::from_str(&self.config_json)
            .map_err(|e| CoreError::json(&format!("{} (config)", self.file), e))?;
        let obj = config
            .as_object_mut()
            .ok_or_else(|| err("its config is not a JSON object".into()))?;
        obj.remove("torch_dtype");
        obj.insert("dtype".into(), "float32".into());
        if as_bitnet {
            obj.insert("model_type".into(), "bitnet".into());
            obj.insert(
                "architectures".into(),
                serde_json::json!(["BitNetForCausalLM"]),
            );
            obj.insert("hidden_act".into(), "silu".into());
        } else if post || subln {
            crate::hf_extra::annotate(obj, post, subln);
        }
        obj.insert(
            "quantization_config".into(),
            serde_json::json!({
                "quant_method": "bitnet",
                "linear_class": "bitlinear",
                "quantization_mode": "offline",
                // None keeps lm_head full precision; an explicit list without it converts it.
                "modules_to_not_convert": if lm_head_ternary { serde_json::json!([]) } else { serde_json::Value::Null },
                "use_rms_norm": false,
            }),
        );
        let mut files = BTreeMap::new();
        let text =
            serde_json::to_vec_pretty(&config).map_err(|e| CoreError::Invalid(e.to_string()))?;
        files.insert("config.json".to_string(), text);
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        files.insert("model.safetensors".to_string(), serialize(tensors, &meta));
        if let Some(tok) = &self.tokenizer_json {
            files.insert("tokenizer.json".to_string(), tok.clone().into_bytes());
        }
        if (post || subln) && !as_bitnet {
            files.insert(
                crate::hf_extra::MODELING_FILE.to_string(),
                crate::hf_extra::MODELING_SOURCE.as_bytes().to_vec(),
            );
        }
        let mut notes = vec![if self.act8 {
            "W1.58A8: transformers' BitLinear rounds every projection's input to 8 bits per token as this model was trained to".to_string()
        } else {
            "transformers' BitLinear rounds every projection's input to 8 bits per token (absmax); this model was trained without that rounding (train with --act-bits 8 for a model that has it), so transformers' logits differ from ours by its effect".to_string()
        }];
        if as_bitnet {
            notes.push("model_type `bitnet` (transformers' BitNet model, SubLN norms as attn_sub_norm/ffn_sub_norm) with hidden_act silu, the activation it was trained with".into());
        } else if post || subln {
            let why = match mismatch {
                Some(m) if !post => format!(" (transformers' BitNet model cannot hold it: {m})"),
                _ => String::new(),
            };
            notes.push(format!(
                "the extra norms' gains travel with {}, which adds them{why}: load with trust_remote_code=True",
                crate::hf_extra::MODELING_FILE
            ));
        }
        Ok(HfBitnet { files, notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pack_as_transformers_pack_weights() {
        // 8 rows × 1 column: R = 2; byte 0 holds rows 0, 2, 4, 6; byte 1 rows 1, 3, 5, 7.
        let codes = [-1i8, 0, 1, -1, 0, 1, 1, 0];
        let b = pack_rows(&codes, 8, 1);
        assert_eq!(b[0], (2 << 2) | (1 << 4) | (2 << 6));
        assert_eq!(b[1], 1 | (2 << 4) | (1 << 6));
    }
}
