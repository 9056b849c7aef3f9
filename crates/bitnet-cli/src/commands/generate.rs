//! `bitnet generate`: continue a prompt on the GPU (KV cache), from a model folder or a packed
//! file, streaming the text.

use std::io::Write;
use std::path::{Path, PathBuf};

use bitnet_core::quant::Quantizer;
use bitnet_core::sample::Sampling;
use bitnet_pipeline::Ctx;
use bitnet_pipeline::generate::{EndedBy, continue_prompt};
use bitnet_pipeline::load::{Loaded, POST_ATTN_NORM_FILE, load_folder, load_packed};

use crate::args::{QuantArgs, SamplingArgs};
use crate::error::{CliError, CliResult};
use crate::output::print_json;
use crate::store::DirFiles;

/// Continue a prompt on the GPU (KV cache), from a model folder or a packed file.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model folder, or a packed file (`bitnet pack`, `bitnet train`).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(
        long = "max-new-tokens",
        alias = "max_new_tokens",
        default_value_t = 128
    )]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Ternarize the projections first (γ·q, as `bitnet pack` would; a packed file already is).
    #[arg(long)]
    ternary: bool,
    #[command(flatten)]
    quant: QuantArgs,
    /// Prompt through the tokenizer's chat template (one user message).
    #[arg(long)]
    chat: bool,
}

/// Loads the model at `path`: a folder (packed in memory first with `ternary`) or a packed file,
/// with the post-attention norm gains a training run wrote beside it.
pub fn load(ctx: &Ctx<'_>, path: &Path, ternary: bool, quantizer: Quantizer) -> CliResult<Loaded> {
    let name = path.display().to_string();
    if path.is_dir() || crate::store::is_gguf(path) {
        let files = DirFiles::open(path)?;
        return Ok(pollster::block_on(load_folder(
            Some(ctx.gpu),
            &files,
            &name,
            ternary,
            quantizer,
        ))?);
    }
    let bytes = super::read(path)?;
    let gains = path.with_file_name(POST_ATTN_NORM_FILE);
    let gains = std::fs::read(&gains)
        .ok()
        .map(|b| (gains.display().to_string(), b));
    Ok(pollster::block_on(load_packed(&name, &bytes, gains))?)
}

pub fn run(a: Args, json: bool) -> CliResult {
    bitnet_core::limits::at_least(&[("--max-new-tokens", a.max_new_tokens as u64, 1)])
        .map_err(CliError::Usage)?;
    let sampling = a.sampling.sampling()?;
    let quantizer = a.quant.quantizer()?;
    let gpu = super::tuned_gpu()?;
    let ctx = Ctx::quiet(&gpu);
    let m = load(&ctx, &a.model, a.ternary, quantizer)?;
    let ids = m.prompt_ids(&a.prompt, a.chat, usize::MAX)?;
    // Text mode streams the continuation as it is decoded.
    let mut so_far = Vec::new();
    let mut printed = String::new();
    let mut stream = |t: u32| {
        if json {
            return;
        }
        so_far.push(t);
        if let Ok(text) = m.tokenizer.decode(&so_far, true)
            && let Some(new) = text.strip_prefix(printed.as_str())
        {
            print!("{new}");
            let _ = std::io::stdout().flush();
            printed = text;
        }
    };
    let c = pollster::block_on(continue_prompt(
        &ctx,
        &m,
        ids,
        a.max_new_tokens,
        sampling,
        a.sampling.seed,
        &mut stream,
    ))?;
    if json {
        let (temperature, top_p, top_k) = match sampling {
            Sampling::Greedy => (0.0, 1.0, 0),
            Sampling::Random {
                temperature,
                top_p,
                top_k,
            } => (temperature, top_p, top_k),
        };
        let mut v = serde_json::to_value(&c).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("model".into(), m.name.clone().into());
            o.insert("adapter".into(), gpu.report().name.into());
            o.insert("ternary".into(), m.ternary.into());
            o.insert("prompt".into(), a.prompt.clone().into());
            o.insert(
                "sampling".into(),
                serde_json::json!({
                    "greedy": sampling == Sampling::Greedy,
                    "temperature": temperature,
                    "top_p": top_p,
                    "top_k": top_k,
                    "seed": a.sampling.seed,
                }),
            );
        }
        return print_json(&v);
    }
    // The rest of the text (a tokenizer may rewrite earlier characters once a byte sequence
    // completes; then the whole text is printed again).
    match c.text.strip_prefix(printed.as_str()) {
        Some(rest) => println!("{rest}"),
        None => println!("\n{}", c.text),
    }
    eprintln!(
        "[{} tokens, ended by {}; prefill {} tokens at {:.1} tokens/s, decode {:.1} tokens/s on {}{}, {} of weights on the GPU]",
        c.tokens.len(),
        match c.ended_by {
            EndedBy::Eos => "eos",
            EndedBy::MaxNewTokens => "max_new_tokens",
        },
        c.prefill_tokens,
        c.prefill_tokens_per_s,
        c.decode_tokens_per_s,
        gpu.report().name,
        if m.ternary { ", ternary weights" } else { "" },
        bitnet_core::summary::human_bytes(c.gpu_weight_bytes),
    );
    Ok(())
}
