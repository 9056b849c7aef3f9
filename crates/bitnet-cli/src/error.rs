//! The CLI's errors: what the libraries report, plus the shell's own (files it cannot read, flag
//! values it cannot use, checks that failed). Printed as `error: …` with a non-zero exit.

use std::path::Path;

use bitnet_core::CoreError;
use bitnet_gpu::GpuError;
use bitnet_pipeline::{PipelineError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or folder that cannot be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A model, packed file or other input the core library refused, named.
    #[error("{what}: {source}")]
    Input {
        what: String,
        #[source]
        source: CoreError,
    },
    /// A flag value that cannot be used, with what is expected.
    #[error("{0}")]
    Usage(String),
    /// A check the command ran did not pass (self-test, benchmark validation).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn io(path: &Path, message: impl std::fmt::Display) -> CliError {
        CliError::Io {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    pub fn input(what: impl std::fmt::Display, source: CoreError) -> CliError {
        CliError::Input {
            what: what.to_string(),
            source,
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
