//! Post-training ternarization of a whole model into the packed file (the seed's `compress()`, over
//! every projection): on the GPU when one is given, else on the CPU reference. Shared by
//! `bitnet pack` and the app.

use bitnet_core::model::{Model, ModelFiles};
use bitnet_core::pack::{Packing, pack, unpack};
use bitnet_core::packed::PackedWriter;
use bitnet_core::params::Role;
use bitnet_core::quant::{Quantizer, Ternary};
use bitnet_core::safetensors::{Dtype, OwnedTensor, decode_f32};

use crate::device::Gpu;
use crate::error::GpuError;

#[derive(Debug, Clone, Copy)]
pub struct PackOptions {
    pub quantizer: Quantizer,
    pub packing: Packing,
    /// Ternarize `lm_head` too (seed parity; off by default).
    pub quantize_lm_head: bool,
    /// Store the full-precision tensors (embeddings, norms, biases, lm_head) as this floating-point
    /// dtype; None: as the model stores them (F16 and BF16 stay 16-bit).
    pub fp_dtype: Option<Dtype>,
    /// Mark the file W1.58A8 (a model trained with `--act-bits 8`).
    pub act8: bool,
}

/// One line of the pack report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    pub ternary: bool,
    /// Fraction of zero codes (ternary tensors).
    pub sparsity: Option<f64>,
    pub scale: Option<f32>,
    /// Stored bits per weight, the scale included.
    pub bits_per_weight: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Where the quantization ran: "gpu", "cpu", or "" for tensors kept as stored.
    pub device: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PackReport {
    pub tensors: Vec<TensorReport>,
    /// Bytes of the input weights.
    pub bytes_in: u64,
    /// Bytes of the packed file.
    pub bytes_out: u64,
    pub ternary_parameters: u64,
    pub mean_sparsity: f64,
}

/// Packs every tensor of `model`, and stores `extra_norms` (the trained gains of norms the base
/// model does not have, which must be finite) as they are; `progress` sees each tensor's report as
/// it is done.
pub async fn pack_model<F: ModelFiles>(
    gpu: Option<&Gpu>,
    model: &Model,
    files: &F,
    opts: &PackOptions,
    extra_norms: Vec<OwnedTensor>,
    mut progress: impl FnMut(&TensorReport),
) -> Result<(Vec<u8>, PackReport), GpuError> {
    let mut writer = PackedWriter::new(opts.packing, opts.quantizer);
    let mut reports = Vec::new();
    for loc in &model.tensors {
        let spec = &loc.spec;
        let n = spec.numel();
        let bytes_in = loc.info.end - loc.info.begin;
        let report = if spec.is_ternary(opts.quantize_lm_head) {
            let w = model.tensor_f32(files, loc).await?;
            let (codes, scale, device) = quantize_one(gpu, &spec.name, &w, &opts.quantizer).await?;
            let bytes = pack(opts.packing, &codes);
            let bytes_out = bytes.len() as u64 + 4;
            let zeros = codes.iter().filter(|&&c| c == 0).count();
            writer.add_packed(&spec.name, spec.shape.clone(), bytes, scale);
            TensorReport {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                role: spec.role,
                ternary: true,
                sparsity: Some(zeros as f64 / n.max(1) as f64),
                scale: Some(scale),
                bits_per_weight: bytes_out as f64 * 8.0 / n.max(1) as f64,
                bytes_in,
                bytes_out,
                device,
            }
        } else {
            let bytes = model.tensor_bytes(files, loc).await?;
            // Kept as stored (or converted to fp_dtype), never with a NaN or an infinity in it.
            let values = decode_f32(&model.shards[loc.shard].file, &loc.info, &bytes)?;
            let tensor = match opts.fp_dtype {
                Some(d) if d != loc.info.dtype => {
                    OwnedTensor::float(&spec.name, spec.shape.clone(), &values, d)?
                }
                _ => OwnedTensor {
                    name: spec.name.clone(),
                    dtype: loc.info.dtype,
                    shape: spec.shape.clone(),
                    bytes,
                },
            };
            let bytes_out = tensor.bytes.len() as u64;
            let dtype = tensor.dtype;
            writer.add_plain(tensor);
            TensorReport {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                role: spec.role,
                ternary: false,
                sparsity: None,
                scale: None,
                bits_per_weight: dtype.size() as f64 * 8.0,
                bytes_in,
                bytes_out,
                device: "",
            }
        };
        progress(&report);
        reports.push(report);
    }
    for t in extra_norms {
        debug_assert!(
            bitnet_core::cpu::model::is_extra_norm(&t.name),
            "{}",
            t.name
        );
        writer.add_plain(t);
    }
    writer.set_act8(opts.act8);
    let file = writer.finish(&model.config_json, model.tokenizer_json.as_deref())?;
    let ternary: Vec<&TensorReport> = reports.iter().filter(|r| r.ternary).collect();
    let ternary_parameters: u64 = ternary
        .iter()
        .map(|r| r.shape.iter().product::<usize>() as u64)
        .sum();
    let zero_weights: f64 = ternary
        .iter()
        .map(|r| r.sparsity.unwrap_or(0.0) * r.shape.iter().product::<usize>() as f64)
        .sum();
    let report = PackReport {
        bytes_in: model.weight_bytes(),
        bytes_out: file.len() as u64,
        ternary_parameters,
        mean_sparsity: if ternary_parameters > 0 {
            zero_weights / ternary_parameters as f64
        } else {
            0.0
        },
        tensors: reports,
    };
    Ok((file, report))
}

/// Codes, scale and device of one tensor. A tensor too large for one GPU binding is quantized on
/// the CPU (same numerics; the report says so).
async fn quantize_one(
    gpu: Option<&Gpu>,
    name: &str,
    w: &[f32],
    q: &Quantizer,
) -> Result<(Vec<i8>, f32, &'static str), GpuError> {
    if let Some(gpu) = gpu
        && gpu.check_binding(name, 4 * w.len() as u64).is_ok()
    {
        let t = gpu.quantize(name, w, q).await?;
        let codes = unpack(Packing::TwoBit, &t.packed, w.len()).map_err(|m| GpuError::Device {
            what: format!("quantize `{name}`"),
            message: m,
        })?;
        return Ok((codes, t.stats.scale, "gpu"));
    }
    let Ternary { codes, scale } = q.quantize(w);
    Ok((codes, scale, "cpu"))
}
