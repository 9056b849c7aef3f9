//! `bitnet unpack FILE --out DIR`: a Hugging Face folder with the dequantized weights (γ·q), config
//! and tokenizer — `bitnet export FILE --format hf`.

use std::path::PathBuf;

use crate::error::CliResult;
use crate::output::print_json;

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
    let args = super::export::Args::hf(a.file, a.out.clone(), a.overwrite);
    let (e, _) = super::export::write(&args)?;
    for n in &e.notes {
        eprintln!("warning: {n}");
    }
    let files: Vec<&String> = e.files.keys().collect();
    if json {
        return print_json(&serde_json::json!({
            "out": a.out.display().to_string(),
            "files": files,
            "notes": e.notes,
        }));
    }
    println!(
        "wrote {} ({}): ternary tensors dequantized to γ·q",
        a.out.display(),
        files
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
