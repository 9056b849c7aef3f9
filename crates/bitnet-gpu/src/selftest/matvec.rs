//! The inference linear layers of shaders/matvec.wgsl against the CPU reference: the f32
//! matrix–vector product and the packed ternary product, at odd shapes (K not a multiple of 4 or
//! of 64, N not a multiple of the 64-column workgroup, rows that do not fill the 8-row block).

use bitnet_core::Ternary;
use bitnet_core::cpu::matmul as cm;
use bitnet_core::pack::gpu_words;

use super::{Check, Rng, zeros};
use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::LinearShape;
use crate::matvec::MATVEC_ROWS;

pub(super) async fn matvec_checks(
    gpu: &Gpu,
    rng: &mut Rng,
    out: &mut Vec<Check>,
) -> Result<(), GpuError> {
    // (rows, inp, out): K % 4 != 0 and K < 64; K = 64·2 + 4; K % 64 = 0; a prefill of 19 rows (two
    // full 8-row groups and a partial one); a vocabulary-sized N.
    for (rows, inp, outf, bias) in [
        (1usize, 3usize, 5usize, true),
        (3, 53, 70, false),
        (2, 132, 65, true),
        (8, 128, 129, false),
        (19, 100, 33, true),
        (1, 64, 2000, false),
    ] {
        let x = rng.vec(rows * inp, 1.0);
        let w = rng.vec(outf * inp, 0.05);
        let b = rng.vec(outf, 0.1);
        let t = Ternary {
            codes: (0..outf * inp)
                .map(|_| (rng.next_u64() % 3) as i8 - 1)
                .collect(),
            scale: 0.037,
        };
        let bias_cpu = bias.then_some(b.as_slice());
        let (xb, wb, bb) = (
            gpu.upload_f32("x", &x)?,
            gpu.upload_f32("w", &w)?,
            gpu.upload_f32("b", &b)?,
        );
        let tw = gpu.upload_ternary("codes", &t, outf, inp)?;
        let bias_gpu = bias.then_some(&bb);
        let shape = LinearShape {
            rows: rows as u32,
            inp: inp as u32,
            out: outf as u32,
        };
        let tag = format!("{rows}x{inp}->{outf}{}", if bias { " +bias" } else { "" });
        let (y, yt) = (
            zeros(gpu, "y", rows * outf)?,
            zeros(gpu, "y ternary", rows * outf)?,
        );
        let mut ops = vec![gpu.ternary_linear_op(shape.rows, &xb, &tw, bias_gpu, &yt)];
        if shape.rows <= MATVEC_ROWS {
            ops.push(gpu.matvec_op(shape, &xb, &wb, bias_gpu, &y));
        }
        gpu.submit(&ops);
        if shape.rows <= MATVEC_ROWS {
            let want = cm::linear_forward(&x, &w, bias_cpu, rows, inp, outf);
            out.push(Check::compare(
                format!("matvec_f32 {tag}"),
                &gpu.read_f32("y", &y, want.len()).await?,
                &want,
                1e-5,
                1e-4,
            ));
        }
        let words = gpu_words(&t.codes, outf, inp);
        let want = cm::ternary_linear_forward(&x, &words, t.scale, bias_cpu, rows, inp, outf);
        out.push(Check::compare(
            format!("matvec_ternary {tag}"),
            &gpu.read_f32("y ternary", &yt, want.len()).await?,
            &want,
            1e-5,
            1e-4,
        ));
    }
    Ok(())
}
