//! A packed ternary model as a GGUF file for llama.cpp: every ternary tensor in TQ2_0 or TQ1_0 blocks
//! (256 values, f16 block scale = the tensor's γ, so the blocks decode to exactly f16(γ)·q), or — when
//! its rows are not a multiple of 256 — in F16, as llama.cpp's own converter falls back; q_proj and
//! k_proj rows permuted for ggml's RoPE as that converter does for the Llama architecture; the
//! tokenizer (`tokenizer.ggml.*`, and the whole `tokenizer.json` as `tokenizer.huggingface.json`) and
//! the chat template in the metadata.

use serde_json::Value as Json;

use super::blocks::{GgmlType, QK_K, tq_block};
use super::{GgufWriter, Value, gguf_name, permute_rows};
use crate::config::{ModelConfig, RopeScaling};
use crate::cpu::model::{is_extra_norm, post_attn_norm_name};
use crate::error::{CoreError, Result};
use crate::packed::PackedModel;
use crate::params::check_shapes;
use crate::quant::Ternary;
use crate::safetensors::{Dtype, float_bytes};

/// What an export wrote.
pub struct GgufExport {
    pub bytes: Vec<u8>,
    /// `general.architecture`.
    pub architecture: String,
    /// Ternary tensors whose rows are not a multiple of 256, stored as F16 (γ·q) instead.
    pub f16_fallback: Vec<String>,
}

/// llama.cpp's architecture for a model of `cfg`, or why it has none.
fn architecture(file: &str, cfg: &ModelConfig, subln: bool) -> Result<&'static str> {
    if subln {
        return super::bitnet_arch::check(file, cfg).map(|()| "bitnet");
    }
    Ok(match cfg.model_type.as_str() {
        "qwen2" => "qwen2",
        // llama.cpp's converter writes Mistral as the Llama architecture.
        _ => "llama",
    })
}

/// One tensor to export.
pub enum Data {
    /// Codes and scale of a ternary projection.
    Ternary(Ternary),
    /// Full-precision values and the dtype the model stores them in.
    Float(Vec<f32>, Dtype),
}

/// A model to export: a packed ternary model ([`Source::from_packed`]) or a full-precision one.
pub struct Source {
    pub config_json: String,
    pub tokenizer_json: Option<String>,
    /// (HF name, row-major shape, data).
    pub tensors: Vec<(String, Vec<usize>, Data)>,
}

impl Source {
    pub fn from_packed(packed: &PackedModel) -> Result<Source> {
        let mut tensors = Vec::new();
        for info in &packed.st.header.tensors {
            let name = &info.name;
            if let Some(shape) = packed.shapes.get(name) {
                tensors.push((
                    name.clone(),
                    shape.clone(),
                    Data::Ternary(packed.ternary(name)?),
                ));
            } else if !packed.is_ternary_part(name) {
                let v = packed.st.to_f32(info)?;
                tensors.push((name.clone(), info.shape.clone(), Data::Float(v, info.dtype)));
            }
        }
        Ok(Source {
            config_json: packed.config_json.clone(),
            tokenizer_json: packed.tokenizer_json.clone(),
            tensors,
        })
    }
}

