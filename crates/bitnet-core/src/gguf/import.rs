//! A GGUF model as a Hugging Face folder in memory (config.json, tokenizer.json,
//! tokenizer_config.json with the chat template, model.safetensors in F32), so every command and the
//! app take a `.gguf` wherever they take a folder: tensors dequantized, q_proj/k_proj rows of the
//! Llama architecture permuted back, the tokenizer rebuilt from `tokenizer.huggingface.json` or from
//! the `tokenizer.ggml.*` byte-level BPE vocabulary.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::{Gguf, Meta, hf_name, permute_rows};
use crate::error::{CoreError, Result};
use crate::safetensors::{OwnedTensor, serialize};

/// llama.cpp's names of byte-level BPE pre-tokenizers and the regex each splits text with
/// (`gpt2` is the ByteLevel pre-tokenizer's own regex).
pub const PRE_TOKENIZERS: [(&str, &str); 2] = [
    (
        "llama-bpe",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "qwen2",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];

/// Pre-tokenizer names that split exactly as GPT-2's regex does (llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2).
const GPT2_LIKE: [&str; 4] = ["gpt-2", "phi-2", "olmo", "mpt"];
/// llama.cpp's `smollm`: single digits split off first, then GPT-2's regex.
pub const SMOLLM: &str = "smollm";

/// The files of a Hugging Face folder holding the GGUF model `bytes` (named `file` in errors).
pub fn to_hf_files(file: &str, bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let g = Gguf::parse(file, bytes)?;
    let m = Meta(&g);
    let arch = m.str("general.architecture")?.unwrap_or("");
    let (model_type, architecture) = match arch {
        "llama" => ("llama", "LlamaForCausalLM"),
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        // llama.cpp's BitNet: a Llama with SubLN (attn_sub_norm, ffn_sub_norm), SwiGLU, rows as
        // transformers stores them, the output layer the token embedding.
        "bitnet" => ("llama", "LlamaForCausalLM"),
        other => {
            return Err(CoreError::Invalid(format!(
                "{file}: general.architecture `{other}` is not supported; supported: llama, qwen2, bitnet"
            )));
        }
    };
    let k = |s: &str| format!("{arch}.{s}");
    let hidden = m.req_u64(&k("embedding_length"))?;
    let heads = m.req_u64(&k("attention.head_count"))?;
    let kv_heads = m.u64(&k("attention.head_count_kv"))?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 {
        return Err(CoreError::Invalid(format!(
            "{file}: metadata `{}`: no heads",
            k("attention.head_count")
        )));
    }
    let head_dim = m.u64(&k("attention.key_length"))?.unwrap_or(hidden / heads);
    if g.tensor("rope_freqs.weight").is_some() {
        return Err(CoreError::tensor(
            file,
            "rope_freqs.weight",
            "RoPE frequency factors (Llama 3.1-style scaling) are not supported yet",
        ));
    }
    let embd = g
        .tensor("token_embd.weight")
        .ok_or_else(|| CoreError::tensor(file, "token_embd.weight", "missing"))?;
    let vocab = match embd.dims[..] {
        [_, v] if v > 0 => v,
        _ => {
            return Err(CoreError::tensor(
                file,
                "token_embd.weight",
                format!("dims {:?} are not (hidden, vocab)", embd.dims),
            ));
        }
    };
    let eps = m
        .f64(&k("attention.layer_norm_rms_epsilon"))?
        .unwrap_or(1e-5);
    // f32 metadata printed as the f64 nearest its decimal text (1e-5, not 9.999999747378752e-6).
    let short = |v: f64| (v as f32).to_string().parse::<f64>().unwrap_or(v);
    let mut config = json!({
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": m.req_u64(&k("feed_forward_length"))?,
        "num_hidden_layers": m.req_u64(&k("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": short(eps),
        "rope_theta": short(m.f64(&k("rope.freq_base"))?.unwrap_or(10000.0)),
        "max_position_embeddings": m.u64(&k("context_length"))?.unwrap_or(2048),
        "vocab_size": vocab,
        "tie_word_embeddings": arch == "bitnet" || g.tensor("output.weight").is_none(),
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    if model_type == "llama" {
        config["attention_bias"] = g.tensor("blk.0.attn_q.bias").is_some().into();
        config["mlp_bias"] = g.tensor("blk.0.ffn_up.bias").is_some().into();
    }
    match m.str(&k("rope.scaling.type"))? {
        None | Some("none") => {}
        Some("linear") => {
            // (llama.cpp's converter writes linear with factor 1 for BitNet: no scaling.)
            let factor = m.f64(&k("rope.scaling.factor"))?.unwrap_or(1.0);
            if factor != 1.0 {
                config["rope_scaling"] = json!({"rope_type": "linear", "factor": short(factor)});
            }
        }
        Some(other) => {
            return Err(CoreError::Invalid(format!(
                "{file}: metadata `{}`: RoPE scaling `{other}` is not supported (none and linear are)",
                k("rope.scaling.type")
            )));
        }
    }
    for (key, field) in [
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("padding_token_id", "pad_token_id"),
    ] {
        if let Some(v) = m.u64(&format!("tokenizer.ggml.{key}"))? {
            config[field] = v.into();
        }
    }

    let mut tensors = Vec::new();
    for t in &g.tensors {
        let name = hf_name(&t.name).ok_or_else(|| {
            CoreError::tensor(file, &t.name, "is none of the Llama-family tensors we know")
        })?;
        let mut values = g.to_f32(t)?;
        let shape = t.shape();
        if arch == "llama" {
            let h = if name.contains("self_attn.q_proj.") {
                Some(heads)
            } else if name.contains("self_attn.k_proj.") {
                Some(kv_heads)
            } else {
                None
            };
            if let Some(h) = h {
                values = permute_rows(&values, shape[0], h as usize, true)
                    .map_err(|m| CoreError::tensor(file, &t.name, m))?;
            }
        }
        tensors.push(OwnedTensor::f32(name, shape, &values));
    }

    let mut files = BTreeMap::new();
    let text = |v: &Json| serde_json::to_vec_pretty(v).unwrap_or_default();
    files.insert("config.json".to_string(), text(&config));
    files.insert("tokenizer.json".to_string(), tokenizer_json(&g)?);
    if let Some(t) = m.str("tokenizer.chat_template")? {
        let tokens = m.strings("tokenizer.ggml.tokens")?.unwrap_or_default();
        let mut tc = json!({ "chat_template": t });
        for (key, field) in [("bos_token_id", "bos_token"), ("eos_token_id", "eos_token")] {
            if let Some(s) = m
                .u64(&format!("tokenizer.ggml.{key}"))?
                .and_then(|i| tokens.get(i as usize))
            {
                tc[field] = (*s).into();
            }
        }
        files.insert("tokenizer_config.json".to_string(), text(&tc));
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    files.insert("model.safetensors".to_string(), serialize(tensors, &meta));
    Ok(files)
}

/// tokenizer.json of the GGUF file: `tokenizer.huggingface.json` as stored, or a byte-level BPE
/// tokenizer rebuilt from `tokenizer.ggml.{tokens, token_type, merges, pre, add_bos_token}`.
fn tokenizer_json(g: &Gguf) -> Result<Vec<u8>> {
    let m = Meta(g);
    if let Some(t) = m.str("tokenizer.huggingface.json")? {
        return Ok(t.as_bytes().to_vec());
    }
    let err = |msg: String| CoreError::Tokenizer {
        file: g.file.clone(),
        message: msg,
    };
    let model = m.str("tokenizer.ggml.model")?.unwrap_or("(none)");
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model `{model}` is not supported: only byte-level BPE (`gpt2`) vocabularies are rebuilt; SentencePiece (`llama`) ones are not yet"
        )));
    }
    let tokens = m
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| err("no tokenizer.ggml.tokens".into()))?;
    let types = m.ints("tokenizer.ggml.token_type")?.unwrap_or_default();
    let merges: Vec<Json> = m
        .strings("tokenizer.ggml.merges")?
        .unwrap_or_default()
        .into_iter()
        .map(|s| match s.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(err(format!(
                "merge `{s}` is not two tokens separated by a space"
            ))),
        })
        .collect::<Result<_>>()?;
    let pre = m.str("tokenizer.ggml.pre")?.unwrap_or("(none)");
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let pre_tokenizer = if GPT2_LIKE.contains(&pre) {
        byte_level(true)
    } else if pre == SMOLLM {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true),
        ]})
    } else if let Some((_, regex)) = PRE_TOKENIZERS.iter().find(|(n, _)| *n == pre) {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    } else {
        let known: Vec<&str> = GPT2_LIKE
            .iter()
            .copied()
            .chain([SMOLLM])
            .chain(PRE_TOKENIZERS.iter().map(|(n, _)| *n))
            .collect();
        return Err(err(format!(
            "tokenizer.ggml.pre `{pre}` is not supported; supported: {}",
            known.join(", ")
        )));
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        vocab.insert(t.to_string(), id.into());
        // llama.cpp's token types: 3 control, 4 user-defined — the added tokens.
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(
                json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": ty == 4, "special": ty == 3}),
            );
        }
    }
    let bos = m.u64("tokenizer.ggml.bos_token_id")?;
    let add_bos = g
        .get("tokenizer.ggml.add_bos_token")
        .and_then(super::Value::as_bool)
        == Some(true);
    let post = match bos.and_then(|b| tokens.get(b as usize).map(|t| (b, *t))) {
        Some((id, t)) if add_bos => json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": t, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [id], "tokens": [t]}}}),
        _ => byte_level(true),
    };
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            // llama.cpp's llama-bpe emits a whole pre-token found in the vocabulary as is.
            "ignore_merges": pre == "llama-bpe", "vocab": vocab, "merges": merges},
    });
    Ok(serde_json::to_vec(&tok).unwrap_or_default())
}
