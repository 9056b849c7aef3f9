//! bitnet-core: everything of bitnet-studio that needs no GPU — model config, safetensors, tokenizer,
//! the parameter table, λ schedules, ternary quantizers (the CPU reference), bit packing and the
//! packed model format. Builds for native and wasm32; reads bytes, never the filesystem.

pub mod checksum;
pub mod config;
pub mod cpu;
pub mod dataset;
pub mod error;
pub mod gguf;
pub mod hf_bitnet;
pub mod hf_extra;
pub mod limits;
pub mod model;
pub mod pack;
pub mod packed;
pub mod params;
pub mod quant;
pub mod rng;
pub mod safetensors;
pub mod sample;
pub mod schedule;
pub mod selfgen;
pub mod soft;
pub mod summary;
pub mod tokenizer;
pub mod zip;

pub use config::ModelConfig;
pub use error::{CoreError, Result};
pub use model::{MemoryFiles, Model, ModelFiles};
pub use pack::Packing;
pub use quant::{Quantizer, ScaleMode, Ternary};
pub use rng::Rng;
pub use schedule::Schedule;
pub use summary::ModelSummary;