/// `src` (named `file` in errors) as a GGUF file: ternary tensors as `ternary` (TQ2_0 or TQ1_0),
/// full-precision matrices as `float` (F32, F16, or None: as stored), norms and biases F32, with
/// `chat_template` (from tokenizer_config.json) when given.
pub fn export_gguf(
    file: &str,
    src: &Source,
    ternary: GgmlType,
    float: Option<GgmlType>,
    chat_template: Option<&str>,
) -> Result<GgufExport> {
    if !matches!(ternary, GgmlType::TQ1_0 | GgmlType::TQ2_0) {
        return Err(CoreError::Invalid(format!(
            "GGUF export writes ternary tensors as TQ1_0 or TQ2_0, not {}",
            ternary.name()
        )));
    }
    let cfg =
        ModelConfig::from_json_bytes(&format!("{file} (config)"), src.config_json.as_bytes())?;
    check_shapes(
        file,
        &cfg,
        src.tensors
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_slice())),
    )?;
    let has = |n: &str| src.tensors.iter().any(|(t, _, _)| t == n);
    if has(&post_attn_norm_name(0)) {
        return Err(CoreError::packed(
            file,
            "it was trained with the post-attention RMSNorm (after o_proj), which no llama.cpp architecture has: a GGUF file would compute another model. Train with `--rmsnorm-post-attn 0` (SubLN, the default, exports to llama.cpp's `bitnet` architecture), or export `hf-bitnet` (with a modeling file that has the norm)",
        ));
    }
    let subln = src.tensors.iter().any(|(t, _, _)| is_extra_norm(t));
    let arch = architecture(file, &cfg, subln)?;
    let permute = arch == "llama";
    let mut w = GgufWriter::default();
    metadata(&mut w, file, &cfg, arch)?;
    tokenizer(&mut w, file, src, &cfg)?;
    if let Some(t) = chat_template {
        w.set("tokenizer.chat_template", Value::Str(t.to_string()));
    }

    let mut fallback = Vec::new();
    let mut matrices = Vec::new();
    for (name, shape, data) in &src.tensors {
        let g = gguf_name(name).ok_or_else(|| {
            CoreError::tensor(file, name, "has no counterpart in llama.cpp's tensor names")
        })?;
        let heads = if !permute {
            None
        } else if name.contains("self_attn.q_proj.") {
            Some(cfg.num_attention_heads)
        } else if name.contains("self_attn.k_proj.") {
            Some(cfg.num_key_value_heads)
        } else {
            None
        };
        let permuted = |v: Vec<f32>| match heads {
            Some(h) => {
                permute_rows(&v, shape[0], h, false).map_err(|m| CoreError::tensor(file, name, m))
            }
            None => Ok(v),
        };
        let cols = shape.iter().skip(1).product::<usize>();
        match data {
            Data::Ternary(t) => {
                let codes: Vec<f32> = permuted(t.codes.iter().map(|&q| f32::from(q)).collect())?;
                let d = half::f16::from_f32(t.scale);
                if cols % QK_K == 0 {
                    let codes: Vec<i8> = codes.iter().map(|&q| q as i8).collect();
                    let bytes = codes
                        .chunks(QK_K)
                        .flat_map(|c| tq_block(ternary, c, d))
                        .collect();
                    w.add(&g, shape, ternary, bytes);
                } else {
                    let v: Vec<f32> = codes.iter().map(|&q| q * d.to_f32()).collect();
                    w.add(&g, shape, GgmlType::F16, encode(GgmlType::F16, &v));
                    fallback.push(name.clone());
                }
            }
            Data::Float(v, dtype) => {
                // Norms and biases in F32 (as llama.cpp's converter keeps 1-D tensors); matrices as
                // asked, or in the precision they are stored in.
                let ty = match (shape.len(), float, dtype) {
                    (1, _, _) => GgmlType::F32,
                    (_, Some(t), _) => t,
                    (_, None, Dtype::F16) => GgmlType::F16,
                    (_, None, Dtype::BF16) => GgmlType::BF16,
                    _ => GgmlType::F32,
                };
                w.add(&g, shape, ty, encode(ty, &permuted(v.clone())?));
                if shape.len() > 1 {
                    matrices.push(ty);
                }
            }
        }
    }
    // llama_ftype: of a ternary model the requested type (as llama.cpp's converter writes it,
    // whatever fell back to F16), else the matrices' — MOSTLY_TQ1_0 = 36, MOSTLY_TQ2_0 = 37,
    // MOSTLY_BF16 = 32, MOSTLY_F16 = 1, ALL_F32 = 0.
    let any_ternary = src
        .tensors
        .iter()
        .any(|(_, _, d)| matches!(d, Data::Ternary(_)));
    let main = if any_ternary { vec![ternary] } else { matrices };
    let file_type = [
        (GgmlType::TQ1_0, 36),
        (GgmlType::TQ2_0, 37),
        (GgmlType::BF16, 32),
        (GgmlType::F16, 1),
    ]
    .into_iter()
    .find(|(t, _)| main.contains(t))
    .map_or(0, |(_, id)| id);
    w.set("general.file_type", Value::U32(file_type));
    Ok(GgufExport {
        bytes: w.finish(),
        architecture: arch.to_string(),
        f16_fallback: fallback,
    })
}

