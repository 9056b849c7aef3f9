//! Top-K distillation against the CPU reference: the teacher's top K (ids exact, probabilities),
//! the KL to it, and its backward written and added to a gradient already there.

use bitnet_core::cpu::kl::{self as ck, TopK};

use super::{Check, Rng, zeros};
use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::{Distill, TopKRows};

pub(super) async fn topk_checks(
    gpu: &Gpu,
    rng: &mut Rng,
    out: &mut Vec<Check>,
) -> Result<(), GpuError> {
    // (rows, vocab, K, T); the first case's teacher logits are coarse, so ties are broken by id.
    for (rows, vocab, k, temperature) in [
        (3usize, 7usize, 4usize, 1.0f32),
        (5, 1000, 8, 2.0),
        (2, 40_000, 32, 1.0),
    ] {
        let student = rng.vec(rows * vocab, 3.0);
        let mut teacher = rng.vec(rows * vocab, 3.0);
        if vocab < 10 {
            teacher
                .iter_mut()
                .for_each(|t| *t = (*t * 2.0).round() / 2.0);
        }
        let targets: Vec<i32> = (0..rows)
            .map(|r| if r == 1 { -100 } else { (r % vocab) as i32 })
            .collect();
        let n_valid = targets.iter().filter(|&&t| t >= 0).count() as u32;
        let kd = Distill {
            temperature,
            weight: 0.75,
        };
        let (sb, tb, gb) = (
            gpu.upload_f32("student", &student)?,
            gpu.upload_f32("teacher", &teacher)?,
            gpu.upload("targets", bytemuck::cast_slice(&targets))?,
        );
        let rows_k = TopKRows::alloc(gpu, rows, k)?;
        let top = rows_k.buffers();
        let (statsb, lossb, db) = (
            zeros(gpu, "kl stats", 2 * rows)?,
            zeros(gpu, "kl loss", rows)?,
            zeros(gpu, "dlogits", rows * vocab)?,
        );
        let (r, v) = (rows as u32, vocab as u32);
        let mut ops = vec![
            gpu.topk(r, v, &tb, top),
            gpu.kl_topk_forward(r, v, n_valid, kd, &sb, top, &gb, &statsb, &lossb),
        ];
        ops.extend(gpu.kl_topk_backward(r, v, n_valid, kd, false, &sb, top, &gb, &statsb, &db));
        gpu.submit(&ops);
        let tag = format!("{rows}x{vocab} K={k} T={temperature}");

        let want = ck::top_k(&teacher, vocab, k);
        let got = TopK {
            k,
            ids: gpu.read_u32("top ids", &rows_k.ids, rows * k).await?,
            probs: gpu.read_f32("top probs", &rows_k.probs, rows * k).await?,
        };
        let as_f32 = |ids: &[u32]| ids.iter().map(|&i| i as f32).collect::<Vec<_>>();
        out.push(Check::compare(
            format!("top-k ids {tag}"),
            &as_f32(&got.ids),
            &as_f32(&want.ids),
            0.0,
            0.0,
        ));
        out.push(Check::compare(
            format!("top-k probabilities {tag}"),
            &got.probs,
            &want.probs,
            1e-7,
            1e-5,
        ));

        // The KL to the GPU's own top K (so that both sides renormalize the same numbers).
        let want_loss =
            ck::kl_topk_forward(&student, &got, &targets, vocab, temperature, kd.weight);
        let want_d = ck::kl_topk_backward(&student, &got, &targets, vocab, temperature, kd.weight);
        let loss: f32 = gpu.read_f32("kl loss", &lossb, rows).await?.iter().sum();
        out.push(Check::compare(
            format!("kl top-k forward {tag}"),
            &[loss],
            &[want_loss],
            1e-5,
            1e-4,
        ));
        out.push(Check::compare(
            format!("kl top-k backward {tag}"),
            &gpu.read_f32("dlogits", &db, rows * vocab).await?,
            &want_d,
            1e-7,
            1e-4,
        ));
        let ones = gpu.upload_f32("ones", &vec![1f32; rows * vocab])?;
        gpu.submit(&gpu.kl_topk_backward(r, v, n_valid, kd, true, &sb, top, &gb, &statsb, &ones));
        let plus_one: Vec<f32> = want_d.iter().map(|d| d + 1.0).collect();
        out.push(Check::compare(
            format!("kl top-k backward, accumulated {tag}"),
            &gpu.read_f32("ones", &ones, rows * vocab).await?,
            &plus_one,
            1e-6,
            1e-6,
        ));
    }
    Ok(())
}
