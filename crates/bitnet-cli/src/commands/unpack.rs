//! `bitnet unpack FILE --out DIR`: a Hugging Face folder with the dequantized weights (γ·q), config
//! and tokenizer.

use std::path::PathBuf;

use bitnet_core::packed::PackedModel;
use bitnet_pipeline::Store;

use crate::error::{CliError, CliResult};
use crate::output::print_json;
use crate::store::DirStore;

/// Write a Hugging Face folder with the dequantized weights (γ·q), config and tokenizer.
#[derive(clap::Args)]
pub struct Args {
    /// A packed file written by `bitnet pack`.
    file: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Replace files of --out that the folder's files would overwrite (never the packed file).
    #[arg(long)]
    overwrite: bool,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let bytes = super::read(&a.file)?;
    let name = a.file.display().to_string();
    let packed = PackedModel::parse(&name, &bytes).map_err(|e| CliError::input(&name, e))?;
    let hf = packed
        .unpack_to_hf()
        .map_err(|e| CliError::input(&name, e))?;
    let outputs: Vec<PathBuf> = hf.keys().map(|k| a.out.join(k)).collect();
    super::check_outputs(&outputs, std::slice::from_ref(&a.file), a.overwrite)?;
    let store = DirStore::new(&a.out);
    for (fname, data) in &hf {
        pollster::block_on(store.put(fname, data))?;
    }
    // A Llama-family folder has no place for the extra norms: say that the folder is another model.
    let dropped: Vec<String> = packed
        .extra_norms()
        .map_err(|e| CliError::input(&name, e))?
        .into_keys()
        .collect();
    if !dropped.is_empty() {
        eprintln!(
            "warning: {name} carries the trained gains of {} extra norms (post-attention RMSNorm or SubLN, e.g. {}) that a Llama-family folder cannot hold: {} is the model without them, which computes something else; generate and eval the packed file itself",
            dropped.len(),
            dropped[0],
            a.out.display()
        );
    }
    if json {
        return print_json(&serde_json::json!({
            "out": a.out.display().to_string(),
            "files": hf.keys().collect::<Vec<_>>(),
            "ternary_tensors": packed.shapes.len(),
            "packing": packed.packing.name(),
            "quantizer": packed.quantizer.name(),
            "dropped_extra_norms": dropped,
        }));
    }
    println!(
        "wrote {} ({}): {} ternary tensors ({} packing, {} quantizer) dequantized to γ·q",
        a.out.display(),
        hf.keys().cloned().collect::<Vec<_>>().join(", "),
        packed.shapes.len(),
        packed.packing.name(),
        packed.quantizer.name()
    );
    Ok(())
}
