//! The linear-layer product (shaders/matmul.wgsl): forward, input and weight gradients, bias
//! gradient, with the λ-blend of ternary weights either fused into the weight loads or written once
//! into a scratch buffer. Three variants of the same product: naive (reference), tiled (shared
//! memory) and register-blocked (no shared memory). Which variant and which blend path an adapter
//! runs is measured by [`Gpu::tune_gemm`]. CPU reference: `bitnet_core::cpu::matmul`.

// Op builders take their buffers one by one, in binding order, as the WGSL declares them.
#![allow(clippy::too_many_arguments)]
use bitnet_core::quant::Quantizer;

use crate::device::Gpu;
use crate::error::GpuError;
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
    /// Register-blocked without shared memory: 16×16 outputs per invocation with vec4 loads when
    /// the layout allows ([`GemmSpec::vec4_aligned`]), else 4×4 with scalar loads.
    Reg,
}

impl GemmVariant {
    pub const ALL: [GemmVariant; 3] = [GemmVariant::Naive, GemmVariant::Tiled, GemmVariant::Reg];

    /// The entry point that computes `spec` and its outputs per workgroup along N and M.
    pub fn kernel(self, spec: &GemmSpec) -> (&'static str, u32) {
        match self {
            GemmVariant::Naive => ("gemm_naive", 16),
            GemmVariant::Tiled => ("gemm_tiled", 16),
            GemmVariant::Reg if spec.vec4_aligned() => ("gemm_reg", 128),
            GemmVariant::Reg => ("gemm_reg4", 32),
        }
    }
}

/// Where the λ-blend W + λ·(Q(W) − W) is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlendPath {
    /// Inside the product, as the weights are loaded.
    Fused,
    /// Once per use into a scratch buffer the size of the largest weight, then a plain product.
    Scratch,
}

/// How this adapter runs linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GemmPlan {
    pub variant: GemmVariant,
    pub blend: BlendPath,
    /// True when [`Gpu::tune_gemm`] chose it by timing, false for the default by adapter type.
    pub measured: bool,
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

impl GemmSpec {
    /// Whether each operand's contiguous dimension is a multiple of 4, as `gemm_reg`'s vec4 loads
    /// need: K for A (M, K) and B (N, K), M for A stored (K, M), N for B stored (K, N).
    pub fn vec4_aligned(&self) -> bool {
        let a = if self.trans_a { self.m } else { self.k };
        let b = if self.trans_b { self.k } else { self.n };
        a % 4 == 0 && b % 4 == 0
    }
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
    lambda: f32,
}

