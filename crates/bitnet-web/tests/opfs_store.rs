//! The browser store in headless Chromium: a training run checkpointed to the Origin Private File
//! System, cancelled (as a closed tab would stop it), then continued by a fresh pipeline that opens
//! the same store folder (as after a reload), ends with the same packed file, byte for byte, as an
//! uninterrupted run in the page. Also the store's own operations.
#![cfg(target_arch = "wasm32")]

use std::cell::Cell;

use bitnet_pipeline::demo::{demo_model, demo_train_job};
use bitnet_pipeline::load::PACKED_FILE;
use bitnet_pipeline::train::{TrainJob, train};
use bitnet_pipeline::{Control, Ctx, Event, MemoryStore, PipelineError, Store};
use bitnet_web::store::OpfsStore;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const DATA: &str = concat!(
    "{\"instruction\": \"Write a haiku about the sea.\", \"output\": \"Waves fold into foam, the tide keeps its time.\"}\n",
    "{\"instruction\": \"Solve: what is 12 times 7?\", \"output\": \"12 times 7 is 84, as 10 times 7 is 70 and 2 times 7 is 14.\"}\n",
    "{\"instruction\": \"Name a color.\", \"output\": \"Blue, like the sky on a clear day in June.\"}\n",
    "{\"instruction\": \"Say hello.\", \"output\": \"Hello there, how are you doing today?\"}\n",
);

fn job(resume: bool) -> TrainJob {
    let mut job = demo_train_job();
    job.settings.steps = 12;
    job.settings.seq_len = 48;
    job.save_steps = 4;
    job.log_every = 4;
    job.resume = resume;
    job
}

#[wasm_bindgen_test]
async fn opfs_store_puts_appends_lists_and_removes() {
    let folder = "bitnet-test-store-ops";
    OpfsStore::delete(folder).await.unwrap();
    let s = OpfsStore::open(folder).await.unwrap();
    s.put("a/b.json", b"12").await.unwrap();
    s.put("a/b.json", b"1").await.unwrap();
    s.append("m.jsonl", b"x\n").await.unwrap();
    s.append("m.jsonl", b"y\n").await.unwrap();
    assert_eq!(s.get("a/b.json").await.unwrap().unwrap(), b"1");
    assert_eq!(s.get("m.jsonl").await.unwrap().unwrap(), b"x\ny\n");
    assert_eq!(s.get("none").await.unwrap(), None);
    assert_eq!(s.get("nodir/none").await.unwrap(), None);
    assert_eq!(s.size("m.jsonl").await.unwrap(), Some(4));
    assert_eq!(s.size("none").await.unwrap(), None);
    assert_eq!(s.get_range("m.jsonl", 2, 3).await.unwrap(), b"y");
    assert!(s.get_range("m.jsonl", 2, 9).await.is_err());
    assert_eq!(s.list("").await.unwrap(), ["a/b.json", "m.jsonl"]);
    assert_eq!(s.list("a/").await.unwrap(), ["a/b.json"]);
    s.remove("a/b.json").await.unwrap();
    s.remove("a/b.json").await.unwrap();
    // A fresh handle on the same folder sees what the first wrote.
    let again = OpfsStore::open(folder).await.unwrap();
    assert_eq!(again.list("").await.unwrap(), ["m.jsonl"]);
    OpfsStore::delete(folder).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_run_checkpointed_to_opfs_continues_after_a_reload_to_the_same_packed_file() {
    let gpu = match bitnet_gpu::Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let model = demo_model().unwrap();

    // Uninterrupted, in the page's memory.
    let whole = MemoryStore::new();
    let ctx = Ctx::quiet(&gpu);
    train(
        &ctx,
        &model,
        "demo",
        DATA.as_bytes(),
        "data.jsonl",
        &whole,
        &job(false),
    )
    .await
    .unwrap();
    let want = whole.get(PACKED_FILE).await.unwrap().unwrap();

    // Into OPFS, stopped right after the checkpoint of step 8.
    let folder = "bitnet-test-resume";
    OpfsStore::delete(folder).await.unwrap();
    let store = OpfsStore::open(folder).await.unwrap();
    let control = Control::new();
    let steps = Cell::new(0);
    let stopper = control.clone();
    let ctx = Ctx::new(&gpu, control, |e| match e {
        Event::Step { .. } => steps.set(steps.get() + 1),
        Event::Checkpoint { step: 8, .. } => stopper.cancel(),
        _ => {}
    });
    let r = train(
        &ctx,
        &model,
        "demo",
        DATA.as_bytes(),
        "data.jsonl",
        &store,
        &job(false),
    )
    .await;
    assert!(matches!(r, Err(PipelineError::Cancelled)), "{:?}", r.err());
    drop(ctx);
    assert_eq!(steps.get(), 8);
    assert_eq!(store.get(PACKED_FILE).await.unwrap(), None);
    drop(store);

    // A fresh pipeline on the same folder, as after a reload.
    let store = OpfsStore::open(folder).await.unwrap();
    let keys = store.list("checkpoint-").await.unwrap();
    assert_eq!(
        keys,
        ["checkpoint-4.safetensors", "checkpoint-8.safetensors"]
    );
    let resumed_at = Cell::new(None);
    let ctx = Ctx::new(&gpu, Control::new(), |e| {
        if let Event::Resumed { step, .. } = e {
            resumed_at.set(Some(step));
        }
    });
    train(
        &ctx,
        &model,
        "demo",
        DATA.as_bytes(),
        "data.jsonl",
        &store,
        &job(true),
    )
    .await
    .unwrap();
    drop(ctx);
    assert_eq!(resumed_at.get(), Some(8));
    let got = store.get(PACKED_FILE).await.unwrap().unwrap();
    assert!(got == want, "the resumed run's packed file differs");
    OpfsStore::delete(folder).await.unwrap();
}
