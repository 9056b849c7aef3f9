//! The shared pipeline test (support/flow.rs) in headless Chromium on WebGPU, against the same
//! reference run as the native test. Fails when the browser has no WebGPU adapter.
#![cfg(target_arch = "wasm32")]

#[path = "support/flow.rs"]
mod flow;

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn selfgen_train_pack_matches_the_native_reference_run_in_browser() {
    let gpu = match bitnet_gpu::Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    assert_eq!(format!("{:?}", gpu.info.backend), "BrowserWebGpu");
    let got = flow::flow(&gpu).await;
    let want: flow::FlowResult =
        serde_json::from_str(include_str!("../../../tests/fixtures/pipeline/flow.json")).unwrap();
    flow::check(&got, &want);
}