/// `values` as F32, F16 or BF16 bytes (the safetensors encodings; ggml's are the same).
fn encode(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    let dtype = match ty {
        GgmlType::F16 => Dtype::F16,
        GgmlType::BF16 => Dtype::BF16,
        _ => Dtype::F32,
    };
    float_bytes(values, dtype).expect("a floating-point dtype")
}

fn metadata(w: &mut GgufWriter, file: &str, cfg: &ModelConfig, arch: &str) -> Result<()> {
    let u = |v: usize| Value::U32(v as u32);
    w.set("general.architecture", Value::Str(arch.into()));
    w.set(
        "general.name",
        Value::Str(format!("{} (ternary, bitnet-studio)", cfg.architecture)),
    );
    w.set("general.quantization_version", Value::U32(2));
    let k = |s: &str| format!("{arch}.{s}");
    // The context this tool runs the model in: a sliding window no longer than it changes nothing
    // (ModelConfig::context), which llama.cpp's Llama and Qwen2 do not apply.
    w.set(&k("context_length"), u(cfg.context().0));
    w.set(&k("embedding_length"), u(cfg.hidden_size));
    w.set(&k("block_count"), u(cfg.num_hidden_layers));
    w.set(&k("feed_forward_length"), u(cfg.intermediate_size));
    w.set(&k("attention.head_count"), u(cfg.num_attention_heads));
    w.set(&k("attention.head_count_kv"), u(cfg.num_key_value_heads));
    w.set(&k("attention.key_length"), u(cfg.head_dim));
    w.set(&k("attention.value_length"), u(cfg.head_dim));
    w.set(
        &k("attention.layer_norm_rms_epsilon"),
        Value::F32(cfg.rms_norm_eps as f32),
    );
    w.set(&k("rope.freq_base"), Value::F32(cfg.rope_theta as f32));
    w.set(&k("rope.dimension_count"), u(cfg.head_dim));
    w.set(&k("vocab_size"), u(cfg.vocab_size));
    match cfg.rope_scaling {
        // Dynamic NTK changes nothing within the context (see RopeScaling::Dynamic).
        RopeScaling::Default | RopeScaling::Dynamic { .. } => {}
        RopeScaling::Linear { factor } => {
            w.set(&k("rope.scaling.type"), Value::Str("linear".into()));
            w.set(&k("rope.scaling.factor"), Value::F32(factor as f32));
        }
        ref other => {
            return Err(CoreError::packed(
                file,
                format!(
                    "RoPE scaling {other:?} is not exported to GGUF yet (default, linear and dynamic are)"
                ),
            ));
        }
    }
    Ok(())
}

/// The pre-tokenizer of a byte-level BPE `tokenizer.json`, as llama.cpp names it.
fn pre_tokenizer(pre: &Json) -> Option<&'static str> {
    let gpt2 = |p: &Json| {
        p.get("type") == Some(&"ByteLevel".into()) && p.get("use_regex") == Some(&true.into())
    };
    if gpt2(pre) {
        return Some("gpt-2");
    }
    let steps = pre.get("pretokenizers")?.as_array()?;
    let [split, byte_level] = steps.as_slice() else {
        return None;
    };
    if split.get("type")?.as_str()? == "Digits"
        && split.get("individual_digits")?.as_bool()?
        && gpt2(byte_level)
    {
        return Some(super::import::SMOLLM);
    }
    if byte_level.get("type")?.as_str()? != "ByteLevel" || split.get("type")?.as_str()? != "Split" {
        return None;
    }
    let regex = split.get("pattern")?.get("Regex")?.as_str()?;
    super::import::PRE_TOKENIZERS
        .iter()
        .find(|(_, r)| *r == regex)
        .map(|(name, _)| *name)
}

