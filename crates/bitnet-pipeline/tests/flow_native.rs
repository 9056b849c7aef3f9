//! The shared pipeline test (support/flow.rs) on the native GPU adapter (lavapipe on a machine
//! without a GPU). Fails, never skips, without an adapter. `BITNET_BLESS=1` records the reference.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/flow.rs"]
mod flow;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/pipeline/flow.json"
);

#[test]
fn selfgen_train_pack_matches_the_reference_run() {
    let gpu = pollster::block_on(bitnet_gpu::Gpu::new())
        .expect("a GPU adapter is required for this test");
    let got = pollster::block_on(flow::flow(&gpu));
    assert!(got.kept >= 2, "too few samples kept to train on: {got:?}");
    if std::env::var_os("BITNET_BLESS").is_some() {
        std::fs::write(REFERENCE, serde_json::to_string_pretty(&got).unwrap()).unwrap();
    }
    let want: flow::FlowResult =
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).unwrap()).unwrap();
    flow::check(&got, &want);
}