impl Gpu {
    /// How linear layers run on this adapter: what [`Gpu::tune_gemm`] measured, or until then
    /// register blocking on CPU-like adapters (lavapipe, SwiftShader) and shared-memory tiles on
    /// real GPUs, both with the blend fused.
    pub fn gemm_plan(&self) -> GemmPlan {
        if let Some(plan) = self.gemm_plan.get() {
            return plan;
        }
        let variant = if self.info.device_type == wgpu::DeviceType::Cpu {
            GemmVariant::Reg
        } else {
            GemmVariant::Tiled
        };
        GemmPlan {
            variant,
            blend: BlendPath::Fused,
            measured: false,
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
        let (blend, lambda) = blend_mode(spec.blend);
        let params = Params {
            m: spec.m,
            n: spec.n,
            k: spec.k,
            lambda,
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("TRANS_A", flag(spec.trans_a)),
            ("TRANS_B", flag(spec.trans_b)),
            ("ACCUMULATE", flag(spec.accumulate)),
            ("BLEND", blend),
            ("HAS_BIAS", flag(bias.is_some())),
        ];
        let u = self.uniform("matmul.params", bytemuck::bytes_of(&params));
        let (entry, block) = variant.kernel(spec);
        let groups = [
            spec.n.div_ceil(block).max(1),
            spec.m.div_ceil(block).max(1),
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
        self.op_with(&MATMUL, entry, &constants, &bufs, groups)
    }

    /// scratch[..len] = W + λ·(scale·q(W) − W) for the first `len` elements of `w`.
    pub fn blend_weights_op(
        &self,
        len: u32,
        blend: (Quantizer, f32),
        w: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        scratch: &wgpu::Buffer,
    ) -> Op {
        let (mode, lambda) = blend_mode(Some(blend));
        let params = Params {
            m: 1,
            n: len,
            k: 1,
            lambda,
        };
        let u = self.uniform("matmul.params", bytemuck::bytes_of(&params));
        let bufs = [&u, &self.dummy, w, &self.dummy, stats, scratch];
        let groups = self.groups_for(len as u64, 256);
        self.op_with(&MATMUL, "blend_weights", &[("BLEND", mode)], &bufs, groups)
    }

    /// C [+]= A'·B'_eff by `plan`: with a blend and [`BlendPath::Scratch`], the blended weights are
    /// written into `scratch` (at least as large as B) and a plain product reads them.
    pub fn blended_gemm_ops(
        &self,
        plan: GemmPlan,
        spec: &GemmSpec,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        stats: Option<&wgpu::Buffer>,
        scratch: Option<&wgpu::Buffer>,
        c: &wgpu::Buffer,
    ) -> Vec<Op> {
        match (spec.blend, plan.blend, stats, scratch) {
            (Some(blend), BlendPath::Scratch, Some(stats), Some(scratch)) => {
                let plain = GemmSpec {
                    blend: None,
                    ..*spec
                };
                vec![
                    self.blend_weights_op(spec.n * spec.k, blend, b, stats, scratch),
                    self.gemm_op(plan.variant, &plain, a, scratch, bias, None, c),
                ]
            }
            _ => vec![self.gemm_op(plan.variant, spec, a, b, bias, stats, c)],
        }
    }

    /// y = x·W_effᵀ (+ b) with W_eff = W + λ·(Q(W) − W) when `blend` is set.
    pub fn linear_forward(
        &self,
        plan: GemmPlan,
        shape: LinearShape,
        blend: Option<(Quantizer, f32)>,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        stats: Option<&wgpu::Buffer>,
        scratch: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Vec<Op> {
        let spec = GemmSpec {
            m: shape.rows,
            n: shape.out,
            k: shape.inp,
            trans_b: true,
            blend,
            ..Default::default()
        };
        self.blended_gemm_ops(plan, &spec, x, w, bias, stats, scratch, y)
    }

    /// Backward of y = x·W_effᵀ + b with W_eff = W + λ·(Q(W) − W): dX = dY·W_eff, and by the
    /// straight-through estimator dW += dYᵀ·X (the full dL/dW_eff at every λ, 1 included), db += Σ dY.
    pub fn linear_backward(
        &self,
        plan: GemmPlan,
        shape: LinearShape,
        blend: Option<(Quantizer, f32)>,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        stats: Option<&wgpu::Buffer>,
        scratch: Option<&wgpu::Buffer>,
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
        let mut ops = self.blended_gemm_ops(plan, &dx_spec, dy, w, None, stats, scratch, grads.dx);
        ops.push(self.gemm_op(plan.variant, &dw_spec, dy, x, None, None, grads.dw));
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
            lambda: 0.0,
        };
        let u = self.uniform("matmul.params", bytemuck::bytes_of(&params));
        let bufs = [&u, dy, &self.dummy, &self.dummy, &self.dummy, db];
        self.op(&MATMUL, "bias_grad", &bufs, [n.div_ceil(256).max(1), 1, 1])
    }
}

impl Gpu {
    /// Times a λ-blended 256×256×256 linear layer with the tiled and register-blocked variants, then
    /// the faster one with the blend fused and through a scratch buffer, and keeps the fastest as
    /// this adapter's [`Gpu::gemm_plan`]. `now` is a clock in milliseconds (the browser's
    /// `performance.now()`, or `Instant` natively). Compiles the pipelines it times, so the first
    /// call takes a few seconds on software adapters.
    pub async fn tune_gemm(&self, now: &dyn Fn() -> f64) -> Result<GemmPlan, GpuError> {
        const N: u32 = 256;
        let len = (N * N) as usize;
        let mut rng = crate::selftest::Rng::new(3);
        let x = self.upload_f32("tune.x", &rng.vec(len, 1.0))?;
        let w = self.upload_f32("tune.w", &rng.vec(len, 0.05))?;
        let y = self.storage("tune.y", 4 * len as u64)?;
        let scratch = self.storage("tune.scratch", 4 * len as u64)?;
        let q = Quantizer::Absmean;
        let (stats, stat_ops) = self.weight_stats(&w, len as u64, &q)?;
        self.submit(&stat_ops);
        let shape = LinearShape {
            rows: N,
            inp: N,
            out: N,
        };
        let time = async |plan: GemmPlan| -> Result<f64, GpuError> {
            let ops = self.linear_forward(
                plan,
                shape,
                Some((q, 0.5)),
                &x,
                &w,
                None,
                Some(&stats.stats),
                Some(&scratch),
                &y,
            );
            // The first run compiles; the best of two timed runs counts.
            let mut best = f64::INFINITY;
            for rep in 0..3 {
                let start = now();
                self.submit(&ops);
                self.read("tune.y", &y, 4).await?;
                if rep > 0 {
                    best = best.min(now() - start);
                }
            }
            Ok(best)
        };
        let mut plan = GemmPlan {
            variant: GemmVariant::Tiled,
            blend: BlendPath::Fused,
            measured: true,
        };
        let tiled = time(plan).await?;
        let reg = time(GemmPlan {
            variant: GemmVariant::Reg,
            ..plan
        })
        .await?;
        let mut fused = tiled;
        if reg < tiled {
            plan.variant = GemmVariant::Reg;
            fused = reg;
        }
        let scratched = time(GemmPlan {
            blend: BlendPath::Scratch,
            ..plan
        })
        .await?;
        if scratched < fused {
            plan.blend = BlendPath::Scratch;
        }
        self.gemm_plan.set(Some(plan));
        Ok(plan)
    }
}

/// The shader's BLEND constant and λ for an optional blend.
fn blend_mode(blend: Option<(Quantizer, f32)>) -> (f64, f32) {
    match blend {
        None => (0.0, 0.0),
        Some((Quantizer::Absmean, l)) => (1.0, l),
        Some((Quantizer::Threshold { .. }, l)) => (2.0, l),
    }
}
