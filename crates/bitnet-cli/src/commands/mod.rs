//! One module per command: its clap definition next to the code that runs it. Each parses, calls
//! the libraries (the job itself lives in bitnet-pipeline) and prints.

pub mod bench;
pub mod demo;
pub mod eval;
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

use std::path::Path;

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
