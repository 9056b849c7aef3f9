//! The kernels against their CPU references on the native adapter (lavapipe in CI).
//! Fails, never skips, when there is no adapter.
#![cfg(not(target_arch = "wasm32"))]

use bitnet_core::cpu::matmul as cm;
use bitnet_core::quant::Quantizer;
use bitnet_gpu::Gpu;
use bitnet_gpu::matmul::{LinearGrads, LinearShape};
use bitnet_gpu::selftest::Rng;

#[test]
fn quantize_kernel_matches_cpu_reference() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    eprintln!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    match pollster::block_on(bitnet_gpu::selftest::quantize_against_cpu(&gpu)) {
        Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_kernel_matches_its_cpu_reference() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let checks = pollster::block_on(bitnet_gpu::selftest::run_all(&gpu));
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    for c in &checks {
        eprintln!(
            "{:<60} max abs {:.2e} rel {:.2e} {}",
            c.kernel,
            c.max_abs,
            c.max_rel,
            if c.passed { "ok" } else { "FAIL" }
        );
    }
    assert!(checks.len() > 50, "only {} checks ran", checks.len());
    assert!(
        failed.is_empty(),
        "{} kernels failed: {failed:#?}",
        failed.len()
    );
}

/// At λ = 1 the weights are fully ternary, and the latent weights must still learn: the weight
/// gradient is the full dL/dW_eff = dYᵀ·X (straight-through), not (1 − λ)·α·dL/dW_eff = 0 as in the
/// original PyTorch system.
#[test]
fn lambda_one_weight_gradient_is_the_full_straight_through_gradient() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test");
    let (rows, inp, out) = (6usize, 40usize, 24usize);
    let mut rng = Rng::new(99);
    let mut rand = |n: usize| (0..n).map(|_| rng.normal(0.5)).collect::<Vec<f32>>();
    let (x, w, dy) = (rand(rows * inp), rand(out * inp), rand(rows * out));
    let up = |name: &str, v: &[f32]| gpu.upload_f32(name, v).unwrap();
    let (xb, wb, dyb) = (up("x", &x), up("w", &w), up("dy", &dy));
    let (dx, dw) = (
        gpu.storage("dx", 4 * (rows * inp) as u64).unwrap(),
        gpu.storage("dw", 4 * (out * inp) as u64).unwrap(),
    );
    let (stats, mut ops) = gpu
        .weight_stats(&wb, w.len() as u64, &Quantizer::Absmean)
        .unwrap();
    let shape = LinearShape {
        rows: rows as u32,
        inp: inp as u32,
        out: out as u32,
    };
    let grads = LinearGrads {
        dx: &dx,
        dw: &dw,
        db: None,
    };
    ops.extend(gpu.linear_backward(
        gpu.gemm_plan(),
        shape,
        Some((Quantizer::Absmean, 1.0)),
        &xb,
        &wb,
        Some(&stats.stats),
        None,
        &dyb,
        grads,
    ));
    gpu.submit(&ops);
    let got = pollster::block_on(gpu.read_f32("dw", &dw, out * inp)).unwrap();
    let want = cm::linear_backward_weight(&dy, &x, rows, inp, out);
    let norm: f32 = got.iter().map(|g| g * g).sum::<f32>().sqrt();
    assert!(norm > 1.0, "λ = 1 weight gradient vanished (norm {norm})");
    let (max_abs, _, bad) = bitnet_core::cpu::compare(&got, &want, 1e-5, 1e-4);
    assert!(
        bad.is_none(),
        "λ = 1 weight gradient differs from dYᵀ·X by {max_abs}"
    );
}
