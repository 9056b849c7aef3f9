//! Ternary quantization on the GPU (shaders/quantize.wgsl): the statistics by reduction over the
//! whole tensor, then the 2-bit codes, without a readback in between. Only the four statistics and
//! the packed codes come back. CPU reference: `bitnet_core::quant`.

use bitnet_core::quant::{QuantStats, Quantizer, ScaleMode};

use crate::buffer::f32_bytes;
use crate::device::Gpu;
use crate::error::GpuError;
use crate::ops::Op;
use crate::pipelines::{BindingKind, ShaderFamily};

pub const QUANTIZE: ShaderFamily = ShaderFamily {
    name: "quantize",
    source: include_str!("../../../shaders/quantize.wgsl"),
    bindings: &[
        BindingKind::Uniform,          // params
        BindingKind::StorageRead,      // w: (n,)
        BindingKind::StorageReadWrite, // partials: (num_partials,) vec2
        BindingKind::StorageReadWrite, // stats: (4,)
        BindingKind::StorageReadWrite, // packed: (ceil(n/16),) u32
    ],
};

const WG: u64 = 256;
/// Upper bound on reduction workgroups: enough to fill a large GPU, few enough for one final group.
const MAX_PARTIALS: u64 = 1024;
/// Weights summed per invocation before the tree reduction, when the tensor is small.
const PER_THREAD: u64 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    mode: u32,
    scale_mode: u32,
    ratio: f32,
    num_partials: u32,
    _pad: [u32; 3],
}

/// Result of quantizing one tensor on the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuTernary {
    /// Codes in the 2-bit layout of docs/FORMAT.md, ceil(n/4) bytes.
    pub packed: Vec<u8>,
    pub stats: QuantStats,
    /// Number of weights above the threshold (threshold + optimal scale only, else 0).
    pub selected: u64,
}

/// Statistics of a tensor on the GPU: mean|W|, cut, scale, selected count (see quantize.wgsl).
pub struct StatsBuffers {
    pub params: wgpu::Buffer,
    pub partials: wgpu::Buffer,
    /// (4,) f32: mean|W|, cut (γ or Δ), scale, number of weights above the threshold.
    pub stats: wgpu::Buffer,
}

impl Gpu {
    /// Ops that compute the quantizer statistics of `w` (n weights) into a new stats buffer, and
    /// the `encode` op's buffers. Nothing is read back.
    fn quant_stats(
        &self,
        w: &wgpu::Buffer,
        n: u64,
        q: &Quantizer,
        packed: &wgpu::Buffer,
    ) -> Result<(StatsBuffers, Vec<Op>), GpuError> {
        let num_partials = n.div_ceil(WG * PER_THREAD).clamp(1, MAX_PARTIALS);
        let (mode, scale_mode, ratio, optimal) = match *q {
            Quantizer::Absmean => (0, 0, 0.0, false),
            Quantizer::Threshold { ratio, scale } => {
                let opt = scale == ScaleMode::Optimal;
                (1, if opt { 0 } else { 1 }, ratio, opt)
            }
        };
        let params = Params {
            n: n as u32,
            mode,
            scale_mode,
            ratio,
            num_partials: num_partials as u32,
            _pad: [0; 3],
        };
        let b = StatsBuffers {
            params: self.uniform("quantize.params", bytemuck::bytes_of(&params)),
            partials: self.storage("quantize.partials", num_partials * 8)?,
            stats: self.storage("quantize.stats", 16)?,
        };
        let bufs = [&b.params, w, &b.partials, &b.stats, packed];
        let mut ops = vec![
            self.op(&QUANTIZE, "sum_abs", &bufs, [num_partials as u32, 1, 1]),
            self.op(&QUANTIZE, "finish_mean", &bufs, [1, 1, 1]),
        ];
        if optimal {
            ops.push(self.op(
                &QUANTIZE,
                "sum_above_cut",
                &bufs,
                [num_partials as u32, 1, 1],
            ));
            ops.push(self.op(&QUANTIZE, "finish_selected", &bufs, [1, 1, 1]));
        }
        Ok((b, ops))
    }

    /// Statistics of a weight buffer for the λ-blended matmul (the `packed` output is not used).
    pub fn weight_stats(
        &self,
        w: &wgpu::Buffer,
        n: u64,
        q: &Quantizer,
    ) -> Result<(StatsBuffers, Vec<Op>), GpuError> {
        let dummy = self.storage("quantize.unused", 4)?;
        self.quant_stats(w, n, q, &dummy)
    }

    /// Quantizes `w` (a tensor named `name`, flattened row-major) with `q`.
    pub async fn quantize(
        &self,
        name: &str,
        w: &[f32],
        q: &Quantizer,
    ) -> Result<GpuTernary, GpuError> {
        if w.is_empty() {
            return Ok(GpuTernary {
                packed: Vec::new(),
                stats: q.stats(w),
                selected: 0,
            });
        }
        let w_buf = self.upload(name, f32_bytes(w))?;
        self.quantize_buffer(name, &w_buf, w.len() as u64, q).await
    }

    /// Quantizes the `n` weights already in `w_buf` with `q`: only the statistics and the 2-bit
    /// codes (n/4 bytes) are read back.
    pub async fn quantize_buffer(
        &self,
        name: &str,
        w_buf: &wgpu::Buffer,
        n: u64,
        q: &Quantizer,
    ) -> Result<GpuTernary, GpuError> {
        let words = n.div_ceil(16).max(1);
        let max_groups = self.limits.max_compute_workgroups_per_dimension as u64;
        let encode_groups = words.div_ceil(WG).clamp(1, max_groups);
        let packed = self.storage(&format!("{name} (packed codes)"), words * 4)?;
        let (b, mut ops) = self.quant_stats(w_buf, n, q, &packed)?;
        ops.push(self.op(
            &QUANTIZE,
            "encode",
            &[&b.params, w_buf, &b.partials, &b.stats, &packed],
            [encode_groups as u32, 1, 1],
        ));
        self.submit(&ops);

        let s = self.read("quantize.stats", &b.stats, 16).await?;
        let s: &[f32] = bytemuck::cast_slice(&s);
        let mut bytes = self.read(name, &packed, words * 4).await?;
        bytes.truncate(n.div_ceil(4) as usize);
        Ok(GpuTernary {
            packed: bytes,
            stats: QuantStats {
                mean_abs: s[0],
                cut: s[1],
                scale: s[2],
            },
            selected: s[3] as u64,
        })
    }
}
