//! `bitnet export SRC --format F --out PATH`: a model in a format other tools run — GGUF for
//! llama.cpp (TQ2_0/TQ1_0 from a packed file or a training run's folder, F32/F16 from a
//! full-precision folder), the transformers packed-BitNet folder, or the dequantized folder.

use std::path::{Path, PathBuf};

use bitnet_pipeline::Store;
use bitnet_pipeline::export::{Exported, Format, GGUF_FILE, export_folder, export_packed};
use bitnet_pipeline::load::PACKED_FILE;
use bitnet_pipeline::run::TRAIN_FOLDER;
use bitnet_pipeline::train::MANIFEST_FILE;

use crate::error::CliResult;
use crate::output::print_json;
use crate::store::{DirFiles, DirStore};

/// Write a model in a format other tools run: gguf-tq2_0, gguf-tq1_0 (llama.cpp), gguf-f32,
/// gguf-f16 (a full-precision folder), hf-bitnet (transformers' packed BitNet), hf (dequantized).
#[derive(clap::Args)]
pub struct Args {
    /// A packed file, a training run's folder (`bitnet train --out`, `bitnet run --out-dir`), or a
    /// full-precision model folder (for gguf-f32 / gguf-f16).
    src: PathBuf,
    #[arg(long, value_parser = Format::parse)]
    format: Format,
    /// The GGUF file, or the folder of an hf / hf-bitnet export.
    #[arg(long)]
    out: PathBuf,
    /// Replace files of --out that the export would overwrite (never its input).
    #[arg(long)]
    overwrite: bool,
}

/// The packed file of `src`: itself, or the one a training run wrote in it (a `.gguf` file is a
/// model folder's stand-in, not a packed file).
fn packed_file(src: &Path) -> Option<PathBuf> {
    if crate::store::is_gguf(src) {
        return None;
    }
    if src.is_file() {
        return Some(src.to_path_buf());
    }
    [
        src.join(PACKED_FILE),
        src.join(TRAIN_FOLDER).join(PACKED_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The chat template of the base model a packed file was trained from (the run's manifest names
/// it), or of a tokenizer_config.json beside the file.
fn chat_template(packed: &Path) -> Option<String> {
    let dir = packed.parent()?;
    let template = |d: &Path| {
        let b = std::fs::read(d.join("tokenizer_config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        v.get("chat_template")?.as_str().map(str::to_string)
    };
    template(dir).or_else(|| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_FILE)).ok()?).ok()?;
        template(Path::new(m.get("base_model")?.as_str()?))
    })
}

/// Runs the export of `a` and writes it; returns what was exported and the paths written.
pub fn write(a: &Args) -> CliResult<(Exported, Vec<PathBuf>)> {
    let packed = packed_file(&a.src);
    let exported = match &packed {
        Some(file) => {
            let bytes = super::read(file)?;
            let name = file.display().to_string();
            let chat = chat_template(file);
            export_packed(&name, &bytes, a.format, chat.as_deref())?
        }
        None => {
            let files = DirFiles::open(&a.src)?;
            let name = a.src.display().to_string();
            pollster::block_on(export_folder(&files, &name, a.format))?
        }
    };
    let input = packed.unwrap_or_else(|| a.src.clone());
    if a.format.is_file() {
        super::check_outputs(
            std::slice::from_ref(&a.out),
            std::slice::from_ref(&input),
            a.overwrite,
        )?;
        let (store, key) = DirStore::of_file(&a.out)?;
        pollster::block_on(store.put(&key, &exported.files[GGUF_FILE]))?;
        return Ok((exported, vec![a.out.clone()]));
    }
    let outputs: Vec<PathBuf> = exported.files.keys().map(|k| a.out.join(k)).collect();
    super::check_outputs(&outputs, std::slice::from_ref(&input), a.overwrite)?;
    let store = DirStore::new(&a.out);
    for (fname, data) in &exported.files {
        pollster::block_on(store.put(fname, data))?;
    }
    Ok((exported, outputs))
}

pub fn run(a: Args, json: bool) -> CliResult {
    let (e, written) = write(&a)?;
    for n in &e.notes {
        eprintln!("note: {n}");
    }
    let written: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    if json {
        return print_json(&serde_json::json!({
            "format": a.format.name(),
            "out": a.out.display().to_string(),
            "files": written,
            "architecture": e.architecture,
            "f16_fallback": e.f16_fallback,
            "notes": e.notes,
        }));
    }
    let arch = e
        .architecture
        .map(|a| format!(", architecture {a}"))
        .unwrap_or_default();
    println!(
        "wrote {} ({}{arch}): {}",
        a.out.display(),
        a.format.name(),
        written.join(", ")
    );
    Ok(())
}

impl Args {
    /// `bitnet unpack FILE --out DIR`: the dequantized folder.
    pub fn hf(file: PathBuf, out: PathBuf, overwrite: bool) -> Args {
        Args {
            src: file,
            format: Format::Hf,
            out,
            overwrite,
        }
    }
}
