//! The transformer kernel families other than matmul and quantize, one WGSL file each: RMSNorm,
//! RoPE, causal GQA attention, SwiGLU, embedding, cross-entropy, the optimizer step and the
//! elementwise helpers (the distillation kernels: [`crate::distill`]). Each builder returns an
//! [`Op`]; callers list ops and submit them at once. CPU references: `bitnet_core::cpu`.

// Op builders take their buffers one by one, in binding order, as the WGSL declares them.
#![allow(clippy::too_many_arguments)]
use crate::device::Gpu;
use crate::error::GpuError;
use crate::matvec::Bf16Weight;
use crate::ops::Op;
use crate::pipelines::{BindingKind as B, ShaderFamily};

pub use crate::distill::{Distill, KL, KL_TOPK, TOPK, TopKBuffers, TopKRows};

pub const RMSNORM: ShaderFamily = ShaderFamily {
    name: "rmsnorm",
    source: include_str!("../../../shaders/rmsnorm.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageRead,
        B::StorageRead,
        B::StorageReadWrite,
        B::StorageReadWrite,
        B::StorageReadWrite,
    ],
};
pub const SWIGLU: ShaderFamily = ShaderFamily {
    name: "swiglu",
    source: include_str!("../../../shaders/swiglu.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageRead,
        B::StorageRead,
        B::StorageReadWrite,
        B::StorageReadWrite,
    ],
};
pub const ROPE: ShaderFamily = ShaderFamily {
    name: "rope",
    source: include_str!("../../../shaders/rope.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageRead,
        B::StorageRead,
        B::StorageReadWrite,
    ],
};
pub const EMBEDDING: ShaderFamily = ShaderFamily {
    name: "embedding",
    source: include_str!("../../../shaders/embedding.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // table (f32)
        B::StorageRead,      // ids
        B::StorageRead,      // dy
        B::StorageReadWrite, // out
        B::StorageRead,      // table16 (bf16)
    ],
};
pub const XENT: ShaderFamily = ShaderFamily {
    name: "xent",
    source: concat!(
        include_str!("../../../shaders/reduce.wgsl"),
        include_str!("../../../shaders/xent.wgsl")
    ),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageRead,
        B::StorageReadWrite,
        B::StorageReadWrite,
        B::StorageReadWrite,
    ],
};
pub const ATTENTION: ShaderFamily = ShaderFamily {
    name: "attention",
    source: include_str!("../../../shaders/attention.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // q
        B::StorageRead,      // k
        B::StorageRead,      // v
        B::StorageReadWrite, // o
        B::StorageReadWrite, // stats: lse, dsum
        B::StorageRead,      // dout
        B::StorageReadWrite, // dq
        B::StorageReadWrite, // dkv
    ],
};
pub const OPTIM: ShaderFamily = ShaderFamily {
    name: "optim",
    source: include_str!("../../../shaders/optim.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageReadWrite,
        B::StorageReadWrite,
        B::StorageReadWrite,
        B::StorageReadWrite,
        B::StorageReadWrite,
    ],
};
pub const ELEMENTWISE: ShaderFamily = ShaderFamily {
    name: "elementwise",
    source: include_str!("../../../shaders/elementwise.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,
        B::StorageRead,
        B::StorageReadWrite,
    ],
};

/// Largest head dimension the attention kernel keeps in registers.
pub const MAX_HEAD_DIM: u32 = 256;
/// Keys (or, for dk/dv, queries × group heads) per attention dispatch: with D/4 ≤ 64 vec4 steps per
/// key, no invocation comes near lavapipe's 65535 loop iterations (see attention.wgsl).
pub const ATTENTION_CHUNK: u32 = 256;

pub(crate) fn u4(a: u32, b: u32, c: u32, d: u32) -> [u32; 4] {
    [a, b, c, d]
}

impl Gpu {
    pub(crate) fn params<T: bytemuck::Pod>(&self, name: &str, p: &T) -> wgpu::Buffer {
        self.uniform(name, bytemuck::bytes_of(p))
    }

    /// y (rows, c) = RMSNorm(x)·g; saves rstd (rows,).
    pub fn rmsnorm_forward(
        &self,
        rows: u32,
        c: u32,
        eps: f32,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("rmsnorm", &[rows, c, eps.to_bits(), 0]);
        self.op(
            &RMSNORM,
            "forward",
            &[&u, x, g, &self.dummy, rstd, y, &self.dummy_rw[0]],
            self.groups_for(rows as u64, 1),
        )
    }

