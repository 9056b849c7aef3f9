//! Inference linear layers that do not go through the GEMM (shaders/matvec.wgsl): the
//! matrix–vector product of a decode step (f32 weights, up to [`MATVEC_ROWS`] rows per invocation)
//! and the product with packed ternary weights (2 bits per weight on the GPU, any number of rows).
//! CPU references: `bitnet_core::cpu::matmul::{linear_forward, ternary_linear_forward}`.

use bitnet_core::Ternary;
use bitnet_core::pack::gpu_words;

use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::LinearShape;
use crate::ops::Op;
use crate::pipelines::{BindingKind, ShaderFamily};

pub const MATVEC: ShaderFamily = ShaderFamily {
    name: "matvec",
    source: include_str!("../../../shaders/matvec.wgsl"),
    bindings: &[
        BindingKind::Uniform,          // params
        BindingKind::StorageRead,      // x (M, K)
        BindingKind::StorageRead,      // w: f32 (N, K) or packed codes
        BindingKind::StorageRead,      // bias (N,)
        BindingKind::StorageReadWrite, // y (M, N)
    ],
};

/// Rows one invocation computes at most (the shader's MAX_ROWS): a linear layer with at most this
/// many rows reads each weight once.
pub const MATVEC_ROWS: u32 = 8;

/// Output columns per workgroup: 64 invocations of 4 columns.
const COLUMNS: u32 = 256;

/// A ternary weight W = scale·q (out, inp) on the GPU in the packed layout of
/// `bitnet_core::pack::gpu_words`.
pub struct TernaryWeight {
    pub words: wgpu::Buffer,
    pub scale: f32,
    pub out: u32,
    pub inp: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    scale: f32,
}

impl Gpu {
    /// Uploads the codes and scale of a ternary weight of shape (out, inp).
    pub fn upload_ternary(
        &self,
        name: &str,
        t: &Ternary,
        out: usize,
        inp: usize,
    ) -> Result<TernaryWeight, GpuError> {
        if t.codes.len() != out * inp {
            return Err(GpuError::Input(format!(
                "ternary tensor {name} has {} codes, expected {out}×{inp}",
                t.codes.len()
            )));
        }
        let words = gpu_words(&t.codes, out, inp);
        Ok(TernaryWeight {
            words: self.upload(name, bytemuck::cast_slice(&words))?,
            scale: t.scale,
            out: out as u32,
            inp: inp as u32,
        })
    }

    /// y = x·Wᵀ (+ b) for f32 weights and at most [`MATVEC_ROWS`] rows: each weight read once.
    pub fn matvec_op(
        &self,
        shape: LinearShape,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Op {
        self.matvec_with("matvec_f32", shape, 1.0, x, w, bias, y)
    }

    /// y = scale·x·qᵀ (+ b) for a packed ternary weight, any number of rows (a decode step's in one
    /// pass over the codes, a prefill's in groups of [`MATVEC_ROWS`]).
    pub fn ternary_linear_op(
        &self,
        rows: u32,
        x: &wgpu::Buffer,
        w: &TernaryWeight,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Op {
        let shape = LinearShape {
            rows,
            inp: w.inp,
            out: w.out,
        };
        self.matvec_with("matvec_ternary", shape, w.scale, x, &w.words, bias, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn matvec_with(
        &self,
        entry: &'static str,
        shape: LinearShape,
        scale: f32,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Op {
        let LinearShape { rows, inp, out } = shape;
        let per = rows.clamp(1, MATVEC_ROWS);
        let params = Params {
            m: rows,
            n: out,
            k: inp,
            scale,
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("ROWS", per as f64),
            ("ALIGNED", flag(inp % 4 == 0)),
            ("HAS_BIAS", flag(bias.is_some())),
        ];
        let u = self.uniform("matvec.params", bytemuck::bytes_of(&params));
        let bufs = [&u, x, w, bias.unwrap_or(&self.dummy), y];
        let groups = [out.div_ceil(COLUMNS).max(1), rows.div_ceil(per).max(1), 1];
        self.op_with(&MATVEC, entry, &constants, &bufs, groups)
    }
}
