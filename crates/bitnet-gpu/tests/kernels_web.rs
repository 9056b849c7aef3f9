//! The kernels against their CPU references in a real browser (headless Chromium's WebGPU).
//! It fails when the browser has no WebGPU adapter.
#![cfg(target_arch = "wasm32")]

use bitnet_gpu::Gpu;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn quantize_kernel_matches_cpu_reference_in_browser() {
    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let backend = format!("{:?}", gpu.info.backend);
    assert_eq!(
        backend, "BrowserWebGpu",
        "the test must run on the browser's WebGPU, not {backend}"
    );
    match bitnet_gpu::selftest::quantize_against_cpu(&gpu).await {
        Ok(lines) => lines.iter().for_each(|l| console_log!("{l}")),
        Err(e) => panic!("{e}"),
    }
}

/// The whole kernel suite (every WGSL file) on the browser's WebGPU adapter.
#[wasm_bindgen_test]
async fn every_kernel_matches_its_cpu_reference_in_browser() {
    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let checks = bitnet_gpu::selftest::run_all(&gpu).await;
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    console_log!("{} kernel checks on {}", checks.len(), gpu.info.name);
    assert!(checks.len() > 50, "only {} checks ran", checks.len());
    assert!(
        failed.is_empty(),
        "{} kernels failed: {failed:#?}",
        failed.len()
    );
}