/// `tokenizer.ggml.*` from the model's tokenizer.json (byte-level BPE, as llama.cpp's `gpt2` model),
/// and the whole file as `tokenizer.huggingface.json`.
fn tokenizer(w: &mut GgufWriter, file: &str, src: &Source, cfg: &ModelConfig) -> Result<()> {
    let Some(text) = &src.tokenizer_json else {
        return Err(CoreError::packed(
            file,
            "it has no tokenizer.json, which a GGUF file needs",
        ));
    };
    let err = |m: String| CoreError::Tokenizer {
        file: format!("{file} (tokenizer.json)"),
        message: m,
    };
    let t: Json = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let model = &t["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(err(format!(
            "only byte-level BPE tokenizers are exported to GGUF (this one is {} with byte_fallback {}); SentencePiece-style vocabularies are not yet",
            model["type"], model["byte_fallback"]
        )));
    }
    let pre = pre_tokenizer(&t["pre_tokenizer"]).ok_or_else(|| {
        err(format!(
            "its pre-tokenizer {} is none that llama.cpp knows by name; llama.cpp would split text differently",
            t["pre_tokenizer"]
        ))
    })?;
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; cfg.vocab_size];
    let mut put = |id: u64, s: &str, ty: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            err(format!(
                "token `{s}` has id {id}, beyond the model's vocab_size {}",
                cfg.vocab_size
            ))
        })?;
        *slot = Some((s.to_string(), ty));
        Ok(())
    };
    for (s, id) in model["vocab"].as_object().into_iter().flatten() {
        put(id.as_u64().unwrap_or(u64::MAX), s, 1)?;
    }
    for a in t["added_tokens"].as_array().into_iter().flatten() {
        // llama.cpp's token types: 3 control (special), 4 user-defined.
        let ty = if a["special"] == true { 3 } else { 4 };
        put(
            a["id"].as_u64().unwrap_or(u64::MAX),
            a["content"].as_str().unwrap_or(""),
            ty,
        )?;
    }
    // Ids no token has (a vocabulary padded to a round size) get llama.cpp converter's filler.
    let (names, types): (Vec<String>, Vec<i32>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or((format!("[PAD{i}]"), 5)))
        .unzip();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::Array(p) => p
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            other => other.as_str().unwrap_or_default().to_string(),
        })
        .collect();
    w.set("tokenizer.ggml.model", Value::Str("gpt2".into()));
    w.set("tokenizer.ggml.pre", Value::Str(pre.into()));
    w.set("tokenizer.ggml.tokens", Value::strings(names));
    w.set("tokenizer.ggml.token_type", Value::i32s(types));
    w.set("tokenizer.ggml.merges", Value::strings(merges));
    let config: Json = serde_json::from_str(&src.config_json).unwrap_or_default();
    let id = |k: &str| match &config[k] {
        Json::Array(a) => a.first().and_then(Json::as_u64),
        v => v.as_u64(),
    };
    for (key, field) in [
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("padding_token_id", "pad_token_id"),
    ] {
        if let Some(v) = id(field) {
            w.set(&format!("tokenizer.ggml.{key}"), Value::U32(v as u32));
        }
    }
    // Whether encoding adds BOS: the post-processor's single template (itself, or one of a
    // Sequence's processors, as Llama 3 has it) starts with a special token.
    let post = &t["post_processor"];
    let adds_bos = std::iter::once(post)
        .chain(post["processors"].as_array().into_iter().flatten())
        .any(|p| {
            p["single"]
                .as_array()
                .and_then(|s| s.first())
                .is_some_and(|f| f.get("SpecialToken").is_some())
        });
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(adds_bos));
    w.set("tokenizer.huggingface.json", Value::Str(text.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::blocks::{tq_codes, tq_scales};
    use super::super::{Gguf, permute_rows};
    use super::*;
    use crate::params::param_table;
    use crate::rng::Rng;

    /// A one-layer Llama whose attention rows are 256 long (TQ blocks) and whose down_proj rows are
    /// 128 (the F16 fallback); with `subln`, tied embeddings and SubLN gains.
    fn source_with(subln: bool) -> Source {
        let config = r#"{"model_type":"llama","hidden_size":256,"intermediate_size":128,"tie_word_embeddings":TIED,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":128,
            "vocab_size":4,"max_position_embeddings":64,"rms_norm_eps":1e-5,"bos_token_id":0,"eos_token_id":1}"#;
        let tokenizer = r#"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2},"merges":[["a","b"]]},
            "pre_tokenizer":{"type":"ByteLevel","use_regex":true},
            "added_tokens":[{"id":3,"content":"<s>","special":true}]}"#;
        let config = config.replace("TIED", if subln { "true" } else { "false" });
        let cfg = ModelConfig::from_json_bytes("config.json", config.as_bytes()).unwrap();
        let mut r = Rng::new(15);
        let mut tensors: Vec<_> = param_table(&cfg)
            .into_iter()
            .map(|p| {
                let n = p.numel();
                let data = if p.is_ternary(false) {
                    let mut codes: Vec<i8> = (0..n).map(|_| r.below(3) as i8 - 1).collect();
                    codes[..256].fill(0); // a block of zeros
                    Data::Ternary(Ternary {
                        codes,
                        scale: 0.0123,
                    })
                } else {
                    Data::Float(r.normal_vec(n, 1.0), Dtype::F32)
                };
                (p.name, p.shape, data)
            })
            .collect();
        if subln {
            for (n, w) in crate::cpu::model::extra_norms(&cfg, false, true) {
                tensors.push((n, vec![w], Data::Float(vec![0.5; w], Dtype::F32)));
            }
        }
        Source {
            config_json: config,
            tokenizer_json: Some(tokenizer.into()),
            tensors,
        }
    }

    fn source() -> Source {
        source_with(false)
    }

    #[test]
    fn subln_models_become_llama_cpps_bitnet_architecture_unpermuted() {
        let src = source_with(true);
        let e = export_gguf("m", &src, GgmlType::TQ2_0, None, None).unwrap();
        assert_eq!(e.architecture, "bitnet");
        let g = Gguf::parse("m.gguf", &e.bytes).unwrap();
        assert!(g.tensor("output.weight").is_none());
        let sub = g.tensor("blk.0.ffn_sub_norm.weight").unwrap();
        assert_eq!(g.to_f32(sub).unwrap(), vec![0.5; 128]);
        assert!(g.tensor("blk.0.attn_sub_norm.weight").is_some());
        let q = src.tensors.iter().find_map(|(n, _, d)| match d {
            Data::Ternary(t) if n.ends_with("q_proj.weight") => Some(t),
            _ => None,
        });
        let t = g.tensor("blk.0.attn_q.weight").unwrap();
        let codes: Vec<i8> = g
            .bytes(t)
            .chunks(66)
            .flat_map(|b| tq_codes(GgmlType::TQ2_0, b))
            .collect();
        assert_eq!(
            codes,
            q.unwrap().codes,
            "bitnet's RoPE takes the rows unpermuted"
        );
        // Untied: no place for lm_head.
        let mut untied = source_with(true);
        untied.config_json = untied.config_json.replace(
            "\"tie_word_embeddings\":true",
            "\"tie_word_embeddings\":false",
        );
        untied.tensors.push((
            "lm_head.weight".into(),
            vec![4, 256],
            Data::Float(vec![0.0; 1024], Dtype::F32),
        ));
        // And back: the imported folder holds the SubLN gains and the same weights.
        let files = super::super::import::to_hf_files("m.gguf", &e.bytes).unwrap();
        let st = crate::safetensors::SafeTensors::parse(
            "model.safetensors",
            &files["model.safetensors"],
        )
        .unwrap();
        let sub = st.get("model.layers.0.mlp.ffn_sub_norm.weight").unwrap();
        assert_eq!(st.to_f32(sub).unwrap(), vec![0.5; 128]);
        let back = st
            .to_f32(st.get("model.layers.0.self_attn.q_proj.weight").unwrap())
            .unwrap();
        let d = half::f16::from_f32(q.unwrap().scale).to_f32();
        let want: Vec<f32> = q.unwrap().codes.iter().map(|&c| f32::from(c) * d).collect();
        assert_eq!(back, want);
        let m = export_gguf("m", &untied, GgmlType::TQ2_0, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(m.contains("bitnet") && m.contains("not tied"), "{m}");
    }

    #[test]
    fn ternary_tensors_read_back_as_the_same_codes_and_scales() {
        let src = source();
        for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0] {
            let e = export_gguf("m", &src, ty, None, Some("{{ x }}")).unwrap();
            assert_eq!(e.architecture, "llama");
            assert_eq!(e.f16_fallback, vec!["model.layers.0.mlp.down_proj.weight"]);
            let g = Gguf::parse("m.gguf", &e.bytes).unwrap();
            assert_eq!(
                g.get("tokenizer.chat_template").and_then(Value::as_str),
                Some("{{ x }}")
            );
            for (name, shape, data) in &src.tensors {
                let t = g.tensor(&gguf_name(name).unwrap()).unwrap();
                assert_eq!(&t.shape(), shape, "{name}");
                let Data::Ternary(want) = data else {
                    let Data::Float(v, _) = data else {
                        unreachable!()
                    };
                    if !name.contains("k_proj") && !name.contains("q_proj") {
                        assert_eq!(&g.to_f32(t).unwrap(), v, "{name}");
                    }
                    continue;
                };
                let d = half::f16::from_f32(want.scale).to_f32();
                let (codes, scales): (Vec<f32>, Vec<f32>) = if t.ty == ty {
                    let b = g.bytes(t);
                    let size = ty.block().1;
                    let c = b
                        .chunks(size)
                        .flat_map(|b| tq_codes(ty, b))
                        .map(f32::from)
                        .collect();
                    (c, tq_scales(ty, b))
                } else {
                    assert_eq!(t.ty, GgmlType::F16, "{name}");
                    (
                        g.to_f32(t).unwrap().iter().map(|v| v / d).collect(),
                        vec![d],
                    )
                };
                let heads = if name.contains("q_proj") {
                    Some(2)
                } else if name.contains("k_proj") {
                    Some(1)
                } else {
                    None
                };
                let codes = match heads {
                    Some(h) => permute_rows(&codes, shape[0], h, true).unwrap(),
                    None => codes,
                };
                let want_codes: Vec<f32> = want.codes.iter().map(|&q| f32::from(q)).collect();
                assert_eq!(codes, want_codes, "{name} {ty:?}");
                assert!(scales.iter().all(|&s| s == d || s == 0.0), "{name}");
                assert!(scales.contains(&d));
            }
        }
    }

    #[test]
    fn shapes_that_disagree_with_the_config_are_refused_by_name() {
        let mut src = source();
        let k = src
            .tensors
            .iter_mut()
            .find(|(n, _, _)| n.ends_with("k_proj.weight"))
            .unwrap();
        k.1 = vec![64, 256];
        let e = export_gguf("m", &src, GgmlType::TQ2_0, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("k_proj.weight") && e.contains("disagrees"),
            "{e}"
        );
        let mut src = source();
        src.tensors
            .retain(|(n, _, _)| !n.ends_with("model.norm.weight"));
        let e = export_gguf("m", &src, GgmlType::TQ2_0, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("model.norm.weight") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn an_embedding_of_one_dimension_is_refused_on_import() {
        let mut w = GgufWriter::default();
        w.set("general.architecture", Value::Str("llama".into()));
        w.set("llama.embedding_length", Value::U32(4));
        w.set("llama.attention.head_count", Value::U32(2));
        w.add("token_embd.weight", &[8], GgmlType::F32, vec![0; 32]);
        let e = super::super::import::to_hf_files("x.gguf", &w.finish())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("token_embd.weight") && e.contains("x.gguf"),
            "{e}"
        );
    }

    #[test]
    fn post_attention_norm_is_refused_by_name() {
        let mut src = source();
        src.tensors.push((
            post_attn_norm_name(0),
            vec![256],
            Data::Float(vec![1.0; 256], Dtype::F32),
        ));
        let e = export_gguf("m.bitnet.safetensors", &src, GgmlType::TQ2_0, None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("post-attention RMSNorm") && e.contains("--rmsnorm-post-attn 0"),
            "{e}"
        );
    }
}
