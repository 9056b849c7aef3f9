//! The quantization kernel against the CPU reference on the native adapter (lavapipe in CI).
//! Fails, never skips, when there is no adapter.
#![cfg(not(target_arch = "wasm32"))]

use bitnet_gpu::Gpu;

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
