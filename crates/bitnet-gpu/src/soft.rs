//! Soft labels: a model's top K next tokens and their probabilities at every position of each
//! training sequence (shaders/topk.wgsl over its logits), for a sidecar (`bitnet_core::soft`) that
//! lets top-K distillation train without running the teacher.

use bitnet_core::dataset::{Sequence, pad_batch};
use bitnet_core::soft::SoftLabels;

use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::TopKRows;
use crate::model::GpuModel;

/// The top `k` of `model` (forward only, as it is: no blend) at the first len − 1 positions of
/// every sequence (those with a next token), `bsz` sequences at a time, padded with `pad_id`.
pub async fn soft_labels(
    gpu: &Gpu,
    model: &GpuModel,
    seqs: &[Sequence],
    k: usize,
    bsz: usize,
    pad_id: u32,
) -> Result<Vec<SoftLabels>, GpuError> {
    let vocab = model.cfg.vocab_size;
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(bsz.max(1)) {
        let padded = pad_batch(chunk, pad_id);
        let batch = model.batch(gpu, &padded.tokens, &padded.targets)?;
        let t = padded.tokens[0].len();
        let rows = chunk.len() * t;
        let top = TopKRows::alloc(gpu, rows, k)?;
        let mut ops = model.forward_loss(gpu, &batch, None)?;
        ops.push(gpu.topk(rows as u32, vocab as u32, batch.logits(), top.buffers()));
        gpu.submit(&ops);
        let ids = gpu.read_u32("top-k ids", &top.ids, rows * k).await?;
        let probs = gpu.read_f32("top-k probabilities", &top.probs, rows * k);
        let probs = probs.await?;
        for (j, s) in chunk.iter().enumerate() {
            let (at, n) = (j * t * k, s.ids.len().saturating_sub(1) * k);
            out.push(SoftLabels {
                k,
                ids: ids[at..at + n].to_vec(),
                probs: probs[at..at + n].to_vec(),
            });
        }
    }
    Ok(out)
}
