//! Whether a model trained with SubLN computes what llama.cpp's `bitnet` architecture computes.

use crate::config::ModelConfig;
use crate::error::{CoreError, Result};

pub fn check(file: &str, cfg: &ModelConfig) -> Result<()> {
    let _ = cfg;
    Err(CoreError::packed(
        file,
        "SubLN models are not exported to GGUF yet",
    ))
}
