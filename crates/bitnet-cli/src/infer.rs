//! Loading a model for inference (a Hugging Face folder, or a packed file written by `bitnet pack`
//! or `bitnet train`), and the commands that only run it: `bitnet generate` and `bitnet eval`.
//!
//! `--ternary` on a folder packs the model in memory with the same code as `bitnet pack` and then
//! reads the packed bytes back, so generating with `--ternary` and generating from the packed file
//! use bit-identical weights (γ·q).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bitnet_core::dataset::{LossMask, parse_jsonl, tokenize};
use bitnet_core::model::{MemoryFiles, Model, ModelFiles};
use bitnet_core::packed::PackedModel;
use bitnet_core::quant::Quantizer;
use bitnet_core::safetensors::SafeTensors;
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{ChatTemplate, eos_ids};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_core::{Packing, cpu};
use bitnet_gpu::Gpu;
use bitnet_gpu::generate::{GenerateOptions, Generation, Generator};
use bitnet_gpu::model::{Batch, GpuModel, ModelSetup};
use bitnet_gpu::packer::{PackOptions, pack_model};

use crate::files::DirFiles;

/// Gains of the post-attention RMSNorm that `bitnet train` writes beside its packed file.
pub const POST_ATTN_NORM_FILE: &str = "post_attn_norm.safetensors";

/// A model ready to run: its config, tokenizer and f32 weights.
pub struct Loaded {
    pub name: String,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub weights: BTreeMap<String, Vec<f32>>,
    pub eos: Vec<u32>,
    pub chat: Option<ChatTemplate>,
    /// The projections are ternary (γ·q): a packed file, or a folder with --ternary.
    pub ternary: bool,
}

impl Loaded {
    /// Whether the weights carry trained post-attention RMSNorm gains.
    pub fn post_attn_norm(&self) -> bool {
        self.weights
            .contains_key(&cpu::model::post_attn_norm_name(0))
    }
}

