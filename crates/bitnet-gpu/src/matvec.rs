//! Inference linear layers that do not go through the GEMM (shaders/matvec.wgsl): the
//! matrix–vector product of a decode step (up to [`MATVEC_ROWS`] rows) with f32 weights or with
//! packed ternary weights (2 bits per weight on the GPU, read directly); passes of more rows over
//! packed weights unpack one projection at a time into a scratch buffer for the GEMM.
//! CPU references: `bitnet_core::cpu::matmul::{linear_forward, ternary_linear_forward}`.

// Op builders take their buffers one by one.
#![allow(clippy::too_many_arguments)]

use bitnet_core::Ternary;
use bitnet_core::pack::gpu_words;
use bitnet_core::safetensors::{Dtype, OwnedTensor};

use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::{GemmPlan, LinearShape};
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

/// Rows one invocation of the matrix–vector kernels computes at most (more rows take more
/// invocations), and the most rows for which the generator runs f32 weights through them: past it
/// the register-blocked GEMM reuses its loads better (measured on lavapipe: at 4 rows the
/// matrix–vector kernel is ahead, at 8 behind; docs/BENCHMARKS.md).
pub const MATVEC_ROWS: u32 = 4;

/// The most rows for which packed weights go through the matrix–vector kernel (re-reading the
/// codes, 16× smaller than f32, once per 4 rows); past it one projection at a time is unpacked
/// for the GEMM (measured on lavapipe: 8-row decode steps 1.6× faster than unpacking each step).
pub const TERNARY_MATVEC_ROWS: u32 = 8;

/// Output columns per workgroup: 16 invocations of 4 columns (few enough that a 576-wide layer
/// spreads over 9 workgroups, hence over the CPU threads of a software adapter).
const COLUMNS: u32 = 64;

/// A ternary weight W = scale·q (out, inp) on the GPU in the packed layout of
/// `bitnet_core::pack::gpu_words`.
pub struct TernaryWeight {
    pub words: wgpu::Buffer,
    pub scale: f32,
    pub out: u32,
    pub inp: u32,
}

/// A full-precision tensor kept bf16 on the GPU (a BF16 model's embedding and lm_head): two values
/// per u32, the first in the low half, row-major (rows, cols).
pub struct Bf16Weight {
    pub buf: wgpu::Buffer,
    pub rows: u32,
    pub cols: u32,
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

    /// Uploads `values` (rows, cols) as bf16 (values that came from a BF16 tensor round-trip
    /// exactly).
    pub fn upload_bf16(
        &self,
        name: &str,
        values: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<Bf16Weight, GpuError> {
        if values.len() != rows * cols {
            return Err(GpuError::Input(format!(
                "tensor {name}: {} values cannot be a ({rows}, {cols}) tensor",
                values.len()
            )));
        }
        let t = OwnedTensor::float(name, vec![rows, cols], values, Dtype::BF16)
            .map_err(|e| GpuError::Input(e.to_string()))?;
        Ok(Bf16Weight {
            buf: self.upload(name, &t.bytes)?,
            rows: rows as u32,
            cols: cols as u32,
        })
    }

    /// y = x·Wᵀ (+ b) for a bf16 weight (rows of W = outputs), any number of rows (the weights
    /// read once per [`MATVEC_ROWS`] rows).
    pub fn matvec_bf16_op(
        &self,
        rows: u32,
        x: &wgpu::Buffer,
        w: &Bf16Weight,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Op {
        let shape = LinearShape {
            rows,
            inp: w.cols,
            out: w.rows,
        };
        // 8 bf16 weights per vec4 of words.
        let aligned = w.cols.is_multiple_of(8);
        self.matvec_with("matvec_bf16", shape, aligned, 1.0, x, &w.buf, bias, y)
    }

    /// y = x·Wᵀ (+ b) for f32 weights, each weight read once per [`MATVEC_ROWS`] rows.
    pub fn matvec_op(
        &self,
        shape: LinearShape,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Op {
        let aligned = shape.inp.is_multiple_of(4);
        self.matvec_with("matvec_f32", shape, aligned, 1.0, x, w, bias, y)
    }

    /// y = scale·x·qᵀ (+ b) for a packed ternary weight, the codes read directly (once per
    /// [`MATVEC_ROWS`] rows).
    pub fn ternary_matvec_op(
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
        // (Codes are always aligned; x rows are vec4s when inp % 4 == 0.)
        let aligned = w.inp.is_multiple_of(4);
        self.matvec_with(
            "matvec_ternary",
            shape,
            aligned,
            w.scale,
            x,
            &w.words,
            bias,
            y,
        )
    }

    /// scratch[..out·inp] = scale·q of a packed ternary weight, row-major (out, inp).
    pub fn unpack_ternary_op(&self, w: &TernaryWeight, scratch: &wgpu::Buffer) -> Op {
        let params = Params {
            m: 1,
            n: w.out,
            k: w.inp,
            scale: w.scale,
        };
        let u = self.uniform("matvec.params", bytemuck::bytes_of(&params));
        let bufs = [&u, &self.dummy, &w.words, &self.dummy, scratch];
        let groups = self.groups_for(w.out as u64 * w.inp as u64, 256);
        self.op(&MATVEC, "unpack_ternary", &bufs, groups)
    }

    /// y = scale·x·qᵀ (+ b) for a packed ternary weight and any number of rows: the matrix–vector
    /// kernel up to [`TERNARY_MATVEC_ROWS`] rows, else the codes unpacked into `scratch` (f32, at
    /// least out·inp) and the GEMM of `plan`.
    pub fn ternary_linear(
        &self,
        plan: GemmPlan,
        rows: u32,
        x: &wgpu::Buffer,
        w: &TernaryWeight,
        bias: Option<&wgpu::Buffer>,
        scratch: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Vec<Op> {
        if rows <= TERNARY_MATVEC_ROWS {
            return vec![self.ternary_matvec_op(rows, x, w, bias, y)];
        }
        let shape = LinearShape {
            rows,
            inp: w.inp,
            out: w.out,
        };
        let mut ops = vec![self.unpack_ternary_op(w, scratch)];
        ops.extend(self.linear_forward(plan, shape, None, x, scratch, bias, None, None, y));
        ops
    }

    /// One dispatch of `entry`; `aligned` is its ALIGNED constant (rows of W and x start on the
    /// vec4s the kernel reads).
    fn matvec_with(
        &self,
        entry: &'static str,
        shape: LinearShape,
        aligned: bool,
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
            ("ALIGNED", flag(aligned)),
            ("HAS_BIAS", flag(bias.is_some())),
        ];
        let u = self.uniform("matvec.params", bytemuck::bytes_of(&params));
        let bufs = [&u, x, w, bias.unwrap_or(&self.dummy), y];
        let groups = [out.div_ceil(COLUMNS).max(1), rows.div_ceil(per).max(1), 1];
        self.op_with(&MATVEC, entry, &constants, &bufs, groups)
    }
}