    /// dx = input gradient; dg += gain gradient.
    pub fn rmsnorm_backward(
        &self,
        rows: u32,
        c: u32,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        rstd: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        dg: &wgpu::Buffer,
    ) -> [Op; 2] {
        let u = self.params("rmsnorm", &[rows, c, 0, 0]);
        [
            self.op(
                &RMSNORM,
                "backward_input",
                &[&u, x, g, dy, rstd, dx, dg],
                self.groups_for(rows as u64, 1),
            ),
            self.op(
                &RMSNORM,
                "backward_gain",
                &[&u, x, g, dy, rstd, &self.dummy_rw[0], dg],
                self.groups_for(c as u64, 256),
            ),
        ]
    }

    /// h = silu(gate)·up over n values.
    pub fn swiglu_forward(
        &self,
        n: u32,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        h: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("swiglu", &u4(n, 0, 0, 0));
        self.op(
            &SWIGLU,
            "forward",
            &[&u, gate, up, &self.dummy, h, &self.dummy_rw[0]],
            self.groups_for(n as u64, 256),
        )
    }

    pub fn swiglu_backward(
        &self,
        n: u32,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        dh: &wgpu::Buffer,
        dgate: &wgpu::Buffer,
        dup: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("swiglu", &u4(n, 0, 0, 0));
        self.op(
            &SWIGLU,
            "backward",
            &[&u, gate, up, dh, dgate, dup],
            self.groups_for(n as u64, 256),
        )
    }

