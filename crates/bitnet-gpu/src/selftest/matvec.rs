//! The inference linear layers of shaders/matvec.wgsl against the CPU reference: the f32
//! matrix–vector product and the packed ternary product, at odd shapes (K not a multiple of 4 or
//! of 64, N not a multiple of the 64-column workgroup, rows that do not fill the 8-row block).

use bitnet_core::Ternary;
use bitnet_core::cpu::matmul as cm;
use bitnet_core::pack::gpu_words;
use bitnet_core::safetensors::{Dtype, rounded_to};

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
    // (rows, inp, out): K % 4 != 0 and K < 64; K = 64·2 + 4 (K % 8 != 0 for bf16); K % 64 = 0 over
    // 7 rows (two row groups); a vocabulary-sized N; a prefill of 19 rows (the codes unpacked for
    // the GEMM). No N is a multiple of an invocation's 4 columns or a workgroup's 64.
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
        // bf16 weights: the reference is the f32 product of the same values rounded to bf16.
        let hw = gpu.upload_bf16("w bf16", &w, outf, inp)?;
        let rounded = rounded_to(&w, Dtype::BF16);
        let yh = zeros(gpu, "y bf16", rows * outf)?;
        gpu.submit(&[gpu.matvec_bf16_op(shape.rows, &xb, &hw, bias_gpu, &yh)]);
        let want_h = cm::linear_forward(&x, &rounded, bias_cpu, rows, inp, outf);
        out.push(Check::compare(
            format!("matvec_bf16 {tag}"),
            &gpu.read_f32("y bf16", &yh, want_h.len()).await?,
            &want_h,
            1e-5,
            1e-4,
        ));
        // The same table as a bf16 embedding: rows of W gathered by ids.
        let ids: Vec<u32> = (0..rows as u32)
            .map(|r| (r * 7 + 1) % outf as u32)
            .collect();
        let idb = gpu.upload("ids", bytemuck::cast_slice(&ids))?;
        let e = zeros(gpu, "embedded", rows * inp)?;
        let (r32, c32, v32) = (rows as u32, inp as u32, outf as u32);
        gpu.submit(&[gpu.embedding_forward_bf16(r32, c32, v32, &hw, &idb, &e)]);
        let want_e: Vec<f32> = ids
            .iter()
            .flat_map(|&i| rounded[i as usize * inp..(i as usize + 1) * inp].to_vec())
            .collect();
        out.push(Check::compare(
            format!("embedding forward_bf16 {rows}x{inp} of {outf}"),
            &gpu.read_f32("embedded", &e, want_e.len()).await?,
            &want_e,
            0.0,
            0.0,
        ));
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