fn optional<F: ModelFiles>(files: &F, name: &str) -> Result<Option<Vec<u8>>, String> {
    if files.size(name).is_none() {
        return Ok(None);
    }
    pollster::block_on(files.read_all(name))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Reads the model at `path`: a folder (packed in memory first with `ternary`) or a packed file.
pub fn load(gpu: &Gpu, path: &Path, ternary: bool, quantizer: Quantizer) -> Result<Loaded, String> {
    let name = path.display().to_string();
    let err = |e: bitnet_core::CoreError| format!("{name}: {e}");
    if path.is_dir() {
        let files = DirFiles::open(path)?;
        let model = pollster::block_on(Model::open(&files)).map_err(err)?;
        let generation = optional(&files, "generation_config.json")?;
        let eos = eos_ids(model.config_json.as_bytes(), generation.as_deref()).map_err(err)?;
        let chat = match optional(&files, "tokenizer_config.json")? {
            Some(b) => {
                ChatTemplate::from_tokenizer_config("tokenizer_config.json", &b).map_err(err)?
            }
            None => None,
        };
        if ternary {
            let opts = PackOptions {
                quantizer,
                packing: Packing::TwoBit,
                quantize_lm_head: false,
            };
            let (bytes, _) =
                pollster::block_on(pack_model(Some(gpu), &model, &files, &opts, |_| {}))
                    .map_err(|e| format!("{name}: {e}"))?;
            let mut loaded = from_packed(&name, &bytes, None)?;
            loaded.eos = eos;
            loaded.chat = chat;
            return Ok(loaded);
        }
        let weights = pollster::block_on(model.all_f32(&files)).map_err(err)?;
        let tokenizer = tokenizer_of(&name, &model)?;
        return Ok(Loaded {
            name,
            model,
            tokenizer,
            weights,
            eos,
            chat,
            ternary: false,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let gains = path.with_file_name(POST_ATTN_NORM_FILE);
    let gains = match std::fs::read(&gains) {
        Ok(b) => Some((gains.display().to_string(), b)),
        Err(_) => None,
    };
    from_packed(&name, &bytes, gains)
}

fn tokenizer_of(name: &str, model: &Model) -> Result<Tokenizer, String> {
    let bytes = model
        .tokenizer_json
        .as_ref()
        .ok_or_else(|| format!("{name}: no tokenizer.json (generation needs one)"))?;
    Tokenizer::from_bytes("tokenizer.json", bytes).map_err(|e| format!("{name}: {e}"))
}

/// A packed file's model with its ternary weights as γ·q, and the post-attention norm gains of
/// `gains` (file name, bytes) when given.
fn from_packed(
    name: &str,
    bytes: &[u8],
    gains: Option<(String, Vec<u8>)>,
) -> Result<Loaded, String> {
    let packed = PackedModel::parse(name, bytes).map_err(|e| e.to_string())?;
    let files = MemoryFiles(packed.unpack_to_hf().map_err(|e| e.to_string())?);
    let err = |e: bitnet_core::CoreError| format!("{name}: {e}");
    let model = pollster::block_on(Model::open(&files)).map_err(err)?;
    let mut weights = pollster::block_on(model.all_f32(&files)).map_err(err)?;
    if let Some((file, b)) = gains {
        let st = SafeTensors::parse(&file, &b).map_err(|e| e.to_string())?;
        for l in 0..model.config.num_hidden_layers {
            let n = cpu::model::post_attn_norm_name(l);
            let info = st
                .get(&n)
                .ok_or_else(|| format!("{file}: tensor {n} is missing"))?;
            weights.insert(n, st.to_f32(info).map_err(|e| e.to_string())?);
        }
    }
    let eos = eos_ids(model.config_json.as_bytes(), None).map_err(err)?;
    let tokenizer = tokenizer_of(name, &model)?;
    Ok(Loaded {
        name: name.to_string(),
        model,
        tokenizer,
        weights,
        eos,
        chat: None,
        ternary: true,
    })
}

/// The prompt's token ids: the text as is (with the tokenizer's special tokens, like
/// `tokenizer(text)`), or through the chat template (its own special tokens, like
/// `apply_chat_template`), truncated to `max_tokens`.
pub fn prompt_ids(
    m: &Loaded,
    text: &str,
    chat: bool,
    max_tokens: usize,
) -> Result<Vec<u32>, String> {
    let mut ids = if chat {
        let t = m.chat.as_ref().ok_or_else(|| {
            format!(
                "{}: --chat needs a chat_template in tokenizer_config.json",
                m.name
            )
        })?;
        let rendered = t.render(text).map_err(|e| format!("{}: {e}", m.name))?;
        m.tokenizer.encode(&rendered, false)
    } else {
        m.tokenizer.encode(text, true)
    }
    .map_err(|e| format!("{}: {e}", m.name))?;
    ids.truncate(max_tokens);
    if ids.is_empty() {
        return Err("the prompt gives no tokens".into());
    }
    Ok(ids)
}

/// A clock in milliseconds for the libraries' timings.
pub fn clock() -> impl Fn() -> f64 {
    let start = Instant::now();
    move || start.elapsed().as_secs_f64() * 1e3
}

/// `Gpu::new` and the measured matmul plan.
pub fn gpu() -> Result<Gpu, String> {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let now = clock();
    pollster::block_on(gpu.tune_gemm(&now)).map_err(|e| e.to_string())?;
    Ok(gpu)
}

pub struct GenerateArgs<'a> {
    pub model: &'a Path,
    pub prompt: &'a str,
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    pub ternary: bool,
    pub quantizer: Quantizer,
    pub chat: bool,
}

fn per_s(tokens: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1e3 / ms
    } else {
        0.0
    }
}

pub fn generate(a: &GenerateArgs, json: bool) -> Result<(), String> {
    let gpu = gpu()?;
    let m = load(&gpu, a.model, a.ternary, a.quantizer)?;
    let ids = prompt_ids(&m, a.prompt, a.chat, usize::MAX)?;
    let generator = Generator::new(&gpu, &m.model.config, &m.weights).map_err(|e| e.to_string())?;
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: a.sampling,
        seed: a.seed,
        first_stream: 0,
        eos: m.eos.clone(),
        keep_logits: false,
    };
    // Text mode streams the continuation as it is decoded.
    let mut so_far = Vec::new();
    let mut printed = String::new();
    let mut stream = |_: usize, t: u32| {
        if json {
            return;
        }
        so_far.push(t);
        if let Ok(text) = m.tokenizer.decode(&so_far, true)
            && let Some(new) = text.strip_prefix(printed.as_str())
        {
            print!("{new}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            printed = text;
        }
    };
    let now = clock();
    let out: Generation = pollster::block_on(generator.generate(
        &gpu,
        std::slice::from_ref(&ids),
        &opts,
        &now,
        &mut stream,
    ))
    .map_err(|e| e.to_string())?;
    let tokens = &out.tokens[0];
    let text = m
        .tokenizer
        .decode(tokens, true)
        .map_err(|e| format!("{}: {e}", m.name))?;
    let ended = if out.ended[0] {
        "eos"
    } else {
        "max_new_tokens"
    };
    if json {
        let (temperature, top_p, top_k) = match a.sampling {
            Sampling::Greedy => (0.0, 1.0, 0),
            Sampling::Random {
                temperature,
                top_p,
                top_k,
            } => (temperature, top_p, top_k),
        };
        return crate::print_json(&serde_json::json!({
            "model": m.name,
            "adapter": gpu.report().name,
            "ternary": m.ternary,
            "prompt": a.prompt,
            "prompt_ids": ids,
            "tokens": tokens,
            "text": text,
            "ended_by": ended,
            "sampling": {
                "greedy": a.sampling == Sampling::Greedy,
                "temperature": temperature,
                "top_p": top_p,
                "top_k": top_k,
                "seed": a.seed,
            },
            "prefill_tokens": out.prefill_tokens,
            "prefill_ms": out.prefill_ms,
            "prefill_tokens_per_s": per_s(out.prefill_tokens, out.prefill_ms),
            "decode_tokens": out.decode_tokens,
            "decode_ms": out.decode_ms,
            "decode_tokens_per_s": per_s(out.decode_tokens, out.decode_ms),
        }));
    }
    // The rest of the text (a tokenizer may rewrite earlier characters once a byte sequence
    // completes; then the whole text is printed again).
    match text.strip_prefix(printed.as_str()) {
        Some(rest) => println!("{rest}"),
        None => println!("\n{text}"),
    }
    eprintln!(
        "[{} tokens, ended by {ended}; prefill {} tokens at {:.1} tokens/s, decode {:.1} tokens/s on {}{}]",
        tokens.len(),
        out.prefill_tokens,
        per_s(out.prefill_tokens, out.prefill_ms),
        per_s(out.decode_tokens, out.decode_ms),
        gpu.report().name,
        if m.ternary { ", ternary weights" } else { "" },
    );
    Ok(())
}

/// Perplexity of a model over a JSONL dataset in the training text format.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Perplexity {
    pub model: String,
    pub ternary: bool,
    pub examples: usize,
    pub tokens: u64,
    pub mean_loss: f64,
    pub perplexity: f64,
}

/// exp(mean next-token cross-entropy) over every trained position of every example of `dataset`
/// (the training text format, truncated to `seq_len`, loss mask `mask`), `bsz` sequences at a time.
pub fn perplexity(
    gpu: &Gpu,
    m: &Loaded,
    dataset: &Path,
    seq_len: usize,
    mask: LossMask,
    bsz: usize,
) -> Result<Perplexity, String> {
    let data_name = dataset.display().to_string();
    let bytes = std::fs::read(dataset).map_err(|e| format!("{data_name}: {e}"))?;
    let examples = parse_jsonl(&data_name, &bytes).map_err(|e| e.to_string())?;
    if examples.is_empty() {
        return Err(format!("{data_name}: no examples"));
    }
    let cfg = &m.model.config;
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: m.post_attn_norm(),
        quantize_lm_head: false,
    };
    let gm = GpuModel::new(gpu, cfg, &m.weights, setup).map_err(|e| e.to_string())?;
    let pad = m.eos.first().copied().unwrap_or(0);
    let (mut nll, mut count) = (0f64, 0u64);
    for chunk in examples.chunks(bsz.max(1)) {
        let mut seqs = Vec::with_capacity(chunk.len());
        for ex in chunk {
            let s = tokenize(&m.tokenizer, ex, seq_len, mask)
                .map_err(|e| format!("{data_name}: {e}"))?;
            if let Some(&id) = s.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
                return Err(format!(
                    "{data_name}: the tokenizer gives id {id}, outside the model's vocabulary of {}",
                    cfg.vocab_size
                ));
            }
            seqs.push(s);
        }
        let padded = bitnet_core::dataset::pad_batch(&seqs, pad);
        let batch =
            Batch::new(gpu, cfg, &padded.tokens, &padded.targets).map_err(|e| e.to_string())?;
        if batch.n_valid == 0 {
            continue;
        }
        gpu.submit(
            &gm.forward_loss(gpu, &batch, None)
                .map_err(|e| e.to_string())?,
        );
        let rows = (batch.b * batch.t) as usize;
        let loss: f64 = pollster::block_on(gpu.read_f32("loss", &batch.loss, rows))
            .map_err(|e| e.to_string())?
            .iter()
            .map(|&x| x as f64)
            .sum();
        nll += loss * batch.n_valid as f64;
        count += batch.n_valid as u64;
    }
    if count == 0 {
        return Err(format!("{data_name}: no token to score"));
    }
    let mean_loss = nll / count as f64;
    if !mean_loss.is_finite() {
        return Err(format!(
            "{}: the loss over {data_name} is not finite ({mean_loss})",
            m.name
        ));
    }
    Ok(Perplexity {
        model: m.name.clone(),
        ternary: m.ternary,
        examples: examples.len(),
        tokens: count,
        mean_loss,
        perplexity: mean_loss.exp(),
    })
}

#[allow(clippy::too_many_arguments)] // one per flag of `bitnet eval`
pub fn eval(
    model: &Path,
    dataset: &Path,
    ternary: bool,
    quantizer: Quantizer,
    seq_len: usize,
    mask: LossMask,
    bsz: usize,
    json: bool,
) -> Result<(), String> {
    let gpu = gpu()?;
    let m = load(&gpu, model, ternary, quantizer)?;
    let p = perplexity(&gpu, &m, dataset, seq_len, mask, bsz)?;
    if json {
        return crate::print_json(&p);
    }
    println!(
        "{}{}: perplexity {:.4} (mean loss {:.4} over {} tokens of {} examples in {})",
        p.model,
        if p.ternary { " (ternary)" } else { "" },
        p.perplexity,
        p.mean_loss,
        p.tokens,
        p.examples,
        dataset.display()
    );
    Ok(())
}
