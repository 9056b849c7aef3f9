//! The distillation kernels (one WGSL file each): KL to a teacher's full distribution (kl.wgsl),
//! the teacher's top K of every row (topk.wgsl) and KL to that top K (kl_topk.wgsl), with the
//! buffers that carry a top K. CPU references: `bitnet_core::cpu::kl`.

// Op builders take their buffers one by one, in binding order, as the WGSL declares them.
#![allow(clippy::too_many_arguments)]
use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::u4;
use crate::ops::Op;
use crate::pipelines::{BindingKind as B, ShaderFamily};

pub const KL: ShaderFamily = ShaderFamily {
    name: "kl",
    source: concat!(
        include_str!("../../../shaders/reduce.wgsl"),
        include_str!("../../../shaders/kl.wgsl")
    ),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // student logits
        B::StorageRead,      // teacher logits
        B::StorageRead,      // targets
        B::StorageReadWrite, // stats: lse_s, lse_t per row
        B::StorageReadWrite, // loss per row
        B::StorageReadWrite, // dlogits
    ],
};
pub const TOPK: ShaderFamily = ShaderFamily {
    name: "topk",
    source: concat!(
        include_str!("../../../shaders/reduce.wgsl"),
        include_str!("../../../shaders/topk.wgsl")
    ),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // logits
        B::StorageReadWrite, // ids
        B::StorageReadWrite, // probabilities
    ],
};
pub const KL_TOPK: ShaderFamily = ShaderFamily {
    name: "kl_topk",
    source: concat!(
        include_str!("../../../shaders/reduce.wgsl"),
        include_str!("../../../shaders/kl_topk.wgsl")
    ),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // student logits
        B::StorageRead,      // teacher ids
        B::StorageRead,      // teacher probabilities
        B::StorageRead,      // targets
        B::StorageReadWrite, // stats: lse_s, lse_q per row
        B::StorageReadWrite, // loss per row
        B::StorageReadWrite, // dlogits
    ],
};

/// The distillation term's temperature and weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distill {
    pub temperature: f32,
    pub weight: f32,
}

/// A teacher's top K tokens per row (shaders/topk.wgsl's output, or a soft-label sidecar's):
/// ids (rows, K) u32 and their probabilities at temperature 1 (rows, K) f32.
#[derive(Clone, Copy)]
pub struct TopKBuffers<'a> {
    pub k: u32,
    pub ids: &'a wgpu::Buffer,
    pub probs: &'a wgpu::Buffer,
}

/// Buffers for the top K of `rows` rows (what shaders/topk.wgsl writes, or soft labels uploaded).
pub struct TopKRows {
    pub k: u32,
    pub ids: wgpu::Buffer,
    pub probs: wgpu::Buffer,
}

impl TopKRows {
    /// Zeroed buffers for `rows` rows of `k`.
    pub fn alloc(gpu: &Gpu, rows: usize, k: usize) -> Result<TopKRows, GpuError> {
        let bytes = 4 * (rows * k) as u64;
        Ok(TopKRows {
            k: k as u32,
            ids: gpu.storage("top-k ids", bytes)?,
            probs: gpu.storage("top-k probabilities", bytes)?,
        })
    }

    pub fn buffers(&self) -> TopKBuffers<'_> {
        TopKBuffers {
            k: self.k,
            ids: &self.ids,
            probs: &self.probs,
        }
    }
}

impl Gpu {
    /// The uniform of the distillation kernels.
    fn kl_params(
        &self,
        rows: u32,
        vocab: u32,
        n_valid: u32,
        kd: Distill,
        accumulate: bool,
    ) -> wgpu::Buffer {
        let p = [
            rows,
            vocab,
            (n_valid.max(1) as f32).to_bits(),
            (1.0 / kd.temperature).to_bits(),
            kd.weight.to_bits(),
            accumulate as u32,
            0,
            0,
        ];
        self.params("kl", &p)
    }

