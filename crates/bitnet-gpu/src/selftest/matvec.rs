//! The inference linear layers of shaders/matvec.wgsl against the CPU reference: the f32
//! matrix–vector product and the packed ternary product, at odd shapes (K not a multiple of 4 or
//! of 64, N not a multiple of the 64-column workgroup, rows that do not fill the 8-row block).

use bitnet_core::Ternary;
use bitnet_core::cpu::matmul as cm;
use bitnet_core::pack::gpu_words;

use super::{Check, Rng, zeros};
use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::{GemmSpec, LinearShape};
use crate::matvec::TERNARY_MATVEC_ROWS;

pub(super) async fn matvec_checks(
    gpu: &Gpu,
    rng: &mut Rng,
    out: &mut Vec<Check>,
) -> Result<(), GpuError> {
    // (rows, inp, out): K % 4 != 0 and K < 64; K = 64·2 + 4 with 2 column groups per invocation;
    // K % 64 = 0 over 7 rows (two row groups); a vocabulary-sized N (4 column groups); a prefill of
    // 19 rows (the codes unpacked for the GEMM). No N is a multiple of an invocation's columns.
    for (rows, inp, outf, bias) in [
        (1usize, 3usize, 5usize, true),
        (3, 53, 70, false),
        (2, 132, 601, true),
        (7, 128, 129, false),
        (1, 64, 2000, false),
        (19, 100, 33, true),
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
        let scratch = zeros(gpu, "unpacked", outf * inp)?;
        let plan = gpu.gemm_plan();
        let mut ops = gpu.ternary_linear(plan, shape.rows, &xb, &tw, bias_gpu, &scratch, &yt);
        if shape.rows <= TERNARY_MATVEC_ROWS {
            ops.push(gpu.matvec_op(shape, &xb, &wb, bias_gpu, &y));
        }
        gpu.submit(&ops);
        if shape.rows <= TERNARY_MATVEC_ROWS {
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
        let kernel = if shape.rows <= TERNARY_MATVEC_ROWS {
            "matvec_ternary".to_string()
        } else {
            let unpacked = gpu.read_f32("unpacked", &scratch, outf * inp).await?;
            out.push(Check::compare(
                format!("unpack_ternary {inp}->{outf}"),
                &unpacked,
                &t.dequantize(),
                0.0,
                0.0,
            ));
            let spec = GemmSpec {
                m: shape.rows,
                n: shape.out,
                k: shape.inp,
                trans_b: true,
                ..Default::default()
            };
            format!("unpack_ternary + {}", plan.variant.kernel(&spec).0)
        };
        out.push(Check::compare(
            format!("{kernel} {tag}"),
            &gpu.read_f32("y ternary", &yt, want.len()).await?,
            &want,
            1e-5,
            1e-4,
        ));
    }
    Ok(())
}
