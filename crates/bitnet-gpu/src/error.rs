//! Errors of the GPU layer, each naming what failed and the limit or tensor involved.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found ({0}); on Linux install a Vulkan driver (e.g. mesa-vulkan-drivers), in a browser enable WebGPU"
    )]
    NoAdapter(String),

    #[error("the adapter `{adapter}` refused to create a device: {message}")]
    RequestDevice { adapter: String, message: String },

    #[error(
        "tensor `{tensor}` needs {needed} bytes, over this adapter's {limit_name} of {limit} bytes"
    )]
    Limit {
        tensor: String,
        needed: u64,
        limit_name: &'static str,
        limit: u64,
    },

    #[error("reading back `{what}` from the GPU failed: {message}")]
    Readback { what: String, message: String },

    #[error("GPU error in {what}: {message}")]
    Device { what: String, message: String },

    /// Input the GPU code cannot take (tokens outside the vocabulary, ragged batches).
    #[error("{0}")]
    Input(String),

    #[error(transparent)]
    Core(#[from] bitnet_core::CoreError),
}
