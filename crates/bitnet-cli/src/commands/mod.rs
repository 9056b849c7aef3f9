//! One module per command: its clap definition next to the code that runs it. Each parses, calls
//! the libraries (the job itself lives in bitnet-pipeline) and prints.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod export;
pub mod generate;
pub mod grads;
pub mod info;
pub mod inspect;
pub mod pack;
pub mod run;
pub mod schedule;
pub mod selfgen;
pub mod selftest;
pub mod train;
pub mod unpack;

use std::path::{Path, PathBuf};

use bitnet_core::model::Model;
use bitnet_gpu::Gpu;

use crate::error::{CliError, CliResult};
use crate::store::DirFiles;

/// The GPU adapter (the CLI blocks on the libraries' async work here, at its top).
pub fn gpu() -> CliResult<Gpu> {
    Ok(pollster::block_on(Gpu::new())?)
}

/// The GPU with its linear-layer plan measured.
pub fn tuned_gpu() -> CliResult<Gpu> {
    let gpu = gpu()?;
    let now = bitnet_pipeline::clock();
    pollster::block_on(gpu.tune_gemm(&now))?;
    Ok(gpu)
}

/// A model folder and its checked headers.
pub fn open_model(dir: &Path) -> CliResult<(DirFiles, Model)> {
    let files = DirFiles::open(dir)?;
    let model =
        pollster::block_on(Model::open(&files)).map_err(|e| CliError::input(dir.display(), e))?;
    Ok((files, model))
}

/// Reads a whole input file.
pub fn read(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// A path as the filesystem resolves it (for a file that does not exist yet: its resolved folder
/// and its name), so that two spellings of one file compare equal.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), p.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => p.to_path_buf(),
    }
}

/// Refuses to write `outputs` over any of the command's `inputs` (never allowed: it would destroy
/// what is being read) or over files that exist (unless `overwrite`), naming them.
pub fn check_outputs(outputs: &[PathBuf], inputs: &[PathBuf], overwrite: bool) -> CliResult {
    let inputs: Vec<PathBuf> = inputs.iter().map(|p| resolved(p)).collect();
    if let Some(out) = outputs.iter().find(|o| inputs.contains(&resolved(o))) {
        return Err(CliError::Usage(format!(
            "{} is one of this command's inputs: writing it would destroy what is being read; choose another --out",
            out.display()
        )));
    }
    let existing: Vec<String> = outputs
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !overwrite {
        return Err(CliError::Usage(format!(
            "{} already exist{}: pass --overwrite to replace {}, or choose another --out",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" },
            if existing.len() == 1 { "it" } else { "them" }
        )));
    }
    Ok(())
}

/// The files of a folder (not its subfolders).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    // A model given as one file (a .gguf) is itself the input.
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}
