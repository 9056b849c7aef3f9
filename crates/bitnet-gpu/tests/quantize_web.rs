//! The quantization kernel against the CPU reference in a real browser (headless Chromium's WebGPU).
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