    /// Per-row share of weight · KL(softmax(teacher/T) ‖ softmax(student/T)) over logits (rows,
    /// vocab), rows with a negative target masked; `stats` (rows, 2) keeps both logsumexps for the
    /// backward.
    pub fn kl_forward(
        &self,
        rows: u32,
        vocab: u32,
        n_valid: u32,
        kd: Distill,
        student: &wgpu::Buffer,
        teacher: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        loss: &wgpu::Buffer,
    ) -> Op {
        let u = self.kl_params(rows, vocab, n_valid, kd, false);
        self.op(
            &KL,
            "forward",
            &[
                &u,
                student,
                teacher,
                targets,
                stats,
                loss,
                &self.dummy_rw[0],
            ],
            self.groups_for(rows as u64, 1),
        )
    }

    /// The K largest logits of every row of `logits` (rows, vocab), best first, and their softmax
    /// probabilities (K ≤ vocab: the caller checks).
    pub fn topk(&self, rows: u32, vocab: u32, logits: &wgpu::Buffer, out: TopKBuffers) -> Op {
        let u = self.params("topk", &u4(rows, vocab, out.k, 0));
        self.op(
            &TOPK,
            "main",
            &[&u, logits, out.ids, out.probs],
            self.groups_for(rows as u64, 1),
        )
    }

    /// The uniform of the top-K distillation kernels.
    fn kl_topk_params(
        &self,
        rows: u32,
        vocab: u32,
        k: u32,
        n_valid: u32,
        kd: Distill,
        accumulate: bool,
    ) -> wgpu::Buffer {
        let p = [
            rows,
            vocab,
            k,
            accumulate as u32,
            (n_valid.max(1) as f32).to_bits(),
            (1.0 / kd.temperature).to_bits(),
            kd.weight.to_bits(),
            0,
        ];
        self.params("kl_topk", &p)
    }

    /// [`Gpu::kl_forward`] with the teacher given by its top K tokens (renormalized at T).
    pub fn kl_topk_forward(
        &self,
        rows: u32,
        vocab: u32,
        n_valid: u32,
        kd: Distill,
        student: &wgpu::Buffer,
        teacher: TopKBuffers,
        targets: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        loss: &wgpu::Buffer,
    ) -> Op {
        let u = self.kl_topk_params(rows, vocab, teacher.k, n_valid, kd, false);
        let (ids, probs, d) = (teacher.ids, teacher.probs, &self.dummy_rw[0]);
        self.op(
            &KL_TOPK,
            "forward",
            &[&u, student, ids, probs, targets, stats, loss, d],
            self.groups_for(rows as u64, 1),
        )
    }

    /// [`Gpu::kl_backward`] with the teacher given by its top K tokens: the dense half, then the
    /// teacher's share scattered at its ids.
    pub fn kl_topk_backward(
        &self,
        rows: u32,
        vocab: u32,
        n_valid: u32,
        kd: Distill,
        accumulate: bool,
        student: &wgpu::Buffer,
        teacher: TopKBuffers,
        targets: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        dlogits: &wgpu::Buffer,
    ) -> [Op; 2] {
        let u = self.kl_topk_params(rows, vocab, teacher.k, n_valid, kd, accumulate);
        let (ids, probs, l) = (teacher.ids, teacher.probs, &self.dummy_rw[0]);
        let b = [&u, student, ids, probs, targets, stats, l, dlogits];
        [
            self.op(
                &KL_TOPK,
                "backward",
                &b,
                self.groups_for(rows as u64 * vocab as u64, 256),
            ),
            self.op(
                &KL_TOPK,
                "scatter",
                &b,
                self.groups_for(rows as u64 * teacher.k as u64, 256),
            ),
        ]
    }

    /// d(KL share)/d(student logits), written into `dlogits` or, with `accumulate`, added to it.
    pub fn kl_backward(
        &self,
        rows: u32,
        vocab: u32,
        n_valid: u32,
        kd: Distill,
        accumulate: bool,
        student: &wgpu::Buffer,
        teacher: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        dlogits: &wgpu::Buffer,
    ) -> Op {
        let u = self.kl_params(rows, vocab, n_valid, kd, accumulate);
        self.op(
            &KL,
            "backward",
            &[
                &u,
                student,
                teacher,
                targets,
                stats,
                &self.dummy_rw[0],
                dlogits,
            ],
            self.groups_for(rows as u64 * vocab as u64, 256),
        )
    }
}
