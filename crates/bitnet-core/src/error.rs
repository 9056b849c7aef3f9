//! Error type of bitnet-core. Every variant names the file or tensor it is about and says what was
//! expected, so that a user can act on the message without reading our code.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("{file}: invalid JSON: {message}")]
    Json { file: String, message: String },

    #[error("{file}: {message}")]
    Config { file: String, message: String },

    #[error(
        "{file}: model_type `{model_type}` is not supported; supported model types: {supported}"
    )]
    UnsupportedModel {
        file: String,
        model_type: String,
        supported: String,
    },

    #[error("{file}: not a valid safetensors file: {message}")]
    Safetensors { file: String, message: String },

    #[error("{file}: tensor `{tensor}`: {message}")]
    Tensor {
        file: String,
        tensor: String,
        message: String,
    },

    #[error("missing tensor `{tensor}` (expected shape {expected:?}); looked in: {files}")]
    MissingTensor {
        tensor: String,
        expected: Vec<usize>,
        files: String,
    },

    #[error("missing file {0}")]
    MissingFile(String),

    #[error("{file}: tokenizer: {message}")]
    Tokenizer { file: String, message: String },

    #[error("{file}: packed model: {message}")]
    Packed { file: String, message: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    pub(crate) fn json(file: &str, err: impl std::fmt::Display) -> Self {
        CoreError::Json {
            file: file.to_string(),
            message: err.to_string(),
        }
    }
    pub(crate) fn config(file: &str, message: impl Into<String>) -> Self {
        CoreError::Config {
            file: file.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn safetensors(file: &str, message: impl Into<String>) -> Self {
        CoreError::Safetensors {
            file: file.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn tensor(file: &str, tensor: &str, message: impl Into<String>) -> Self {
        CoreError::Tensor {
            file: file.to_string(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn packed(file: &str, message: impl Into<String>) -> Self {
        CoreError::Packed {
            file: file.to_string(),
            message: message.into(),
        }
    }
}
