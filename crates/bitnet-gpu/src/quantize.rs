//! Ternary quantization on the GPU (shaders/quantize.wgsl): the statistics by reduction over the
//! whole tensor, then the 2-bit codes, without a readback in between. Only the four statistics and
//! the packed codes come back. CPU reference: `bitnet_core::quant`.

use bitnet_core::quant::{QuantStats, Quantizer, ScaleMode};

use crate::buffer::f32_bytes;
use crate::device::Gpu;
use crate::error::GpuError;
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

impl Gpu {
    /// Quantizes `w` (a tensor named `name`, flattened row-major) with `q`.
    pub async fn quantize(
        &self,
        name: &str,
        w: &[f32],
        q: &Quantizer,
    ) -> Result<GpuTernary, GpuError> {
        let n = w.len() as u64;
        if n == 0 {
            return Ok(GpuTernary {
                packed: Vec::new(),
                stats: q.stats(w),
                selected: 0,
            });
        }
        let words = n.div_ceil(16);
        let num_partials = n.div_ceil(WG * PER_THREAD).clamp(1, MAX_PARTIALS);
        let max_groups = self.limits.max_compute_workgroups_per_dimension as u64;
        let encode_groups = words.div_ceil(WG).clamp(1, max_groups);
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

        let w_buf = self.upload(name, f32_bytes(w))?;
        let p_buf = self.uniform("quantize.params", bytemuck::bytes_of(&params));
        let partials = self.storage("quantize.partials", num_partials * 8)?;
        let stats = self.storage("quantize.stats", 16)?;
        let packed = self.storage(&format!("{name} (packed codes)"), words * 4)?;
        let bg = self.bind_group(&QUANTIZE, &[&p_buf, &w_buf, &partials, &stats, &packed]);

        let mut passes: Vec<(&'static str, u64)> =
            vec![("sum_abs", num_partials), ("finish_mean", 1)];
        if optimal {
            passes.push(("sum_above_cut", num_partials));
            passes.push(("finish_selected", 1));
        }
        passes.push(("encode", encode_groups));

        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("quantize"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("quantize"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &bg, &[]);
            for (entry, groups) in passes {
                pass.set_pipeline(&self.pipeline(&QUANTIZE, entry));
                pass.dispatch_workgroups(groups as u32, 1, 1);
            }
        }
        self.queue.submit([enc.finish()]);

        let s = self.read("quantize.stats", &stats, 16).await?;
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
