//! The pipeline's errors: each says what was wrong and where (the file, the tensor, the setting),
//! so a shell prints it as it is.

use bitnet_core::CoreError;
use bitnet_gpu::GpuError;
use bitnet_gpu::trainer::TrainError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A model, dataset or other input that cannot be used, named.
    #[error("{what}: {source}")]
    Input {
        what: String,
        #[source]
        source: CoreError,
    },
    /// A setting or an input that the job refuses, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// A buffer the run needs is larger than the adapter allows; nothing was allocated.
    #[error(
        "{tensor} needs {needed}, more than the adapter's {limit} per binding ({context}); {advice}"
    )]
    TooLarge {
        tensor: String,
        needed: String,
        limit: String,
        context: String,
        advice: String,
    },
    /// The run was cancelled between two steps; what it had written is kept.
    #[error("cancelled")]
    Cancelled,
}

impl PipelineError {
    /// An input error naming `what` (a file, a folder, a store key).
    pub fn input(what: impl Into<String>, source: CoreError) -> PipelineError {
        PipelineError::Input {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, PipelineError>;
