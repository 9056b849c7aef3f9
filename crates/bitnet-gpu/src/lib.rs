//! bitnet-gpu: the wgpu layer of bitnet-studio — device creation with the adapter's own limits, a
//! small buffer and pipeline layer, and the kernels (one WGSL file and one module per family).
//! All GPU work is async; nothing here blocks except native device polling during a readback.

pub mod batch;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod buffer;
pub mod decode;
pub mod device;
pub mod distill;
pub mod error;
pub mod generate;
pub mod kernels;
pub mod matmul;
pub mod matvec;
pub mod model;
pub mod ops;
pub mod optimizer;
pub mod packer;
pub mod pipelines;
pub mod quantize;
pub mod selftest;
pub mod soft;
pub mod trainer;

pub use device::{AdapterReport, Gpu};
pub use error::GpuError;