    /// RoPE of x (b, t, h, d) at positions offset..offset+t; `backward` applies the transpose.
    pub fn rope(
        &self,
        backward: bool,
        shape: [u32; 4],
        offset: u32,
        x: &wgpu::Buffer,
        cos: &wgpu::Buffer,
        sin: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Op {
        let [b, t, h, d] = shape;
        let u = self.params("rope", &[b, t, h, d, offset, 0, 0, 0]);
        let n = b as u64 * t as u64 * h as u64 * (d / 2) as u64;
        self.op(
            &ROPE,
            if backward { "backward" } else { "forward" },
            &[&u, x, cos, sin, out],
            self.groups_for(n, 256),
        )
    }

    /// y (tokens, c) = table[ids].
    pub fn embedding_forward(
        &self,
        tokens: u32,
        c: u32,
        vocab: u32,
        table: &wgpu::Buffer,
        ids: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("embedding", &u4(tokens, c, vocab, 0));
        self.op(
            &EMBEDDING,
            "forward",
            &[&u, table, ids, &self.dummy, y, &self.dummy],
            self.groups_for(tokens as u64 * c as u64, 256),
        )
    }

    /// y (tokens, c) = rows `ids` of a bf16 table (vocab, c).
    pub fn embedding_forward_bf16(
        &self,
        tokens: u32,
        c: u32,
        vocab: u32,
        table: &Bf16Weight,
        ids: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("embedding", &u4(tokens, c, vocab, 0));
        self.op(
            &EMBEDDING,
            "forward_bf16",
            &[&u, &self.dummy, ids, &self.dummy, y, &table.buf],
            self.groups_for(tokens as u64 * c as u64, 256),
        )
    }

    /// dtable (vocab, c) += scatter of dy (tokens, c).
    pub fn embedding_backward(
        &self,
        tokens: u32,
        c: u32,
        vocab: u32,
        ids: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dtable: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("embedding", &u4(tokens, c, vocab, 0));
        self.op(
            &EMBEDDING,
            "backward",
            &[&u, &self.dummy, ids, dy, dtable, &self.dummy],
            self.groups_for(c as u64, 256),
        )
    }

    /// Per-row loss share (the row's cross-entropy over `divisor`: the unmasked rows' count, over
    /// the loss's weight) and lse of logits (rows, vocab) against targets (i32, < 0 masked).
    pub fn xent_forward(
        &self,
        rows: u32,
        vocab: u32,
        divisor: f32,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        lse: &wgpu::Buffer,
        loss: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("xent", &[rows, vocab, divisor.to_bits(), 0]);
        self.op(
            &XENT,
            "forward",
            &[&u, logits, targets, lse, loss, &self.dummy_rw[0]],
            self.groups_for(rows as u64, 1),
        )
    }

    pub fn xent_backward(
        &self,
        rows: u32,
        vocab: u32,
        divisor: f32,
        logits: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        lse: &wgpu::Buffer,
        dlogits: &wgpu::Buffer,
    ) -> Op {
        let u = self.params("xent", &[rows, vocab, divisor.to_bits(), 0]);
        self.op(
            &XENT,
            "backward",
            &[&u, logits, targets, lse, &self.dummy_rw[0], dlogits],
            self.groups_for(rows as u64 * vocab as u64, 256),
        )
    }

    /// The chunked passes of one attention kernel: `entry` once per chunk of `chunk` rows of the
    /// streamed dimension (keys or queries), over `rows` invocations.
    fn attention_chunks(
        &self,
        shape: [u32; 5],
        entry: &'static str,
        chunk: u32,
        rows: u64,
        bufs: &[&wgpu::Buffer; 8],
    ) -> Result<Vec<Op>, GpuError> {
        let [b, t, hq, hkv, d] = shape;
        if d == 0 || d % 4 != 0 || d > MAX_HEAD_DIM || hkv == 0 || hq % hkv != 0 {
            return Err(GpuError::Device {
                what: "attention".into(),
                message: format!(
                    "a head dimension that is a multiple of 4 up to {MAX_HEAD_DIM} (got {d}) and kv heads dividing the query heads ({hkv} kv, {hq} query) are required"
                ),
            });
        }
        let scale = 1.0 / (d as f32).sqrt();
        let groups = self.groups_for(rows, 64);
        let constants = [("D", d as f64)];
        let mut ops = Vec::new();
        let mut begin = 0;
        while begin < t.max(1) {
            let end = (begin + chunk).min(t);
            let u = self.params(
                "attention",
                &[b, t, hq, hkv, scale.to_bits(), begin, end, 0],
            );
            let mut all: Vec<&wgpu::Buffer> = vec![&u];
            all.extend_from_slice(bufs);
            ops.push(self.op_with(&ATTENTION, entry, &constants, &all, groups));
            begin = end;
        }
        Ok(ops)
    }

    /// out and stats (lse) of causal attention; shape = [b, t, hq, hkv, d]. Streams over keys in
    /// chunks of [`ATTENTION_CHUNK`], one dispatch each, then normalises.
    pub fn attention_forward(
        &self,
        shape: [u32; 5],
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        stats: &wgpu::Buffer,
    ) -> Result<Vec<Op>, GpuError> {
        let [b, t, hq, ..] = shape;
        let rows = b as u64 * hq as u64 * t as u64;
        let (r, w) = (&self.dummy, &self.dummy_rw);
        let bufs = [q, k, v, out, stats, r, &w[0], &w[1]];
        let mut ops = self.attention_chunks(shape, "forward", ATTENTION_CHUNK, rows, &bufs)?;
        // One pass over all rows: the whole sequence as a single chunk.
        let finish = self.attention_chunks(shape, "forward_finish", t.max(1), rows, &bufs)?;
        ops.extend(finish);
        Ok(ops)
    }

    /// dq, and dkv (dk then dv), from dout; needs forward's out and stats. dq streams over keys,
    /// dk and dv over queries, in chunks (the latter divided among the group's query heads).
    pub fn attention_backward(
        &self,
        shape: [u32; 5],
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        dq: &wgpu::Buffer,
        dkv: &wgpu::Buffer,
    ) -> Result<Vec<Op>, GpuError> {
        let [b, t, hq, hkv, _] = shape;
        let bufs = [q, k, v, out, stats, dout, dq, dkv];
        let q_rows = b as u64 * hq as u64 * t as u64;
        let kv_rows = b as u64 * hkv as u64 * t as u64;
        let group = (hq / hkv.max(1)).max(1);
        let mut ops = self.attention_chunks(shape, "backward_q", ATTENTION_CHUNK, q_rows, &bufs)?;
        let kv_chunk = (ATTENTION_CHUNK / group).max(1);
        ops.extend(self.attention_chunks(shape, "backward_kv", kv_chunk, kv_rows, &bufs)?);
        Ok(ops)
    }

    /// c = a + b over n values.
    pub fn add(&self, n: u32, a: &wgpu::Buffer, b: &wgpu::Buffer, out: &wgpu::Buffer) -> Op {
        let u = self.params("elementwise", &u4(n, 0, 0, 0));
        self.op(
            &ELEMENTWISE,
            "add",
            &[&u, a, b, out],
            self.groups_for(n as u64, 256),
        )
    }

    /// out += a over n values.
    pub fn accumulate(&self, n: u32, a: &wgpu::Buffer, out: &wgpu::Buffer) -> Op {
        let u = self.params("elementwise", &u4(n, 0, 0, 0));
        self.op(
            &ELEMENTWISE,
            "accumulate",
            &[&u, a, &self.dummy, out],
            self.groups_for(n as u64, 256),
        )
    }

    /// Per-row 8-bit absmax fake quantization of x (n values, rows of c).
    pub fn act_quant8(&self, n: u32, c: u32, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Op {
        let u = self.params("elementwise", &u4(n, c, 0, 0));
        self.op(
            &ELEMENTWISE,
            "act_quant8",
            &[&u, x, &self.dummy, out],
            self.groups_for((n / c.max(1)) as u64, 1),
        )
    }
}

/// AdamW hyper-parameters for one step.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based optimizer step.
    pub step: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimParams {
    n: u32,
    slot: u32,
    n_slots: u32,
    num_partials: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    max_norm: f32,
    clip: u32,
    _pad: [u32; 3],
}

const NORM_PARTIALS: u32 = 256;

impl Gpu {
    fn optim_params(
        &self,
        n: u32,
        slot: u32,
        n_slots: u32,
        step: Option<&AdamStep>,
        max_norm: f32,
        clip: bool,
    ) -> wgpu::Buffer {
        let (lr, b1, b2, eps, wd, bc1, bc2) = match step {
            Some(s) => (
                s.lr,
                s.beta1,
                s.beta2,
                s.eps,
                s.weight_decay,
                (1.0 - (s.beta1 as f64).powi(s.step as i32)) as f32,
                (1.0 - (s.beta2 as f64).powi(s.step as i32)) as f32,
            ),
            None => (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0),
        };
        let p = OptimParams {
            n,
            slot,
            n_slots,
            num_partials: NORM_PARTIALS,
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
            bias_correction1: bc1,
            bias_correction2: bc2,
            max_norm,
            clip: clip as u32,
            _pad: [0; 3],
        };
        self.params("optim", &p)
    }

    /// Buffers for the global norm of `n_slots` gradient tensors: (partials, norm (n_slots + 2)).
    pub fn norm_buffers(&self, n_slots: u32) -> Result<(wgpu::Buffer, wgpu::Buffer), GpuError> {
        Ok((
            self.storage("optim.partials", 4 * NORM_PARTIALS as u64)?,
            self.storage("optim.norm", 4 * (n_slots as u64 + 2))?,
        ))
    }

    /// Adds Σ grad² of one tensor (n values) into norm[slot].
    pub fn grad_sumsq(
        &self,
        n: u32,
        slot: u32,
        n_slots: u32,
        grad: &wgpu::Buffer,
        partials: &wgpu::Buffer,
        norm: &wgpu::Buffer,
    ) -> [Op; 2] {
        let u = self.optim_params(n, slot, n_slots, None, 0.0, false);
        let r = &self.dummy_rw;
        let bufs = [&u, grad, &r[0], &r[1], &r[2], partials, norm];
        [
            self.op(&OPTIM, "sumsq_partial", &bufs, [NORM_PARTIALS, 1, 1]),
            self.op(&OPTIM, "sumsq_finish", &bufs, [1, 1, 1]),
        ]
    }

    /// norm[n_slots] = global norm, norm[n_slots + 1] = clip coefficient for `max_norm`.
    pub fn clip_finish(&self, n_slots: u32, max_norm: f32, norm: &wgpu::Buffer) -> Op {
        let u = self.optim_params(0, 0, n_slots, None, max_norm, false);
        let r = &self.dummy_rw;
        self.op(
            &OPTIM,
            "clip_finish",
            &[&u, &self.dummy, &r[0], &r[1], &r[2], &r[3], norm],
            [1, 1, 1],
        )
    }

    /// One AdamW step on `param` (n values); with `clip`, the gradient is scaled by the clip coefficient.
    pub fn adamw(
        &self,
        n: u32,
        s: &AdamStep,
        n_slots: u32,
        clip: bool,
        grad: &wgpu::Buffer,
        param: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        norm: &wgpu::Buffer,
    ) -> Op {
        let u = self.optim_params(n, 0, n_slots, Some(s), 0.0, clip);
        self.op(
            &OPTIM,
            "adamw",
            &[&u, grad, param, m, v, &self.dummy_rw[0], norm],
            self.groups_for(n as u64, 256),
        )
    }
}
