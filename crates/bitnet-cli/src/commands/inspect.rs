//! `bitnet inspect MODEL_DIR`: the model summary (as in the app), with the fine-tune memory plan
//! against the adapter's limits.

use std::path::PathBuf;

use bitnet_core::summary::{ModelSummary, human_bytes};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_gpu::Gpu;

use crate::error::{CliError, CliResult};
use crate::output::print_json;

/// Summarize a Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
#[derive(clap::Args)]
pub struct Args {
    /// Folder with config.json and the .safetensors weights.
    model_dir: PathBuf,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let dir = &a.model_dir;
    let (_files, model) = super::open_model(dir)?;
    let tokenizer_vocab = match &model.tokenizer_json {
        Some(b) => Some(
            Tokenizer::from_bytes("tokenizer.json", b)
                .map_err(|e| CliError::input(dir.display(), e))?
                .vocab_size(),
        ),
        None => None,
    };
    let s = ModelSummary::new(&model, tokenizer_vocab);
    let gpu = pollster::block_on(Gpu::new()).ok();
    let limits = gpu.as_ref().map(|g| {
        let notes = s.finetune_memory.limit_notes(
            g.limits.max_buffer_size,
            g.limits.max_storage_buffer_binding_size,
        );
        (g.info.name.clone(), notes)
    });
    if json {
        let v = serde_json::json!({
            "summary": s,
            "adapter": limits.as_ref().map(|(n, _)| n),
            "limit_notes": limits.as_ref().map(|(_, notes)| notes),
        });
        return print_json(&v);
    }
    println!("model:          {} ({})", s.architecture, s.model_type);
    println!("layers:         {}", s.layers);
    println!(
        "hidden size:    {} (intermediate {})",
        s.hidden_size, s.intermediate_size
    );
    println!(
        "heads:          {} attention, {} key/value, head dim {}",
        s.attention_heads, s.kv_heads, s.head_dim
    );
    match s.tokenizer_vocab {
        Some(t) => println!("vocab:          {} (tokenizer.json: {t})", s.vocab_size),
        None => println!("vocab:          {} (no tokenizer.json)", s.vocab_size),
    }
    println!(
        "embeddings:     {}",
        if s.tied_embeddings { "tied" } else { "untied" }
    );
    println!(
        "parameters:     {} ({} become ternary)",
        s.parameters, s.ternary_parameters
    );
    println!(
        "weights:        {} in {} ({})",
        human_bytes(s.weight_bytes),
        s.weight_files.join(", "),
        s.dtypes.join(", ")
    );
    let m = &s.finetune_memory;
    println!(
        "fine-tune GPU memory (batch {} × {} tokens × {} micro-batches, f32): {} = weights {} + gradients {} + AdamW {} + activations {}",
        m.batch,
        m.seq_len,
        m.micro_batches,
        human_bytes(m.total),
        human_bytes(m.weights),
        human_bytes(m.gradients),
        human_bytes(m.optimizer),
        human_bytes(m.activations)
    );
    match limits {
        Some((name, notes)) => notes.iter().for_each(|n| println!("  on {name}: {n}")),
        None => println!("  no GPU adapter found: cannot compare with its limits"),
    }
    Ok(())
}
