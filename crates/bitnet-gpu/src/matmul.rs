//! The linear-layer product (shaders/matmul.wgsl): forward, input and weight gradients, bias
//! gradient, with the λ-blend of ternary weights fused into the weight loads. Three variants of the
//! same product: naive (reference), tiled (shared memory) and register-blocked (no shared memory).
//! CPU reference: `bitnet_core::cpu::matmul`.

// Op builders take their buffers one by one, in binding order, as the WGSL declares them.
#![allow(clippy::too_many_arguments)]
use bitnet_core::quant::Quantizer;

use crate::device::Gpu;
use crate::ops::Op;
use crate::pipelines::{BindingKind, ShaderFamily};

pub const MATMUL: ShaderFamily = ShaderFamily {
    name: "matmul",
    source: include_str!("../../../shaders/matmul.wgsl"),
    bindings: &[
        BindingKind::Uniform,          // params
        BindingKind::StorageRead,      // a: (M, K) or (K, M)
        BindingKind::StorageRead,      // b: (K, N) or (N, K)
        BindingKind::StorageRead,      // bias: (N,)
        BindingKind::StorageRead,      // stats: (4,)
        BindingKind::StorageReadWrite, // c: (M, N)
    ],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GemmVariant {
    Naive,
    Tiled,
    /// Register-blocked without shared memory: 4×4 outputs per invocation, or, when B is stored
    /// (K, N), one column per invocation so that adjacent invocations load adjacent weights.
    Reg,
}

impl GemmVariant {
    pub const ALL: [GemmVariant; 3] = [GemmVariant::Naive, GemmVariant::Tiled, GemmVariant::Reg];
    fn entry(self) -> &'static str {
        match self {
            GemmVariant::Naive => "gemm_naive",
            GemmVariant::Tiled => "gemm_tiled",
            GemmVariant::Reg => "gemm_reg",
        }
    }
    /// Outputs per workgroup along (N, M).
    fn block(self) -> (u64, u64) {
        match self {
            GemmVariant::Naive | GemmVariant::Tiled => (16, 16),
            GemmVariant::Reg => (32, 32),
        }
    }
}

/// One product C (M, N) [+]= A'(M, K)·B'(K, N); see matmul.wgsl for the layouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct GemmSpec {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub accumulate: bool,
    /// λ-blend the B operand toward its ternary value with this quantizer (needs a stats buffer).
    pub blend: Option<(Quantizer, f32)>,
}

/// A linear layer's sizes: x (rows, inp), W (out, inp).
#[derive(Debug, Clone, Copy)]
pub struct LinearShape {
    pub rows: u32,
    pub inp: u32,
    pub out: u32,
}

/// Where a linear layer's gradients go: dX is written, dW and db accumulate.
pub struct LinearGrads<'a> {
    pub dx: &'a wgpu::Buffer,
    pub dw: &'a wgpu::Buffer,
    pub db: Option<&'a wgpu::Buffer>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32,
    blend: u32,
    has_bias: u32,
    lambda: f32,
    _pad: [u32; 3],
}

impl Gpu {
    /// The variant this adapter runs fastest: register blocking on CPU-like adapters (lavapipe,
    /// SwiftShader), shared-memory tiles on real GPUs.
    pub fn preferred_gemm(&self) -> GemmVariant {
        if self.info.device_type == wgpu::DeviceType::Cpu {
            GemmVariant::Reg
        } else {
            GemmVariant::Tiled
        }
    }

    /// The op for one product. `stats` is required when `spec.blend` is set.
    pub fn gemm_op(
        &self,
        variant: GemmVariant,
        spec: &GemmSpec,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        stats: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
    ) -> Op {
        let (blend, lambda) = match spec.blend {
            None => (0, 0.0),
            Some((Quantizer::Absmean, l)) => (1, l),
            Some((Quantizer::Threshold { .. }, l)) => (2, l),
        };
        let params = Params {
            m: spec.m,
            n: spec.n,
            k: spec.k,
            trans_a: spec.trans_a as u32,
            trans_b: spec.trans_b as u32,
            accumulate: spec.accumulate as u32,
            blend,
            has_bias: bias.is_some() as u32,
            lambda,
            _pad: [0; 3],
        };
        let u = self.uniform("matmul.params", bytemuck::bytes_of(&params));
        let (bn, bm) = variant.block();
        let groups = [
            spec.n.div_ceil(bn as u32).max(1),
            spec.m.div_ceil(bm as u32).max(1),
            1,
        ];
        let bufs = [
            &u,
            a,
            b,
            bias.unwrap_or(&self.dummy),
            stats.unwrap_or(&self.dummy),
            c,
        ];
        self.op(&MATMUL, variant.entry(), &bufs, groups)
    }

    /// Backward of y = x·W_effᵀ + b with W_eff = W + λ·(Q(W) − W): dX = dY·W_eff, and by the
    /// straight-through estimator dW += dYᵀ·X (the full dL/dW_eff at every λ, 1 included), db += Σ dY.
    pub fn linear_backward(
        &self,
        variant: GemmVariant,
        shape: LinearShape,
        blend: Option<(Quantizer, f32)>,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        stats: Option<&wgpu::Buffer>,
        dy: &wgpu::Buffer,
        grads: LinearGrads<'_>,
    ) -> Vec<Op> {
        let LinearShape { rows, inp, out } = shape;
        let dx_spec = GemmSpec {
            m: rows,
            n: inp,
            k: out,
            blend,
            ..Default::default()
        };
        let dw_spec = GemmSpec {
            m: out,
            n: inp,
            k: rows,
            trans_a: true,
            accumulate: true,
            ..Default::default()
        };
        let mut ops = vec![
            self.gemm_op(variant, &dx_spec, dy, w, None, stats, grads.dx),
            self.gemm_op(variant, &dw_spec, dy, x, None, None, grads.dw),
        ];
        if let Some(db) = grads.db {
            ops.push(self.bias_grad_op(rows, out, dy, db));
        }
        ops
    }

    /// db (N,) += Σ_rows dY (M, N).
    pub fn bias_grad_op(&self, m: u32, n: u32, dy: &wgpu::Buffer, db: &wgpu::Buffer) -> Op {
        let params = Params {
            m,
            n,
            k: 0,
            trans_a: 0,
            trans_b: 0,
            accumulate: 1,
            blend: 0,
            has_bias: 0,
            lambda: 0.0,
            _pad: [0; 3],
        };
        let u = self.uniform("matmul.params", bytemuck::bytes_of(&params));
        let bufs = [&u, dy, &self.dummy, &self.dummy, &self.dummy, db];
        self.op(&MATMUL, "bias_grad", &bufs, [n.div_ceil(256).max(1), 1, 1])
    }
}
